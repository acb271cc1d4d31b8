//! The `spoke.export.v1.ExportService` gRPC service: authentication checks and request validation,
//! then calls into the domain (`jobs`, `writeback`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::Stream;
use spoke_platform::auth::{self, Role};
use spoke_proto::common::v1::{ActivityType, DuplicateAction, ExportJobState, ObjectType};
use spoke_proto::export::v1::export_service_server::ExportService;
use spoke_proto::export::v1::{
    CancelExportRequest, CancelExportResponse, CreateExportRequest, CreateExportResponse,
    GetExportRequest, GetExportResponse, GetWritebackSettingsRequest, GetWritebackSettingsResponse,
    ListExportRecordsRequest, ListExportRecordsResponse, ListExportsRequest, ListExportsResponse,
    ListWritebackActivitiesRequest, ListWritebackActivitiesResponse, ResolveDuplicatesRequest,
    ResolveDuplicatesResponse, SaveWritebackSettingsRequest, SaveWritebackSettingsResponse,
    WatchExportRequest, WatchExportResponse, WritebackActivity, WritebackLogMode,
    WritebackSettings, WritebackState,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::Error;
use crate::events::{job_proto, record_proto};
use crate::jobs::{self, Actor, CreateExport, Resolution};
use crate::model::is_terminal;
use crate::ports::Cluster;
use crate::store::{self, JobFilter};
use crate::writeback;

/// The gRPC face of the export service.
#[derive(Clone)]
pub struct ExportServiceImpl {
    pool: PgPool,
    cluster: Arc<dyn Cluster>,
}

impl ExportServiceImpl {
    /// A service over the given pool and cluster clients.
    pub fn new(pool: PgPool, cluster: Arc<dyn Cluster>) -> Self {
        Self { pool, cluster }
    }
}

/// The actor of a read or a decision: members act as themselves; services for the org.
fn actor<T>(req: &Request<T>) -> Result<Actor, Status> {
    let c = auth::caller(req)?;
    if !(c.has(Role::Admin) || c.has(Role::User) || c.has(Role::Service)) {
        return Err(Status::permission_denied(
            "this operation needs the user, admin or service role",
        ));
    }
    Ok(Actor {
        org: c.org.clone(),
        user_id: c.user_id.clone(),
        email: c.email.clone(),
        sees_all: c.has(Role::Admin) || c.has(Role::Service),
    })
}

fn member_actor<T>(req: &Request<T>) -> Result<Actor, Status> {
    auth::caller(req)?.require_member()?;
    actor(req)
}

/// The org of a writeback read: admins and services.
fn admin_or_service<T>(req: &Request<T>) -> Result<String, Status> {
    let c = auth::caller(req)?;
    if !(c.has(Role::Admin) || c.has(Role::Service)) {
        return Err(Status::permission_denied(
            "this operation needs the admin or service role",
        ));
    }
    Ok(c.org.clone())
}

fn settings_proto(s: &writeback::Settings) -> WritebackSettings {
    WritebackSettings {
        enabled: s.enabled,
        log_mode: s.log_mode as i32,
        activity_types: s.activity_types.iter().map(|t| *t as i32).collect(),
        updated_at: s.updated_at.map(crate::events::ts),
    }
}

fn activity_proto(r: &writeback::store::ActivityRow) -> WritebackActivity {
    WritebackActivity {
        activity_id: r.activity_id.clone(),
        r#type: r.activity_type,
        user_id: r.user_id.clone(),
        state: writeback::state_proto(&r.state) as i32,
        reason: r.reason.clone(),
        hubspot_object: r.hubspot_object.clone(),
        hubspot_id: r.hubspot_id.clone(),
        occurred_at: r.occurred_at.map(crate::events::ts),
        updated_at: Some(crate::events::ts(r.updated_at)),
        attempts: r.attempts,
        contact_profile_id: r.contact_profile_id.clone(),
        company_profile_id: r.company_profile_id.clone(),
    }
}

/// Checks a SaveWritebackSettings request; the error names the field.
fn settings_change(req: &SaveWritebackSettingsRequest) -> Result<writeback::SettingsChange, Error> {
    let log_mode = match req.log_mode {
        None => None,
        Some(m) => match WritebackLogMode::try_from(m) {
            Ok(WritebackLogMode::Unspecified) | Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "log_mode: must be TASKS or ENGAGEMENTS (got {m})"
                )));
            }
            Ok(m) => Some(m),
        },
    };
    let activity_types = match &req.activity_types {
        None => None,
        Some(set) => {
            let mut out = Vec::new();
            for (i, t) in set.types.iter().enumerate() {
                match ActivityType::try_from(*t) {
                    Ok(ActivityType::Unspecified) | Err(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "activity_types.types[{i}]: must be EMAIL, CALL or MEETING (got {t})"
                        )));
                    }
                    Ok(t) if !out.contains(&t) => out.push(t),
                    Ok(_) => {}
                }
            }
            Some(out)
        }
    };
    Ok(writeback::SettingsChange {
        enabled: req.enabled,
        log_mode,
        activity_types,
    })
}

fn page_size(requested: i32, default: i64, max: i64) -> i64 {
    if requested <= 0 {
        default
    } else {
        (requested as i64).min(max)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchExportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExportService for ExportServiceImpl {
    async fn create_export(
        &self,
        request: Request<CreateExportRequest>,
    ) -> Result<Response<CreateExportResponse>, Status> {
        let c = auth::caller(&request)?.clone();
        let req = request.get_ref();
        let mut actor = actor(&request)?;
        if c.has(Role::Admin) || c.has(Role::User) {
            if !req.on_behalf_of_user_id.is_empty() {
                return Err(Error::InvalidArgument(
                    "on_behalf_of_user_id: only service callers may set it; your user is the token's subject".into(),
                )
                .into());
            }
        } else {
            if req.on_behalf_of_user_id.is_empty() {
                return Err(Error::InvalidArgument(
                    "on_behalf_of_user_id: required for service callers".into(),
                )
                .into());
            }
            actor.user_id = req.on_behalf_of_user_id.clone();
            actor.email = String::new();
        }
        let hash = jobs::request_hash(req);
        let mut req = request.into_inner();
        let object = ObjectType::try_from(req.object).unwrap_or(ObjectType::Unspecified);
        let choice = DuplicateAction::try_from(req.duplicate_choice)
            .map_err(|_| Error::InvalidArgument("duplicate_choice: unknown value".into()))?;
        jobs::validate_create(&req.idempotency_key, object, &mut req.records, &req.label)?;
        let span =
            tracing::info_span!("export.create", org = %actor.org, records = req.records.len());
        let (job, created) = jobs::create(
            &self.pool,
            &self.cluster,
            &actor,
            CreateExport {
                idempotency_key: req.idempotency_key,
                object,
                records: req.records,
                duplicate_choice: choice,
                label: req.label,
                request_hash: hash,
            },
        )
        .instrument(span)
        .await?;
        Ok(Response::new(CreateExportResponse {
            job: Some(job_proto(&job)),
            created,
        }))
    }

    async fn get_export(
        &self,
        request: Request<GetExportRequest>,
    ) -> Result<Response<GetExportResponse>, Status> {
        let actor = actor(&request)?;
        let job = jobs::get(&self.pool, &actor, &request.get_ref().job_id).await?;
        Ok(Response::new(GetExportResponse {
            job: Some(job_proto(&job)),
        }))
    }

    async fn watch_export(
        &self,
        request: Request<WatchExportRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let actor = actor(&request)?;
        let job = jobs::get(&self.pool, &actor, &request.get_ref().job_id).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut last_sent: Option<DateTime<Utc>> = None;
            let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
            let mut job = job;
            loop {
                let done = job.n_created + job.n_updated + job.n_skipped + job.n_failed;
                let now = Instant::now();
                samples.push_back((now, done));
                while samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(10))
                {
                    samples.pop_front();
                }
                if last_sent != Some(job.updated_at) {
                    let rate = match samples.front() {
                        Some((t, d)) if now.duration_since(*t).as_secs_f64() > 0.2 => {
                            (done - d) as f64 / now.duration_since(*t).as_secs_f64()
                        }
                        _ => 0.0,
                    };
                    let msg = WatchExportResponse {
                        job: Some(job_proto(&job)),
                        records_per_second: rate,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    last_sent = Some(job.updated_at);
                }
                if is_terminal(
                    ExportJobState::try_from(job.state).unwrap_or(ExportJobState::Pending),
                ) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                job = match store::job(&pool, job.job_id).await {
                    Ok(Some(j)) => j,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_exports(
        &self,
        request: Request<ListExportsRequest>,
    ) -> Result<Response<ListExportsResponse>, Status> {
        let actor = actor(&request)?;
        let req = request.get_ref();
        let limit = page_size(req.page_size, 50, 500);
        let before = if req.page_token.is_empty() {
            None
        } else {
            Some(parse_job_token(&req.page_token)?)
        };
        let user_id = if actor.sees_all {
            (!req.user_id.is_empty()).then(|| req.user_id.clone())
        } else {
            Some(actor.user_id.clone())
        };
        let filter = JobFilter {
            user_id,
            state: (req.state != 0).then_some(req.state),
            object: (req.object != 0).then_some(req.object),
            before,
        };
        let rows = store::list_jobs(&self.pool, &actor.org, &filter, limit + 1)
            .await
            .map_err(Status::from)?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_page_token = match rows.last() {
            Some(last) if more => format!("{}:{}", last.created_at.timestamp_micros(), last.job_id),
            _ => String::new(),
        };
        Ok(Response::new(ListExportsResponse {
            jobs: rows.iter().map(job_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_export_records(
        &self,
        request: Request<ListExportRecordsRequest>,
    ) -> Result<Response<ListExportRecordsResponse>, Status> {
        let actor = actor(&request)?;
        let req = request.get_ref();
        let job = jobs::get(&self.pool, &actor, &req.job_id).await?;
        let limit = page_size(req.page_size, 100, 1000);
        let after: i32 = if req.page_token.is_empty() {
            -1
        } else {
            req.page_token.parse().map_err(|_| {
                Error::InvalidArgument("page_token: not a token of this method".into())
            })?
        };
        let cond = store::status_condition(req.status);
        let rows = store::list_records(&self.pool, job.job_id, cond, after, limit + 1)
            .await
            .map_err(Status::from)?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_page_token = match rows.last() {
            Some(last) if more => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(ListExportRecordsResponse {
            records: rows.iter().map(record_proto).collect(),
            next_page_token,
        }))
    }

    async fn resolve_duplicates(
        &self,
        request: Request<ResolveDuplicatesRequest>,
    ) -> Result<Response<ResolveDuplicatesResponse>, Status> {
        let actor = member_actor(&request)?;
        let hash = jobs::request_hash(request.get_ref());
        let req = request.into_inner();
        let mut resolutions = Vec::with_capacity(req.resolutions.len());
        for (i, r) in req.resolutions.into_iter().enumerate() {
            let action = DuplicateAction::try_from(r.action).map_err(|_| {
                Error::InvalidArgument(format!("resolutions[{i}].action: unknown value"))
            })?;
            resolutions.push(Resolution {
                record_id: r.record_id,
                action,
                target: r.target_hubspot_id,
            });
        }
        let rest = DuplicateAction::try_from(req.apply_to_rest)
            .map_err(|_| Error::InvalidArgument("apply_to_rest: unknown value".into()))?;
        let resolve = jobs::ResolveRequest {
            key: req.idempotency_key,
            job_id: req.job_id,
            resolutions,
            apply_to_rest: rest,
            hash,
        };
        let (job, remaining) = jobs::resolve(&self.pool, &self.cluster, &actor, resolve).await?;
        Ok(Response::new(ResolveDuplicatesResponse {
            job: Some(job_proto(&job)),
            remaining,
        }))
    }

    async fn cancel_export(
        &self,
        request: Request<CancelExportRequest>,
    ) -> Result<Response<CancelExportResponse>, Status> {
        let actor = member_actor(&request)?;
        let job = jobs::cancel(&self.pool, &actor, &request.get_ref().job_id).await?;
        Ok(Response::new(CancelExportResponse {
            job: Some(job_proto(&job)),
        }))
    }

    async fn get_writeback_settings(
        &self,
        request: Request<GetWritebackSettingsRequest>,
    ) -> Result<Response<GetWritebackSettingsResponse>, Status> {
        let org = admin_or_service(&request)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Status::from(Error::Database(e)))?;
        let s = writeback::store::settings(&mut conn, &org).await?;
        Ok(Response::new(GetWritebackSettingsResponse {
            settings: Some(settings_proto(&s)),
        }))
    }

    async fn save_writeback_settings(
        &self,
        request: Request<SaveWritebackSettingsRequest>,
    ) -> Result<Response<SaveWritebackSettingsResponse>, Status> {
        let c = auth::caller(&request)?;
        c.require_admin()?;
        let org = c.org.clone();
        let change = settings_change(request.get_ref())?;
        let s = writeback::store::save_settings(&self.pool, &org, &change).await?;
        tracing::info!(org = %org, enabled = s.enabled, log_mode = ?s.log_mode, "writeback settings saved");
        Ok(Response::new(SaveWritebackSettingsResponse {
            settings: Some(settings_proto(&s)),
        }))
    }

    async fn list_writeback_activities(
        &self,
        request: Request<ListWritebackActivitiesRequest>,
    ) -> Result<Response<ListWritebackActivitiesResponse>, Status> {
        let org = admin_or_service(&request)?;
        let req = request.get_ref();
        let limit = page_size(req.page_size, 100, 1000);
        let state = WritebackState::try_from(req.state)
            .map_err(|_| Error::InvalidArgument(format!("state: unknown value {}", req.state)))?;
        let before = if req.page_token.is_empty() {
            None
        } else {
            let bad = || Error::InvalidArgument("page_token: not a token of this method".into());
            let (micros, id) = req.page_token.split_once(':').ok_or_else(bad)?;
            let micros: i64 = micros.parse().map_err(|_| bad())?;
            let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
            Some((at, id.to_string()))
        };
        let rows = writeback::store::list_activities(
            &self.pool,
            &org,
            writeback::state_name(state),
            before,
            limit + 1,
        )
        .await?;
        let more = rows.len() as i64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_page_token = match rows.last() {
            Some(last) if more => format!(
                "{}:{}",
                last.created_at.timestamp_micros(),
                last.activity_id
            ),
            _ => String::new(),
        };
        Ok(Response::new(ListWritebackActivitiesResponse {
            activities: rows.iter().map(activity_proto).collect(),
            next_page_token,
        }))
    }
}

fn parse_job_token(t: &str) -> Result<(DateTime<Utc>, Uuid), Status> {
    let bad = || {
        Status::from(Error::InvalidArgument(
            "page_token: not a token of this method".into(),
        ))
    };
    let (micros, id) = t.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, id))
}
