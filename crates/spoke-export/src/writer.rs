//! The writer: takes decided records from the job tables under a lease, applies the pinned
//! mapping and the ownership rule, and writes them to HubSpot in batches of 100 within the portal
//! budget. Whole-batch 400/409 answers are split until the bad record is isolated; a 409
//! "Existing ID" turns the record into an update of that id.
//!
//! Crash-exactness: before a create is sent the records are marked `writing` (committed). A
//! record found in `writing` later (crash, ambiguous failure) is first looked up by its unique
//! key — batch read by email for contacts, search by domain / name otherwise, after the search lag
//! has passed — and only re-created when HubSpot has no record created since the attempt. Each
//! HubSpot id is stored in the transaction right after its call returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message;
use spoke_hubspot::{
    BatchReadRequest, CreateInput, CrmObject, Filter, FilterGroup, ObjectType as HsObject,
    Operator, PortalClient, SearchRequest, UpdateInput,
};
use spoke_proto::common::v1::{
    CandidateSource, CheckDecision, ExportJobState, ObjectType, Profile, RecordCheck, RecordOutcome,
};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::failures::{self, Disposition};
use crate::jobs::{self, Written};
use crate::model::phase;
use crate::ports::{Cluster, Properties, RecordMapper};
use crate::store::{self, JobRow, Outcome, RecordRow};

/// HubSpot's batch size.
const BATCH: usize = 100;
/// Claims of one record before it is given up (each claim is one write attempt).
const MAX_ATTEMPTS: i32 = 200;
/// The owner property HubSpot uses.
const OWNER_PROPERTY: &str = "hubspot_owner_id";

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Chunks processed at the same time (each up to `chunk` records of one job).
    pub workers: usize,
    /// Records claimed at a time.
    pub chunk: i64,
    /// HubSpot batch calls in flight per chunk.
    pub calls_in_flight: usize,
    /// Lease of a claimed chunk; a crashed worker's records are reclaimed after it.
    pub lease: Duration,
    /// How long after a create attempt its records are looked up (HubSpot search lag).
    pub recovery_delay: Duration,
    /// Pause before retrying records HubSpot refused for now (rate limit, 503).
    pub retry_delay: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            chunk: 500,
            calls_in_flight: 2,
            lease: Duration::from_secs(120),
            recovery_delay: Duration::from_secs(15),
            retry_delay: Duration::from_secs(5),
        }
    }
}

/// The writer task set.
#[derive(Clone)]
pub struct Writer {
    pool: PgPool,
    cluster: Arc<dyn Cluster>,
    settings: WriterSettings,
    wake: Arc<Notify>,
}

/// What happens to one record in this round.
#[derive(Debug)]
enum Plan {
    Create,
    Update(String),
    Recover,
}

/// A record being written.
struct Item {
    row: RecordRow,
    profile: Profile,
    check: RecordCheck,
    plan: Plan,
    props: Properties,
}

/// Per-chunk context.
struct Ctx<'a> {
    job: &'a JobRow,
    object: HsObject,
    portal: PortalClient,
    mapping: Arc<dyn RecordMapper>,
    owner: Option<String>,
}

/// Result of writing one item.
enum Done {
    Ok(RecordOutcome, String),
    Failed(String),
    /// Leave the record for later (with its phase): retry after `retry_delay`.
    Later,
    /// A create may have happened: recover after `recovery_delay`.
    Uncertain,
    /// The connection must be re-authorised.
    Reauth(String),
}

impl Writer {
    /// A writer over the job tables.
    pub fn new(pool: PgPool, cluster: Arc<dyn Cluster>, settings: WriterSettings) -> Self {
        Self {
            pool,
            cluster,
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes idle workers (new records became ready).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs the workers until `cancel`; in-flight chunks finish their current HubSpot call.
    pub async fn run(self, cancel: CancellationToken) -> spoke_platform::Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..self.settings.workers.max(1) {
            let w = self.clone();
            let c = cancel.clone();
            set.spawn(async move { w.work(i, c).await });
        }
        while set.join_next().await.is_some() {}
        Ok(())
    }

    async fn work(&self, worker: usize, cancel: CancellationToken) {
        let lease = self.settings.lease.as_secs_f64();
        while !cancel.is_cancelled() {
            match store::claim(&self.pool, self.settings.chunk, lease, &[]).await {
                Ok(Some(claim)) if !claim.records.is_empty() => {
                    let job_id = claim.job_id;
                    let seqs: Vec<i32> = claim.records.iter().map(|r| r.seq).collect();
                    // A chunk can outlive its lease (waiting on a throttled portal's budget):
                    // renew it while working, or another worker would retake the records and
                    // send their creates a second time.
                    let result = tokio::select! {
                        r = self.chunk(claim.job_id, claim.records, &cancel) => r,
                        () = self.keep_leased(job_id, &seqs, claim.lease_until) => Ok(()),
                    };
                    if let Err(e) = result {
                        tracing::warn!(worker, job_id = %job_id, error = %e, "export chunk failed; its open records are retried");
                        // Records still open are retried soon; `writing` ones go through recovery.
                        let delay = self.settings.retry_delay.as_secs_f64();
                        if let Err(e) = store::release(&self.pool, job_id, &seqs, delay).await {
                            tracing::warn!(error = %e, "releasing export records failed; they are retried after their lease");
                        }
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker, error = %e, "claiming export records failed");
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Renews the lease of a chunk's open records every third of the lease; never returns while
    /// it holds any (a failed renewal is retried at the next tick, the lease still has time).
    async fn keep_leased(&self, job_id: Uuid, seqs: &[i32], until: chrono::DateTime<chrono::Utc>) {
        let lease = self.settings.lease;
        let mut held = until;
        loop {
            tokio::time::sleep(lease / 3).await;
            match store::renew_lease(&self.pool, job_id, seqs, held, lease.as_secs_f64()).await {
                Ok(Some(next)) => held = next,
                // Nothing left to hold: wait for the chunk to end.
                Ok(None) => std::future::pending::<()>().await,
                Err(e) => {
                    tracing::warn!(job_id = %job_id, error = %e, "renewing the lease of export records failed");
                }
            }
        }
    }

    async fn chunk(
        &self,
        job_id: Uuid,
        rows: Vec<RecordRow>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let Some(job) = store::job(&self.pool, job_id).await? else {
            return Ok(());
        };
        let span = tracing::info_span!("export.write_chunk", org = %job.org_id, portal = job.portal_id, job_id = %job.job_id, records = rows.len());
        if let Some(tp) = &job.traceparent {
            let carrier = HashMap::from([("traceparent".to_string(), tp.clone())]);
            spoke_platform::telemetry::set_parent_from(&span, &carrier);
        }
        // Fan-in: the chunk's records come from one or more checked batches; link their spans.
        let seqs: Vec<i32> = rows.iter().map(|r| r.seq).collect();
        match store::trace_contexts(&self.pool, job_id, &seqs).await {
            Ok(contexts) => {
                for tp in contexts {
                    spoke_platform::telemetry::add_link_from(&span, &tp);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "trace contexts of the chunk not read; no span links")
            }
        }
        self.chunk_inner(job, rows, cancel).instrument(span).await
    }

    async fn chunk_inner(
        &self,
        job: JobRow,
        rows: Vec<RecordRow>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        if !matches!(
            ExportJobState::try_from(job.state),
            Ok(ExportJobState::Checking | ExportJobState::AwaitingReview | ExportJobState::Writing)
        ) {
            return Ok(());
        }
        let object = ObjectType::try_from(job.object).unwrap_or(ObjectType::Unspecified);
        let hs_object = match object {
            ObjectType::Companies => HsObject::Companies,
            ObjectType::Contacts => HsObject::Contacts,
            _ => {
                jobs::fail(
                    &self.pool,
                    job.job_id,
                    "the job's object cannot be exported",
                )
                .await?;
                return Ok(());
            }
        };
        let seqs: Vec<i32> = rows.iter().map(|r| r.seq).collect();
        let setup = async {
            let mapping = self
                .cluster
                .mapping(&job.org_id, object, Some(job.config_version))
                .await?;
            let user = job.user_account.then_some(job.user_id.as_str());
            let portal = self.cluster.portal(&job.org_id, user).await?;
            let owner = if mapping.maps_owner() {
                None
            } else {
                self.cluster
                    .resolve_owner(&job.org_id, &job.user_id, &job.user_email)
                    .await?
            };
            Ok::<_, Error>((mapping, portal, owner))
        };
        let (mapping, portal, owner) = match setup.await {
            Ok(x) => x,
            Err(Error::ReauthRequired(m)) => {
                jobs::fail(&self.pool, job.job_id, &format!("reconnect required: {m}")).await?;
                return Ok(());
            }
            Err(e) => {
                store::release(
                    &self.pool,
                    job.job_id,
                    &seqs,
                    self.settings.retry_delay.as_secs_f64(),
                )
                .await?;
                return Err(e);
            }
        };
        let ctx = Ctx {
            job: &job,
            object: hs_object,
            portal,
            mapping,
            owner,
        };
        let started = Instant::now();
        let mut items = Vec::new();
        let mut finished = Vec::new();
        let mut deferred: Vec<(i32, f64)> = Vec::new();
        let now = Utc::now();
        for row in rows {
            let profile = Profile::decode(row.profile.as_slice()).unwrap_or_default();
            let check = row
                .check_result
                .as_deref()
                .and_then(|b| RecordCheck::decode(b).ok())
                .unwrap_or_default();
            if row.attempts > MAX_ATTEMPTS && row.phase == phase::READY {
                // A record HubSpot keeps refusing for now must not hold its job open forever.
                let mut w = skip(&row, &check, "");
                w.outcome.outcome = RecordOutcome::Failed as i32;
                w.outcome.message = format!(
                    "HubSpot did not accept this record after {MAX_ATTEMPTS} attempts (rate limits or outages); export it again later"
                );
                finished.push(w);
                continue;
            }
            if row.phase == phase::WRITING {
                let due = row.attempted_at.map(|t| {
                    t + chrono::Duration::from_std(self.settings.recovery_delay).unwrap_or_default()
                });
                if let Some(due) = due.filter(|d| *d > now) {
                    deferred.push((row.seq, (due - now).num_milliseconds() as f64 / 1000.0));
                    continue;
                }
                items.push(Item {
                    row,
                    profile,
                    check,
                    plan: Plan::Recover,
                    props: Properties::new(),
                });
                continue;
            }
            let rules = ctx.mapping.rules();
            let decision =
                CheckDecision::try_from(row.decision).unwrap_or(CheckDecision::Unspecified);
            let plan = match decision {
                CheckDecision::Create if !rules.create_new => {
                    finished.push(skip(
                        &row,
                        &check,
                        "skipped: creating new records is disabled in the export preferences",
                    ));
                    continue;
                }
                CheckDecision::CreateDuplicate if !rules.allow_duplicate_creation => {
                    finished.push(skip(
                        &row,
                        &check,
                        "skipped: creating duplicates is not allowed by the export preferences",
                    ));
                    continue;
                }
                CheckDecision::UpdateExisting if !rules.update_existing => {
                    finished.push(skip(
                        &row,
                        &check,
                        "skipped: updating existing records is disabled in the export preferences",
                    ));
                    continue;
                }
                CheckDecision::UpdateExisting => {
                    if !row.target_hubspot_id.is_empty() {
                        Plan::Update(row.target_hubspot_id.clone())
                    } else {
                        // The duplicate is an earlier record of this export: update what it became.
                        match self.same_export_target(&job, &check).await? {
                            SameExport::Id(id) => Plan::Update(id),
                            SameExport::NoRecord => Plan::Create,
                            SameExport::Wait => {
                                deferred.push((row.seq, 2.0));
                                continue;
                            }
                        }
                    }
                }
                _ => Plan::Create,
            };
            items.push(Item {
                row,
                profile,
                check,
                plan,
                props: Properties::new(),
            });
        }
        for (seq, delay) in &deferred {
            store::release(&self.pool, job.job_id, &[*seq], *delay).await?;
        }
        if !finished.is_empty() {
            jobs::record_outcomes(&self.pool, job.job_id, finished).await?;
        }

        // Recovery first: what HubSpot already has becomes CREATED; the rest is created again.
        let (recover, mut rest): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|i| matches!(i.plan, Plan::Recover));
        if !recover.is_empty() {
            let (found, missing) = self.recover(&ctx, recover).await?;
            if !found.is_empty() {
                jobs::record_outcomes(&self.pool, job.job_id, found).await?;
            }
            rest.extend(missing.into_iter().map(|mut i| {
                i.plan = Plan::Create;
                i
            }));
        }
        let (updates, creates): (Vec<Item>, Vec<Item>) = rest
            .into_iter()
            .partition(|i| matches!(i.plan, Plan::Update(_)));

        // Updates: read the targets (values for complete-if-missing) in the same call that proves they exist.
        for batch in chunk_items(updates, BATCH) {
            if self.cancelled(&job, cancel).await? {
                return Ok(());
            }
            let span = batch_span(&job, "update", batch.len());
            let written = self.update_batch(&ctx, batch).instrument(span).await;
            self.store(&job, written).await?;
        }
        // Creates: map, mark `writing` (committed), then send in batches of 100.
        let mut prepared = Vec::new();
        let mut failed = Vec::new();
        for mut item in creates {
            match ctx.mapping.apply(&item.profile, None) {
                Ok(mut props) => {
                    // Judged before the owner is added: an owner alone would create an empty
                    // HubSpot record no later export could match.
                    if props.is_empty() {
                        failed.push(fail(
                            &item,
                            "no mapped field has a value for this profile; nothing to export"
                                .into(),
                        ));
                        continue;
                    }
                    if let Some(owner) = &ctx.owner
                        && !props.contains_key(OWNER_PROPERTY)
                    {
                        props.insert(OWNER_PROPERTY.to_string(), owner.clone());
                    }
                    item.props = props;
                    prepared.push(item);
                }
                Err(m) => failed.push(fail(&item, m)),
            }
        }
        if !failed.is_empty() {
            jobs::record_outcomes(&self.pool, job.job_id, failed).await?;
        }
        let batches = chunk_items(prepared, BATCH);
        let mut calls = futures::stream::iter(batches.into_iter().map(|batch| {
            let ctx = &ctx;
            async move {
                if self.cancelled(ctx.job, cancel).await? {
                    let seqs: Vec<i32> = batch.iter().map(|i| i.row.seq).collect();
                    return Ok::<_, Error>((Vec::new(), seqs));
                }
                let seqs: Vec<i32> = batch.iter().map(|i| i.row.seq).collect();
                store::mark_writing(&self.pool, ctx.job.job_id, &seqs).await?;
                let t = Instant::now();
                let span = batch_span(ctx.job, "create", batch.len());
                let out = self.create_batch(ctx, batch).instrument(span).await;
                metrics::histogram!("spoke_export_batch_duration_seconds", "op" => "create")
                    .record(t.elapsed().as_secs_f64());
                Ok((out, Vec::new()))
            }
        }))
        .buffer_unordered(self.settings.calls_in_flight.max(1));
        while let Some(r) = calls.next().await {
            let (written, _) = r?;
            self.store(&job, written).await?;
        }
        tracing::debug!(elapsed = ?started.elapsed(), "chunk written");
        Ok(())
    }

    async fn cancelled(&self, job: &JobRow, cancel: &CancellationToken) -> Result<bool> {
        if cancel.is_cancelled() {
            return Ok(true);
        }
        let state: Option<i32> = sqlx::query_scalar("SELECT state FROM jobs WHERE job_id = $1")
            .bind(job.job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(!matches!(
            state.and_then(|s| ExportJobState::try_from(s).ok()),
            Some(
                ExportJobState::Checking | ExportJobState::AwaitingReview | ExportJobState::Writing
            )
        ))
    }

    /// Persists what one call produced: outcomes now, retries and recoveries re-leased.
    async fn store(&self, job: &JobRow, written: Vec<(Item, Done)>) -> Result<()> {
        let mut outcomes = Vec::new();
        let mut later = Vec::new();
        let mut uncertain = Vec::new();
        let mut reauth = None;
        for (item, done) in written {
            match done {
                Done::Ok(o, id) => outcomes.push(written_row(&item, o, id, String::new())),
                Done::Failed(m) => {
                    outcomes.push(written_row(&item, RecordOutcome::Failed, String::new(), m))
                }
                Done::Later => later.push(item.row.seq),
                Done::Uncertain => uncertain.push(item.row.seq),
                Done::Reauth(m) => {
                    later.push(item.row.seq);
                    reauth = Some(m);
                }
            }
        }
        if !outcomes.is_empty() {
            jobs::record_outcomes(&self.pool, job.job_id, outcomes).await?;
        }
        if !later.is_empty() {
            // Not applied by HubSpot: they can be sent again as they are.
            store::clear_writing(&self.pool, job.job_id, &later).await?;
            store::release(
                &self.pool,
                job.job_id,
                &later,
                self.settings.retry_delay.as_secs_f64(),
            )
            .await?;
        }
        if !uncertain.is_empty() {
            store::release(
                &self.pool,
                job.job_id,
                &uncertain,
                self.settings.recovery_delay.as_secs_f64(),
            )
            .await?;
        }
        if let Some(m) = reauth {
            jobs::fail(&self.pool, job.job_id, &format!("reconnect required: {m}")).await?;
        }
        Ok(())
    }

    async fn same_export_target(&self, job: &JobRow, check: &RecordCheck) -> Result<SameExport> {
        let Some(c) = check.candidates.iter().find(|c| {
            c.source == CandidateSource::SameExport as i32 && !c.same_export_record_id.is_empty()
        }) else {
            return Ok(SameExport::NoRecord);
        };
        let mut conn = self.pool.acquire().await?;
        let rows = store::records_by_id(
            &mut conn,
            job.job_id,
            std::slice::from_ref(&c.same_export_record_id),
        )
        .await?;
        Ok(match rows.first() {
            Some(r) if r.phase == phase::DONE && !r.hubspot_id.is_empty() => {
                SameExport::Id(r.hubspot_id.clone())
            }
            Some(r) if r.phase == phase::DONE => SameExport::NoRecord,
            Some(_) => SameExport::Wait,
            None => SameExport::NoRecord,
        })
    }

    /// Looks up records whose create may have happened. Returns (found → CREATED, not found).
    async fn recover(&self, ctx: &Ctx<'_>, items: Vec<Item>) -> Result<(Vec<Written>, Vec<Item>)> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut with_props = Vec::new();
        for mut item in items {
            match ctx.mapping.apply(&item.profile, None) {
                Ok(p) => {
                    item.props = p;
                    with_props.push(item);
                }
                // It cannot have been created with values that do not map: nothing to find.
                Err(_) => missing.push(item),
            }
        }
        let (by_email, by_search): (Vec<Item>, Vec<Item>) = with_props.into_iter().partition(|i| {
            ctx.object == HsObject::Contacts && i.props.get("email").is_some_and(|e| !e.is_empty())
        });
        for batch in chunk_items(by_email, BATCH) {
            let emails: Vec<String> = batch
                .iter()
                .map(|i| i.props["email"].to_lowercase())
                .collect();
            let read = ctx
                .portal
                .batch_read(
                    ctx.object,
                    &BatchReadRequest {
                        ids: emails,
                        properties: vec!["email".into()],
                        id_property: Some("email".into()),
                        archived: false,
                    },
                )
                .await?;
            let ids: HashMap<String, String> = read
                .results
                .iter()
                .filter_map(|o| {
                    o.property("email")
                        .map(|e| (e.to_lowercase(), o.id.clone()))
                })
                .collect();
            for item in batch {
                match ids.get(&item.props["email"].to_lowercase()) {
                    Some(id) => found.push(written_row(
                        &item,
                        RecordOutcome::Created,
                        id.clone(),
                        String::new(),
                    )),
                    None => missing.push(item),
                }
            }
        }
        for item in by_search {
            let groups = identity_filters(ctx.object, &item.props);
            if groups.is_empty() {
                missing.push(item);
                continue;
            }
            let page = ctx
                .portal
                .search(
                    ctx.object,
                    &SearchRequest {
                        filter_groups: groups,
                        properties: vec!["createdate".into()],
                        limit: 20,
                        ..SearchRequest::default()
                    },
                )
                .await?;
            // Only a record created since the attempt can be ours (a CREATE_DUPLICATE has older twins).
            let since = item
                .row
                .attempted_at
                .map(|t| t - chrono::Duration::seconds(5));
            let mine = page
                .results
                .iter()
                .filter(|o| match (since, o.created_at) {
                    (Some(s), Some(c)) => c >= s,
                    _ => true,
                })
                .min_by_key(|o| o.created_at);
            match mine {
                Some(o) => found.push(written_row(
                    &item,
                    RecordOutcome::Created,
                    o.id.clone(),
                    String::new(),
                )),
                None => missing.push(item),
            }
        }
        metrics::counter!("spoke_export_recoveries_total", "result" => "found")
            .increment(found.len() as u64);
        metrics::counter!("spoke_export_recoveries_total", "result" => "recreated")
            .increment(missing.len() as u64);
        Ok((found, missing))
    }

    /// Reads the targets, maps with their current values and updates them; 207 errors per input.
    async fn update_batch(&self, ctx: &Ctx<'_>, batch: Vec<Item>) -> Vec<(Item, Done)> {
        let t = Instant::now();
        let mut props_to_read = ctx.mapping.read_properties();
        props_to_read.sort();
        props_to_read.dedup();
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|i| target(i).map(str::to_string))
            .collect();
        let read = match ctx
            .portal
            .batch_read(
                ctx.object,
                &BatchReadRequest {
                    ids,
                    properties: props_to_read,
                    id_property: None,
                    archived: false,
                },
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return batch.into_iter().map(|i| (i, done_for(&e))).collect(),
        };
        let existing: HashMap<String, CrmObject> = read
            .results
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut out = Vec::new();
        let mut to_write = Vec::new();
        for mut item in batch {
            let id = target(&item).unwrap_or_default().to_string();
            let Some(current) = existing.get(&id) else {
                out.push((item, Done::Failed(format!("HubSpot record {id} to update no longer exists (deleted or merged); export the profile again to create it"))));
                continue;
            };
            match ctx.mapping.apply(&item.profile, Some(&current.properties)) {
                Ok(mut props) => {
                    if !ctx.mapping.maps_owner() {
                        // Ownership is only assigned to records Spoke creates.
                        props.remove(OWNER_PROPERTY);
                    }
                    // Values equal to what HubSpot holds need no write.
                    props.retain(|k, v| current.properties.get(k) != Some(v));
                    if props.is_empty() {
                        out.push((item, Done::Ok(RecordOutcome::Updated, id)));
                    } else {
                        item.props = props;
                        to_write.push(item);
                    }
                }
                Err(m) => out.push((item, Done::Failed(m))),
            }
        }
        out.extend(self.send_updates(ctx, to_write).await);
        metrics::histogram!("spoke_export_batch_duration_seconds", "op" => "update")
            .record(t.elapsed().as_secs_f64());
        out
    }

    /// Sends updates, splitting whole-batch 400/409 answers.
    fn send_updates<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        batch: Vec<Item>,
    ) -> BoxFuture<'a, Vec<(Item, Done)>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Vec::new();
            }
            let inputs: Vec<UpdateInput> = batch
                .iter()
                .map(|i| UpdateInput {
                    id: target(i).unwrap_or_default().to_string(),
                    properties: i.props.clone(),
                    id_property: None,
                })
                .collect();
            match ctx.portal.batch_update(ctx.object, &inputs).await {
                Ok(res) => {
                    count_call("batch_update", "ok");
                    let mut errors: HashMap<String, String> = HashMap::new();
                    for e in &res.errors {
                        for id in e.ids() {
                            errors.insert(id.clone(), failures::batch_error_message(e));
                        }
                    }
                    let ok: HashSet<String> = res.results.iter().map(|o| o.id.clone()).collect();
                    batch
                        .into_iter()
                        .map(|i| {
                            let id = target(&i).unwrap_or_default().to_string();
                            let done = match errors.get(&id) {
                                Some(m) => Done::Failed(m.clone()),
                                None if ok.contains(&id) || res.errors.is_empty() => {
                                    Done::Ok(RecordOutcome::Updated, id)
                                }
                                None => Done::Failed(
                                    "HubSpot did not confirm the update; export the profile again"
                                        .into(),
                                ),
                            };
                            (i, done)
                        })
                        .collect()
                }
                Err(e) => {
                    count_call("batch_update", "error");
                    match failures::classify(&e) {
                        Disposition::Split if batch.len() > 1 => {
                            let mut batch = batch;
                            let second = batch.split_off(batch.len() / 2);
                            let mut a = self.send_updates(ctx, batch).await;
                            a.extend(self.send_updates(ctx, second).await);
                            a
                        }
                        // Updates are idempotent: an ambiguous one is simply sent again later.
                        Disposition::Ambiguous => {
                            batch.into_iter().map(|i| (i, Done::Later)).collect()
                        }
                        _ => batch.into_iter().map(|i| (i, done_for(&e))).collect(),
                    }
                }
            }
        })
    }

    /// Creates, splitting whole-batch 400/409 answers; a lone 409 with an existing id becomes an update.
    fn create_batch<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        batch: Vec<Item>,
    ) -> BoxFuture<'a, Vec<(Item, Done)>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Vec::new();
            }
            let inputs: Vec<CreateInput> = batch
                .iter()
                .map(|i| CreateInput {
                    properties: i.props.clone(),
                    associations: Vec::new(),
                })
                .collect();
            match ctx.portal.batch_create(ctx.object, &inputs).await {
                Ok(res) => {
                    count_call("batch_create", "ok");
                    match_created(batch, res.results)
                }
                Err(e) => {
                    count_call("batch_create", "error");
                    match failures::classify(&e) {
                        Disposition::Split if batch.len() > 1 => {
                            let mut batch = batch;
                            let second = batch.split_off(batch.len() / 2);
                            let mut a = self.create_batch(ctx, batch).await;
                            a.extend(self.create_batch(ctx, second).await);
                            a
                        }
                        Disposition::Split
                            if e.status() == Some(409) && e.existing_id().is_some() =>
                        {
                            // The record exists already (e.g. created since the check): update it.
                            let id = e.existing_id().unwrap_or_default().to_string();
                            let items: Vec<Item> = batch
                                .into_iter()
                                .map(|mut i| {
                                    i.plan = Plan::Update(id.clone());
                                    i
                                })
                                .collect();
                            self.update_batch(ctx, items).await
                        }
                        Disposition::Ambiguous => {
                            batch.into_iter().map(|i| (i, Done::Uncertain)).collect()
                        }
                        _ => batch.into_iter().map(|i| (i, done_for(&e))).collect(),
                    }
                }
            }
        })
    }
}

/// One span per HubSpot batch; a child of the chunk span, which links to CreateExport's trace.
fn batch_span(job: &JobRow, op: &'static str, records: usize) -> tracing::Span {
    tracing::info_span!("export.write_batch", org = %job.org_id, portal = job.portal_id, job_id = %job.job_id, op, records)
}

enum SameExport {
    Id(String),
    NoRecord,
    Wait,
}

fn target(i: &Item) -> Option<&str> {
    match &i.plan {
        Plan::Update(id) => Some(id),
        _ => None,
    }
}

fn done_for(e: &spoke_hubspot::Error) -> Done {
    match failures::classify(e) {
        Disposition::Reauth => Done::Reauth(failures::message(e)),
        Disposition::RetryLater | Disposition::Ambiguous => Done::Later,
        Disposition::Split => Done::Failed(failures::message(e)),
        Disposition::Fail(m) => Done::Failed(m),
    }
}

fn count_call(op: &'static str, outcome: &'static str) {
    metrics::counter!("spoke_export_hubspot_calls_total", "op" => op, "outcome" => outcome)
        .increment(1);
}

/// Pairs created records with their inputs: by email for contacts, else by identity properties,
/// else by position (HubSpot answers in input order in practice, but does not promise it).
fn match_created(batch: Vec<Item>, results: Vec<CrmObject>) -> Vec<(Item, Done)> {
    let mut remaining: Vec<Option<CrmObject>> = results.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(batch.len());
    let mut unmatched = Vec::new();
    for item in batch {
        let sig = signature(&item.props);
        let pos = remaining.iter().position(|r| {
            r.as_ref()
                .is_some_and(|o| !sig.is_empty() && signature(&o.properties) == sig)
        });
        match pos.and_then(|p| remaining[p].take()) {
            Some(o) => out.push((item, Done::Ok(RecordOutcome::Created, o.id))),
            None => unmatched.push(item),
        }
    }
    let mut rest = remaining.into_iter().flatten();
    for item in unmatched {
        match rest.next() {
            Some(o) => out.push((item, Done::Ok(RecordOutcome::Created, o.id))),
            // Created but not reported: find it by key later rather than create it twice.
            None => out.push((item, Done::Uncertain)),
        }
    }
    out
}

fn signature(p: &Properties) -> Vec<String> {
    [
        "email",
        "domain",
        "name",
        "firstname",
        "lastname",
        "company",
    ]
    .iter()
    .filter_map(|k| p.get(*k).map(|v| format!("{k}={}", v.to_lowercase())))
    .collect()
}

/// Search filter groups (ORed) that identify a record a create attempt may have made. Domains
/// are searched as sent and normalized, since HubSpot may store either form.
fn identity_filters(object: HsObject, p: &Properties) -> Vec<FilterGroup> {
    let nonempty = |k: &str| p.get(k).filter(|v| !v.trim().is_empty());
    let eq = |k: &str, v: &str| Filter::new(k, Operator::Eq, v.to_string());
    match object {
        HsObject::Companies => {
            if let Some(d) = nonempty("domain") {
                let mut groups = vec![FilterGroup::of(vec![eq("domain", d)])];
                if let Ok(n) = spoke_match::normalize_domain(d)
                    && n.as_str() != d
                {
                    groups.push(FilterGroup::of(vec![eq("domain", n.as_str())]));
                }
                groups
            } else if let Some(n) = nonempty("name") {
                vec![FilterGroup::of(vec![eq("name", n)])]
            } else {
                vec![]
            }
        }
        _ => {
            let filters: Vec<Filter> = ["firstname", "lastname", "company"]
                .iter()
                .filter_map(|k| nonempty(k).map(|v| eq(k, v)))
                .collect();
            if filters.is_empty() {
                vec![]
            } else {
                vec![FilterGroup::of(filters)]
            }
        }
    }
}

fn chunk_items(items: Vec<Item>, n: usize) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(n);
    for i in items {
        cur.push(i);
        if cur.len() == n {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(n)));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn written_row(item: &Item, outcome: RecordOutcome, id: String, message: String) -> Written {
    Written {
        outcome: Outcome {
            seq: item.row.seq,
            outcome: outcome as i32,
            hubspot_id: id,
            message,
        },
        record_id: item.row.record_id.clone(),
        profile_id: item.row.profile_id.clone(),
        match_keys: item.check.match_keys.clone(),
    }
}

fn fail(item: &Item, message: String) -> Written {
    written_row(item, RecordOutcome::Failed, String::new(), message)
}

fn skip(row: &RecordRow, check: &RecordCheck, message: &str) -> Written {
    Written {
        outcome: Outcome {
            seq: row.seq,
            outcome: RecordOutcome::Skipped as i32,
            hubspot_id: String::new(),
            message: message.into(),
        },
        record_id: row.record_id.clone(),
        profile_id: row.profile_id.clone(),
        match_keys: check.match_keys.clone(),
    }
}
