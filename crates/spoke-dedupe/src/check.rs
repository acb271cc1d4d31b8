//! The duplicate check of a batch: keys → index → HubSpot → decision, without duplicates under
//! HubSpot's search lag.
//!
//! # Lookup order
//!
//! 1. Keys per record ([`crate::keys`]).
//! 2. The local match index for every key. It holds the HubSpot ids Spoke created or updated
//!    (from `spoke.export.results.v1`) and the ones earlier lookups saw. A key the index knows is
//!    not asked of HubSpot again: the index is authoritative for what Spoke wrote, and HubSpot's
//!    search may not show those records yet.
//! 3. HubSpot for the rest: contacts' emails by batch read (`idProperty=email`, no search lag);
//!    domains by search (`domain IN`); contacts' name + company by search only for records whose
//!    email found nothing (the guide's order). Hits are written to the index (`seen`).
//! 4. Candidates per record: all records found for its keys, oldest first (at most 10); for
//!    contacts the first rule that finds anything wins.
//!
//! # The race: a key written but not yet known
//!
//! Between "dedupe decided CREATE" and "the result with the new HubSpot id was consumed", neither
//! the index nor HubSpot search knows the record. Every record decided CREATE or
//! CREATE_DUPLICATE therefore reserves each of its keys in `pending_creates` (one row per
//! portal + key, in the same transaction as the checked batch). A later check of the same key:
//!
//! - **same batch**: the later record gets a `SAME_EXPORT` candidate naming the earlier record
//!   and is decided by the settings (UPDATE_EXISTING of the record the earlier one creates, SKIP
//!   or NEEDS_REVIEW; CREATE_DUPLICATE becomes an update: one export never creates two);
//! - **same job, later batch**: the same, from the reservation row;
//! - **another job**: the check waits (polling, up to `in_flight_wait`) for the first job's result
//!   to be consumed — the results consumer runs independently and releases the reservation while
//!   filling the index — and then finds the record in the index. If the result does not arrive
//!   in time, the record is NEEDS_REVIEW with a reason naming the other export: never a create.
//!
//! Reservations are released by the record's result (created/updated: index filled; skipped or
//! failed: nothing to find) and expire after `reservation_ttl` (a job that died without results),
//! long after HubSpot's search has caught up. A redelivered batch finds its own reservations and
//! is not its own duplicate. Consumers of one portal's batches are serialized by the topic's
//! portal key; the reservation insert is still conflict-checked, so two replicas racing on the
//! same key cannot both create.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use spoke_hubspot::PortalClient;
use spoke_match::{KeyKind, MatchKey};
use spoke_proto::common::v1::{
    CandidateSource, CheckDecision, DuplicateAction, DuplicateCandidate, RecordCheck,
};
use spoke_proto::events::v1::ExportRequestRecord;
use sqlx::PgConnection;

use crate::decision::{self, Policy, RecordContext};
use crate::error::Result;
use crate::keys::{self, Object, RecordKeys};
use crate::lookup::{self, Hit, PortalAccess};
use crate::store::{self, IndexEntry, IndexSource, PendingCreate};

/// Candidates kept per record.
const MAX_CANDIDATES: usize = 10;
/// Poll interval while waiting for another export's in-flight create.
const POLL: Duration = Duration::from_millis(200);

/// Pipeline (reserves, feeds the index, waits for in-flight creates) or preview (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Consuming `spoke.export.requests.v1` for this job.
    Pipeline {
        /// Whether this batch re-sends records after `ResolveDuplicates`.
        resolution: bool,
    },
    /// `CheckDuplicates`: neither the index nor HubSpot is changed.
    Preview,
}

/// What one check is about.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Org.
    pub org: &'a str,
    /// Portal.
    pub portal_id: i64,
    /// Object of every record.
    pub object: Object,
    /// Job id (empty for previews).
    pub job_id: &'a str,
    /// Records, in order; record ids unique.
    pub records: &'a [ExportRequestRecord],
}

/// Tunables of the check.
#[derive(Debug, Clone, Copy)]
pub struct Checker {
    /// How long a pipeline check waits for another export's in-flight create of the same key.
    pub in_flight_wait: Duration,
    /// How long a reservation holds without a result.
    pub reservation_ttl_secs: i64,
}

impl Default for Checker {
    fn default() -> Self {
        Self {
            in_flight_wait: Duration::from_secs(20),
            reservation_ttl_secs: 3600,
        }
    }
}

/// Everything known about the batch's keys before deciding.
#[derive(Default)]
struct Known {
    index: HashMap<String, Vec<IndexEntry>>,
    pending: HashMap<String, PendingCreate>,
    hubspot: BTreeMap<MatchKey, Vec<Hit>>,
}

impl Checker {
    /// Checks one batch and returns one `RecordCheck` per record, in order.
    ///
    /// In pipeline mode the reservations and `seen` index rows are written through `conn`, which
    /// is the consumer's transaction (committed with the checked batch's outbox row).
    pub async fn check(
        &self,
        conn: &mut PgConnection,
        portals: &dyn PortalAccess,
        batch: Batch<'_>,
        policy: &Policy,
        mode: Mode,
    ) -> Result<Vec<RecordCheck>> {
        let record_keys: Vec<RecordKeys> = batch
            .records
            .iter()
            .map(|r| {
                let fields = r
                    .record
                    .as_ref()
                    .and_then(|rec| rec.profile.as_ref())
                    .map(|p| {
                        p.fields
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                keys::record_keys(batch.object, &fields)
            })
            .collect();
        let all: BTreeSet<&MatchKey> = record_keys.iter().flat_map(|k| &k.keys).collect();
        let encoded: Vec<String> = all.iter().map(|k| k.encode()).collect();

        let mut known = Known::default();
        self.load_local(conn, &batch, &encoded, &mut known).await?;
        if matches!(mode, Mode::Pipeline { .. }) {
            self.wait_for_foreign_creates(conn, &batch, &encoded, &mut known)
                .await?;
        }
        let index_hits = encoded
            .iter()
            .filter(|k| known.index.contains_key(*k))
            .count();
        metrics::counter!("spoke_dedupe_lookups_total", "source" => "index", "result" => "hit")
            .increment(index_hits as u64);
        metrics::counter!("spoke_dedupe_lookups_total", "source" => "index", "result" => "miss")
            .increment((encoded.len() - index_hits) as u64);

        self.lookup_hubspot(portals, &batch, &record_keys, &mut known)
            .await?;
        if matches!(mode, Mode::Pipeline { .. }) {
            for (key, hits) in &known.hubspot {
                for hit in hits {
                    store::upsert_index(
                        conn,
                        batch.org,
                        batch.portal_id,
                        &key.encode(),
                        &hit.hubspot_id,
                        IndexSource::Seen,
                        hit.created_at,
                    )
                    .await?;
                }
            }
        }

        let mut claims: HashMap<String, String> = HashMap::new();
        let mut checks = Vec::with_capacity(batch.records.len());
        for (request, rk) in batch.records.iter().zip(&record_keys) {
            let record_id = request
                .record
                .as_ref()
                .map(|r| r.record_id.as_str())
                .unwrap_or_default();
            let gathered = gather(&batch, record_id, rk, &known, &claims);
            let choice = request.duplicate_choice();
            let ctx = RecordContext {
                choice,
                chosen_target: &request.target_hubspot_id,
                in_flight_elsewhere: gathered.in_flight_job.as_deref(),
            };
            let mut decided = decision::decide(policy, &gathered.candidates, ctx);
            if let Mode::Pipeline { resolution } = mode
                && resolution
                && choice == DuplicateAction::NeedsReview
            {
                decided.reason = format!("still waiting for the user's choice: {}", decided.reason);
            }
            let creates = matches!(
                decided.decision,
                CheckDecision::Create | CheckDecision::CreateDuplicate
            );
            if creates {
                let mut lost = None;
                if matches!(mode, Mode::Pipeline { .. }) {
                    for key in &rk.keys {
                        let reserved = store::reserve(
                            conn,
                            batch.org,
                            batch.portal_id,
                            &key.encode(),
                            batch.job_id,
                            record_id,
                            self.reservation_ttl_secs,
                        )
                        .await?;
                        if !reserved {
                            lost = Some(key.encode());
                        }
                    }
                }
                if let Some(key) = lost {
                    // Another replica reserved the key between our lookup and now.
                    decided = decision::decide(
                        policy,
                        &[],
                        RecordContext {
                            in_flight_elsewhere: Some(&format!("holding {key}")),
                            ..ctx
                        },
                    );
                } else {
                    for key in &rk.keys {
                        claims
                            .entry(key.encode())
                            .or_insert_with(|| record_id.to_owned());
                    }
                }
            }
            metrics::counter!("spoke_dedupe_decisions_total", "action" => decision::decision_name(decided.decision))
                .increment(1);
            checks.push(RecordCheck {
                record_id: record_id.to_owned(),
                match_keys: rk.keys.iter().map(keys::to_proto).collect(),
                invalid_keys: rk.invalid.clone(),
                candidates: gathered.candidates,
                decision: decided.decision as i32,
                target_hubspot_id: decided.target_hubspot_id,
                reason: decided.reason,
            });
        }
        Ok(checks)
    }

    async fn load_local(
        &self,
        conn: &mut PgConnection,
        batch: &Batch<'_>,
        encoded: &[String],
        known: &mut Known,
    ) -> Result<()> {
        known.index.clear();
        for entry in store::index_lookup(conn, batch.portal_id, encoded).await? {
            known
                .index
                .entry(entry.match_key.clone())
                .or_default()
                .push(entry);
        }
        known.pending =
            store::pending_lookup(conn, batch.portal_id, encoded, self.reservation_ttl_secs)
                .await?
                .into_iter()
                .map(|p| (p.match_key.clone(), p))
                .collect();
        Ok(())
    }

    /// Waits until other jobs' in-flight creates of our keys (without an index entry) have their
    /// results, then reloads the index. Reads see other transactions' commits (READ COMMITTED).
    async fn wait_for_foreign_creates(
        &self,
        conn: &mut PgConnection,
        batch: &Batch<'_>,
        encoded: &[String],
        known: &mut Known,
    ) -> Result<()> {
        let foreign = |known: &Known| -> Vec<String> {
            known
                .pending
                .values()
                .filter(|p| p.job_id != batch.job_id && !known.index.contains_key(&p.match_key))
                .map(|p| p.match_key.clone())
                .collect()
        };
        if foreign(known).is_empty() {
            return Ok(());
        }
        metrics::counter!("spoke_dedupe_in_flight_waits_total").increment(1);
        let started = Instant::now();
        tracing::info!(
            org = batch.org,
            portal = batch.portal_id,
            job_id = batch.job_id,
            keys = foreign(known).len(),
            "waiting for in-flight creates of other exports"
        );
        while started.elapsed() < self.in_flight_wait {
            tokio::time::sleep(POLL).await;
            self.load_local(conn, batch, encoded, known).await?;
            if foreign(known).is_empty() {
                break;
            }
        }
        Ok(())
    }

    async fn lookup_hubspot(
        &self,
        portals: &dyn PortalAccess,
        batch: &Batch<'_>,
        record_keys: &[RecordKeys],
        known: &mut Known,
    ) -> Result<()> {
        let unknown = |key: &MatchKey, known: &Known| {
            let e = key.encode();
            !known.index.contains_key(&e) && !known.pending.contains_key(&e)
        };
        // Phase 1: domains (companies) and emails (contacts).
        let first: BTreeSet<MatchKey> = record_keys
            .iter()
            .flat_map(|rk| &rk.keys)
            .filter(|k| matches!(k.kind(), KeyKind::Domain | KeyKind::Email))
            .filter(|k| unknown(k, known))
            .cloned()
            .collect();
        let mut portal: Option<PortalClient> = None;
        if !first.is_empty() {
            let client = portals.portal(batch.org).await?;
            let keys: Vec<MatchKey> = first.into_iter().collect();
            let found = lookup::find(&client, batch.object, &keys).await?;
            count_hubspot(&keys, &found);
            known.hubspot.extend(found);
            portal = Some(client);
        }
        // Phase 2: name + company of contacts whose email found nothing.
        let second: BTreeSet<MatchKey> = record_keys
            .iter()
            .filter(|rk| {
                !rk.keys.iter().any(|k| {
                    k.kind() == KeyKind::Email
                        && (!unknown(k, known) || known.hubspot.contains_key(k))
                })
            })
            .flat_map(|rk| &rk.keys)
            .filter(|k| k.kind() == KeyKind::NameCompany && unknown(k, known))
            .cloned()
            .collect();
        if !second.is_empty() {
            let client = match portal {
                Some(p) => p,
                None => portals.portal(batch.org).await?,
            };
            let keys: Vec<MatchKey> = second.into_iter().collect();
            let found = lookup::find(&client, batch.object, &keys).await?;
            count_hubspot(&keys, &found);
            known.hubspot.extend(found);
        }
        Ok(())
    }
}

fn count_hubspot(keys: &[MatchKey], found: &BTreeMap<MatchKey, Vec<Hit>>) {
    let hits = keys.iter().filter(|k| found.contains_key(*k)).count();
    metrics::counter!("spoke_dedupe_lookups_total", "source" => "hubspot", "result" => "hit")
        .increment(hits as u64);
    metrics::counter!("spoke_dedupe_lookups_total", "source" => "hubspot", "result" => "miss")
        .increment((keys.len() - hits) as u64);
}

struct Gathered {
    candidates: Vec<DuplicateCandidate>,
    in_flight_job: Option<String>,
}

/// Candidates of one record from everything known; contacts stop at the first rule with a result.
fn gather(
    batch: &Batch<'_>,
    record_id: &str,
    rk: &RecordKeys,
    known: &Known,
    claims: &HashMap<String, String>,
) -> Gathered {
    let mut candidates: Vec<DuplicateCandidate> = Vec::new();
    let mut in_flight_job = None;
    let mut kinds: Vec<KeyKind> = rk.keys.iter().map(MatchKey::kind).collect();
    kinds.dedup();
    for kind in kinds {
        for key in rk.keys.iter().filter(|k| k.kind() == kind) {
            let encoded = key.encode();
            let matched = Some(keys::to_proto(key));
            let mut push = |c: DuplicateCandidate| {
                let duplicate = candidates.iter().any(|e| {
                    (!c.hubspot_id.is_empty() && e.hubspot_id == c.hubspot_id)
                        || (c.hubspot_id.is_empty()
                            && e.hubspot_id.is_empty()
                            && e.same_export_record_id == c.same_export_record_id)
                });
                if !duplicate {
                    candidates.push(c);
                }
            };
            for entry in known.index.get(&encoded).into_iter().flatten() {
                push(DuplicateCandidate {
                    hubspot_id: entry.hubspot_id.clone(),
                    matched_key: matched.clone(),
                    created_at: entry.hubspot_created_at.map(timestamp),
                    source: CandidateSource::Index as i32,
                    ..Default::default()
                });
            }
            for hit in known.hubspot.get(key).into_iter().flatten() {
                push(DuplicateCandidate {
                    hubspot_id: hit.hubspot_id.clone(),
                    matched_key: matched.clone(),
                    created_at: hit.created_at.map(timestamp),
                    source: CandidateSource::Hubspot as i32,
                    same_export_record_id: String::new(),
                    display_properties: hit.display.clone().into_iter().collect(),
                });
            }
            let earlier = claims
                .get(&encoded)
                .filter(|r| r.as_str() != record_id)
                .cloned()
                .or_else(|| {
                    known
                        .pending
                        .get(&encoded)
                        .filter(|p| p.job_id == batch.job_id && p.record_id != record_id)
                        .map(|p| p.record_id.clone())
                });
            if let Some(earlier) = earlier {
                push(DuplicateCandidate {
                    matched_key: matched.clone(),
                    source: CandidateSource::SameExport as i32,
                    same_export_record_id: earlier,
                    ..Default::default()
                });
            } else if let Some(p) = known.pending.get(&encoded)
                && p.job_id != batch.job_id
                && !known.index.contains_key(&encoded)
            {
                in_flight_job = Some(p.job_id.clone());
            }
        }
        if !candidates.is_empty() || in_flight_job.is_some() {
            break;
        }
    }
    // Oldest first; records of this export that are not written yet come last.
    candidates.sort_by_key(|c| {
        (
            c.hubspot_id.is_empty(),
            c.created_at.is_none(),
            c.created_at.map(|t| (t.seconds, t.nanos)),
        )
    });
    candidates.truncate(MAX_CANDIDATES);
    if !candidates.is_empty() {
        in_flight_job = None;
    }
    Gathered {
        candidates,
        in_flight_job,
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
