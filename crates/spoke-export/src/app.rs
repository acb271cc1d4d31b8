//! Wiring and lifecycle of the export service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spoke_platform::kafka::topics;
use spoke_platform::service::{RunningService, ServiceHost};
use spoke_proto::export::v1::export_service_server::ExportServiceServer;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::cluster::ClusterClients;
use crate::error::{Error, Result};
use crate::grpc::ExportServiceImpl;
use crate::ports::Cluster;
use crate::writer::Writer;

/// The schema migrations of this service (versions >= 100; the platform owns < 100).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topics this service produces to or consumes from (created at start-up when the broker allows).
pub const TOPICS: &[topics::Topic] = &[
    topics::EXPORT_CHECKED,
    topics::ACTIVITIES,
    topics::CONNECTION_EVENTS,
    topics::MAPPING_EVENTS,
    topics::EXPORT_REQUESTS,
    topics::EXPORT_RESULTS,
    topics::EXPORT_EVENTS,
    topics::NOTIFICATIONS,
    topics::FILTERING_EVENTS,
];

/// A running export service. Tests build it on port 0 and read the ports back.
pub struct Application {
    running: RunningService,
}

impl Application {
    /// Connects to Postgres and Kafka, migrates, starts consumers and the writer, serves gRPC.
    pub async fn build(config: Config) -> Result<Self> {
        let issuer = spoke_platform::auth::TokenIssuer::from_config(&config.common.auth)?;
        let cluster: Arc<dyn Cluster> = Arc::new(ClusterClients::new(
            &config.connection,
            &config.mapping.endpoint,
            &config.hubspot,
            issuer,
        )?);
        Self::build_with(config, cluster).await
    }

    /// As [`Application::build`] with the given cluster clients.
    pub async fn build_with(config: Config, cluster: Arc<dyn Cluster>) -> Result<Self> {
        let mut host = ServiceHost::start("export", &config.common, &MIGRATOR, TOPICS).await?;
        let writer = Writer::new(host.pool.clone(), cluster.clone(), config.writer.settings());
        crate::consumers::spawn(&mut host, writer.waker());
        let writeback = crate::writeback::Worker::new(
            host.pool.clone(),
            cluster.clone(),
            config.writeback.settings(),
        );
        crate::writeback::consumers::spawn(&mut host, writeback.waker());
        host.spawn("export writeback", move |cancel| writeback.run(cancel));
        host.spawn("export writer", move |cancel| writer.run(cancel));
        let pool = host.pool.clone();
        host.spawn("export job gauge", move |cancel| job_gauge(pool, cancel));
        // CreateExport carries up to 100,000 records inline: raise the decoding limit before
        // the auth interceptor wraps the server.
        let server = ExportServiceServer::new(ExportServiceImpl::new(host.pool.clone(), cluster))
            .max_decoding_message_size(config.export.max_request_bytes);
        let svc = tonic::service::interceptor::InterceptedService::new(
            server,
            host.authenticator.clone(),
        );
        let routes = tonic::service::Routes::new(svc);
        let running = host.serve(&["spoke.export.v1.ExportService"], routes);
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

/// Keeps `spoke_export_jobs{state}` current.
async fn job_gauge(pool: sqlx::PgPool, cancel: CancellationToken) -> spoke_platform::Result<()> {
    loop {
        match crate::store::jobs_per_state(&pool).await {
            Ok(rows) => {
                use spoke_proto::common::v1::ExportJobState as S;
                // Every state has a series from start-up (0 when no job is in it), so dashboards
                // and alerts see the metric before the first job.
                let counts: HashMap<i32, i64> = rows.into_iter().collect();
                for state in (1..=S::Cancelled as i32).filter_map(|v| S::try_from(v).ok()) {
                    let n = counts.get(&(state as i32)).copied().unwrap_or(0);
                    metrics::gauge!("spoke_export_jobs", "state" => state.as_str_name())
                        .set(n as f64);
                }
            }
            Err(Error::Database(e)) => tracing::debug!(error = %e, "job gauge query failed"),
            Err(e) => tracing::debug!(error = %e, "job gauge failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
    }
}
