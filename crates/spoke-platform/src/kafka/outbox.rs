//! Transactional outbox (DESIGN.md §2, "Delivery guarantees").
//!
//! A service writes an event with [`Outbox::enqueue`] inside the same Postgres transaction as the
//! state change it describes: no event without its state, no state without its event. The
//! [`OutboxRelay`] publishes unsent rows in id order with the idempotent producer and marks them
//! sent. A relay that crashes after publishing but before marking re-publishes on restart; the
//! `ce_id` header makes that harmless for consumers (they dedupe through the inbox).
//!
//! Only one relay per schema publishes at a time (a transaction-scoped advisory lock), so events
//! with the same key stay in order even with several replicas. `NOTIFY` at commit wakes the relay
//! at once; a short poll covers missed notifications.

use std::time::Duration;

use futures::future::join_all;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{PgConnection, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::producer::{EventProducer, OutgoingEvent, wait_delivery};
use super::topics::Topic;
use crate::Result;
use crate::telemetry;

const NOTIFY_CHANNEL: &str = "spoke_outbox";
const BATCH: i64 = 500;
/// How often the backlog gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Writes events into the outbox table of the current schema.
#[derive(Debug, Clone, Copy)]
pub struct Outbox;

impl Outbox {
    /// Enqueues `message` for `topic` with `key` in the caller's transaction; returns the event id.
    ///
    /// The current span's trace context is stored with the row and forwarded as headers, so the
    /// consumer's span joins the caller's trace.
    pub async fn enqueue<M: prost::Message>(
        conn: &mut PgConnection,
        topic: Topic,
        key: &str,
        message: &M,
    ) -> Result<Uuid> {
        let ce_id = Uuid::now_v7();
        let mut carrier = std::collections::HashMap::<String, String>::new();
        telemetry::inject_current(&mut carrier);
        sqlx::query(
            "INSERT INTO outbox (topic, key, ce_id, ce_type, payload, traceparent, tracestate) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(topic.name)
        .bind(key)
        .bind(ce_id)
        .bind(topic.message)
        .bind(message.encode_to_vec())
        .bind(carrier.get("traceparent"))
        .bind(carrier.get("tracestate"))
        .execute(&mut *conn)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *conn)
            .await?;
        Ok(ce_id)
    }

    /// Number of events not yet published (metrics, tests).
    pub async fn pending(pool: &PgPool) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(pool)
                .await?,
        )
    }
}

/// Publishes outbox rows to Kafka.
pub struct OutboxRelay {
    pool: PgPool,
    producer: EventProducer,
    lock_key: String,
    /// How long published rows are kept (for debugging) before they are deleted.
    pub retention: Duration,
}

impl OutboxRelay {
    /// A relay for the outbox in the pool's schema; `service` names the advisory lock.
    pub fn new(pool: PgPool, producer: EventProducer, service: &str) -> Self {
        Self {
            pool,
            producer,
            lock_key: format!("spoke.outbox.{service}"),
            retention: Duration::from_secs(3600),
        }
    }

    /// Runs until `cancel`, then publishes what is left once more and returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox LISTEN failed; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "outbox listener connection failed; polling only");
                None
            }
        };
        let mut last_cleanup = tokio::time::Instant::now();
        let mut last_gauge: Option<tokio::time::Instant> = None;
        loop {
            if last_gauge.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
                last_gauge = Some(tokio::time::Instant::now());
                if let Err(e) = self.report_backlog().await {
                    tracing::debug!(error = %e, "outbox backlog query failed");
                }
            }
            match self.publish_batch().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay batch failed; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                last_cleanup = tokio::time::Instant::now();
                if let Err(e) = self.cleanup().await {
                    tracing::warn!(error = %e, "outbox cleanup failed");
                }
            }
            let wait = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wait => {}
                n = recv(&mut listener) => {
                    if !n { listener = None; }
                }
            }
        }
        // Drain: what was committed before shutdown is published before exit when possible.
        if let Err(e) = self.publish_batch().await {
            tracing::warn!(error = %e, "final outbox drain failed; rows stay for the next start");
        }
        Ok(())
    }

    /// Publishes up to one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(&self.lock_key)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        let rows = sqlx::query(
            "SELECT id, topic, key, ce_id, ce_type, payload, traceparent, tracestate, created_at \
             FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.get("id");
            let topic: String = row.get("topic");
            let key: String = row.get("key");
            let ce_id: Uuid = row.get("ce_id");
            let ce_type: String = row.get("ce_type");
            let payload: Vec<u8> = row.get("payload");
            let traceparent: Option<String> = row.get("traceparent");
            let tracestate: Option<String> = row.get("tracestate");
            let created: chrono::DateTime<chrono::Utc> = row.get("created_at");
            let ce_id = ce_id.to_string();
            let time = created.to_rfc3339();
            let ev = OutgoingEvent {
                topic: &topic,
                key: &key,
                ce_id: &ce_id,
                ce_type: &ce_type,
                payload: &payload,
                traceparent: traceparent.as_deref(),
                tracestate: tracestate.as_deref(),
                time: Some(&time),
                extra_headers: &[],
            };
            deliveries.push(self.producer.enqueue(&ev)?);
            ids.push(id);
            metrics::counter!("spoke_outbox_published_total", "topic" => topic).increment(1);
        }
        for r in join_all(deliveries.into_iter().map(wait_delivery)).await {
            r?;
        }
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids.len())
    }

    async fn cleanup(&self) -> Result<()> {
        let secs = self.retention.as_secs() as f64;
        sqlx::query("DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)")
            .bind(secs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the backlog gauges: unpublished events and the age of the oldest one (a relay that
    /// cannot publish shows a growing age even when few events wait).
    async fn report_backlog(&self) -> Result<()> {
        let (pending, oldest): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 \
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        metrics::gauge!("spoke_outbox_pending_events").set(pending as f64);
        metrics::gauge!("spoke_outbox_oldest_pending_seconds").set(oldest.unwrap_or(0.0).max(0.0));
        Ok(())
    }
}

/// Waits for a notification; false when the listener is gone (then only polling is used).
async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_ok(),
        None => std::future::pending().await,
    }
}
