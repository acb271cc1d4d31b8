//! `spoke-devbroker`: the local stack's Kafka.
//!
//! Hosts librdkafka's built-in mock cluster (the Kafka-protocol broker librdkafka's own test suite
//! runs against) on loopback TCP ports, creates every Spoke topic from the platform's topic list,
//! prints `SPOKE_KAFKA_BOOTSTRAP=<host:port>` (and writes it to `--bootstrap-file`), and serves a
//! small HTTP control API for fault tests:
//!
//! | route | effect |
//! |---|---|
//! | `GET /status` | bootstrap, broker count, topics |
//! | `POST /brokers/{id}/down` | the broker closes connections and refuses new ones |
//! | `POST /brokers/{id}/up` | back up |
//! | `POST /brokers/{id}/rtt?ms=N` | adds N ms of round-trip time |
//! | `POST /request-errors` `{"api_key": 0, "errors": [6, 6]}` | the next requests of that API key fail with those error codes |
//! | `DELETE /request-errors/{api_key}` | clears injected errors |
//!
//! Data lives in memory only; it does not implement CreateTopics (services tolerate that).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use clap::Parser;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde::Deserialize;
use spoke_platform::testing::MockKafka;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Spoke's development Kafka broker (librdkafka mock cluster over TCP)"
)]
struct Args {
    /// Number of mock brokers.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// Partitions per Spoke topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Port of the HTTP control API (0 = any free port).
    #[arg(long, default_value_t = 0)]
    control_port: u16,
    /// Write the bootstrap address to this file once the broker is up.
    #[arg(long)]
    bootstrap_file: Option<PathBuf>,
    /// Write the control API address (host:port) to this file.
    #[arg(long)]
    control_file: Option<PathBuf>,
}

#[derive(Clone)]
struct Ctl {
    kafka: MockKafka,
    status: serde_json::Value,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let brokers = args.brokers;
    let partitions = args.partitions;
    let kafka = MockKafka::start(brokers, partitions)
        .map_err(|e| anyhow::anyhow!("mock cluster failed to start: {e}"))?;
    let bootstrap = kafka.bootstrap().to_string();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.control_port))
        .await
        .context("binding the control port")?;
    let control = listener.local_addr()?;
    let topics: Vec<&str> = spoke_platform::kafka::topics::ALL
        .iter()
        .map(|t| t.name)
        .collect();
    let status = serde_json::json!({
        "bootstrap": bootstrap,
        "brokers": brokers,
        "partitions": partitions,
        "topics": topics,
    });
    if let Some(path) = &args.bootstrap_file {
        std::fs::write(path, &bootstrap).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.control_file {
        std::fs::write(path, control.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("SPOKE_KAFKA_BOOTSTRAP={bootstrap}");
    println!("SPOKE_DEVBROKER_CONTROL=http://{control}");
    tracing::info!(%bootstrap, %control, topics = topics.len(), "dev broker ready");

    let app = Router::new()
        .route(
            "/status",
            get(|State(c): State<Ctl>| async move { Json(c.status) }),
        )
        .route("/brokers/{id}/down", post(broker_down))
        .route("/brokers/{id}/up", post(broker_up))
        .route("/brokers/{id}/rtt", post(broker_rtt))
        .route("/request-errors", post(request_errors))
        .route("/request-errors/{api_key}", delete(clear_request_errors))
        .with_state(Ctl { kafka, status });
    let stop = tokio_util::sync::CancellationToken::new();
    spoke_platform::shutdown::cancel_on_signal(stop.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

fn api_key_from(k: i32) -> Result<RDKafkaApiKey, String> {
    use RDKafkaApiKey::*;
    Ok(match k {
        0 => Produce,
        1 => Fetch,
        2 => ListOffsets,
        3 => Metadata,
        8 => OffsetCommit,
        9 => OffsetFetch,
        10 => FindCoordinator,
        11 => JoinGroup,
        12 => Heartbeat,
        13 => LeaveGroup,
        14 => SyncGroup,
        18 => ApiVersion,
        22 => InitProducerId,
        other => {
            return Err(format!(
                "api_key {other} is not supported by the control API"
            ));
        }
    })
}

fn resp_err_from(code: i32) -> Result<RDKafkaRespErr, String> {
    use RDKafkaRespErr::*;
    Ok(match code {
        -195 => RD_KAFKA_RESP_ERR__TRANSPORT,
        5 => RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        6 => RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        7 => RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        8 => RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
        14 => RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        15 => RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        16 => RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        19 => RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        20 => RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        27 => RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        other => {
            return Err(format!(
                "error code {other} is not supported by the control API"
            ));
        }
    })
}

fn reply(res: Result<(), String>) -> (StatusCode, String) {
    match res {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::BAD_REQUEST, e),
    }
}

async fn broker_down(State(c): State<Ctl>, Path(id): Path<i32>) -> (StatusCode, String) {
    reply(c.kafka.broker_down(id).await)
}

async fn broker_up(State(c): State<Ctl>, Path(id): Path<i32>) -> (StatusCode, String) {
    reply(c.kafka.broker_up(id).await)
}

#[derive(Deserialize)]
struct RttQuery {
    ms: u64,
}

async fn broker_rtt(
    State(c): State<Ctl>,
    Path(id): Path<i32>,
    Query(q): Query<RttQuery>,
) -> (StatusCode, String) {
    reply(c.kafka.broker_rtt(id, Duration::from_millis(q.ms)).await)
}

#[derive(Deserialize)]
struct RequestErrors {
    api_key: i32,
    errors: Vec<i32>,
}

async fn request_errors(
    State(c): State<Ctl>,
    Json(body): Json<RequestErrors>,
) -> (StatusCode, String) {
    let parsed = api_key_from(body.api_key).and_then(|k| {
        let errs = body
            .errors
            .iter()
            .map(|e| resp_err_from(*e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((k, errs))
    });
    match parsed {
        Ok((k, errs)) => reply(c.kafka.request_errors(k, errs).await),
        Err(e) => reply(Err(e)),
    }
}

async fn clear_request_errors(
    State(c): State<Ctl>,
    Path(api_key): Path<i32>,
) -> (StatusCode, String) {
    match api_key_from(api_key) {
        Ok(k) => reply(c.kafka.clear_request_errors(k).await),
        Err(e) => reply(Err(e)),
    }
}
