//! Data sharing: completed runs record CRM-data contributions in the real connection service
//! (gRPC on port 0, same database, own schema) only while the org's toggle is on. Real Postgres,
//! Kafka (librdkafka mock cluster), the sandbox as HubSpot (private-app token).

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value, json};
use spoke_connection_client::{ConnectionEndpoint, HubSpotSettings};
use spoke_filtering::{Application, Config, FilteringSettings, StaticPortal};
use spoke_platform::auth::Role;
use spoke_platform::testing::{
    MockKafka, dev_token, fresh_database, http_get, test_config, wait_serving,
};
use spoke_proto::common::v1::{FilteringRunState, ObjectType};
use spoke_proto::connection::v1 as cpb;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::filtering::v1 as pb;
use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;
use spoke_sandbox::{Sandbox, SandboxConfig, Seed};
use tonic::transport::Channel;

const PORTAL: u64 = 778;
const ORG: &str = "org-sharing";
const TOKEN: &str = "pat-na1-sharing-test";

fn authed<T>(msg: T, roles: &[Role]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", dev_token("admin-1", ORG, roles))
            .parse()
            .expect("header"),
    );
    req
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    authed(msg, &[Role::Admin])
}

fn rec(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect()
}

async fn run_once(client: &mut FilteringServiceClient<Channel>, key: &str) -> pb::FilteringRun {
    let run = client
        .run_now(admin(pb::RunNowRequest {
            idempotency_key: key.into(),
            objects: vec![],
        }))
        .await
        .expect("run now")
        .into_inner()
        .run
        .expect("run");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .get_run(admin(pb::GetRunRequest {
                run_id: run.run_id.clone(),
            }))
            .await
            .expect("get run")
            .into_inner()
            .run
            .expect("run");
        if r.state == FilteringRunState::Completed as i32 {
            return r;
        }
        assert!(
            !matches!(
                FilteringRunState::try_from(r.state),
                Ok(FilteringRunState::Failed | FilteringRunState::Cancelled)
            ),
            "{r:?}"
        );
        assert!(Instant::now() < deadline, "run not completed: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn contributions(c: &mut ConnectionServiceClient<Channel>) -> Vec<cpb::Contribution> {
    c.list_contributions(admin(cpb::ListContributionsRequest::default()))
        .await
        .expect("list contributions")
        .into_inner()
        .contributions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_records_contributions_while_sharing_is_on_and_none_when_off() {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let db = fresh_database().await.expect("fresh database");
    let sandbox = Sandbox::start(SandboxConfig {
        seed: serde_json::from_value::<Seed>(json!({"portals": [{
            "portalId": PORTAL,
            "privateAppTokens": [TOKEN],
            "owners": [{"id": "501", "email": "ada@example.com", "firstName": "Ada", "lastName": "L", "userId": 9001}],
            "users": [{"id": "9001", "email": "ada@example.com", "superAdmin": true, "ownerId": "501"}]
        }]}))
        .expect("seed"),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let control = sandbox.control();
    control
        .insert_records(
            PORTAL,
            "companies",
            vec![
                rec(&[("domain", "acme.com"), ("name", "Acme")]),
                rec(&[("domain", "initech.com"), ("name", "Initech")]),
            ],
        )
        .expect("companies");
    control
        .insert_records(
            PORTAL,
            "contacts",
            vec![
                rec(&[("email", "jo@acme.com")]),
                rec(&[("email", "sam@acme.com")]),
                rec(&[("email", "al@initech.com")]),
            ],
        )
        .expect("contacts");

    // The real connection service: owns the toggles and the contributions.
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let connection = spoke_connection::Application::build(spoke_connection::Config {
        common: test_config(&db, kafka.bootstrap()),
        hubspot: spoke_connection::HubSpotAppConfig {
            urls: HubSpotSettings {
                api_base_url: sandbox.base_url(),
                app_base_url: sandbox.base_url(),
            },
            ..Default::default()
        },
        tokens: spoke_connection::TokensConfig {
            encryption_key: Some(key.into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("connection starts");
    let (conn_grpc, conn_stop) = (connection.grpc_addr(), connection.shutdown_token());
    let conn_running = tokio::spawn(connection.run_until_stopped());
    wait_serving(conn_grpc, "spoke.connection.v1.ConnectionService")
        .await
        .expect("connection serving");
    let mut conn = ConnectionServiceClient::connect(format!("http://{conn_grpc}"))
        .await
        .expect("connect");

    let app = Application::build(Config {
        common: test_config(&db, kafka.bootstrap()),
        hubspot: HubSpotSettings {
            api_base_url: sandbox.base_url(),
            app_base_url: sandbox.base_url(),
        },
        connection: ConnectionEndpoint::for_addr(conn_grpc),
        filtering: FilteringSettings {
            static_portals: vec![StaticPortal {
                org: ORG.into(),
                portal_id: PORTAL,
                token: TOKEN.into(),
            }],
            record_contributions: Some(true),
            poll_interval_ms: 100,
            lease_secs: 2.0,
            budget: "off".into(),
            ..FilteringSettings::default()
        },
        ..Config::default()
    })
    .await
    .expect("filtering starts");
    let (grpc, admin_addr, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.filtering.v1.FilteringService")
        .await
        .expect("filtering serving");
    let mut client = FilteringServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    client
        .set_filtering_enabled(admin(pb::SetFilteringEnabledRequest {
            objects: vec![],
            enabled: true,
        }))
        .await
        .expect("enable");

    // Sharing on: one contribution per object the run read, with the run's counts.
    conn.set_data_sharing_settings(admin(cpb::SetDataSharingSettingsRequest {
        share_crm_data: Some(true),
        share_usage_data: None,
    }))
    .await
    .expect("sharing on");
    let run = run_once(&mut client, "run-on").await;
    let scanned: Vec<(i32, i64)> = run
        .stats
        .iter()
        .filter(|s| s.records_scanned > 0)
        .map(|s| (s.object, s.records_scanned))
        .collect();
    assert!(
        scanned.contains(&(ObjectType::Companies as i32, 2))
            && scanned.contains(&(ObjectType::Contacts as i32, 3)),
        "{run:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let got = contributions(&mut conn).await;
        if got.len() >= scanned.len() {
            break got;
        }
        assert!(Instant::now() < deadline, "contributions: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut got: Vec<(i32, i64)> = recorded
        .iter()
        .map(|c| (c.object, c.record_count))
        .collect();
    got.sort();
    let mut want = scanned.clone();
    want.sort();
    assert_eq!(got, want, "{recorded:?}");
    assert!(
        recorded.iter().all(|c| c.source == "filtering_run"
            && c.source_id == run.run_id
            && c.category == cpb::ContributionCategory::CrmData as i32),
        "{recorded:?}"
    );

    // Sharing off: the next run is reported, and the connection service records nothing.
    conn.set_data_sharing_settings(admin(cpb::SetDataSharingSettingsRequest {
        share_crm_data: Some(false),
        share_usage_data: None,
    }))
    .await
    .expect("sharing off");
    run_once(&mut client, "run-off").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let want_off = format!(
        "spoke_filtering_contributions_total{{outcome=\"sharing_off\"}} {}",
        scanned.len()
    );
    loop {
        let (_, metrics) = http_get(admin_addr, "/metrics").await.expect("metrics");
        if metrics.contains(&want_off) {
            assert!(
                metrics.contains(&format!(
                    "spoke_filtering_contributions_total{{outcome=\"recorded\"}} {}",
                    scanned.len()
                )),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(contributions(&mut conn).await.len(), recorded.len());

    stop.cancel();
    running.await.expect("join").expect("clean shutdown");
    conn_stop.cancel();
    conn_running
        .await
        .expect("join")
        .expect("clean connection shutdown");
    sandbox.shutdown().await;
}
