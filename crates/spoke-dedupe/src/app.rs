//! Wiring and lifecycle of the dedupe service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spoke_connection_client::ConnectionClient;
use spoke_platform::kafka::topics;
use spoke_platform::service::{RunningService, ServiceHost};
use spoke_proto::dedupe::v1::dedupe_service_server::DedupeServiceServer;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::check::Checker;
use crate::consumers::{self, Deps};
use crate::error::{Error, Result};
use crate::grpc::DedupeServiceImpl;
use crate::lookup::{ConnectionPortals, PortalAccess};
use crate::settings::{MappingSettings, SettingsSource};
use crate::store;

/// The schema migrations of this service (versions >= 100; the platform owns < 100).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topics this service produces to or consumes from (created at start-up when the broker allows).
pub const TOPICS: &[topics::Topic] = &[
    topics::EXPORT_REQUESTS,
    topics::EXPORT_RESULTS,
    topics::EXPORT_CHECKED,
    topics::CONNECTION_EVENTS,
];

/// Replaceable dependencies: HubSpot access and the source of duplicate settings. `None` builds
/// the production ones (connection service and mapping service from the config).
#[derive(Default, Clone)]
pub struct Overrides {
    /// HubSpot access per org.
    pub portals: Option<Arc<dyn PortalAccess>>,
    /// Duplicate settings per org.
    pub settings: Option<Arc<dyn SettingsSource>>,
}

/// A running dedupe service. Tests build it on port 0 and read the ports back.
pub struct Application {
    running: RunningService,
}

impl Application {
    /// Connects to Postgres and Kafka, migrates, starts consumers and serves gRPC.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with(config, Overrides::default()).await
    }

    /// Like [`Application::build`] with some dependencies supplied by the caller.
    pub async fn build_with(config: Config, overrides: Overrides) -> Result<Self> {
        let mut host = ServiceHost::start("dedupe", &config.common, &MIGRATOR, TOPICS).await?;
        let issuer = || {
            host.issuer.clone().ok_or_else(|| {
                Error::Platform(spoke_platform::Error::Config(
                    "the dedupe service needs a JWT signing key to call the connection and mapping services (set SPOKE_AUTH__HS256_SECRET or a private key)".into(),
                ))
            })
        };
        let portals: Arc<dyn PortalAccess> = match overrides.portals {
            Some(p) => p,
            None => {
                let connection = ConnectionClient::new(&config.connection, issuer()?, "dedupe")?;
                let hubspot = spoke_hubspot::HubSpotClient::with_budget(
                    config.hubspot.client_config(),
                    connection.budget(),
                )
                .map_err(|e| {
                    Error::Platform(spoke_platform::Error::Config(format!("hubspot: {e}")))
                })?;
                Arc::new(ConnectionPortals {
                    connection,
                    hubspot,
                })
            }
        };
        let settings: Arc<dyn SettingsSource> = match overrides.settings {
            Some(s) => s,
            None => Arc::new(MappingSettings::new(&config.mapping.endpoint, issuer()?)?),
        };
        let checker = Checker {
            in_flight_wait: Duration::from_secs(config.dedupe.in_flight_wait_secs),
            reservation_ttl_secs: config.dedupe.reservation_ttl_secs as i64,
        };
        consumers::spawn(
            &mut host,
            Deps {
                checker,
                portals: portals.clone(),
                settings: settings.clone(),
            },
        );
        let pool = host.pool.clone();
        let interval = Duration::from_secs(config.dedupe.stats_interval_secs);
        host.spawn("index stats", move |cancel| {
            report_stats(pool, interval, cancel)
        });
        let svc = DedupeServiceServer::with_interceptor(
            DedupeServiceImpl::new(
                host.pool.clone(),
                checker,
                portals,
                settings,
                Duration::from_secs(config.dedupe.preview_timeout_secs),
            ),
            host.authenticator.clone(),
        );
        let routes = tonic::service::Routes::new(svc);
        let running = host.serve(&["spoke.dedupe.v1.DedupeService"], routes);
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

/// Publishes the index stats gauges (`spoke_dedupe_index_entries{source}`,
/// `spoke_dedupe_pending_creates`) until cancelled.
async fn report_stats(
    pool: sqlx::PgPool,
    interval: Duration,
    cancel: CancellationToken,
) -> spoke_platform::Result<()> {
    loop {
        match store::index_stats(&pool).await {
            Ok((by_source, pending)) => {
                for source in ["created", "updated", "seen"] {
                    let n = by_source
                        .iter()
                        .find(|(s, _)| s == source)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("spoke_dedupe_index_entries", "source" => source).set(n as f64);
                }
                metrics::gauge!("spoke_dedupe_pending_creates").set(pending as f64);
            }
            Err(e) => tracing::warn!(error = %e, "index stats query failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
