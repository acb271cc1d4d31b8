//! The dedupe service through its public surface: gRPC on port 0, Kafka (librdkafka mock cluster
//! over TCP) for `spoke.export.requests.v1` → `spoke.export.checked.v1` and results, real Postgres
//! (fresh database) and the HubSpot sandbox (with search lag where it matters).
//!
//! The tests play the export service: they publish request batches, read the checked batches,
//! write to the sandbox like the writer would and publish the results.
//!
//! HubSpot access uses a private-app token of the sandbox portal instead of the connection
//! service, and the duplicate settings come from a fixed source instead of the mapping service
//! (both are `Overrides`); everything else is the production path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use spoke_dedupe::decision::Policy;
use spoke_dedupe::keys::Object;
use spoke_dedupe::lookup::PortalAccess;
use spoke_dedupe::settings::SettingsSource;
use spoke_dedupe::{Application, Config, Overrides};
use spoke_hubspot::{
    ClientConfig, CreateInput, HubSpotClient, NoBudget, PortalClient, SearchRequest, StaticToken,
};
use spoke_platform::auth::Role;
use spoke_platform::kafka::{EventProducer, OutgoingEvent, topics};
use spoke_platform::testing::{
    MockKafka, dev_token, fresh_database, http_get, test_config, wait_serving,
};
use spoke_proto::common::v1::{
    CandidateSource, CheckDecision, DuplicateAction, ExportRecord, ObjectType, Profile,
    RecordCheck, RecordOutcome,
};
use spoke_proto::dedupe::v1::CheckDuplicatesRequest;
use spoke_proto::dedupe::v1::dedupe_service_client::DedupeServiceClient;
use spoke_proto::events::v1::{
    ConnectionEvent, ExportBatchHeader, ExportCheckedBatch, ExportRecordResult, ExportRequestBatch,
    ExportRequestRecord, ExportResultBatch, connection_event,
};
use spoke_sandbox::{PortalSeed, Sandbox, SandboxConfig};

const PORTAL: u64 = 4242;
const ORG: &str = "org-dedupe";
const TOKEN: &str = "pat-na1-dedupe-test";

/// HubSpot access with the sandbox portal's private-app token.
struct SandboxPortals(PortalClient);

#[async_trait::async_trait]
impl PortalAccess for SandboxPortals {
    async fn portal(&self, _org: &str) -> spoke_dedupe::Result<PortalClient> {
        Ok(self.0.clone())
    }
}

/// Duplicate settings the test changes between jobs (stands in for the mapping service).
#[derive(Default)]
struct FixedSettings(Mutex<Policy>);

#[async_trait::async_trait]
impl SettingsSource for FixedSettings {
    async fn policy(
        &self,
        _org: &str,
        _object: Object,
        _version: Option<i64>,
    ) -> spoke_dedupe::Result<Policy> {
        Ok(self.0.lock().clone())
    }
}

/// Fields drop in order: the consumer and the service's clients go before the broker, so a
/// failing test does not hang in librdkafka's close against a vanished cluster.
struct Env {
    db: String,
    sandbox: Sandbox,
    hubspot: PortalClient,
    settings: Arc<FixedSettings>,
    producer: EventProducer,
    checked: StreamConsumer,
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<spoke_dedupe::Result<()>>,
    _kafka: MockKafka,
}

async fn start(search_lag: Duration) -> Env {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let db = fresh_database().await.expect("fresh database");
    let sandbox = Sandbox::start(SandboxConfig {
        search_lag,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let mut seed = PortalSeed::new(PORTAL);
    seed.private_app_tokens = vec![TOKEN.into()];
    sandbox.control().seed_portal(&seed).expect("seed portal");
    let client = HubSpotClient::with_budget(
        ClientConfig {
            api_base_url: sandbox.base_url(),
            app_base_url: sandbox.base_url(),
            ..ClientConfig::default()
        },
        Arc::new(NoBudget),
    )
    .expect("hubspot client");
    let hubspot = client.portal(PORTAL, Arc::new(StaticToken::new(TOKEN)));
    let settings = Arc::new(FixedSettings::default());
    let mut config = Config {
        common: test_config(&db, kafka.bootstrap()),
        ..Config::default()
    };
    config.dedupe.in_flight_wait_secs = 10;
    let kafka_config = config.common.kafka.clone();
    let app = Application::build_with(
        config,
        Overrides {
            portals: Some(Arc::new(SandboxPortals(hubspot.clone()))),
            settings: Some(settings.clone()),
        },
    )
    .await
    .expect("service starts");
    let (grpc, admin, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.dedupe.v1.DedupeService")
        .await
        .expect("gRPC health SERVING");

    let producer = EventProducer::new(&kafka_config, "export").expect("producer");
    let checked: StreamConsumer = kafka_config
        .client_config()
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    checked
        .subscribe(&[topics::EXPORT_CHECKED.name])
        .expect("subscribe");
    let env = Env {
        db,
        sandbox,
        hubspot,
        settings,
        producer,
        checked,
        grpc,
        admin,
        stop,
        running,
        _kafka: kafka,
    };
    env.publish(
        topics::CONNECTION_EVENTS,
        ORG,
        &ConnectionEvent {
            org_id: ORG.into(),
            portal_id: PORTAL as i64,
            occurred_at: Some(now()),
            kind: Some(connection_event::Kind::Connected(
                connection_event::Connected {
                    ui_domain: "app.hubspot.com".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        },
    )
    .await;
    // Previews need the connection mirror; wait until the event is consumed.
    for _ in 0..200 {
        if env
            .sql_count("SELECT count(*) FROM dedupe.connection_mirror WHERE status = 'connected'")
            .await
            == 1
        {
            return env;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Connected event was not mirrored within 20 s");
}

fn now() -> prost_types::Timestamp {
    let t = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn profile(id: &str, object: ObjectType, fields: &[(&str, &str)]) -> ExportRecord {
    ExportRecord {
        record_id: id.into(),
        profile: Some(Profile {
            profile_id: format!("p-{id}"),
            kind: object as i32,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }),
    }
}

fn header(job: &str, object: ObjectType, batch_index: i32) -> ExportBatchHeader {
    ExportBatchHeader {
        org_id: ORG.into(),
        portal_id: PORTAL as i64,
        job_id: job.into(),
        batch_index,
        batch_count: batch_index + 1,
        object: object as i32,
        config_version: 1,
        user_id: "u1".into(),
        user_account: false,
        produced_at: Some(now()),
    }
}

impl Env {
    async fn publish<M: prost::Message>(&self, topic: topics::Topic, key: &str, msg: &M) {
        self.publish_with_id(topic, key, msg, &uuid::Uuid::new_v4().to_string())
            .await;
    }

    async fn publish_with_id<M: prost::Message>(
        &self,
        topic: topics::Topic,
        key: &str,
        msg: &M,
        ce_id: &str,
    ) {
        let payload = msg.encode_to_vec();
        self.producer
            .send(&OutgoingEvent {
                topic: topic.name,
                key,
                ce_id,
                ce_type: topic.message,
                payload: &payload,
                traceparent: None,
                tracestate: None,
                time: None,
                extra_headers: &[],
            })
            .await
            .expect("publish");
    }

    /// Publishes a request batch of `records` with the users' choices.
    async fn request(
        &self,
        job: &str,
        object: ObjectType,
        records: Vec<(ExportRecord, DuplicateAction)>,
    ) {
        let batch = ExportRequestBatch {
            header: Some(header(job, object, 0)),
            records: records
                .into_iter()
                .map(|(record, choice)| ExportRequestRecord {
                    record: Some(record),
                    duplicate_choice: choice as i32,
                    target_hubspot_id: String::new(),
                })
                .collect(),
            resolution: false,
        };
        self.publish(topics::EXPORT_REQUESTS, &PORTAL.to_string(), &batch)
            .await;
    }

    /// The next checked batch of `job` (others are skipped).
    async fn checked(&self, job: &str) -> Vec<RecordCheck> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.checked.recv())
                .await
                .unwrap_or_else(|_| panic!("no checked batch for {job} within 30 s"))
                .expect("kafka");
            let batch: ExportCheckedBatch =
                prost::Message::decode(msg.payload().unwrap_or_default()).expect("decode");
            if batch.header.as_ref().is_some_and(|h| h.job_id == job) {
                return batch
                    .records
                    .into_iter()
                    .map(|r| r.check.expect("check"))
                    .collect();
            }
        }
    }

    /// Writes created records to the sandbox like the export writer and publishes the results.
    async fn write_creates(
        &self,
        job: &str,
        object: ObjectType,
        checks: &[(RecordCheck, BTreeMap<String, String>)],
    ) -> Vec<String> {
        let inputs: Vec<CreateInput> = checks
            .iter()
            .map(|(_, props)| CreateInput {
                properties: props.clone(),
                associations: Vec::new(),
            })
            .collect();
        let hs_object = match object {
            ObjectType::Companies => spoke_hubspot::ObjectType::Companies,
            _ => spoke_hubspot::ObjectType::Contacts,
        };
        let created = self
            .hubspot
            .batch_create(hs_object, &inputs)
            .await
            .expect("sandbox create");
        let ids: Vec<String> = created.results.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), checks.len());
        let results = ExportResultBatch {
            header: Some(header(job, object, 0)),
            results: checks
                .iter()
                .zip(&ids)
                .map(|((check, _), id)| ExportRecordResult {
                    record_id: check.record_id.clone(),
                    profile_id: format!("p-{}", check.record_id),
                    outcome: RecordOutcome::Created as i32,
                    hubspot_id: id.clone(),
                    match_keys: check.match_keys.clone(),
                    message: String::new(),
                    completed_at: Some(now()),
                })
                .collect(),
        };
        self.publish(topics::EXPORT_RESULTS, &PORTAL.to_string(), &results)
            .await;
        ids
    }

    async fn preview(
        &self,
        object: ObjectType,
        records: Vec<ExportRecord>,
        choice: DuplicateAction,
        roles: &[Role],
    ) -> Result<Vec<RecordCheck>, tonic::Status> {
        let mut client = DedupeServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect");
        let mut req = tonic::Request::new(CheckDuplicatesRequest {
            object: object as i32,
            records,
            duplicate_choice: choice as i32,
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", dev_token("u1", ORG, roles))
                .parse()
                .expect("metadata"),
        );
        client
            .check_duplicates(req)
            .await
            .map(|r| r.into_inner().checks)
    }

    async fn sql_count(&self, query: &str) -> i64 {
        let pool = sqlx::PgPool::connect(&self.db).await.expect("db");
        let n: i64 = sqlx::query_scalar(query)
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        n
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.running)
            .await
            .expect("the service stops within 60 s of the shutdown signal")
            .expect("join")
            .expect("clean shutdown");
        tokio::time::timeout(Duration::from_secs(30), self.sandbox.shutdown())
            .await
            .expect("the sandbox stops within 30 s");
        // librdkafka's close of a consumer can block (a rebalance it never served); the test's
        // own consumer is closed on a plain thread so it can never hang the test.
        let checked = self.checked;
        std::thread::spawn(move || drop(checked));
    }
}

fn decisions(checks: &[RecordCheck]) -> Vec<(String, CheckDecision, String)> {
    checks
        .iter()
        .map(|c| {
            (
                c.record_id.clone(),
                c.decision(),
                c.target_hubspot_id.clone(),
            )
        })
        .collect()
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn search_lag_never_causes_a_duplicate_company() {
    let env = start(Duration::from_secs(4)).await;
    let company = ObjectType::Companies;

    // Job A: a new company.
    let a = profile("a1", company, &[("name", "Acme"), ("domain", "acme.com")]);
    env.request("job-a", company, vec![(a, DuplicateAction::Unspecified)])
        .await;
    let checks_a = env.checked("job-a").await;
    assert_eq!(
        checks_a[0].decision(),
        CheckDecision::Create,
        "{:?}",
        checks_a[0]
    );
    assert_eq!(checks_a[0].match_keys[0].value, "acme.com");

    // Job B asks for the same domain (spelled differently) before job A's result exists: the
    // check waits for the in-flight create instead of trusting HubSpot's lagging search.
    let b = profile(
        "b1",
        company,
        &[("name", "ACME"), ("website", "https://WWW.Acme.com/about")],
    );
    env.request(
        "job-b",
        company,
        vec![(b.clone(), DuplicateAction::Unspecified)],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids = env
        .write_creates(
            "job-a",
            company,
            &[(
                checks_a[0].clone(),
                props(&[("name", "Acme"), ("domain", "acme.com")]),
            )],
        )
        .await;
    let checks_b = env.checked("job-b").await;
    assert_eq!(
        decisions(&checks_b),
        vec![(
            "b1".to_owned(),
            CheckDecision::UpdateExisting,
            ids[0].clone()
        )],
        "{checks_b:?}"
    );
    assert_eq!(checks_b[0].candidates[0].source(), CandidateSource::Index);

    // Job C right after the write: found via the index although search does not show it yet.
    let search = env
        .hubspot
        .search(
            spoke_hubspot::ObjectType::Companies,
            &SearchRequest {
                filter_groups: vec![spoke_hubspot::FilterGroup::of(vec![
                    spoke_hubspot::Filter::eq("domain", "acme.com"),
                ])],
                ..SearchRequest::default()
            },
        )
        .await
        .expect("search");
    assert_eq!(
        search.total, 0,
        "the sandbox's search lag must hide the new record"
    );
    env.request("job-c", company, vec![(b, DuplicateAction::Unspecified)])
        .await;
    let checks_c = env.checked("job-c").await;
    assert_eq!(checks_c[0].decision(), CheckDecision::UpdateExisting);
    assert_eq!(checks_c[0].target_hubspot_id, ids[0]);

    // The preview agrees with the pipeline.
    let preview = env
        .preview(
            company,
            vec![profile(
                "x",
                company,
                &[("domain", "http://acme.com.:443/")],
            )],
            DuplicateAction::Unspecified,
            &[Role::User],
        )
        .await
        .expect("preview");
    assert_eq!(preview[0].decision(), CheckDecision::UpdateExisting);
    assert_eq!(preview[0].target_hubspot_id, ids[0]);

    let dups = env
        .sandbox
        .control()
        .duplicates(PORTAL, "companies")
        .expect("duplicates");
    assert!(dups.is_empty(), "duplicates in the sandbox: {dups:?}");
    assert_eq!(
        env.sql_count("SELECT count(*) FROM dedupe.pending_creates")
            .await,
        0,
        "the result released the reservation"
    );
    env.stop().await;
}

#[tokio::test]
async fn contacts_match_by_email_then_name_and_exact_company_and_within_the_batch() {
    let env = start(Duration::ZERO).await;
    let contact = ObjectType::Contacts;
    let ids = env
        .sandbox
        .control()
        .insert_records(
            PORTAL,
            "contacts",
            vec![
                serde_json::from_value(serde_json::json!({
                    "email": "Jane.Doe@Example.com", "firstname": "Jane", "lastname": "Doe", "company": "Acme"
                }))
                .expect("json"),
                serde_json::from_value(serde_json::json!({
                    "firstname": "Ann", "lastname": "Lee", "company": "Acme Inc"
                }))
                .expect("json"),
            ],
        )
        .expect("insert");
    let (jane, ann) = (ids[0].clone(), ids[1].clone());
    let records = vec![
        // Email, case-insensitively.
        profile("r1", contact, &[("email", " jane.doe@EXAMPLE.com ")]),
        // No email: name + exact company.
        profile(
            "r2",
            contact,
            &[
                ("first_name", "ann"),
                ("last_name", "LEE"),
                ("company", "acme  inc"),
            ],
        ),
        // New email: falls through to name + company.
        profile(
            "r3",
            contact,
            &[
                ("email", "ann@new.example"),
                ("first_name", "Ann"),
                ("last_name", "Lee"),
                ("company", "Acme Inc"),
            ],
        ),
        // Different company name: no match.
        profile(
            "r4",
            contact,
            &[
                ("first_name", "Ann"),
                ("last_name", "Lee"),
                ("company", "Acme"),
            ],
        ),
        // Invalid email with a reason, no other key.
        profile("r5", contact, &[("email", "not-an-email")]),
        // Two new records with the same email in one request.
        profile("r6", contact, &[("email", "dup@new.example")]),
        profile("r7", contact, &[("email", "DUP@new.example")]),
    ];
    let preview = env
        .preview(
            contact,
            records.clone(),
            DuplicateAction::Unspecified,
            &[Role::Admin],
        )
        .await
        .expect("preview");
    env.request(
        "job-c1",
        contact,
        records
            .into_iter()
            .map(|r| (r, DuplicateAction::Unspecified))
            .collect(),
    )
    .await;
    let checks = env.checked("job-c1").await;
    let want = vec![
        ("r1".to_owned(), CheckDecision::UpdateExisting, jane.clone()),
        ("r2".to_owned(), CheckDecision::UpdateExisting, ann.clone()),
        ("r3".to_owned(), CheckDecision::UpdateExisting, ann.clone()),
        ("r4".to_owned(), CheckDecision::Create, String::new()),
        ("r5".to_owned(), CheckDecision::Create, String::new()),
        ("r6".to_owned(), CheckDecision::Create, String::new()),
        (
            "r7".to_owned(),
            CheckDecision::UpdateExisting,
            String::new(),
        ),
    ];
    assert_eq!(decisions(&checks), want, "{checks:#?}");
    assert_eq!(
        decisions(&preview),
        want,
        "preview must decide like the pipeline"
    );
    assert_eq!(checks[0].candidates[0].source(), CandidateSource::Hubspot);
    assert_eq!(
        checks[0].candidates[0]
            .display_properties
            .get("email")
            .map(String::as_str),
        Some("Jane.Doe@Example.com")
    );
    assert!(
        checks[4].invalid_keys[0]
            .reason
            .starts_with("email: has no @"),
        "{:?}",
        checks[4]
    );
    assert_eq!(
        checks[6].candidates[0].source(),
        CandidateSource::SameExport
    );
    assert_eq!(checks[6].candidates[0].same_export_record_id, "r6");
    // Lookups fed the index ("seen"); a redelivered batch (same ce_id) is not checked twice.
    assert_eq!(
        env.sql_count("SELECT count(*) FROM dedupe.match_index WHERE source = 'seen'")
            .await,
        2
    );
    env.stop().await;
}

#[tokio::test]
async fn duplicate_settings_and_user_choices_are_honoured_like_the_preview() {
    let env = start(Duration::ZERO).await;
    let company = ObjectType::Companies;
    let existing = env
        .sandbox
        .control()
        .insert_records(
            PORTAL,
            "companies",
            vec![
                serde_json::from_value(
                    serde_json::json!({"name": "Old", "domain": "exists.example"}),
                )
                .expect("json"),
                serde_json::from_value(
                    serde_json::json!({"name": "Newer", "domain": "www.exists.example"}),
                )
                .expect("json"),
            ],
        )
        .expect("insert");
    let all_options = vec![
        DuplicateAction::UpdateExisting,
        DuplicateAction::Skip,
        DuplicateAction::CreateDuplicate,
    ];
    let cases = [
        (
            "update",
            DuplicateAction::UpdateExisting,
            true,
            DuplicateAction::Unspecified,
            CheckDecision::UpdateExisting,
        ),
        (
            "skip",
            DuplicateAction::Skip,
            true,
            DuplicateAction::Unspecified,
            CheckDecision::Skip,
        ),
        (
            "review",
            DuplicateAction::NeedsReview,
            true,
            DuplicateAction::Unspecified,
            CheckDecision::NeedsReview,
        ),
        (
            "create-dup",
            DuplicateAction::CreateDuplicate,
            true,
            DuplicateAction::Unspecified,
            CheckDecision::CreateDuplicate,
        ),
        (
            "user-skip",
            DuplicateAction::NeedsReview,
            true,
            DuplicateAction::Skip,
            CheckDecision::Skip,
        ),
        (
            "dup-not-allowed",
            DuplicateAction::CreateDuplicate,
            false,
            DuplicateAction::Unspecified,
            CheckDecision::Skip,
        ),
    ];
    for (i, (name, default, allow_dup, choice, want)) in cases.into_iter().enumerate() {
        *env.settings.0.lock() = Policy {
            default_action: default,
            user_options: all_options.clone(),
            allow_duplicate_creation: allow_dup,
            ..Policy::default()
        };
        let record = profile(&format!("s{i}"), company, &[("domain", "EXISTS.example")]);
        let preview = env
            .preview(company, vec![record.clone()], choice, &[Role::User])
            .await
            .expect("preview");
        let job = format!("job-{name}");
        env.request(&job, company, vec![(record, choice)]).await;
        let checks = env.checked(&job).await;
        assert_eq!(checks[0].decision(), want, "{name}: {}", checks[0].reason);
        assert_eq!(
            decisions(&preview),
            decisions(&checks),
            "{name}: preview differs"
        );
        let candidates: Vec<&str> = checks[0]
            .candidates
            .iter()
            .map(|c| c.hubspot_id.as_str())
            .collect();
        assert_eq!(
            candidates,
            vec![existing[0].as_str(), existing[1].as_str()],
            "{name}: oldest first"
        );
        if want == CheckDecision::UpdateExisting {
            assert_eq!(
                checks[0].target_hubspot_id, existing[0],
                "{name}: oldest is updated"
            );
        }
    }
    // A choice the admin does not offer is rejected by the preview.
    *env.settings.0.lock() = Policy::default();
    let err = env
        .preview(
            company,
            vec![profile("z", company, &[("domain", "exists.example")])],
            DuplicateAction::CreateDuplicate,
            &[Role::User],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("duplicate_choice"), "{err:?}");
    env.stop().await;
}

#[tokio::test]
async fn redelivery_is_idempotent_and_delete_purges_the_index() {
    let env = start(Duration::ZERO).await;
    let company = ObjectType::Companies;
    let batch = ExportRequestBatch {
        header: Some(header("job-r", company, 0)),
        records: vec![ExportRequestRecord {
            record: Some(profile("r1", company, &[("domain", "purge.example")])),
            ..Default::default()
        }],
        resolution: false,
    };
    let ce_id = uuid::Uuid::new_v4().to_string();
    env.publish_with_id(topics::EXPORT_REQUESTS, &PORTAL.to_string(), &batch, &ce_id)
        .await;
    env.publish_with_id(topics::EXPORT_REQUESTS, &PORTAL.to_string(), &batch, &ce_id)
        .await;
    let checks = env.checked("job-r").await;
    let ids = env
        .write_creates(
            "job-r",
            company,
            &[(checks[0].clone(), props(&[("domain", "purge.example")]))],
        )
        .await;
    // Wait for the result to reach the index.
    let mut indexed = 0;
    for _ in 0..100 {
        indexed = env
            .sql_count("SELECT count(*) FROM dedupe.match_index WHERE source = 'created'")
            .await;
        if indexed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(indexed, 1, "result of {} indexed", ids[0]);
    assert_eq!(
        env.sql_count("SELECT count(*) FROM dedupe.outbox WHERE topic = 'spoke.export.checked.v1'")
            .await,
        1,
        "the redelivered request was checked once"
    );

    env.publish(
        topics::CONNECTION_EVENTS,
        ORG,
        &ConnectionEvent {
            org_id: ORG.into(),
            portal_id: PORTAL as i64,
            occurred_at: Some(now()),
            kind: Some(connection_event::Kind::Deleted(
                connection_event::Deleted {},
            )),
            ..Default::default()
        },
    )
    .await;
    let mut left = 1;
    for _ in 0..100 {
        left = env
            .sql_count("SELECT count(*) FROM dedupe.match_index")
            .await
            + env
                .sql_count("SELECT count(*) FROM dedupe.record_checks")
                .await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "index and checks purged on DeleteIntegration");
    // Deleted → not connected for previews.
    let err = env
        .preview(
            company,
            vec![profile("z", company, &[("domain", "purge.example")])],
            DuplicateAction::Unspecified,
            &[Role::Admin],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    env.stop().await;
}

/// A batch HubSpot refuses for good (the daily limit) is not dead-lettered, where its export
/// job would wait for it forever: each record comes back FAILED with the reason, and the check
/// leaves no create reservation behind.
#[tokio::test]
async fn a_batch_hubspot_refuses_for_good_fails_its_records_with_the_reason() {
    let env = start(Duration::ZERO).await;
    env.sandbox
        .control()
        .add_fault(spoke_sandbox::FaultRule::always(
            "/crm/v3/objects/contacts/*",
            spoke_sandbox::FaultKind::RateLimit {
                policy_name: "DAILY".into(),
            },
        ));
    let contact = ObjectType::Contacts;
    env.request(
        "job-daily",
        contact,
        vec![
            (
                profile("d1", contact, &[("email", "one@daily.example")]),
                DuplicateAction::Unspecified,
            ),
            (
                profile(
                    "d2",
                    contact,
                    &[
                        ("firstname", "Dana"),
                        ("lastname", "Daily"),
                        ("company", "Daily Inc"),
                    ],
                ),
                DuplicateAction::Unspecified,
            ),
        ],
    )
    .await;
    let checks = env.checked("job-daily").await;
    assert_eq!(checks.len(), 2, "{checks:?}");
    for c in &checks {
        assert_eq!(c.decision, CheckDecision::Failed as i32, "{c:?}");
        assert!(
            c.reason.contains("not checked for duplicates") && c.reason.contains("DAILY"),
            "{c:?}"
        );
    }
    assert_eq!(
        env.sql_count("SELECT count(*) FROM dedupe.pending_creates")
            .await,
        0,
        "no reservation of the failed check is kept"
    );
    env.stop().await;
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_authenticates_calls() {
    let env = start(Duration::ZERO).await;
    let (status, _) = http_get(env.admin, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = http_get(env.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("postgres: ok") && body.contains("kafka: ok"),
        "{body}"
    );

    let mut client = DedupeServiceClient::connect(format!("http://{}", env.grpc))
        .await
        .unwrap();
    let err = client
        .check_duplicates(CheckDuplicatesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "no token: {err:?}"
    );

    let err = env
        .preview(
            ObjectType::Deals,
            vec![],
            DuplicateAction::Unspecified,
            &[Role::Admin],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("object:"), "{err:?}");

    let company = ObjectType::Companies;
    let ok = env
        .preview(
            company,
            vec![profile("1", company, &[("domain", "fresh.example")])],
            DuplicateAction::Unspecified,
            &[Role::Service],
        )
        .await
        .expect("service callers may preview");
    assert_eq!(ok[0].decision(), CheckDecision::Create);
    let (status, body) = http_get(env.admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("spoke_dedupe_decisions_total"), "{body}");
    assert!(body.contains("spoke_dedupe_lookups_total"), "{body}");
    env.stop().await;
}
