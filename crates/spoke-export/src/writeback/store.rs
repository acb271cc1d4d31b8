//! All SQL of the writeback: settings, activities, profile links.

use chrono::{DateTime, Utc};
use spoke_proto::common::v1::{ActivityType, ObjectType};
use spoke_proto::export::v1::WritebackLogMode;
use sqlx::{PgConnection, PgPool, Row};

use super::{Settings, SettingsChange, state};
use crate::error::Result;

fn settings_of(row: &sqlx::postgres::PgRow) -> Settings {
    let types: Vec<i32> = row.get("activity_types");
    Settings {
        enabled: row.get("enabled"),
        log_mode: WritebackLogMode::try_from(row.get::<i32, _>("log_mode"))
            .unwrap_or(WritebackLogMode::Engagements),
        activity_types: types
            .into_iter()
            .filter_map(|t| ActivityType::try_from(t).ok())
            .collect(),
        updated_at: Some(row.get("updated_at")),
    }
}

/// The org's settings (defaults when never saved).
pub async fn settings(conn: &mut PgConnection, org: &str) -> Result<Settings> {
    let row = sqlx::query(
        "SELECT enabled, log_mode, activity_types, updated_at FROM writeback_settings WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(settings_of).unwrap_or_default())
}

/// Applies a change and returns the settings after it.
pub async fn save_settings(pool: &PgPool, org: &str, change: &SettingsChange) -> Result<Settings> {
    let mut tx = pool.begin().await?;
    // Serialize concurrent saves of one org so neither loses the other's fields.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('writeback_settings:' || $1))")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let mut s = settings(&mut tx, org).await?;
    if let Some(e) = change.enabled {
        s.enabled = e;
    }
    if let Some(m) = change.log_mode {
        s.log_mode = m;
    }
    if let Some(t) = &change.activity_types {
        s.activity_types = t.clone();
    }
    let types: Vec<i32> = s.activity_types.iter().map(|t| *t as i32).collect();
    let row = sqlx::query(
        "INSERT INTO writeback_settings (org_id, enabled, log_mode, activity_types, updated_at) \
         VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (org_id) DO UPDATE SET enabled = EXCLUDED.enabled, log_mode = EXCLUDED.log_mode, \
         activity_types = EXCLUDED.activity_types, updated_at = now() \
         RETURNING enabled, log_mode, activity_types, updated_at",
    )
    .bind(org)
    .bind(s.enabled)
    .bind(s.log_mode as i32)
    .bind(&types)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(settings_of(&row))
}

/// A new activity as the consumer records it.
#[derive(Debug, Clone)]
pub struct NewActivity<'a> {
    /// Org.
    pub org: &'a str,
    /// Provider activity id.
    pub activity_id: &'a str,
    /// Type (may be UNSPECIFIED for a FAILED invalid event).
    pub activity_type: i32,
    /// Provider user id.
    pub user_id: &'a str,
    /// Contact profile id.
    pub contact_profile_id: &'a str,
    /// Company profile id.
    pub company_profile_id: &'a str,
    /// The encoded event.
    pub event: &'a [u8],
    /// Initial state.
    pub state: &'static str,
    /// Why (for SKIPPED and FAILED).
    pub reason: &'a str,
    /// When it happened.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Inserts an activity unless its (org, activity id) is known; returns whether it was new.
pub async fn insert_activity(conn: &mut PgConnection, a: &NewActivity<'_>) -> Result<bool> {
    let due = a.state == state::PENDING;
    let done = sqlx::query(
        "INSERT INTO writeback_activities (org_id, activity_id, activity_type, user_id, contact_profile_id, \
         company_profile_id, event, state, reason, occurred_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $11 THEN now() END) \
         ON CONFLICT (org_id, activity_id) DO NOTHING",
    )
    .bind(a.org)
    .bind(a.activity_id)
    .bind(a.activity_type)
    .bind(a.user_id)
    .bind(a.contact_profile_id)
    .bind(a.company_profile_id)
    .bind(a.event)
    .bind(a.state)
    .bind(a.reason)
    .bind(a.occurred_at)
    .bind(due)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An activity row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivityRow {
    /// Org.
    pub org_id: String,
    /// Provider activity id.
    pub activity_id: String,
    /// spoke.common.v1.ActivityType.
    pub activity_type: i32,
    /// Provider user id.
    pub user_id: String,
    /// Contact profile id.
    pub contact_profile_id: String,
    /// Company profile id.
    pub company_profile_id: String,
    /// Encoded ActivityEvent.
    pub event: Vec<u8>,
    /// State.
    pub state: String,
    /// Why.
    pub reason: String,
    /// Attempts so far.
    pub attempts: i32,
    /// HubSpot object (fixed at the first attempt).
    pub hubspot_object: String,
    /// HubSpot id once written.
    pub hubspot_id: String,
    /// Portal of the first attempt.
    pub portal_id: Option<i64>,
    /// Last create sent.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Received.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "org_id, activity_id, activity_type, user_id, contact_profile_id, company_profile_id, \
     event, state, reason, attempts, hubspot_object, hubspot_id, portal_id, attempted_at, occurred_at, \
     created_at, updated_at";

/// Takes up to `limit` due pending activities under a lease of `lease` seconds (a crashed
/// worker's activities are taken again after it). Their next attempt moves past the lease; a link
/// arriving meanwhile sets it back to now, which the end of this attempt keeps (see
/// [`keep_pending`]), so a match is never missed by an attempt that looked just before it.
pub async fn claim_due(pool: &PgPool, limit: i64, lease: f64) -> Result<Vec<ActivityRow>> {
    let sql = format!(
        "UPDATE writeback_activities a SET next_attempt_at = now() + make_interval(secs => $2), \
         lease_until = now() + make_interval(secs => $2) \
         FROM (SELECT org_id, activity_id FROM writeback_activities \
               WHERE state = 'pending' AND next_attempt_at <= now() \
               AND (lease_until IS NULL OR lease_until <= now()) \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) d \
         WHERE a.org_id = d.org_id AND a.activity_id = d.activity_id \
         RETURNING {}",
        COLUMNS
            .split(", ")
            .map(|c| format!("a.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(sqlx::query_as(&sql)
        .bind(limit)
        .bind(lease)
        .fetch_all(pool)
        .await?)
}

/// Commits that a create is about to be sent (before sending it).
pub async fn mark_attempt(
    pool: &PgPool,
    org: &str,
    activity_id: &str,
    hubspot_object: &str,
    portal_id: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE writeback_activities SET attempted_at = now(), attempts = attempts + 1, \
         hubspot_object = $3, portal_id = $4, updated_at = now() \
         WHERE org_id = $1 AND activity_id = $2",
    )
    .bind(org)
    .bind(activity_id)
    .bind(hubspot_object)
    .bind(portal_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the HubSpot id: WRITTEN. Only a pending activity changes (a dropped one stays).
pub async fn mark_written(
    pool: &PgPool,
    org: &str,
    activity_id: &str,
    hubspot_object: &str,
    hubspot_id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE writeback_activities SET state = 'written', hubspot_object = $3, hubspot_id = $4, \
         reason = '', next_attempt_at = NULL, lease_until = NULL, updated_at = now() \
         WHERE org_id = $1 AND activity_id = $2 AND state = 'pending'",
    )
    .bind(org)
    .bind(activity_id)
    .bind(hubspot_object)
    .bind(hubspot_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Leaves an activity pending with a reason; `retry_in` seconds until the next attempt, or `None`
/// to wait for a link (a new match marks it due).
pub async fn keep_pending(
    pool: &PgPool,
    org: &str,
    activity_id: &str,
    reason: &str,
    retry_in: Option<f64>,
) -> Result<()> {
    sqlx::query(
        "UPDATE writeback_activities SET reason = $3, lease_until = NULL, \
         next_attempt_at = CASE WHEN next_attempt_at <= now() THEN next_attempt_at \
           WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4) END, \
         updated_at = now() WHERE org_id = $1 AND activity_id = $2 AND state = 'pending'",
    )
    .bind(org)
    .bind(activity_id)
    .bind(reason)
    .bind(retry_in)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a pending activity in `state` (SKIPPED or FAILED) with a reason.
pub async fn finish(
    pool: &PgPool,
    org: &str,
    activity_id: &str,
    new_state: &str,
    reason: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE writeback_activities SET state = $3, reason = $4, next_attempt_at = NULL, lease_until = NULL, \
         updated_at = now() \
         WHERE org_id = $1 AND activity_id = $2 AND state = 'pending'",
    )
    .bind(org)
    .bind(activity_id)
    .bind(new_state)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Drops pending activities received more than `ttl_secs` ago; returns how many.
pub async fn drop_expired(pool: &PgPool, ttl_secs: f64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE writeback_activities SET state = 'dropped', \
         reason = 'no HubSpot match within ' || $1::text || ' s' || CASE WHEN reason <> '' THEN ' (last: ' || reason || ')' ELSE '' END, \
         next_attempt_at = NULL, updated_at = now() \
         WHERE state = 'pending' AND created_at < now() - make_interval(secs => $2) \
         AND (lease_until IS NULL OR lease_until <= now())",
    )
    .bind(format!("{ttl_secs}"))
    .bind(ttl_secs)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Activities of an org, newest first, optionally of one state, before a (created_at, id) cursor.
pub async fn list_activities(
    pool: &PgPool,
    org: &str,
    state: Option<&str>,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<ActivityRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM writeback_activities WHERE org_id = $1 \
         AND ($2::text IS NULL OR state = $2) \
         AND ($3::timestamptz IS NULL OR (created_at, activity_id) < ($3, $4)) \
         ORDER BY created_at DESC, activity_id DESC LIMIT $5"
    );
    let (at, id) = match before {
        Some((at, id)) => (Some(at), id),
        None => (None, String::new()),
    };
    Ok(sqlx::query_as(&sql)
        .bind(org)
        .bind(state)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// The HubSpot id linked to a profile in the portal.
pub async fn link(
    pool: &PgPool,
    org: &str,
    portal: i64,
    object: ObjectType,
    profile_id: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT hubspot_id FROM profile_links \
         WHERE org_id = $1 AND portal_id = $2 AND object = $3 AND profile_id = $4",
    )
    .bind(org)
    .bind(portal)
    .bind(object as i32)
    .bind(profile_id)
    .fetch_optional(pool)
    .await?)
}

/// One profile → HubSpot record link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Provider profile id.
    pub profile_id: String,
    /// HubSpot id.
    pub hubspot_id: String,
}

/// Stores links (newest wins) and marks the pending activities of their profiles due now.
/// Returns how many activities became due.
pub async fn upsert_links(
    conn: &mut PgConnection,
    org: &str,
    portal: i64,
    object: ObjectType,
    source: &str,
    links: &[Link],
) -> Result<u64> {
    if links.is_empty() {
        return Ok(0);
    }
    let profiles: Vec<&str> = links.iter().map(|l| l.profile_id.as_str()).collect();
    let ids: Vec<&str> = links.iter().map(|l| l.hubspot_id.as_str()).collect();
    sqlx::query(
        "INSERT INTO profile_links (org_id, portal_id, object, profile_id, hubspot_id, source, updated_at) \
         SELECT DISTINCT ON (p) $1, $2, $3, p, h, $4, now() FROM UNNEST($5::text[], $6::text[]) AS u(p, h) \
         ON CONFLICT (org_id, object, profile_id) DO UPDATE SET portal_id = EXCLUDED.portal_id, \
         hubspot_id = EXCLUDED.hubspot_id, source = EXCLUDED.source, updated_at = now()",
    )
    .bind(org)
    .bind(portal)
    .bind(object as i32)
    .bind(source)
    .bind(&profiles)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let column = if object == ObjectType::Companies {
        "company_profile_id"
    } else {
        "contact_profile_id"
    };
    let due = sqlx::query(&format!(
        "UPDATE writeback_activities SET next_attempt_at = now(), updated_at = now() \
         WHERE org_id = $1 AND state = 'pending' AND {column} = ANY($2)"
    ))
    .bind(org)
    .bind(&profiles)
    .execute(&mut *conn)
    .await?;
    Ok(due.rows_affected())
}

/// Removes links that a filtering run found stale (only when they still point to that record).
pub async fn remove_links(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectType,
    links: &[Link],
) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let profiles: Vec<&str> = links.iter().map(|l| l.profile_id.as_str()).collect();
    let ids: Vec<&str> = links.iter().map(|l| l.hubspot_id.as_str()).collect();
    sqlx::query(
        "DELETE FROM profile_links l USING UNNEST($3::text[], $4::text[]) AS u(p, h) \
         WHERE l.org_id = $1 AND l.object = $2 AND l.profile_id = u.p AND l.hubspot_id = u.h \
         AND l.source = 'filtering'",
    )
    .bind(org)
    .bind(object as i32)
    .bind(&profiles)
    .bind(&ids)
    .execute(conn)
    .await?;
    Ok(())
}
