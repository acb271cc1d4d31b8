//! All SQL of the mapping service.

use chrono::{DateTime, Utc};
use prost::Message;
use spoke_proto::mapping::v1 as pm;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{Error, Result};
use crate::properties::{PortalProperties, PropertyInfo};
use crate::snapshot::Snapshot;

fn decode<M: Message + Default>(what: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// The org's current configuration version (0 when it never saved).
pub async fn current_version(pool: &PgPool, org: &str) -> Result<i64> {
    let v: Option<i64> = sqlx::query_scalar("SELECT version FROM org_config WHERE org_id = $1")
        .bind(org)
        .fetch_optional(pool)
        .await?;
    Ok(v.unwrap_or(0))
}

/// Locks the org's configuration row for a save and returns the current version.
pub async fn lock_version(tx: &mut PgConnection, org: &str) -> Result<i64> {
    sqlx::query("INSERT INTO org_config (org_id) VALUES ($1) ON CONFLICT (org_id) DO NOTHING")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let v: i64 = sqlx::query_scalar("SELECT version FROM org_config WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .fetch_one(&mut *tx)
        .await?;
    Ok(v)
}

/// Sets the org's current version (inside the save's transaction).
pub async fn set_version(tx: &mut PgConnection, org: &str, version: i64) -> Result<()> {
    sqlx::query("UPDATE org_config SET version = $2, updated_at = now() WHERE org_id = $1")
        .bind(org)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The stored snapshot of one version, if any.
pub async fn snapshot(
    conn: &mut PgConnection,
    org: &str,
    version: i64,
) -> Result<Option<Snapshot>> {
    let row = sqlx::query(
        "SELECT companies, contacts, preferences, duplicates, intent FROM config_versions \
         WHERE org_id = $1 AND version = $2",
    )
    .bind(org)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let bytes = |col: &str| -> Result<Vec<u8>> { Ok(row.try_get::<Vec<u8>, _>(col)?) };
    Ok(Some(Snapshot {
        version,
        companies: decode("companies", &bytes("companies")?)?,
        contacts: decode("contacts", &bytes("contacts")?)?,
        preferences: decode("preferences", &bytes("preferences")?)?,
        duplicates: decode("duplicates", &bytes("duplicates")?)?,
        intent: decode("intent", &bytes("intent")?)?,
    }))
}

/// Stores a new version's snapshot.
pub async fn insert_snapshot(
    tx: &mut PgConnection,
    org: &str,
    kind: &str,
    actor: &str,
    s: &Snapshot,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO config_versions (org_id, version, kind, actor, companies, contacts, preferences, duplicates, intent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(org)
    .bind(s.version)
    .bind(kind)
    .bind(actor)
    .bind(s.companies.encode_to_vec())
    .bind(s.contacts.encode_to_vec())
    .bind(s.preferences.encode_to_vec())
    .bind(s.duplicates.encode_to_vec())
    .bind(s.intent.encode_to_vec())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A stored idempotent result: the request's hash and the encoded response.
pub async fn idempotent_result(
    tx: &mut PgConnection,
    org: &str,
    method: &str,
    key: &str,
) -> Result<Option<(String, Vec<u8>)>> {
    let row = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE org_id = $1 AND method = $2 AND key = $3",
    )
    .bind(org)
    .bind(method)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("request_hash")?, r.try_get("response")?)),
        None => None,
    })
}

/// Remembers the result of an idempotent call.
pub async fn put_idempotent_result(
    tx: &mut PgConnection,
    org: &str,
    method: &str,
    key: &str,
    hash: &str,
    response: &[u8],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (org_id, method, key, request_hash, response) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org)
    .bind(method)
    .bind(key)
    .bind(hash)
    .bind(response)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A compiled mapping of one version and object, if compiled before.
pub async fn compiled(
    pool: &PgPool,
    org: &str,
    version: i64,
    object: &str,
) -> Result<Option<pm::CompiledMapping>> {
    let bytes: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT compiled FROM compiled_mappings WHERE org_id = $1 AND version = $2 AND object = $3",
    )
    .bind(org)
    .bind(version)
    .bind(object)
    .fetch_optional(pool)
    .await?;
    bytes.map(|b| decode("compiled mapping", &b)).transpose()
}

/// Stores a compiled mapping; the first one stored for a version wins.
pub async fn put_compiled(
    pool: &PgPool,
    org: &str,
    object: &str,
    compiled: &pm::CompiledMapping,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO compiled_mappings (org_id, version, object, compiled) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, version, object) DO NOTHING",
    )
    .bind(org)
    .bind(compiled.version)
    .bind(object)
    .bind(compiled.encode_to_vec())
    .execute(pool)
    .await?;
    Ok(())
}

/// The cached property list of an object, if any.
pub async fn cached_properties(
    pool: &PgPool,
    org: &str,
    object: &str,
) -> Result<Option<PortalProperties>> {
    let row = sqlx::query(
        "SELECT portal_id, fetched_at, properties FROM property_cache WHERE org_id = $1 AND object = $2",
    )
    .bind(org)
    .bind(object)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let list: sqlx::types::Json<Vec<PropertyInfo>> = row.try_get("properties")?;
    let fetched_at: DateTime<Utc> = row.try_get("fetched_at")?;
    Ok(Some(PortalProperties {
        portal_id: row.try_get("portal_id")?,
        fetched_at,
        by_name: list.0.into_iter().map(|p| (p.name.clone(), p)).collect(),
    }))
}

/// Replaces the cached property list of an object.
pub async fn put_properties(
    pool: &PgPool,
    org: &str,
    object: &str,
    props: &PortalProperties,
) -> Result<()> {
    let list: Vec<&PropertyInfo> = props.by_name.values().collect();
    sqlx::query(
        "INSERT INTO property_cache (org_id, object, portal_id, fetched_at, properties) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id, object) DO UPDATE SET portal_id = EXCLUDED.portal_id, \
         fetched_at = EXCLUDED.fetched_at, properties = EXCLUDED.properties",
    )
    .bind(org)
    .bind(object)
    .bind(props.portal_id)
    .bind(props.fetched_at)
    .bind(sqlx::types::Json(list))
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes everything of an org (integration deleted) and moves its version past every purged
/// one, so no cache anywhere can serve a purged configuration under a reused number.
pub async fn purge(tx: &mut PgConnection, org: &str) -> Result<u64> {
    let mut removed = 0;
    for table in [
        "config_versions",
        "compiled_mappings",
        "property_cache",
        "idempotency_keys",
    ] {
        removed += sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1"))
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    sqlx::query(
        "UPDATE org_config SET version = version + 1, updated_at = now() WHERE org_id = $1",
    )
    .bind(org)
    .execute(&mut *tx)
    .await?;
    Ok(removed)
}
