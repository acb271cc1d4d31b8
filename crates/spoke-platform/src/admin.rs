//! The admin HTTP server: `/healthz` (the process is alive), `/readyz` (its dependencies answer),
//! `/metrics` (Prometheus text format).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// A named readiness check; Ok means the dependency is usable.
pub type ReadinessCheck = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>> + Send + Sync,
>;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
///
/// Several services may run in one test process; they share the recorder.
pub fn prometheus() -> Result<PrometheusHandle> {
    if let Some(h) = PROMETHEUS.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .map_err(|e| Error::Telemetry(e.to_string()))?
        .build_recorder();
    let h = handle.handle();
    match metrics::set_global_recorder(handle) {
        Ok(()) => {
            let _ = PROMETHEUS.set(h.clone());
            Ok(h)
        }
        // Lost a race with another thread, or another recorder is installed.
        Err(_) => PROMETHEUS.get().cloned().ok_or_else(|| {
            Error::Telemetry("a different metrics recorder is already installed".into())
        }),
    }
}

#[derive(Clone)]
struct AdminState {
    checks: Arc<Vec<(String, ReadinessCheck)>>,
    prometheus: PrometheusHandle,
}

/// Serves the admin endpoints on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    checks: Vec<(String, ReadinessCheck)>,
    cancel: CancellationToken,
) -> Result<()> {
    let state = AdminState {
        checks: Arc::new(checks),
        prometheus: prometheus()?,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    let mut body = String::new();
    let mut ok = true;
    for (name, check) in state.checks.iter() {
        let res = tokio::time::timeout(std::time::Duration::from_secs(3), check()).await;
        match res {
            Ok(Ok(())) => body.push_str(&format!("{name}: ok\n")),
            Ok(Err(e)) => {
                ok = false;
                body.push_str(&format!("{name}: FAIL {e}\n"));
            }
            Err(_) => {
                ok = false;
                body.push_str(&format!("{name}: FAIL timed out after 3s\n"));
            }
        }
    }
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

async fn metrics_text(State(state): State<AdminState>) -> String {
    state.prometheus.render()
}
