//! The `spoke.dedupe.v1.DedupeService` gRPC service: authentication checks and request validation,
//! then calls into the domain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spoke_platform::auth::{self, Role};
use spoke_platform::connection_mirror;
use spoke_proto::common::v1::{DuplicateAction, ObjectType};
use spoke_proto::dedupe::v1::dedupe_service_server::DedupeService;
use spoke_proto::dedupe::v1::{CheckDuplicatesRequest, CheckDuplicatesResponse};
use spoke_proto::events::v1::ExportRequestRecord;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::check::{Batch, Checker, Mode};
use crate::error::{Error, Result};
use crate::keys::Object;
use crate::lookup::PortalAccess;
use crate::settings::SettingsSource;

/// Most records one preview may check.
pub const MAX_PREVIEW_RECORDS: usize = 1_000;

/// The gRPC face of the dedupe service.
#[derive(Clone)]
pub struct DedupeServiceImpl {
    pool: sqlx::PgPool,
    checker: Checker,
    portals: Arc<dyn PortalAccess>,
    settings: Arc<dyn SettingsSource>,
    timeout: Duration,
}

impl DedupeServiceImpl {
    /// A service over the given pool and dependencies.
    pub fn new(
        pool: sqlx::PgPool,
        checker: Checker,
        portals: Arc<dyn PortalAccess>,
        settings: Arc<dyn SettingsSource>,
        timeout: Duration,
    ) -> Self {
        Self {
            pool,
            checker,
            portals,
            settings,
            timeout,
        }
    }

    async fn preview(
        &self,
        org: &str,
        req: CheckDuplicatesRequest,
    ) -> Result<CheckDuplicatesResponse> {
        let started = Instant::now();
        let object = validate(&req)?;
        let mut conn = self.pool.acquire().await?;
        let connection = connection_mirror::get(&mut conn, org).await?;
        let portal_id = match connection {
            Some(c) if c.status == connection_mirror::status::CONNECTED => c.portal_id,
            Some(c) if c.status == connection_mirror::status::REAUTH_REQUIRED => {
                return Err(Error::FailedPrecondition(
                    "reconnect required: HubSpot rejected the connection; an admin must reconnect HubSpot".into(),
                ));
            }
            _ => {
                return Err(Error::FailedPrecondition(
                    "not connected: connect HubSpot before checking duplicates".into(),
                ));
            }
        };
        let policy = self.settings.policy(org, object, None).await?;
        let choice = req.duplicate_choice();
        if choice == DuplicateAction::NeedsReview || !policy.allows_choice(choice) {
            return Err(Error::InvalidArgument(format!(
                "duplicate_choice: {} is not among the options the admin allows",
                crate::decision::action_name(choice)
            )));
        }
        let records: Vec<ExportRequestRecord> = req
            .records
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                if r.record_id.is_empty() {
                    r.record_id = i.to_string();
                }
                ExportRequestRecord {
                    record: Some(r),
                    duplicate_choice: choice as i32,
                    target_hubspot_id: String::new(),
                }
            })
            .collect();
        let check = self.checker.check(
            &mut conn,
            self.portals.as_ref(),
            Batch {
                org,
                portal_id,
                object,
                job_id: "",
                records: &records,
            },
            &policy,
            Mode::Preview,
        );
        let checks = tokio::time::timeout(self.timeout, check)
            .await
            .map_err(|_| {
                Error::DeadlineExceeded(format!(
                    "duplicate lookups took longer than {} s; check fewer records",
                    self.timeout.as_secs()
                ))
            })??;
        metrics::histogram!("spoke_dedupe_check_duration_seconds", "path" => "preview")
            .record(started.elapsed().as_secs_f64());
        Ok(CheckDuplicatesResponse {
            checks,
            config_version: policy.version,
        })
    }
}

/// Checks the request's shape; returns the object.
fn validate(req: &CheckDuplicatesRequest) -> Result<Object> {
    let object = Object::from_proto(req.object).ok_or_else(|| {
        Error::InvalidArgument(
            "object: must be OBJECT_TYPE_COMPANIES or OBJECT_TYPE_CONTACTS".into(),
        )
    })?;
    if req.records.is_empty() || req.records.len() > MAX_PREVIEW_RECORDS {
        return Err(Error::InvalidArgument(format!(
            "records: between 1 and {MAX_PREVIEW_RECORDS} records are required, got {}",
            req.records.len()
        )));
    }
    let mut ids = HashSet::new();
    for (i, r) in req.records.iter().enumerate() {
        let kind = r.profile.as_ref().map(|p| p.kind).unwrap_or_default();
        if kind != object.to_proto() as i32 {
            return Err(Error::InvalidArgument(format!(
                "records[{i}].profile.kind: must be {} like the request's object",
                ObjectType::try_from(req.object)
                    .map(|o| o.as_str_name())
                    .unwrap_or("the object")
            )));
        }
        let id = if r.record_id.is_empty() {
            i.to_string()
        } else {
            r.record_id.clone()
        };
        if !ids.insert(id.clone()) {
            return Err(Error::InvalidArgument(format!(
                "records[{i}].record_id: {id:?} is used twice"
            )));
        }
    }
    Ok(object)
}

#[tonic::async_trait]
impl DedupeService for DedupeServiceImpl {
    async fn check_duplicates(
        &self,
        request: Request<CheckDuplicatesRequest>,
    ) -> std::result::Result<Response<CheckDuplicatesResponse>, Status> {
        let caller = auth::caller(&request)?;
        if ![Role::Admin, Role::User, Role::Service]
            .iter()
            .any(|r| caller.has(*r))
        {
            return Err(Status::permission_denied(
                "CheckDuplicates needs the admin, user or service role",
            ));
        }
        let org = caller.org.clone();
        let req = request.into_inner();
        let span =
            tracing::info_span!("dedupe.check_duplicates", org = %org, records = req.records.len());
        let resp = self.preview(&org, req).instrument(span).await?;
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::common::v1::{ExportRecord, Profile};

    fn record(id: &str, kind: ObjectType) -> ExportRecord {
        ExportRecord {
            record_id: id.into(),
            profile: Some(Profile {
                profile_id: format!("p-{id}"),
                kind: kind as i32,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let company = |id: &str| record(id, ObjectType::Companies);
        let cases: Vec<(CheckDuplicatesRequest, &str)> = vec![
            (
                CheckDuplicatesRequest {
                    object: ObjectType::Deals as i32,
                    records: vec![company("a")],
                    ..Default::default()
                },
                "object:",
            ),
            (
                CheckDuplicatesRequest {
                    object: ObjectType::Companies as i32,
                    ..Default::default()
                },
                "records:",
            ),
            (
                CheckDuplicatesRequest {
                    object: ObjectType::Companies as i32,
                    records: (0..1001).map(|i| company(&i.to_string())).collect(),
                    ..Default::default()
                },
                "records:",
            ),
            (
                CheckDuplicatesRequest {
                    object: ObjectType::Companies as i32,
                    records: vec![company("a"), record("b", ObjectType::Contacts)],
                    ..Default::default()
                },
                "records[1].profile.kind",
            ),
            (
                CheckDuplicatesRequest {
                    object: ObjectType::Companies as i32,
                    records: vec![company("1"), company("")],
                    ..Default::default()
                },
                "records[1].record_id",
            ),
        ];
        for (req, field) in cases {
            let err = validate(&req).unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
        let ok = CheckDuplicatesRequest {
            object: ObjectType::Companies as i32,
            records: (0..1000).map(|i| company(&i.to_string())).collect(),
            ..Default::default()
        };
        assert_eq!(validate(&ok).unwrap(), Object::Companies);
    }
}
