//! The cluster as processes: dev broker, Postgres, all five service binaries. Each serves gRPC
//! health; a connection event written through the connection service's outbox reaches every
//! consuming service exactly once, also when Kafka delivers it twice; SIGTERM stops all cleanly.

use std::collections::BTreeMap;
use std::time::Duration;

use spoke_e2e::{DevBroker, ServiceProcess, log_dir, start_cluster, stop_stack};
use spoke_platform::config::KafkaConfig;
use spoke_platform::kafka::{EventProducer, Outbox, OutgoingEvent, topics};
use spoke_platform::testing::{fresh_database, http_get, wait_serving};
use spoke_proto::events::v1::ConnectionEvent;
use spoke_proto::events::v1::connection_event::{Connected, Kind};
use sqlx::postgres::{PgConnectOptions, PgPool};

async fn schema_pool(url: &str, schema: &str) -> PgPool {
    let opts: PgConnectOptions = url.parse().unwrap();
    PgPool::connect_with(opts.options([("search_path", schema)]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_services_start_exchange_an_event_exactly_once_and_stop_cleanly() {
    let logs = log_dir("foundation");
    let broker = DevBroker::start(&logs).expect("dev broker");
    let db = fresh_database().await.expect("fresh database");
    let services: Vec<ServiceProcess> =
        start_cluster(&db, &broker.bootstrap, None, &BTreeMap::new(), &logs)
            .expect("services start");
    for s in &services {
        wait_serving(s.grpc, s.grpc_service)
            .await
            .unwrap_or_else(|e| panic!("{e}; see {}", s.process.log().display()));
        let (status, body) = http_get(s.admin, "/readyz").await.unwrap();
        assert_eq!(status, 200, "{} not ready: {body}", s.name);
    }

    // The connection service's outbox (as its gRPC handlers will use it).
    let connection_db = schema_pool(&db, "connection").await;
    let event = ConnectionEvent {
        org_id: "org-e2e".into(),
        portal_id: 777,
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        actor: "admin-1".into(),
        kind: Some(Kind::Connected(Connected {
            primary_admin_user_id: "admin-1".into(),
            hubspot_user_id: "hs-1".into(),
            ui_domain: "app.hubspot.com".into(),
            time_zone: "US/Eastern".into(),
            enabled: true,
            user_account: false,
        })),
    };
    let mut tx = connection_db.begin().await.unwrap();
    let ce_id = Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-e2e", &event)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let consumers = ["mapping", "dedupe", "export", "filtering"];
    let mut pools = Vec::new();
    for schema in consumers {
        pools.push((schema, schema_pool(&db, schema).await));
    }
    wait_until("every consumer mirrors the connection", || async {
        for (_, pool) in &pools {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM connection_mirror WHERE org_id = 'org-e2e' AND portal_id = 777")
                .fetch_one(pool)
                .await
                .unwrap();
            if n != 1 {
                return false;
            }
        }
        true
    })
    .await;

    // Kafka delivers the same event again (e.g. a relay crash before marking it sent).
    let kafka = KafkaConfig {
        bootstrap: broker.bootstrap.clone(),
        ..KafkaConfig::default()
    };
    let producer = EventProducer::new(&kafka, "connection").unwrap();
    let payload = prost::Message::encode_to_vec(&event);
    let ce = ce_id.to_string();
    producer
        .send(&OutgoingEvent {
            topic: topics::CONNECTION_EVENTS.name,
            key: "org-e2e",
            ce_id: &ce,
            ce_type: topics::CONNECTION_EVENTS.message,
            payload: &payload,
            traceparent: None,
            tracestate: None,
            time: None,
            extra_headers: &[],
        })
        .await
        .unwrap();
    // A later event for another org marks the point where the duplicate has been consumed.
    let marker = ConnectionEvent {
        org_id: "org-marker".into(),
        ..event.clone()
    };
    let mut tx = connection_db.begin().await.unwrap();
    Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, "org-e2e", &marker)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_until("every consumer saw the marker", || async {
        for (_, pool) in &pools {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM connection_mirror WHERE org_id = 'org-marker'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if n != 1 {
                return false;
            }
        }
        true
    })
    .await;
    for (schema, pool) in &pools {
        let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE ce_id = $1")
            .bind(&ce)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(processed, 1, "{schema} must record the event exactly once");
    }
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
        .fetch_one(&connection_db)
        .await
        .unwrap();
    assert_eq!(sent, 2, "both outbox rows published and marked sent");

    stop_stack(services, Duration::from_secs(20), None, broker);
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out: {what}");
}
