//! Kafka: the topic list, a producer that adds Spoke's CloudEvents-style headers, the
//! transactional outbox with its relay, and the idempotent consumer with dead-lettering.
//!
//! Headers on every Spoke message: `ce_id` (unique event id, the idempotency key), `ce_type` (the
//! protobuf message name), `ce_source` (the producing service), `ce_time` (RFC 3339),
//! `traceparent`/`tracestate` (W3C trace context).

pub mod consumer;
pub mod outbox;
mod producer;
pub mod topics;

pub use consumer::{ConsumerSpec, EventHandler, HandlerError, InboundEvent};
pub use outbox::{Outbox, OutboxRelay};
pub use producer::{EventProducer, OutgoingEvent};
pub use topics::{KeyKind, Topic};

/// Header names.
pub mod headers {
    /// Unique event id.
    pub const CE_ID: &str = "ce_id";
    /// Protobuf message name.
    pub const CE_TYPE: &str = "ce_type";
    /// Producing service.
    pub const CE_SOURCE: &str = "ce_source";
    /// Event time, RFC 3339.
    pub const CE_TIME: &str = "ce_time";
    /// W3C trace parent.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// Dead letters: why the message failed.
    pub const DLQ_ERROR: &str = "dlq_error";
    /// Dead letters: the consumer that gave up.
    pub const DLQ_CONSUMER: &str = "dlq_consumer";
    /// Dead letters: the original topic.
    pub const DLQ_TOPIC: &str = "dlq_topic";
    /// Dead letters: the original partition.
    pub const DLQ_PARTITION: &str = "dlq_partition";
    /// Dead letters: the original offset.
    pub const DLQ_OFFSET: &str = "dlq_offset";
    /// Dead letters: attempts made.
    pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
}
