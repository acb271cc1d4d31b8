//! Export jobs: creation (validation, idempotency, request batches), review decisions,
//! cancellation, and applying dedupe's checked batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use prost::Message;
use sha2::{Digest, Sha256};
use spoke_platform::connection_mirror::{self, status};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::common::v1::{
    CandidateSource, CheckDecision, DuplicateAction, ExportJobState, ExportRecord, ObjectType,
    RecordCheck, RecordOutcome,
};
use spoke_proto::events::v1::{
    ExportBatchHeader, ExportCheckedBatch, ExportRecordResult, ExportRequestBatch,
    ExportRequestRecord, ExportResultBatch,
};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::events;
use crate::model::{self, Counters, derive_state, is_terminal, phase};
use crate::ports::{Cluster, ExportRules};
use crate::store::{self, CheckedUpdate, Delta, JobRow, NewJob, NewRecord, Outcome};

/// Hard cap of records per export (the admin's max is at most this).
pub const MAX_RECORDS: usize = 100_000;
/// Records per `spoke.export.requests.v1` message.
pub const REQUEST_BATCH: usize = 500;
/// Request batches of a job in flight to dedupe at a time (each checked batch releases one more).
pub const REQUEST_WINDOW: i32 = 8;
/// Minimum time between two progress events of one job.
const PROGRESS_EVERY_SECS: i64 = 2;

/// Who acts: the org, the exporting user and their email.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Org.
    pub org: String,
    /// Provider user id of the exporting user.
    pub user_id: String,
    /// The user's email ("" when unknown, e.g. service callers).
    pub email: String,
    /// Admins and services see every job of the org; users only their own.
    pub sees_all: bool,
}

impl Actor {
    /// PERMISSION_DENIED unless the actor may see `job`.
    pub fn check_job(&self, job: &JobRow) -> Result<()> {
        if job.org_id != self.org || (!self.sees_all && job.user_id != self.user_id) {
            return Err(Error::PermissionDenied(
                "not permitted for this export job".into(),
            ));
        }
        Ok(())
    }
}

/// A validated CreateExport request.
#[derive(Debug, Clone)]
pub struct CreateExport {
    /// Client key.
    pub idempotency_key: String,
    /// Object.
    pub object: ObjectType,
    /// Records (ids filled in).
    pub records: Vec<ExportRecord>,
    /// User's duplicate choice.
    pub duplicate_choice: DuplicateAction,
    /// Label.
    pub label: String,
    /// Hash of the request as received.
    pub request_hash: Vec<u8>,
}

/// SHA-256 of an encoded request (idempotency keys reused with another request are rejected).
pub fn request_hash<M: Message>(m: &M) -> Vec<u8> {
    Sha256::digest(m.encode_to_vec()).to_vec()
}

/// Checks the shape of a CreateExport request; every message names the record and field.
pub fn validate_create(
    key: &str,
    object: ObjectType,
    records: &mut [ExportRecord],
    label: &str,
) -> Result<()> {
    validate_key(key)?;
    if !model::exportable(object) {
        return Err(Error::InvalidArgument(
            "object: must be OBJECT_TYPE_COMPANIES or OBJECT_TYPE_CONTACTS".into(),
        ));
    }
    if label.chars().count() > 200 {
        return Err(Error::InvalidArgument(
            "label: at most 200 characters".into(),
        ));
    }
    if records.is_empty() {
        return Err(Error::InvalidArgument(
            "records: at least one record is required".into(),
        ));
    }
    if records.len() > MAX_RECORDS {
        return Err(Error::InvalidArgument(format!(
            "records: {} records given; at most {MAX_RECORDS} per export",
            records.len()
        )));
    }
    let mut seen = HashSet::with_capacity(records.len());
    for (i, r) in records.iter_mut().enumerate() {
        if r.record_id.is_empty() {
            r.record_id = i.to_string();
        }
        let id = &r.record_id;
        if id.chars().count() > 128 {
            return Err(Error::InvalidArgument(format!(
                "records[{i}].record_id: at most 128 characters"
            )));
        }
        if !seen.insert(id.clone()) {
            return Err(Error::InvalidArgument(format!(
                "records[{i}].record_id: duplicate record id {id:?} (record ids must be unique within an export)"
            )));
        }
        let Some(p) = &r.profile else {
            return Err(Error::InvalidArgument(format!(
                "records[{i}] (record {id:?}).profile: required"
            )));
        };
        if p.profile_id.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "records[{i}] (record {id:?}).profile.profile_id: required"
            )));
        }
        if p.kind != object as i32 {
            return Err(Error::InvalidArgument(format!(
                "records[{i}] (record {id:?}).profile.kind: must equal the export's object {}",
                object.as_str_name()
            )));
        }
        if p.fields.len() > 500 {
            return Err(Error::InvalidArgument(format!(
                "records[{i}] (record {id:?}).profile.fields: at most 500 entries"
            )));
        }
        if let Some((name, _)) = p.fields.iter().find(|(_, v)| v.len() > 64 * 1024) {
            return Err(Error::InvalidArgument(format!(
                "records[{i}] (record {id:?}).profile.fields[{name:?}]: value longer than 64 KiB"
            )));
        }
    }
    Ok(())
}

/// Idempotency keys are 1..=200 characters.
pub fn validate_key(key: &str) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > 200 {
        return Err(Error::InvalidArgument(
            "idempotency_key: 1 to 200 characters required".into(),
        ));
    }
    Ok(())
}

/// Checks a job's request against the admin's export rules.
pub fn check_rules(
    rules: &ExportRules,
    count: usize,
    choice: DuplicateAction,
    object: ObjectType,
) -> Result<()> {
    let noun = if object == ObjectType::Companies {
        "companies"
    } else {
        "contacts"
    };
    if !rules.allowed {
        return Err(Error::FailedPrecondition(format!(
            "exporting {noun} is not allowed by the export preferences; an admin can allow it"
        )));
    }
    if count as i64 > rules.max_per_export {
        return Err(Error::InvalidArgument(format!(
            "records: {count} {noun} given but the admin allows at most {} per export",
            rules.max_per_export
        )));
    }
    if !rules.create_new && !rules.update_existing {
        return Err(Error::FailedPrecondition(format!(
            "the export preferences allow neither creating nor updating {noun}; an admin must enable one"
        )));
    }
    if !rules.user_may_choose(choice) {
        return Err(Error::FailedPrecondition(format!(
            "duplicate_choice {} is not among the options the admin allows",
            choice.as_str_name()
        )));
    }
    Ok(())
}

/// Creates a job (or returns the one created earlier under the same key: `created` false).
pub async fn create(
    pool: &PgPool,
    cluster: &Arc<dyn Cluster>,
    actor: &Actor,
    req: CreateExport,
) -> Result<(JobRow, bool)> {
    // A retry must return the same job even when settings changed meanwhile: look the key up first.
    {
        let mut conn = pool.acquire().await?;
        if let Some(job) = store::job_by_key(&mut conn, &actor.org, &req.idempotency_key).await? {
            return replay(job, &req.request_hash);
        }
    }
    let mirrored = {
        let mut conn = pool.acquire().await?;
        connection_mirror::get(&mut conn, &actor.org).await?
    };
    // The mirror learns of connects and toggles from Kafka, seconds after the fact. Accept on its
    // word, but never reject on it alone: a refusal is confirmed with the connection service.
    let conn_state = match mirrored {
        Some(c) if c.status == status::CONNECTED && c.enabled => Some(c),
        _ => cluster.connection(&actor.org).await?,
    };
    let Some(c) = conn_state else {
        return Err(Error::FailedPrecondition(
            "HubSpot is not connected for this org; an admin must connect it first".into(),
        ));
    };
    match c.status.as_str() {
        status::CONNECTED => {}
        status::REAUTH_REQUIRED => {
            return Err(Error::FailedPrecondition(
                "reconnect required: the HubSpot authorisation was revoked; an admin must reconnect".into(),
            ));
        }
        _ => {
            return Err(Error::FailedPrecondition(
                "HubSpot is not connected for this org; an admin must connect it first".into(),
            ));
        }
    }
    if !c.enabled {
        return Err(Error::FailedPrecondition(
            "the HubSpot integration is turned off for this org; an admin can turn it on".into(),
        ));
    }
    let mapping = cluster.mapping(&actor.org, req.object, None).await?;
    check_rules(
        mapping.rules(),
        req.records.len(),
        req.duplicate_choice,
        req.object,
    )?;
    if c.user_account {
        // User account mode: the user's own connection must exist before anything is accepted.
        cluster
            .portal(&actor.org, Some(&actor.user_id))
            .await
            .map_err(|e| match e {
                Error::Unavailable(m) => Error::Unavailable(m),
                other => Error::FailedPrecondition(format!(
                    "exports use each user's own HubSpot connection and yours is not usable ({other}); connect your HubSpot account first"
                )),
            })?;
    } else if let Err(e) = cluster
        .ensure_user_mapping(&actor.org, &actor.user_id)
        .await
    {
        // Ownership then falls back to the primary admin; the export itself is not blocked.
        tracing::warn!(org = %actor.org, error = %e, "user mapping regeneration failed");
    }

    let job_id = Uuid::now_v7();
    let batch_count = req.records.len().div_ceil(REQUEST_BATCH) as i32;
    let mut carrier = HashMap::new();
    spoke_platform::telemetry::inject_current(&mut carrier);
    let new_job = NewJob {
        job_id,
        org_id: actor.org.clone(),
        idempotency_key: req.idempotency_key.clone(),
        request_hash: req.request_hash.clone(),
        portal_id: c.portal_id,
        user_id: actor.user_id.clone(),
        user_email: actor.email.clone(),
        object: req.object as i32,
        duplicate_choice: req.duplicate_choice as i32,
        config_version: mapping.version(),
        label: req.label.clone(),
        user_account: c.user_account,
        batch_count,
        total: req.records.len() as i64,
        traceparent: carrier.get("traceparent").cloned(),
    };
    let rows: Vec<NewRecord> = req
        .records
        .iter()
        .map(|r| NewRecord {
            record_id: r.record_id.clone(),
            profile_id: r
                .profile
                .as_ref()
                .map(|p| p.profile_id.clone())
                .unwrap_or_default(),
            profile: r
                .profile
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
        })
        .collect();

    let mut tx = pool.begin().await?;
    store::lock_key(&mut tx, &actor.org, &req.idempotency_key).await?;
    if let Some(job) = store::job_by_key(&mut tx, &actor.org, &req.idempotency_key).await? {
        return replay(job, &req.request_hash);
    }
    store::insert_job(&mut tx, &new_job, &rows).await?;
    let header = ExportBatchHeader {
        org_id: actor.org.clone(),
        portal_id: c.portal_id,
        job_id: job_id.to_string(),
        batch_index: 0,
        batch_count,
        object: req.object as i32,
        config_version: mapping.version(),
        user_id: actor.user_id.clone(),
        user_account: c.user_account,
        produced_at: Some(events::ts(Utc::now())),
    };
    let key = c.portal_id.to_string();
    // Only a window of batches goes out now; each checked batch releases the next one.
    let window = batch_count.min(REQUEST_WINDOW);
    store::set_published_batches(&mut tx, job_id, window).await?;
    for (i, chunk) in req
        .records
        .chunks(REQUEST_BATCH)
        .take(window as usize)
        .enumerate()
    {
        let batch = ExportRequestBatch {
            header: Some(ExportBatchHeader {
                batch_index: i as i32,
                ..header.clone()
            }),
            records: chunk
                .iter()
                .map(|r| ExportRequestRecord {
                    record: Some(r.clone()),
                    duplicate_choice: req.duplicate_choice as i32,
                    target_hubspot_id: String::new(),
                })
                .collect(),
            resolution: false,
        };
        Outbox::enqueue(&mut tx, topics::EXPORT_REQUESTS, &key, &batch).await?;
    }
    let job = store::job_for_update(&mut tx, job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("export job {job_id} not found")))?;
    events::state_changed(&mut tx, &job, ExportJobState::Unspecified).await?;
    tx.commit().await?;
    metrics::counter!("spoke_export_jobs_created_total").increment(1);
    Ok((job, true))
}

fn replay(job: JobRow, hash: &[u8]) -> Result<(JobRow, bool)> {
    if job.request_hash != hash {
        return Err(Error::InvalidArgument(
            "idempotency_key: already used for a different export request; use a new key".into(),
        ));
    }
    Ok((job, false))
}

/// Loads a job the actor may see.
pub async fn get(pool: &PgPool, actor: &Actor, job_id: &str) -> Result<JobRow> {
    let id = parse_job_id(job_id)?;
    let missing = || Error::NotFound(format!("export job {id} not found"));
    let job = store::job(pool, id).await?.ok_or_else(missing)?;
    // Another org's job answers exactly as a missing one, so its existence is never revealed;
    // within the org, a user asking for another user's job is denied.
    if job.org_id != actor.org {
        return Err(missing());
    }
    actor.check_job(&job)?;
    Ok(job)
}

/// Parses a job id; INVALID_ARGUMENT names the field.
pub fn parse_job_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s)
        .map_err(|_| Error::InvalidArgument("job_id: not a valid export job id".into()))
}

/// Applies counter deltas, derives the new state and enqueues the job's events.
pub async fn commit_progress(
    conn: &mut PgConnection,
    job: &JobRow,
    delta: &Delta,
    forced: Option<(ExportJobState, &str)>,
) -> Result<JobRow> {
    let before = ExportJobState::try_from(job.state).unwrap_or(ExportJobState::Pending);
    let mut c = job.counters();
    c.unchecked += delta.unchecked;
    c.review += delta.review;
    c.ready += delta.ready;
    c.created += delta.created;
    c.updated += delta.updated;
    c.skipped += delta.skipped;
    c.failed += delta.failed;
    let (state, message) = match forced {
        Some((s, m)) => (s, Some(m)),
        None => (derive_state(before, &c), None),
    };
    let due = job
        .last_progress_at
        .is_none_or(|t| (Utc::now() - t).num_seconds() >= PROGRESS_EVERY_SECS);
    let changed = state != before;
    let counts_changed = *delta != Delta::default();
    let send_progress = !changed && counts_changed && due;
    let updated = store::update_job(
        conn,
        job.job_id,
        delta,
        state as i32,
        message,
        send_progress,
    )
    .await?;
    if changed {
        events::state_changed(conn, &updated, before).await?;
        if is_terminal(state) {
            metrics::counter!("spoke_export_jobs_finished_total", "state" => state.as_str_name())
                .increment(1);
            let secs = (Utc::now() - updated.created_at).num_milliseconds() as f64 / 1000.0;
            metrics::histogram!("spoke_export_job_duration_seconds").record(secs);
        }
    } else if send_progress {
        events::progress(conn, &updated).await?;
    }
    Ok(updated)
}

/// Publishes per-record results on `spoke.export.results.v1` (≤500 a message).
pub async fn publish_results(
    conn: &mut PgConnection,
    job: &JobRow,
    batch_index: i32,
    results: Vec<ExportRecordResult>,
) -> Result<()> {
    let key = job.portal_id.to_string();
    let header = ExportBatchHeader {
        org_id: job.org_id.clone(),
        portal_id: job.portal_id,
        job_id: job.job_id.to_string(),
        batch_index,
        batch_count: job.batch_count,
        object: job.object,
        config_version: job.config_version,
        user_id: job.user_id.clone(),
        user_account: job.user_account,
        produced_at: Some(events::ts(Utc::now())),
    };
    for chunk in results.chunks(REQUEST_BATCH) {
        let msg = ExportResultBatch {
            header: Some(header.clone()),
            results: chunk.to_vec(),
        };
        Outbox::enqueue(conn, topics::EXPORT_RESULTS, &key, &msg).await?;
    }
    Ok(())
}

/// Stores a checked batch from dedupe in the consumer's transaction. Records already checked
/// (a redelivery, or a job cancelled meanwhile) are left alone.
pub async fn apply_checked(conn: &mut PgConnection, batch: &ExportCheckedBatch) -> Result<()> {
    let Some(h) = &batch.header else {
        return Err(Error::InvalidArgument(
            "checked batch without header".into(),
        ));
    };
    let job_id = parse_job_id(&h.job_id)?;
    let Some(job) = store::job_for_update(conn, job_id).await? else {
        tracing::warn!(job_id = %h.job_id, "checked batch of an unknown job; ignored");
        return Ok(());
    };
    let state = ExportJobState::try_from(job.state).unwrap_or(ExportJobState::Pending);
    if is_terminal(state) {
        // Dedupe reserved these records' keys while checking; they will never be written.
        let ids: Vec<String> = batch
            .records
            .iter()
            .filter_map(|r| record_id_of(r).cloned())
            .collect();
        return release_unsent(conn, &job, Some(&ids), false).await;
    }
    let mut updates = Vec::with_capacity(batch.records.len());
    for r in &batch.records {
        let (Some(req), Some(check)) = (&r.request, &r.check) else {
            continue;
        };
        let Some(rec) = &req.record else { continue };
        let decision =
            CheckDecision::try_from(check.decision).unwrap_or(CheckDecision::Unspecified);
        let (ph, outcome, message) = match decision {
            CheckDecision::Create
            | CheckDecision::CreateDuplicate
            | CheckDecision::UpdateExisting => (phase::READY, 0, String::new()),
            CheckDecision::NeedsReview => (phase::REVIEW, 0, String::new()),
            CheckDecision::Skip => (
                phase::DONE,
                RecordOutcome::Skipped as i32,
                if check.reason.is_empty() {
                    "skipped: a duplicate exists".to_string()
                } else {
                    check.reason.clone()
                },
            ),
            CheckDecision::Failed => (
                phase::DONE,
                RecordOutcome::Failed as i32,
                if check.reason.is_empty() {
                    "the duplicate check failed for this record; export it again".to_string()
                } else {
                    check.reason.clone()
                },
            ),
            CheckDecision::Unspecified => (
                phase::DONE,
                RecordOutcome::Failed as i32,
                "the duplicate check returned no decision for this record; export it again"
                    .to_string(),
            ),
        };
        updates.push(CheckedUpdate {
            record_id: rec.record_id.clone(),
            phase: ph,
            check: check.encode_to_vec(),
            decision: check.decision,
            target_hubspot_id: check.target_hubspot_id.clone(),
            outcome,
            message,
        });
    }
    let changed: HashSet<String> = store::apply_checks(conn, job_id, &updates)
        .await?
        .into_iter()
        .collect();
    let mut delta = Delta::default();
    let mut results = Vec::new();
    for u in updates.iter().filter(|u| changed.contains(&u.record_id)) {
        delta.unchecked -= 1;
        match u.phase {
            phase::READY => delta.ready += 1,
            phase::REVIEW => delta.review += 1,
            _ if u.outcome == RecordOutcome::Skipped as i32 => delta.skipped += 1,
            _ => delta.failed += 1,
        }
        if u.phase == phase::DONE {
            let check = batch.records.iter().find(|r| {
                r.check.as_ref().is_some_and(|c| c.record_id == u.record_id)
                    || record_id_of(r) == Some(&u.record_id)
            });
            results.push(ExportRecordResult {
                record_id: u.record_id.clone(),
                profile_id: check
                    .and_then(|r| r.request.as_ref())
                    .and_then(|q| q.record.as_ref())
                    .and_then(|rec| rec.profile.as_ref())
                    .map(|p| p.profile_id.clone())
                    .unwrap_or_default(),
                outcome: u.outcome,
                hubspot_id: String::new(),
                match_keys: check
                    .and_then(|r| r.check.as_ref())
                    .map(|c| c.match_keys.clone())
                    .unwrap_or_default(),
                message: u.message.clone(),
                completed_at: Some(events::ts(Utc::now())),
            });
            metrics::counter!("spoke_export_records_total", "outcome" => outcome_name(u.outcome))
                .increment(1);
        }
    }
    // The first checked batch moves a PENDING job to CHECKING even when nothing is decided yet.
    let job = if state == ExportJobState::Pending && changed.is_empty() {
        job
    } else {
        commit_progress(conn, &job, &delta, None).await?
    };
    if !results.is_empty() {
        publish_results(conn, &job, h.batch_index, results).await?;
    }
    publish_next_request(conn, &job).await?;
    Ok(())
}

/// Enqueues the job's next unpublished request batch, if any (built from the stored records).
async fn publish_next_request(conn: &mut PgConnection, job: &JobRow) -> Result<()> {
    let Some(index) = store::take_next_batch(conn, job.job_id).await? else {
        return Ok(());
    };
    let from = index * REQUEST_BATCH as i32;
    let rows = store::records_in_range(conn, job.job_id, from, from + REQUEST_BATCH as i32).await?;
    let mut records = Vec::with_capacity(rows.len());
    for (record_id, profile) in rows {
        let profile =
            spoke_proto::common::v1::Profile::decode(profile.as_slice()).map_err(|e| {
                Error::InvalidArgument(format!(
                    "stored profile of record {record_id:?} is unreadable: {e}"
                ))
            })?;
        records.push(ExportRequestRecord {
            record: Some(ExportRecord {
                record_id,
                profile: Some(profile),
            }),
            duplicate_choice: job.duplicate_choice,
            target_hubspot_id: String::new(),
        });
    }
    let batch = ExportRequestBatch {
        header: Some(ExportBatchHeader {
            org_id: job.org_id.clone(),
            portal_id: job.portal_id,
            job_id: job.job_id.to_string(),
            batch_index: index,
            batch_count: job.batch_count,
            object: job.object,
            config_version: job.config_version,
            user_id: job.user_id.clone(),
            user_account: job.user_account,
            produced_at: Some(events::ts(Utc::now())),
        }),
        records,
        resolution: false,
    };
    Outbox::enqueue(
        conn,
        topics::EXPORT_REQUESTS,
        &job.portal_id.to_string(),
        &batch,
    )
    .await?;
    Ok(())
}

fn record_id_of(r: &spoke_proto::events::v1::ExportCheckedRecord) -> Option<&String> {
    r.request
        .as_ref()
        .and_then(|q| q.record.as_ref())
        .map(|x| &x.record_id)
}

/// Metric label of an outcome.
pub fn outcome_name(outcome: i32) -> &'static str {
    match RecordOutcome::try_from(outcome) {
        Ok(RecordOutcome::Created) => "created",
        Ok(RecordOutcome::Updated) => "updated",
        Ok(RecordOutcome::Skipped) => "skipped",
        _ => "failed",
    }
}

/// A ResolveDuplicates call.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// Client key.
    pub key: String,
    /// Job id.
    pub job_id: String,
    /// Per-record decisions.
    pub resolutions: Vec<Resolution>,
    /// Decision for the rest.
    pub apply_to_rest: DuplicateAction,
    /// Hash of the request as received.
    pub hash: Vec<u8>,
}

/// One review decision.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Record id.
    pub record_id: String,
    /// Decision.
    pub action: DuplicateAction,
    /// Chosen candidate for updates ("" for the oldest).
    pub target: String,
}

/// Applies review decisions; returns the job and how many records still wait.
///
/// Decisions are applied here rather than sent back to dedupe: the writer re-reads every update
/// target in its batch read, so a second check round trip would add latency and nothing else.
pub async fn resolve(
    pool: &PgPool,
    cluster: &Arc<dyn Cluster>,
    actor: &Actor,
    req: ResolveRequest,
) -> Result<(JobRow, i64)> {
    let ResolveRequest {
        key,
        job_id,
        resolutions,
        apply_to_rest,
        hash,
    } = req;
    let (key, job_id) = (key.as_str(), job_id.as_str());
    validate_key(key)?;
    if resolutions.len() > 10_000 {
        return Err(Error::InvalidArgument(
            "resolutions: at most 10,000 per call".into(),
        ));
    }
    let job = get(pool, actor, job_id).await?;
    let mut tx = pool.begin().await?;
    store::lock_key(&mut tx, &actor.org, &format!("resolve/{key}")).await?;
    if let Some((h, jid, remaining)) = store::resolution_by_key(&mut tx, &actor.org, key).await? {
        if h != hash || jid != job.job_id {
            return Err(Error::InvalidArgument(
                "idempotency_key: already used for a different ResolveDuplicates request; use a new key".into(),
            ));
        }
        let job = store::job(pool, job.job_id)
            .await?
            .ok_or_else(|| Error::NotFound("job".into()))?;
        return Ok((job, remaining));
    }
    let job = store::job_for_update(&mut tx, job.job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("export job {job_id} not found")))?;
    if job.state != ExportJobState::AwaitingReview as i32 {
        return Err(Error::FailedPrecondition(format!(
            "export job {job_id} is not awaiting review (state {})",
            ExportJobState::try_from(job.state)
                .map(|s| s.as_str_name())
                .unwrap_or("?")
        )));
    }
    let object = ObjectType::try_from(job.object).unwrap_or(ObjectType::Unspecified);
    let mapping = cluster
        .mapping(&job.org_id, object, Some(job.config_version))
        .await?;
    let rules = mapping.rules();
    let waiting = store::records_in_phase(&mut tx, job.job_id, phase::REVIEW).await?;
    let by_id: HashMap<&str, &store::RecordRow> =
        waiting.iter().map(|r| (r.record_id.as_str(), r)).collect();
    let mut decided: HashMap<String, (DuplicateAction, String)> = HashMap::new();
    for (i, r) in resolutions.iter().enumerate() {
        if !by_id.contains_key(r.record_id.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "resolutions[{i}].record_id: record {:?} is not awaiting review in this job",
                r.record_id
            )));
        }
        check_action(rules, r.action, &format!("resolutions[{i}].action"))?;
        decided.insert(r.record_id.clone(), (r.action, r.target.clone()));
    }
    if apply_to_rest != DuplicateAction::Unspecified {
        check_action(rules, apply_to_rest, "apply_to_rest")?;
        for r in &waiting {
            decided
                .entry(r.record_id.clone())
                .or_insert((apply_to_rest, String::new()));
        }
    }
    let mut outcomes = Vec::new();
    let mut ready = Vec::new();
    for r in &waiting {
        let Some((action, target)) = decided.get(&r.record_id) else {
            continue;
        };
        let check = r
            .check_result
            .as_deref()
            .and_then(|b| RecordCheck::decode(b).ok())
            .unwrap_or_default();
        match action {
            DuplicateAction::Skip => outcomes.push((
                r,
                "skipped: the user chose not to export this duplicate".to_string(),
            )),
            DuplicateAction::CreateDuplicate => {
                ready.push((r, CheckDecision::CreateDuplicate, String::new()))
            }
            _ => {
                let target = if target.is_empty() {
                    check
                        .candidates
                        .iter()
                        .find(|c| !c.hubspot_id.is_empty())
                        .map(|c| c.hubspot_id.clone())
                        .unwrap_or_default()
                } else if check.candidates.iter().any(|c| &c.hubspot_id == target) {
                    target.clone()
                } else {
                    return Err(Error::InvalidArgument(format!(
                        "target_hubspot_id of record {:?}: {target:?} is not among its duplicate candidates",
                        r.record_id
                    )));
                };
                let same_export = check
                    .candidates
                    .iter()
                    .any(|c| c.source == CandidateSource::SameExport as i32);
                if target.is_empty() && !same_export {
                    return Err(Error::InvalidArgument(format!(
                        "record {:?}: no existing HubSpot record to update; choose CREATE_DUPLICATE or SKIP",
                        r.record_id
                    )));
                }
                ready.push((r, CheckDecision::UpdateExisting, target));
            }
        }
    }
    // Review → ready (writer) or done (skipped); phase guard keeps a replay from counting twice.
    let mut delta = Delta::default();
    if !ready.is_empty() {
        let ids: Vec<String> = ready.iter().map(|(r, _, _)| r.record_id.clone()).collect();
        let decisions: Vec<i32> = ready.iter().map(|(_, d, _)| *d as i32).collect();
        let targets: Vec<String> = ready.iter().map(|(_, _, t)| t.clone()).collect();
        let n = sqlx::query(
            "UPDATE records r SET phase = 'ready', decision = u.decision, target_hubspot_id = u.target, updated_at = now() \
             FROM UNNEST($2::text[], $3::int[], $4::text[]) AS u(record_id, decision, target) \
             WHERE r.job_id = $1 AND r.record_id = u.record_id AND r.phase = 'review'",
        )
        .bind(job.job_id)
        .bind(&ids)
        .bind(&decisions)
        .bind(&targets)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        delta.review -= n;
        delta.ready += n;
    }
    let mut results = Vec::new();
    if !outcomes.is_empty() {
        let seqs: Vec<i32> = outcomes.iter().map(|(r, _)| r.seq).collect();
        let msgs: Vec<String> = outcomes.iter().map(|(_, m)| m.clone()).collect();
        let n = sqlx::query(
            "UPDATE records r SET phase = 'done', outcome = 3, message = u.message, updated_at = now() \
             FROM UNNEST($2::int[], $3::text[]) AS u(seq, message) \
             WHERE r.job_id = $1 AND r.seq = u.seq AND r.phase = 'review'",
        )
        .bind(job.job_id)
        .bind(&seqs)
        .bind(&msgs)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        delta.review -= n;
        delta.skipped += n;
        for (r, m) in &outcomes {
            let check = r
                .check_result
                .as_deref()
                .and_then(|b| RecordCheck::decode(b).ok())
                .unwrap_or_default();
            results.push(ExportRecordResult {
                record_id: r.record_id.clone(),
                profile_id: r.profile_id.clone(),
                outcome: RecordOutcome::Skipped as i32,
                hubspot_id: String::new(),
                match_keys: check.match_keys,
                message: m.clone(),
                completed_at: Some(events::ts(Utc::now())),
            });
        }
        metrics::counter!("spoke_export_records_total", "outcome" => "skipped").increment(n as u64);
    }
    let job = commit_progress(&mut tx, &job, &delta, None).await?;
    if !results.is_empty() {
        publish_results(&mut tx, &job, -1, results).await?;
    }
    let remaining = job.n_review;
    store::insert_resolution(&mut tx, &actor.org, key, &hash, job.job_id, remaining).await?;
    tx.commit().await?;
    Ok((job, remaining))
}

fn check_action(rules: &ExportRules, action: DuplicateAction, field: &str) -> Result<()> {
    match action {
        DuplicateAction::UpdateExisting
        | DuplicateAction::CreateDuplicate
        | DuplicateAction::Skip => {}
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{field}: must be UPDATE_EXISTING, CREATE_DUPLICATE or SKIP"
            )));
        }
    }
    let allowed = match action {
        DuplicateAction::CreateDuplicate => rules.allow_duplicate_creation,
        DuplicateAction::UpdateExisting => rules.update_existing,
        _ => true,
    } && (rules.default_action == action
        || rules.user_options.contains(&action)
        || rules.default_action == DuplicateAction::NeedsReview
            && action != DuplicateAction::CreateDuplicate);
    if !allowed {
        return Err(Error::FailedPrecondition(format!(
            "{field}: {} is not among the options the admin allows",
            action.as_str_name()
        )));
    }
    Ok(())
}

/// Cancels a job; a finished job is returned unchanged.
pub async fn cancel(pool: &PgPool, actor: &Actor, job_id: &str) -> Result<JobRow> {
    let job = get(pool, actor, job_id).await?;
    let mut tx = pool.begin().await?;
    let job = store::job_for_update(&mut tx, job.job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("export job {job_id} not found")))?;
    if is_terminal(ExportJobState::try_from(job.state).unwrap_or(ExportJobState::Pending)) {
        return Ok(job);
    }
    store::cancel_open_records(&mut tx, job.job_id).await?;
    let msg = format!("cancelled by {}", actor.user_id);
    let job = commit_progress(
        &mut tx,
        &job,
        &Delta::default(),
        Some((ExportJobState::Cancelled, &msg)),
    )
    .await?;
    release_unsent(&mut tx, &job, None, false).await?;
    tx.commit().await?;
    Ok(job)
}

/// One record the writer finished.
#[derive(Debug, Clone)]
pub struct Written {
    /// Outcome row.
    pub outcome: Outcome,
    /// Record id.
    pub record_id: String,
    /// Profile id.
    pub profile_id: String,
    /// Match keys (feed the dedupe index).
    pub match_keys: Vec<spoke_proto::common::v1::MatchKey>,
}

/// Stores writer outcomes of one job with their counters, results and events.
pub async fn record_outcomes(pool: &PgPool, job_id: Uuid, written: Vec<Written>) -> Result<JobRow> {
    let mut tx = pool.begin().await?;
    let job = store::job_for_update(&mut tx, job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("export job {job_id} not found")))?;
    let rows: Vec<Outcome> = written.iter().map(|w| w.outcome.clone()).collect();
    let changed: HashSet<i32> = store::set_outcomes(&mut tx, job_id, &rows)
        .await?
        .into_iter()
        .collect();
    let mut delta = Delta::default();
    let mut results = Vec::new();
    for w in written
        .into_iter()
        .filter(|w| changed.contains(&w.outcome.seq))
    {
        let o = w.outcome;
        delta.ready -= 1;
        match RecordOutcome::try_from(o.outcome) {
            Ok(RecordOutcome::Created) => delta.created += 1,
            Ok(RecordOutcome::Updated) => delta.updated += 1,
            Ok(RecordOutcome::Skipped) => delta.skipped += 1,
            _ => delta.failed += 1,
        }
        metrics::counter!("spoke_export_records_total", "outcome" => outcome_name(o.outcome))
            .increment(1);
        results.push(ExportRecordResult {
            record_id: w.record_id,
            profile_id: w.profile_id,
            outcome: o.outcome,
            hubspot_id: o.hubspot_id,
            match_keys: w.match_keys,
            message: o.message,
            completed_at: Some(events::ts(Utc::now())),
        });
    }
    let job = if delta == Delta::default() {
        job
    } else {
        commit_progress(&mut tx, &job, &delta, None).await?
    };
    if !results.is_empty() {
        publish_results(&mut tx, &job, -1, results).await?;
    }
    tx.commit().await?;
    Ok(job)
}

/// Fails a job as a whole (e.g. the connection needs re-authorisation).
pub async fn fail(pool: &PgPool, job_id: Uuid, message: &str) -> Result<JobRow> {
    let mut tx = pool.begin().await?;
    let job = store::job_for_update(&mut tx, job_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("export job {job_id} not found")))?;
    if is_terminal(ExportJobState::try_from(job.state).unwrap_or(ExportJobState::Pending)) {
        return Ok(job);
    }
    let job = commit_progress(
        &mut tx,
        &job,
        &Delta::default(),
        Some((ExportJobState::Failed, message)),
    )
    .await?;
    // A failed job (re-authorisation) is never retried: its records whose create was in
    // flight are looked up in HubSpot by the next export instead (by then search has caught up:
    // reconnecting takes a person).
    release_unsent(&mut tx, &job, None, true).await?;
    tx.commit().await?;
    Ok(job)
}

/// Publishes a result without an outcome for each record of a finished (failed or cancelled) job
/// that was never sent to HubSpot, so dedupe releases the create reservations it holds for them:
/// otherwise a re-export within `reservation_ttl` (an hour) sends every such record to review
/// ("being created by export ..."). Records in `writing` keep theirs unless `include_writing`:
/// HubSpot may hold them, and a live writer may still be sending them (cancel).
async fn release_unsent(
    conn: &mut PgConnection,
    job: &JobRow,
    record_ids: Option<&[String]>,
    include_writing: bool,
) -> Result<()> {
    let unsent = store::unsent_records(conn, job.job_id, record_ids, include_writing).await?;
    if unsent.is_empty() {
        return Ok(());
    }
    let now = Some(events::ts(Utc::now()));
    let results = unsent
        .into_iter()
        .map(|(record_id, profile_id)| ExportRecordResult {
            record_id,
            profile_id,
            outcome: RecordOutcome::Unspecified as i32,
            message: "not written: the export ended before this record".into(),
            completed_at: now,
            ..ExportRecordResult::default()
        })
        .collect();
    publish_results(conn, job, -1, results).await
}

/// Counters of a job (tests, metrics).
pub fn counters(job: &JobRow) -> Counters {
    job.counters()
}
