//! The `spoke.filtering.v1.FilteringService` gRPC service: authentication checks and request
//! validation, then calls into the domain (filters, schedule, scheduler, profiles, store).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message;
use sha2::Digest;
use spoke_platform::auth::{self, Caller, Role};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::{FilteringMatchEvent, MatchChange};
use spoke_proto::filtering::v1 as pb;
use spoke_proto::filtering::v1::filtering_service_server::FilteringService;
use sqlx::PgPool;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::filters::{DealWindow, Mode, ObjectFilter, ValueFilter};
use crate::model::{ObjectKind, ObjectStats, RunState, Trigger, ts};
use crate::portals::PortalAccess;
use crate::profiles;
use crate::schedule;
use crate::scheduler;
use crate::store::{self, MatchQuery, ScheduleRow};

/// The gRPC face of the filtering service.
#[derive(Clone)]
pub struct FilteringServiceImpl {
    pool: PgPool,
    portals: Arc<dyn PortalAccess>,
}

impl FilteringServiceImpl {
    /// A service over the pool and the portal access.
    pub fn new(pool: PgPool, portals: Arc<dyn PortalAccess>) -> Self {
        Self { pool, portals }
    }
}

fn admin_or_service(c: &Caller) -> std::result::Result<(), Status> {
    if c.has(Role::Admin) || c.has(Role::Service) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "this operation needs the admin or service role",
        ))
    }
}

fn any_role(c: &Caller) -> std::result::Result<(), Status> {
    if c.has(Role::Admin) || c.has(Role::User) || c.has(Role::Service) {
        Ok(())
    } else {
        Err(Status::permission_denied("this operation needs a role"))
    }
}

fn objects_of(codes: &[i32], field: &str) -> Result<Vec<ObjectKind>> {
    let mut out = Vec::new();
    for c in codes {
        let o = ObjectKind::from_code(*c).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{field}: object type {c} is not companies, contacts or deals"
            ))
        })?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > 200 {
        return Err(Error::InvalidArgument(
            "idempotency_key: must be 1..=200 characters".into(),
        ));
    }
    Ok(())
}

fn request_hash<M: Message>(m: &M) -> Vec<u8> {
    sha2::Sha256::digest(m.encode_to_vec()).to_vec()
}

fn settings_proto(filters: &[ObjectFilter], org: &store::OrgSettings) -> pb::FilterSettings {
    pb::FilterSettings {
        objects: filters
            .iter()
            .map(|f| pb::ObjectFilterSettings {
                object: i32::from(f.object.code()),
                enabled: f.enabled,
                owners: Some(pb::ValueFilter {
                    mode: f.owners.mode.as_i32(),
                    values: f.owners.values.clone(),
                }),
                company_types: Some(pb::ValueFilter {
                    mode: f.company_types.mode.as_i32(),
                    values: f.company_types.values.clone(),
                }),
                deal_created_window: f.deal_window.as_i32(),
                require_deals: f.require_deals,
                exclude_email_opt_outs: f.exclude_email_opt_outs,
                contact_list_ids: f.contact_list_ids.clone(),
            })
            .collect(),
        email_alerts: org.email_alerts,
        updated_at: org.settings_updated_at.map(ts),
    }
}

fn value_filter(v: &pb::ValueFilter) -> ValueFilter {
    let mut values: Vec<String> = Vec::new();
    for x in &v.values {
        let x = x.trim().to_owned();
        if !x.is_empty() && !values.contains(&x) {
            values.push(x);
        }
    }
    ValueFilter {
        mode: Mode::from_i32(v.mode),
        values,
    }
}

fn schedule_proto(s: Option<&ScheduleRow>, any_enabled: bool) -> pb::Schedule {
    let Some(s) = s else {
        return pb::Schedule {
            time_zone: schedule::TIME_ZONE_NAME.into(),
            ..pb::Schedule::default()
        };
    };
    pb::Schedule {
        frequency: i32::from(s.frequency),
        weekday: i32::from(s.weekday),
        day_of_month: i32::from(s.day_of_month),
        next_run_at: if any_enabled {
            s.next_run_at.map(ts)
        } else {
            None
        },
        time_zone: schedule::TIME_ZONE_NAME.into(),
    }
}

fn advanced_proto(s: &store::OrgSettings) -> pb::AdvancedSyncSettings {
    use pb::AdvancedSyncObject as O;
    pb::AdvancedSyncSettings {
        enabled: s.advanced_sync,
        engagement_product: s.engagement_product,
        objects: if s.advanced_sync {
            [
                O::Companies,
                O::Contacts,
                O::Deals,
                O::DealHistory,
                O::DealStages,
                O::Tasks,
                O::Users,
            ]
            .iter()
            .map(|o| *o as i32)
            .collect()
        } else {
            Vec::new()
        },
        last_synced_at: s.advanced_synced_at.map(ts),
    }
}

/// Whether an update changes anything but the contact lists (what Advanced Sync locks).
fn touches_locked_fields(u: &pb::ObjectFilterSettingsUpdate, current: &ObjectFilter) -> bool {
    u.owners
        .as_ref()
        .is_some_and(|v| value_filter(v) != current.owners)
        || u.company_types
            .as_ref()
            .is_some_and(|v| value_filter(v) != current.company_types)
        || u.deal_created_window
            .is_some_and(|w| DealWindow::from_i32(w) != current.deal_window)
        || u.require_deals.is_some_and(|b| b != current.require_deals)
        || u.exclude_email_opt_outs
            .is_some_and(|b| b != current.exclude_email_opt_outs)
}

impl FilteringServiceImpl {
    async fn remember_admin(&self, c: &Caller) {
        if c.has(Role::Admin)
            && !c.email.is_empty()
            && let Err(e) = store::record_admin(&self.pool, &c.org, &c.user_id, &c.email).await
        {
            tracing::warn!(error = %e, "recording the admin's email failed");
        }
    }

    /// Checks owner ids and company types against the portal.
    async fn validate_against_portal(&self, org: &str, filters: &[ObjectFilter]) -> Result<()> {
        let owners_needed: HashSet<&str> = filters
            .iter()
            .flat_map(|f| f.owners.values.iter().map(String::as_str))
            .collect();
        let types_needed: HashSet<&str> = filters
            .iter()
            .flat_map(|f| f.company_types.values.iter().map(String::as_str))
            .collect();
        if owners_needed.is_empty() && types_needed.is_empty() {
            return Ok(());
        }
        let portal = self.portals.portal(org).await?;
        if !owners_needed.is_empty() {
            let mut known = HashSet::new();
            let mut stream = std::pin::pin!(portal.client.owners());
            while let Some(o) = stream.next().await {
                known.insert(o?.id);
            }
            let mut unknown: Vec<&str> = owners_needed
                .iter()
                .filter(|o| !known.contains(**o))
                .copied()
                .collect();
            unknown.sort_unstable();
            if !unknown.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "updates.owners.values: owner ids {} are not owners of the HubSpot portal",
                    unknown.join(", ")
                )));
            }
        }
        if !types_needed.is_empty() {
            let def = portal
                .client
                .property(spoke_hubspot::ObjectType::Companies, "type")
                .await?;
            let allowed: HashSet<String> = def
                .map(|d| d.option_values().map(str::to_owned).collect())
                .unwrap_or_default();
            let mut unknown: Vec<&str> = types_needed
                .iter()
                .filter(|t| !allowed.contains(**t))
                .copied()
                .collect();
            unknown.sort_unstable();
            if !unknown.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "updates.company_types.values: {} are not values of the company property `type`",
                    unknown.join(", ")
                )));
            }
        }
        Ok(())
    }

    async fn emit_cleared(
        &self,
        tx: &mut sqlx::PgConnection,
        org: &str,
        object: ObjectKind,
        removed: &[store::Change],
    ) -> Result<()> {
        let portal_id = sqlx::query_scalar::<_, i64>(
            "SELECT portal_id FROM connection_mirror WHERE org_id = $1",
        )
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
        let chunks: Vec<&[store::Change]> = removed.chunks(1000).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let ev = FilteringMatchEvent {
                org_id: org.to_owned(),
                run_id: String::new(),
                occurred_at: Some(ts(Utc::now())),
                object: i32::from(object.code()),
                chunk_index: i32::try_from(i).unwrap_or(i32::MAX),
                last_chunk: i + 1 == chunks.len(),
                added: Vec::new(),
                removed: chunk
                    .iter()
                    .map(|(p, h, o)| MatchChange {
                        profile_id: p.clone(),
                        hubspot_id: h.clone(),
                        owner_id: o.clone(),
                    })
                    .collect(),
                portal_id,
            };
            Outbox::enqueue(tx, topics::FILTERING_EVENTS, org, &ev).await?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl FilteringService for FilteringServiceImpl {
    async fn get_filter_settings(
        &self,
        req: Request<pb::GetFilterSettingsRequest>,
    ) -> std::result::Result<Response<pb::GetFilterSettingsResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let filters = store::load_filters(&mut conn, &c.org).await?;
        let org = store::org_settings(&mut conn, &c.org).await?;
        Ok(Response::new(pb::GetFilterSettingsResponse {
            settings: Some(settings_proto(&filters, &org)),
            locked_by_advanced_sync: org.advanced_sync,
        }))
    }

    async fn save_filter_settings(
        &self,
        req: Request<pb::SaveFilterSettingsRequest>,
    ) -> std::result::Result<Response<pb::SaveFilterSettingsResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        c.require_admin()?;
        self.remember_admin(&c).await;
        let body = req.into_inner();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut filters = store::load_filters(&mut conn, &c.org).await?;
        let mut org = store::org_settings(&mut conn, &c.org).await?;
        drop(conn);
        let mut seen = HashSet::new();
        for u in &body.updates {
            let object = ObjectKind::from_code(u.object).ok_or_else(|| {
                Error::InvalidArgument(
                    "updates.object: must be companies, contacts or deals".into(),
                )
            })?;
            if !seen.insert(object) {
                return Err(Error::InvalidArgument(format!(
                    "updates: more than one update for {}",
                    object.name()
                ))
                .into());
            }
            let Some(current) = filters.iter_mut().find(|f| f.object == object) else {
                continue;
            };
            if org.advanced_sync && touches_locked_fields(u, current) {
                return Err(Error::FailedPrecondition(format!(
                    "Advanced Sync is on: it imports all records and fields, so {} filter settings \
                     cannot be edited (only contact lists can); turn Advanced Sync off first",
                    object.name()
                ))
                .into());
            }
            if let Some(v) = &u.owners {
                current.owners = value_filter(v);
            }
            if let Some(v) = &u.company_types {
                current.company_types = value_filter(v);
            }
            if let Some(w) = u.deal_created_window {
                current.deal_window = DealWindow::from_i32(w);
            }
            if let Some(b) = u.require_deals {
                current.require_deals = b;
            }
            if let Some(b) = u.exclude_email_opt_outs {
                current.exclude_email_opt_outs = b;
            }
            if let Some(l) = &u.contact_list_ids {
                current.contact_list_ids = l
                    .values
                    .iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            current.validate()?;
        }
        let changed: Vec<ObjectFilter> = filters
            .iter()
            .filter(|f| seen.contains(&f.object))
            .cloned()
            .collect();
        self.validate_against_portal(&c.org, &changed).await?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        for f in &changed {
            store::save_filter(&mut tx, &c.org, f).await?;
        }
        if let Some(a) = body.email_alerts {
            org.email_alerts = a;
        }
        org.settings_updated_at = Some(Utc::now());
        store::save_org_settings(&mut tx, &c.org, &org).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::SaveFilterSettingsResponse {
            settings: Some(settings_proto(&filters, &org)),
        }))
    }

    async fn set_filtering_enabled(
        &self,
        req: Request<pb::SetFilteringEnabledRequest>,
    ) -> std::result::Result<Response<pb::SetFilteringEnabledResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        c.require_admin()?;
        self.remember_admin(&c).await;
        let body = req.into_inner();
        let mut objects = objects_of(&body.objects, "objects")?;
        if objects.is_empty() {
            objects = ObjectKind::ALL.to_vec();
        }
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let mut filters = store::load_filters(&mut tx, &c.org).await?;
        for f in filters.iter_mut().filter(|f| objects.contains(&f.object)) {
            f.enabled = body.enabled;
            store::save_filter(&mut tx, &c.org, f).await?;
        }
        if !filters.iter().any(|f| f.enabled) {
            // Nothing left to run: a queued run would only be cancelled when claimed.
            store::cancel_queued(&mut tx, &c.org, "cancelled: filtering was turned off").await?;
        }
        let mut org = store::org_settings(&mut tx, &c.org).await?;
        org.settings_updated_at = Some(Utc::now());
        store::save_org_settings(&mut tx, &c.org, &org).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::SetFilteringEnabledResponse {
            settings: Some(settings_proto(&filters, &org)),
        }))
    }

    async fn get_schedule(
        &self,
        req: Request<pb::GetScheduleRequest>,
    ) -> std::result::Result<Response<pb::GetScheduleResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let s = store::get_schedule(&mut conn, &c.org).await?;
        let any = store::load_filters(&mut conn, &c.org)
            .await?
            .iter()
            .any(|f| f.enabled);
        Ok(Response::new(pb::GetScheduleResponse {
            schedule: Some(schedule_proto(s.as_ref(), any)),
        }))
    }

    async fn save_schedule(
        &self,
        req: Request<pb::SaveScheduleRequest>,
    ) -> std::result::Result<Response<pb::SaveScheduleResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        c.require_admin()?;
        self.remember_admin(&c).await;
        let body = req.into_inner();
        let now = Utc::now();
        let (today_weekday, today_dom) = schedule::today_local(now);
        let mut row = ScheduleRow {
            org_id: c.org.clone(),
            frequency: 0,
            weekday: 0,
            day_of_month: 0,
            next_run_at: None,
        };
        match pb::Frequency::try_from(body.frequency) {
            Ok(pb::Frequency::Weekly) => {
                row.frequency = 1;
                row.weekday = if body.weekday == 0 {
                    today_weekday.number_from_monday() as i16
                } else if (1..=7).contains(&body.weekday) {
                    body.weekday as i16
                } else {
                    return Err(Error::InvalidArgument("weekday: must be 1..=7".into()).into());
                };
            }
            Ok(pb::Frequency::Monthly) => {
                row.frequency = 2;
                row.day_of_month = match body.day_of_month {
                    0 => today_dom as i16,
                    d @ 1..=31 => d as i16,
                    _ => {
                        return Err(Error::InvalidArgument(
                            "day_of_month: must be 1..=31 (0 for today)".into(),
                        )
                        .into());
                    }
                };
            }
            _ => {
                return Err(
                    Error::InvalidArgument("frequency: must be WEEKLY or MONTHLY".into()).into(),
                );
            }
        }
        row.next_run_at = scheduler::next_slot(&row, now);
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        store::save_schedule(&mut tx, &row).await?;
        let any = store::load_filters(&mut tx, &c.org)
            .await?
            .iter()
            .any(|f| f.enabled);
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::SaveScheduleResponse {
            schedule: Some(schedule_proto(Some(&row), any)),
        }))
    }

    async fn run_now(
        &self,
        req: Request<pb::RunNowRequest>,
    ) -> std::result::Result<Response<pb::RunNowResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        c.require_admin()?;
        self.remember_admin(&c).await;
        let body = req.into_inner();
        check_key(&body.idempotency_key)?;
        let hash = request_hash(&body);
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        if let Some((h, resp)) =
            store::idempotent_result(&mut conn, &c.org, "RunNow", &body.idempotency_key).await?
        {
            if h != hash {
                return Err(Error::InvalidArgument(
                    "idempotency_key: already used with a different request".into(),
                )
                .into());
            }
            let r = pb::RunNowResponse::decode(resp.as_slice())
                .map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(r));
        }
        let filters = store::load_filters(&mut conn, &c.org).await?;
        drop(conn);
        let requested = objects_of(&body.objects, "objects")?;
        let objects: Vec<ObjectKind> = filters
            .iter()
            .filter(|f| f.enabled && (requested.is_empty() || requested.contains(&f.object)))
            .map(|f| f.object)
            .collect();
        if objects.is_empty() {
            return Err(Error::FailedPrecondition(
                "no object to run: enable filtering for companies, contacts or deals first (SetFilteringEnabled)".into(),
            )
            .into());
        }
        // Fails with FAILED_PRECONDITION when the org is not connected or needs re-auth.
        self.portals.portal(&c.org).await?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let run =
            scheduler::request_run(&mut tx, &c.org, Trigger::RunNow, objects, &c.user_id, None)
                .await?;
        let resp = pb::RunNowResponse {
            run: Some(run.to_proto()),
        };
        store::store_idempotent_result(
            &mut tx,
            &c.org,
            "RunNow",
            &body.idempotency_key,
            &hash,
            &resp.encode_to_vec(),
        )
        .await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(resp))
    }

    async fn get_run(
        &self,
        req: Request<pb::GetRunRequest>,
    ) -> std::result::Result<Response<pb::GetRunResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let id = Uuid::parse_str(&req.get_ref().run_id)
            .map_err(|_| Error::InvalidArgument("run_id: not a UUID".into()))?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let run = store::get_run(&mut conn, &c.org, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {id} not found")))?;
        Ok(Response::new(pb::GetRunResponse {
            run: Some(run.to_proto()),
        }))
    }

    async fn list_runs(
        &self,
        req: Request<pb::ListRunsRequest>,
    ) -> std::result::Result<Response<pb::ListRunsResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let body = req.get_ref();
        let size = match body.page_size {
            n if n <= 0 => 20,
            n => n.min(200),
        };
        let after = if body.page_token.is_empty() {
            None
        } else {
            let (t, id) = body.page_token.split_once('_').ok_or_else(|| {
                Error::InvalidArgument("page_token: not a token from ListRuns".into())
            })?;
            let t: i64 = t.parse().map_err(|_| {
                Error::InvalidArgument("page_token: not a token from ListRuns".into())
            })?;
            let id = Uuid::parse_str(id).map_err(|_| {
                Error::InvalidArgument("page_token: not a token from ListRuns".into())
            })?;
            Some((DateTime::from_timestamp_micros(t).unwrap_or_default(), id))
        };
        let state = (body.state != 0).then_some(body.state as i16);
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let runs = store::list_runs(&mut conn, &c.org, state, after, i64::from(size) + 1).await?;
        let more = runs.len() > size as usize;
        let runs: Vec<_> = runs.into_iter().take(size as usize).collect();
        let next = match (more, runs.last()) {
            (true, Some(r)) => format!("{}_{}", r.requested_at.timestamp_micros(), r.run_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(|r| r.to_proto()).collect(),
            next_page_token: next,
        }))
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> std::result::Result<Response<pb::GetStatsResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let filters = store::load_filters(&mut conn, &c.org).await?;
        let sched = store::get_schedule(&mut conn, &c.org).await?;
        let mut objects = Vec::new();
        for f in &filters {
            let last = store::last_run_of(&mut conn, &c.org, f.object).await?;
            let completed = store::last_completed_of(&mut conn, &c.org, f.object).await?;
            let (linked, _) = store::linked_counts(&mut conn, &c.org, f.object).await?;
            let (_, deals) = store::linked_counts(&mut conn, &c.org, ObjectKind::Deals).await?;
            let run_stats = |r: &Option<crate::model::Run>| -> ObjectStats {
                r.as_ref()
                    .and_then(|r| r.stats.iter().find(|s| s.object == f.object).cloned())
                    .unwrap_or_default()
            };
            let status = last.as_ref().map_or(0, |r| i32::from(r.state));
            let message = last
                .as_ref()
                .filter(|r| r.state != RunState::Completed.code())
                .map(|r| r.message.clone())
                .unwrap_or_default();
            objects.push(pb::ObjectStats {
                object: i32::from(f.object.code()),
                enabled: f.enabled,
                status,
                match_rate_percent: run_stats(&completed).match_rate(),
                profiles_linked: linked,
                total_deals_matched: deals,
                last_match_at: completed.as_ref().and_then(|r| r.finished_at).map(ts),
                next_match_at: if f.enabled {
                    sched.as_ref().and_then(|s| s.next_run_at).map(ts)
                } else {
                    None
                },
                deal_created_window: f.deal_window.as_i32(),
                message,
            });
        }
        let any = filters.iter().any(|f| f.enabled);
        Ok(Response::new(pb::GetStatsResponse {
            objects,
            schedule: Some(schedule_proto(sched.as_ref(), any)),
        }))
    }

    async fn list_matches(
        &self,
        req: Request<pb::ListMatchesRequest>,
    ) -> std::result::Result<Response<pb::ListMatchesResponse>, Status> {
        let c = auth::caller(&req)?;
        any_role(c)?;
        let body = req.get_ref();
        if body.owner_ids.len() > 10 {
            return Err(Error::InvalidArgument("owner_ids: at most 10".into()).into());
        }
        if body.profile_ids.len() > 1000 {
            return Err(Error::InvalidArgument("profile_ids: at most 1,000".into()).into());
        }
        let size = match body.page_size {
            n if n <= 0 => 100,
            n => n.min(1000),
        };
        let object = if body.object == 0 {
            None
        } else {
            Some(ObjectKind::from_code(body.object).ok_or_else(|| {
                Error::InvalidArgument("object: must be companies, contacts or deals".into())
            })?)
        };
        let after = if body.page_token.is_empty() {
            None
        } else {
            let (o, p) = body.page_token.split_once(':').ok_or_else(|| {
                Error::InvalidArgument("page_token: not a token from ListMatches".into())
            })?;
            let o: i16 = o.parse().map_err(|_| {
                Error::InvalidArgument("page_token: not a token from ListMatches".into())
            })?;
            Some((o, p.to_owned()))
        };
        let q = MatchQuery {
            object,
            owner_ids: body.owner_ids.clone(),
            profile_ids: body.profile_ids.clone(),
            after,
            limit: i64::from(size) + 1,
        };
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let rows = store::list_matches(&mut conn, &c.org, &q).await?;
        let more = rows.len() > size as usize;
        let rows: Vec<_> = rows.into_iter().take(size as usize).collect();
        let next = match (more, rows.last()) {
            (true, Some(m)) => format!("{}:{}", m.object.code(), m.profile_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMatchesResponse {
            matches: rows.iter().map(|m| m.to_proto()).collect(),
            next_page_token: next,
        }))
    }

    async fn clear_matches(
        &self,
        req: Request<pb::ClearMatchesRequest>,
    ) -> std::result::Result<Response<pb::ClearMatchesResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        c.require_admin()?;
        self.remember_admin(&c).await;
        let body = req.into_inner();
        check_key(&body.idempotency_key)?;
        let hash = request_hash(&body);
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some((h, resp)) =
            store::idempotent_result(&mut tx, &c.org, "ClearMatches", &body.idempotency_key).await?
        {
            if h != hash {
                return Err(Error::InvalidArgument(
                    "idempotency_key: already used with a different request".into(),
                )
                .into());
            }
            let r = pb::ClearMatchesResponse::decode(resp.as_slice())
                .map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(r));
        }
        if let Some(run) = store::active_run(&mut tx, &c.org).await?
            && run.state == RunState::Running.code()
        {
            return Err(Error::FailedPrecondition(format!(
                "run {} is running: clear the matches after it ends",
                run.run_id
            ))
            .into());
        }
        let mut objects = objects_of(&body.objects, "objects")?;
        if objects.is_empty() {
            objects = ObjectKind::ALL.to_vec();
        }
        let mut cleared = 0i64;
        for o in objects {
            let removed = store::clear_matches(&mut tx, &c.org, o).await?;
            cleared += removed.len() as i64;
            if !removed.is_empty() {
                self.emit_cleared(&mut tx, &c.org, o, &removed).await?;
            }
        }
        let resp = pb::ClearMatchesResponse { cleared };
        store::store_idempotent_result(
            &mut tx,
            &c.org,
            "ClearMatches",
            &body.idempotency_key,
            &hash,
            &resp.encode_to_vec(),
        )
        .await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(resp))
    }

    async fn get_advanced_sync_settings(
        &self,
        req: Request<pb::GetAdvancedSyncSettingsRequest>,
    ) -> std::result::Result<Response<pb::GetAdvancedSyncSettingsResponse>, Status> {
        let c = auth::caller(&req)?;
        admin_or_service(c)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let s = store::org_settings(&mut conn, &c.org).await?;
        Ok(Response::new(pb::GetAdvancedSyncSettingsResponse {
            settings: Some(advanced_proto(&s)),
        }))
    }

    async fn save_advanced_sync_settings(
        &self,
        req: Request<pb::SaveAdvancedSyncSettingsRequest>,
    ) -> std::result::Result<Response<pb::SaveAdvancedSyncSettingsResponse>, Status> {
        let c = auth::caller(&req)?.clone();
        admin_or_service(&c)?;
        let body = req.into_inner();
        if body.engagement_product.is_some() && !c.has(Role::Service) {
            return Err(Error::PermissionDenied(
                "engagement_product is the org's entitlement: only services may set it".into(),
            )
            .into());
        }
        if body.enabled.is_some() && !c.has(Role::Admin) && !c.has(Role::Service) {
            return Err(Status::permission_denied("enabled needs the admin role"));
        }
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let mut s = store::org_settings(&mut tx, &c.org).await?;
        if let Some(p) = body.engagement_product {
            if p && !s.engagement_product {
                // Gaining the product turns Advanced Sync on (the guide's default).
                s.advanced_sync = true;
            }
            if !p {
                s.advanced_sync = false;
            }
            s.engagement_product = p;
        }
        if let Some(e) = body.enabled {
            if e && !s.engagement_product {
                return Err(Error::FailedPrecondition(
                    "Advanced Sync needs the engagement product: the org does not have it".into(),
                )
                .into());
            }
            s.advanced_sync = e;
        }
        store::save_org_settings(&mut tx, &c.org, &s).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::SaveAdvancedSyncSettingsResponse {
            settings: Some(advanced_proto(&s)),
        }))
    }

    async fn load_profiles(
        &self,
        req: Request<Streaming<pb::LoadProfilesRequest>>,
    ) -> std::result::Result<Response<pb::LoadProfilesResponse>, Status> {
        let c = auth::caller(&req)?;
        c.require_service()?;
        let totals = profiles::load_stream(&self.pool, req.into_inner()).await?;
        metrics::counter!("spoke_filtering_profiles_loaded_total")
            .increment(u64::try_from(totals.upserted).unwrap_or(0));
        Ok(Response::new(totals.into_response()))
    }
}
