//! Idempotent consumer (DESIGN.md §2, "Delivery guarantees").
//!
//! For each message: open a transaction, insert its `ce_id` into the `inbox` table (a duplicate
//! means the effects are already committed: skip), run the handler in the same transaction,
//! commit, and only then store the offset. A crash anywhere before the commit redelivers the
//! message; a crash after it redelivers a message the inbox recognises. Retriable failures are
//! retried with backoff up to `kafka.max_attempts`; then, and at once for permanent failures, the
//! message goes to `spoke.dlq.v1` with its original headers plus `dlq_*` headers, and is marked
//! done so it does not block its partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::headers;
use super::producer::{EventProducer, OutgoingEvent};
use super::topics::{DLQ, Topic};
use crate::Result;
use crate::config::KafkaConfig;

/// A message as handlers see it.
#[derive(Debug, Clone)]
pub struct InboundEvent {
    /// Topic it came from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Message key.
    pub key: Option<String>,
    /// Event id (the `ce_id` header, or `topic/partition/offset` when absent).
    pub ce_id: String,
    /// Message type (`ce_type` header), empty when absent.
    pub ce_type: String,
    /// Encoded message.
    pub payload: Vec<u8>,
    /// All headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl InboundEvent {
    /// Decodes the payload; a decode failure is permanent (it would fail the same way again).
    pub fn decode<M: prost::Message + Default>(&self) -> std::result::Result<M, HandlerError> {
        M::decode(self.payload.as_slice()).map_err(|e| {
            HandlerError::Permanent(format!(
                "cannot decode {} at {}/{}/{}: {e}",
                if self.ce_type.is_empty() {
                    "message"
                } else {
                    &self.ce_type
                },
                self.topic,
                self.partition,
                self.offset
            ))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn from_message(m: &BorrowedMessage<'_>) -> Self {
        let mut hdrs = Vec::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                hdrs.push((
                    hd.key.to_string(),
                    hd.value.map(<[u8]>::to_vec).unwrap_or_default(),
                ));
            }
        }
        let mut ev = InboundEvent {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            ce_id: String::new(),
            ce_type: String::new(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: hdrs,
        };
        ev.ce_id = ev
            .header(headers::CE_ID)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/{}/{}", ev.topic, ev.partition, ev.offset));
        ev.ce_type = ev.header(headers::CE_TYPE).unwrap_or_default().to_string();
        ev
    }
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (database or network trouble): retried with backoff.
    #[error("{0}")]
    Retriable(String),
    /// Will fail the same way again (bad payload, violated invariant): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Retriable(format!("database: {e}"))
    }
}

impl From<crate::Error> for HandlerError {
    fn from(e: crate::Error) -> Self {
        HandlerError::Retriable(e.to_string())
    }
}

/// Handles one event inside the consumer's transaction.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Applies the event's effects using `tx`; they commit together with the inbox row.
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> std::result::Result<(), HandlerError>;
}

/// What to consume and how.
#[derive(Clone)]
pub struct ConsumerSpec {
    /// Consumer name: part of the group id (`spoke-<service>-<name>`) and of the inbox key.
    pub name: String,
    /// Topics to subscribe to.
    pub topics: Vec<Topic>,
    /// The handler.
    pub handler: Arc<dyn EventHandler>,
}

/// Runs a consumer until `cancel`; commits stored offsets before returning.
pub async fn run(
    cfg: KafkaConfig,
    service: &str,
    pool: PgPool,
    dlq: EventProducer,
    spec: ConsumerSpec,
    cancel: CancellationToken,
) -> Result<()> {
    let group = format!("spoke-{service}-{}", spec.name);
    let consumer_name = format!("{service}.{}", spec.name);
    let consumer: StreamConsumer = cfg
        .client_config()
        .set("group.id", &group)
        .set("client.id", format!("spoke-{service}-{}", spec.name))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .create()?;
    let names: Vec<&str> = spec.topics.iter().map(|t| t.name).collect();
    consumer.subscribe(&names)?;
    register_series(&consumer_name, &names);
    tracing::info!(group = %group, topics = ?names, "consumer started");
    let consumer = Arc::new(consumer);
    // Lag is measured beside the processing loop, so it keeps being reported (and grows) while
    // a handler is stuck, exactly when it matters.
    let lag_stop = CancellationToken::new();
    let lag_task = tokio::spawn(report_lag(
        consumer.clone(),
        consumer_name.clone(),
        lag_stop.clone(),
    ));
    let result = consume(
        &consumer,
        &group,
        consumer_name,
        &cfg,
        pool,
        dlq,
        spec,
        &cancel,
    )
    .await;
    lag_stop.cancel();
    // A measurement in flight ends within its query timeouts.
    let _ = tokio::time::timeout(Duration::from_secs(10), lag_task).await;
    match Arc::try_unwrap(consumer) {
        Ok(consumer) => close(consumer, &group).await,
        Err(_) => {
            tracing::warn!(group = %group, "consumer still shared at shutdown; leaving the group to time out")
        }
    }
    result
}

/// The processing loop: returns when `cancel` fires (Ok) or when a message can be neither
/// processed nor dead-lettered (Err).
#[allow(clippy::too_many_arguments)]
async fn consume(
    consumer: &StreamConsumer,
    group: &str,
    consumer_name: String,
    cfg: &KafkaConfig,
    pool: PgPool,
    dlq: EventProducer,
    spec: ConsumerSpec,
    cancel: &CancellationToken,
) -> Result<()> {
    let worker = Worker {
        pool,
        dlq,
        consumer_name,
        handler: spec.handler,
        max_attempts: cfg.max_attempts,
    };
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, group = %group, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let event = InboundEvent::from_message(&msg);
        // Processing finishes even when shutdown starts meanwhile: the work is short and
        // finishing it avoids a redelivery.
        match worker.process(&event, cancel).await {
            Ok(()) => {
                if let Err(e) = consumer.store_offset_from_message(&msg) {
                    tracing::warn!(error = %e, "storing offset failed; message may be redelivered (harmless)");
                }
            }
            Err(e) if cancel.is_cancelled() => {
                // Not stored: the message is redelivered after restart or rebalance.
                tracing::info!(error = %e, topic = %event.topic, offset = event.offset, "stopping with message unacknowledged");
                break;
            }
            Err(e) => {
                // Neither processed nor dead-lettered (the broker refused the dead letter): stop
                // the service rather than skip the message; it is redelivered after restart.
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Commits stored offsets and leaves the group on a plain thread, waiting at most 10 s: with an
/// unreachable broker librdkafka's commit and close block indefinitely, and a blocked runtime
/// thread would keep the process from ever exiting.
async fn close(consumer: StreamConsumer, group: &str) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last auto-commit is a normal case.
                tracing::debug!(error = %e, "final offset commit");
            }
            consumer.unsubscribe();
            drop(consumer);
            let _ = done_tx.send(());
        });
    if spawned.is_err() {
        tracing::warn!(
            group,
            "could not start the consumer close thread; leaving the group to time out"
        );
        return;
    }
    match tokio::time::timeout(Duration::from_secs(10), done_rx).await {
        Ok(_) => tracing::info!(group, "consumer stopped"),
        Err(_) => tracing::warn!(
            group,
            "consumer close timed out (broker unreachable?); offsets since the last auto-commit are redelivered"
        ),
    }
}

/// How often consumer lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Bound of each broker query of the lag measurement.
const LAG_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates the consumer's counters at zero, so dashboards and `increase()` see every series from
/// the start instead of only after the first dead letter.
fn register_series(consumer: &str, topics: &[&str]) {
    for topic in topics {
        for outcome in ["processed", "duplicate", "dead_lettered"] {
            metrics::counter!("spoke_kafka_consumed_total", "consumer" => consumer.to_string(), "topic" => topic.to_string(), "outcome" => outcome).increment(0);
        }
        metrics::counter!("spoke_kafka_dead_letters_total", "consumer" => consumer.to_string(), "topic" => topic.to_string()).increment(0);
    }
}

/// Every [`LAG_EVERY`] until `stop`: sets `spoke_kafka_consumer_lag_messages{consumer,topic,partition}`
/// to the partition's high watermark minus the group's committed offset, for each partition this
/// member is assigned (nothing committed yet: minus the low watermark, everything retained waits).
/// Partitions that move to another member are set to 0 here (their new owner reports them), so
/// sums across replicas stay right. The broker queries block, so they run on the blocking pool.
async fn report_lag(consumer: Arc<StreamConsumer>, name: String, stop: CancellationToken) {
    let mut reported = std::collections::BTreeSet::<(String, i32)>::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        let c = consumer.clone();
        let lags = match tokio::task::spawn_blocking(move || measure_lag(&c)).await {
            Ok(Ok(lags)) => lags,
            Ok(Err(e)) => {
                tracing::debug!(consumer = %name, error = %e, "consumer lag not measured");
                continue;
            }
            Err(_) => continue,
        };
        let now: std::collections::BTreeSet<(String, i32)> =
            lags.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        for (topic, partition) in reported.difference(&now) {
            lag_gauge(&name, topic, *partition).set(0.0);
        }
        for (topic, partition, lag) in &lags {
            lag_gauge(&name, topic, *partition).set(*lag as f64);
        }
        reported = now;
    }
}

fn lag_gauge(consumer: &str, topic: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!(
        "spoke_kafka_consumer_lag_messages",
        "consumer" => consumer.to_string(),
        "topic" => topic.to_string(),
        "partition" => partition.to_string(),
    )
}

/// (topic, partition, lag) of each assigned partition.
fn measure_lag(
    consumer: &StreamConsumer,
) -> std::result::Result<Vec<(String, i32, i64)>, rdkafka::error::KafkaError> {
    let assigned = consumer.assignment()?;
    if assigned.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(assigned, LAG_QUERY_TIMEOUT)?;
    let mut out = Vec::new();
    for tp in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(tp.topic(), tp.partition(), LAG_QUERY_TIMEOUT)?;
        let from = match tp.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push((tp.topic().to_string(), tp.partition(), (high - from).max(0)));
    }
    Ok(out)
}

struct Worker {
    pool: PgPool,
    dlq: EventProducer,
    consumer_name: String,
    handler: Arc<dyn EventHandler>,
    max_attempts: u32,
}

impl Worker {
    /// Ok when the message is done (processed, duplicate or dead-lettered): its offset may be stored.
    async fn process(&self, ev: &InboundEvent, cancel: &CancellationToken) -> Result<()> {
        let span = tracing::info_span!(
            "kafka.consume",
            consumer = %self.consumer_name,
            topic = %ev.topic,
            partition = ev.partition,
            offset = ev.offset,
            ce_type = %ev.ce_type,
            ce_id = %ev.ce_id,
        );
        let carrier: std::collections::HashMap<String, String> = ev
            .headers
            .iter()
            .filter(|(k, _)| k == headers::TRACEPARENT || k == headers::TRACESTATE)
            .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()).ok()?)))
            .collect();
        crate::telemetry::set_parent_from(&span, &carrier);
        self.process_inner(ev, cancel).instrument(span).await
    }

    async fn process_inner(&self, ev: &InboundEvent, cancel: &CancellationToken) -> Result<()> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let outcome = loop {
            attempt += 1;
            match self.try_once(ev).await {
                Ok(true) => break "processed",
                Ok(false) => break "duplicate",
                Err(HandlerError::Permanent(msg)) => {
                    self.dead_letter(ev, &msg, attempt).await?;
                    break "dead_lettered";
                }
                Err(HandlerError::Retriable(msg)) if attempt >= self.max_attempts => {
                    self.dead_letter(ev, &msg, attempt).await?;
                    break "dead_lettered";
                }
                Err(HandlerError::Retriable(msg)) => {
                    let backoff = backoff(attempt);
                    tracing::warn!(error = %msg, attempt, ?backoff, "handler failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            return Err(crate::Error::Task("shutdown during retry".into()));
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        };
        metrics::counter!("spoke_kafka_consumed_total", "consumer" => self.consumer_name.clone(), "topic" => ev.topic.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("spoke_kafka_handle_duration_seconds", "consumer" => self.consumer_name.clone()).record(started.elapsed().as_secs_f64());
        tracing::debug!(outcome, "message handled");
        Ok(())
    }

    /// Ok(true) processed now, Ok(false) already processed before.
    async fn try_once(&self, ev: &InboundEvent) -> std::result::Result<bool, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (ce_id, consumer, topic, partition, \"offset\") VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consumer, ce_id) DO NOTHING",
        )
        .bind(&ev.ce_id)
        .bind(&self.consumer_name)
        .bind(&ev.topic)
        .bind(ev.partition)
        .bind(ev.offset)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        check_type(ev)?;
        self.handler.handle(&mut tx, ev).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn dead_letter(&self, ev: &InboundEvent, error: &str, attempts: u32) -> Result<()> {
        tracing::error!(error = %error, attempts, "dead-lettering message");
        let mut extra: Vec<(String, Vec<u8>)> = ev
            .headers
            .iter()
            .filter(|(k, _)| {
                ![
                    headers::CE_ID,
                    headers::CE_TYPE,
                    headers::CE_SOURCE,
                    headers::CE_TIME,
                    headers::TRACEPARENT,
                    headers::TRACESTATE,
                ]
                .contains(&k.as_str())
            })
            .cloned()
            .collect();
        extra.push((headers::DLQ_ERROR.into(), error.as_bytes().to_vec()));
        extra.push((
            headers::DLQ_CONSUMER.into(),
            self.consumer_name.as_bytes().to_vec(),
        ));
        extra.push((headers::DLQ_TOPIC.into(), ev.topic.as_bytes().to_vec()));
        extra.push((
            headers::DLQ_PARTITION.into(),
            ev.partition.to_string().into_bytes(),
        ));
        extra.push((
            headers::DLQ_OFFSET.into(),
            ev.offset.to_string().into_bytes(),
        ));
        extra.push((
            headers::DLQ_ATTEMPTS.into(),
            attempts.to_string().into_bytes(),
        ));
        let traceparent = ev.header(headers::TRACEPARENT);
        let out = OutgoingEvent {
            topic: DLQ.name,
            key: ev.key.as_deref().unwrap_or(""),
            ce_id: &ev.ce_id,
            ce_type: &ev.ce_type,
            payload: &ev.payload,
            traceparent,
            tracestate: ev.header(headers::TRACESTATE),
            time: ev.header(headers::CE_TIME),
            extra_headers: &extra,
        };
        self.dlq.send(&out).await?;
        // Mark it done so a redelivery does not dead-letter it twice.
        sqlx::query(
            "INSERT INTO inbox (ce_id, consumer, topic, partition, \"offset\") VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (consumer, ce_id) DO NOTHING",
        )
        .bind(&ev.ce_id)
        .bind(&self.consumer_name)
        .bind(&ev.topic)
        .bind(ev.partition)
        .bind(ev.offset)
        .execute(&self.pool)
        .await?;
        metrics::counter!("spoke_kafka_dead_letters_total", "consumer" => self.consumer_name.clone(), "topic" => ev.topic.clone()).increment(1);
        Ok(())
    }
}

/// A Spoke topic carries one message type (`topics::ALL`): a message without `ce_type`, or of
/// another type, is refused before any handler sees it (a payload of the wrong type may decode
/// without error into nonsense), so it is dead-lettered with the reason.
fn check_type(ev: &InboundEvent) -> std::result::Result<(), HandlerError> {
    let Some(topic) = super::topics::by_name(&ev.topic) else {
        return Ok(());
    };
    if ev.ce_type.is_empty() {
        return Err(HandlerError::Permanent(format!(
            "missing ce_type header ({} carries {})",
            ev.topic, topic.message
        )));
    }
    if ev.ce_type != topic.message {
        return Err(HandlerError::Permanent(format!(
            "ce_type {:?} is not {}, the message of {}",
            ev.ce_type, topic.message, ev.topic
        )));
    }
    Ok(())
}

/// Exponential backoff with full jitter, capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let base_ms = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    Duration::from_millis(rand::random_range(base_ms / 2..=base_ms))
}
