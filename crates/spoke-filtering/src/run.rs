//! Executing a filtering run: claim it (lease), stream the portal's records page by page, filter,
//! match in batches against the profile index, upsert matches, and at the end remove the matches
//! this run did not confirm. A replica that dies leaves its lease to expire; another replica
//! claims the run again and restarts it as a new attempt (matches carry the attempt id, so stale
//! removal only happens once an attempt has seen every record, and a crash never loses the
//! previous run's matches).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use spoke_hubspot::{CrmObject, ListOptions, ObjectType, SearchRequest};
use spoke_match::{CompanyFields, ContactFields, company_keys, contact_keys};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::{
    FilteringMatchEvent, FilteringRunEvent, MatchChange, NotificationKind,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::alerts::{Alert, Alerts};
use crate::config::FilteringSettings;
use crate::error::{Error, Result};
use crate::filters::{ObjectFilter, RecordView, passes};
use crate::model::{ObjectKind, ObjectStats, RunState, record_url, ts};
use crate::portals::{Portal, PortalAccess};
use crate::store::{self, Change, Claimed, MatchRow};

/// Most match changes in one `FilteringMatchEvent`.
const CHANGES_PER_EVENT: usize = 1000;

/// Executes runs on this replica.
pub struct Runner {
    pool: PgPool,
    portals: Arc<dyn PortalAccess>,
    settings: FilteringSettings,
    replica: String,
    alerts: Alerts,
}

/// How an attempt ended without an error.
enum Outcome {
    /// Finished and recorded.
    Done,
    /// Another replica owns the run now, or this one is shutting down: nothing more to write.
    Abandoned,
}

/// What happened to one object.
enum Step {
    /// Every record was seen.
    Complete,
    /// The org has more records than allowed.
    Limit(String),
}

struct Ctx<'a> {
    claimed: &'a Claimed,
    portal: Portal,
    org: &'a str,
    owners: HashMap<String, String>,
    advanced: bool,
    chunks: HashMap<ObjectKind, i32>,
    now: DateTime<Utc>,
    last_beat: Instant,
}

impl Runner {
    /// A runner for this replica.
    pub fn new(
        pool: PgPool,
        portals: Arc<dyn PortalAccess>,
        settings: FilteringSettings,
        alerts: Alerts,
    ) -> Self {
        Self {
            pool,
            portals,
            settings,
            replica: format!("filtering-{}", Uuid::now_v7()),
            alerts,
        }
    }

    /// Claims and executes runs until `cancel`; `wake` (Kafka run requests) shortens the wait.
    pub async fn run_loop(
        self: Arc<Self>,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> spoke_platform::Result<()> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(50));
        loop {
            while !cancel.is_cancelled() {
                match store::claim_run(&self.pool, &self.replica, self.settings.lease_secs).await {
                    Ok(Some(claimed)) => self.execute(claimed, &cancel).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a filtering run failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn execute(&self, claimed: Claimed, cancel: &CancellationToken) {
        let span = tracing::info_span!(
            "filtering.run",
            org = %claimed.run.org_id,
            run_id = %claimed.run.run_id,
            attempt = claimed.attempts,
        );
        async {
            tracing::info!("run claimed");
            metrics::counter!("spoke_filtering_runs_started_total").increment(1);
            let result = self.execute_inner(&claimed, cancel).await;
            match result {
                Ok(Outcome::Done) => {}
                Ok(Outcome::Abandoned) => tracing::info!("run abandoned by this replica"),
                Err(e) => {
                    tracing::warn!(error = %e, "run failed");
                    if let Err(e2) = self.fail(&claimed, &e).await {
                        tracing::error!(error = %e2, "recording the failed run failed");
                    }
                }
            }
            if let Err(e) = store::drop_attempt(&self.pool, claimed.attempt_id).await {
                tracing::warn!(error = %e, "dropping attempt rows failed");
            }
        }
        .instrument(span)
        .await;
    }

    async fn execute_inner(
        &self,
        claimed: &Claimed,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        let org = claimed.run.org_id.as_str();
        let portal = self.portals.portal(org).await?;
        let mut conn = self.pool.acquire().await?;
        let org_settings = store::org_settings(&mut conn, org).await?;
        drop(conn);
        let mut owners = HashMap::new();
        {
            use futures::TryStreamExt;
            let mut stream = std::pin::pin!(portal.client.owners());
            while let Some(o) = stream.try_next().await? {
                let name = format!(
                    "{} {}",
                    o.first_name.unwrap_or_default(),
                    o.last_name.unwrap_or_default()
                );
                owners.insert(o.id, name.trim().to_owned());
            }
        }
        let mut ctx = Ctx {
            claimed,
            portal,
            org,
            owners,
            advanced: org_settings.advanced_sync,
            chunks: HashMap::new(),
            now: Utc::now(),
            last_beat: Instant::now(),
        };
        let mut stats: Vec<ObjectStats> = Vec::new();
        let mut processed: Vec<ObjectKind> = Vec::new();
        let mut skipped: Vec<ObjectKind> = Vec::new();
        for object in ObjectKind::RUN_ORDER {
            if !claimed.run.objects.contains(&object) {
                continue;
            }
            // Settings are read per object: a disable takes effect at the next object boundary.
            let mut conn = self.pool.acquire().await?;
            let filters = store::load_filters(&mut conn, org).await?;
            drop(conn);
            let Some(filter) = filters.iter().find(|f| f.object == object && f.enabled) else {
                skipped.push(object);
                continue;
            };
            stats.push(ObjectStats {
                object,
                ..ObjectStats::default()
            });
            let step = self
                .process_object(&mut ctx, filter, &mut stats, cancel)
                .await?;
            match step {
                Some(Step::Complete) => processed.push(object),
                Some(Step::Limit(message)) => {
                    return self
                        .stop_with(claimed, RunState::LimitReached, &stats, &message)
                        .await;
                }
                None => return Ok(Outcome::Abandoned),
            }
        }
        if processed.is_empty() && !skipped.is_empty() {
            let names: Vec<&str> = skipped.iter().map(|o| o.name()).collect();
            let message = format!(
                "cancelled: filtering was turned off for {} before the run reached them",
                names.join(", ")
            );
            return self
                .stop_with(claimed, RunState::Cancelled, &stats, &message)
                .await;
        }
        // Advanced Sync extras must not cost the org its filtering results.
        if ctx.advanced
            && let Err(e) = self.sync_extra_objects(&ctx).await
        {
            tracing::warn!(error = %e, "advanced sync of tasks, pipelines and users failed");
        }
        let message = if skipped.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = skipped.iter().map(|o| o.name()).collect();
            format!("skipped {}: filtering was turned off", names.join(", "))
        };
        self.finalize(&mut ctx, &processed, &mut stats, &message)
            .await
    }

    /// Streams one object; None when the attempt was abandoned.
    async fn process_object(
        &self,
        ctx: &mut Ctx<'_>,
        filter: &ObjectFilter,
        stats: &mut [ObjectStats],
        cancel: &CancellationToken,
    ) -> Result<Option<Step>> {
        let object = filter.object;
        let limit = match object {
            ObjectKind::Deals => self.settings.max_deals,
            _ => self.settings.max_companies_contacts,
        };
        // One search call tells the total up front, so a portal over the limit stops at once.
        let probe = ctx
            .portal
            .client
            .search(
                object.hubspot(),
                &SearchRequest {
                    limit: 1,
                    properties: vec!["hs_object_id".into()],
                    ..SearchRequest::default()
                },
            )
            .await?;
        if probe.total > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Ok(Some(Step::Limit(limit_message(
                object,
                probe.total as i64,
                limit,
            ))));
        }
        let properties = if ctx.advanced {
            let defs = ctx
                .portal
                .client
                .properties(
                    object.hubspot(),
                    &spoke_hubspot::PropertyListOptions::default(),
                )
                .await?;
            defs.into_iter().map(|d| d.name).collect()
        } else {
            base_properties(object)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<CrmObject>>>(4);
        let client = ctx.portal.client.clone();
        let hs_type = object.hubspot();
        // Fetching the next pages overlaps with matching the current batch.
        let producer = tokio::spawn(async move {
            let options = ListOptions {
                properties,
                ..ListOptions::default()
            };
            let mut after: Option<String> = None;
            loop {
                let page = client.list_page(hs_type, &options, after.as_deref()).await;
                match page {
                    Ok(p) => {
                        let next = p.next_after;
                        if tx.send(Ok(p.results)).await.is_err() {
                            return;
                        }
                        match next {
                            Some(n) => after = Some(n),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        let _abort = AbortOnDrop(producer);
        let mut batch: Vec<CrmObject> = Vec::with_capacity(self.settings.batch_size);
        let idx = stats.len() - 1;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                n = rx.recv() => n,
            };
            let done = match next {
                Some(page) => {
                    batch.extend(page?);
                    false
                }
                None => true,
            };
            if batch.len() >= self.settings.batch_size || (done && !batch.is_empty()) {
                stats[idx].scanned += batch.len() as i64;
                if stats[idx].scanned > limit {
                    return Ok(Some(Step::Limit(limit_message(
                        object,
                        stats[idx].scanned,
                        limit,
                    ))));
                }
                self.process_batch(ctx, filter, &mut stats[idx], &batch)
                    .await?;
                batch.clear();
                if ctx.last_beat.elapsed().as_secs_f64() > self.settings.lease_secs / 4.0 {
                    ctx.last_beat = Instant::now();
                    let kept = store::heartbeat(
                        &self.pool,
                        ctx.claimed.run.run_id,
                        ctx.claimed.attempt_id,
                        self.settings.lease_secs,
                        stats,
                    )
                    .await?;
                    if !kept {
                        return Ok(None);
                    }
                }
            }
            if done {
                return Ok(Some(Step::Complete));
            }
        }
    }

    async fn process_batch(
        &self,
        ctx: &mut Ctx<'_>,
        filter: &ObjectFilter,
        stats: &mut ObjectStats,
        records: &[CrmObject],
    ) -> Result<()> {
        let object = filter.object;
        let started = Instant::now();
        let with_deals = if object == ObjectKind::Companies && filter.require_deals {
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            store::companies_with_deals(&self.pool, ctx.claimed.attempt_id, &ids).await?
        } else {
            HashSet::new()
        };
        let mut passing: Vec<(&CrmObject, Vec<String>)> = Vec::new();
        let mut passing_deals: Vec<&CrmObject> = Vec::new();
        for r in records {
            let view = RecordView {
                owner_id: r.property("hubspot_owner_id"),
                company_type: r.property("type"),
                email_opt_out: r.property("hs_email_optout"),
                created_at: created_at(r),
                has_deals: with_deals.contains(&r.id),
            };
            if !passes(filter, &view, ctx.now) {
                continue;
            }
            stats.passed += 1;
            match object {
                ObjectKind::Deals => passing_deals.push(r),
                ObjectKind::Companies => {
                    let keys = company_keys(&CompanyFields::from_hubspot(&r.properties));
                    passing.push((r, keys.keys.iter().map(|k| k.encode()).collect()));
                }
                ObjectKind::Contacts => {
                    let keys = contact_keys(&ContactFields::from_hubspot(&r.properties));
                    passing.push((r, keys.keys.iter().map(|k| k.encode()).collect()));
                }
            }
        }
        let deals = deal_companies(&ctx.portal.client, &passing_deals).await?;
        let all_keys: Vec<String> = passing
            .iter()
            .flat_map(|(_, k)| k.iter().cloned())
            .collect();
        let found = store::lookup_keys(&self.pool, &all_keys).await?;
        let mut by_profile: HashMap<String, MatchRow> = HashMap::new();
        let mut record_profile: HashMap<&str, String> = HashMap::new();
        let portal_id = ctx.portal.client.portal_id();
        for (r, keys) in &passing {
            // Keys come in priority order: the first one with a profile decides.
            let Some((key, profile)) = keys.iter().find_map(|k| found.get(k).map(|p| (k, p)))
            else {
                continue;
            };
            stats.matched += 1;
            record_profile.insert(r.id.as_str(), profile.clone());
            let owner = r
                .property("hubspot_owner_id")
                .unwrap_or_default()
                .to_owned();
            let row = MatchRow {
                profile_id: profile.clone(),
                hubspot_id: r.id.clone(),
                rank: rank(r),
                collapsed_ids: vec![r.id.clone()],
                owner_name: ctx.owners.get(&owner).cloned().unwrap_or_default(),
                owner_id: owner,
                hubspot_url: record_url(&ctx.portal.ui_domain, portal_id, object, &r.id),
                matched_by: key.split(':').next().unwrap_or_default().to_owned(),
            };
            match by_profile.get_mut(profile) {
                None => {
                    by_profile.insert(profile.clone(), row);
                }
                Some(existing) => {
                    // Duplicates within the batch collapse here; across batches the upsert merges.
                    if (row.rank, &row.hubspot_id) < (existing.rank, &existing.hubspot_id) {
                        let mut ids = vec![row.hubspot_id.clone()];
                        ids.append(&mut existing.collapsed_ids);
                        *existing = MatchRow {
                            collapsed_ids: ids,
                            ..row
                        };
                    } else {
                        existing.collapsed_ids.push(row.hubspot_id);
                    }
                }
            }
        }
        let rows: Vec<MatchRow> = by_profile.into_values().collect();
        let mut tx = self.pool.begin().await?;
        let added = store::upsert_matches(
            &mut tx,
            ctx.org,
            object,
            ctx.claimed.run.run_id,
            ctx.claimed.attempt_id,
            &rows,
        )
        .await?;
        stats.added += added.len() as i64;
        store::insert_attempt_deals(&mut tx, ctx.claimed.attempt_id, &deals).await?;
        if !added.is_empty() {
            emit_changes(&mut tx, ctx, object, &added, &[], false).await?;
        }
        if ctx.advanced {
            let sync: Vec<(String, serde_json::Value, Option<String>)> = records
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        serde_json::to_value(&r.properties).unwrap_or_default(),
                        record_profile.get(r.id.as_str()).cloned(),
                    )
                })
                .collect();
            store::upsert_sync_records(&mut tx, ctx.org, object.name(), &sync).await?;
        }
        tx.commit().await?;
        metrics::counter!("spoke_filtering_records_total", "object" => object.name())
            .increment(records.len() as u64);
        metrics::histogram!("spoke_filtering_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Advanced Sync objects outside filtering: tasks, deal stages (pipelines), owners and users.
    async fn sync_extra_objects(&self, ctx: &Ctx<'_>) -> Result<()> {
        use futures::TryStreamExt;
        let client = &ctx.portal.client;
        let defs = client
            .properties(
                ObjectType::Tasks,
                &spoke_hubspot::PropertyListOptions::default(),
            )
            .await?;
        let options = ListOptions {
            properties: defs.into_iter().map(|d| d.name).collect(),
            ..ListOptions::default()
        };
        let mut after: Option<String> = None;
        loop {
            let page = client
                .list_page(ObjectType::Tasks, &options, after.as_deref())
                .await?;
            let rows: Vec<_> = page
                .results
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        serde_json::to_value(&r.properties).unwrap_or_default(),
                        None,
                    )
                })
                .collect();
            let mut conn = self.pool.acquire().await?;
            store::upsert_sync_records(&mut conn, ctx.org, "tasks", &rows).await?;
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        let pipelines = client.pipelines(ObjectType::Deals).await?;
        let mut stages = Vec::new();
        for p in &pipelines {
            for s in &p.stages {
                stages.push((
                    format!("{}:{}", p.id, s.id),
                    serde_json::json!({
                        "pipeline_id": p.id, "pipeline_label": p.label,
                        "stage_id": s.id, "stage_label": s.label,
                        "display_order": s.display_order, "metadata": s.metadata,
                    }),
                    None,
                ));
            }
        }
        let mut conn = self.pool.acquire().await?;
        store::upsert_sync_records(&mut conn, ctx.org, "deal_stages", &stages).await?;
        let owners: Vec<spoke_hubspot::Owner> = client.owners().try_collect().await?;
        let rows: Vec<_> = owners
            .iter()
            .map(|o| {
                (
                    o.id.clone(),
                    serde_json::json!({"email": o.email, "first_name": o.first_name, "last_name": o.last_name,
                        "user_id": o.user_id, "archived": o.archived}),
                    None,
                )
            })
            .collect();
        store::upsert_sync_records(&mut conn, ctx.org, "owners", &rows).await?;
        let users: Vec<spoke_hubspot::User> = client.users().try_collect().await?;
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                (
                    u.id.clone(),
                    serde_json::json!({"email": u.email, "first_name": u.first_name, "last_name": u.last_name,
                        "role_id": u.role_id, "super_admin": u.super_admin}),
                    None,
                )
            })
            .collect();
        store::upsert_sync_records(&mut conn, ctx.org, "users", &rows).await?;
        Ok(())
    }

    /// Links deals, removes stale matches, records the result, all in one transaction.
    async fn finalize(
        &self,
        ctx: &mut Ctx<'_>,
        processed: &[ObjectKind],
        stats: &mut [ObjectStats],
        message: &str,
    ) -> Result<Outcome> {
        let claimed = ctx.claimed;
        let mut tx = self.pool.begin().await?;
        store::begin_changes(&mut tx).await?;
        let mut changed = 0i64;
        if processed.contains(&ObjectKind::Deals) {
            let prefix = record_url(
                &ctx.portal.ui_domain,
                ctx.portal.client.portal_id(),
                ObjectKind::Deals,
                "",
            );
            let (ids, names): (Vec<String>, Vec<String>) = ctx
                .owners
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unzip();
            let added = store::link_deals(
                &mut tx,
                ctx.org,
                claimed.run.run_id,
                claimed.attempt_id,
                &prefix,
                &ids,
                &names,
                processed.contains(&ObjectKind::Companies),
            )
            .await?;
            let linked = store::deals_linked(&mut tx, ctx.org, claimed.attempt_id).await?;
            if let Some(s) = stats.iter_mut().find(|s| s.object == ObjectKind::Deals) {
                s.added = added;
                s.matched = linked;
                s.deals_matched = linked;
            }
            if let Some(s) = stats.iter_mut().find(|s| s.object == ObjectKind::Companies) {
                s.deals_matched = linked;
            }
        }
        for object in processed {
            let removed =
                store::remove_stale(&mut tx, ctx.org, *object, claimed.attempt_id).await?;
            let (profiles, _) = store::linked_counts(&mut tx, ctx.org, *object).await?;
            if let Some(s) = stats.iter_mut().find(|s| s.object == *object) {
                s.removed = removed;
                s.profiles_linked = profiles;
                changed += s.added + s.removed;
            }
            // The change list is read back a page at a time: events of 1,000 changes each, the
            // last one of the object marked.
            let mut after = 0;
            loop {
                let page =
                    store::changes_page(&mut tx, *object, after, CHANGES_PER_EVENT as i64).await?;
                let last = page.len() < CHANGES_PER_EVENT;
                after = page.last().map_or(after, |p| p.0);
                let (removed, added): (Vec<_>, Vec<_>) = page.into_iter().partition(|p| p.1);
                let added: Vec<Change> = added.into_iter().map(|p| p.2).collect();
                let removed: Vec<Change> = removed.into_iter().map(|p| p.2).collect();
                emit_changes(&mut tx, ctx, *object, &added, &removed, last).await?;
                if last {
                    break;
                }
            }
        }
        let Some(run) = store::finish_run(
            &mut tx,
            claimed.run.run_id,
            claimed.attempt_id,
            RunState::Completed,
            stats,
            message,
        )
        .await?
        else {
            return Ok(Outcome::Abandoned);
        };
        if ctx.advanced {
            let mut s = store::org_settings(&mut tx, ctx.org).await?;
            s.advanced_synced_at = Some(Utc::now());
            store::save_org_settings(&mut tx, ctx.org, &s).await?;
        }
        finished_event(&mut tx, &run, stats).await?;
        let settings = store::org_settings(&mut tx, ctx.org).await?;
        let mut alert = None;
        if settings.email_alerts && changed > 0 {
            let summary: Vec<String> = stats
                .iter()
                .map(|s| {
                    format!(
                        "{}: {} added, {} removed, {} linked",
                        s.object.name(),
                        s.added,
                        s.removed,
                        s.profiles_linked
                    )
                })
                .collect();
            let a = Alert {
                org: ctx.org.to_owned(),
                kind: NotificationKind::FilteringMatchesChanged,
                subject: "HubSpot filtering: matches changed".into(),
                body: format!(
                    "The filtering run {} finished.\n{}",
                    run.run_id,
                    summary.join("\n")
                ),
                subject_id: run.run_id.to_string(),
            };
            self.alerts.enqueue(&mut tx, &a).await?;
            alert = Some(a);
        }
        tx.commit().await?;
        metrics::counter!("spoke_filtering_runs_finished_total", "state" => "completed")
            .increment(1);
        tracing::info!(changed, "run completed");
        if let Some(a) = alert {
            self.alerts.email(&a).await;
        }
        Ok(Outcome::Done)
    }

    /// Ends the run in a non-completed terminal state, keeping the previous matches.
    async fn stop_with(
        &self,
        claimed: &Claimed,
        state: RunState,
        stats: &[ObjectStats],
        message: &str,
    ) -> Result<Outcome> {
        let mut tx = self.pool.begin().await?;
        let Some(run) = store::finish_run(
            &mut tx,
            claimed.run.run_id,
            claimed.attempt_id,
            state,
            stats,
            message,
        )
        .await?
        else {
            return Ok(Outcome::Abandoned);
        };
        finished_event(&mut tx, &run, stats).await?;
        let alert = (state == RunState::LimitReached).then(|| Alert {
            org: run.org_id.clone(),
            kind: NotificationKind::FilteringLimitReached,
            subject: "HubSpot filtering stopped at the record limit".into(),
            body: message.to_owned(),
            subject_id: run.run_id.to_string(),
        });
        if let Some(a) = &alert {
            self.alerts.enqueue(&mut tx, a).await?;
        }
        tx.commit().await?;
        let label = if state == RunState::LimitReached {
            "limit_reached"
        } else {
            "cancelled"
        };
        metrics::counter!("spoke_filtering_runs_finished_total", "state" => label).increment(1);
        tracing::info!(state = label, message, "run stopped");
        if let Some(a) = alert {
            self.alerts.email(&a).await;
        }
        Ok(Outcome::Done)
    }

    async fn fail(&self, claimed: &Claimed, error: &Error) -> Result<()> {
        let (kind, subject, message) = match error {
            Error::ReauthRequired(m) => (
                NotificationKind::ConnectionReauthRequired,
                "HubSpot connection needs re-authorisation",
                format!(
                    "the HubSpot connection needs re-authorisation; an admin must reconnect ({m})"
                ),
            ),
            Error::NotConnected(m) => (
                NotificationKind::FilteringRunFailed,
                "HubSpot filtering run failed",
                format!("HubSpot is not connected: {m}"),
            ),
            other => (
                NotificationKind::FilteringRunFailed,
                "HubSpot filtering run failed",
                format!("the run failed: {other}"),
            ),
        };
        let mut tx = self.pool.begin().await?;
        let stats = claimed.run.stats.clone();
        let Some(run) = store::finish_run(
            &mut tx,
            claimed.run.run_id,
            claimed.attempt_id,
            RunState::Failed,
            &stats,
            &message,
        )
        .await?
        else {
            return Ok(());
        };
        finished_event(&mut tx, &run, &stats).await?;
        let alert = Alert {
            org: run.org_id.clone(),
            kind,
            subject: subject.into(),
            body: message,
            subject_id: run.run_id.to_string(),
        };
        self.alerts.enqueue(&mut tx, &alert).await?;
        tx.commit().await?;
        metrics::counter!("spoke_filtering_runs_finished_total", "state" => "failed").increment(1);
        self.alerts.email(&alert).await;
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn limit_message(object: ObjectKind, count: i64, limit: i64) -> String {
    format!(
        "limit reached: the portal has {count} {} and filtering imports at most {limit}; \
         narrow the filters or remove records in HubSpot, previous matches are kept",
        object.name()
    )
}

/// Properties a run reads per object when Advanced Sync is off.
fn base_properties(object: ObjectKind) -> Vec<String> {
    let names: &[&str] = match object {
        ObjectKind::Companies => &[
            "name",
            "domain",
            "website",
            "country",
            "hubspot_owner_id",
            "type",
            "createdate",
        ],
        ObjectKind::Contacts => &[
            "email",
            "firstname",
            "lastname",
            "company",
            "hubspot_owner_id",
            "hs_email_optout",
            "createdate",
        ],
        ObjectKind::Deals => &["dealname", "hubspot_owner_id", "createdate", "dealstage"],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The companies of deals, read with HubSpot's associations batch read (1,000 deals a call): one
/// row per (deal, company); `linked` marks the company the deal is linked through — its primary
/// company (type 5), else the lowest company id.
async fn deal_companies(
    client: &spoke_hubspot::PortalClient,
    deals: &[&CrmObject],
) -> Result<Vec<store::AttemptDeal>> {
    let mut out = Vec::new();
    for chunk in deals.chunks(spoke_hubspot::ASSOCIATIONS_READ_LIMIT) {
        let ids: Vec<String> = chunk.iter().map(|d| d.id.clone()).collect();
        let read = client
            .associations_batch_read(ObjectType::Deals, ObjectType::Companies, &ids)
            .await?;
        if let Some(e) = read.errors.first() {
            return Err(Error::HubSpotPartial(format!(
                "reading the companies of deals {} failed: {} ({})",
                e.context
                    .get("fromObjectId")
                    .map(|ids| ids.join(", "))
                    .unwrap_or_default(),
                e.message,
                e.category.as_deref().unwrap_or("no category")
            )));
        }
        let by_deal: HashMap<&str, &spoke_hubspot::RecordAssociations> = read
            .results
            .iter()
            .map(|r| (r.from_id.as_str(), r))
            .collect();
        for d in chunk {
            let Some(assoc) = by_deal.get(d.id.as_str()) else {
                continue;
            };
            let linked = assoc
                .to
                .iter()
                .find(|c| c.has_type(spoke_hubspot::type_ids::DEAL_TO_COMPANY_PRIMARY))
                .or_else(|| {
                    assoc
                        .to
                        .iter()
                        .min_by_key(|c| (c.to_object_id.len(), c.to_object_id.as_str()))
                })
                .map(|c| c.to_object_id.as_str());
            let owner = d.property("hubspot_owner_id").unwrap_or_default();
            for c in &assoc.to {
                out.push(store::AttemptDeal {
                    deal_id: d.id.clone(),
                    company_id: c.to_object_id.clone(),
                    owner_id: owner.to_owned(),
                    rank: rank(d),
                    linked: Some(c.to_object_id.as_str()) == linked,
                });
            }
        }
    }
    Ok(out)
}

fn created_at(r: &CrmObject) -> Option<DateTime<Utc>> {
    r.created_at.or_else(|| {
        r.property("createdate")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Age rank of a record: create time in ms (unknown sorts last).
fn rank(r: &CrmObject) -> i64 {
    created_at(r).map_or(i64::MAX, |t| t.timestamp_millis())
}

fn to_changes(v: &[Change]) -> Vec<MatchChange> {
    v.iter()
        .map(|(p, h, o)| MatchChange {
            profile_id: p.clone(),
            hubspot_id: h.clone(),
            owner_id: o.clone(),
        })
        .collect()
}

/// Writes match events in chunks of at most 1,000 changes; `last` marks the object's final chunk.
async fn emit_changes(
    conn: &mut PgConnection,
    ctx: &mut Ctx<'_>,
    object: ObjectKind,
    added: &[Change],
    removed: &[Change],
    last: bool,
) -> Result<()> {
    let portal_id = i64::try_from(ctx.portal.client.portal_id()).unwrap_or_default();
    let mut added = added.chunks(CHANGES_PER_EVENT).peekable();
    let mut removed = removed.chunks(CHANGES_PER_EVENT).peekable();
    loop {
        let a = added.next().unwrap_or(&[]);
        let r = removed.next().unwrap_or(&[]);
        let is_last = last && added.peek().is_none() && removed.peek().is_none();
        if a.is_empty() && r.is_empty() && !is_last {
            return Ok(());
        }
        let chunk = ctx.chunks.entry(object).or_insert(0);
        let ev = FilteringMatchEvent {
            org_id: ctx.org.to_owned(),
            run_id: ctx.claimed.run.run_id.to_string(),
            occurred_at: Some(ts(Utc::now())),
            object: i32::from(object.code()),
            chunk_index: *chunk,
            last_chunk: is_last,
            added: to_changes(a),
            removed: to_changes(r),
            portal_id,
        };
        *chunk += 1;
        Outbox::enqueue(conn, topics::FILTERING_EVENTS, ctx.org, &ev).await?;
        if is_last || (added.peek().is_none() && removed.peek().is_none()) {
            return Ok(());
        }
    }
}

/// The `finished` run event, in the caller's transaction.
async fn finished_event(
    conn: &mut PgConnection,
    run: &crate::model::Run,
    stats: &[ObjectStats],
) -> Result<()> {
    use spoke_proto::events::v1::filtering_run_event::{Finished, Kind};
    let ev = FilteringRunEvent {
        org_id: run.org_id.clone(),
        run_id: run.run_id.to_string(),
        occurred_at: Some(ts(Utc::now())),
        kind: Some(Kind::Finished(Finished {
            state: i32::from(run.state),
            stats: stats.iter().map(ObjectStats::to_proto).collect(),
            message: run.message.clone(),
            started_at: run.started_at.map(ts),
        })),
    };
    Outbox::enqueue(conn, topics::FILTERING_RUNS, &run.org_id, &ev).await?;
    Ok(())
}
