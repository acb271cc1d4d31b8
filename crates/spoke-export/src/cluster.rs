//! The real [`Cluster`]: the mapping service (`GetCompiledMapping`, applied with
//! `spoke-mapping-core`) and the connection service (`spoke-connection-client`: tokens, portal
//! budget, owners; `RegenerateUserMapping`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use spoke_connection_client::{ConnectionClient, ConnectionEndpoint};
use spoke_hubspot::{HubSpotClient, PortalClient};
use spoke_mapping_core::{CompiledMapping, apply_profile};
use spoke_platform::auth::TokenIssuer;
use spoke_platform::connection_mirror::{MirroredConnection, status};
use spoke_proto::common::v1::{DuplicateAction, ObjectType, Profile};
use spoke_proto::connection::v1::RegenerateUserMappingRequest;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::mapping::v1::GetCompiledMappingRequest;
use spoke_proto::mapping::v1::mapping_service_client::MappingServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::ports::{Cluster, ExportRules, Properties, RecordMapper};

const SERVICE: &str = "export";

/// (org, object, configuration version).
type MappingKey = (String, i32, i64);

/// The cluster as seen from the export service.
pub struct ClusterClients {
    connection: ConnectionClient,
    connection_grpc: ConnectionServiceClient<Channel>,
    mapping: MappingServiceClient<Channel>,
    hubspot: HubSpotClient,
    issuer: TokenIssuer,
    /// Pinned versions never change: cache them for the life of the process.
    mappings: Mutex<HashMap<MappingKey, Arc<dyn RecordMapper>>>,
}

impl ClusterClients {
    /// Clients over lazily connected channels.
    pub fn new(
        connection_endpoint: &ConnectionEndpoint,
        mapping_endpoint: &str,
        hubspot: &spoke_connection_client::HubSpotSettings,
        issuer: TokenIssuer,
    ) -> Result<Self> {
        let connection = ConnectionClient::new(connection_endpoint, issuer.clone(), SERVICE)
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let lazy = |uri: &str, var: &str| -> Result<Channel> {
            Ok(Endpoint::from_shared(uri.to_string())
                .map_err(|e| {
                    Error::FailedPrecondition(format!("invalid endpoint {uri:?}: {e} (set {var})"))
                })?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .connect_lazy())
        };
        let mapping = MappingServiceClient::new(lazy(mapping_endpoint, "SPOKE_MAPPING__ENDPOINT")?)
            .max_decoding_message_size(64 * 1024 * 1024);
        let connection_grpc = ConnectionServiceClient::new(lazy(
            &connection_endpoint.endpoint,
            "SPOKE_CONNECTION__ENDPOINT",
        )?);
        let hubspot = HubSpotClient::with_budget(hubspot.client_config(), connection.budget())
            .map_err(|e| Error::FailedPrecondition(format!("HubSpot client: {e}")))?;
        Ok(Self {
            connection,
            connection_grpc,
            mapping,
            hubspot,
            issuer,
            mappings: Mutex::new(HashMap::new()),
        })
    }

    fn request<T>(&self, org: &str, msg: T) -> Result<tonic::Request<T>> {
        let token = self
            .issuer
            .service_token(SERVICE, org)
            .map_err(|e| Error::FailedPrecondition(format!("cannot mint a service token: {e}")))?;
        let mut req = tonic::Request::new(msg);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::FailedPrecondition("service token is not valid metadata".into()))?;
        req.metadata_mut().insert("authorization", value);
        // The called service's spans join this trace (CreateExport → GetCompiledMapping, ...).
        spoke_platform::telemetry::inject_current(
            &mut spoke_platform::telemetry::MetadataInjector(req.metadata_mut()),
        );
        Ok(req)
    }
}

fn from_status(service: &str, s: tonic::Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Unknown
        | tonic::Code::ResourceExhausted => {
            Error::Unavailable(format!("{service} service unavailable: {}", s.message()))
        }
        tonic::Code::FailedPrecondition
            if s.message()
                .starts_with(spoke_connection_client::wire::RECONNECT_REQUIRED) =>
        {
            Error::ReauthRequired(s.message().to_string())
        }
        tonic::Code::NotFound => Error::NotFound(s.message().to_string()),
        _ => Error::FailedPrecondition(format!("{service} service: {}", s.message())),
    }
}

fn from_connection(e: spoke_connection_client::Error) -> Error {
    use spoke_connection_client::Error as E;
    match e {
        E::ReauthRequired(m) => Error::ReauthRequired(m),
        E::NotConnected(m) | E::UserNotConnected(m) => Error::FailedPrecondition(m),
        E::NotFound(m) => Error::NotFound(m),
        e if e.is_retriable() => Error::Unavailable(e.to_string()),
        e => Error::FailedPrecondition(e.to_string()),
    }
}

#[async_trait::async_trait]
impl Cluster for ClusterClients {
    async fn mapping(
        &self,
        org: &str,
        object: ObjectType,
        version: Option<i64>,
    ) -> Result<Arc<dyn RecordMapper>> {
        if let Some(v) = version
            && let Some(m) = self
                .mappings
                .lock()
                .get(&(org.to_string(), object as i32, v))
        {
            return Ok(m.clone());
        }
        let req = self.request(
            org,
            GetCompiledMappingRequest {
                object: object as i32,
                version,
            },
        )?;
        let compiled = self
            .mapping
            .clone()
            .get_compiled_mapping(req)
            .await
            .map_err(|s| from_status("mapping", s))?
            .into_inner()
            .compiled
            .ok_or_else(|| {
                Error::Unavailable("mapping service returned no compiled mapping".into())
            })?;
        let compiled = CompiledMapping::try_from(compiled).map_err(|e| {
            Error::FailedPrecondition(format!("the field mapping cannot be used: {e}"))
        })?;
        let mapper: Arc<dyn RecordMapper> = Arc::new(CompiledMapper::new(compiled));
        self.mappings.lock().insert(
            (org.to_string(), object as i32, mapper.version()),
            mapper.clone(),
        );
        Ok(mapper)
    }

    async fn connection(&self, org: &str) -> Result<Option<MirroredConnection>> {
        use spoke_proto::connection::v1::ConnectionStatus as S;
        let info = match self.connection.connection(org).await {
            Ok(info) => info,
            Err(spoke_connection_client::Error::NotConnected(_)) => return Ok(None),
            Err(e) => return Err(from_connection(e)),
        };
        let status = match info.status {
            S::Connected => status::CONNECTED,
            S::ReauthRequired => status::REAUTH_REQUIRED,
            S::Disconnected | S::Unspecified => status::DISCONNECTED,
        };
        Ok(Some(MirroredConnection {
            org_id: info.org,
            portal_id: i64::try_from(info.portal_id).unwrap_or_default(),
            status: status.to_string(),
            enabled: info.enabled,
            user_account: info.user_account_mode,
            ui_domain: info.ui_domain,
        }))
    }

    async fn portal(&self, org: &str, user_id: Option<&str>) -> Result<PortalClient> {
        match user_id {
            None => self.connection.portal(&self.hubspot, org).await,
            Some(u) => self.connection.user_portal(&self.hubspot, org, u).await,
        }
        .map_err(from_connection)
    }

    async fn resolve_owner(
        &self,
        org: &str,
        user_id: &str,
        user_email: &str,
    ) -> Result<Option<String>> {
        match self
            .connection
            .resolve_owner(org, user_id, user_email)
            .await
        {
            Ok(o) if !o.owner_id.is_empty() => Ok(Some(o.owner_id)),
            Ok(_) => Ok(None),
            Err(e) if e.is_retriable() || e.is_reauth_required() => Err(from_connection(e)),
            Err(e) => {
                // No owner (unknown user, primary admin without owner): HubSpot leaves it unset.
                tracing::warn!(org, error = %e, "no HubSpot owner for exported records");
                Ok(None)
            }
        }
    }

    async fn ensure_user_mapping(&self, org: &str, user_id: &str) -> Result<()> {
        // Maps the user by email only when they have no mapping yet; an existing one is kept.
        let req = self.request(
            org,
            RegenerateUserMappingRequest {
                user_id: user_id.to_string(),
            },
        )?;
        self.connection_grpc
            .clone()
            .regenerate_user_mapping(req)
            .await
            .map_err(|s| from_status("connection", s))?;
        Ok(())
    }
}

/// A [`RecordMapper`] over a compiled mapping of `spoke-mapping-core`.
pub struct CompiledMapper {
    compiled: CompiledMapping,
    rules: ExportRules,
}

impl CompiledMapper {
    /// Wraps a compiled mapping and derives the export rules from its preferences.
    pub fn new(compiled: CompiledMapping) -> Self {
        let p = compiled.preferences;
        let d = &compiled.duplicate_settings;
        let action = |a: spoke_mapping_core::DuplicateAction| match a {
            spoke_mapping_core::DuplicateAction::UpdateExisting => DuplicateAction::UpdateExisting,
            spoke_mapping_core::DuplicateAction::CreateDuplicate => {
                DuplicateAction::CreateDuplicate
            }
            spoke_mapping_core::DuplicateAction::Skip => DuplicateAction::Skip,
            spoke_mapping_core::DuplicateAction::NeedsReview => DuplicateAction::NeedsReview,
        };
        let rules = ExportRules {
            allowed: p.allowed,
            max_per_export: i64::from(p.max_per_export),
            create_new: p.create_new,
            allow_duplicate_creation: p.allow_duplicate_creation,
            update_existing: p.update_existing,
            default_action: action(d.default_action),
            user_options: d.user_options.iter().copied().map(action).collect(),
        };
        Self { compiled, rules }
    }
}

impl RecordMapper for CompiledMapper {
    fn version(&self) -> i64 {
        self.compiled.version
    }

    fn rules(&self) -> &ExportRules {
        &self.rules
    }

    fn read_properties(&self) -> Vec<String> {
        let mut props: Vec<String> = self
            .compiled
            .rows
            .iter()
            .map(|r| r.target_property.clone())
            .collect();
        for t in &self.compiled.intent_topics {
            props.extend(t.mapped().map(|(_, p)| p.to_string()));
        }
        props
    }

    fn maps_owner(&self) -> bool {
        self.compiled
            .rows
            .iter()
            .any(|r| r.target_property == "hubspot_owner_id")
    }

    fn apply(
        &self,
        profile: &Profile,
        existing: Option<&Properties>,
    ) -> std::result::Result<Properties, String> {
        let applied = apply_profile(
            &self.compiled,
            profile,
            existing.map(|e| e as &dyn spoke_mapping_core::FieldSource),
        );
        match applied.error_message() {
            Some(m) => Err(m),
            None => Ok(applied.properties),
        }
    }
}
