//! Malformed messages on every consumed topic (issue 12, item 5): garbage bytes with the right
//! `ce_type`, a valid payload without `ce_type`, and a valid payload with another topic's
//! `ce_type` each go to `spoke.dlq.v1` with a `dlq_error` naming the problem; the consumer goes
//! on with the next message, which is applied. Real Postgres, librdkafka's mock cluster over TCP,
//! the platform consumer with a handler that decodes each topic's message as the services do.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use spoke_platform::kafka::{
    ConsumerSpec, EventHandler, EventProducer, HandlerError, InboundEvent, OutgoingEvent, consumer,
    topics,
};
use spoke_platform::testing::{MockKafka, fresh_database, test_config};
use spoke_proto::events::v1 as ev;
use tokio_util::sync::CancellationToken;

static NO_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;

/// The topics services consume.
const CONSUMED: &[topics::Topic] = &[
    topics::CONNECTION_EVENTS,
    topics::MAPPING_EVENTS,
    topics::EXPORT_REQUESTS,
    topics::EXPORT_CHECKED,
    topics::EXPORT_RESULTS,
    topics::FILTERING_RUNS,
    topics::PROFILES,
    topics::ACTIVITIES,
];

/// Decodes the topic's message (as each service's handler does) and records it as applied.
struct Decoding;

#[async_trait::async_trait]
impl EventHandler for Decoding {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        e: &InboundEvent,
    ) -> Result<(), HandlerError> {
        match e.topic.as_str() {
            "spoke.connection.events.v1" => drop(e.decode::<ev::ConnectionEvent>()?),
            "spoke.mapping.events.v1" => drop(e.decode::<ev::MappingEvent>()?),
            "spoke.export.requests.v1" => drop(e.decode::<ev::ExportRequestBatch>()?),
            "spoke.export.checked.v1" => drop(e.decode::<ev::ExportCheckedBatch>()?),
            "spoke.export.results.v1" => drop(e.decode::<ev::ExportResultBatch>()?),
            "spoke.filtering.runs.v1" => drop(e.decode::<ev::FilteringRunEvent>()?),
            "spoke.profiles.v1" => drop(e.decode::<ev::ProfileEvent>()?),
            "spoke.activities.v1" => drop(e.decode::<ev::ActivityEvent>()?),
            other => return Err(HandlerError::Permanent(format!("unexpected topic {other}"))),
        }
        sqlx::query("INSERT INTO applied (ce_id) VALUES ($1)")
            .bind(&e.ce_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A valid payload of the topic's message (its default value: decoding it succeeds).
fn valid(topic: &topics::Topic) -> Vec<u8> {
    match topic.name {
        "spoke.connection.events.v1" => ev::ConnectionEvent::default().encode_to_vec(),
        "spoke.mapping.events.v1" => ev::MappingEvent::default().encode_to_vec(),
        "spoke.export.requests.v1" => ev::ExportRequestBatch::default().encode_to_vec(),
        "spoke.export.checked.v1" => ev::ExportCheckedBatch::default().encode_to_vec(),
        "spoke.export.results.v1" => ev::ExportResultBatch::default().encode_to_vec(),
        "spoke.filtering.runs.v1" => ev::FilteringRunEvent::default().encode_to_vec(),
        "spoke.profiles.v1" => ev::ProfileEvent::default().encode_to_vec(),
        "spoke.activities.v1" => ev::ActivityEvent::default().encode_to_vec(),
        other => panic!("no sample for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_on_every_consumed_topic_are_dead_lettered_with_the_reason() {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let url = fresh_database().await.expect("fresh database");
    let cfg = test_config(&url, kafka.bootstrap());
    let pool = spoke_platform::db::connect_and_migrate(&cfg.database, "svc", &NO_MIGRATIONS)
        .await
        .expect("schema");
    sqlx::query("CREATE TABLE applied (ce_id TEXT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let producer = EventProducer::new(&cfg.kafka, "test").expect("producer");

    // Per topic, in order: garbage with the right type, no type, another topic's type, then a
    // valid message that must still be applied.
    let garbage: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x07, 0x00, 0x80];
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for t in CONSUMED {
        let good = valid(t);
        let other = if t.name == topics::CONNECTION_EVENTS.name {
            topics::MAPPING_EVENTS.message
        } else {
            topics::CONNECTION_EVENTS.message
        };
        let cases: [(&str, &str, &[u8], Option<&str>); 4] = [
            ("garbage", t.message, garbage, Some("cannot decode")),
            ("untyped", "", &good, Some("missing ce_type")),
            ("mistyped", other, &good, Some("is not")),
            ("valid", t.message, &good, None),
        ];
        for (what, ce_type, payload, reason) in cases {
            let ce_id = format!("{}-{what}", t.name);
            producer
                .send(&OutgoingEvent {
                    topic: t.name,
                    key: "org-1",
                    ce_id: &ce_id,
                    ce_type,
                    payload,
                    traceparent: None,
                    tracestate: None,
                    time: None,
                    extra_headers: &[],
                })
                .await
                .expect("produce");
            if let Some(r) = reason {
                expected.insert(ce_id, (t.name.to_string(), r.to_string()));
            }
        }
    }

    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer::run(
        cfg.kafka.clone(),
        "svc",
        pool.clone(),
        producer.clone(),
        ConsumerSpec {
            name: "bad-input".into(),
            topics: CONSUMED.to_vec(),
            handler: std::sync::Arc::new(Decoding),
        },
        cancel.clone(),
    ));

    // Every valid message is applied (the consumer went on past the bad ones)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let applied: Vec<String> = sqlx::query_scalar("SELECT ce_id FROM applied ORDER BY ce_id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let want: Vec<String> = {
            let mut v: Vec<String> = CONSUMED
                .iter()
                .map(|t| format!("{}-valid", t.name))
                .collect();
            v.sort();
            v
        };
        if applied == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "applied {applied:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ...and every bad one is on the DLQ once, with its topic and reason.
    let dlq: StreamConsumer = cfg
        .kafka
        .client_config()
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[topics::DLQ.name]).unwrap();
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    while seen.len() < expected.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .unwrap_or_else(|_| panic!("dead letters so far {seen:?}, want {expected:?}"))
            .unwrap();
        let headers = msg.headers().expect("headers");
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let id = get("ce_id");
        assert!(
            seen.insert(id.clone(), (get("dlq_topic"), get("dlq_error")))
                .is_none(),
            "{id} dead-lettered twice"
        );
    }
    for (id, (topic, reason)) in &expected {
        let (got_topic, error) = &seen[id];
        assert_eq!(got_topic, topic, "{id}");
        assert!(
            error.contains(reason.as_str()),
            "{id}: dlq_error {error:?} should say {reason:?}"
        );
    }

    cancel.cancel();
    task.await.unwrap().unwrap();
}
