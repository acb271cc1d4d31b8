//! Test and local-stack helpers (feature `testing`): fresh Postgres databases, an in-process
//! Kafka mock cluster with every Spoke topic, service configs on port 0, and dev tokens.
//!
//! The mock cluster is librdkafka's own (`rdkafka::mocking::MockCluster`), reached over TCP like
//! any broker; the dev broker binary hosts the same thing for the local stack.

use std::sync::mpsc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use secrecy::SecretString;
use tokio::sync::oneshot;

use crate::auth::{Role, TokenIssuer};
use crate::config::{CommonConfig, LogFormat};

/// The HS256 secret of tests and the local stack. Never use it in production.
pub const DEV_JWT_SECRET: &str = "spoke-dev-secret-change-me-0123456789abcdef";

/// Admin URL of the Postgres server tests use: `SPOKE_TEST_DATABASE_URL`, else `DATABASE_URL`,
/// else the local default.
pub fn admin_database_url() -> String {
    std::env::var("SPOKE_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Creates a fresh, uniquely named database and returns its URL.
///
/// Databases are named `spoke_test_*`; the test command drops leftovers before a run.
pub async fn fresh_database() -> crate::Result<String> {
    use sqlx::Connection;
    let admin = admin_database_url();
    let name = format!("spoke_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(replace_database(&admin, &name))
}

/// `url` with its database name replaced by `db`.
pub fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // Everything after the authority's last '/' is the database name.
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].rfind('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A service config for tests: ports 0, the given database and broker, dev JWT secret, pretty logs.
pub fn test_config(database_url: &str, bootstrap: &str) -> CommonConfig {
    let mut c = CommonConfig::default();
    c.grpc.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.grpc.port = 0;
    c.admin.host = std::net::Ipv4Addr::LOCALHOST.into();
    c.admin.port = 0;
    c.database.url = SecretString::from(database_url.to_string());
    c.database.max_connections = 5;
    c.kafka.bootstrap = bootstrap.to_string();
    c.kafka.max_attempts = 3;
    // The mock cluster has every topic and does not implement CreateTopics.
    c.kafka.create_topics = false;
    c.auth.hs256_secret = Some(SecretString::from(DEV_JWT_SECRET));
    c.telemetry.log_format = LogFormat::Pretty;
    c.shutdown_grace_secs = 5;
    c
}

/// Issues dev tokens signed with [`DEV_JWT_SECRET`].
pub fn dev_issuer() -> TokenIssuer {
    TokenIssuer::hs256(&SecretString::from(DEV_JWT_SECRET), 3600)
}

/// A dev token for `sub` in `org` with `roles`.
pub fn dev_token(sub: &str, org: &str, roles: &[Role]) -> String {
    dev_issuer()
        .mint(sub, org, &format!("{sub}@example.com"), roles)
        .unwrap_or_default()
}

/// A command for the thread owning the (not `Send`) mock cluster.
enum Command {
    Down(i32, oneshot::Sender<Result<(), String>>),
    Up(i32, oneshot::Sender<Result<(), String>>),
    Rtt(i32, Duration, oneshot::Sender<Result<(), String>>),
    RequestErrors(
        RDKafkaApiKey,
        Vec<RDKafkaRespErr>,
        oneshot::Sender<Result<(), String>>,
    ),
    ClearRequestErrors(RDKafkaApiKey, oneshot::Sender<Result<(), String>>),
}

/// A Kafka mock cluster with every Spoke topic, owned by a background thread.
///
/// It lives until the handle (and every clone) is dropped.
#[derive(Clone)]
pub struct MockKafka {
    bootstrap: String,
    tx: mpsc::Sender<Command>,
}

impl MockKafka {
    /// Starts `brokers` mock brokers with every topic of [`crate::kafka::topics::ALL`].
    pub fn start(brokers: i32, partitions: i32) -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || own_cluster(brokers, partitions, rx, ready_tx))
            .map_err(|e| format!("spawning the mock cluster thread: {e}"))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| "mock cluster thread died".to_string())??;
        Ok(Self { bootstrap, tx })
    }

    /// The bootstrap servers (`127.0.0.1:port`).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Takes a broker down: it closes connections and refuses new ones.
    pub async fn broker_down(&self, id: i32) -> Result<(), String> {
        self.ask(|r| Command::Down(id, r)).await
    }

    /// Brings a broker back.
    pub async fn broker_up(&self, id: i32) -> Result<(), String> {
        self.ask(|r| Command::Up(id, r)).await
    }

    /// Adds round-trip time to a broker's responses.
    pub async fn broker_rtt(&self, id: i32, rtt: Duration) -> Result<(), String> {
        self.ask(|r| Command::Rtt(id, rtt, r)).await
    }

    /// The next requests of `api_key` fail with `errors`, one each.
    pub async fn request_errors(
        &self,
        api_key: RDKafkaApiKey,
        errors: Vec<RDKafkaRespErr>,
    ) -> Result<(), String> {
        self.ask(|r| Command::RequestErrors(api_key, errors, r))
            .await
    }

    /// Clears injected errors of `api_key`.
    pub async fn clear_request_errors(&self, api_key: RDKafkaApiKey) -> Result<(), String> {
        self.ask(|r| Command::ClearRequestErrors(api_key, r)).await
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Command,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| "mock cluster thread is gone".to_string())?;
        rx.await
            .map_err(|_| "mock cluster thread is gone".to_string())?
    }
}

fn own_cluster(
    brokers: i32,
    partitions: i32,
    rx: mpsc::Receiver<Command>,
    ready: mpsc::Sender<Result<String, String>>,
) {
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    for topic in crate::kafka::topics::ALL {
        if let Err(e) = cluster.create_topic(topic.name, partitions, brokers.min(3)) {
            let _ = ready.send(Err(format!("creating {}: {e}", topic.name)));
            return;
        }
    }
    let _ = ready.send(Ok(cluster.bootstrap_servers()));
    let str_err = |r: rdkafka::error::KafkaResult<()>| r.map_err(|e| e.to_string());
    // Runs until every handle is dropped.
    while let Ok(cmd) = rx.recv() {
        let _ = match cmd {
            Command::Down(id, reply) => reply.send(str_err(cluster.broker_down(id))),
            Command::Up(id, reply) => reply.send(str_err(cluster.broker_up(id))),
            Command::Rtt(id, rtt, reply) => {
                reply.send(str_err(cluster.broker_round_trip_time(id, rtt)))
            }
            Command::RequestErrors(key, errors, reply) => {
                cluster.request_errors(key, &errors);
                reply.send(Ok(()))
            }
            Command::ClearRequestErrors(key, reply) => {
                cluster.clear_request_errors(key);
                reply.send(Ok(()))
            }
        };
    }
}

/// Waits until the gRPC health service at `addr` reports `service` SERVING (30 s at most).
pub async fn wait_serving(addr: std::net::SocketAddr, service: &str) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::from("never connected");
    while tokio::time::Instant::now() < deadline {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
        {
            Ok(channel) => {
                let mut client = HealthClient::new(channel);
                match client
                    .check(HealthCheckRequest {
                        service: service.to_string(),
                    })
                    .await
                {
                    Ok(resp) if resp.get_ref().status == ServingStatus::Serving as i32 => {
                        return Ok(());
                    }
                    Ok(resp) => last = format!("status {}", resp.get_ref().status),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{service} at {addr} not serving after 30s: {last}"))
}

/// A plain HTTP/1.1 GET (admin endpoints in tests); returns status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.80}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        for (url, want) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h:5432", "postgres://h:5432/x"),
        ] {
            assert_eq!(replace_database(url, "x"), want, "{url}");
        }
    }
}
