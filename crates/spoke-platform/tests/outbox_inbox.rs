//! Outbox → Kafka → inbox: events committed with their state are published once, consumed
//! exactly once even when delivered twice, retried on transient failure, and dead-lettered on
//! permanent failure. Real Postgres (fresh database), librdkafka's mock cluster over TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use spoke_platform::config::CommonConfig;
use spoke_platform::kafka::{
    ConsumerSpec, EventHandler, EventProducer, HandlerError, InboundEvent, Outbox, OutboxRelay,
    OutgoingEvent, consumer, topics,
};
use spoke_platform::testing::{MockKafka, fresh_database, test_config};
use spoke_proto::events::v1::ConnectionEvent;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

static NO_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;

struct Env {
    cfg: CommonConfig,
    producer_pool: PgPool,
    consumer_pool: PgPool,
    _kafka: MockKafka,
}

async fn env() -> Env {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let url = fresh_database().await.expect("fresh database");
    let cfg = test_config(&url, kafka.bootstrap());
    let producer_pool =
        spoke_platform::db::connect_and_migrate(&cfg.database, "svc_a", &NO_MIGRATIONS)
            .await
            .expect("schema svc_a");
    let consumer_pool =
        spoke_platform::db::connect_and_migrate(&cfg.database, "svc_b", &NO_MIGRATIONS)
            .await
            .expect("schema svc_b");
    sqlx::query("CREATE TABLE effects (ce_id TEXT NOT NULL, org_id TEXT NOT NULL)")
        .execute(&consumer_pool)
        .await
        .unwrap();
    Env {
        cfg,
        producer_pool,
        consumer_pool,
        _kafka: kafka,
    }
}

/// Records each event's org as an effect; fails transiently `fail_first` times per org "flaky",
/// and permanently for org "poison".
struct Recorder {
    fail_first: AtomicU32,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(
        &self,
        tx: &mut sqlx::PgConnection,
        ev: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let msg: ConnectionEvent = ev.decode()?;
        sqlx::query("INSERT INTO effects (ce_id, org_id) VALUES ($1, $2)")
            .bind(&ev.ce_id)
            .bind(&msg.org_id)
            .execute(&mut *tx)
            .await?;
        if msg.org_id == "poison" {
            return Err(HandlerError::Permanent("org poison is not accepted".into()));
        }
        if msg.org_id == "flaky" && self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            // The effect above is rolled back with the transaction.
            return Err(HandlerError::Retriable("transient".into()));
        }
        Ok(())
    }
}

fn event(org: &str) -> ConnectionEvent {
    ConnectionEvent {
        org_id: org.to_string(),
        portal_id: 42,
        ..Default::default()
    }
}

async fn effects(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT ce_id, org_id FROM effects ORDER BY org_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn committed_events_are_consumed_exactly_once_and_rolled_back_ones_never() {
    let env = env().await;
    let cancel = CancellationToken::new();
    let producer = EventProducer::new(&env.cfg.kafka, "svc_a").unwrap();

    // Two committed events, one rolled back.
    let mut tx = env.producer_pool.begin().await.unwrap();
    let id_a = Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-a", &event("org-a"))
        .await
        .unwrap();
    let id_b = Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-b", &event("org-b"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = env.producer_pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-x", &event("org-x"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let relay = OutboxRelay::new(env.producer_pool.clone(), producer.clone(), "svc_a");
    let relay_task = tokio::spawn(relay.run(cancel.clone()));
    let spec = ConsumerSpec {
        name: "test".into(),
        topics: vec![topics::CONNECTION_EVENTS],
        handler: Arc::new(Recorder {
            fail_first: AtomicU32::new(0),
        }),
    };
    let consumer_task = tokio::spawn(consumer::run(
        env.cfg.kafka.clone(),
        "svc_b",
        env.consumer_pool.clone(),
        producer.clone(),
        spec,
        cancel.clone(),
    ));

    let pool = env.consumer_pool.clone();
    wait_for("two effects", || {
        let pool = pool.clone();
        async move { effects(&pool).await.len() == 2 }
    })
    .await;
    assert_eq!(
        Outbox::pending(&env.producer_pool).await.unwrap(),
        0,
        "outbox drained"
    );

    // Redelivery: the same events again (as after a relay crash before marking them sent).
    let payload_a = prost::Message::encode_to_vec(&event("org-a"));
    for id in [id_a, id_b] {
        let ce_id = id.to_string();
        producer
            .send(&OutgoingEvent {
                topic: topics::CONNECTION_EVENTS.name,
                key: "org-a",
                ce_id: &ce_id,
                ce_type: topics::CONNECTION_EVENTS.message,
                payload: &payload_a,
                traceparent: None,
                tracestate: None,
                time: None,
                extra_headers: &[],
            })
            .await
            .unwrap();
    }
    // A marker sent after the duplicates: once it is processed, the duplicates were too.
    let mut tx = env.producer_pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-a", &event("org-z"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for("marker", || {
        let pool = pool.clone();
        async move { effects(&pool).await.iter().any(|(_, o)| o == "org-z") }
    })
    .await;

    let got = effects(&env.consumer_pool).await;
    let orgs: Vec<&str> = got.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(
        orgs,
        vec!["org-a", "org-b", "org-z"],
        "each event exactly once, rolled-back never"
    );
    assert_eq!(got[0].0, id_a.to_string());
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&env.consumer_pool)
        .await
        .unwrap();
    assert_eq!(inbox, 3);

    cancel.cancel();
    relay_task.await.unwrap().unwrap();
    consumer_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_dead_lettered() {
    let env = env().await;
    let cancel = CancellationToken::new();
    let producer = EventProducer::new(&env.cfg.kafka, "svc_a").unwrap();

    let mut tx = env.producer_pool.begin().await.unwrap();
    Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "k", &event("flaky"))
        .await
        .unwrap();
    let poison = Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "k", &event("poison"))
        .await
        .unwrap();
    Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "k", &event("after"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let relay = OutboxRelay::new(env.producer_pool.clone(), producer.clone(), "svc_a");
    let relay_task = tokio::spawn(relay.run(cancel.clone()));
    let spec = ConsumerSpec {
        name: "test".into(),
        topics: vec![topics::CONNECTION_EVENTS],
        // Two failures, below the test config's max_attempts of 3.
        handler: Arc::new(Recorder {
            fail_first: AtomicU32::new(2),
        }),
    };
    let consumer_task = tokio::spawn(consumer::run(
        env.cfg.kafka.clone(),
        "svc_b",
        env.consumer_pool.clone(),
        producer.clone(),
        spec,
        cancel.clone(),
    ));

    let pool = env.consumer_pool.clone();
    wait_for("the event after the poison message", || {
        let pool = pool.clone();
        async move { effects(&pool).await.iter().any(|(_, o)| o == "after") }
    })
    .await;
    let orgs: Vec<String> = effects(&env.consumer_pool)
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        orgs,
        vec!["after", "flaky"],
        "flaky applied once after retries; poison's effect rolled back"
    );

    // The poison message is on the DLQ with its id and the reason.
    let dlq: StreamConsumer = env
        .cfg
        .kafka
        .client_config()
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[topics::DLQ.name]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a dead letter")
        .unwrap();
    let headers = msg.headers().expect("headers");
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get("ce_id").as_deref(), Some(poison.to_string().as_str()));
    assert_eq!(
        get("dlq_error").as_deref(),
        Some("org poison is not accepted")
    );
    assert_eq!(
        get("dlq_topic").as_deref(),
        Some(topics::CONNECTION_EVENTS.name)
    );
    assert_eq!(get("dlq_attempts").as_deref(), Some("1"));
    let decoded: ConnectionEvent = prost::Message::decode(msg.payload().unwrap()).unwrap();
    assert_eq!(decoded.org_id, "poison");

    cancel.cancel();
    relay_task.await.unwrap().unwrap();
    consumer_task.await.unwrap().unwrap();
}
