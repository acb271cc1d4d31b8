//! Wiring and lifecycle of the connection service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use spoke_hubspot::{HubSpotClient, OAuthCredentials};
use spoke_platform::kafka::topics;
use spoke_platform::service::{RunningService, ServiceHost};
use spoke_proto::connection::v1::connection_service_server::ConnectionServiceServer;
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::budget::BudgetAuthority;
use crate::crypto::{StateSigner, TokenCipher};
use crate::domain::Domain;
use crate::error::Result;
use crate::grpc::ConnectionServiceImpl;

/// The schema migrations of this service (versions >= 100; the platform owns < 100).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Topics this service produces to or consumes from (created at start-up when the broker allows).
pub const TOPICS: &[topics::Topic] = &[topics::CONNECTION_EVENTS, topics::NOTIFICATIONS];

/// A running connection service. Tests build it on port 0 and read the ports back.
pub struct Application {
    running: RunningService,
    callback_addr: SocketAddr,
    redirect_uri: String,
}

impl Application {
    /// Connects to Postgres and Kafka, migrates, binds the callback listener and serves gRPC.
    pub async fn build(config: Config) -> Result<Self> {
        let (cipher, raw_key) = TokenCipher::from_config(&config.tokens)?;
        let signer = StateSigner::new(config.tokens.state_signing_key.as_ref(), &raw_key)?;
        let callback_listener = tokio::net::TcpListener::bind(config.callback.addr()).await?;
        let callback_addr = callback_listener.local_addr()?;
        let redirect_uri = if config.hubspot.redirect_uri.is_empty() {
            let host = if callback_addr.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), callback_addr.port())
            } else {
                callback_addr
            };
            format!("http://{host}/oauth/callback")
        } else {
            config.hubspot.redirect_uri.clone()
        };
        let mut host = ServiceHost::start("connection", &config.common, &MIGRATOR, TOPICS).await?;
        crate::consumers::spawn(&mut host);
        let budget = Arc::new(BudgetAuthority::new(
            host.pool.clone(),
            config.budget.clone(),
        ));
        let hubspot =
            HubSpotClient::with_budget(config.hubspot.urls.client_config(), budget.clone())?;
        let domain = Arc::new(Domain {
            pool: host.pool.clone(),
            hubspot,
            credentials: OAuthCredentials {
                client_id: config.hubspot.client_id.clone(),
                client_secret: config.hubspot.client_secret.clone(),
            },
            cipher,
            signer,
            redirect_uri: redirect_uri.clone(),
            config,
            refresh_locks: parking_lot::Mutex::new(HashMap::new()),
        });
        domain.update_reauth_gauge().await;
        let cb_domain = domain.clone();
        host.spawn("oauth callback", move |cancel| {
            crate::callback::serve(callback_listener, cb_domain, cancel)
        });
        let svc = ConnectionServiceServer::with_interceptor(
            ConnectionServiceImpl::new(domain, budget),
            host.authenticator.clone(),
        );
        let routes = tonic::service::Routes::new(svc);
        let running = host.serve(&["spoke.connection.v1.ConnectionService"], routes);
        Ok(Self {
            running,
            callback_addr,
            redirect_uri,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.running.grpc_addr()
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.admin_addr()
    }

    /// The bound public OAuth callback address.
    pub fn callback_addr(&self) -> SocketAddr {
        self.callback_addr
    }

    /// The redirect URI sent to HubSpot.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
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
