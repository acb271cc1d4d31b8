//! Test harness of the export service: real Postgres, the librdkafka mock cluster over TCP, the
//! HubSpot sandbox, the real mapping apply (`spoke-mapping-core`), and the export `Application`
//! built on port 0.
//!
//! The connection, mapping and dedupe services are not available yet, so their parts are stood
//! in for here: `TestCluster` hands out sandbox OAuth tokens (refreshed by the real
//! `OAuthTokenSource`), a compiled mapping built from rows, and owners by the documented rule
//! (the user's owner when emails match, else the primary admin's); `Dedupe` answers request
//! batches with checked batches whose decisions the test chooses.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use spoke_export::ports::{Cluster, ExportRules, Properties, RecordMapper};
use spoke_export::{Application, Config, WriterConfig};
use spoke_hubspot::{
    ClientConfig, HubSpotClient, NoBudget, OAuthCredentials, OAuthTokenSource, PortalClient,
    SecretString, TokenSet,
};
use spoke_mapping_core::{
    CompiledMapping, CompiledRow, DuplicateSettings, ExportPreferences, Object, UpdateMode,
};
use spoke_platform::auth::Role;
use spoke_platform::kafka::{EventProducer, OutgoingEvent};
use spoke_platform::testing::{MockKafka, dev_token, fresh_database, test_config, wait_serving};
use spoke_proto::common::v1::{
    CheckDecision, DuplicateAction, ExportRecord, MatchKey, MatchKeyKind, ObjectType, Profile,
    RecordCheck,
};
use spoke_proto::events::v1::{ExportCheckedBatch, ExportCheckedRecord, ExportRequestBatch};
use spoke_proto::export::v1::export_service_client::ExportServiceClient;
use spoke_proto::export::v1::{ExportJob, GetExportRequest};
use spoke_sandbox::{Sandbox, SandboxConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The sandbox portal every test uses.
pub const PORTAL: u64 = 777_001;
/// The org.
pub const ORG: &str = "org-export";
/// A user whose email matches HubSpot owner 601.
pub const MAPPED_USER: &str = "u-mapped";
/// A user whose email matches no owner (ownership falls back to the primary admin, owner 600).
pub const UNMAPPED_USER: &str = "u-unmapped";

fn seed() -> spoke_sandbox::Seed {
    serde_json::from_value(serde_json::json!({"portals": [{
        "portalId": PORTAL,
        "defaultOauthUser": "admin@portal.example",
        "owners": [
            {"id": "600", "email": "admin@portal.example", "firstName": "Ad", "lastName": "Min", "userId": 9100},
            {"id": "601", "email": "mapped@provider.example", "firstName": "Map", "lastName": "Ped", "userId": 9101}
        ],
        "users": [
            {"id": "9100", "email": "admin@portal.example", "superAdmin": true, "ownerId": "600"},
            {"id": "9101", "email": "mapped@provider.example", "superAdmin": false, "ownerId": "601"}
        ]
    }]}))
    .expect("seed")
}

/// Mapping rows of contacts: (sources, target, mode, allowed values).
pub fn contact_rows() -> Vec<CompiledRow> {
    let row = |src: &[&str], target: &str, mode: UpdateMode| CompiledRow {
        source_fields: src.iter().map(|s| s.to_string()).collect(),
        target_property: target.into(),
        update_mode: mode,
        target_type: "string".into(),
        target_field_type: "text".into(),
        ..CompiledRow::default()
    };
    let mut stage = row(&["stage"], "lifecyclestage", UpdateMode::Overwrite);
    // Options left unknown on purpose: HubSpot itself must reject bad values (400 isolation).
    stage.target_type = "enumeration".into();
    stage.target_field_type = "select".into();
    vec![
        row(&["email"], "email", UpdateMode::CompleteIfMissing),
        row(&["first_name"], "firstname", UpdateMode::CompleteIfMissing),
        row(&["last_name"], "lastname", UpdateMode::CompleteIfMissing),
        row(&["company_name"], "company", UpdateMode::CompleteIfMissing),
        row(
            &["mobile", "direct_phone"],
            "phone",
            UpdateMode::CompleteIfMissing,
        ),
        row(&["job_title"], "jobtitle", UpdateMode::Overwrite),
        stage,
    ]
}

/// Mapping rows of companies.
pub fn company_rows() -> Vec<CompiledRow> {
    let row = |src: &[&str], target: &str, mode: UpdateMode| CompiledRow {
        source_fields: src.iter().map(|s| s.to_string()).collect(),
        target_property: target.into(),
        update_mode: mode,
        target_type: "string".into(),
        target_field_type: "text".into(),
        ..CompiledRow::default()
    };
    vec![
        row(&["name"], "name", UpdateMode::CompleteIfMissing),
        row(&["website"], "domain", UpdateMode::CompleteIfMissing),
        row(&["city"], "city", UpdateMode::Overwrite),
    ]
}

/// A compiled mapping with the given preferences and duplicate settings.
pub fn compiled(
    object: ObjectType,
    prefs: ExportPreferences,
    dups: DuplicateSettings,
) -> CompiledMapping {
    CompiledMapping {
        object: if object == ObjectType::Companies {
            Object::Companies
        } else {
            Object::Contacts
        },
        version: 7,
        rows: if object == ObjectType::Companies {
            company_rows()
        } else {
            contact_rows()
        },
        default_currency: "USD".into(),
        intent_topics: vec![],
        preferences: prefs,
        duplicate_settings: dups,
        portal_id: PORTAL as i64,
    }
}

/// The stand-in for the connection and mapping services.
pub struct TestCluster {
    pub hubspot: HubSpotClient,
    pub tokens: Arc<OAuthTokenSource>,
    pub user_tokens: Mutex<HashMap<String, Arc<OAuthTokenSource>>>,
    pub mappings: Mutex<HashMap<i32, Arc<dyn RecordMapper>>>,
    pub users: HashMap<String, String>,
    pub portal_calls: Mutex<Vec<Option<String>>>,
    pub regenerated: Mutex<Vec<String>>,
    /// When set, the connection answers "reconnect required" (refresh token revoked).
    pub reauth: std::sync::atomic::AtomicBool,
    /// What the connection service answers when the mirror is behind (`None`: never connected).
    pub authority: Mutex<Option<spoke_platform::connection_mirror::MirroredConnection>>,
}

impl TestCluster {
    /// Sets the compiled mapping of an object.
    pub fn set_mapping(&self, object: ObjectType, m: CompiledMapping) {
        self.mappings.lock().insert(
            object as i32,
            Arc::new(spoke_export::cluster::CompiledMapper::new(m)),
        );
    }
}

#[async_trait::async_trait]
impl Cluster for TestCluster {
    async fn mapping(
        &self,
        _org: &str,
        object: ObjectType,
        _version: Option<i64>,
    ) -> spoke_export::Result<Arc<dyn RecordMapper>> {
        self.mappings
            .lock()
            .get(&(object as i32))
            .cloned()
            .ok_or_else(|| spoke_export::Error::FailedPrecondition("no mapping".into()))
    }

    async fn connection(
        &self,
        _org: &str,
    ) -> spoke_export::Result<Option<spoke_platform::connection_mirror::MirroredConnection>> {
        Ok(self.authority.lock().clone())
    }

    async fn portal(
        &self,
        _org: &str,
        user_id: Option<&str>,
    ) -> spoke_export::Result<PortalClient> {
        self.portal_calls.lock().push(user_id.map(str::to_string));
        if self.reauth.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(spoke_export::Error::ReauthRequired(
                "HubSpot rejected the refresh token; an admin must reconnect".into(),
            ));
        }
        let tokens: Arc<dyn spoke_hubspot::TokenSource> = match user_id {
            None => self.tokens.clone(),
            Some(u) => self.user_tokens.lock().get(u).cloned().ok_or_else(|| {
                spoke_export::Error::FailedPrecondition(format!("user not connected: {u}"))
            })?,
        };
        Ok(self.hubspot.portal(PORTAL, tokens))
    }

    async fn resolve_owner(
        &self,
        _org: &str,
        user_id: &str,
        _email: &str,
    ) -> spoke_export::Result<Option<String>> {
        // The connection service's rule over the seeded owners: the user's owner when the emails
        // match (mapped@provider.example → 601), else the primary admin's (600).
        let mapped = self
            .users
            .get(user_id)
            .is_some_and(|e| e.eq_ignore_ascii_case("mapped@provider.example"));
        Ok(Some(if mapped { "601" } else { "600" }.to_string()))
    }

    async fn ensure_user_mapping(&self, _org: &str, user_id: &str) -> spoke_export::Result<()> {
        self.regenerated.lock().push(user_id.to_string());
        Ok(())
    }
}

/// How the stand-in dedupe decides a record: (decision, target id, candidates' ids).
pub type Decide = Arc<dyn Fn(&ExportRecord) -> (CheckDecision, String) + Send + Sync>;

/// Everything a test needs.
pub struct Harness {
    pub sandbox: Sandbox,
    pub kafka: MockKafka,
    pub db: String,
    pub cluster: Arc<TestCluster>,
    pub decide: Arc<Mutex<Decide>>,
    pub app: Option<RunningApp>,
    pub dedupe_stop: CancellationToken,
    pub dedupe_thread: Option<std::thread::JoinHandle<()>>,
    pub writer: WriterConfig,
}

impl Drop for Harness {
    // Consumers must leave their group while the broker is still up, or closing them blocks for
    // the session timeout: stop them before the fields (and the mock broker) are dropped.
    fn drop(&mut self) {
        self.dedupe_stop.cancel();
        if let Some(t) = self.dedupe_thread.take() {
            let _ = t.join();
        }
        if let Some(app) = self.app.take() {
            app.kill();
        }
    }
}

/// An Application running on its own runtime so a test can kill it abruptly.
pub struct RunningApp {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: CancellationToken,
}

impl RunningApp {
    /// Kills the service like SIGKILL: every task stops at its next await, nothing drains.
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Graceful stop.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Harness {
    /// Starts the sandbox, Kafka, a fresh database, the stand-ins and the export service.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// As `start`, adjusting the writer settings first.
    pub async fn start_with(tune: impl FnOnce(&mut WriterConfig)) -> Harness {
        Self::start_full(tune, false).await
    }

    /// As `start_with`; `rate_limited` enforces HubSpot's 110 calls / 10 s in the sandbox and
    /// paces the client with the same budget (what the connection service's budget does).
    pub async fn start_full(tune: impl FnOnce(&mut WriterConfig), rate_limited: bool) -> Harness {
        let sandbox = Sandbox::start(SandboxConfig {
            seed: seed(),
            request_log_capacity: 200_000,
            rate_limits: spoke_sandbox::RateLimits {
                enabled: rate_limited,
                ..Default::default()
            },
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox");
        let budget: Arc<dyn spoke_hubspot::Budget> = if rate_limited {
            Arc::new(spoke_hubspot::LocalBudget::default())
        } else {
            Arc::new(NoBudget)
        };
        let kafka = MockKafka::start(1, 3).expect("mock kafka");
        let db = fresh_database().await.expect("database");
        let hubspot = HubSpotClient::with_budget(
            ClientConfig {
                api_base_url: sandbox.base_url(),
                app_base_url: sandbox.base_url(),
                ..ClientConfig::default()
            },
            budget,
        )
        .expect("hubspot client");
        let tokens = Arc::new(token_source(&sandbox, &hubspot, None));
        let mut users = HashMap::new();
        users.insert(
            MAPPED_USER.to_string(),
            "Mapped@provider.example".to_string(),
        );
        users.insert(
            UNMAPPED_USER.to_string(),
            "nobody@provider.example".to_string(),
        );
        let cluster = Arc::new(TestCluster {
            hubspot,
            tokens,
            user_tokens: Mutex::new(HashMap::new()),
            mappings: Mutex::new(HashMap::new()),
            users,
            portal_calls: Mutex::new(Vec::new()),
            regenerated: Mutex::new(Vec::new()),
            reauth: std::sync::atomic::AtomicBool::new(false),
            authority: Mutex::new(None),
        });
        for o in [ObjectType::Contacts, ObjectType::Companies] {
            cluster.set_mapping(
                o,
                compiled(
                    o,
                    ExportPreferences::default(),
                    DuplicateSettings::default(),
                ),
            );
        }
        let decide: Decide = Arc::new(|_| (CheckDecision::Create, String::new()));
        let mut writer = WriterConfig {
            lease_secs: 3.0,
            recovery_delay_secs: 1.0,
            retry_delay_secs: 0.5,
            ..WriterConfig::default()
        };
        tune(&mut writer);
        let mut h = Harness {
            sandbox,
            kafka,
            db,
            cluster,
            decide: Arc::new(Mutex::new(decide)),
            app: None,
            dedupe_stop: CancellationToken::new(),
            dedupe_thread: None,
            writer,
        };
        let t = std::time::Instant::now();
        h.app = Some(h.start_app().await);
        h.connect(false).await;
        h.spawn_dedupe();
        if std::env::var("SPOKE_TEST_TRACE").is_ok() {
            eprintln!("app started in {:?}", t.elapsed());
        }
        h
    }

    /// Builds and starts an export Application on its own runtime.
    pub async fn start_app(&self) -> RunningApp {
        let config = Config {
            common: test_config(&self.db, self.kafka.bootstrap()),
            writer: self.writer.clone(),
            ..Config::default()
        };
        let cluster: Arc<dyn Cluster> = self.cluster.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let app = Application::build_with(config, cluster)
                .await
                .expect("export starts");
            let _ = tx.send((app.grpc_addr(), app.admin_addr(), app.shutdown_token()));
            if let Err(e) = app.run_until_stopped().await {
                eprintln!("export service stopped with an error: {e}");
            }
        });
        let (grpc, admin, stop) = rx.await.expect("app built");
        wait_serving(grpc, "spoke.export.v1.ExportService")
            .await
            .expect("serving");
        RunningApp {
            grpc,
            admin,
            runtime: Some(runtime),
            stop,
        }
    }

    /// Puts the org's connection into the export service's mirror (what connection events do).
    pub async fn connect(&self, user_account: bool) {
        let pool = sqlx::PgPool::connect(&self.db).await.expect("pool");
        sqlx::query(
            "INSERT INTO export.connection_mirror (org_id, portal_id, status, enabled, user_account, ui_domain, updated_at) \
             VALUES ($1, $2, 'connected', true, $3, 'app.hubspot.com', now()) \
             ON CONFLICT (org_id) DO UPDATE SET user_account = EXCLUDED.user_account, enabled = true, status = 'connected'",
        )
        .bind(ORG)
        .bind(PORTAL as i64)
        .bind(user_account)
        .execute(&pool)
        .await
        .expect("mirror row");
        pool.close().await;
    }

    /// Connects a user's own HubSpot account (user account mode).
    pub fn connect_user(&self, user_id: &str, hubspot_user: &str) {
        let ts = token_source(&self.sandbox, &self.cluster.hubspot, Some(hubspot_user));
        self.cluster
            .user_tokens
            .lock()
            .insert(user_id.to_string(), Arc::new(ts));
    }

    /// Sets the stand-in dedupe's decision rule.
    pub fn set_decide(
        &self,
        f: impl Fn(&ExportRecord) -> (CheckDecision, String) + Send + Sync + 'static,
    ) {
        *self.decide.lock() = Arc::new(f);
    }

    fn spawn_dedupe(&mut self) {
        let bootstrap = self.kafka.bootstrap().to_string();
        let decide = self.decide.clone();
        let stop = self.dedupe_stop.clone();
        let cfg = test_config(&self.db, &bootstrap).kafka;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        self.dedupe_thread = Some(std::thread::spawn(move || {
            rt.block_on(async move {
                let consumer: StreamConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", "test-dedupe")
                    .set("auto.offset.reset", "earliest")
                    .set("enable.auto.commit", "true")
                    .set("topic.metadata.refresh.interval.ms", "500")
                    .create()
                    .expect("consumer");
                consumer
                    .subscribe(&["spoke.export.requests.v1"])
                    .expect("subscribe");
                let producer = EventProducer::new(&cfg, "test-dedupe").expect("producer");
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = consumer.recv() => m,
                    };
                    let Ok(msg) = msg else { continue };
                    let Ok(batch) = ExportRequestBatch::decode(msg.payload().unwrap_or_default())
                    else {
                        continue;
                    };
                    let f = decide.lock().clone();
                    let records = batch
                        .records
                        .iter()
                        .map(|r| {
                            let rec = r.record.clone().unwrap_or_default();
                            let (decision, target) = f(&rec);
                            let email = rec
                                .profile
                                .as_ref()
                                .and_then(|p| p.fields.get("email"))
                                .cloned()
                                .unwrap_or_default();
                            let candidates = if target.is_empty() {
                                vec![]
                            } else {
                                vec![spoke_proto::common::v1::DuplicateCandidate {
                                    hubspot_id: target.clone(),
                                    source: spoke_proto::common::v1::CandidateSource::Hubspot
                                        as i32,
                                    ..Default::default()
                                }]
                            };
                            ExportCheckedRecord {
                                request: Some(r.clone()),
                                check: Some(RecordCheck {
                                    record_id: rec.record_id.clone(),
                                    match_keys: vec![MatchKey {
                                        kind: MatchKeyKind::Email as i32,
                                        value: email.to_lowercase(),
                                    }],
                                    invalid_keys: vec![],
                                    candidates,
                                    decision: decision as i32,
                                    target_hubspot_id: if decision == CheckDecision::UpdateExisting
                                    {
                                        target
                                    } else {
                                        String::new()
                                    },
                                    reason: if decision == CheckDecision::Skip {
                                        "skipped: duplicate (admin default)".into()
                                    } else {
                                        String::new()
                                    },
                                }),
                            }
                        })
                        .collect();
                    let checked = ExportCheckedBatch {
                        header: batch.header.clone(),
                        records,
                    };
                    let payload = checked.encode_to_vec();
                    let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
                    let ce_id = uuid::Uuid::now_v7().to_string();
                    let ev = OutgoingEvent {
                        topic: "spoke.export.checked.v1",
                        key: &key,
                        ce_id: &ce_id,
                        ce_type: "spoke.events.v1.ExportCheckedBatch",
                        payload: &payload,
                        traceparent: None,
                        tracestate: None,
                        time: None,
                        extra_headers: &[],
                    };
                    producer.send(&ev).await.expect("checked batch published");
                    if std::env::var("SPOKE_TEST_TRACE").is_ok() {
                        eprintln!(
                            "dedupe stand-in: checked batch {:?} published",
                            checked.header.as_ref().map(|h| h.batch_index)
                        );
                    }
                }
            })
        }));
    }

    /// A gRPC client of the running app.
    pub async fn client(&self) -> ExportServiceClient<Channel> {
        let addr = self.app.as_ref().expect("app running").grpc;
        ExportServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
            .max_encoding_message_size(256 * 1024 * 1024)
    }

    /// Waits until the job reaches a terminal state (or panics after `secs`).
    pub async fn wait_terminal(&self, job_id: &str, secs: u64) -> ExportJob {
        let mut client = self.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let job = client
                .get_export(authed_as(
                    GetExportRequest {
                        job_id: job_id.into(),
                    },
                    "admin-1",
                    &[Role::Admin],
                ))
                .await
                .expect("get")
                .into_inner()
                .job
                .expect("job");
            if std::env::var("SPOKE_TEST_TRACE").is_ok() {
                eprintln!(
                    "{:?} state {} counts {:?}",
                    std::time::SystemTime::now(),
                    job.state,
                    job.counts
                );
            }
            if [5, 6, 7, 8].contains(&job.state) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job not finished in {secs}s: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the job is in `state`.
    pub async fn wait_state(&self, job_id: &str, state: i32, secs: u64) -> ExportJob {
        let mut client = self.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let job = client
                .get_export(authed_as(
                    GetExportRequest {
                        job_id: job_id.into(),
                    },
                    "admin-1",
                    &[Role::Admin],
                ))
                .await
                .expect("get")
                .into_inner()
                .job
                .expect("job");
            if job.state == state {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job not in state {state} within {secs}s: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn token_source(
    sandbox: &Sandbox,
    hubspot: &HubSpotClient,
    user: Option<&str>,
) -> OAuthTokenSource {
    let pair = sandbox
        .control()
        .issue_tokens(PORTAL, user)
        .expect("tokens");
    OAuthTokenSource::new(
        hubspot.clone(),
        OAuthCredentials {
            client_id: "sandbox-client-id".into(),
            client_secret: SecretString::from("sandbox-client-secret".to_string()),
        },
        TokenSet {
            access_token: SecretString::from(pair.access_token),
            refresh_token: SecretString::from(pair.refresh_token),
            expires_in: pair.expires_in.max(0) as u64,
            token_type: None,
            hub_id: Some(PORTAL),
            user_id: None,
            scopes: vec![],
        },
    )
}

/// Adds a user token (role user) of `user` to a request.
pub fn authed<T>(msg: T, user: &str) -> tonic::Request<T> {
    authed_as(msg, user, &[Role::User])
}

/// Adds a token with the given roles.
pub fn authed_as<T>(msg: T, user: &str, roles: &[Role]) -> tonic::Request<T> {
    let email = match user {
        MAPPED_USER => "Mapped@provider.example",
        UNMAPPED_USER => "nobody@provider.example",
        _ => "",
    };
    let token = spoke_platform::testing::dev_issuer()
        .mint(user, ORG, email, roles)
        .unwrap_or_else(|_| dev_token(user, ORG, roles));
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    req
}

/// A contact record.
pub fn contact(id: &str, fields: &[(&str, &str)]) -> ExportRecord {
    record(id, ObjectType::Contacts, fields)
}

/// A company record.
pub fn company(id: &str, fields: &[(&str, &str)]) -> ExportRecord {
    record(id, ObjectType::Companies, fields)
}

fn record(id: &str, kind: ObjectType, fields: &[(&str, &str)]) -> ExportRecord {
    ExportRecord {
        record_id: id.into(),
        profile: Some(Profile {
            profile_id: format!("p-{id}"),
            kind: kind as i32,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
    }
}

/// Properties of a sandbox record.
pub fn sandbox_props(h: &Harness, object: &str, id: &str) -> Properties {
    let v = h
        .sandbox
        .control()
        .record(PORTAL, object, id)
        .expect("record")
        .expect("exists");
    v["properties"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Unused-import guard for rules.
pub fn default_rules() -> ExportRules {
    ExportRules::default()
}

/// Silences unused warnings of helpers some test files do not use.
pub fn _unused(_: DuplicateAction) {}

/// Reads messages of `topic` from the beginning (fresh group) until `done` says enough or `secs` pass.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    secs: u64,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-read-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done(&out) && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}
