//! All SQL of the filtering service (schema `filtering`), returning domain types.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::error::Result;
use crate::filters::{DealWindow, Mode, ObjectFilter, ValueFilter};
use crate::model::{Match, ObjectKind, ObjectStats, Run, RunState};

// ---------------------------------------------------------------- profiles

/// A profile with its encoded match keys, ready to store.
#[derive(Debug, Clone)]
pub struct ProfileRow {
    /// Companies or contacts.
    pub kind: ObjectKind,
    /// Provider id.
    pub profile_id: String,
    /// Provider's change time (older updates are ignored).
    pub updated_at: DateTime<Utc>,
    /// Encoded match keys.
    pub keys: Vec<String>,
}

/// Upserts profiles and replaces their keys; returns how many were newer than what was stored.
pub async fn upsert_profiles(conn: &mut PgConnection, rows: &[ProfileRow]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    // One statement cannot touch the same row twice: the last occurrence in the chunk wins.
    let mut last: HashMap<(i16, &str), &ProfileRow> = HashMap::with_capacity(rows.len());
    for r in rows {
        last.insert((r.kind.code(), r.profile_id.as_str()), r);
    }
    let kinds: Vec<i16> = last.keys().map(|k| k.0).collect();
    let ids: Vec<&str> = last.keys().map(|k| k.1).collect();
    let times: Vec<DateTime<Utc>> = last.values().map(|r| r.updated_at).collect();
    let changed = sqlx::query(
        "INSERT INTO profiles (kind, profile_id, updated_at) \
         SELECT * FROM UNNEST($1::smallint[], $2::text[], $3::timestamptz[]) \
         ON CONFLICT (kind, profile_id) DO UPDATE SET updated_at = EXCLUDED.updated_at \
         WHERE profiles.updated_at <= EXCLUDED.updated_at \
         RETURNING kind, profile_id, (xmax = 0) AS inserted",
    )
    .bind(&kinds)
    .bind(&ids)
    .bind(&times)
    .fetch_all(&mut *conn)
    .await?;
    if changed.is_empty() {
        return Ok(0);
    }
    let mut del_kinds = Vec::with_capacity(changed.len());
    let mut del_ids = Vec::with_capacity(changed.len());
    let (mut key_vals, mut key_kinds, mut key_ids) = (Vec::new(), Vec::new(), Vec::new());
    for row in &changed {
        let kind: i16 = row.get(0);
        let id: String = row.get(1);
        let inserted: bool = row.get(2);
        if let Some(p) = last.get(&(kind, id.as_str())) {
            for k in &p.keys {
                key_vals.push(k.as_str());
                key_kinds.push(kind);
                key_ids.push(p.profile_id.as_str());
            }
        }
        // A profile new to the index has no keys to replace.
        if !inserted {
            del_kinds.push(kind);
            del_ids.push(id);
        }
    }
    if !del_ids.is_empty() {
        sqlx::query(
        "DELETE FROM profile_keys k USING UNNEST($1::smallint[], $2::text[]) AS d(kind, profile_id) \
         WHERE k.kind = d.kind AND k.profile_id = d.profile_id",
    )
    .bind(&del_kinds)
    .bind(&del_ids)
    .execute(&mut *conn)
    .await?;
    }
    sqlx::query(
        "INSERT INTO profile_keys (key, kind, profile_id) \
         SELECT * FROM UNNEST($1::text[], $2::smallint[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&key_vals)
    .bind(&key_kinds)
    .bind(&key_ids)
    .execute(&mut *conn)
    .await?;
    Ok(changed.len() as u64)
}

/// Deletes profiles (and their keys) unless the stored one is newer than `occurred_at`.
pub async fn delete_profiles(
    conn: &mut PgConnection,
    refs: &[(ObjectKind, String)],
    occurred_at: Option<DateTime<Utc>>,
) -> Result<u64> {
    if refs.is_empty() {
        return Ok(0);
    }
    let kinds: Vec<i16> = refs.iter().map(|r| r.0.code()).collect();
    let ids: Vec<&str> = refs.iter().map(|r| r.1.as_str()).collect();
    let deleted = sqlx::query(
        "DELETE FROM profiles p USING UNNEST($1::smallint[], $2::text[]) AS d(kind, profile_id) \
         WHERE p.kind = d.kind AND p.profile_id = d.profile_id \
         AND ($3::timestamptz IS NULL OR p.updated_at <= $3) RETURNING p.kind, p.profile_id",
    )
    .bind(&kinds)
    .bind(&ids)
    .bind(occurred_at)
    .fetch_all(&mut *conn)
    .await?;
    let kinds: Vec<i16> = deleted.iter().map(|r| r.get(0)).collect();
    let ids: Vec<String> = deleted.iter().map(|r| r.get(1)).collect();
    sqlx::query(
        "DELETE FROM profile_keys k USING UNNEST($1::smallint[], $2::text[]) AS d(kind, profile_id) \
         WHERE k.kind = d.kind AND k.profile_id = d.profile_id",
    )
    .bind(&kinds)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    Ok(deleted.len() as u64)
}

/// Profile per key for a page of keys (the smallest profile id when several share a key).
pub async fn lookup_keys(pool: &PgPool, keys: &[String]) -> Result<HashMap<String, String>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT key, min(profile_id) FROM profile_keys WHERE key = ANY($1) GROUP BY key",
    )
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

// ---------------------------------------------------------------- settings

/// Org-wide settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgSettings {
    /// Email alerts for matches.
    pub email_alerts: bool,
    /// When filter settings were last saved.
    pub settings_updated_at: Option<DateTime<Utc>>,
    /// The org has the engagement product.
    pub engagement_product: bool,
    /// Advanced Sync on.
    pub advanced_sync: bool,
    /// Last Advanced Sync import.
    pub advanced_synced_at: Option<DateTime<Utc>>,
}

/// The org's settings (defaults when none stored).
pub async fn org_settings(conn: &mut PgConnection, org: &str) -> Result<OrgSettings> {
    let row = sqlx::query(
        "SELECT email_alerts, settings_updated_at, engagement_product, advanced_sync, advanced_synced_at \
         FROM org_settings WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .map(|r| OrgSettings {
            email_alerts: r.get(0),
            settings_updated_at: r.get(1),
            engagement_product: r.get(2),
            advanced_sync: r.get(3),
            advanced_synced_at: r.get(4),
        })
        .unwrap_or_default())
}

/// Stores the org's settings.
pub async fn save_org_settings(conn: &mut PgConnection, org: &str, s: &OrgSettings) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_settings (org_id, email_alerts, settings_updated_at, engagement_product, advanced_sync, advanced_synced_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id) DO UPDATE SET email_alerts = $2, \
         settings_updated_at = $3, engagement_product = $4, advanced_sync = $5, advanced_synced_at = $6",
    )
    .bind(org)
    .bind(s.email_alerts)
    .bind(s.settings_updated_at)
    .bind(s.engagement_product)
    .bind(s.advanced_sync)
    .bind(s.advanced_synced_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Filter settings of the three objects (defaults for those never saved), in API order.
pub async fn load_filters(conn: &mut PgConnection, org: &str) -> Result<Vec<ObjectFilter>> {
    let rows = sqlx::query(
        "SELECT object, enabled, owner_mode, owner_ids, type_mode, company_types, deal_window, \
         require_deals, exclude_email_opt_outs, contact_list_ids FROM object_settings WHERE org_id = $1",
    )
    .bind(org)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<ObjectFilter> = ObjectKind::ALL
        .iter()
        .map(|o| ObjectFilter::new(*o))
        .collect();
    for r in rows {
        let code: i16 = r.get(0);
        let Some(object) = ObjectKind::from_code(i32::from(code)) else {
            continue;
        };
        let f = ObjectFilter {
            object,
            enabled: r.get(1),
            owners: ValueFilter {
                mode: Mode::from_i32(i32::from(r.get::<i16, _>(2))),
                values: r.get(3),
            },
            company_types: ValueFilter {
                mode: Mode::from_i32(i32::from(r.get::<i16, _>(4))),
                values: r.get(5),
            },
            deal_window: DealWindow::from_i32(i32::from(r.get::<i16, _>(6))),
            require_deals: r.get(7),
            exclude_email_opt_outs: r.get(8),
            contact_list_ids: r.get(9),
        };
        if let Some(slot) = out.iter_mut().find(|x| x.object == object) {
            *slot = f;
        }
    }
    Ok(out)
}

/// Stores one object's filter settings.
pub async fn save_filter(conn: &mut PgConnection, org: &str, f: &ObjectFilter) -> Result<()> {
    sqlx::query(
        "INSERT INTO object_settings (org_id, object, enabled, owner_mode, owner_ids, type_mode, company_types, \
         deal_window, require_deals, exclude_email_opt_outs, contact_list_ids, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now()) \
         ON CONFLICT (org_id, object) DO UPDATE SET enabled = $3, owner_mode = $4, owner_ids = $5, \
         type_mode = $6, company_types = $7, deal_window = $8, require_deals = $9, \
         exclude_email_opt_outs = $10, contact_list_ids = $11, updated_at = now()",
    )
    .bind(org)
    .bind(f.object.code())
    .bind(f.enabled)
    .bind(f.owners.mode.as_i32() as i16)
    .bind(&f.owners.values)
    .bind(f.company_types.mode.as_i32() as i16)
    .bind(&f.company_types.values)
    .bind(f.deal_window.as_i32() as i16)
    .bind(f.require_deals)
    .bind(f.exclude_email_opt_outs)
    .bind(&f.contact_list_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Remembers an admin's email (alert recipient).
pub async fn record_admin(pool: &PgPool, org: &str, user: &str, email: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_admins (org_id, user_id, email) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id, user_id) DO UPDATE SET email = $3, seen_at = now() \
         WHERE org_admins.email <> $3",
    )
    .bind(org)
    .bind(user)
    .bind(email)
    .execute(pool)
    .await?;
    Ok(())
}

/// Emails of the org's admins.
pub async fn admin_emails(pool: &PgPool, org: &str) -> Result<Vec<(String, String)>> {
    let rows =
        sqlx::query("SELECT user_id, email FROM org_admins WHERE org_id = $1 ORDER BY user_id")
            .bind(org)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

// ---------------------------------------------------------------- schedules

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    /// Org.
    pub org_id: String,
    /// 1 weekly, 2 monthly.
    pub frequency: i16,
    /// ISO weekday 1..=7 (weekly).
    pub weekday: i16,
    /// Day of month (monthly).
    pub day_of_month: i16,
    /// Next slot.
    pub next_run_at: Option<DateTime<Utc>>,
}

fn schedule_row(r: &sqlx::postgres::PgRow) -> ScheduleRow {
    ScheduleRow {
        org_id: r.get(0),
        frequency: r.get(1),
        weekday: r.get(2),
        day_of_month: r.get(3),
        next_run_at: r.get(4),
    }
}

/// The org's schedule.
pub async fn get_schedule(conn: &mut PgConnection, org: &str) -> Result<Option<ScheduleRow>> {
    let row = sqlx::query(
        "SELECT org_id, frequency, weekday, day_of_month, next_run_at FROM schedules WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(schedule_row))
}

/// Stores a schedule.
pub async fn save_schedule(conn: &mut PgConnection, s: &ScheduleRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules (org_id, frequency, weekday, day_of_month, next_run_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (org_id) DO UPDATE SET frequency = $2, \
         weekday = $3, day_of_month = $4, next_run_at = $5, updated_at = now()",
    )
    .bind(&s.org_id)
    .bind(s.frequency)
    .bind(s.weekday)
    .bind(s.day_of_month)
    .bind(s.next_run_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Schedules whose slot has come, locked for this transaction (other replicas skip them).
pub async fn due_schedules(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<ScheduleRow>> {
    let rows = sqlx::query(
        "SELECT org_id, frequency, weekday, day_of_month, next_run_at FROM schedules \
         WHERE next_run_at IS NOT NULL AND next_run_at <= $1 ORDER BY next_run_at LIMIT 100 \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(schedule_row).collect())
}

// ---------------------------------------------------------------- runs

const RUN_COLUMNS: &str = "run_id, org_id, trigger, objects, state, stats, requested_at, started_at, \
                           finished_at, requested_by, message, scheduled_for";

fn run_row(r: &sqlx::postgres::PgRow) -> Run {
    let objects: Vec<i16> = r.get(3);
    let stats: serde_json::Value = r.get(5);
    Run {
        run_id: r.get(0),
        org_id: r.get(1),
        trigger: r.get(2),
        objects: objects
            .into_iter()
            .filter_map(|c| ObjectKind::from_code(i32::from(c)))
            .collect(),
        state: r.get(4),
        stats: serde_json::from_value(stats).unwrap_or_default(),
        requested_at: r.get(6),
        started_at: r.get(7),
        finished_at: r.get(8),
        requested_by: r.get(9),
        message: r.get(10),
        scheduled_for: r.get(11),
    }
}

/// Inserts a queued run; false when the org already has a queued or running run.
pub async fn insert_run(conn: &mut PgConnection, run: &Run) -> Result<bool> {
    let objects: Vec<i16> = run.objects.iter().map(|o| o.code()).collect();
    let inserted = sqlx::query(
        "INSERT INTO runs (run_id, org_id, trigger, objects, state, requested_at, requested_by, scheduled_for) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (org_id) WHERE state IN (1, 2) DO NOTHING",
    )
    .bind(run.run_id)
    .bind(&run.org_id)
    .bind(run.trigger)
    .bind(&objects)
    .bind(RunState::Queued.code())
    .bind(run.requested_at)
    .bind(&run.requested_by)
    .bind(run.scheduled_for)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The org's queued or running run.
pub async fn active_run(conn: &mut PgConnection, org: &str) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND state IN (1, 2)"
    ))
    .bind(org)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

/// One run of the org.
pub async fn get_run(conn: &mut PgConnection, org: &str, run_id: Uuid) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND run_id = $2"
    ))
    .bind(org)
    .bind(run_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

/// A page of the org's runs, newest first, after the cursor (requested_at, run_id).
pub async fn list_runs(
    conn: &mut PgConnection,
    org: &str,
    state: Option<i16>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Run>> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND ($2::smallint IS NULL OR state = $2) \
         AND ($3::timestamptz IS NULL OR (requested_at, run_id) < ($3, $4)) \
         ORDER BY requested_at DESC, run_id DESC LIMIT $5"
    ))
    .bind(org)
    .bind(state)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(run_row).collect())
}

/// The newest finished run of the org covering `object`.
pub async fn last_run_of(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND $2 = ANY(objects) \
         ORDER BY requested_at DESC, run_id DESC LIMIT 1"
    ))
    .bind(org)
    .bind(object.code())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

/// The newest COMPLETED run of the org covering `object`.
pub async fn last_completed_of(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE org_id = $1 AND $2 = ANY(objects) AND state = 3 \
         ORDER BY finished_at DESC LIMIT 1"
    ))
    .bind(org)
    .bind(object.code())
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

/// A run claimed by this replica: the run and the id of this execution attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The run.
    pub run: Run,
    /// This attempt (matches written by it carry it).
    pub attempt_id: Uuid,
    /// How many attempts so far, this one included.
    pub attempts: i32,
}

/// Takes the oldest queued run, or a running one whose lease expired (its replica died).
pub async fn claim_run(pool: &PgPool, replica: &str, lease_secs: f64) -> Result<Option<Claimed>> {
    let attempt = Uuid::now_v7();
    let row = sqlx::query(&format!(
        "UPDATE runs SET state = 2, lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2), \
         attempt_id = $3, attempts = attempts + 1, started_at = COALESCE(started_at, now()) \
         WHERE run_id = (SELECT run_id FROM runs WHERE state IN (1, 2) \
           AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
           ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {RUN_COLUMNS}, attempts"
    ))
    .bind(replica)
    .bind(lease_secs)
    .bind(attempt)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Claimed {
        run: run_row(&r),
        attempt_id: attempt,
        attempts: r.get(12),
    }))
}

/// Extends the lease and stores progress; false when the lease was lost to another replica.
pub async fn heartbeat(
    pool: &PgPool,
    run_id: Uuid,
    attempt: Uuid,
    lease_secs: f64,
    stats: &[ObjectStats],
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3), stats = $4 \
         WHERE run_id = $1 AND attempt_id = $2 AND state = 2",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(lease_secs)
    .bind(serde_json::to_value(stats).unwrap_or_default())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends an attempt's run; false when the attempt no longer owns it.
pub async fn finish_run(
    conn: &mut PgConnection,
    run_id: Uuid,
    attempt: Uuid,
    state: RunState,
    stats: &[ObjectStats],
    message: &str,
) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "UPDATE runs SET state = $3, stats = $4, message = $5, finished_at = now(), \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE run_id = $1 AND attempt_id = $2 AND state = 2 RETURNING {RUN_COLUMNS}"
    ))
    .bind(run_id)
    .bind(attempt)
    .bind(state.code())
    .bind(serde_json::to_value(stats).unwrap_or_default())
    .bind(message)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

/// Cancels the org's queued run (not yet started) — e.g. filtering was turned off.
pub async fn cancel_queued(
    conn: &mut PgConnection,
    org: &str,
    message: &str,
) -> Result<Option<Run>> {
    let row = sqlx::query(&format!(
        "UPDATE runs SET state = 6, message = $2, finished_at = now() \
         WHERE org_id = $1 AND state = 1 RETURNING {RUN_COLUMNS}"
    ))
    .bind(org)
    .bind(message)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(run_row))
}

// ---------------------------------------------------------------- idempotency

/// The stored result of an idempotent call: (request hash, encoded response).
pub async fn idempotent_result(
    conn: &mut PgConnection,
    org: &str,
    method: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let row = sqlx::query(
        "SELECT request_hash, response FROM idempotency WHERE org_id = $1 AND method = $2 AND key = $3",
    )
    .bind(org)
    .bind(method)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Stores the result of an idempotent call.
pub async fn store_idempotent_result(
    conn: &mut PgConnection,
    org: &str,
    method: &str,
    key: &str,
    request_hash: &[u8],
    response: &[u8],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency (org_id, method, key, request_hash, response) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(org)
    .bind(method)
    .bind(key)
    .bind(request_hash)
    .bind(response)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- matches

/// A match to write: one profile, its (already collapsed within the batch) HubSpot records.
#[derive(Debug, Clone)]
pub struct MatchRow {
    /// Profile.
    pub profile_id: String,
    /// Representative record.
    pub hubspot_id: String,
    /// Rank of the representative (create time in ms; smaller is older).
    pub rank: i64,
    /// All records, representative first.
    pub collapsed_ids: Vec<String>,
    /// Owner of the representative.
    pub owner_id: String,
    /// Owner's name.
    pub owner_name: String,
    /// Link.
    pub hubspot_url: String,
    /// Key kind.
    pub matched_by: String,
}

/// A change for the match events: (profile, representative HubSpot id, owner).
pub type Change = (String, String, String);

/// Upserts matches of one object for a run attempt; returns the matches that are new.
///
/// Within one attempt, a profile seen again gets the record merged in (the older record stays the
/// representative); a row of an earlier attempt is replaced, which is how changed records update.
pub async fn upsert_matches(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
    run_id: Uuid,
    attempt: Uuid,
    rows: &[MatchRow],
) -> Result<Vec<Change>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let profiles: Vec<&str> = rows.iter().map(|r| r.profile_id.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.hubspot_id.as_str()).collect();
    let ranks: Vec<i64> = rows.iter().map(|r| r.rank).collect();
    // Arrays of arrays must be rectangular in Postgres: collapsed ids travel as one joined string.
    let collapsed: Vec<String> = rows
        .iter()
        .map(|r| r.collapsed_ids.join("\u{1f}"))
        .collect();
    let owners: Vec<&str> = rows.iter().map(|r| r.owner_id.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.owner_name.as_str()).collect();
    let urls: Vec<&str> = rows.iter().map(|r| r.hubspot_url.as_str()).collect();
    let by: Vec<&str> = rows.iter().map(|r| r.matched_by.as_str()).collect();
    let out = sqlx::query(
        "INSERT INTO matches AS m (org_id, object, profile_id, hubspot_id, hubspot_rank, collapsed_ids, owner_id, \
           owner_name, filtered_at, hubspot_url, matched_by, run_id, attempt_id) \
         SELECT $1, $2, p, h, r, string_to_array(c, E'\\x1f'), o, n, now(), u, b, $3, $4 \
         FROM UNNEST($5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
           AS t(p, h, r, c, o, n, u, b) \
         ON CONFLICT (org_id, object, profile_id) DO UPDATE SET \
           hubspot_id = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.hubspot_id ELSE EXCLUDED.hubspot_id END, \
           hubspot_rank = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.hubspot_rank ELSE EXCLUDED.hubspot_rank END, \
           owner_id = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.owner_id ELSE EXCLUDED.owner_id END, \
           owner_name = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.owner_name ELSE EXCLUDED.owner_name END, \
           hubspot_url = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.hubspot_url ELSE EXCLUDED.hubspot_url END, \
           matched_by = CASE WHEN m.attempt_id = EXCLUDED.attempt_id AND (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) THEN m.matched_by ELSE EXCLUDED.matched_by END, \
           collapsed_ids = CASE WHEN m.attempt_id <> EXCLUDED.attempt_id THEN EXCLUDED.collapsed_ids \
             WHEN (m.hubspot_rank, m.hubspot_id) <= (EXCLUDED.hubspot_rank, EXCLUDED.hubspot_id) \
               THEN m.collapsed_ids || ARRAY(SELECT x FROM unnest(EXCLUDED.collapsed_ids) x WHERE x <> ALL(m.collapsed_ids)) \
             ELSE EXCLUDED.collapsed_ids || ARRAY(SELECT x FROM unnest(m.collapsed_ids) x WHERE x <> ALL(EXCLUDED.collapsed_ids)) END, \
           filtered_at = now(), run_id = EXCLUDED.run_id, attempt_id = EXCLUDED.attempt_id \
         RETURNING (xmax = 0) AS inserted, profile_id, hubspot_id, owner_id",
    )
    .bind(org)
    .bind(object.code())
    .bind(run_id)
    .bind(attempt)
    .bind(&profiles)
    .bind(&ids)
    .bind(&ranks)
    .bind(&collapsed)
    .bind(&owners)
    .bind(&names)
    .bind(&urls)
    .bind(&by)
    .fetch_all(conn)
    .await?;
    Ok(out
        .into_iter()
        .filter(|r| r.get::<bool, _>(0))
        .map(|r| (r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// A deal of an attempt that passed the deal filters, with one of its companies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptDeal {
    /// Deal id.
    pub deal_id: String,
    /// One associated company.
    pub company_id: String,
    /// The deal's owner.
    pub owner_id: String,
    /// The deal's rank (create time in ms).
    pub rank: i64,
    /// Whether the deal is linked to company profiles through this company (one per deal).
    pub linked: bool,
}

/// Records the deals of an attempt that passed the deal filters, one row per associated company.
pub async fn insert_attempt_deals(
    conn: &mut PgConnection,
    attempt: Uuid,
    deals: &[AttemptDeal],
) -> Result<()> {
    if deals.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deals.iter().map(|d| d.deal_id.as_str()).collect();
    let companies: Vec<&str> = deals.iter().map(|d| d.company_id.as_str()).collect();
    let owners: Vec<&str> = deals.iter().map(|d| d.owner_id.as_str()).collect();
    let ranks: Vec<i64> = deals.iter().map(|d| d.rank).collect();
    let linked: Vec<bool> = deals.iter().map(|d| d.linked).collect();
    sqlx::query(
        "INSERT INTO attempt_deals (attempt_id, deal_id, company_id, owner_id, rank, linked) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bool[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(attempt)
    .bind(&ids)
    .bind(&companies)
    .bind(&owners)
    .bind(&ranks)
    .bind(&linked)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which of `companies` have deals in this attempt.
pub async fn companies_with_deals(
    pool: &PgPool,
    attempt: Uuid,
    companies: &[String],
) -> Result<HashSet<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT company_id FROM attempt_deals WHERE attempt_id = $1 AND company_id = ANY($2)",
    )
    .bind(attempt)
    .bind(companies)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// Links the attempt's deals to company profiles through the company matches: one deal match per
/// company profile, its deals collapsed (oldest first). The new matches go to the change list
/// ([`begin_changes`]); returns how many there are.
///
/// The company matches are unnested once and hash-joined with the deals by company id (a GIN
/// `@>` probe per deal was a nested loop: minutes at 500,000 deals). When this attempt matched
/// companies, only its own company matches count (older ones are about to be removed as stale).
#[allow(clippy::too_many_arguments)]
pub async fn link_deals(
    conn: &mut PgConnection,
    org: &str,
    run_id: Uuid,
    attempt: Uuid,
    url_prefix: &str,
    owner_ids: &[String],
    owner_names: &[String],
    companies_this_attempt: bool,
) -> Result<i64> {
    let added = sqlx::query(
        "WITH ins AS (INSERT INTO matches AS m (org_id, object, profile_id, hubspot_id, hubspot_rank, collapsed_ids, owner_id, \
           owner_name, filtered_at, hubspot_url, matched_by, run_id, attempt_id) \
         SELECT $1, 3, g.profile_id, g.ids[1], g.rank, g.ids, g.owners[1], COALESCE(o.name, ''), now(), \
           $4 || g.ids[1], 'company', $2, $3 \
         FROM (SELECT c.profile_id, array_agg(d.deal_id ORDER BY d.rank, d.deal_id) AS ids, \
                 array_agg(d.owner_id ORDER BY d.rank, d.deal_id) AS owners, min(d.rank) AS rank \
               FROM attempt_deals d JOIN (SELECT unnest(collapsed_ids) AS company_id, profile_id \
                   FROM matches WHERE org_id = $1 AND object = 1 AND (NOT $7 OR attempt_id = $3)) c \
                 ON c.company_id = d.company_id \
               WHERE d.attempt_id = $3 AND d.linked GROUP BY c.profile_id) g \
         LEFT JOIN UNNEST($5::text[], $6::text[]) AS o(id, name) ON o.id = g.owners[1] \
         ON CONFLICT (org_id, object, profile_id) DO UPDATE SET hubspot_id = EXCLUDED.hubspot_id, \
           hubspot_rank = EXCLUDED.hubspot_rank, collapsed_ids = EXCLUDED.collapsed_ids, \
           owner_id = EXCLUDED.owner_id, owner_name = EXCLUDED.owner_name, filtered_at = now(), \
           hubspot_url = EXCLUDED.hubspot_url, matched_by = EXCLUDED.matched_by, \
           run_id = EXCLUDED.run_id, attempt_id = EXCLUDED.attempt_id \
         RETURNING (xmax = 0) AS inserted, profile_id, hubspot_id, owner_id) \
         INSERT INTO run_changes (object, removed, profile_id, hubspot_id, owner_id) \
         SELECT 3, false, profile_id, hubspot_id, owner_id FROM ins WHERE inserted",
    )
    .bind(org)
    .bind(run_id)
    .bind(attempt)
    .bind(url_prefix)
    .bind(owner_ids)
    .bind(owner_names)
    .bind(companies_this_attempt)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(i64::try_from(added).unwrap_or(i64::MAX))
}

/// Deals that matched in an attempt (number of deal records linked).
pub async fn deals_linked(conn: &mut PgConnection, org: &str, attempt: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(cardinality(collapsed_ids)), 0)::bigint FROM matches \
         WHERE org_id = $1 AND object = 3 AND attempt_id = $2",
    )
    .bind(org)
    .bind(attempt)
    .fetch_one(conn)
    .await?)
}

/// Forgets an attempt's working rows.
pub async fn drop_attempt(pool: &PgPool, attempt: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM attempt_deals WHERE attempt_id = $1")
        .bind(attempt)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes matches of `object` not confirmed by `attempt` (stale) into the change list
/// ([`begin_changes`]); returns how many.
pub async fn remove_stale(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
    attempt: Uuid,
) -> Result<i64> {
    let removed = sqlx::query(
        "WITH d AS (DELETE FROM matches WHERE org_id = $1 AND object = $2 AND attempt_id <> $3 \
           RETURNING profile_id, hubspot_id, owner_id) \
         INSERT INTO run_changes (object, removed, profile_id, hubspot_id, owner_id) \
         SELECT $2, true, profile_id, hubspot_id, owner_id FROM d",
    )
    .bind(org)
    .bind(object.code())
    .bind(attempt)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(i64::try_from(removed).unwrap_or(i64::MAX))
}

/// Starts the change list of a run's final transaction: the matches it adds (deals) and removes
/// (stale), kept in Postgres and read back a page at a time, so a run that changes millions of
/// matches never holds them in memory. Dropped at commit.
pub async fn begin_changes(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "CREATE TEMP TABLE run_changes (n BIGSERIAL PRIMARY KEY, object SMALLINT NOT NULL, \
         removed BOOLEAN NOT NULL, profile_id TEXT NOT NULL, hubspot_id TEXT NOT NULL, \
         owner_id TEXT NOT NULL) ON COMMIT DROP",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One page of the change list of `object` after position `after`: (position, removed, change).
pub async fn changes_page(
    conn: &mut PgConnection,
    object: ObjectKind,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, bool, Change)>> {
    let rows = sqlx::query(
        "SELECT n, removed, profile_id, hubspot_id, owner_id FROM run_changes \
         WHERE object = $1 AND n > $2 ORDER BY n LIMIT $3",
    )
    .bind(object.code())
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), (r.get(2), r.get(3), r.get(4))))
        .collect())
}

/// Profiles linked (rows) and HubSpot records behind them, for one object.
pub async fn linked_counts(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT count(*)::bigint, COALESCE(sum(cardinality(collapsed_ids)), 0)::bigint FROM matches \
         WHERE org_id = $1 AND object = $2",
    )
    .bind(org)
    .bind(object.code())
    .fetch_one(conn)
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes all matches of the objects; returns them per object.
pub async fn clear_matches(
    conn: &mut PgConnection,
    org: &str,
    object: ObjectKind,
) -> Result<Vec<Change>> {
    let rows = sqlx::query(
        "DELETE FROM matches WHERE org_id = $1 AND object = $2 RETURNING profile_id, hubspot_id, owner_id",
    )
    .bind(org)
    .bind(object.code())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Filters of ListMatches.
#[derive(Debug, Clone, Default)]
pub struct MatchQuery {
    /// Only this object.
    pub object: Option<ObjectKind>,
    /// Only these owners.
    pub owner_ids: Vec<String>,
    /// Only these profiles.
    pub profile_ids: Vec<String>,
    /// After (object code, profile id).
    pub after: Option<(i16, String)>,
    /// Page size.
    pub limit: i64,
}

/// A page of matches ordered by object, then profile id.
pub async fn list_matches(
    conn: &mut PgConnection,
    org: &str,
    q: &MatchQuery,
) -> Result<Vec<Match>> {
    let rows = sqlx::query(
        "SELECT object, profile_id, hubspot_id, collapsed_ids, owner_id, owner_name, filtered_at, hubspot_url, matched_by \
         FROM matches WHERE org_id = $1 AND ($2::smallint IS NULL OR object = $2) \
         AND (cardinality($3::text[]) = 0 OR owner_id = ANY($3)) \
         AND (cardinality($4::text[]) = 0 OR profile_id = ANY($4)) \
         AND ($5::smallint IS NULL OR (object, profile_id) > ($5, $6)) \
         ORDER BY object, profile_id LIMIT $7",
    )
    .bind(org)
    .bind(q.object.map(ObjectKind::code))
    .bind(&q.owner_ids)
    .bind(&q.profile_ids)
    .bind(q.after.as_ref().map(|a| a.0))
    .bind(q.after.as_ref().map(|a| a.1.clone()))
    .bind(q.limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Match {
                object: ObjectKind::from_code(i32::from(r.get::<i16, _>(0)))?,
                profile_id: r.get(1),
                hubspot_id: r.get(2),
                collapsed_ids: r.get(3),
                owner_id: r.get(4),
                owner_name: r.get(5),
                filtered_at: r.get(6),
                hubspot_url: r.get(7),
                matched_by: r.get(8),
            })
        })
        .collect())
}

// ---------------------------------------------------------------- advanced sync

/// Deal properties whose changes Advanced Sync keeps as deal history.
pub const DEAL_HISTORY_PROPERTIES: &[&str] = &[
    "dealstage",
    "amount",
    "closedate",
    "pipeline",
    "hubspot_owner_id",
];

/// Upserts Advanced Sync records (all fields) of one object; for deals, first appends a history
/// row for every tracked property whose value changed since the last import.
pub async fn upsert_sync_records(
    conn: &mut PgConnection,
    org: &str,
    object: &str,
    rows: &[(String, serde_json::Value, Option<String>)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.0.as_str(), i);
    }
    let picked: Vec<&(String, serde_json::Value, Option<String>)> =
        last.values().map(|i| &rows[*i]).collect();
    let ids: Vec<&str> = picked.iter().map(|r| r.0.as_str()).collect();
    let props: Vec<&serde_json::Value> = picked.iter().map(|r| &r.1).collect();
    let profiles: Vec<Option<&str>> = picked.iter().map(|r| r.2.as_deref()).collect();
    let props_json = serde_json::to_value(&props).unwrap_or_default();
    if object == "deals" {
        sqlx::query(
            "INSERT INTO deal_history (org_id, deal_id, property, value, observed_at) \
             SELECT $1, t.id, p.name, t.props ->> p.name, now() \
             FROM (SELECT * FROM UNNEST($2::text[]) WITH ORDINALITY AS u(id, n)) u \
             JOIN LATERAL (SELECT u.id, ($3::jsonb -> (u.n::int - 1)) AS props) t ON true \
             CROSS JOIN UNNEST($4::text[]) AS p(name) \
             LEFT JOIN sync_records s ON s.org_id = $1 AND s.object = 'deals' AND s.record_id = t.id \
             WHERE (s.record_id IS NULL AND t.props ? p.name) \
                OR (s.record_id IS NOT NULL AND (s.properties ->> p.name) IS DISTINCT FROM (t.props ->> p.name)) \
             ON CONFLICT DO NOTHING",
        )
        .bind(org)
        .bind(&ids)
        .bind(&props_json)
        .bind(DEAL_HISTORY_PROPERTIES)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO sync_records (org_id, object, record_id, properties, matched_profile_id, synced_at) \
         SELECT $1, $2, u.id, $4::jsonb -> (u.n::int - 1), p.profile, now() \
         FROM UNNEST($3::text[]) WITH ORDINALITY AS u(id, n) \
         JOIN UNNEST($5::text[]) WITH ORDINALITY AS p(profile, n) ON p.n = u.n \
         ON CONFLICT (org_id, object, record_id) DO UPDATE SET properties = EXCLUDED.properties, \
         matched_profile_id = EXCLUDED.matched_profile_id, synced_at = EXCLUDED.synced_at",
    )
    .bind(org)
    .bind(object)
    .bind(&ids)
    .bind(&props_json)
    .bind(&profiles)
    .execute(conn)
    .await?;
    Ok(())
}
