//! The lifecycle every service shares: start → run → drain.
//!
//! [`ServiceHost::start`] binds the gRPC and admin listeners (port 0 works: tests read the ports
//! back), connects to Postgres and runs migrations, creates topics, starts the outbox relay and
//! the admin server. The service then adds its consumers and background tasks and calls
//! [`ServiceHost::serve`] with its gRPC routes. [`RunningService::run_until_stopped`] waits for
//! SIGTERM/SIGINT (or a task failure), stops accepting calls, lets in-flight work finish within
//! the grace period and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::admin::{self, ReadinessCheck};
use crate::auth::{Authenticator, TokenIssuer};
use crate::config::CommonConfig;
use crate::grpc::{self, Health};
use crate::kafka::topics::{self, Topic};
use crate::kafka::{ConsumerSpec, EventProducer, OutboxRelay, consumer};
use crate::{Error, Result};

/// A service being assembled: infrastructure is up, gRPC is not serving yet.
pub struct ServiceHost {
    name: &'static str,
    config: CommonConfig,
    /// The service's pool; `search_path` is its schema.
    pub pool: PgPool,
    /// Producer for direct publishing (most events go through the outbox instead).
    pub producer: EventProducer,
    /// Verifies callers' JWTs; wrap the service's gRPC server with it.
    pub authenticator: Authenticator,
    /// Mints service tokens for calls to other services (None if no signing key is configured).
    pub issuer: Option<TokenIssuer>,
    cancel: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    grpc_listener: TcpListener,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl ServiceHost {
    /// Brings up the shared infrastructure of service `name` (also its default schema name).
    pub async fn start(
        name: &'static str,
        config: &CommonConfig,
        migrator: &Migrator,
        topics_used: &[Topic],
    ) -> Result<Self> {
        let cancel = CancellationToken::new();
        // Install the metrics recorder before anything records: values set during start-up
        // (gauges computed from the database) would otherwise go to the no-op recorder.
        admin::prometheus()?;
        let grpc_listener = TcpListener::bind(config.grpc.addr()).await.map_err(|e| {
            Error::Config(format!("cannot bind gRPC port {}: {e}", config.grpc.addr()))
        })?;
        let admin_listener = TcpListener::bind(config.admin.addr()).await.map_err(|e| {
            Error::Config(format!(
                "cannot bind admin port {}: {e}",
                config.admin.addr()
            ))
        })?;
        let grpc_addr = grpc_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let pool = crate::db::connect_and_migrate(&config.database, name, migrator).await?;
        topics::ensure_topics(&config.kafka, topics_used).await?;
        let producer = EventProducer::new(&config.kafka, name)?;
        let authenticator = Authenticator::from_config(&config.auth)?;
        let issuer = TokenIssuer::from_config(&config.auth).ok();

        let mut tasks = JoinSet::new();
        let relay = OutboxRelay::new(pool.clone(), producer.clone(), name);
        let c = cancel.clone();
        tasks.spawn(async move { ("outbox relay".to_string(), relay.run(c).await) });

        let checks = readiness_checks(&pool, &producer);
        let c = cancel.clone();
        tasks.spawn(async move {
            (
                "admin server".to_string(),
                admin::serve(admin_listener, checks, c).await,
            )
        });

        tracing::info!(service = name, grpc = %grpc_addr, admin = %admin_addr, "infrastructure ready");
        Ok(Self {
            name,
            config: config.clone(),
            pool,
            producer,
            authenticator,
            issuer,
            cancel,
            tasks,
            grpc_listener,
            grpc_addr,
            admin_addr,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The token every task of this service watches.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Starts an idempotent Kafka consumer.
    pub fn spawn_consumer(&mut self, spec: ConsumerSpec) {
        let kafka = self.config.kafka.clone();
        let pool = self.pool.clone();
        let producer = self.producer.clone();
        let cancel = self.cancel.clone();
        let service = self.name;
        let label = format!("consumer {}", spec.name);
        self.tasks.spawn(async move {
            (
                label,
                consumer::run(kafka, service, pool, producer, spec, cancel).await,
            )
        });
    }

    /// Starts a background task that must stop when the token is cancelled.
    pub fn spawn<F, Fut>(&mut self, label: &str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let fut = task(self.cancel.clone());
        let label = label.to_string();
        self.tasks.spawn(async move { (label, fut.await) });
    }

    /// Starts serving `routes` (plus health and reflection) and returns the running service.
    ///
    /// `service_names` are the fully-qualified gRPC names reported by the health service.
    pub fn serve(mut self, service_names: &[&'static str], routes: Routes) -> RunningService {
        let health: Health = grpc::health(service_names);
        let cfg = self.config.grpc.clone();
        let cancel = self.cancel.clone();
        let names: Vec<&'static str> = service_names.to_vec();
        let listener = self.grpc_listener;
        self.tasks.spawn(async move {
            (
                "gRPC server".to_string(),
                grpc::serve(listener, &cfg, &names, routes, health, cancel).await,
            )
        });
        RunningService {
            name: self.name,
            cancel: self.cancel,
            tasks: self.tasks,
            grpc_addr: self.grpc_addr,
            admin_addr: self.admin_addr,
            producer: self.producer,
            grace: Duration::from_secs(self.config.shutdown_grace_secs),
        }
    }
}

fn readiness_checks(pool: &PgPool, producer: &EventProducer) -> Vec<(String, ReadinessCheck)> {
    let pool = pool.clone();
    let db: ReadinessCheck = Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move { crate::db::ping(&pool).await.map_err(|e| e.to_string()) })
    });
    let producer = producer.clone();
    let kafka: ReadinessCheck = Arc::new(move || {
        let producer = producer.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || producer.check_broker(Duration::from_secs(2)))
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    vec![("postgres".into(), db), ("kafka".into(), kafka)]
}

/// A service that is serving.
pub struct RunningService {
    name: &'static str,
    cancel: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    producer: EventProducer,
    grace: Duration,
}

impl RunningService {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until SIGTERM/SIGINT, cancellation or the failure of any task; then drains.
    ///
    /// Returns the first task error, if any, so `main` exits non-zero and the orchestrator
    /// restarts the process.
    pub async fn run_until_stopped(mut self) -> Result<()> {
        crate::shutdown::cancel_on_signal(self.cancel.clone());
        let mut first_error = None;
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                if let Some(e) = task_result(joined) {
                    first_error = Some(e);
                }
                self.cancel.cancel();
            }
        }
        tracing::info!(service = self.name, grace = ?self.grace, "draining");
        let drain = async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Some(e) = task_result(joined)
                    && first_error.is_none()
                {
                    first_error = Some(e);
                }
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                service = self.name,
                "grace period over; aborting remaining tasks"
            );
            self.tasks.abort_all();
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "producer flush on shutdown failed");
        }
        tracing::info!(service = self.name, "stopped");
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn task_result(
    joined: std::result::Result<(String, Result<()>), tokio::task::JoinError>,
) -> Option<Error> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((label, Err(e))) => {
            tracing::error!(task = %label, error = %e, "task failed");
            Some(e)
        }
        Err(e) => {
            tracing::error!(error = %e, "task panicked");
            Some(Error::Task(format!("panicked: {e}")))
        }
    }
}
