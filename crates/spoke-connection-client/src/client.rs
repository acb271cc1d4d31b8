//! The gRPC client of the connection service as other services use it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use spoke_platform::auth::TokenIssuer;
use spoke_platform::telemetry::{MetadataInjector, inject_current};
use spoke_proto::connection::v1 as pb;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::budget::RemoteBudget;
use crate::error::{Error, Result};
use crate::settings::ConnectionEndpoint;
use crate::tokens::ServiceTokenSource;
use crate::wire;

/// An org's HubSpot connection as other services need it (never contains tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// The org.
    pub org: String,
    /// HubSpot portal (hub) id.
    pub portal_id: u64,
    /// Connection status.
    pub status: pb::ConnectionStatus,
    /// Integration turned on for the org's users.
    pub enabled: bool,
    /// Exports write with each user's own connection (user account mode).
    pub user_account_mode: bool,
    /// Provider user id of the primary admin.
    pub primary_admin_user_id: String,
    /// HubSpot owner id of the service account user, if any.
    pub service_account_owner_id: String,
    /// Subscription tier.
    pub plan: pb::HubSpotPlan,
    /// Portal time zone (IANA).
    pub time_zone: String,
    /// Company currency (ISO 4217).
    pub company_currency: String,
    /// UI domain for record links.
    pub ui_domain: String,
    /// The full message, for fields not copied above.
    pub raw: pb::Connection,
}

impl ConnectionInfo {
    fn from_proto(org: &str, c: pb::Connection) -> Self {
        Self {
            org: org.to_owned(),
            portal_id: u64::try_from(c.portal_id).unwrap_or_default(),
            status: c.status(),
            enabled: c.enabled,
            user_account_mode: c.export_account_mode() == pb::ExportAccountMode::UserAccount,
            primary_admin_user_id: c.primary_admin_user_id.clone(),
            service_account_owner_id: c.service_account_owner_id.clone(),
            plan: c.plan(),
            time_zone: c.time_zone.clone(),
            company_currency: c.company_currency.clone(),
            ui_domain: c.ui_domain.clone(),
            raw: c,
        }
    }

    /// Ok when HubSpot calls can be made with this connection; else the typed reason.
    pub fn usable(&self) -> Result<()> {
        match self.status {
            pb::ConnectionStatus::Connected => Ok(()),
            pb::ConnectionStatus::ReauthRequired => Err(Error::ReauthRequired(format!(
                "{}: {}",
                wire::RECONNECT_REQUIRED,
                if self.raw.status_message.is_empty() {
                    "HubSpot rejected the refresh token; an admin must reconnect"
                } else {
                    &self.raw.status_message
                }
            ))),
            _ => Err(Error::NotConnected(format!(
                "{}: org {} disconnected HubSpot",
                wire::NOT_CONNECTED,
                self.org
            ))),
        }
    }
}

/// Where a resolved owner came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSource {
    /// The exporting user's own mapping (or matching email).
    UserMapping,
    /// The primary admin's owner, because the user is not mapped.
    PrimaryAdmin,
}

/// The HubSpot owner new records of a user get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedOwner {
    /// HubSpot owner id (for `hubspot_owner_id`; an owner id, not a user id).
    pub owner_id: String,
    /// Where it came from.
    pub source: OwnerSource,
}

/// Client of the connection service for one calling service. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    grpc: ConnectionServiceClient<Channel>,
    issuer: TokenIssuer,
    service: &'static str,
    /// Which org each portal belongs to, learnt from `connection()`; the budget hook only sees portals.
    pub(crate) portal_orgs: RwLock<HashMap<u64, String>>,
    token_sources: RwLock<HashMap<(String, String), Arc<ServiceTokenSource>>>,
    budget: std::sync::OnceLock<Arc<RemoteBudget>>,
}

impl std::fmt::Debug for ConnectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionClient")
            .field("service", &self.inner.service)
            .finish_non_exhaustive()
    }
}

impl ConnectionClient {
    /// A client over a lazily connected channel to `endpoint`, calling as `service`.
    pub fn new(
        endpoint: &ConnectionEndpoint,
        issuer: TokenIssuer,
        service: &'static str,
    ) -> Result<Self> {
        let invalid = |message: String| Error::InvalidEndpoint {
            endpoint: endpoint.endpoint.clone(),
            message,
        };
        let channel = Endpoint::from_shared(endpoint.endpoint.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .connect_lazy();
        Ok(Self {
            inner: Arc::new(Inner {
                grpc: ConnectionServiceClient::new(channel),
                issuer,
                service,
                portal_orgs: RwLock::new(HashMap::new()),
                token_sources: RwLock::new(HashMap::new()),
                budget: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The calling service's name (the `sub` of its service tokens).
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// A request carrying a service token for `org` and the current trace context.
    pub(crate) fn request<T>(&self, org: &str, message: T) -> Result<tonic::Request<T>> {
        let token = self
            .inner
            .issuer
            .service_token(self.inner.service, org)
            .map_err(|e| Error::Auth(e.to_string()))?;
        let mut req = tonic::Request::new(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::Auth("service token is not valid metadata".into()))?;
        req.metadata_mut().insert("authorization", value);
        inject_current(&mut MetadataInjector(req.metadata_mut()));
        Ok(req)
    }

    pub(crate) fn grpc(&self) -> ConnectionServiceClient<Channel> {
        self.inner.grpc.clone()
    }

    /// The org's connection (`GetConnection`). Never connected → [`Error::NotConnected`].
    pub async fn connection(&self, org: &str) -> Result<ConnectionInfo> {
        let req = self.request(org, pb::GetConnectionRequest {})?;
        let resp = self.grpc().get_connection(req).await.map_err(|s| {
            if s.code() == tonic::Code::NotFound {
                Error::NotConnected(format!(
                    "{}: org {org} has never connected HubSpot",
                    wire::NOT_CONNECTED
                ))
            } else {
                Error::from(s)
            }
        })?;
        let conn = resp.into_inner().connection.ok_or_else(|| {
            Error::Rpc(tonic::Status::internal(
                "GetConnection returned no connection",
            ))
        })?;
        let info = ConnectionInfo::from_proto(org, conn);
        if info.portal_id != 0 {
            self.inner
                .portal_orgs
                .write()
                .insert(info.portal_id, org.to_owned());
        }
        Ok(info)
    }

    /// Tokens of the org's service account (primary) connection; one shared cache per org.
    pub fn token_source(&self, org: &str) -> Arc<dyn spoke_hubspot::TokenSource> {
        self.source_for(org, "")
    }

    /// Tokens of a user's own connection (user account mode); one shared cache per user.
    pub fn user_token_source(
        &self,
        org: &str,
        user_id: &str,
    ) -> Arc<dyn spoke_hubspot::TokenSource> {
        self.source_for(org, user_id)
    }

    fn source_for(&self, org: &str, user_id: &str) -> Arc<dyn spoke_hubspot::TokenSource> {
        let key = (org.to_owned(), user_id.to_owned());
        if let Some(s) = self.inner.token_sources.read().get(&key) {
            return s.clone();
        }
        let mut map = self.inner.token_sources.write();
        map.entry(key)
            .or_insert_with(|| Arc::new(ServiceTokenSource::new(self.clone(), org, user_id)))
            .clone()
    }

    /// The budget hook for `HubSpotClient::with_budget`: permits come from the connection service.
    pub fn budget(&self) -> Arc<dyn spoke_hubspot::Budget> {
        self.remote_budget()
    }

    /// The same budget as its concrete type (to tune block sizes).
    pub fn remote_budget(&self) -> Arc<RemoteBudget> {
        self.inner
            .budget
            .get_or_init(|| Arc::new(RemoteBudget::new(self.clone())))
            .clone()
    }

    /// A portal handle for the org's service account connection: checks the connection is usable
    /// (REAUTH_REQUIRED → [`Error::ReauthRequired`]) and wires its token source.
    pub async fn portal(
        &self,
        hubspot: &spoke_hubspot::HubSpotClient,
        org: &str,
    ) -> Result<spoke_hubspot::PortalClient> {
        let info = self.connection(org).await?;
        info.usable()?;
        Ok(hubspot.portal(info.portal_id, self.token_source(org)))
    }

    /// A portal handle acting as a user's own HubSpot connection (user account mode).
    pub async fn user_portal(
        &self,
        hubspot: &spoke_hubspot::HubSpotClient,
        org: &str,
        user_id: &str,
    ) -> Result<spoke_hubspot::PortalClient> {
        let info = self.connection(org).await?;
        info.usable()?;
        Ok(hubspot.portal(info.portal_id, self.user_token_source(org, user_id)))
    }

    /// The HubSpot owner id new records exported by `user_id` get (`ResolveOwner`). The email is
    /// sent along so a user missing from the org directory is still matched by email.
    pub async fn resolve_owner(
        &self,
        org: &str,
        user_id: &str,
        user_email: &str,
    ) -> Result<ResolvedOwner> {
        let mut req = self.request(
            org,
            pb::ResolveOwnerRequest {
                user_id: user_id.to_owned(),
            },
        )?;
        if let Ok(v) = user_email.parse() {
            req.metadata_mut().insert(wire::USER_EMAIL_METADATA, v);
        }
        let resp = self.grpc().resolve_owner(req).await?.into_inner();
        let source = match resp.source() {
            pb::OwnerSource::PrimaryAdmin => OwnerSource::PrimaryAdmin,
            _ => OwnerSource::UserMapping,
        };
        Ok(ResolvedOwner {
            owner_id: resp.hubspot_owner_id,
            source,
        })
    }

    /// Records a data-sharing contribution (`RecordContribution`, idempotent by the request's key).
    /// Returns whether it was recorded: `false` while the org's toggle is off or locked by contract.
    pub async fn record_contribution(
        &self,
        org: &str,
        request: pb::RecordContributionRequest,
    ) -> Result<bool> {
        let req = self.request(org, request)?;
        Ok(self
            .grpc()
            .record_contribution(req)
            .await?
            .into_inner()
            .recorded)
    }

    /// The org a portal belongs to, as learnt from earlier `connection()` calls.
    pub(crate) fn org_of(&self, portal: u64) -> Option<String> {
        self.inner.portal_orgs.read().get(&portal).cloned()
    }
}
