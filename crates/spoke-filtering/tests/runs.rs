//! Filtering runs end to end through gRPC: real Postgres (fresh database), Kafka (librdkafka mock
//! cluster), the sandbox as HubSpot (private-app token), profiles loaded with LoadProfiles.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use spoke_connection_client::HubSpotSettings;
use spoke_filtering::{Application, Config, FilteringSettings, StaticPortal};
use spoke_platform::auth::Role;
use spoke_platform::testing::{MockKafka, dev_token, fresh_database, test_config, wait_serving};
use spoke_proto::common::v1::{FilteringRunState, ObjectType, Profile};
use spoke_proto::events::v1::FilteringMatchEvent;
use spoke_proto::filtering::v1 as pb;
use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;
use spoke_sandbox::{FaultKind, FaultRule, Sandbox, SandboxConfig, Seed};
use tonic::transport::Channel;

const PORTAL: u64 = 777;
const ORG: &str = "org-filter";
const TOKEN: &str = "pat-na1-filtering-test";

fn seed() -> Seed {
    serde_json::from_value(json!({"portals": [{
        "portalId": PORTAL,
        "uiDomain": "app.hubspot.com",
        "privateAppTokens": [TOKEN],
        "owners": [
            {"id": "501", "email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "userId": 9001},
            {"id": "502", "email": "bob@example.com", "firstName": "Bob", "lastName": "Builder", "userId": 9002}
        ],
        "users": [{"id": "9001", "email": "ada@example.com", "superAdmin": true, "ownerId": "501"}]
    }]}))
    .expect("seed")
}

fn rec(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect()
}

struct Env {
    _kafka: MockKafka,
    db: String,
    sandbox: Sandbox,
}

impl Env {
    async fn start() -> Env {
        let kafka = MockKafka::start(1, 3).expect("mock kafka");
        let db = fresh_database().await.expect("fresh database");
        let sandbox = Sandbox::start(SandboxConfig {
            seed: seed(),
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox");
        Env {
            _kafka: kafka,
            db,
            sandbox,
        }
    }

    fn config(&self, f: impl FnOnce(&mut FilteringSettings)) -> Config {
        let mut filtering = FilteringSettings {
            static_portals: vec![StaticPortal {
                org: ORG.into(),
                portal_id: PORTAL,
                token: TOKEN.into(),
            }],
            poll_interval_ms: 100,
            lease_secs: 2.0,
            budget: "off".into(),
            ..FilteringSettings::default()
        };
        f(&mut filtering);
        Config {
            common: test_config(&self.db, self._kafka.bootstrap()),
            hubspot: HubSpotSettings {
                api_base_url: self.sandbox.base_url(),
                app_base_url: self.sandbox.base_url(),
            },
            filtering,
            ..Config::default()
        }
    }

    fn insert(&self, object: &str, records: Vec<Map<String, Value>>) -> Vec<String> {
        self.sandbox
            .control()
            .insert_records(PORTAL, object, records)
            .expect("insert records")
    }
}

struct Svc {
    client: FilteringServiceClient<Channel>,
    stop: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<spoke_filtering::Result<()>>,
}

async fn start(config: Config) -> Svc {
    let app = Application::build(config).await.expect("service starts");
    let (grpc, stop) = (app.grpc_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.filtering.v1.FilteringService")
        .await
        .expect("serving");
    let client = FilteringServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    Svc {
        client,
        stop,
        running,
    }
}

fn authed<T>(msg: T, roles: &[Role]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let token = dev_token("admin-1", ORG, roles);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    req
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    authed(msg, &[Role::Admin])
}

fn profile(kind: ObjectType, id: &str, fields: &[(&str, &str)]) -> Profile {
    Profile {
        profile_id: id.into(),
        kind: kind as i32,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..Profile::default()
    }
}

async fn load_profiles(client: &mut FilteringServiceClient<Channel>) -> pb::LoadProfilesResponse {
    let chunk = pb::LoadProfilesRequest {
        profiles: vec![
            profile(
                ObjectType::Companies,
                "P-ACME",
                &[("website", "https://acme.com"), ("name", "Acme Inc")],
            ),
            profile(
                ObjectType::Companies,
                "P-GLOBEX",
                &[("name", "Globex Corporation"), ("country", "US")],
            ),
            profile(
                ObjectType::Companies,
                "P-UMB",
                &[("domain", "umbrella.com")],
            ),
            profile(ObjectType::Contacts, "P-JO", &[("email", "jo@acme.com")]),
            profile(ObjectType::Contacts, "P-SAM", &[("email", "sam@acme.com")]),
            profile(ObjectType::Contacts, "P-BAD", &[("first_name", "No")]),
        ],
        deletes: vec![],
    };
    let stream = futures::stream::iter(vec![chunk]);
    client
        .load_profiles(authed(stream, &[Role::Service]))
        .await
        .expect("load profiles")
        .into_inner()
}

async fn seed_records(env: &Env) -> Vec<String> {
    let companies = env.insert(
        "companies",
        vec![
            rec(&[
                ("domain", "acme.com"),
                ("name", "Acme"),
                ("hubspot_owner_id", "501"),
            ]),
            rec(&[("domain", "www.acme.com"), ("name", "Acme Boston")]),
            rec(&[("name", "Globex Corp."), ("country", "United States")]),
            rec(&[("domain", "initech.com"), ("name", "Initech")]),
            rec(&[
                ("domain", "umbrella.com"),
                ("type", "PARTNER"),
                ("hubspot_owner_id", "502"),
            ]),
        ],
    );
    env.insert(
        "contacts",
        vec![
            rec(&[("email", "jo@acme.com"), ("hubspot_owner_id", "501")]),
            rec(&[("email", "sam@acme.com"), ("hs_email_optout", "true")]),
            rec(&[("email", "nobody@nowhere.org")]),
        ],
    );
    // Deals know their companies only through HubSpot associations (v4), as in a real portal.
    let deals = env.insert(
        "deals",
        vec![
            rec(&[("dealname", "Acme renewal")]),
            rec(&[("dealname", "Acme upsell")]),
            rec(&[("dealname", "Initech pilot")]),
        ],
    );
    let pair = |d: usize, c: usize| (deals[d].clone(), companies[c].clone());
    let control = env.sandbox.control();
    // "Acme renewal": primary company Acme, also (unlabeled) Globex; it links through Acme only.
    control
        .associate_records(PORTAL, "deals", "companies", &[pair(0, 0)], Some(5))
        .expect("primary association");
    control
        .associate_records(
            PORTAL,
            "deals",
            "companies",
            &[pair(0, 2), pair(1, 1), pair(2, 3)],
            None,
        )
        .expect("unlabeled associations");
    companies
}

/// Every `FilteringMatchEvent` the service wrote to its outbox, in order.
async fn match_events(db: &str) -> Vec<FilteringMatchEvent> {
    use prost::Message;
    let pool = sqlx::PgPool::connect(db).await.expect("database");
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM filtering.outbox WHERE topic = $1 ORDER BY id")
            .bind(spoke_platform::kafka::topics::FILTERING_EVENTS.name)
            .fetch_all(&pool)
            .await
            .expect("outbox");
    pool.close().await;
    payloads
        .iter()
        .map(|p| FilteringMatchEvent::decode(p.as_slice()).expect("match event"))
        .collect()
}

async fn configure(client: &mut FilteringServiceClient<Channel>) {
    client
        .set_filtering_enabled(admin(pb::SetFilteringEnabledRequest {
            objects: vec![],
            enabled: true,
        }))
        .await
        .expect("enable");
    client
        .save_filter_settings(admin(pb::SaveFilterSettingsRequest {
            updates: vec![
                pb::ObjectFilterSettingsUpdate {
                    object: ObjectType::Companies as i32,
                    owners: Some(pb::ValueFilter {
                        mode: pb::FilterMode::Exclude as i32,
                        values: vec!["502".into()],
                    }),
                    ..Default::default()
                },
                pb::ObjectFilterSettingsUpdate {
                    object: ObjectType::Contacts as i32,
                    exclude_email_opt_outs: Some(true),
                    ..Default::default()
                },
                pb::ObjectFilterSettingsUpdate {
                    object: ObjectType::Deals as i32,
                    deal_created_window: Some(pb::DealCreatedWindow::SixMonths as i32),
                    ..Default::default()
                },
            ],
            email_alerts: Some(false),
        }))
        .await
        .expect("save settings");
}

async fn wait_finished(
    client: &mut FilteringServiceClient<Channel>,
    run_id: &str,
    within: Duration,
) -> pb::FilteringRun {
    let deadline = Instant::now() + within;
    loop {
        let run = client
            .get_run(admin(pb::GetRunRequest {
                run_id: run_id.into(),
            }))
            .await
            .expect("get run")
            .into_inner()
            .run
            .expect("run");
        let state = FilteringRunState::try_from(run.state).unwrap_or_default();
        if !matches!(
            state,
            FilteringRunState::Queued | FilteringRunState::Running
        ) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {run_id} still {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_now(client: &mut FilteringServiceClient<Channel>, key: &str) -> pb::FilteringRun {
    client
        .run_now(admin(pb::RunNowRequest {
            idempotency_key: key.into(),
            objects: vec![],
        }))
        .await
        .expect("run now")
        .into_inner()
        .run
        .expect("run")
}

async fn matches(
    client: &mut FilteringServiceClient<Channel>,
    object: ObjectType,
) -> Vec<pb::Match> {
    client
        .list_matches(authed(
            pb::ListMatchesRequest {
                object: object as i32,
                page_size: 100,
                ..Default::default()
            },
            &[Role::User],
        ))
        .await
        .expect("list matches")
        .into_inner()
        .matches
}

#[tokio::test]
async fn runs_match_filter_collapse_and_remove_stale_matches() {
    let env = Env::start().await;
    let mut svc = start(env.config(|_| {})).await;
    let c = &mut svc.client;

    let loaded = load_profiles(c).await;
    assert_eq!((loaded.upserted, loaded.rejected), (5, 1), "{loaded:?}");
    assert_eq!(loaded.rejection_samples[0].profile_id, "P-BAD");
    let companies = seed_records(&env).await;
    configure(c).await;

    // Two Run Now at once: one run, the other is told which run is going.
    let first = run_now(c, "k1").await;
    let err = c
        .run_now(admin(pb::RunNowRequest {
            idempotency_key: "k2".into(),
            objects: vec![],
        }))
        .await
        .expect_err("second run");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&first.run_id), "{}", err.message());
    // The same key again is the same run.
    assert_eq!(run_now(c, "k1").await.run_id, first.run_id);

    let run = wait_finished(c, &first.run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state, FilteringRunState::Completed as i32, "{run:?}");

    let m = matches(c, ObjectType::Companies).await;
    let got: Vec<(&str, &str, Vec<&str>)> = m
        .iter()
        .map(|m| {
            (
                m.profile_id.as_str(),
                m.matched_by.as_str(),
                m.collapsed_hubspot_ids.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "P-ACME",
                "domain",
                vec![companies[0].as_str(), companies[1].as_str()]
            ),
            ("P-GLOBEX", "company_country", vec![companies[2].as_str()]),
        ],
        "duplicates collapse; owner 502 excluded"
    );
    assert_eq!(m[0].hubspot_id, companies[0]);
    assert_eq!(m[0].owner_id, "501");
    assert_eq!(m[0].owner_name, "Ada Lovelace");
    assert_eq!(
        m[0].hubspot_url,
        format!(
            "https://app.hubspot.com/contacts/{PORTAL}/record/0-2/{}",
            companies[0]
        )
    );
    let contacts = matches(c, ObjectType::Contacts).await;
    assert_eq!(
        contacts
            .iter()
            .map(|m| m.profile_id.as_str())
            .collect::<Vec<_>>(),
        vec!["P-JO"],
        "opt-out excluded"
    );
    let deals = matches(c, ObjectType::Deals).await;
    assert_eq!(deals.len(), 1, "{deals:?}");
    assert_eq!(
        (
            deals[0].profile_id.as_str(),
            deals[0].collapsed_hubspot_ids.len()
        ),
        ("P-ACME", 2)
    );

    let stats = c
        .get_stats(admin(pb::GetStatsRequest {}))
        .await
        .expect("stats")
        .into_inner();
    let cs = stats
        .objects
        .iter()
        .find(|o| o.object == ObjectType::Companies as i32)
        .expect("companies");
    assert_eq!(cs.status, FilteringRunState::Completed as i32);
    assert_eq!(cs.profiles_linked, 2);
    assert!(
        (cs.match_rate_percent - 75.0).abs() < 0.01,
        "3 of 4 passing matched: {cs:?}"
    );
    assert_eq!(cs.total_deals_matched, 2);
    assert!(cs.last_match_at.is_some());

    // HubSpot changes: Globex is archived, so its match is stale on the next run.
    let hubspot = spoke_hubspot::HubSpotClient::with_budget(
        HubSpotSettings {
            api_base_url: env.sandbox.base_url(),
            app_base_url: env.sandbox.base_url(),
        }
        .client_config(),
        std::sync::Arc::new(spoke_hubspot::NoBudget),
    )
    .expect("client");
    let portal = hubspot.portal(
        PORTAL,
        std::sync::Arc::new(spoke_hubspot::StaticToken::new(TOKEN)),
    );
    portal
        .batch_archive(
            spoke_hubspot::ObjectType::Companies,
            &[companies[2].clone()],
        )
        .await
        .expect("archive");
    let second = run_now(c, "k3").await;
    let run = wait_finished(c, &second.run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state, FilteringRunState::Completed as i32, "{run:?}");
    let cstats = run
        .stats
        .iter()
        .find(|s| s.object == ObjectType::Companies as i32)
        .expect("stats");
    assert_eq!(
        (
            cstats.matches_added,
            cstats.matches_removed,
            cstats.profiles_linked
        ),
        (0, 1, 1),
        "{cstats:?}"
    );
    let m = matches(c, ObjectType::Companies).await;
    assert_eq!(
        m.iter().map(|m| m.profile_id.as_str()).collect::<Vec<_>>(),
        vec!["P-ACME"]
    );

    // Match events (as written to the outbox): the first run added every match, each object's
    // last event is marked; the second only removed Globex.
    let summary = |events: &[FilteringMatchEvent], object: ObjectType| {
        let of: Vec<&FilteringMatchEvent> = events
            .iter()
            .filter(|e| e.object == object as i32)
            .collect();
        let ids = |f: fn(&FilteringMatchEvent) -> &Vec<spoke_proto::events::v1::MatchChange>| {
            let mut v: Vec<String> = of
                .iter()
                .flat_map(|e| f(e).iter().map(|c| c.profile_id.clone()))
                .collect();
            v.sort();
            v
        };
        let lasts = of.iter().filter(|e| e.last_chunk).count();
        let last_is_last = of.last().is_some_and(|e| e.last_chunk);
        (ids(|e| &e.added), ids(|e| &e.removed), lasts, last_is_last)
    };
    let events = match_events(&env.db).await;
    let first_events: Vec<FilteringMatchEvent> = events
        .iter()
        .filter(|e| e.run_id == first.run_id)
        .cloned()
        .collect();
    let second_events: Vec<FilteringMatchEvent> = events
        .iter()
        .filter(|e| e.run_id == second.run_id)
        .cloned()
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    assert_eq!(
        summary(&first_events, ObjectType::Companies),
        (s(&["P-ACME", "P-GLOBEX"]), vec![], 1, true)
    );
    assert_eq!(
        summary(&first_events, ObjectType::Deals),
        (s(&["P-ACME"]), vec![], 1, true)
    );
    assert_eq!(
        summary(&second_events, ObjectType::Companies),
        (vec![], s(&["P-GLOBEX"]), 1, true)
    );
    assert_eq!(
        summary(&second_events, ObjectType::Deals),
        (vec![], vec![], 1, true)
    );

    // Clear contacts (idempotent by key).
    for _ in 0..2 {
        let cleared = c
            .clear_matches(admin(pb::ClearMatchesRequest {
                idempotency_key: "clear-1".into(),
                objects: vec![ObjectType::Contacts as i32],
            }))
            .await
            .expect("clear")
            .into_inner();
        assert_eq!(cleared.cleared, 1);
    }
    assert!(matches(c, ObjectType::Contacts).await.is_empty());
    assert_eq!(
        matches(c, ObjectType::Companies).await.len(),
        1,
        "other objects untouched"
    );

    // Disabled filtering: no next run, Run Now refused.
    c.save_schedule(admin(pb::SaveScheduleRequest {
        frequency: pb::Frequency::Weekly as i32,
        weekday: 5,
        day_of_month: 0,
    }))
    .await
    .expect("schedule");
    let s = c
        .get_schedule(admin(pb::GetScheduleRequest {}))
        .await
        .expect("get")
        .into_inner()
        .schedule
        .expect("s");
    let next = s.next_run_at.expect("next run while enabled");
    let next = chrono::DateTime::from_timestamp(next.seconds, 0).expect("ts");
    assert!(spoke_filtering::schedule::in_window(next), "{next}");
    c.set_filtering_enabled(admin(pb::SetFilteringEnabledRequest {
        objects: vec![],
        enabled: false,
    }))
    .await
    .expect("disable");
    let s = c
        .get_schedule(admin(pb::GetScheduleRequest {}))
        .await
        .expect("get")
        .into_inner()
        .schedule
        .expect("s");
    assert!(s.next_run_at.is_none(), "{s:?}");
    let err = c
        .run_now(admin(pb::RunNowRequest {
            idempotency_key: "k4".into(),
            objects: vec![],
        }))
        .await
        .expect_err("disabled");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    svc.stop.cancel();
    svc.running.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn settings_are_validated_against_the_portal_and_locked_by_advanced_sync() {
    let env = Env::start().await;
    let mut svc = start(env.config(|_| {})).await;
    let c = &mut svc.client;
    let owners = |values: Vec<&str>| pb::SaveFilterSettingsRequest {
        updates: vec![pb::ObjectFilterSettingsUpdate {
            object: ObjectType::Contacts as i32,
            owners: Some(pb::ValueFilter {
                mode: pb::FilterMode::Include as i32,
                values: values.into_iter().map(Into::into).collect(),
            }),
            ..Default::default()
        }],
        email_alerts: None,
    };
    let err = c
        .save_filter_settings(admin(owners(vec!["501", "999"])))
        .await
        .expect_err("unknown owner");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("999"), "{}", err.message());
    let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let err = c
        .save_filter_settings(admin(owners(eleven.iter().map(String::as_str).collect())))
        .await
        .expect_err("11 owners");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    c.save_filter_settings(admin(owners(vec!["501", "502"])))
        .await
        .expect("valid owners");

    // An admin cannot grant the entitlement; a service can, and that turns Advanced Sync on.
    let err = c
        .save_advanced_sync_settings(admin(pb::SaveAdvancedSyncSettingsRequest {
            enabled: None,
            engagement_product: Some(true),
        }))
        .await
        .expect_err("admin");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let s = c
        .save_advanced_sync_settings(authed(
            pb::SaveAdvancedSyncSettingsRequest {
                enabled: None,
                engagement_product: Some(true),
            },
            &[Role::Service],
        ))
        .await
        .expect("entitlement")
        .into_inner()
        .settings
        .expect("settings");
    assert!(s.enabled && s.objects.len() == 7, "{s:?}");

    let err = c
        .save_filter_settings(admin(owners(vec!["501"])))
        .await
        .expect_err("locked");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("Advanced Sync"), "{}", err.message());
    c.save_filter_settings(admin(pb::SaveFilterSettingsRequest {
        updates: vec![pb::ObjectFilterSettingsUpdate {
            object: ObjectType::Contacts as i32,
            contact_list_ids: Some(pb::StringList {
                values: vec!["42".into()],
            }),
            ..Default::default()
        }],
        email_alerts: None,
    }))
    .await
    .expect("contact lists stay editable");
    let got = c
        .get_filter_settings(admin(pb::GetFilterSettingsRequest {}))
        .await
        .expect("get")
        .into_inner();
    assert!(got.locked_by_advanced_sync);
    let contacts = got
        .settings
        .expect("s")
        .objects
        .into_iter()
        .find(|o| o.object == ObjectType::Contacts as i32)
        .expect("c");
    assert_eq!(contacts.contact_list_ids, vec!["42"]);
    assert_eq!(contacts.owners.expect("owners").values, vec!["501", "502"]);

    svc.stop.cancel();
    svc.running.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_run_over_the_limit_stops_and_keeps_previous_matches() {
    let env = Env::start().await;
    let mut svc = start(env.config(|f| f.max_companies_contacts = 4)).await;
    let c = &mut svc.client;
    load_profiles(c).await;
    seed_records(&env).await;
    configure(c).await;
    c.set_filtering_enabled(admin(pb::SetFilteringEnabledRequest {
        objects: vec![ObjectType::Companies as i32],
        enabled: false,
    }))
    .await
    .expect("companies off");
    let run = run_now(c, "r1").await;
    let run = wait_finished(c, &run.run_id, Duration::from_secs(60)).await;
    assert_eq!(
        run.state,
        FilteringRunState::Completed as i32,
        "3 contacts fit: {run:?}"
    );
    assert_eq!(matches(c, ObjectType::Contacts).await.len(), 1);

    env.insert(
        "contacts",
        vec![rec(&[("email", "x1@a.org")]), rec(&[("email", "x2@a.org")])],
    );
    let run = run_now(c, "r2").await;
    let run = wait_finished(c, &run.run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state, FilteringRunState::LimitReached as i32, "{run:?}");
    assert!(
        run.message.contains("5 contacts") && run.message.contains("at most 4"),
        "{}",
        run.message
    );
    assert_eq!(
        matches(c, ObjectType::Contacts).await.len(),
        1,
        "previous matches kept"
    );
    svc.stop.cancel();
    svc.running.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_run_of_a_killed_replica_is_taken_over_and_ends_correct() {
    let env = Env::start().await;
    let mut a = start(env.config(|f| f.batch_size = 1)).await;
    load_profiles(&mut a.client).await;
    let companies = seed_records(&env).await;
    configure(&mut a.client).await;
    // Slow HubSpot pages keep the run going long enough to kill its replica mid-way.
    env.sandbox.control().add_fault(FaultRule {
        route: "/crm/v3/objects/*".into(),
        method: Some("GET".into()),
        portal: None,
        fault: FaultKind::Latency { ms: 700 },
        probability: 1.0,
        count: None,
    });
    let run = run_now(&mut a.client, "kill-1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = a
            .client
            .get_run(admin(pb::GetRunRequest {
                run_id: run.run_id.clone(),
            }))
            .await
            .expect("get")
            .into_inner()
            .run
            .expect("run");
        if r.state == FilteringRunState::Running as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "never started: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // "Kill" replica A: its runner stops at once and never releases the lease.
    a.stop.cancel();
    let _ = a.running.await;
    env.sandbox.control().clear_faults();

    let mut b = start(env.config(|_| {})).await;
    let done = wait_finished(&mut b.client, &run.run_id, Duration::from_secs(60)).await;
    assert_eq!(done.state, FilteringRunState::Completed as i32, "{done:?}");
    let m = matches(&mut b.client, ObjectType::Companies).await;
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        m[0].collapsed_hubspot_ids,
        vec![companies[0].clone(), companies[1].clone()]
    );
    let pool = sqlx::PgPool::connect(&env.db).await.expect("pool");
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM filtering.runs WHERE run_id = $1::uuid")
            .bind(&run.run_id)
            .fetch_one(&pool)
            .await
            .expect("attempts");
    assert_eq!(attempts, 2, "replica B took the run over");
    b.stop.cancel();
    b.running.await.expect("join").expect("clean stop");
}

/// `load_file` (what `spokectl profiles load` runs) skips lines it cannot read — bad JSON,
/// invalid UTF-8, a wrong kind — names each, and loads every other line of the file.
#[tokio::test]
async fn a_profile_file_with_bad_lines_loads_the_rest_and_names_the_bad() {
    let env = Env::start().await;
    let mut svc = start(env.config(|_| {})).await;
    let path =
        std::env::temp_dir().join(format!("profiles-bad-lines-{}.ndjson", std::process::id()));
    let mut text = Vec::new();
    text.extend_from_slice(
        b"{\"profile_id\":\"P-1\",\"kind\":\"company\",\"fields\":{\"domain\":\"one.example\"}}\n",
    );
    text.extend_from_slice(b"{not json\n");
    text.extend_from_slice(
        b"{\"profile_id\":\"P-2\",\"kind\":\"contact\",\"fields\":{\"email\":\"\xff\xfe@x\"}}\n",
    );
    text.extend_from_slice(b"{\"profile_id\":\"P-3\",\"kind\":\"planet\",\"fields\":{}}\n");
    text.extend_from_slice(
        b"{\"profile_id\":\"P-4\",\"kind\":\"contact\",\"fields\":{\"email\":\"four@x.example\"}}\n",
    );
    std::fs::write(&path, text).expect("write file");
    let token = dev_token("loader", ORG, &[Role::Service]);
    let answer = spoke_filtering::profiles::load_file(&mut svc.client, &token, &path, |_| {})
        .await
        .expect("the file loads despite its bad lines");
    std::fs::remove_file(&path).expect("remove file");
    assert_eq!(answer.upserted, 2, "P-1 and P-4: {answer:?}");
    assert_eq!(answer.rejected, 3, "{answer:?}");
    let reasons: Vec<&str> = answer
        .rejection_samples
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    for line in ["line 2", "line 3", "line 4"] {
        assert!(
            reasons.iter().any(|r| r.contains(line)),
            "{line} is named: {reasons:?}"
        );
    }
    svc.stop.cancel();
    svc.running.await.expect("join").expect("clean stop");
}
