//! gRPC server scaffolding: tracing spans that join the caller's trace, request metrics
//! ([`crate::grpc_metrics`]), gRPC health
//! (`grpc.health.v1`), reflection over Spoke's descriptors, optional TLS, graceful shutdown.
//!
//! Authentication is not here: each service wraps its own service with
//! `XxxServer::with_interceptor(svc, authenticator)` so health and reflection stay open to probes.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::GrpcConfig;
use crate::grpc_metrics::GrpcMetricsLayer;
use crate::telemetry::HeaderExtractor;
use crate::{Error, Result};

/// Health handle: services flip their status to NOT_SERVING while draining.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
}

impl Health {
    /// Marks every registered service (and the server as a whole) serving or not.
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for s in &self.services {
            self.reporter.set_service_status(s, status).await;
        }
    }
}

/// Serves `routes` (the service's own, already wrapped in its auth interceptor) plus health and
/// reflection on `listener` until `cancel`; in-flight calls finish before it returns.
pub async fn serve(
    listener: TcpListener,
    cfg: &GrpcConfig,
    service_names: &[&str],
    routes: Routes,
    health: Health,
    cancel: CancellationToken,
) -> Result<()> {
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health.reporter.clone()),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(spoke_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("reflection: {e}")))?;
    health.set(true).await;
    tracing::info!(services = ?service_names, addr = %listener.local_addr()?, "gRPC server listening");

    let mut builder = Server::builder()
        .timeout(Duration::from_secs(60))
        .layer(GrpcMetricsLayer)
        .trace_fn(|req: &http::Request<()>| {
            let span = tracing::info_span!(
                "grpc.request",
                otel.kind = "server",
                rpc.method = %req.uri().path(),
                org = tracing::field::Empty,
            );
            crate::telemetry::set_parent_from(&span, &HeaderExtractor(req.headers()));
            span
        });
    if let Some(tls) = &cfg.tls {
        let cert = tokio::fs::read(&tls.cert_path).await?;
        let key = tokio::fs::read(&tls.key_path).await?;
        builder =
            builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
    }
    let health_for_drain = health.clone();
    builder
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a small unary answer waits ~40 ms for a delayed ACK.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                cancel.cancelled().await;
                health_for_drain.set(false).await;
            },
        )
        .await?;
    Ok(())
}

/// A health reporter for the given fully-qualified gRPC service names.
pub fn health(service_names: &[&str]) -> Health {
    let (reporter, _service) = tonic_health::server::health_reporter();
    Health {
        reporter,
        services: service_names.iter().map(|s| s.to_string()).collect(),
    }
}
