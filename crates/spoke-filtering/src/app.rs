//! Wiring and lifecycle of the filtering service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spoke_connection_client::ConnectionClient;
use spoke_hubspot::{Budget, HubSpotClient, LocalBudget, NoBudget};
use spoke_platform::kafka::topics;
use spoke_platform::service::{RunningService, ServiceHost};
use spoke_proto::filtering::v1::filtering_service_server::FilteringServiceServer;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::alerts::Alerts;
use crate::error::{Error, Result};
use crate::grpc::FilteringServiceImpl;
use crate::portals::{ConnectionPortals, PortalAccess, StaticPortals};
use crate::run::Runner;

/// The schema migrations of this service (versions >= 100; the platform owns < 100).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topics this service produces to or consumes from (created at start-up when the broker allows).
pub const TOPICS: &[topics::Topic] = &[
    topics::PROFILES,
    topics::FILTERING_RUNS,
    topics::CONNECTION_EVENTS,
    topics::FILTERING_EVENTS,
    topics::NOTIFICATIONS,
];

/// A running filtering service. Tests build it on port 0 and read the ports back.
pub struct Application {
    running: RunningService,
    pool: sqlx::PgPool,
}

impl Application {
    /// Connects to Postgres and Kafka, migrates, starts consumers, runner and scheduler, serves gRPC.
    pub async fn build(config: Config) -> Result<Self> {
        let mut problems = Vec::new();
        spoke_platform::config::Validate::validate(&config, &mut problems);
        if !problems.is_empty() {
            return Err(Error::Platform(spoke_platform::Error::Config(
                problems.join("; "),
            )));
        }
        let mut host = ServiceHost::start("filtering", &config.common, &MIGRATOR, TOPICS).await?;
        register_metrics();
        let portals = portal_access(&config, &host)?;
        let wake = Arc::new(Notify::new());
        crate::consumers::spawn(&mut host, wake.clone());
        if let Some(connection) = contribution_client(&config, &host)? {
            host.spawn_consumer(crate::sharing::consumer_spec(connection));
        }
        let alerts = Alerts::new(host.pool.clone(), &config.smtp)?;
        let runner = Arc::new(Runner::new(
            host.pool.clone(),
            portals.clone(),
            config.filtering.clone(),
            alerts,
        ));
        host.spawn("filtering runner", move |cancel| {
            runner.run_loop(wake, cancel)
        });
        let pool = host.pool.clone();
        let interval = Duration::from_secs(config.filtering.scheduler_interval_secs.max(1));
        host.spawn("filtering scheduler", move |cancel| {
            crate::scheduler::run_loop(pool, interval, cancel)
        });
        // LoadProfiles chunks of 1,000 profiles can exceed tonic's 4 MiB default.
        let server =
            FilteringServiceServer::new(FilteringServiceImpl::new(host.pool.clone(), portals))
                .max_decoding_message_size(64 * 1024 * 1024);
        let svc = tonic::service::interceptor::InterceptedService::new(
            server,
            host.authenticator.clone(),
        );
        let routes = tonic::service::Routes::new(svc);
        let pool = host.pool.clone();
        let running = host.serve(&["spoke.filtering.v1.FilteringService"], routes);
        Ok(Self { running, pool })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.running.grpc_addr()
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr()
    }

    /// The service's pool (schema `filtering`), for tests and benchmarks.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
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

fn portal_access(config: &Config, host: &ServiceHost) -> Result<Arc<dyn PortalAccess>> {
    let settings = config.hubspot.client_config();
    let f = &config.filtering;
    if !f.static_portals.is_empty() {
        let budget: Arc<dyn Budget> = match f.budget.as_str() {
            "off" => Arc::new(NoBudget),
            _ => Arc::new(LocalBudget::new(spoke_hubspot::BudgetLimits::default())?),
        };
        let hubspot = HubSpotClient::with_budget(settings, budget)?;
        return Ok(Arc::new(StaticPortals::new(hubspot, &f.static_portals)));
    }
    let issuer = host.issuer.clone().ok_or_else(|| {
        Error::Platform(spoke_platform::Error::Config(
            "filtering needs auth signing keys to call the connection service (or filtering.static_portals)".into(),
        ))
    })?;
    let connection = ConnectionClient::new(&config.connection, issuer, "filtering")?;
    let budget: Arc<dyn Budget> = match f.budget.as_str() {
        "off" => Arc::new(NoBudget),
        "local" => Arc::new(LocalBudget::new(spoke_hubspot::BudgetLimits::default())?),
        _ => connection.budget(),
    };
    let hubspot = HubSpotClient::with_budget(settings, budget)?;
    Ok(Arc::new(ConnectionPortals::new(connection, hubspot)))
}

/// The connection client that records data-sharing contributions, when they are recorded.
fn contribution_client(config: &Config, host: &ServiceHost) -> Result<Option<ConnectionClient>> {
    let f = &config.filtering;
    if !f
        .record_contributions
        .unwrap_or(f.static_portals.is_empty())
    {
        return Ok(None);
    }
    let issuer = host.issuer.clone().ok_or_else(|| {
        Error::Platform(spoke_platform::Error::Config(
            "filtering needs auth signing keys to record data-sharing contributions (or filtering.record_contributions = false)".into(),
        ))
    })?;
    Ok(Some(ConnectionClient::new(
        &config.connection,
        issuer,
        "filtering",
    )?))
}

/// Creates the run and record counters at zero, so dashboards and alerts see every series before
/// the first run (a missing series looks like "no data", not like "nothing happened").
fn register_metrics() {
    metrics::counter!("spoke_filtering_runs_started_total").increment(0);
    for outcome in ["recorded", "sharing_off"] {
        metrics::counter!("spoke_filtering_contributions_total", "outcome" => outcome).increment(0);
    }
    for state in ["completed", "failed", "cancelled", "limit_reached"] {
        metrics::counter!("spoke_filtering_runs_finished_total", "state" => state).increment(0);
    }
    for object in [
        crate::model::ObjectKind::Companies,
        crate::model::ObjectKind::Contacts,
        crate::model::ObjectKind::Deals,
    ] {
        metrics::counter!("spoke_filtering_records_total", "object" => object.name()).increment(0);
    }
    // Registered, so the (empty) histogram is rendered before the first batch.
    let _ = metrics::histogram!("spoke_filtering_batch_duration_seconds");
}
