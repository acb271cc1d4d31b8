//! The security suite (issue 12, item 6) over the real binaries: one cluster (dev broker,
//! sandbox, five services), then
//!
//! - OAuth `state` tampering (changed signature, another org, expired) and replay at the browser
//!   callback and over gRPC: rejected with a clear reason, no connection created or changed;
//! - every RPC of every service (enumerated from `spoke_proto::FILE_DESCRIPTOR_SET`, so new RPCs
//!   are covered without editing this file) called over TCP without a token, with an expired
//!   token, with a token signed by another key and with malformed headers: UNAUTHENTICATED;
//! - role checks derived from each method's "Callers:" doc comment: admin/service methods with a
//!   plain user token and service-only methods with an admin token: PERMISSION_DENIED, before any
//!   request validation (requests are empty);
//! - org isolation: org A's export job, filtering run, matches, preferences, users and tokens
//!   read or changed with org-B tokens get the same answer as a random id and change nothing;
//! - a secondary admin cannot Disconnect (primary only);
//! - every Postgres table of the five schemas is unchanged by all of the above (row counts and an
//!   md5 of the rows);
//! - HubSpot tokens are not readable from the connection schema without the key;
//! - no process log holds a HubSpot token, the client secret, the JWT secret, a bearer JWT or the
//!   token encryption key.
//!
//! Every check records a finding instead of stopping, so one run lists every problem.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes};
use hmac::{Hmac, Mac};
use prost::Message;
use prost_types::FileDescriptorSet;
use sha2::Sha256;
use spoke_e2e::{
    DEV_TOKEN_KEY, DevBroker, SandboxProcess, ServiceProcess, log_dir, spokectl, start_cluster,
    target_dir,
};
use spoke_platform::auth::Role;
use spoke_platform::testing::{DEV_JWT_SECRET, dev_issuer, fresh_database, wait_serving};
use spoke_proto::connection::v1 as conn;
use spoke_proto::export::v1 as export;
use spoke_proto::filtering::v1 as filtering;
use spoke_proto::mapping::v1 as mapping;
use sqlx::{PgPool, Row};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

const ORG_A: &str = "org-sec-a";
const ORG_B: &str = "org-sec-b";
const PORTAL: i64 = 4343;
/// The primary admin of org A (connects), a second admin, a plain user.
const ADMIN: (&str, &str, &str, &str) = (ORG_A, "admin-1", "admin-1@example.com", "admin,user");
const SERVICE_A: (&str, &str, &str, &str) = (ORG_A, "loader", "", "service");
const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";
const SCHEMAS: &[&str] = &["connection", "mapping", "dedupe", "export", "filtering"];

// ---------------------------------------------------------------------------------------------
// A gRPC client for any method: raw protobuf bytes in and out.

#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One RPC from the descriptor set.
#[derive(Debug, Clone)]
struct Method {
    /// `spoke.export.v1.ExportService`.
    service: String,
    /// `CreateExport`.
    name: String,
    /// Roles named in its "Callers:" sentence.
    callers: Callers,
}

impl Method {
    fn path(&self) -> String {
        format!("/{}/{}", self.service, self.name)
    }
}

#[derive(Debug, Clone, Default)]
struct Callers {
    admin: bool,
    user: bool,
    service: bool,
    text: String,
}

/// The "Callers: ..." sentence of a doc comment (up to the first period outside parentheses).
fn callers_sentence(comment: &str) -> Option<String> {
    let flat = comment.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = flat.to_lowercase().find("callers:")?;
    let rest = &flat[at + "callers:".len()..];
    let mut depth = 0i32;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    Some(rest[..end].trim().to_string())
}

/// Every Spoke RPC with the roles its doc comment allows.
fn methods() -> Vec<Method> {
    let set = FileDescriptorSet::decode(spoke_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut comments = HashMap::new();
    let mut found = Vec::new();
    for file in &set.file {
        if !file.package().starts_with("spoke.") {
            continue;
        }
        let locations = file
            .source_code_info
            .as_ref()
            .map(|s| s.location.clone())
            .unwrap_or_default();
        for (si, svc) in file.service.iter().enumerate() {
            for (mi, m) in svc.method.iter().enumerate() {
                let path = [6, si as i32, 2, mi as i32];
                let comment = locations
                    .iter()
                    .find(|l| l.path == path)
                    .map(|l| l.leading_comments().to_string())
                    .unwrap_or_default();
                comments.insert(m.name().to_string(), comment.clone());
                found.push((
                    format!("{}.{}", file.package(), svc.name()),
                    m.name().to_string(),
                    comment,
                ));
            }
        }
    }
    found
        .into_iter()
        .map(|(service, name, comment)| {
            let mut sentence = callers_sentence(&comment).unwrap_or_default();
            // "Callers: as GetExport" refers to another method's sentence.
            if let Some(other) = sentence.strip_prefix("as ") {
                sentence = comments
                    .get(other.trim())
                    .and_then(|c| callers_sentence(c))
                    .unwrap_or_default();
            }
            let words: Vec<String> = sentence
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(str::to_lowercase)
                .collect();
            let has = |w: &str| words.iter().any(|x| x == w);
            let callers = Callers {
                admin: has("admin"),
                user: has("user"),
                service: has("service"),
                text: sentence.clone(),
            };
            Method {
                service,
                name,
                callers,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tokens and states.

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// An HS256 JWT with `claims`, signed with `secret`.
fn jwt(claims: &serde_json::Value, secret: &str) -> String {
    let body = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"HS256"}"#),
        b64(claims.to_string().as_bytes())
    );
    let sig = hmac256(secret.as_bytes(), body.as_bytes());
    format!("{body}.{}", b64(&sig))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn token(sub: &str, org: &str, roles: &[Role]) -> String {
    dev_issuer()
        .mint(sub, org, &format!("{sub}@example.com"), roles)
        .expect("token")
}

/// The key the connection service signs OAuth states with when none is configured: derived from
/// the token encryption key (crates/spoke-connection/src/crypto.rs).
fn state_key() -> Vec<u8> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(DEV_TOKEN_KEY)
        .expect("dev key");
    hmac256(&raw, b"spoke-connection oauth state v1")
}

fn state_claims(state: &str) -> serde_json::Value {
    let body = state.split_once('.').map(|(b, _)| b).unwrap_or(state);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("state body is base64");
    serde_json::from_slice(&raw).expect("state body is JSON")
}

fn sign_state(claims: &serde_json::Value, key: &[u8]) -> String {
    let body = b64(claims.to_string().as_bytes());
    let sig = hmac256(key, body.as_bytes());
    format!("{body}.{}", b64(&sig))
}

// ---------------------------------------------------------------------------------------------
// The test's view of the cluster.

struct Suite {
    services: Vec<ServiceProcess>,
    channels: HashMap<String, Channel>,
    pool: PgPool,
    findings: Vec<String>,
    /// Every bearer token sent (none may appear in a log).
    tokens_used: Vec<String>,
}

impl Suite {
    /// Calls `path` with `body` and an optional raw `authorization` value.
    async fn call(
        &mut self,
        path: &str,
        auth: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Bytes, Status> {
        if let Some(a) = auth
            && let Some(t) = a.strip_prefix("Bearer ")
        {
            self.tokens_used.push(t.to_string());
        }
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let channel = self
            .channels
            .get(service)
            .cloned()
            .ok_or_else(|| Status::internal(format!("no channel for {service}")))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        let attempt = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
            let mut req = tonic::Request::new(tokio_stream::once(Bytes::from(body)));
            if let Some(a) = auth {
                req.metadata_mut().insert(
                    "authorization",
                    a.parse()
                        .map_err(|_| Status::internal("bad header value"))?,
                );
            }
            let path = PathAndQuery::try_from(path.to_string())
                .map_err(|e| Status::internal(e.to_string()))?;
            let mut stream = grpc.streaming(req, path, RawCodec).await?.into_inner();
            Ok(stream.message().await?.unwrap_or_default())
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded("no answer within 20 s")),
        }
    }

    async fn call_as<M: Message>(
        &mut self,
        path: &str,
        bearer: &str,
        msg: &M,
    ) -> Result<Bytes, Status> {
        self.call(path, Some(&format!("Bearer {bearer}")), msg.encode_to_vec())
            .await
    }

    fn finding(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("FINDING: {what}");
        self.findings.push(what);
    }

    fn expect_code(&mut self, what: &str, got: &Result<Bytes, Status>, want: &[Code]) {
        match got {
            Err(s) if want.contains(&s.code()) => {}
            Err(s) => self.finding(format!(
                "{what}: expected {want:?}, got {:?} {:?}",
                s.code(),
                s.message()
            )),
            Ok(_) => self.finding(format!("{what}: expected {want:?}, got OK")),
        }
    }

    /// Row count and md5 of the rows of every table of the five schemas.
    async fn fingerprint(&self) -> BTreeMap<String, (i64, String)> {
        let tables = sqlx::query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE' ORDER BY 1, 2",
        )
        .bind(SCHEMAS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .expect("list tables");
        let mut out = BTreeMap::new();
        for t in tables {
            let (schema, table): (String, String) = (t.get(0), t.get(1));
            let row = sqlx::query(&format!(
                "SELECT count(*)::bigint, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
                 FROM \"{schema}\".\"{table}\" t"
            ))
            .fetch_one(&self.pool)
            .await
            .expect("fingerprint table");
            out.insert(format!("{schema}.{table}"), (row.get(0), row.get(1)));
        }
        out
    }

    /// Waits until background work (outbox relays, consumers) has settled: two equal
    /// fingerprints a second apart.
    async fn quiet_fingerprint(&self) -> BTreeMap<String, (i64, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.fingerprint().await;
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let next = self.fingerprint().await;
            if next == last || Instant::now() > deadline {
                return next;
            }
            last = next;
        }
    }

    fn compare(
        &mut self,
        what: &str,
        before: &BTreeMap<String, (i64, String)>,
        after: &BTreeMap<String, (i64, String)>,
    ) {
        for (table, b) in before {
            match after.get(table) {
                Some(a) if a == b => {}
                Some(a) => self.finding(format!(
                    "{what}: table {table} changed (rows {} -> {})",
                    b.0, a.0
                )),
                None => self.finding(format!("{what}: table {table} disappeared")),
            }
        }
        for table in after.keys().filter(|t| !before.contains_key(*t)) {
            self.finding(format!("{what}: table {table} appeared"));
        }
    }
}

fn ok(services: &[ServiceProcess], who: (&str, &str, &str, &str), args: &[&str]) -> String {
    let (success, out, err) = spokectl(services, who, args).expect("spokectl runs");
    assert!(success, "spokectl {args:?} failed:\n{out}\n{err}");
    out
}

/// GET without following redirects: (status, Location, body).
async fn http(url: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let resp = client.get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, location, resp.text().await.unwrap_or_default())
}

fn query_param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn callback_url(base: &str, code: &str, state: &str) -> String {
    let mut u = reqwest::Url::parse(base).expect("callback base");
    u.set_query(None);
    u.query_pairs_mut()
        .append_pair("code", code)
        .append_pair("state", state);
    u.to_string()
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_suite() {
    let logs = log_dir("security");
    let _ = std::fs::remove_dir_all(&logs);
    let dir = target_dir().join("e2e-data").join("security");
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    let companies = dir.join("companies.ndjson");
    let (companies_s, seed_s) = (companies.display().to_string(), seed.display().to_string());
    let none: Vec<ServiceProcess> = Vec::new();
    let portal_s = PORTAL.to_string();
    ok(
        &none,
        ADMIN,
        &[
            "gen-seed",
            "--portal",
            &portal_s,
            "--admin-email",
            ADMIN.2,
            "--companies",
            "40",
            "--contacts",
            "40",
            "--seed",
            "5",
            "--out",
            &seed_s,
        ],
    );
    ok(
        &none,
        ADMIN,
        &[
            "gen",
            "companies",
            "--count",
            "60",
            "--seed",
            "5",
            "--out",
            &companies_s,
        ],
    );

    let broker = DevBroker::start(&logs).expect("dev broker");
    let sandbox = SandboxProcess::start(&seed, &[], &logs).expect("sandbox");
    let db = fresh_database().await.expect("database");
    let services = start_cluster(
        &db,
        &broker.bootstrap,
        Some(&sandbox.url),
        &BTreeMap::new(),
        &logs,
    )
    .expect("services start");
    let mut channels = HashMap::new();
    for s in &services {
        wait_serving(s.grpc, s.grpc_service)
            .await
            .unwrap_or_else(|e| panic!("{e}; see {}", s.process.log().display()));
        let ch = Channel::from_shared(format!("http://{}", s.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect channel");
        channels.insert(s.grpc_service.to_string(), ch);
    }
    let pool = PgPool::connect(&db).await.expect("pool");
    let mut suite = Suite {
        services,
        channels,
        pool,
        findings: Vec::new(),
        tokens_used: Vec::new(),
    };

    let admin_a = token("admin-1", ORG_A, &[Role::Admin, Role::User]);
    let admin2_a = token("admin-2", ORG_A, &[Role::Admin, Role::User]);
    let user_a = token("user-1", ORG_A, &[Role::User]);
    let service_a = token("export", ORG_A, &[Role::Service]);
    let admin_b = token("admin-b", ORG_B, &[Role::Admin, Role::User]);
    let user_b = token("user-b", ORG_B, &[Role::User]);
    let service_b = token("export", ORG_B, &[Role::Service]);

    oauth_state(&mut suite, &admin_a, &admin2_a, &admin_b).await;
    let (job_id, run_id) = setup_org_a(&mut suite, &admin_a).await;

    let before = suite.quiet_fingerprint().await;
    unauthenticated(&mut suite).await;
    roles(&mut suite, &user_a, &admin_a).await;
    isolation(
        &mut suite,
        (&admin_a, &service_a),
        (&admin_b, &user_b, &service_b),
        &job_id,
        &run_id,
    )
    .await;
    secondary_admin(&mut suite, &admin2_a).await;
    let after = suite.quiet_fingerprint().await;
    suite.compare("rejected calls", &before, &after);

    let access_token = tokens_at_rest(&mut suite, &service_a).await;

    // Stop everything (logs complete), then scan them.
    let services = std::mem::take(&mut suite.services);
    for s in services {
        let name = s.name;
        if let Err(e) = s.process.stop(Duration::from_secs(20)) {
            suite.finding(format!("{name} did not stop cleanly: {e}"));
        }
    }
    let _ = sandbox.process.stop(Duration::from_secs(10));
    let _ = broker.process.stop(Duration::from_secs(10));
    logs_hold_no_secrets(&mut suite, &logs, &access_token);

    assert!(
        suite.findings.is_empty(),
        "{} security findings:\n{}",
        suite.findings.len(),
        suite.findings.join("\n")
    );
}

/// OAuth `state`: a changed signature, another org, an expired state and a replay are rejected
/// at the callback (and over gRPC for another org's admin) with a clear reason; nothing is stored
/// until the genuine callback, which connects org A.
async fn oauth_state(suite: &mut Suite, admin_a: &str, admin2_a: &str, admin_b: &str) {
    let started = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/StartConnect",
            admin_a,
            &conn::StartConnectRequest::default(),
        )
        .await
        .expect("StartConnect");
    let started = conn::StartConnectResponse::decode(started).expect("StartConnectResponse");
    let (status, location, _) = http(&started.authorize_url).await;
    assert!(status / 100 == 3, "sandbox authorize answered {status}");
    let code = query_param(&location, "code");
    let state = query_param(&location, "state");
    assert_eq!(state, started.state, "the redirect carries the state");
    assert!(!code.is_empty(), "redirect without code: {location}");

    let before = suite.fingerprint().await;
    let claims = state_claims(&state);
    let (body, sig) = state.split_once('.').expect("state has a signature");

    // 1. A changed signature.
    let mut raw_sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .expect("signature is base64");
    raw_sig[0] ^= 0x55;
    let tampered = format!("{body}.{}", b64(&raw_sig));
    // 2. The same signature over claims naming another org.
    let mut other = claims.clone();
    other["org"] = serde_json::json!(ORG_B);
    let other_org = format!("{}.{sig}", b64(other.to_string().as_bytes()));
    // 3. A correctly signed state that has expired.
    let mut old = claims.clone();
    old["exp"] = serde_json::json!(now() - 60);
    let expired = sign_state(&old, &state_key());
    for (what, s, reason) in [
        ("changed signature", tampered.as_str(), "bad signature"),
        ("other org", other_org.as_str(), "bad signature"),
        ("expired", expired.as_str(), "expired"),
    ] {
        let (status, _, page) = http(&callback_url(&location, &code, s)).await;
        if status != 400 || !page.contains(reason) {
            suite.finding(format!(
                "callback with {what} state: expected 400 naming {reason:?}, got {status}: {page}"
            ));
        }
    }
    // Over gRPC: another org's admin, and another admin of the same org, may not complete it.
    for (what, who) in [("org B admin", admin_b), ("another org A admin", admin2_a)] {
        let r = suite
            .call_as(
                "/spoke.connection.v1.ConnectionService/CompleteConnect",
                who,
                &conn::CompleteConnectRequest {
                    code: code.clone(),
                    state: state.clone(),
                },
            )
            .await;
        suite.expect_code(
            &format!("CompleteConnect of org A's flow by {what}"),
            &r,
            &[Code::PermissionDenied],
        );
    }
    let after = suite.fingerprint().await;
    suite.compare("rejected OAuth states", &before, &after);
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/GetConnection",
            admin_a,
            &conn::GetConnectionRequest::default(),
        )
        .await;
    suite.expect_code(
        "org A after rejected states is not connected",
        &r,
        &[Code::NotFound],
    );

    // The genuine callback connects.
    let (status, _, page) = http(&callback_url(&location, &code, &state)).await;
    assert_eq!(status, 200, "genuine callback failed: {page}");
    let connected = suite.fingerprint().await;

    // Replay: the same state with a new code is refused; the same state and code is the
    // idempotent retry of the first result (documented), and changes nothing.
    let (_, again, _) = http(&started.authorize_url).await;
    let code2 = query_param(&again, "code");
    assert!(!code2.is_empty() && code2 != code, "a second code: {again}");
    let (status, _, page) = http(&callback_url(&location, &code2, &state)).await;
    if status != 400 || !page.contains("replayed") {
        suite.finding(format!(
            "replayed state with a new code: expected 400 \"replayed\", got {status}: {page}"
        ));
    }
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/CompleteConnect",
            admin_a,
            &conn::CompleteConnectRequest {
                code: code2,
                state: state.clone(),
            },
        )
        .await;
    suite.expect_code(
        "CompleteConnect replaying a used state",
        &r,
        &[Code::InvalidArgument],
    );
    let (status, _, page) = http(&callback_url(&location, &code, &state)).await;
    if status != 200 {
        suite.finding(format!(
            "retry with the same state and code: expected the first result, got {status}: {page}"
        ));
    }
    let replayed = suite.fingerprint().await;
    suite.compare("replayed OAuth state", &connected, &replayed);
}

/// Org A: users, enabled, an export job, saved export preferences, profiles and a filtering
/// run with matches. Returns (job id, run id).
async fn setup_org_a(suite: &mut Suite, admin_a: &str) -> (String, String) {
    let s = &suite.services;
    ok(
        s,
        ADMIN,
        &[
            "users",
            "add",
            "admin-1:admin-1@example.com:admin",
            "admin-2:admin-2@example.com:admin",
            "user-1:user-1@example.com",
        ],
    );
    ok(s, ADMIN, &["users", "reset"]);
    ok(s, ADMIN, &["enable"]);
    let companies = target_dir()
        .join("e2e-data")
        .join("security")
        .join("companies.ndjson")
        .display()
        .to_string();
    let mut job = serde_json::Value::Null;
    for attempt in 0..60 {
        let (success, out, err) = spokectl(
            s,
            ADMIN,
            &[
                "export",
                "create",
                &companies,
                "--object",
                "companies",
                "--on-duplicate",
                "update",
                "--output",
                "json",
            ],
        )
        .unwrap();
        if success {
            job = serde_json::from_str(&out).expect("export JSON");
            break;
        }
        assert!(
            attempt < 59 && (err.contains("not connected") || err.contains("turned off")),
            "export not accepted: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let job_id = job["job_id"].as_str().expect("job id").to_string();

    // Org A's own export preferences (org B must neither see nor change them).
    suite
        .call_as(
            "/spoke.mapping.v1.MappingService/SaveExportPreferences",
            admin_a,
            &mapping::SaveExportPreferencesRequest {
                idempotency_key: "sec-prefs".into(),
                updates: vec![mapping::ObjectExportPreferencesUpdate {
                    object: 1,
                    max_per_export: Some(4321),
                    ..Default::default()
                }],
                expected_version: None,
            },
        )
        .await
        .expect("org A saves its export preferences");

    let s = &suite.services;
    ok(s, SERVICE_A, &["profiles", "load", &companies]);
    ok(s, ADMIN, &["filtering", "enable", "companies"]);
    let run = ok(
        s,
        ADMIN,
        &["filtering", "run-now", "--wait", "--output", "json"],
    );
    let run: serde_json::Value = serde_json::from_str(
        run.lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or(&run),
    )
    .or_else(|_| serde_json::from_str(&run))
    .unwrap_or_else(|e| panic!("run-now printed no JSON ({e}): {run}"));
    let run_id = run["run_id"].as_str().expect("run id").to_string();
    (job_id, run_id)
}

/// Every RPC with no token, an expired token, a token of another key and malformed headers.
async fn unauthenticated(suite: &mut Suite) {
    let exp = now() + 600;
    let claims = |exp: i64| serde_json::json!({"sub":"admin-1","org":ORG_A,"roles":["admin","user","service"],"exp":exp,"iat":now()});
    let expired = jwt(&claims(now() - 3600), DEV_JWT_SECRET);
    let wrong_key = jwt(&claims(exp), "not-the-spoke-secret-not-the-spoke-secret!");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired token", Some(format!("Bearer {expired}"))),
        ("token of another key", Some(format!("Bearer {wrong_key}"))),
        ("malformed JWT", Some("Bearer not.a.jwt".into())),
        (
            "not a bearer header",
            Some(format!("Basic {}", b64(b"admin-1:secret"))),
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims(exp).to_string().as_bytes())
            )),
        ),
    ];
    let all = methods();
    assert!(all.len() > 40, "descriptor set lists {} methods", all.len());
    eprintln!(
        "unauthenticated: {} methods x {} bad credentials",
        all.len(),
        cases.len()
    );
    for m in &all {
        for (what, header) in &cases {
            let r = suite.call(&m.path(), header.as_deref(), Vec::new()).await;
            suite.expect_code(
                &format!("{} with {what}", m.path()),
                &r,
                &[Code::Unauthenticated],
            );
        }
    }
}

/// Role checks from the doc comments: a plain user on admin/service methods, an admin on
/// service-only methods. Empty requests: a permission error must not hide behind validation.
async fn roles(suite: &mut Suite, user_a: &str, admin_a: &str) {
    let all = methods();
    let user_denied = all.iter().filter(|m| !m.callers.user).count();
    let admin_denied = all
        .iter()
        .filter(|m| m.callers.service && !m.callers.admin && !m.callers.user)
        .count();
    eprintln!(
        "roles: {user_denied} methods refuse a user token, {admin_denied} service-only methods refuse an admin token"
    );
    for m in all {
        if m.callers.text.is_empty() {
            suite.finding(format!("{} documents no \"Callers:\"", m.path()));
            continue;
        }
        if !m.callers.user {
            let r = suite.call_as(&m.path(), user_a, &()).await;
            suite.expect_code(
                &format!(
                    "{} (callers: {}) with a user token",
                    m.path(),
                    m.callers.text
                ),
                &r,
                &[Code::PermissionDenied],
            );
        }
        if m.callers.service && !m.callers.admin && !m.callers.user {
            let r = suite.call_as(&m.path(), admin_a, &()).await;
            suite.expect_code(
                &format!(
                    "{} (callers: {}) with an admin token",
                    m.path(),
                    m.callers.text
                ),
                &r,
                &[Code::PermissionDenied],
            );
        }
    }
}

/// Org B's tokens against org A's resources: the same answer as for a random id (never
/// revealing that A's exists), and nothing of A's in what B can list.
async fn isolation(
    suite: &mut Suite,
    (admin_a, service_a): (&str, &str),
    (admin_b, user_b, service_b): (&str, &str, &str),
    job_id: &str,
    run_id: &str,
) {
    let random = random_id();
    // The same code and the same message once the id asked for is masked.
    let same_answer =
        |a: &Result<Bytes, Status>, b: &Result<Bytes, Status>, a_id: &str| match (a, b) {
            (Err(x), Err(y)) => {
                x.code() == y.code()
                    && matches!(x.code(), Code::PermissionDenied | Code::NotFound)
                    && x.message().replace(a_id, "ID") == y.message().replace(random.as_str(), "ID")
            }
            _ => false,
        };
    // (path, A's id, request for A's id, request for a random id)
    let export_path = |m: &str| format!("/spoke.export.v1.ExportService/{m}");
    let by_id: Vec<(String, &str, Vec<u8>, Vec<u8>)> = vec![
        (
            export_path("GetExport"),
            job_id,
            export::GetExportRequest {
                job_id: job_id.into(),
            }
            .encode_to_vec(),
            export::GetExportRequest {
                job_id: random.clone(),
            }
            .encode_to_vec(),
        ),
        (
            export_path("WatchExport"),
            job_id,
            export::WatchExportRequest {
                job_id: job_id.into(),
            }
            .encode_to_vec(),
            export::WatchExportRequest {
                job_id: random.clone(),
            }
            .encode_to_vec(),
        ),
        (
            export_path("ListExportRecords"),
            job_id,
            export::ListExportRecordsRequest {
                job_id: job_id.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            export::ListExportRecordsRequest {
                job_id: random.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            export_path("CancelExport"),
            job_id,
            export::CancelExportRequest {
                job_id: job_id.into(),
            }
            .encode_to_vec(),
            export::CancelExportRequest {
                job_id: random.clone(),
            }
            .encode_to_vec(),
        ),
        (
            export_path("ResolveDuplicates"),
            job_id,
            export::ResolveDuplicatesRequest {
                idempotency_key: "sec-resolve".into(),
                job_id: job_id.into(),
                apply_to_rest: 2,
                ..Default::default()
            }
            .encode_to_vec(),
            export::ResolveDuplicatesRequest {
                idempotency_key: "sec-resolve-2".into(),
                job_id: random.clone(),
                apply_to_rest: 2,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/spoke.filtering.v1.FilteringService/GetRun".into(),
            run_id,
            filtering::GetRunRequest {
                run_id: run_id.into(),
            }
            .encode_to_vec(),
            filtering::GetRunRequest {
                run_id: random.clone(),
            }
            .encode_to_vec(),
        ),
        (
            "/spoke.connection.v1.ConnectionService/GetUserConnection".into(),
            "user-1",
            conn::GetUserConnectionRequest {
                user_id: "user-1".into(),
            }
            .encode_to_vec(),
            conn::GetUserConnectionRequest {
                user_id: random.clone(),
            }
            .encode_to_vec(),
        ),
    ];
    for (who, bearer) in [
        ("org B admin", admin_b),
        ("org B user", user_b),
        ("org B service", service_b),
    ] {
        for (path, a_id, a, r) in &by_id {
            let auth = format!("Bearer {bearer}");
            let got_a = suite.call(path, Some(&auth), a.clone()).await;
            let got_r = suite.call(path, Some(&auth), r.clone()).await;
            if !same_answer(&got_a, &got_r, a_id) {
                suite.finding(format!(
                    "{path} by {who}: org A's id answered {:?}, a random id {:?} (want the same PERMISSION_DENIED/NOT_FOUND)",
                    got_a.as_ref().map(|_| "OK").map_err(|s| (s.code(), s.message().to_string())),
                    got_r.as_ref().map(|_| "OK").map_err(|s| (s.code(), s.message().to_string())),
                ));
            }
        }
    }
    // A service acting for org B asks for org A's user's owner: unknown user, as for anyone.
    let a = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/ResolveOwner",
            service_b,
            &conn::ResolveOwnerRequest {
                user_id: "user-1".into(),
            },
        )
        .await;
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/ResolveOwner",
            service_b,
            &conn::ResolveOwnerRequest {
                user_id: random.clone(),
            },
        )
        .await;
    if a.is_ok() || a.as_ref().err().map(Status::code) != r.as_ref().err().map(Status::code) {
        suite.finding(format!(
            "ResolveOwner of org A's user by an org B service: {a:?} vs random {r:?}"
        ));
    }
    // Org B is not connected: no token, no connection, no budget of A's portal.
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/GetAccessToken",
            service_b,
            &conn::GetAccessTokenRequest::default(),
        )
        .await;
    suite.expect_code(
        "GetAccessToken for org B",
        &r,
        &[Code::FailedPrecondition, Code::NotFound],
    );
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/AcquireBudget",
            service_b,
            &conn::AcquireBudgetRequest {
                portal_id: PORTAL,
                kind: 1,
                requested: 1,
            },
        )
        .await;
    suite.expect_code(
        "AcquireBudget of org A's portal for org B",
        &r,
        &[
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::PermissionDenied,
        ],
    );
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/GetConnection",
            admin_b,
            &conn::GetConnectionRequest::default(),
        )
        .await;
    suite.expect_code("GetConnection for org B", &r, &[Code::NotFound]);
    for (m, req) in [
        (
            "SetEnabled",
            conn::SetEnabledRequest { enabled: false }.encode_to_vec(),
        ),
        ("Disconnect", conn::DisconnectRequest {}.encode_to_vec()),
    ] {
        let r = suite
            .call(
                &format!("/spoke.connection.v1.ConnectionService/{m}"),
                Some(&format!("Bearer {admin_b}")),
                req,
            )
            .await;
        suite.expect_code(
            &format!("{m} by org B's admin (org B never connected)"),
            &r,
            &[
                Code::FailedPrecondition,
                Code::NotFound,
                Code::PermissionDenied,
            ],
        );
    }

    // Lists: org B sees none of org A's data.
    let jobs = suite
        .call_as(
            "/spoke.export.v1.ExportService/ListExports",
            admin_b,
            &export::ListExportsRequest::default(),
        )
        .await
        .map(|b| export::ListExportsResponse::decode(b).map(|r| r.jobs.len()));
    if !matches!(jobs, Ok(Ok(0))) {
        suite.finding(format!(
            "ListExports by org B's admin: {jobs:?}, want no jobs"
        ));
    }
    let runs = suite
        .call_as(
            "/spoke.filtering.v1.FilteringService/ListRuns",
            admin_b,
            &filtering::ListRunsRequest::default(),
        )
        .await
        .map(|b| filtering::ListRunsResponse::decode(b).map(|r| r.runs.len()));
    if !matches!(runs, Ok(Ok(0))) {
        suite.finding(format!("ListRuns by org B's admin: {runs:?}, want no runs"));
    }
    let matches_of = |b: Bytes| filtering::ListMatchesResponse::decode(b).map(|r| r.matches.len());
    let list = filtering::ListMatchesRequest {
        object: 1,
        page_size: 100,
        ..Default::default()
    };
    let a = suite
        .call_as(
            "/spoke.filtering.v1.FilteringService/ListMatches",
            admin_a,
            &list,
        )
        .await
        .map(matches_of);
    if !matches!(a, Ok(Ok(n)) if n > 0) {
        suite.finding(format!(
            "ListMatches by org A: {a:?}, want matches (the run matched the loaded profiles)"
        ));
    }
    let b = suite
        .call_as(
            "/spoke.filtering.v1.FilteringService/ListMatches",
            admin_b,
            &list,
        )
        .await
        .map(matches_of);
    if !matches!(b, Ok(Ok(0))) {
        suite.finding(format!("ListMatches by org B's admin: {b:?}, want none"));
    }
    let prefs = |b: Bytes| {
        mapping::GetExportPreferencesResponse::decode(b).map(|r| {
            r.preferences
                .map(|p| p.objects.iter().any(|o| o.max_per_export == 4321))
                .unwrap_or(false)
        })
    };
    let a = suite
        .call_as(
            "/spoke.mapping.v1.MappingService/GetExportPreferences",
            service_a,
            &mapping::GetExportPreferencesRequest {},
        )
        .await
        .map(prefs);
    let b = suite
        .call_as(
            "/spoke.mapping.v1.MappingService/GetExportPreferences",
            admin_b,
            &mapping::GetExportPreferencesRequest {},
        )
        .await
        .map(prefs);
    if !matches!(a, Ok(Ok(true))) || !matches!(b, Ok(Ok(false))) {
        suite.finding(format!(
            "export preferences: org A sees its own {a:?} (want true), org B {b:?} (want false)"
        ));
    }
}

/// A secondary admin may not Disconnect (primary only); the connection stays.
async fn secondary_admin(suite: &mut Suite, admin2_a: &str) {
    let r = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/Disconnect",
            admin2_a,
            &conn::DisconnectRequest {},
        )
        .await;
    suite.expect_code(
        "Disconnect by a secondary admin",
        &r,
        &[Code::PermissionDenied],
    );
    let c = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/GetConnection",
            admin2_a,
            &conn::GetConnectionRequest::default(),
        )
        .await
        .ok()
        .and_then(|b| conn::GetConnectionResponse::decode(b).ok())
        .and_then(|r| r.connection);
    match c {
        Some(c)
            if c.status == conn::ConnectionStatus::Connected as i32 && c.portal_id == PORTAL => {}
        other => suite.finding(format!(
            "after a secondary admin's Disconnect the connection is {other:?}"
        )),
    }
}

/// The connection schema holds no HubSpot token in the clear (as text or bytes, in any column
/// of any table). Returns the live access token (for the log scan).
async fn tokens_at_rest(suite: &mut Suite, service_a: &str) -> String {
    let got = suite
        .call_as(
            "/spoke.connection.v1.ConnectionService/GetAccessToken",
            service_a,
            &conn::GetAccessTokenRequest::default(),
        )
        .await
        .expect("GetAccessToken for org A");
    let access = conn::GetAccessTokenResponse::decode(got)
        .expect("GetAccessTokenResponse")
        .access_token;
    assert!(
        access.starts_with("sbx-at-"),
        "sandbox access token: {access}"
    );
    // The exact access token, and any sandbox token (refresh tokens are `sbx-rt-...`).
    let needles: Vec<Vec<u8>> = vec![
        access.as_bytes().to_vec(),
        b"sbx-at-".to_vec(),
        b"sbx-rt-".to_vec(),
    ];
    let tables = sqlx::query(
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'connection' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&suite.pool)
    .await
    .expect("tables");
    let mut token_rows = 0i64;
    for t in tables {
        let table: String = t.get(0);
        let rows = sqlx::query(&format!("SELECT t::text FROM connection.\"{table}\" t"))
            .fetch_all(&suite.pool)
            .await
            .expect("rows as text");
        if table == "tokens" {
            token_rows = rows.len() as i64;
        }
        let cols = sqlx::query(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = 'connection' AND table_name = $1 AND data_type = 'bytea'",
        )
        .bind(&table)
        .fetch_all(&suite.pool)
        .await
        .expect("bytea columns");
        let mut blobs: Vec<(String, Vec<u8>)> = rows
            .iter()
            .map(|r| {
                (
                    format!("{table} (row as text)"),
                    r.get::<String, _>(0).into_bytes(),
                )
            })
            .collect();
        for c in cols {
            let col: String = c.get(0);
            let values = sqlx::query(&format!(
                "SELECT \"{col}\" FROM connection.\"{table}\" WHERE \"{col}\" IS NOT NULL"
            ))
            .fetch_all(&suite.pool)
            .await
            .expect("bytea values");
            blobs.extend(
                values
                    .iter()
                    .map(|v| (format!("{table}.{col}"), v.get::<Vec<u8>, _>(0))),
            );
        }
        for (place, blob) in blobs {
            for n in &needles {
                if blob.windows(n.len()).any(|w| w == n.as_slice()) {
                    suite.finding(format!(
                        "{place} holds a HubSpot token in the clear ({})",
                        String::from_utf8_lossy(&n[..7])
                    ));
                }
            }
        }
    }
    if token_rows == 0 {
        suite.finding("connection.tokens is empty: the check saw no stored tokens");
    }
    access
}

/// No process log holds a secret.
fn logs_hold_no_secrets(suite: &mut Suite, logs: &std::path::Path, access: &str) {
    let key_hex: String = base64::engine::general_purpose::STANDARD
        .decode(DEV_TOKEN_KEY)
        .map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default();
    let mut secrets: Vec<(String, String)> = vec![
        ("the HubSpot access token".into(), access.to_string()),
        ("a sandbox access token".into(), "sbx-at-".into()),
        ("a sandbox refresh token".into(), "sbx-rt-".into()),
        (
            "the HubSpot client secret".into(),
            SANDBOX_CLIENT_SECRET.into(),
        ),
        ("the JWT secret".into(), DEV_JWT_SECRET.into()),
        ("the token encryption key".into(), DEV_TOKEN_KEY.into()),
        ("the token encryption key (hex)".into(), key_hex),
        // Any HS256 JWT (jsonwebtoken's and spokectl's header) or the test's own header.
        (
            "a bearer JWT".into(),
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9".into(),
        ),
        (
            "a bearer JWT".into(),
            b64(br#"{"typ":"JWT","alg":"HS256"}"#),
        ),
    ];
    let mut used = suite.tokens_used.clone();
    used.sort();
    used.dedup();
    secrets.extend(
        used.into_iter()
            .filter(|t| t.len() > 20)
            .map(|t| ("a bearer token the test sent".to_string(), t)),
    );
    let mut scanned = 0;
    for entry in std::fs::read_dir(logs).expect("log dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read log")).into_owned();
        scanned += 1;
        for (what, secret) in &secrets {
            if !secret.is_empty() && text.contains(secret.as_str()) {
                suite.finding(format!("{} contains {what}", path.display()));
            }
        }
    }
    if scanned < 7 {
        suite.finding(format!(
            "only {scanned} process logs found in {}",
            logs.display()
        ));
    }
}
