//! The listener: an accept loop serving HTTP/1.1 per connection, so a fault can drop one connection.

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::config::SandboxConfig;
use crate::control::SandboxControl;
use crate::error::{Error, Result};
use crate::http::{AppState, ConnReset, not_found, router};

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    control: SandboxControl,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Binds and serves in the background; port 0 picks a free port.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox> {
        let control = SandboxControl::new(&config)?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let app = router(AppState {
            shared: control.shared.clone(),
            control: control.clone(),
        })
        .fallback(not_found);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, stopped));
        tracing::info!(%addr, "sandbox.started");
        Ok(Sandbox {
            addr,
            control,
            stop,
            task,
        })
    }

    /// Base URL of both the API (api.hubapi.com) and the app (app.hubspot.com) routes.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// In-process control: seeding, inspection, fault, limit, lag and token toggles.
    pub fn control(&self) -> &SandboxControl {
        &self.control
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        tracing::info!(addr = %self.addr, "sandbox.stopped");
    }
}

async fn accept_loop(listener: TcpListener, app: axum::Router, mut stopped: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let reset = ConnReset::default();
                let svc_reset = reset.clone();
                let svc = app.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(svc_reset.clone());
                    req
                });
                let mut conn_stop = stopped.clone();
                conns.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                    tokio::pin!(conn);
                    tokio::select! {
                        biased;
                        // Dropping the connection future closes the socket without an answer.
                        _ = reset.0.notified() => {}
                        _ = conn_stop.changed() => {}
                        _ = conn.as_mut() => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}
