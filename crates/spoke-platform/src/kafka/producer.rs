//! The event producer: idempotent librdkafka producer plus Spoke's headers.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::headers;
use crate::Result;
use crate::config::KafkaConfig;

/// One event to publish.
#[derive(Debug, Clone)]
pub struct OutgoingEvent<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Message key.
    pub key: &'a str,
    /// Unique event id.
    pub ce_id: &'a str,
    /// Protobuf message name.
    pub ce_type: &'a str,
    /// Encoded message.
    pub payload: &'a [u8],
    /// W3C trace parent to forward, if any.
    pub traceparent: Option<&'a str>,
    /// W3C trace state to forward, if any.
    pub tracestate: Option<&'a str>,
    /// Event time (RFC 3339); now when `None`.
    pub time: Option<&'a str>,
    /// Additional headers (dead letters carry the original ones plus the error).
    pub extra_headers: &'a [(String, Vec<u8>)],
}

/// Publishes events with Spoke's headers. Cheap to clone.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    source: String,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("source", &self.source)
            .finish()
    }
}

impl EventProducer {
    /// An idempotent producer (acks=all) for service `source`.
    pub fn new(cfg: &KafkaConfig, source: &str) -> Result<Self> {
        let producer: FutureProducer = cfg
            .client_config()
            .set("client.id", format!("spoke-{source}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()?;
        Ok(Self {
            producer,
            source: source.to_string(),
        })
    }

    /// Publishes one event and waits for the broker's acknowledgement. Returns (partition, offset).
    pub async fn send(&self, ev: &OutgoingEvent<'_>) -> Result<(i32, i64)> {
        let delivery = self.enqueue(ev)?;
        wait_delivery(delivery).await
    }

    /// Hands an event to librdkafka without waiting; events enqueued in order to the same
    /// partition are delivered in that order (idempotent producer).
    pub fn enqueue(&self, ev: &OutgoingEvent<'_>) -> Result<rdkafka::producer::DeliveryFuture> {
        let now;
        let time = match ev.time {
            Some(t) => t,
            None => {
                now = chrono::Utc::now().to_rfc3339();
                now.as_str()
            }
        };
        let mut hdrs = OwnedHeaders::new()
            .insert(Header {
                key: headers::CE_ID,
                value: Some(ev.ce_id),
            })
            .insert(Header {
                key: headers::CE_TYPE,
                value: Some(ev.ce_type),
            })
            .insert(Header {
                key: headers::CE_SOURCE,
                value: Some(self.source.as_str()),
            })
            .insert(Header {
                key: headers::CE_TIME,
                value: Some(time),
            });
        if let Some(tp) = ev.traceparent {
            hdrs = hdrs.insert(Header {
                key: headers::TRACEPARENT,
                value: Some(tp),
            });
        }
        if let Some(ts) = ev.tracestate {
            hdrs = hdrs.insert(Header {
                key: headers::TRACESTATE,
                value: Some(ts),
            });
        }
        for (k, v) in ev.extra_headers {
            hdrs = hdrs.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
        let record = FutureRecord::to(ev.topic)
            .key(ev.key)
            .payload(ev.payload)
            .headers(hdrs);
        self.producer
            .send_result(record)
            .map_err(|(e, _)| crate::Error::Kafka(e))
    }

    /// Waits until everything enqueued is delivered (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout)?;
        Ok(())
    }

    /// Fetches cluster metadata (readiness check). Blocking; call from `spawn_blocking`.
    pub fn check_broker(&self, timeout: Duration) -> Result<usize> {
        let md = self.producer.client().fetch_metadata(None, timeout)?;
        Ok(md.brokers().len())
    }
}

/// Awaits a delivery report.
pub async fn wait_delivery(delivery: rdkafka::producer::DeliveryFuture) -> Result<(i32, i64)> {
    match delivery.await {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(crate::Error::Kafka(e)),
        Err(_) => Err(crate::Error::Kafka(rdkafka::error::KafkaError::Canceled)),
    }
}
