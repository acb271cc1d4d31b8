//! All SQL of the connection service (schema `connection`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::Result;

/// Stored status names.
pub mod status {
    /// Tokens valid.
    pub const CONNECTED: &str = "connected";
    /// Refresh token rejected.
    pub const REAUTH_REQUIRED: &str = "reauth_required";
    /// Disconnected by the primary admin.
    pub const DISCONNECTED: &str = "disconnected";
}

/// A `connections` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnRow {
    pub org_id: String,
    pub portal_id: i64,
    pub status: String,
    pub status_message: String,
    pub enabled: bool,
    pub user_account_mode: bool,
    pub primary_admin_user_id: String,
    pub primary_admin_email: String,
    pub hubspot_user_id: String,
    pub hubspot_email: String,
    pub owner_id: String,
    pub account_type: String,
    pub plan: i32,
    pub time_zone: String,
    pub company_currency: String,
    pub ui_domain: String,
    pub scopes: Vec<String>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A `tokens` row (ciphertexts only).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub org_id: String,
    pub user_id: String,
    pub portal_id: i64,
    pub hubspot_user_id: String,
    pub hubspot_email: String,
    pub key_id: String,
    pub access_token_ct: Vec<u8>,
    pub refresh_token_ct: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub status: String,
    pub connected_at: DateTime<Utc>,
}

/// An `oauth_states` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateRow {
    pub state_id: uuid::Uuid,
    pub org_id: String,
    pub user_id: String,
    pub user_email: String,
    pub flow: String,
    pub return_url: String,
    pub allow_portal_change: bool,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub code_hash: Option<String>,
    pub result: Option<Vec<u8>>,
}

/// An `org_users` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub admin: bool,
    pub owner_id: String,
    pub hubspot_user_id: String,
    pub hubspot_email: String,
    pub hubspot_name: String,
    pub mapping_status: i32,
    pub mapping_updated_at: DateTime<Utc>,
}

/// A `data_sharing` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SharingRow {
    pub share_crm_data: bool,
    pub share_usage_data: bool,
    pub locked_by_contract: bool,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A `contributions` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContributionRow {
    pub contribution_id: uuid::Uuid,
    pub category: i32,
    pub object: i32,
    pub record_count: i64,
    pub source: String,
    pub source_id: String,
    pub occurred_at: DateTime<Utc>,
}

// ---- connections ----

pub async fn connection(conn: &mut PgConnection, org: &str, lock: bool) -> Result<Option<ConnRow>> {
    let sql = if lock {
        "SELECT * FROM connections WHERE org_id = $1 FOR UPDATE"
    } else {
        "SELECT * FROM connections WHERE org_id = $1"
    };
    Ok(sqlx::query_as(sql).bind(org).fetch_optional(conn).await?)
}

pub async fn connection_by_pool(pool: &PgPool, org: &str) -> Result<Option<ConnRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM connections WHERE org_id = $1")
            .bind(org)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn upsert_connection(conn: &mut PgConnection, c: &ConnRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO connections (org_id, portal_id, status, status_message, enabled, user_account_mode, \
           primary_admin_user_id, primary_admin_email, hubspot_user_id, hubspot_email, owner_id, account_type, \
           plan, time_zone, company_currency, ui_domain, scopes, connected_at, updated_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19) \
         ON CONFLICT (org_id) DO UPDATE SET portal_id = EXCLUDED.portal_id, status = EXCLUDED.status, \
           status_message = EXCLUDED.status_message, enabled = EXCLUDED.enabled, \
           user_account_mode = EXCLUDED.user_account_mode, primary_admin_user_id = EXCLUDED.primary_admin_user_id, \
           primary_admin_email = EXCLUDED.primary_admin_email, hubspot_user_id = EXCLUDED.hubspot_user_id, \
           hubspot_email = EXCLUDED.hubspot_email, owner_id = EXCLUDED.owner_id, account_type = EXCLUDED.account_type, \
           plan = EXCLUDED.plan, time_zone = EXCLUDED.time_zone, company_currency = EXCLUDED.company_currency, \
           ui_domain = EXCLUDED.ui_domain, scopes = EXCLUDED.scopes, connected_at = EXCLUDED.connected_at, \
           updated_at = EXCLUDED.updated_at",
    )
    .bind(&c.org_id)
    .bind(c.portal_id)
    .bind(&c.status)
    .bind(&c.status_message)
    .bind(c.enabled)
    .bind(c.user_account_mode)
    .bind(&c.primary_admin_user_id)
    .bind(&c.primary_admin_email)
    .bind(&c.hubspot_user_id)
    .bind(&c.hubspot_email)
    .bind(&c.owner_id)
    .bind(&c.account_type)
    .bind(c.plan)
    .bind(&c.time_zone)
    .bind(&c.company_currency)
    .bind(&c.ui_domain)
    .bind(&c.scopes)
    .bind(c.connected_at)
    .bind(c.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_connection_status(
    conn: &mut PgConnection,
    org: &str,
    status: &str,
    message: &str,
) -> Result<()> {
    sqlx::query("UPDATE connections SET status = $2, status_message = $3, updated_at = now() WHERE org_id = $1")
        .bind(org)
        .bind(status)
        .bind(message)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_org(conn: &mut PgConnection, org: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM connections WHERE org_id = $1")
        .bind(org)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let mut other = 0;
    for sql in [
        "DELETE FROM tokens WHERE org_id = $1",
        "DELETE FROM org_users WHERE org_id = $1",
        "DELETE FROM data_sharing WHERE org_id = $1",
        "DELETE FROM oauth_states WHERE org_id = $1",
    ] {
        other += sqlx::query(sql)
            .bind(org)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(n > 0 || other > 0)
}

pub async fn count_reauth_required(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM connections WHERE status = 'reauth_required'")
            .fetch_one(pool)
            .await?,
    )
}

// ---- tokens ----

pub async fn token(
    conn: &mut PgConnection,
    org: &str,
    user: &str,
    lock: bool,
) -> Result<Option<TokenRow>> {
    let sql = if lock {
        "SELECT * FROM tokens WHERE org_id = $1 AND user_id = $2 FOR UPDATE"
    } else {
        "SELECT * FROM tokens WHERE org_id = $1 AND user_id = $2"
    };
    Ok(sqlx::query_as(sql)
        .bind(org)
        .bind(user)
        .fetch_optional(conn)
        .await?)
}

pub async fn upsert_token(conn: &mut PgConnection, t: &TokenRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (org_id, user_id, portal_id, hubspot_user_id, hubspot_email, key_id, access_token_ct, \
           refresh_token_ct, expires_at, issued_at, status, connected_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
         ON CONFLICT (org_id, user_id) DO UPDATE SET portal_id = EXCLUDED.portal_id, \
           hubspot_user_id = EXCLUDED.hubspot_user_id, hubspot_email = EXCLUDED.hubspot_email, key_id = EXCLUDED.key_id, \
           access_token_ct = EXCLUDED.access_token_ct, refresh_token_ct = EXCLUDED.refresh_token_ct, \
           expires_at = EXCLUDED.expires_at, issued_at = EXCLUDED.issued_at, status = EXCLUDED.status, \
           connected_at = EXCLUDED.connected_at",
    )
    .bind(&t.org_id)
    .bind(&t.user_id)
    .bind(t.portal_id)
    .bind(&t.hubspot_user_id)
    .bind(&t.hubspot_email)
    .bind(&t.key_id)
    .bind(&t.access_token_ct)
    .bind(&t.refresh_token_ct)
    .bind(t.expires_at)
    .bind(t.issued_at)
    .bind(&t.status)
    .bind(t.connected_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_token_status(
    conn: &mut PgConnection,
    org: &str,
    user: &str,
    status: &str,
) -> Result<()> {
    sqlx::query("UPDATE tokens SET status = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(user)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_tokens(conn: &mut PgConnection, org: &str, user: Option<&str>) -> Result<u64> {
    let q = match user {
        Some(u) => sqlx::query("DELETE FROM tokens WHERE org_id = $1 AND user_id = $2")
            .bind(org)
            .bind(u.to_owned()),
        None => sqlx::query("DELETE FROM tokens WHERE org_id = $1").bind(org),
    };
    Ok(q.execute(conn).await?.rows_affected())
}

// ---- OAuth states ----

pub async fn insert_state(conn: &mut PgConnection, s: &StateRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO oauth_states (state_id, org_id, user_id, user_email, flow, return_url, allow_portal_change, expires_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(s.state_id)
    .bind(&s.org_id)
    .bind(&s.user_id)
    .bind(&s.user_email)
    .bind(&s.flow)
    .bind(&s.return_url)
    .bind(s.allow_portal_change)
    .bind(s.expires_at)
    .execute(&mut *conn)
    .await?;
    // Housekeeping: expired, unused states are of no use to anyone.
    sqlx::query("DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'")
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn state_for_update(conn: &mut PgConnection, id: uuid::Uuid) -> Result<Option<StateRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM oauth_states WHERE state_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn mark_state_used(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    code_hash: &str,
    result: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE oauth_states SET used_at = now(), code_hash = $2, result = $3 WHERE state_id = $1",
    )
    .bind(id)
    .bind(code_hash)
    .bind(result)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- org users and mappings ----

/// Inserts or updates a user; returns (inserted, updated).
pub async fn upsert_user(
    conn: &mut PgConnection,
    org: &str,
    user_id: &str,
    email: &str,
    name: &str,
    admin: bool,
) -> Result<(bool, bool)> {
    let row: Option<(bool,)> = sqlx::query_as(
        "INSERT INTO org_users (org_id, user_id, email, display_name, admin) VALUES ($1,$2,$3,$4,$5) \
         ON CONFLICT (org_id, user_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, \
           admin = EXCLUDED.admin \
         WHERE (org_users.email, org_users.display_name, org_users.admin) IS DISTINCT FROM \
               (EXCLUDED.email, EXCLUDED.display_name, EXCLUDED.admin) \
         RETURNING (xmax = 0)",
    )
    .bind(org)
    .bind(user_id)
    .bind(email)
    .bind(name)
    .bind(admin)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((true,)) => (true, false),
        Some((false,)) => (false, true),
        None => (false, false),
    })
}

pub async fn remove_user(conn: &mut PgConnection, org: &str, user_id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM tokens WHERE org_id = $1 AND user_id = $2 AND user_id <> ''")
        .bind(org)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query("DELETE FROM org_users WHERE org_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user_id)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

pub async fn user(conn: &mut PgConnection, org: &str, user_id: &str) -> Result<Option<UserRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM org_users WHERE org_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user_id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn users(conn: &mut PgConnection, org: &str) -> Result<Vec<UserRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM org_users WHERE org_id = $1 ORDER BY display_name, user_id")
            .bind(org)
            .fetch_all(conn)
            .await?,
    )
}

/// One page of users ordered by display name, then id; `query` matches name or email.
pub async fn list_users(
    pool: &PgPool,
    org: &str,
    query: &str,
    status: i32,
    offset: i64,
    limit: i64,
) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM org_users WHERE org_id = $1 \
           AND ($2 = '' OR display_name ILIKE '%' || $2 || '%' OR email ILIKE '%' || $2 || '%') \
           AND ($3 = 0 OR mapping_status = $3) \
         ORDER BY display_name, user_id OFFSET $4 LIMIT $5",
    )
    .bind(org)
    .bind(query)
    .bind(status)
    .bind(offset)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[allow(clippy::too_many_arguments)]
pub async fn set_mapping(
    conn: &mut PgConnection,
    org: &str,
    user_id: &str,
    owner_id: &str,
    hubspot_user_id: &str,
    hubspot_email: &str,
    hubspot_name: &str,
    status: i32,
) -> Result<()> {
    sqlx::query(
        "UPDATE org_users SET owner_id = $3, hubspot_user_id = $4, hubspot_email = $5, hubspot_name = $6, \
           mapping_status = $7, mapping_updated_at = now() WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org)
    .bind(user_id)
    .bind(owner_id)
    .bind(hubspot_user_id)
    .bind(hubspot_email)
    .bind(hubspot_name)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clear_mappings(conn: &mut PgConnection, org: &str, not_mapped: i32) -> Result<()> {
    sqlx::query(
        "UPDATE org_users SET owner_id = '', hubspot_user_id = '', hubspot_email = '', hubspot_name = '', \
           mapping_status = $2, mapping_updated_at = now() WHERE org_id = $1",
    )
    .bind(org)
    .bind(not_mapped)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mapped_count(conn: &mut PgConnection, org: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM org_users WHERE org_id = $1 AND owner_id <> ''")
            .bind(org)
            .fetch_one(conn)
            .await?,
    )
}

// ---- budget ----

/// Locks a portal's budget row (creating it) and returns (paused_until, now) by the database clock.
pub async fn lock_budget(
    conn: &mut PgConnection,
    portal: i64,
    kind: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    sqlx::query(
        "INSERT INTO budget_state (portal_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(portal)
    .bind(kind)
    .execute(&mut *conn)
    .await?;
    let row: (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT paused_until, clock_timestamp() FROM budget_state WHERE portal_id = $1 AND kind = $2 FOR UPDATE",
    )
    .bind(portal)
    .bind(kind)
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Permits granted in `(since, ..]` and the oldest grant time in that range.
pub async fn grants_since(
    conn: &mut PgConnection,
    portal: i64,
    kind: &str,
    since: DateTime<Utc>,
) -> Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query(
        "DELETE FROM budget_grants WHERE portal_id = $1 AND kind = $2 AND granted_at <= $3",
    )
    .bind(portal)
    .bind(kind)
    .bind(since)
    .execute(&mut *conn)
    .await?;
    let row: (Option<i64>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT sum(permits)::BIGINT, min(granted_at) FROM budget_grants WHERE portal_id = $1 AND kind = $2",
    )
    .bind(portal)
    .bind(kind)
    .fetch_one(conn)
    .await?;
    Ok((row.0.unwrap_or(0), row.1))
}

/// Grants in the window, oldest first (to compute when enough permits free up).
pub async fn grants_in_window(
    conn: &mut PgConnection,
    portal: i64,
    kind: &str,
) -> Result<Vec<(DateTime<Utc>, i32)>> {
    Ok(sqlx::query_as("SELECT granted_at, permits FROM budget_grants WHERE portal_id = $1 AND kind = $2 ORDER BY granted_at")
        .bind(portal)
        .bind(kind)
        .fetch_all(conn)
        .await?)
}

pub async fn record_grant(
    conn: &mut PgConnection,
    portal: i64,
    kind: &str,
    at: DateTime<Utc>,
    permits: i32,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO budget_grants (portal_id, kind, granted_at, permits) VALUES ($1,$2,$3,$4)",
    )
    .bind(portal)
    .bind(kind)
    .bind(at)
    .bind(permits)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn pause_budget(
    conn: &mut PgConnection,
    portal: i64,
    kind: &str,
    until: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO budget_state (portal_id, kind, paused_until) VALUES ($1,$2,$3) \
         ON CONFLICT (portal_id, kind) DO UPDATE SET paused_until = GREATEST(budget_state.paused_until, EXCLUDED.paused_until)",
    )
    .bind(portal)
    .bind(kind)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn db_now(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(conn)
        .await?)
}

// ---- data sharing ----

pub async fn sharing(conn: &mut PgConnection, org: &str, lock: bool) -> Result<Option<SharingRow>> {
    let sql = if lock {
        "SELECT share_crm_data, share_usage_data, locked_by_contract, updated_at, updated_by FROM data_sharing WHERE org_id = $1 FOR UPDATE"
    } else {
        "SELECT share_crm_data, share_usage_data, locked_by_contract, updated_at, updated_by FROM data_sharing WHERE org_id = $1"
    };
    Ok(sqlx::query_as(sql).bind(org).fetch_optional(conn).await?)
}

pub async fn save_sharing(conn: &mut PgConnection, org: &str, s: &SharingRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO data_sharing (org_id, share_crm_data, share_usage_data, locked_by_contract, updated_at, updated_by) \
         VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (org_id) DO UPDATE SET share_crm_data = EXCLUDED.share_crm_data, \
         share_usage_data = EXCLUDED.share_usage_data, locked_by_contract = EXCLUDED.locked_by_contract, \
         updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
    )
    .bind(org)
    .bind(s.share_crm_data)
    .bind(s.share_usage_data)
    .bind(s.locked_by_contract)
    .bind(s.updated_at)
    .bind(&s.updated_by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn contribution_by_key(
    conn: &mut PgConnection,
    org: &str,
    key: &str,
) -> Result<Option<ContributionRow>> {
    Ok(sqlx::query_as(
        "SELECT contribution_id, category, object, record_count, source, source_id, occurred_at \
         FROM contributions WHERE org_id = $1 AND idempotency_key = $2",
    )
    .bind(org)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Inserts unless the key exists; returns the row stored under the key.
pub async fn insert_contribution(
    conn: &mut PgConnection,
    org: &str,
    key: &str,
    c: &ContributionRow,
) -> Result<ContributionRow> {
    sqlx::query(
        "INSERT INTO contributions (contribution_id, org_id, idempotency_key, category, object, record_count, source, source_id, occurred_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (org_id, idempotency_key) DO NOTHING",
    )
    .bind(c.contribution_id)
    .bind(org)
    .bind(key)
    .bind(c.category)
    .bind(c.object)
    .bind(c.record_count)
    .bind(&c.source)
    .bind(&c.source_id)
    .bind(c.occurred_at)
    .execute(&mut *conn)
    .await?;
    contribution_by_key(conn, org, key)
        .await?
        .ok_or_else(|| crate::error::Error::NotFound("contribution vanished".into()))
}

pub async fn list_contributions(
    pool: &PgPool,
    org: &str,
    category: i32,
    offset: i64,
    limit: i64,
) -> Result<Vec<ContributionRow>> {
    Ok(sqlx::query_as(
        "SELECT contribution_id, category, object, record_count, source, source_id, occurred_at FROM contributions \
         WHERE org_id = $1 AND ($2 = 0 OR category = $2) ORDER BY occurred_at DESC, contribution_id DESC OFFSET $3 LIMIT $4",
    )
    .bind(org)
    .bind(category)
    .bind(offset)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
