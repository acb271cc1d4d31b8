//! All SQL of the export service (schema `export`), returning domain types.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::error::Result;
use crate::model::Counters;

/// A job row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    /// Job id.
    pub job_id: Uuid,
    /// Org.
    pub org_id: String,
    /// Client key of CreateExport.
    pub idempotency_key: String,
    /// Hash of the CreateExport request.
    pub request_hash: Vec<u8>,
    /// Portal written to.
    pub portal_id: i64,
    /// Exporting user.
    pub user_id: String,
    /// Exporting user's email (owner resolution).
    pub user_email: String,
    /// `spoke.common.v1.ObjectType`.
    pub object: i32,
    /// `spoke.common.v1.ExportJobState`.
    pub state: i32,
    /// `spoke.common.v1.DuplicateAction` chosen by the user.
    pub duplicate_choice: i32,
    /// Pinned configuration version.
    pub config_version: i64,
    /// Caller's label.
    pub label: String,
    /// User account mode.
    pub user_account: bool,
    /// Why FAILED/CANCELLED.
    pub message: String,
    /// Number of request batches.
    pub batch_count: i32,
    /// Records.
    pub total: i64,
    /// Counter.
    pub n_unchecked: i64,
    /// Counter.
    pub n_review: i64,
    /// Counter.
    pub n_ready: i64,
    /// Counter.
    pub n_created: i64,
    /// Counter.
    pub n_updated: i64,
    /// Counter.
    pub n_skipped: i64,
    /// Counter.
    pub n_failed: i64,
    /// Trace context of CreateExport.
    pub traceparent: Option<String>,
    /// Last progress event.
    pub last_progress_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Terminal time.
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    /// The counters of the row.
    pub fn counters(&self) -> Counters {
        Counters {
            total: self.total,
            unchecked: self.n_unchecked,
            review: self.n_review,
            ready: self.n_ready,
            created: self.n_created,
            updated: self.n_updated,
            skipped: self.n_skipped,
            failed: self.n_failed,
        }
    }
}

/// Counter changes applied together with record changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Change of `n_unchecked`.
    pub unchecked: i64,
    /// Change of `n_review`.
    pub review: i64,
    /// Change of `n_ready`.
    pub ready: i64,
    /// Change of `n_created`.
    pub created: i64,
    /// Change of `n_updated`.
    pub updated: i64,
    /// Change of `n_skipped`.
    pub skipped: i64,
    /// Change of `n_failed`.
    pub failed: i64,
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub job_id: Uuid,
    /// Org.
    pub org_id: String,
    /// Client key.
    pub idempotency_key: String,
    /// Request hash.
    pub request_hash: Vec<u8>,
    /// Portal.
    pub portal_id: i64,
    /// User.
    pub user_id: String,
    /// User email.
    pub user_email: String,
    /// Object.
    pub object: i32,
    /// Duplicate choice.
    pub duplicate_choice: i32,
    /// Pinned version.
    pub config_version: i64,
    /// Label.
    pub label: String,
    /// User account mode.
    pub user_account: bool,
    /// Request batches.
    pub batch_count: i32,
    /// Records.
    pub total: i64,
    /// Trace context.
    pub traceparent: Option<String>,
}

/// A record to insert.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// Record id within the job.
    pub record_id: String,
    /// Profile id.
    pub profile_id: String,
    /// Encoded profile.
    pub profile: Vec<u8>,
}

/// A record row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    /// Position in the job.
    pub seq: i32,
    /// Record id.
    pub record_id: String,
    /// Profile id.
    pub profile_id: String,
    /// Encoded profile.
    pub profile: Vec<u8>,
    /// Phase (see [`phase`]).
    pub phase: String,
    /// Encoded RecordCheck.
    pub check_result: Option<Vec<u8>>,
    /// CheckDecision.
    pub decision: i32,
    /// Target of an update.
    pub target_hubspot_id: String,
    /// Outcome (RecordOutcome).
    pub outcome: i32,
    /// HubSpot id.
    pub hubspot_id: String,
    /// Message.
    pub message: String,
    /// When a create was sent.
    pub attempted_at: Option<DateTime<Utc>>,
    /// Write attempts so far.
    pub attempts: i32,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const JOB_COLUMNS: &str = "job_id, org_id, idempotency_key, request_hash, portal_id, user_id, user_email, object, state, \
     duplicate_choice, config_version, label, user_account, message, batch_count, total, n_unchecked, n_review, \
     n_ready, n_created, n_updated, n_skipped, n_failed, traceparent, last_progress_at, created_at, updated_at, finished_at";

const RECORD_COLUMNS: &str = "seq, record_id, profile_id, profile, phase, check_result, decision, target_hubspot_id, \
     outcome, hubspot_id, message, attempted_at, attempts, updated_at";

/// The job with this idempotency key in the org.
pub async fn job_by_key(conn: &mut PgConnection, org: &str, key: &str) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND idempotency_key = $2"
    ))
    .bind(org)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Takes a transaction-scoped lock on (org, key) so concurrent retries of one CreateExport
/// serialize instead of racing on the unique index.
pub async fn lock_key(conn: &mut PgConnection, org: &str, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("export.create/{org}/{key}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts a job (state PENDING) with its records.
pub async fn insert_job(
    conn: &mut PgConnection,
    job: &NewJob,
    records: &[NewRecord],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (job_id, org_id, idempotency_key, request_hash, portal_id, user_id, user_email, object, \
         state, duplicate_choice, config_version, label, user_account, batch_count, total, n_unchecked, traceparent) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$15,$16)",
    )
    .bind(job.job_id)
    .bind(&job.org_id)
    .bind(&job.idempotency_key)
    .bind(&job.request_hash)
    .bind(job.portal_id)
    .bind(&job.user_id)
    .bind(&job.user_email)
    .bind(job.object)
    .bind(spoke_proto::common::v1::ExportJobState::Pending as i32)
    .bind(job.duplicate_choice)
    .bind(job.config_version)
    .bind(&job.label)
    .bind(job.user_account)
    .bind(job.batch_count)
    .bind(job.total)
    .bind(&job.traceparent)
    .execute(&mut *conn)
    .await?;
    // Bulk insert in chunks: one round trip per few thousand records instead of one per record.
    for (chunk_index, chunk) in records.chunks(5000).enumerate() {
        let base = (chunk_index * 5000) as i32;
        let seqs: Vec<i32> = (0..chunk.len() as i32).map(|i| base + i).collect();
        let ids: Vec<&str> = chunk.iter().map(|r| r.record_id.as_str()).collect();
        let profile_ids: Vec<&str> = chunk.iter().map(|r| r.profile_id.as_str()).collect();
        let profiles: Vec<&[u8]> = chunk.iter().map(|r| r.profile.as_slice()).collect();
        sqlx::query(
            "INSERT INTO records (job_id, seq, record_id, profile_id, profile) \
             SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::bytea[])",
        )
        .bind(job.job_id)
        .bind(&seqs)
        .bind(&ids)
        .bind(&profile_ids)
        .bind(&profiles)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A job by id (any org; callers check the org).
pub async fn job(pool: &PgPool, job_id: Uuid) -> Result<Option<JobRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1"))
            .bind(job_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A job by id, locked for the rest of the transaction (counters and state change under it).
pub async fn job_for_update(conn: &mut PgConnection, job_id: Uuid) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1 FOR UPDATE"
    ))
    .bind(job_id)
    .fetch_optional(conn)
    .await?)
}

/// Filters of [`list_jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this user's jobs.
    pub user_id: Option<String>,
    /// Only this state.
    pub state: Option<i32>,
    /// Only this object.
    pub object: Option<i32>,
    /// Keyset cursor: jobs strictly older than (created_at, job_id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
}

/// Jobs of the org, newest first.
pub async fn list_jobs(pool: &PgPool, org: &str, f: &JobFilter, limit: i64) -> Result<Vec<JobRow>> {
    let (before_at, before_id) = f.before.unzip();
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 \
         AND ($2::text IS NULL OR user_id = $2) AND ($3::int IS NULL OR state = $3) \
         AND ($4::int IS NULL OR object = $4) \
         AND ($5::timestamptz IS NULL OR (created_at, job_id) < ($5, $6)) \
         ORDER BY created_at DESC, job_id DESC LIMIT $7"
    ))
    .bind(org)
    .bind(&f.user_id)
    .bind(f.state)
    .bind(f.object)
    .bind(before_at)
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Records of a job in job order after `after_seq`, optionally only one API status.
pub async fn list_records(
    pool: &PgPool,
    job_id: Uuid,
    status_sql: Option<&str>,
    after_seq: i32,
    limit: i64,
) -> Result<Vec<RecordRow>> {
    let filter = status_sql.map(|s| format!(" AND {s}")).unwrap_or_default();
    Ok(sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE job_id = $1 AND seq > $2{filter} ORDER BY seq LIMIT $3"
    ))
    .bind(job_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Records of a job by seq.
pub async fn records_by_seq(
    conn: &mut PgConnection,
    job_id: Uuid,
    seqs: &[i32],
) -> Result<Vec<RecordRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE job_id = $1 AND seq = ANY($2) ORDER BY seq"
    ))
    .bind(job_id)
    .bind(seqs)
    .fetch_all(conn)
    .await?)
}

/// Records of a job by record id.
pub async fn records_by_id(
    conn: &mut PgConnection,
    job_id: Uuid,
    ids: &[String],
) -> Result<Vec<RecordRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE job_id = $1 AND record_id = ANY($2) ORDER BY seq"
    ))
    .bind(job_id)
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// Records of a job in one phase.
pub async fn records_in_phase(
    conn: &mut PgConnection,
    job_id: Uuid,
    phase: &str,
) -> Result<Vec<RecordRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE job_id = $1 AND phase = $2 ORDER BY seq"
    ))
    .bind(job_id)
    .bind(phase)
    .fetch_all(conn)
    .await?)
}

/// A checked record to store.
#[derive(Debug, Clone)]
pub struct CheckedUpdate {
    /// Record id.
    pub record_id: String,
    /// New phase (review, ready or done).
    pub phase: &'static str,
    /// Encoded RecordCheck.
    pub check: Vec<u8>,
    /// CheckDecision.
    pub decision: i32,
    /// Target id for updates.
    pub target_hubspot_id: String,
    /// Outcome when the phase is done (skips).
    pub outcome: i32,
    /// Message (skip reason).
    pub message: String,
}

/// Stores check results for records still waiting for one (unchecked or resolving); returns the
/// record ids actually changed, so a redelivered or stale batch changes nothing.
pub async fn apply_checks(
    conn: &mut PgConnection,
    job_id: Uuid,
    updates: &[CheckedUpdate],
) -> Result<Vec<String>> {
    let ids: Vec<&str> = updates.iter().map(|u| u.record_id.as_str()).collect();
    let phases: Vec<&str> = updates.iter().map(|u| u.phase).collect();
    let checks: Vec<&[u8]> = updates.iter().map(|u| u.check.as_slice()).collect();
    let decisions: Vec<i32> = updates.iter().map(|u| u.decision).collect();
    let targets: Vec<&str> = updates
        .iter()
        .map(|u| u.target_hubspot_id.as_str())
        .collect();
    let outcomes: Vec<i32> = updates.iter().map(|u| u.outcome).collect();
    let messages: Vec<&str> = updates.iter().map(|u| u.message.as_str()).collect();
    let rows = sqlx::query(
        "UPDATE records r SET phase = u.phase, check_result = u.check_result, decision = u.decision, \
         target_hubspot_id = u.target, outcome = u.outcome, message = u.message, updated_at = now() \
         FROM UNNEST($2::text[], $3::text[], $4::bytea[], $5::int[], $6::text[], $7::int[], $8::text[]) \
           AS u(record_id, phase, check_result, decision, target, outcome, message) \
         WHERE r.job_id = $1 AND r.record_id = u.record_id AND r.phase IN ('unchecked', 'resolving') \
         RETURNING r.record_id",
    )
    .bind(job_id)
    .bind(&ids)
    .bind(&phases)
    .bind(&checks)
    .bind(&decisions)
    .bind(&targets)
    .bind(&outcomes)
    .bind(&messages)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

/// Applies counter deltas and sets state/message; returns the updated row.
pub async fn update_job(
    conn: &mut PgConnection,
    job_id: Uuid,
    d: &Delta,
    state: i32,
    message: Option<&str>,
    progress_sent: bool,
) -> Result<JobRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE jobs SET n_unchecked = n_unchecked + $2, n_review = n_review + $3, n_ready = n_ready + $4, \
         n_created = n_created + $5, n_updated = n_updated + $6, n_skipped = n_skipped + $7, \
         n_failed = n_failed + $8, state = $9, message = COALESCE($10, message), updated_at = now(), \
         last_progress_at = CASE WHEN $11 THEN now() ELSE last_progress_at END, \
         finished_at = CASE WHEN $9 IN (5, 6, 7, 8) THEN COALESCE(finished_at, now()) ELSE NULL END \
         WHERE job_id = $1 RETURNING {JOB_COLUMNS}"
    ))
    .bind(job_id)
    .bind(d.unchecked)
    .bind(d.review)
    .bind(d.ready)
    .bind(d.created)
    .bind(d.updated)
    .bind(d.skipped)
    .bind(d.failed)
    .bind(state)
    .bind(message)
    .bind(progress_sent)
    .fetch_one(conn)
    .await?)
}

/// Sets the user's resolutions: moves records from review to resolving with their choice.
pub async fn set_resolutions(
    conn: &mut PgConnection,
    job_id: Uuid,
    ids: &[String],
    actions: &[i32],
    targets: &[String],
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE records r SET phase = 'resolving', duplicate_choice = u.action, target_hubspot_id = u.target, \
         updated_at = now() FROM UNNEST($2::text[], $3::int[], $4::text[]) AS u(record_id, action, target) \
         WHERE r.job_id = $1 AND r.record_id = u.record_id AND r.phase = 'review'",
    )
    .bind(job_id)
    .bind(ids)
    .bind(actions)
    .bind(targets)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The ResolveDuplicates call stored under (org, key): request hash, job and remaining count.
pub async fn resolution_by_key(
    conn: &mut PgConnection,
    org: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, Uuid, i64)>> {
    let row = sqlx::query(
        "SELECT request_hash, job_id, remaining FROM resolutions WHERE org_id = $1 AND idempotency_key = $2",
    )
    .bind(org)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// Stores a ResolveDuplicates result under its key.
pub async fn insert_resolution(
    conn: &mut PgConnection,
    org: &str,
    key: &str,
    hash: &[u8],
    job_id: Uuid,
    remaining: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO resolutions (org_id, idempotency_key, request_hash, job_id, remaining) VALUES ($1,$2,$3,$4,$5)",
    )
    .bind(org)
    .bind(key)
    .bind(hash)
    .bind(job_id)
    .bind(remaining)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records of a job that never got an outcome (not `done`; nor `writing` unless
/// `include_writing`), optionally only among `record_ids`: (record id, profile id).
pub async fn unsent_records(
    conn: &mut PgConnection,
    job_id: Uuid,
    record_ids: Option<&[String]>,
    include_writing: bool,
) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT record_id, profile_id FROM records \
          WHERE job_id = $1 AND phase <> 'done' AND ($3 OR phase <> 'writing') \
            AND ($2::text[] IS NULL OR record_id = ANY($2)) ORDER BY seq",
    )
    .bind(job_id)
    .bind(record_ids)
    .bind(include_writing)
    .fetch_all(conn)
    .await?)
}

/// Marks every record without an outcome as not to be written (cancel); returns how many were
/// unchecked, in review or ready before.
pub async fn cancel_open_records(conn: &mut PgConnection, job_id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE records SET lease_until = NULL, updated_at = now() WHERE job_id = $1 AND phase <> 'done'",
    )
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A claimed chunk of records of one job for the writer.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The job.
    pub job_id: Uuid,
    /// The records (ready or writing).
    pub records: Vec<RecordRow>,
    /// Their lease ends here unless renewed ([`renew_lease`]).
    pub lease_until: DateTime<Utc>,
}

/// Claims up to `limit` writable records of one active job under a lease, so replicas and
/// concurrent writer tasks never write the same record at the same time. Records whose lease
/// expired (a crashed worker) are claimable again.
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    lease_secs: f64,
    skip_jobs: &[Uuid],
) -> Result<Option<Claim>> {
    let mut tx = pool.begin().await?;
    let job: Option<Uuid> = sqlx::query_scalar(
        "SELECT j.job_id FROM jobs j WHERE j.n_ready > 0 AND j.state IN (2, 3, 4) AND NOT (j.job_id = ANY($1)) \
         AND EXISTS (SELECT 1 FROM records r WHERE r.job_id = j.job_id AND r.phase IN ('ready', 'writing') \
                     AND (r.lease_until IS NULL OR r.lease_until < now())) \
         ORDER BY j.created_at LIMIT 1",
    )
    .bind(skip_jobs)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(job_id) = job else {
        return Ok(None);
    };
    let records: Vec<RecordRow> = sqlx::query_as(&format!(
        "UPDATE records SET lease_until = now() + make_interval(secs => $3), attempts = attempts + 1 \
         WHERE job_id = $1 AND seq IN (SELECT seq FROM records WHERE job_id = $1 AND phase IN ('ready', 'writing') \
           AND (lease_until IS NULL OR lease_until < now()) ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING {RECORD_COLUMNS}"
    ))
    .bind(job_id)
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(&mut *tx)
    .await?;
    // `now()` is the transaction's start time: the same instant the UPDATE used.
    let lease_until: DateTime<Utc> = sqlx::query_scalar("SELECT now() + make_interval(secs => $1)")
        .bind(lease_secs)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut records = records;
    records.sort_by_key(|r| r.seq);
    Ok(Some(Claim {
        job_id,
        records,
        lease_until,
    }))
}

/// Extends the lease of the claimed records a worker still holds: open records (ready or writing)
/// whose lease is still at least `held_until`, the end of the lease the worker last took. Records
/// it released for a retry carry an earlier `lease_until` and are left alone, as are finished
/// ones. Returns the new end, or `None` when nothing is held any more.
pub async fn renew_lease(
    pool: &PgPool,
    job_id: Uuid,
    seqs: &[i32],
    held_until: DateTime<Utc>,
    lease_secs: f64,
) -> Result<Option<DateTime<Utc>>> {
    let renewed: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE records SET lease_until = now() + make_interval(secs => $4) \
         WHERE job_id = $1 AND seq = ANY($2) AND phase IN ('ready', 'writing') AND lease_until >= $3 \
         RETURNING lease_until",
    )
    .bind(job_id)
    .bind(seqs)
    .bind(held_until)
    .bind(lease_secs)
    .fetch_all(pool)
    .await?;
    Ok(renewed.into_iter().min())
}

/// Remembers the trace context of the span that made these records ready (the checked batch).
pub async fn set_trace_context(
    conn: &mut PgConnection,
    job_id: Uuid,
    record_ids: &[&str],
    traceparent: &str,
) -> Result<()> {
    sqlx::query("UPDATE records SET traceparent = $3 WHERE job_id = $1 AND record_id = ANY($2)")
        .bind(job_id)
        .bind(record_ids)
        .bind(traceparent)
        .execute(conn)
        .await?;
    Ok(())
}

/// The distinct trace contexts of these records' checked batches (span links of a writer chunk).
pub async fn trace_contexts(pool: &PgPool, job_id: Uuid, seqs: &[i32]) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT traceparent FROM records WHERE job_id = $1 AND seq = ANY($2) \
         AND traceparent IS NOT NULL",
    )
    .bind(job_id)
    .bind(seqs)
    .fetch_all(pool)
    .await?)
}

/// Releases leases so the records can be claimed again after `delay_secs`.
pub async fn release(pool: &PgPool, job_id: Uuid, seqs: &[i32], delay_secs: f64) -> Result<()> {
    sqlx::query(
        "UPDATE records SET lease_until = now() + make_interval(secs => $3) WHERE job_id = $1 AND seq = ANY($2) \
         AND phase IN ('ready', 'writing')",
    )
    .bind(job_id)
    .bind(seqs)
    .bind(delay_secs)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records that a create is about to be sent (phase writing) — committed before the HubSpot
/// call so a crash after it is recovered by lookup, never by a blind second create.
pub async fn mark_writing(pool: &PgPool, job_id: Uuid, seqs: &[i32]) -> Result<()> {
    sqlx::query(
        "UPDATE records SET phase = 'writing', attempted_at = now(), updated_at = now() \
         WHERE job_id = $1 AND seq = ANY($2) AND phase IN ('ready', 'writing')",
    )
    .bind(job_id)
    .bind(seqs)
    .execute(pool)
    .await?;
    Ok(())
}

/// Clears the create intent of records found not to exist (their create can be sent again).
pub async fn clear_writing(pool: &PgPool, job_id: Uuid, seqs: &[i32]) -> Result<()> {
    sqlx::query(
        "UPDATE records SET phase = 'ready', attempted_at = NULL WHERE job_id = $1 AND seq = ANY($2) AND phase = 'writing'",
    )
    .bind(job_id)
    .bind(seqs)
    .execute(pool)
    .await?;
    Ok(())
}

/// One record outcome to store.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Position.
    pub seq: i32,
    /// RecordOutcome.
    pub outcome: i32,
    /// HubSpot id.
    pub hubspot_id: String,
    /// Message.
    pub message: String,
}

/// Stores outcomes of records still open (ready or writing); returns the seqs changed so counts
/// move exactly once even if two workers raced.
pub async fn set_outcomes(
    conn: &mut PgConnection,
    job_id: Uuid,
    outcomes: &[Outcome],
) -> Result<Vec<i32>> {
    let seqs: Vec<i32> = outcomes.iter().map(|o| o.seq).collect();
    let codes: Vec<i32> = outcomes.iter().map(|o| o.outcome).collect();
    let ids: Vec<&str> = outcomes.iter().map(|o| o.hubspot_id.as_str()).collect();
    let msgs: Vec<&str> = outcomes.iter().map(|o| o.message.as_str()).collect();
    let rows = sqlx::query(
        "UPDATE records r SET phase = 'done', outcome = u.outcome, hubspot_id = u.hubspot_id, message = u.message, \
         lease_until = NULL, updated_at = now() \
         FROM UNNEST($2::int[], $3::int[], $4::text[], $5::text[]) AS u(seq, outcome, hubspot_id, message) \
         WHERE r.job_id = $1 AND r.seq = u.seq AND r.phase IN ('ready', 'writing') RETURNING r.seq",
    )
    .bind(job_id)
    .bind(&seqs)
    .bind(&codes)
    .bind(&ids)
    .bind(&msgs)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| r.get::<i32, _>(0)).collect())
}

/// Number of jobs per state (metrics gauge).
pub async fn jobs_per_state(pool: &PgPool) -> Result<Vec<(i32, i64)>> {
    let rows = sqlx::query("SELECT state, count(*) FROM jobs GROUP BY state")
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The SQL condition selecting records of one API status (`RecordStatus`).
pub fn status_condition(status: i32) -> Option<&'static str> {
    use spoke_proto::export::v1::RecordStatus as S;
    match S::try_from(status).ok()? {
        S::Pending => Some("phase IN ('unchecked', 'resolving', 'ready', 'writing')"),
        S::NeedsReview => Some("phase = 'review'"),
        S::Created => Some("phase = 'done' AND outcome = 1"),
        S::Updated => Some("phase = 'done' AND outcome = 2"),
        S::Skipped => Some("phase = 'done' AND outcome = 3"),
        S::Failed => Some("phase = 'done' AND outcome = 4"),
        S::Unspecified => None,
    }
}

/// Sets how many request batches of a new job were published.
pub async fn set_published_batches(conn: &mut PgConnection, job_id: Uuid, n: i32) -> Result<()> {
    sqlx::query("UPDATE jobs SET published_batches = $2 WHERE job_id = $1")
        .bind(job_id)
        .bind(n)
        .execute(conn)
        .await?;
    Ok(())
}

/// Reserves the index of the job's next unpublished request batch; `None` when all are out.
pub async fn take_next_batch(conn: &mut PgConnection, job_id: Uuid) -> Result<Option<i32>> {
    let n: Option<i32> = sqlx::query_scalar(
        "UPDATE jobs SET published_batches = published_batches + 1 \
         WHERE job_id = $1 AND published_batches < batch_count RETURNING published_batches",
    )
    .bind(job_id)
    .fetch_optional(conn)
    .await?;
    Ok(n.map(|n| n - 1))
}

/// Record ids and encoded profiles of positions `from..to`, in order.
pub async fn records_in_range(
    conn: &mut PgConnection,
    job_id: Uuid,
    from: i32,
    to: i32,
) -> Result<Vec<(String, Vec<u8>)>> {
    let rows = sqlx::query(
        "SELECT record_id, profile FROM records WHERE job_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
    )
    .bind(job_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
