//! The `spoke.connection.v1.ConnectionService` gRPC service: authentication checks and request
//! validation, then calls into the domain.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use spoke_platform::auth::{Caller, Role, caller};
use spoke_proto::connection::v1 as pb;
use spoke_proto::connection::v1::connection_service_server::ConnectionService;
use tonic::{Request, Response, Status};

use crate::budget::{BudgetAuthority, Kind};
use crate::connect::{Completed, Starter};
use crate::crypto::Flow;
use crate::domain::{Domain, ts};
use crate::error::Error;
use crate::store::{self, ContributionRow};
use crate::tokens::{DEFAULT_MIN_VALIDITY, MAX_MIN_VALIDITY};

type Res<T> = std::result::Result<Response<T>, Status>;

/// The gRPC face of the connection service.
#[derive(Debug, Clone)]
pub struct ConnectionServiceImpl {
    domain: Arc<Domain>,
    budget: Arc<BudgetAuthority>,
}

impl ConnectionServiceImpl {
    /// A service over the domain and budget authority.
    pub fn new(domain: Arc<Domain>, budget: Arc<BudgetAuthority>) -> Self {
        Self { domain, budget }
    }
}

fn require_any(c: &Caller, roles: &[Role]) -> Result<(), Status> {
    if roles.iter().any(|r| c.has(*r)) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "this operation needs one of the roles {roles:?}"
        )))
    }
}

fn starter(c: &Caller) -> Starter {
    Starter {
        org: c.org.clone(),
        user_id: c.user_id.clone(),
        email: c.email.clone(),
    }
}

fn page_offset(token: &str) -> Result<i64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| Status::invalid_argument("page_token: not a token from a previous response"))
}

fn page_size(n: i32, default: i32, max: i32) -> Result<i64, Status> {
    match n {
        0 => Ok(i64::from(default)),
        n if (1..=max).contains(&n) => Ok(i64::from(n)),
        _ => Err(Status::invalid_argument(format!(
            "page_size: must be 1..={max}"
        ))),
    }
}

fn kind(k: i32) -> Result<Kind, Status> {
    match pb::BudgetKind::try_from(k) {
        Ok(pb::BudgetKind::Standard) => Ok(Kind::Standard),
        Ok(pb::BudgetKind::Search) => Ok(Kind::Search),
        _ => Err(Status::invalid_argument("kind: must be STANDARD or SEARCH")),
    }
}

fn dur(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn plan_name(plan: i32) -> &'static str {
    match pb::HubSpotPlan::try_from(plan) {
        Ok(pb::HubSpotPlan::Free) => "free",
        Ok(pb::HubSpotPlan::Starter) => "starter",
        Ok(pb::HubSpotPlan::Professional) => "professional",
        Ok(pb::HubSpotPlan::Enterprise) => "enterprise",
        _ => "",
    }
}

impl ConnectionServiceImpl {
    /// The connection's plan when `portal` is the org's connected portal.
    async fn check_portal(&self, org: &str, portal: i64) -> Result<String, Status> {
        let c = store::connection_by_pool(&self.domain.pool, org)
            .await
            .map_err(Status::from)?
            .ok_or_else(|| Status::from(crate::domain::not_connected(org)))?;
        if c.portal_id != portal {
            return Err(Status::invalid_argument(format!(
                "portal_id: {portal} is not the org's connected portal"
            )));
        }
        Ok(plan_name(c.plan).to_owned())
    }
}

#[tonic::async_trait]
impl ConnectionService for ConnectionServiceImpl {
    async fn start_connect(
        &self,
        req: Request<pb::StartConnectRequest>,
    ) -> Res<pb::StartConnectResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let s = self
            .domain
            .start_flow(
                &starter(&c),
                Flow::Connect,
                &r.return_url,
                r.allow_portal_change,
            )
            .await?;
        Ok(Response::new(pb::StartConnectResponse {
            authorize_url: s.authorize_url,
            state: s.state,
            expires_at: Some(s.expires_at),
        }))
    }

    async fn complete_connect(
        &self,
        req: Request<pb::CompleteConnectRequest>,
    ) -> Res<pb::CompleteConnectResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        match self
            .domain
            .complete_flow(
                &r.code,
                &r.state,
                Some((&c.org, &c.user_id)),
                Some(Flow::Connect),
            )
            .await?
        {
            Completed::Connect(resp) => Ok(Response::new(resp)),
            _ => Err(Status::invalid_argument("state: belongs to another flow")),
        }
    }

    async fn get_connection(
        &self,
        req: Request<pb::GetConnectionRequest>,
    ) -> Res<pb::GetConnectionResponse> {
        let c = caller(&req)?;
        require_any(c, &[Role::Admin, Role::User, Role::Service])?;
        let conn = self.domain.get_connection(&c.org).await?;
        Ok(Response::new(pb::GetConnectionResponse {
            connection: Some(conn),
        }))
    }

    async fn set_enabled(
        &self,
        req: Request<pb::SetEnabledRequest>,
    ) -> Res<pb::SetEnabledResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let row = self
            .domain
            .set_enabled(&c.org, &c.user_id, req.get_ref().enabled)
            .await?;
        Ok(Response::new(pb::SetEnabledResponse {
            connection: Some(row.to_proto()),
        }))
    }

    async fn set_export_account_mode(
        &self,
        req: Request<pb::SetExportAccountModeRequest>,
    ) -> Res<pb::SetExportAccountModeResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let to_user = match req.get_ref().mode() {
            pb::ExportAccountMode::UserAccount => true,
            pb::ExportAccountMode::ServiceAccount => false,
            pb::ExportAccountMode::Unspecified => {
                return Err(Status::invalid_argument(
                    "mode: must be SERVICE_ACCOUNT or USER_ACCOUNT",
                ));
            }
        };
        let row = self
            .domain
            .set_export_mode(&c.org, &c.user_id, to_user)
            .await?;
        Ok(Response::new(pb::SetExportAccountModeResponse {
            connection: Some(row.to_proto()),
        }))
    }

    async fn start_change_primary_user(
        &self,
        req: Request<pb::StartChangePrimaryUserRequest>,
    ) -> Res<pb::StartChangePrimaryUserResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let s = self
            .domain
            .start_flow(
                &starter(&c),
                Flow::ChangePrimary,
                &req.get_ref().return_url,
                false,
            )
            .await?;
        Ok(Response::new(pb::StartChangePrimaryUserResponse {
            authorize_url: s.authorize_url,
            state: s.state,
            expires_at: Some(s.expires_at),
        }))
    }

    async fn complete_change_primary_user(
        &self,
        req: Request<pb::CompleteChangePrimaryUserRequest>,
    ) -> Res<pb::CompleteChangePrimaryUserResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        match self
            .domain
            .complete_flow(
                &r.code,
                &r.state,
                Some((&c.org, &c.user_id)),
                Some(Flow::ChangePrimary),
            )
            .await?
        {
            Completed::ChangePrimary(resp) => Ok(Response::new(resp)),
            _ => Err(Status::invalid_argument("state: belongs to another flow")),
        }
    }

    async fn disconnect(&self, req: Request<pb::DisconnectRequest>) -> Res<pb::DisconnectResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let row = self.domain.disconnect(&c.org, &c.user_id).await?;
        Ok(Response::new(pb::DisconnectResponse {
            connection: Some(row.to_proto()),
        }))
    }

    async fn delete_integration(
        &self,
        req: Request<pb::DeleteIntegrationRequest>,
    ) -> Res<pb::DeleteIntegrationResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let deleted = self.domain.delete_integration(&c.org, &c.user_id).await?;
        Ok(Response::new(pb::DeleteIntegrationResponse { deleted }))
    }

    async fn upsert_org_users(
        &self,
        req: Request<pb::UpsertOrgUsersRequest>,
    ) -> Res<pb::UpsertOrgUsersResponse> {
        let c = caller(&req)?.clone();
        require_any(&c, &[Role::Admin, Role::Service])?;
        let r = req.into_inner();
        if r.users.len() > 1000 || r.removed_user_ids.len() > 1000 {
            return Err(Status::invalid_argument(
                "users: at most 1,000 users (and 1,000 removals) per call",
            ));
        }
        for (i, u) in r.users.iter().enumerate() {
            if u.user_id.trim().is_empty() || u.email.trim().is_empty() {
                return Err(Status::invalid_argument(format!(
                    "users[{i}]: user_id and email must not be empty"
                )));
            }
        }
        let (inserted, updated, removed) = self
            .domain
            .upsert_users(&c.org, &r.users, &r.removed_user_ids)
            .await?;
        Ok(Response::new(pb::UpsertOrgUsersResponse {
            inserted,
            updated,
            removed,
        }))
    }

    async fn list_user_mappings(
        &self,
        req: Request<pb::ListUserMappingsRequest>,
    ) -> Res<pb::ListUserMappingsResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let limit = page_size(r.page_size, 100, 1000)?;
        let offset = page_offset(&r.page_token)?;
        let rows = store::list_users(
            &self.domain.pool,
            &c.org,
            r.query.trim(),
            r.status,
            offset,
            limit + 1,
        )
        .await
        .map_err(Status::from)?;
        let more = rows.len() as i64 > limit;
        let mappings = rows
            .iter()
            .take(limit as usize)
            .map(|u| u.to_proto())
            .collect();
        Ok(Response::new(pb::ListUserMappingsResponse {
            mappings,
            next_page_token: if more {
                (offset + limit).to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn set_user_mapping(
        &self,
        req: Request<pb::SetUserMappingRequest>,
    ) -> Res<pb::SetUserMappingResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        if r.changes.is_empty() || r.changes.len() > 500 {
            return Err(Status::invalid_argument("changes: 1..=500 changes"));
        }
        let mappings = self.domain.set_mappings(&c.org, &r.changes).await?;
        Ok(Response::new(pb::SetUserMappingResponse { mappings }))
    }

    async fn reset_user_mappings(
        &self,
        req: Request<pb::ResetUserMappingsRequest>,
    ) -> Res<pb::ResetUserMappingsResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let (mapped, unmapped) = self.domain.reset_mappings(&c.org, &c.user_id).await?;
        Ok(Response::new(pb::ResetUserMappingsResponse {
            mapped,
            unmapped,
        }))
    }

    async fn regenerate_user_mapping(
        &self,
        req: Request<pb::RegenerateUserMappingRequest>,
    ) -> Res<pb::RegenerateUserMappingResponse> {
        let c = caller(&req)?.clone();
        require_any(&c, &[Role::Admin, Role::Service])?;
        let m = self
            .domain
            .regenerate_mapping(&c.org, &req.get_ref().user_id)
            .await?;
        Ok(Response::new(pb::RegenerateUserMappingResponse {
            mapping: Some(m),
        }))
    }

    async fn resolve_owner(
        &self,
        req: Request<pb::ResolveOwnerRequest>,
    ) -> Res<pb::ResolveOwnerResponse> {
        let c = caller(&req)?.clone();
        require_any(&c, &[Role::Admin, Role::Service])?;
        let hint = req
            .metadata()
            .get(spoke_connection_client::wire::USER_EMAIL_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let user_id = &req.get_ref().user_id;
        if user_id.trim().is_empty() {
            return Err(Status::invalid_argument("user_id: must not be empty"));
        }
        let (owner, source) = self
            .domain
            .resolve_owner(&c.org, user_id, hint.as_deref())
            .await?;
        Ok(Response::new(pb::ResolveOwnerResponse {
            hubspot_owner_id: owner,
            source: source as i32,
        }))
    }

    async fn get_access_token(
        &self,
        req: Request<pb::GetAccessTokenRequest>,
    ) -> Res<pb::GetAccessTokenResponse> {
        let c = caller(&req)?.clone();
        c.require_service()?;
        let r = req.into_inner();
        let min = match r.min_validity {
            None => DEFAULT_MIN_VALIDITY,
            Some(d) if d.seconds >= 0 && d.seconds <= MAX_MIN_VALIDITY.as_secs() as i64 => {
                Duration::from_secs(d.seconds as u64)
            }
            Some(_) => {
                return Err(Status::invalid_argument(
                    "min_validity: must be 0..=25 minutes",
                ));
            }
        };
        let t = self.domain.access_token(&c.org, &r.user_id, min).await?;
        Ok(Response::new(pb::GetAccessTokenResponse {
            access_token: t.token.expose_secret().to_owned(),
            expires_at: Some(ts(t.expires_at)),
            portal_id: t.portal_id,
            hubspot_user_id: t.hubspot_user_id,
        }))
    }

    async fn acquire_budget(
        &self,
        req: Request<pb::AcquireBudgetRequest>,
    ) -> Res<pb::AcquireBudgetResponse> {
        let c = caller(&req)?.clone();
        c.require_service()?;
        let r = req.into_inner();
        let k = kind(r.kind)?;
        if !(1..=1000).contains(&r.requested) {
            return Err(Status::invalid_argument("requested: must be 1..=1000"));
        }
        let plan = self.check_portal(&c.org, r.portal_id).await?;
        let g = self
            .budget
            .acquire(r.portal_id, k, r.requested as u32, &plan)
            .await?;
        Ok(Response::new(pb::AcquireBudgetResponse {
            granted: g.granted as i32,
            lease_expires_at: Some(ts(g.lease_expires_at)),
            retry_after: Some(dur(g.retry_after)),
        }))
    }

    async fn report_throttle(
        &self,
        req: Request<pb::ReportThrottleRequest>,
    ) -> Res<pb::ReportThrottleResponse> {
        let c = caller(&req)?.clone();
        c.require_service()?;
        let r = req.into_inner();
        let k = kind(r.kind).unwrap_or(Kind::Standard);
        self.check_portal(&c.org, r.portal_id).await?;
        let retry = r
            .retry_after
            .filter(|d| d.seconds > 0 || d.nanos > 0)
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32));
        tracing::warn!(org = %c.org, portal = r.portal_id, policy = %r.policy_name, "HubSpot answered 429; pausing the portal");
        let until = self.budget.throttle(r.portal_id, k, retry).await?;
        Ok(Response::new(pb::ReportThrottleResponse {
            paused_until: Some(ts(until)),
        }))
    }

    async fn start_user_connect(
        &self,
        req: Request<pb::StartUserConnectRequest>,
    ) -> Res<pb::StartUserConnectResponse> {
        let c = caller(&req)?.clone();
        c.require_member()?;
        let s = self
            .domain
            .start_flow(
                &starter(&c),
                Flow::UserConnect,
                &req.get_ref().return_url,
                false,
            )
            .await?;
        Ok(Response::new(pb::StartUserConnectResponse {
            authorize_url: s.authorize_url,
            state: s.state,
            expires_at: Some(s.expires_at),
        }))
    }

    async fn complete_user_connect(
        &self,
        req: Request<pb::CompleteUserConnectRequest>,
    ) -> Res<pb::CompleteUserConnectResponse> {
        let c = caller(&req)?.clone();
        c.require_member()?;
        let r = req.into_inner();
        match self
            .domain
            .complete_flow(
                &r.code,
                &r.state,
                Some((&c.org, &c.user_id)),
                Some(Flow::UserConnect),
            )
            .await?
        {
            Completed::User(resp) => Ok(Response::new(resp)),
            _ => Err(Status::invalid_argument("state: belongs to another flow")),
        }
    }

    async fn get_user_connection(
        &self,
        req: Request<pb::GetUserConnectionRequest>,
    ) -> Res<pb::GetUserConnectionResponse> {
        let c = caller(&req)?.clone();
        c.require_member()?;
        let user = self_or_admin(&c, &req.get_ref().user_id)?;
        let mut conn = self.domain.pool.acquire().await.map_err(Error::from)?;
        let t = store::token(&mut conn, &c.org, &user, false)
            .await?
            .filter(|_| !user.is_empty())
            .ok_or_else(|| {
                Status::not_found(format!(
                    "user {user} has not connected their own HubSpot account"
                ))
            })?;
        Ok(Response::new(pb::GetUserConnectionResponse {
            user_connection: Some(crate::connect::user_connection(&t)),
        }))
    }

    async fn disconnect_user(
        &self,
        req: Request<pb::DisconnectUserRequest>,
    ) -> Res<pb::DisconnectUserResponse> {
        let c = caller(&req)?.clone();
        c.require_member()?;
        let user = self_or_admin(&c, &req.get_ref().user_id)?;
        let mut tx = self.domain.pool.begin().await.map_err(Error::from)?;
        let n = store::delete_tokens(&mut tx, &c.org, Some(&user)).await?;
        if n > 0 {
            let portal = store::connection(&mut tx, &c.org, false)
                .await?
                .map_or(0, |r| r.portal_id);
            crate::domain::emit(
                &mut tx,
                &c.org,
                portal,
                &c.user_id,
                spoke_proto::events::v1::connection_event::Kind::UserConnectionChanged(
                    spoke_proto::events::v1::connection_event::UserConnectionChanged {
                        user_id: user.clone(),
                        connected: false,
                    },
                ),
            )
            .await?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::DisconnectUserResponse {
            disconnected: n > 0,
        }))
    }

    async fn get_data_sharing_settings(
        &self,
        req: Request<pb::GetDataSharingSettingsRequest>,
    ) -> Res<pb::GetDataSharingSettingsResponse> {
        let c = caller(&req)?.clone();
        require_any(&c, &[Role::Admin, Role::Service])?;
        let s = self.domain.sharing(&c.org).await?;
        Ok(Response::new(pb::GetDataSharingSettingsResponse {
            settings: Some(s.to_proto()),
        }))
    }

    async fn set_data_sharing_settings(
        &self,
        req: Request<pb::SetDataSharingSettingsRequest>,
    ) -> Res<pb::SetDataSharingSettingsResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let s = self
            .domain
            .set_sharing(&c.org, &c.user_id, r.share_crm_data, r.share_usage_data)
            .await?;
        Ok(Response::new(pb::SetDataSharingSettingsResponse {
            settings: Some(s.to_proto()),
        }))
    }

    async fn set_data_sharing_contract_opt_out(
        &self,
        req: Request<pb::SetDataSharingContractOptOutRequest>,
    ) -> Res<pb::SetDataSharingContractOptOutResponse> {
        let c = caller(&req)?.clone();
        c.require_service()?;
        let s = self
            .domain
            .set_contract_opt_out(&c.org, &c.user_id, req.get_ref().opted_out)
            .await?;
        Ok(Response::new(pb::SetDataSharingContractOptOutResponse {
            settings: Some(s.to_proto()),
        }))
    }

    async fn record_contribution(
        &self,
        req: Request<pb::RecordContributionRequest>,
    ) -> Res<pb::RecordContributionResponse> {
        let c = caller(&req)?.clone();
        c.require_service()?;
        let r = req.into_inner();
        if r.idempotency_key.is_empty() || r.idempotency_key.chars().count() > 200 {
            return Err(Status::invalid_argument(
                "idempotency_key: 1..=200 characters",
            ));
        }
        if !matches!(
            r.category(),
            pb::ContributionCategory::CrmData | pb::ContributionCategory::UsageData
        ) {
            return Err(Status::invalid_argument(
                "category: must be CRM_DATA or USAGE_DATA",
            ));
        }
        if r.record_count < 0 {
            return Err(Status::invalid_argument("record_count: must be >= 0"));
        }
        let occurred_at = r
            .occurred_at
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(chrono::Utc::now);
        let row = ContributionRow {
            contribution_id: uuid::Uuid::now_v7(),
            category: r.category,
            object: r.object,
            record_count: r.record_count,
            source: r.source,
            source_id: r.source_id,
            occurred_at,
        };
        let out = self
            .domain
            .record_contribution(&c.org, &r.idempotency_key, row)
            .await?;
        Ok(Response::new(pb::RecordContributionResponse {
            recorded: out.is_some(),
            contribution: out.map(|c| c.to_proto()),
        }))
    }

    async fn list_contributions(
        &self,
        req: Request<pb::ListContributionsRequest>,
    ) -> Res<pb::ListContributionsResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let limit = page_size(r.page_size, 50, 500)?;
        let offset = page_offset(&r.page_token)?;
        let rows = self
            .domain
            .contributions(&c.org, r.category, offset, limit + 1)
            .await?;
        let more = rows.len() as i64 > limit;
        Ok(Response::new(pb::ListContributionsResponse {
            contributions: rows
                .iter()
                .take(limit as usize)
                .map(|c| c.to_proto())
                .collect(),
            next_page_token: if more {
                (offset + limit).to_string()
            } else {
                String::new()
            },
        }))
    }
}

/// The target user: the caller, or another user when the caller is an admin.
fn self_or_admin(c: &Caller, user_id: &str) -> Result<String, Status> {
    if user_id.is_empty() || user_id == c.user_id {
        Ok(c.user_id.clone())
    } else if c.has(Role::Admin) {
        Ok(user_id.to_owned())
    } else {
        Err(Status::permission_denied(
            "only admins may act on another user's connection",
        ))
    }
}
