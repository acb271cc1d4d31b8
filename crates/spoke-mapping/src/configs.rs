//! The org configuration: versioned saves (optimistic concurrency, idempotency, event in the
//! same transaction) and compiled snapshots for the export worker.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use prost::Message;
use spoke_hubspot::ObjectType;
use spoke_mapping_core::Object;
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::{MappingEvent, mapping_event};
use spoke_proto::mapping::v1 as pm;
use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::properties::PropertyCatalog;
use crate::snapshot::Snapshot;
use crate::store;

/// Who saves what, and the concurrency and retry guards of the save.
#[derive(Debug, Clone)]
pub struct SaveRequest<'a> {
    /// The org.
    pub org: &'a str,
    /// Provider user id of the admin.
    pub actor: &'a str,
    /// RPC method name (scope of the idempotency key).
    pub method: &'static str,
    /// Idempotency key and the request's hash, for methods that take one.
    pub idempotency: Option<(&'a str, String)>,
    /// The version the admin edited, if checked.
    pub expected_version: Option<i64>,
    /// Stored kind of the version (mapping, preferences, duplicates, intent).
    pub kind: &'static str,
    /// The event payload announcing the save.
    pub event: mapping_event::Kind,
}

/// The configuration domain of the mapping service.
#[derive(Debug, Clone)]
pub struct Configs {
    pool: PgPool,
    catalog: PropertyCatalog,
    compiled: Arc<CompiledCache>,
}

/// Compiled mappings by (org, version, object). Versions never change once written, so entries
/// never go stale; a purge forgets the org.
#[derive(Debug)]
struct CompiledCache {
    capacity: usize,
    entries: RwLock<HashMap<(String, i64, Object), Arc<pm::CompiledMapping>>>,
}

impl CompiledCache {
    fn get(&self, org: &str, version: i64, object: Object) -> Option<Arc<pm::CompiledMapping>> {
        self.entries
            .read()
            .get(&(org.to_string(), version, object))
            .cloned()
    }

    fn put(&self, org: &str, object: Object, compiled: Arc<pm::CompiledMapping>) {
        let mut entries = self.entries.write();
        if entries.len() >= self.capacity {
            // Rare and cheap to rebuild: one primary-key read per entry.
            entries.clear();
        }
        entries.insert((org.to_string(), compiled.version, object), compiled);
    }

    fn forget(&self, org: &str) {
        self.entries.write().retain(|(o, _, _), _| o != org);
    }
}

/// A protobuf timestamp of now.
pub fn now_timestamp() -> prost_types::Timestamp {
    let now = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// The HubSpot object of an exportable object.
pub fn hubspot_object(object: Object) -> ObjectType {
    match object {
        Object::Companies => ObjectType::Companies,
        Object::Contacts => ObjectType::Contacts,
    }
}

impl Configs {
    /// Configurations in `pool`, properties from `catalog`, `cache_entries` compiled mappings
    /// kept in memory.
    pub fn new(pool: PgPool, catalog: PropertyCatalog, cache_entries: usize) -> Self {
        Self {
            pool,
            catalog,
            compiled: Arc::new(CompiledCache {
                capacity: cache_entries.max(1),
                entries: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The property catalog.
    pub fn catalog(&self) -> &PropertyCatalog {
        &self.catalog
    }

    /// The org's current configuration (the defaults when it never saved).
    pub async fn current(&self, org: &str) -> Result<Snapshot> {
        let version = store::current_version(&self.pool, org).await?;
        self.at_version(org, version, version).await
    }

    /// The configuration at `version`; `current` is the org's current version.
    async fn at_version(&self, org: &str, version: i64, current: i64) -> Result<Snapshot> {
        let mut conn = self.pool.acquire().await?;
        match store::snapshot(&mut conn, org, version).await? {
            Some(s) => Ok(s),
            // Version 0 is the built-in default; the current version has no row after a purge.
            None if version == 0 || version == current => Ok(Snapshot::defaults(version)),
            None => Err(Error::NotFound(format!(
                "configuration version {version} does not exist (current version is {current})"
            ))),
        }
    }

    /// Saves a new version: `mutate` edits the current snapshot (already carrying the new
    /// version) and returns the response, which is stored for the idempotency key. The
    /// snapshot, the version, the event and the key commit together.
    pub async fn save<R, F>(&self, req: SaveRequest<'_>, mutate: F) -> Result<R>
    where
        R: Message + Default,
        F: FnOnce(&mut Snapshot, &prost_types::Timestamp) -> Result<R>,
    {
        let mut tx = self.pool.begin().await?;
        // Locking first serializes saves of one org, so a retried key sees the first result.
        let current = store::lock_version(&mut tx, req.org).await?;
        if let Some((key, hash)) = &req.idempotency
            && let Some((stored_hash, bytes)) =
                store::idempotent_result(&mut tx, req.org, req.method, key).await?
        {
            if &stored_hash != hash {
                return Err(Error::InvalidArgument(format!(
                    "idempotency_key {key:?} was already used for a different {} request",
                    req.method
                )));
            }
            return R::decode(bytes.as_slice()).map_err(|e| Error::Corrupt(e.to_string()));
        }
        if let Some(expected) = req.expected_version
            && expected != current
        {
            return Err(Error::Aborted(format!(
                "the configuration changed since version {expected} (current version is {current}); reload and try again"
            )));
        }
        let mut snapshot = match store::snapshot(&mut tx, req.org, current).await? {
            Some(s) => s,
            None => Snapshot::defaults(current),
        };
        let version = current + 1;
        snapshot.version = version;
        let at = now_timestamp();
        let response = mutate(&mut snapshot, &at)?;
        store::insert_snapshot(&mut tx, req.org, req.kind, req.actor, &snapshot).await?;
        store::set_version(&mut tx, req.org, version).await?;
        let event = MappingEvent {
            org_id: req.org.to_string(),
            version,
            occurred_at: Some(at),
            actor: req.actor.to_string(),
            kind: Some(req.event),
        };
        Outbox::enqueue(&mut tx, topics::MAPPING_EVENTS, req.org, &event).await?;
        if let Some((key, hash)) = &req.idempotency {
            store::put_idempotent_result(
                &mut tx,
                req.org,
                req.method,
                key,
                hash,
                &response.encode_to_vec(),
            )
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("spoke_mapping_saves_total", "kind" => req.kind).increment(1);
        tracing::info!(
            org = req.org,
            version,
            kind = req.kind,
            "configuration saved"
        );
        Ok(response)
    }

    /// The compiled mapping of `object` at `version` (current when `None`): memory, then one
    /// primary-key read, else compiled from the snapshot and the portal's properties and stored.
    pub async fn compiled(
        &self,
        org: &str,
        object: Object,
        version: Option<i64>,
    ) -> Result<Arc<pm::CompiledMapping>> {
        let version = match version {
            Some(v) => v,
            None => store::current_version(&self.pool, org).await?,
        };
        if version < 0 {
            return Err(Error::InvalidArgument(format!(
                "version {version} is negative"
            )));
        }
        if let Some(hit) = self.compiled.get(org, version, object) {
            metrics::counter!("spoke_mapping_compiled_reads_total", "source" => "memory")
                .increment(1);
            return Ok(hit);
        }
        if let Some(stored) = store::compiled(&self.pool, org, version, object.as_str()).await? {
            metrics::counter!("spoke_mapping_compiled_reads_total", "source" => "database")
                .increment(1);
            let stored = Arc::new(stored);
            self.compiled.put(org, object, stored.clone());
            return Ok(stored);
        }
        let current_version = store::current_version(&self.pool, org).await?;
        if version > current_version {
            return Err(Error::NotFound(format!(
                "configuration version {version} does not exist (current version is {current_version})"
            )));
        }
        let snapshot = self.at_version(org, version, current_version).await?;
        let props = self.catalog.get(org, hubspot_object(object), false).await?;
        let compiled = snapshot.compile(object, &props)?.to_proto();
        store::put_compiled(&self.pool, org, object.as_str(), &compiled).await?;
        // Another replica may have stored first; serve what is stored so all agree.
        let stored = store::compiled(&self.pool, org, version, object.as_str())
            .await?
            .unwrap_or(compiled);
        metrics::counter!("spoke_mapping_compiled_reads_total", "source" => "compiled")
            .increment(1);
        let stored = Arc::new(stored);
        self.compiled.put(org, object, stored.clone());
        Ok(stored)
    }

    /// Forgets the org's compiled mappings held in this replica (after a purge).
    pub fn forget(&self, org: &str) {
        self.compiled.forget(org);
    }
}
