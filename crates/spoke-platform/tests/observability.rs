//! The metrics every service gets from the platform, observed through the Prometheus recorder:
//! consumer lag follows a real backlog up and back to zero, and gRPC calls are counted per method
//! with their final status code. Real Postgres, librdkafka's mock cluster, a real gRPC server.

use std::sync::Arc;
use std::time::Duration;

use spoke_platform::kafka::{
    ConsumerSpec, EventHandler, EventProducer, HandlerError, InboundEvent, OutgoingEvent, consumer,
    topics,
};
use spoke_platform::testing::{MockKafka, fresh_database, test_config};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

static NO_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;

/// Sum of the rendered series of `name` whose label text contains every one of `labels`
/// (`key="value"` pairs).
fn metric(name: &str, labels: &[&str]) -> f64 {
    let text = spoke_platform::admin::prometheus()
        .expect("recorder")
        .render();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines: Vec<String> = spoke_platform::admin::prometheus()
        .expect("recorder")
        .render()
        .lines()
        .filter(|l| l.starts_with("spoke_kafka") || l.starts_with("spoke_grpc"))
        .map(str::to_string)
        .collect();
    panic!(
        "timed out after {secs}s waiting for {what}; metrics:\n{}",
        lines.join("\n")
    );
}

/// Handles a message only when a permit is available: the test holds the consumer still.
struct Gate(Arc<Semaphore>);

#[async_trait::async_trait]
impl EventHandler for Gate {
    async fn handle(
        &self,
        _tx: &mut sqlx::PgConnection,
        _ev: &InboundEvent,
    ) -> Result<(), HandlerError> {
        self.0
            .acquire()
            .await
            .map_err(|e| HandlerError::Retriable(e.to_string()))?
            .forget();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_follows_the_backlog_up_and_back_to_zero() {
    spoke_platform::admin::prometheus().expect("recorder");
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let url = fresh_database().await.expect("fresh database");
    let cfg = test_config(&url, kafka.bootstrap());
    let pool = spoke_platform::db::connect_and_migrate(&cfg.database, "svc_lag", &NO_MIGRATIONS)
        .await
        .expect("schema");
    let producer = EventProducer::new(&cfg.kafka, "svc_lag").unwrap();
    let cancel = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(0));
    let task = tokio::spawn(consumer::run(
        cfg.kafka.clone(),
        "svc_lag",
        pool,
        producer.clone(),
        ConsumerSpec {
            name: "gated".into(),
            topics: vec![topics::PROFILES],
            handler: Arc::new(Gate(gate.clone())),
        },
        cancel.clone(),
    ));
    let consumer_label = r#"consumer="svc_lag.gated""#;
    let topic_label = r#"topic="spoke.profiles.v1""#;
    // The counters exist before anything is consumed.
    wait_for("zero-valued dead-letter counter", 10, || {
        spoke_platform::admin::prometheus()
            .unwrap()
            .render()
            .contains(r#"spoke_kafka_dead_letters_total{consumer="svc_lag.gated",topic="spoke.profiles.v1"} 0"#)
    })
    .await;

    const N: usize = 30;
    for i in 0..N {
        let ce_id = format!("lag-{i}");
        producer
            .send(&OutgoingEvent {
                topic: topics::PROFILES.name,
                key: "one-key",
                ce_id: &ce_id,
                ce_type: topics::PROFILES.message,
                payload: b"",
                traceparent: None,
                tracestate: None,
                time: None,
                extra_headers: &[],
            })
            .await
            .unwrap();
    }
    // Nothing is handled (the first message waits at the gate): the whole backlog is lag.
    wait_for("lag of the backlog", 40, || {
        metric(
            "spoke_kafka_consumer_lag_messages",
            &[consumer_label, topic_label],
        ) >= (N - 1) as f64
    })
    .await;

    gate.add_permits(N);
    wait_for("every message handled", 30, || {
        metric(
            "spoke_kafka_consumed_total",
            &[consumer_label, r#"outcome="processed""#],
        ) == N as f64
    })
    .await;
    // Offsets are committed every second and statistics come every 5 s.
    wait_for("lag back to zero", 40, || {
        metric(
            "spoke_kafka_consumer_lag_messages",
            &[consumer_label, topic_label],
        ) == 0.0
    })
    .await;

    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn grpc_calls_are_counted_per_method_with_their_final_code() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    spoke_platform::admin::prometheus().expect("recorder");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = spoke_platform::config::GrpcConfig::default();
    let cancel = CancellationToken::new();
    let health = spoke_platform::grpc::health(&["spoke.test.v1.Known"]);
    let server = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            spoke_platform::grpc::serve(
                listener,
                &cfg,
                &["spoke.test.v1.Known"],
                tonic::service::Routes::default(),
                health,
                cancel,
            )
            .await
        }
    });
    spoke_platform::testing::wait_serving(addr, "spoke.test.v1.Known")
        .await
        .unwrap();

    let check = [r#"service="grpc.health.v1.Health""#, r#"method="Check""#];
    let count = |code: &str| {
        let code = format!(r#"code="{code}""#);
        metric(
            "spoke_grpc_requests_total",
            &[check[0], check[1], code.as_str()],
        )
    };
    let (ok_before, missing_before) = (count("Ok"), count("NotFound"));
    let latency_before = metric("spoke_grpc_request_duration_seconds_count", &check);

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for _ in 0..3 {
        client
            .check(HealthCheckRequest {
                service: "spoke.test.v1.Known".into(),
            })
            .await
            .unwrap();
    }
    let err = client
        .check(HealthCheckRequest {
            service: "spoke.test.v1.Unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // wait_serving's own checks ran concurrently with nothing else; only this test's calls moved.
    assert_eq!(count("Ok") - ok_before, 3.0);
    assert_eq!(count("NotFound") - missing_before, 1.0);
    assert_eq!(
        metric("spoke_grpc_request_duration_seconds_count", &check) - latency_before,
        4.0
    );

    cancel.cancel();
    server.await.unwrap().unwrap();
}
