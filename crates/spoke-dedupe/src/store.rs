//! All SQL of the dedupe service (schema `dedupe`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::Result;

/// One index entry: a key Spoke knows a HubSpot record for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IndexEntry {
    /// Encoded match key.
    pub match_key: String,
    /// HubSpot record id.
    pub hubspot_id: String,
    /// When HubSpot created the record, if known.
    pub hubspot_created_at: Option<DateTime<Utc>>,
}

/// A create decided but not yet confirmed by its result.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingCreate {
    /// Encoded match key.
    pub match_key: String,
    /// The job that will create it.
    pub job_id: String,
    /// The record of that job.
    pub record_id: String,
}

/// How an index entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSource {
    /// An export created the record.
    Created,
    /// An export updated the record.
    Updated,
    /// A HubSpot lookup returned it.
    Seen,
}

impl IndexSource {
    fn as_str(self) -> &'static str {
        match self {
            IndexSource::Created => "created",
            IndexSource::Updated => "updated",
            IndexSource::Seen => "seen",
        }
    }
}

/// Index entries of `keys` in `portal`, oldest HubSpot record first.
pub async fn index_lookup(
    conn: &mut PgConnection,
    portal: i64,
    keys: &[String],
) -> Result<Vec<IndexEntry>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT match_key, hubspot_id, hubspot_created_at FROM match_index \
         WHERE portal_id = $1 AND match_key = ANY($2) \
         ORDER BY hubspot_created_at ASC NULLS LAST, first_seen_at ASC, hubspot_id ASC",
    )
    .bind(portal)
    .bind(keys)
    .fetch_all(conn)
    .await?)
}

/// Unexpired pending creates of `keys` in `portal`.
pub async fn pending_lookup(
    conn: &mut PgConnection,
    portal: i64,
    keys: &[String],
    ttl_secs: i64,
) -> Result<Vec<PendingCreate>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT match_key, job_id, record_id FROM pending_creates \
         WHERE portal_id = $1 AND match_key = ANY($2) \
         AND reserved_at > now() - make_interval(secs => $3)",
    )
    .bind(portal)
    .bind(keys)
    .bind(ttl_secs as f64)
    .fetch_all(conn)
    .await?)
}

/// Reserves `key` for a create by (job, record). True when the reservation is this record's
/// (new, already held by it, or taking over an expired one); false when another record holds it.
pub async fn reserve(
    conn: &mut PgConnection,
    org: &str,
    portal: i64,
    key: &str,
    job: &str,
    record: &str,
    ttl_secs: i64,
) -> Result<bool> {
    let held: Option<(String, String)> = sqlx::query_as(
        "INSERT INTO pending_creates (portal_id, match_key, org_id, job_id, record_id) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (portal_id, match_key) DO UPDATE SET \
           org_id = EXCLUDED.org_id, job_id = EXCLUDED.job_id, record_id = EXCLUDED.record_id, \
           reserved_at = now() \
         WHERE (pending_creates.job_id = EXCLUDED.job_id AND pending_creates.record_id = EXCLUDED.record_id) \
            OR pending_creates.reserved_at <= now() - make_interval(secs => $6) \
         RETURNING job_id, record_id",
    )
    .bind(portal)
    .bind(key)
    .bind(org)
    .bind(job)
    .bind(record)
    .bind(ttl_secs as f64)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}

/// Drops the reservations of one job record (its result arrived).
pub async fn release(conn: &mut PgConnection, portal: i64, job: &str, record: &str) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM pending_creates WHERE portal_id = $1 AND job_id = $2 AND record_id = $3",
    )
    .bind(portal)
    .bind(job)
    .bind(record)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Records that `key` in `portal` belongs to HubSpot record `hubspot_id`.
///
/// A stronger source is never downgraded (created > updated > seen), and a known creation time
/// is kept.
pub async fn upsert_index(
    conn: &mut PgConnection,
    org: &str,
    portal: i64,
    key: &str,
    hubspot_id: &str,
    source: IndexSource,
    created_at: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO match_index (portal_id, match_key, hubspot_id, org_id, source, hubspot_created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (portal_id, match_key, hubspot_id) DO UPDATE SET \
           org_id = EXCLUDED.org_id, last_seen_at = now(), \
           hubspot_created_at = COALESCE(match_index.hubspot_created_at, EXCLUDED.hubspot_created_at), \
           source = CASE \
             WHEN match_index.source = 'created' OR EXCLUDED.source = 'created' THEN 'created' \
             WHEN match_index.source = 'updated' OR EXCLUDED.source = 'updated' THEN 'updated' \
             ELSE 'seen' END",
    )
    .bind(portal)
    .bind(key)
    .bind(hubspot_id)
    .bind(org)
    .bind(source.as_str())
    .bind(created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One stored record check.
#[derive(Debug, Clone)]
pub struct CheckRow<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Record id.
    pub record_id: &'a str,
    /// Org id.
    pub org_id: &'a str,
    /// Portal id.
    pub portal_id: i64,
    /// Batch index.
    pub batch_index: i32,
    /// Decision name.
    pub decision: &'a str,
    /// Target of an update.
    pub target_hubspot_id: &'a str,
    /// Number of candidates.
    pub candidate_count: i32,
    /// Reason.
    pub reason: &'a str,
}

/// Stores (or replaces, for re-checks after review) the check of one job record.
pub async fn save_check(conn: &mut PgConnection, row: &CheckRow<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO record_checks (job_id, record_id, org_id, portal_id, batch_index, decision, \
           target_hubspot_id, candidate_count, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (job_id, record_id) DO UPDATE SET batch_index = EXCLUDED.batch_index, \
           decision = EXCLUDED.decision, target_hubspot_id = EXCLUDED.target_hubspot_id, \
           candidate_count = EXCLUDED.candidate_count, reason = EXCLUDED.reason, checked_at = now()",
    )
    .bind(row.job_id)
    .bind(row.record_id)
    .bind(row.org_id)
    .bind(row.portal_id)
    .bind(row.batch_index)
    .bind(row.decision)
    .bind(row.target_hubspot_id)
    .bind(row.candidate_count)
    .bind(row.reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes everything of `org` (the integration was deleted). Returns the index rows removed.
pub async fn purge_org(conn: &mut PgConnection, org: &str) -> Result<u64> {
    let removed = sqlx::query("DELETE FROM match_index WHERE org_id = $1")
        .bind(org)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM pending_creates WHERE org_id = $1")
        .bind(org)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM record_checks WHERE org_id = $1")
        .bind(org)
        .execute(&mut *conn)
        .await?;
    Ok(removed)
}

/// Index size by source, and the number of pending creates (the index stats metric).
pub async fn index_stats(pool: &PgPool) -> Result<(Vec<(String, i64)>, i64)> {
    let by_source: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, count(*) FROM match_index GROUP BY source ORDER BY source")
            .fetch_all(pool)
            .await?;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_creates")
        .fetch_one(pool)
        .await?;
    Ok((by_source, pending))
}
