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

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message, Statistics};
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
    let consumer: StreamConsumer<LagReporter> = cfg
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
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(LagReporter {
            consumer: consumer_name.clone(),
        })?;
    let names: Vec<&str> = spec.topics.iter().map(|t| t.name).collect();
    consumer.subscribe(&names)?;
    register_series(&consumer_name, &names);
    tracing::info!(group = %group, topics = ?names, "consumer started");
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
        match worker.process(&event, &cancel).await {
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
                close(consumer, &group).await;
                return Err(e);
            }
        }
    }
    close(consumer, &group).await;
    Ok(())
}

/// Commits stored offsets and leaves the group on a plain thread, waiting at most 10 s: with an
/// unreachable broker librdkafka's commit and close block indefinitely, and a blocked runtime
/// thread would keep the process from ever exiting.
async fn close(consumer: StreamConsumer<LagReporter>, group: &str) {
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

/// How often librdkafka reports statistics (consumer lag); 5 s keeps the lag gauge fresh for
/// alerts at a negligible cost (one small JSON document per consumer).
const STATISTICS_INTERVAL_MS: &str = "5000";

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

/// Publishes librdkafka's statistics as `spoke_kafka_consumer_lag_messages{consumer,topic,partition}`:
/// the high watermark minus the group's committed offset, per partition this member consumes.
struct LagReporter {
    consumer: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // librdkafka's internal "unassigned" partition.
                if *partition < 0 {
                    continue;
                }
                let lag = if !p.desired {
                    // Another member owns it and reports its lag; 0 here keeps sums right.
                    0
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.consumer_lag_stored >= 0 {
                    // Nothing committed yet (a new group): what is stored is about to be.
                    p.consumer_lag_stored
                } else if p.hi_offset >= 0 {
                    // Nothing consumed yet: everything retained is waiting.
                    (p.hi_offset - p.lo_offset.max(0)).max(0)
                } else {
                    continue;
                };
                metrics::gauge!(
                    "spoke_kafka_consumer_lag_messages",
                    "consumer" => self.consumer.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

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
