//! Wiring and lifecycle of the mapping service.

use std::net::SocketAddr;
use std::time::Duration;

use spoke_connection_client::ConnectionClient;
use spoke_hubspot::HubSpotClient;

use spoke_platform::kafka::topics;
use spoke_platform::service::{RunningService, ServiceHost};
use spoke_proto::mapping::v1::mapping_service_server::MappingServiceServer;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::configs::Configs;
use crate::error::{Error, Result};
use crate::grpc::MappingServiceImpl;
use crate::properties::{Portals, PropertyCatalog};

/// The schema migrations of this service (versions >= 100; the platform owns < 100).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topics this service produces to or consumes from (created at start-up when the broker allows).
pub const TOPICS: &[topics::Topic] = &[topics::MAPPING_EVENTS, topics::CONNECTION_EVENTS];

/// A running mapping service. Tests build it on port 0 and read the ports back.
pub struct Application {
    running: RunningService,
}

impl Application {
    /// Connects to Postgres and Kafka, migrates, starts consumers and serves gRPC.
    pub async fn build(config: Config) -> Result<Self> {
        let mut host = ServiceHost::start("mapping", &config.common, &MIGRATOR, TOPICS).await?;
        let issuer = host.issuer.clone().ok_or_else(|| {
            Error::FailedPrecondition(
                "the mapping service calls the connection service and needs a token signing key (auth settings)"
                    .into(),
            )
        })?;
        let connection = ConnectionClient::new(&config.connection, issuer, "mapping")?;
        let hubspot =
            HubSpotClient::with_budget(config.hubspot.client_config(), connection.budget())
                .map_err(|e| Error::FailedPrecondition(format!("HubSpot client: {e}")))?;
        let catalog = PropertyCatalog::new(
            host.pool.clone(),
            Portals::new(connection, hubspot),
            Duration::from_secs(config.mapping.properties_ttl_secs),
        );
        let configs = Configs::new(
            host.pool.clone(),
            catalog,
            config.mapping.compiled_cache_entries,
        );
        crate::consumers::spawn(&mut host, configs.clone());
        let svc = MappingServiceServer::with_interceptor(
            MappingServiceImpl::new(configs),
            host.authenticator.clone(),
        );
        let routes = tonic::service::Routes::new(svc);
        let running = host.serve(&["spoke.mapping.v1.MappingService"], routes);
        Ok(Self { running })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.running.grpc_addr()
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr()
    }

    /// Cancelling this token shuts the service down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.running.cancel_token()
    }

    /// Serves until SIGTERM/SIGINT or cancellation, then drains.
    pub async fn run_until_stopped(self) -> Result<()> {
        Ok(self.running.run_until_stopped().await?)
    }
}
