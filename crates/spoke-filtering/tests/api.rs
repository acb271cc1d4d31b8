//! The filtering service through its public surface: gRPC on port 0, admin HTTP, real Postgres
//! (fresh database) and Kafka (librdkafka mock cluster over TCP).

use spoke_filtering::{Application, Config};
use spoke_platform::auth::Role;
use spoke_platform::testing::{
    MockKafka, dev_token, fresh_database, http_get, test_config, wait_serving,
};
use spoke_proto::filtering::v1::GetStatsRequest;
use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;

#[tokio::test]
async fn serves_health_readiness_metrics_and_authenticates_calls() {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let db = fresh_database().await.expect("fresh database");
    let app = Application::build(Config {
        common: test_config(&db, kafka.bootstrap()),
        ..Config::default()
    })
    .await
    .expect("service starts");
    let (grpc, admin, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());

    wait_serving(grpc, "spoke.filtering.v1.FilteringService")
        .await
        .expect("gRPC health SERVING");
    let (status, _) = http_get(admin, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = http_get(admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("postgres: ok") && body.contains("kafka: ok"),
        "{body}"
    );
    let (status, _) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);

    let mut client = FilteringServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let err = client
        .get_stats(GetStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "no token: {err:?}"
    );

    let mut req = tonic::Request::new(GetStatsRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", dev_token("u1", "org-1", &[Role::Admin]))
            .parse()
            .unwrap(),
    );
    let stats = client.get_stats(req).await.expect("stats").into_inner();
    assert_eq!(stats.objects.len(), 3, "one entry per object: {stats:?}");
    assert!(
        stats
            .objects
            .iter()
            .all(|o| !o.enabled && o.profiles_linked == 0)
    );

    stop.cancel();
    running.await.unwrap().expect("clean shutdown");
}
