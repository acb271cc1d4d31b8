//! Fault suite (issue #12, items 1–4) over the real binaries, the dev broker, Postgres and the
//! HubSpot sandbox. Every case checks the same guarantees (DESIGN.md §2):
//! - the job reaches a final state and every record has exactly one outcome (the job's counts and
//!   the export schema's records agree; no record is left open; written records carry a HubSpot id,
//!   created ones a distinct one);
//! - HubSpot holds no duplicates (sandbox inspection API: no email / name+company / domain key held
//!   by two live records);
//! - the portal holds exactly the seeded records plus the ones the jobs created.
//!
//! CI runs a small size by default; `SPOKE_FAULTS_FULL=1` runs the full sizes (see tests/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spoke_e2e::chaos::{
    Cluster, Http, audit_job, authed, connect_org_to_portal, done_count, reauthorize_org, token,
    wait_job, wait_job_final,
};
use spoke_e2e::fault_proxy::FaultProxy;
use spoke_e2e::{DevBroker, SandboxProcess, ServiceProcess, log_dir, spokectl, target_dir};
use spoke_platform::auth::Role;
use spoke_platform::testing::fresh_database;

const PORTAL: u64 = 4242;
const ORG: &str = "org-faults";
const ADMIN: (&str, &str, &str, &str) = (ORG, "admin-1", "admin-1@example.com", "admin,user");

fn full() -> bool {
    std::env::var("SPOKE_FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// Records of one export: 2,000 in CI, 10,000 in the full run.
fn export_size() -> u64 {
    if full() { 10_000 } else { 2_000 }
}

/// A deterministic "random" fraction in 0.15..0.65 of the way through a job, from `seed`.
fn kill_point(seed: u64) -> f64 {
    let mut x = (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    0.15 + (x % 500) as f64 / 1000.0
}

fn no_services() -> Vec<ServiceProcess> {
    Vec::new()
}

fn ctl(services: &[ServiceProcess], identity: (&str, &str, &str, &str), args: &[&str]) -> String {
    let (success, out, err) = spokectl(services, identity, args).expect("spokectl runs");
    assert!(success, "spokectl {args:?} failed:\n{out}\n{err}");
    out
}

fn data_dir(test: &str) -> PathBuf {
    let dir = target_dir().join("e2e-data").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `spokectl gen-seed`: a portal holding the first `existing` companies and contacts.
fn gen_seed(portal: u64, existing: u64, out: &Path) {
    let (p, n) = (portal.to_string(), existing.to_string());
    ctl(
        &no_services(),
        ADMIN,
        &[
            "gen-seed",
            "--portal",
            &p,
            "--admin-email",
            ADMIN.2,
            "--companies",
            &n,
            "--contacts",
            &n,
            "--seed",
            "3",
            "--out",
            &out.display().to_string(),
        ],
    );
}

/// `spokectl gen OBJECT --start START --count COUNT` into `out`.
fn gen_profiles(object: &str, start: u64, count: u64, out: &Path) {
    let (s, c) = (start.to_string(), count.to_string());
    ctl(
        &no_services(),
        ADMIN,
        &[
            "gen",
            object,
            "--start",
            &s,
            "--count",
            &c,
            "--seed",
            "3",
            "--out",
            &out.display().to_string(),
        ],
    );
}

/// What the portal must hold: seeded plus created, per object.
#[derive(Debug, Clone)]
struct Ledger {
    portal: u64,
    live: BTreeMap<String, i64>,
}

impl Ledger {
    fn seeded(portal: u64, existing: u64) -> Self {
        let live = ["companies", "contacts"]
            .iter()
            .map(|o| (o.to_string(), existing as i64))
            .collect();
        Self { portal, live }
    }
}

/// One running stack: broker, sandbox (optionally behind the fault proxy), database, services.
struct Stack {
    name: String,
    broker: DevBroker,
    sandbox: SandboxProcess,
    sandbox_api: Http,
    db: String,
    cluster: Cluster,
    proxy: Option<FaultProxy>,
}

struct StackOptions<'a> {
    existing: u64,
    sandbox_args: &'a [&'a str],
    proxy: bool,
    env: BTreeMap<String, String>,
}

impl Default for StackOptions<'_> {
    fn default() -> Self {
        Self {
            existing: 500,
            sandbox_args: &["--search-lag-ms", "1000"],
            proxy: false,
            env: BTreeMap::new(),
        }
    }
}

impl Stack {
    async fn start(name: &str, opts: StackOptions<'_>) -> Self {
        let logs = log_dir(&format!("faults/{name}"));
        let seed = data_dir(&format!("faults-{name}")).join("seed.json");
        gen_seed(PORTAL, opts.existing, &seed);
        let broker = DevBroker::start(&logs).expect("dev broker");
        let sandbox = SandboxProcess::start(&seed, opts.sandbox_args, &logs).expect("sandbox");
        let sandbox_api = Http::new(&sandbox.url);
        let proxy = if opts.proxy {
            let upstream = ([127, 0, 0, 1], sandbox.port).into();
            Some(FaultProxy::start(upstream).await.expect("fault proxy"))
        } else {
            None
        };
        let hubspot = proxy
            .as_ref()
            .map(FaultProxy::url)
            .unwrap_or_else(|| sandbox.url.clone());
        let db = fresh_database().await.expect("database");
        let cluster = Cluster::start(&db, &broker.bootstrap, &hubspot, &opts.env, &logs)
            .await
            .expect("services start");
        Self {
            name: name.into(),
            broker,
            sandbox,
            sandbox_api,
            db,
            cluster,
            proxy,
        }
    }

    fn services(&self) -> &[ServiceProcess] {
        &self.cluster.services
    }

    /// Connect (spokectl, the sandbox consents), map the admin, turn the integration on.
    fn connect(&self) {
        let out = ctl(
            self.services(),
            ADMIN,
            &["connect", "--auto", "--output", "json"],
        );
        let conn: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(conn["portal_id"], PORTAL, "{conn}");
        ctl(
            self.services(),
            ADMIN,
            &["users", "add", "admin-1:admin-1@example.com:admin"],
        );
        ctl(self.services(), ADMIN, &["users", "reset"]);
        ctl(self.services(), ADMIN, &["enable"]);
    }

    /// Starts an export of `file` without following it; returns the job id. Waits for the
    /// services' connection mirrors to learn of the connection first.
    async fn start_export(&self, file: &Path, object: &str, key: &str) -> String {
        let file_s = file.display().to_string();
        let args = [
            "export",
            "create",
            &file_s,
            "--object",
            object,
            "--on-duplicate",
            "update",
            "--idempotency-key",
            key,
            "--no-wait",
            "--output",
            "json",
        ];
        for attempt in 0..120 {
            let (success, out, err) = spokectl(self.services(), ADMIN, &args).unwrap();
            if success {
                let job: Value = serde_json::from_str(&out).unwrap();
                return job["job_id"].as_str().unwrap().to_string();
            }
            assert!(
                err.contains("not connected")
                    || err.contains("turned off")
                    || err.contains("reconnect required"),
                "export {key} refused: {err}"
            );
            assert!(attempt < 119, "export {key} never accepted: {err}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        unreachable!()
    }

    /// Waits until `fraction` of the job's records have an outcome.
    async fn wait_progress(&self, job: &str, total: u64, fraction: f64) -> Value {
        let at = (total as f64 * fraction) as i64;
        wait_job(self.services(), ADMIN, job, Duration::from_secs(240), |v| {
            done_count(v) >= at
        })
        .await
        .unwrap()
    }

    async fn wait_final(&self, job: &str) -> Value {
        wait_job_final(self.services(), ADMIN, job, Duration::from_secs(280))
            .await
            .unwrap()
    }

    /// Every guarantee for a finished job of `object`; updates the ledger with its creations.
    async fn assert_exact(&self, ledger: &mut Ledger, object: &str, job: &Value, case: &str) {
        let audit = self.assert_job(job, case).await;
        *ledger.live.get_mut(object).unwrap() += audit.created;
        self.assert_portal(ledger, case).await;
    }

    /// One outcome per record: the job's counts are its records' outcomes, none left open.
    async fn assert_job(&self, job: &Value, case: &str) -> spoke_e2e::chaos::RecordAudit {
        let job_id = job["job_id"].as_str().unwrap();
        let total = job["total"].as_i64().unwrap();
        assert_eq!(job["pending"], 0, "{case}: {job}");
        assert_eq!(job["needs_review"], 0, "{case}: {job}");
        assert_eq!(
            done_count(job),
            total,
            "{case}: one outcome per record: {job}"
        );
        let audit = audit_job(&self.db, job_id).await.unwrap();
        assert_eq!(audit.records, total, "{case}: {audit:?}");
        assert_eq!(
            audit.open, 0,
            "{case}: records without an outcome: {audit:?}"
        );
        assert_eq!(
            (audit.created, audit.updated, audit.skipped, audit.failed),
            (
                job["created"].as_i64().unwrap(),
                job["updated"].as_i64().unwrap(),
                job["skipped"].as_i64().unwrap(),
                job["failed"].as_i64().unwrap()
            ),
            "{case}: the job's counts are its records' outcomes: {audit:?} {job}"
        );
        assert_eq!(audit.written_without_id, 0, "{case}: {audit:?}");
        assert_eq!(
            audit.distinct_created_ids, audit.created,
            "{case}: two records created as one HubSpot record: {audit:?}"
        );
        audit
    }

    /// No duplicates in the portal and live counts = the ledger.
    async fn assert_portal(&self, ledger: &Ledger, case: &str) {
        for object in ["companies", "contacts"] {
            let d = self
                .sandbox_api
                .get(&format!(
                    "/_sandbox/portals/{}/duplicates/{object}",
                    ledger.portal
                ))
                .await
                .unwrap();
            assert_eq!(
                d["duplicates"].as_array().map(Vec::len),
                Some(0),
                "{case}: {object} duplicated in HubSpot: {d}"
            );
        }
        let counts = self
            .sandbox_api
            .get(&format!("/_sandbox/portals/{}/counts", ledger.portal))
            .await
            .unwrap();
        for (object, n) in &ledger.live {
            assert_eq!(
                counts["live"][object].as_i64(),
                Some(*n),
                "{case}: portal {} {object}: seeded + created: {counts}",
                ledger.portal
            );
        }
    }

    async fn stop(self) {
        let name = self.name.clone();
        drop(self.proxy);
        self.cluster
            .stop()
            .unwrap_or_else(|e| panic!("{name}: services stop: {e}"));
        self.sandbox
            .process
            .stop(Duration::from_secs(10))
            .expect("sandbox stops");
        self.broker
            .process
            .stop(Duration::from_secs(10))
            .expect("broker stops");
    }
}

fn summary(case: &str, job: &Value, started: Instant) {
    println!(
        "{}",
        json!({
            "case": case, "state": job["state"], "total": job["total"], "created": job["created"],
            "updated": job["updated"], "skipped": job["skipped"], "failed": job["failed"],
            "message": job["message"], "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
}

fn is_completed(job: &Value) -> bool {
    job["state"] == "COMPLETED" || job["state"] == "COMPLETED_WITH_ERRORS"
}

// ---------------------------------------------------------------------------------------------
// 1. Process faults
// ---------------------------------------------------------------------------------------------

/// SIGKILLs each of `victims` at a seeded point of its own export of contacts (each export
/// overlaps the previous one and the portal's existing records), restarts it on the same ports:
/// every job completes with exact outcomes and no duplicates.
async fn sigkill_mid_export(name: &str, victims: &[&'static str]) {
    let n = export_size();
    let mut env = BTreeMap::new();
    // A killed writer's leased records are retaken after the lease (default 120 s).
    env.insert("SPOKE_WRITER__LEASE_SECS".to_string(), "15".to_string());
    let mut stack = Stack::start(
        name,
        StackOptions {
            env,
            ..StackOptions::default()
        },
    )
    .await;
    stack.connect();
    let mut ledger = Ledger::seeded(PORTAL, 500);
    let dir = data_dir(&format!("faults-{name}"));
    for (i, victim) in victims.iter().enumerate() {
        let started = Instant::now();
        // Each export starts 250 records before the previous one ended: it updates some, creates most.
        let start = i as u64 * (n - 250);
        let file = dir.join(format!("contacts-{i}.ndjson"));
        gen_profiles("contacts", start, n, &file);
        let job = stack
            .start_export(&file, "contacts", &format!("kill-{victim}"))
            .await;
        let at = kill_point(victims.len() as u64 * 7 + i as u64);
        let seen = stack.wait_progress(&job, n, at).await;
        stack
            .cluster
            .kill_and_restart(victim, Duration::from_millis(500))
            .await
            .unwrap();
        let done = stack.wait_final(&job).await;
        assert!(is_completed(&done), "kill {victim}: {done}");
        stack
            .assert_exact(&mut ledger, "contacts", &done, &format!("kill {victim}"))
            .await;
        if i > 0 {
            assert!(
                done["updated"].as_i64().unwrap() > 0,
                "the overlap with the previous export is updated: {done}"
            );
        }
        println!(
            "killed {victim} at {} of {n} records done (target {:.0}%)",
            done_count(&seen),
            at * 100.0
        );
        summary(&format!("sigkill {victim}"), &done, started);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_export_and_dedupe_mid_export() {
    sigkill_mid_export("sigkill-export-dedupe", &["export", "dedupe"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_connection_and_mapping_mid_export() {
    sigkill_mid_export("sigkill-connection-mapping", &["connection", "mapping"]).await;
}

/// A filtering run whose replica is SIGKILLed mid-run completes after the restart (another claim
/// of its lease), and its matches are the right ones: a second, undisturbed run over the same
/// portal finds the same matches and adds or removes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_filtering_mid_run() {
    use spoke_proto::common::v1::{FilteringRunState, ObjectType};
    use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;
    use spoke_proto::filtering::v1::{GetRunRequest, RunNowRequest};

    let existing = if full() { 5_000 } else { 1_500 };
    let mut env = BTreeMap::new();
    env.insert("SPOKE_FILTERING__LEASE_SECS".to_string(), "3".to_string());
    let mut stack = Stack::start(
        "sigkill-filtering",
        StackOptions {
            existing,
            env,
            ..StackOptions::default()
        },
    )
    .await;
    stack.connect();
    // Profiles: the portal's records and more.
    let dir = data_dir("faults-sigkill-filtering");
    let profiles = existing + existing / 2;
    for object in ["companies", "contacts"] {
        let file = dir.join(format!("{object}.ndjson"));
        gen_profiles(object, 0, profiles, &file);
        ctl(
            stack.services(),
            (ORG, "loader", "loader@example.com", "service"),
            &["profiles", "load", &file.display().to_string()],
        );
    }
    let pool = sqlx::PgPool::connect(&stack.db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM filtering.profiles")
            .fetch_one(&pool)
            .await
            .unwrap();
        if n == 2 * profiles as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "profile index holds {n} profiles"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ctl(
        stack.services(),
        ADMIN,
        &["filtering", "enable", "companies", "contacts"],
    );
    // Slow list pages so the run is still going when its replica dies.
    stack
        .sandbox_api
        .put(
            "/_sandbox/faults",
            json!({"rules": [{"route": "/crm/v3/objects/*", "method": "GET",
                               "fault": {"type": "latency", "ms": 150}}]}),
        )
        .await
        .unwrap();
    let t = token("admin-1", ORG, &[Role::Admin, Role::User]);
    let filtering = |stack: &Stack| {
        let addr = format!("http://{}", stack.cluster.service("filtering").grpc);
        async move { FilteringServiceClient::connect(addr).await.unwrap() }
    };
    let run_now = |key: &'static str| RunNowRequest {
        idempotency_key: key.into(),
        objects: vec![ObjectType::Companies as i32, ObjectType::Contacts as i32],
    };
    let started = Instant::now();
    let run = filtering(&stack)
        .await
        .run_now(authed(run_now("killed-run"), &t))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let scanned = |r: &spoke_proto::filtering::v1::FilteringRun| -> i64 {
        r.stats.iter().map(|s| s.records_scanned).sum()
    };
    // Kill once a third of the records were scanned.
    let kill_at = (2 * existing / 3) as i64;
    loop {
        let r = filtering(&stack)
            .await
            .get_run(authed(
                GetRunRequest {
                    run_id: run.run_id.clone(),
                },
                &t,
            ))
            .await
            .unwrap()
            .into_inner()
            .run
            .unwrap();
        if r.state == FilteringRunState::Queued as i32 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(
            r.state,
            FilteringRunState::Running as i32,
            "run ended before the kill: {r:?}"
        );
        if scanned(&r) >= kill_at {
            println!("killing filtering at {} records scanned", scanned(&r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack
        .cluster
        .kill_and_restart("filtering", Duration::from_millis(500))
        .await
        .unwrap();
    let wait_end = |id: String| {
        let stack = &stack;
        let t = t.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(240);
            loop {
                let r = filtering(stack)
                    .await
                    .get_run(authed(GetRunRequest { run_id: id.clone() }, &t))
                    .await
                    .unwrap()
                    .into_inner()
                    .run
                    .unwrap();
                if r.state != FilteringRunState::Queued as i32
                    && r.state != FilteringRunState::Running as i32
                {
                    return r;
                }
                assert!(Instant::now() < deadline, "run never ended: {r:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let killed = wait_end(run.run_id.clone()).await;
    assert_eq!(
        killed.state,
        FilteringRunState::Completed as i32,
        "{killed:?}"
    );
    println!(
        "{}",
        json!({"case": "sigkill filtering", "seconds": started.elapsed().as_secs(),
               "stats": killed.stats.iter().map(|s| json!({"object": s.object, "scanned": s.records_scanned,
               "matched": s.records_matched, "added": s.matches_added, "removed": s.matches_removed})).collect::<Vec<_>>()})
    );
    stack.sandbox_api.delete("/_sandbox/faults").await.unwrap();
    let again = filtering(&stack)
        .await
        .run_now(authed(run_now("second-run"), &t))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let second = wait_end(again.run_id).await;
    assert_eq!(
        second.state,
        FilteringRunState::Completed as i32,
        "{second:?}"
    );
    for object in [ObjectType::Companies as i32, ObjectType::Contacts as i32] {
        let a = killed.stats.iter().find(|s| s.object == object).unwrap();
        let b = second.stats.iter().find(|s| s.object == object).unwrap();
        assert_eq!(
            a.records_scanned, existing as i64,
            "every record scanned once: {a:?}"
        );
        assert!(a.records_matched > 0, "{a:?}");
        assert_eq!(a.records_matched, b.records_matched, "{a:?} vs {b:?}");
        assert_eq!(
            (b.matches_added, b.matches_removed),
            (0, 0),
            "the killed run left the right matches: {b:?}"
        );
    }
    pool.close().await;
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Infrastructure faults
// ---------------------------------------------------------------------------------------------

/// Every broker of the dev broker goes down mid-export (10 s in CI, 30 s full) and comes back:
/// the job completes exactly. Skipped against a real Kafka (it cannot be stopped from here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_mid_export() {
    if std::env::var("SPOKE_KAFKA_BOOTSTRAP").is_ok() {
        println!(
            "skipped: SPOKE_KAFKA_BOOTSTRAP is set, and a real Kafka cannot be stopped from the test"
        );
        return;
    }
    let n = export_size();
    let stack = Stack::start("broker-down", StackOptions::default()).await;
    stack.connect();
    let mut ledger = Ledger::seeded(PORTAL, 500);
    let file = data_dir("faults-broker-down").join("contacts.ndjson");
    gen_profiles("contacts", 0, n, &file);
    let started = Instant::now();
    let job = stack.start_export(&file, "contacts", "broker-down").await;
    let seen = stack.wait_progress(&job, n, 0.2).await;
    let control = Http::new(&stack.broker.control);
    let status = control.get("/status").await.unwrap();
    let brokers = status["brokers"].as_i64().unwrap_or(1).max(1);
    for id in 1..=brokers {
        control
            .post_empty(&format!("/brokers/{id}/down"))
            .await
            .unwrap();
    }
    let down = Duration::from_secs(if full() { 30 } else { 10 });
    println!(
        "{brokers} broker(s) down at {} of {n} records done, for {down:?}",
        done_count(&seen)
    );
    tokio::time::sleep(down).await;
    for id in 1..=brokers {
        control
            .post_empty(&format!("/brokers/{id}/up"))
            .await
            .unwrap();
    }
    let done = stack.wait_final(&job).await;
    assert!(is_completed(&done), "{done}");
    stack
        .assert_exact(&mut ledger, "contacts", &done, "broker down")
        .await;
    summary("broker down", &done, started);
    stack.stop().await;
}

/// A TCP fault proxy between every service and HubSpot: latency, connection resets mid-request
/// and mid-answer, then a blackhole (held connections reset when it ends): the job completes
/// exactly, with creates whose answers were lost recovered instead of repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_faults_between_services_and_hubspot() {
    let n = export_size();
    let stack = Stack::start(
        "tcp-proxy",
        StackOptions {
            proxy: true,
            ..StackOptions::default()
        },
    )
    .await;
    stack.connect();
    let proxy = stack.proxy.as_ref().unwrap();
    let mut ledger = Ledger::seeded(PORTAL, 500);
    let file = data_dir("faults-tcp-proxy").join("contacts.ndjson");
    gen_profiles("contacts", 250, n, &file);
    let started = Instant::now();
    proxy.seed(12);
    proxy.set_latency_ms(20);
    proxy.set_reset_per_mille(30);
    let job = stack.start_export(&file, "contacts", "tcp-proxy").await;
    let seen = stack.wait_progress(&job, n, 0.3).await;
    proxy.set_blackhole(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set_blackhole(false);
    println!(
        "blackhole for 5 s at {} of {n} records done",
        done_count(&seen)
    );
    let done = stack.wait_final(&job).await;
    let stats = proxy.stats();
    proxy.set_reset_per_mille(0);
    proxy.set_latency_ms(0);
    assert!(is_completed(&done), "{done}");
    assert!(
        stats.resets > 0 && stats.blackholed > 0,
        "faults were injected: {stats:?}"
    );
    stack
        .assert_exact(&mut ledger, "contacts", &done, "tcp proxy")
        .await;
    println!("proxy: {stats:?}");
    summary(
        "tcp proxy (latency 20 ms, 3% resets, 5 s blackhole)",
        &done,
        started,
    );
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. HubSpot faults (the sandbox's fault rules)
// ---------------------------------------------------------------------------------------------

type HubSpotCase = (&'static str, Vec<Value>, Option<u64>);

fn status_rule(status: u16, p: f64, count: Option<u64>) -> Value {
    json!({"route": "/crm/*", "fault": {"type": "status", "status": status}, "probability": p, "count": count})
}

fn rate_rule(policy: &str, route: &str, p: f64, count: u64) -> Value {
    json!({"route": route, "fault": {"type": "rate_limit", "policyName": policy}, "probability": p, "count": count})
}

/// 429 storms of each policy, 423 and 477 with Retry-After, one export each: every job
/// completes with exact outcomes (a DAILY limit is not retried: the refused records fail with the
/// reason), and the sandbox's request log shows the faults were served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_rate_limits_and_locks() {
    let cases: Vec<HubSpotCase> = vec![
        (
            "429 TEN_SECONDLY_ROLLING storm",
            vec![rate_rule("TEN_SECONDLY_ROLLING", "/crm/*", 0.5, 15)],
            None,
        ),
        (
            "429 SECONDLY storm on search",
            vec![rate_rule("SECONDLY", "/crm/v3/objects/*/search", 0.7, 15)],
            None,
        ),
        (
            "429 DAILY",
            vec![rate_rule("DAILY", "/crm/v3/objects/*/batch/*", 1.0, 2)],
            None,
        ),
        ("423 locked", vec![status_rule(423, 0.5, Some(10))], None),
        (
            "477 with Retry-After",
            vec![
                json!({"route": "/crm/*", "fault": {"type": "status", "status": 477, "retryAfterSecs": 1}, "probability": 0.5, "count": 10}),
            ],
            None,
        ),
    ];
    hubspot_cases("hubspot-limits", cases).await;
}

/// 5% 5xx, slow answers, access tokens expiring every 3 s, one export each: every job completes
/// with exact outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_errors_latency_and_token_expiry() {
    let cases: Vec<HubSpotCase> = vec![
        (
            "5% 5xx",
            vec![
                status_rule(500, 0.0125, None),
                status_rule(502, 0.0125, None),
                status_rule(503, 0.0125, None),
                status_rule(504, 0.0125, None),
            ],
            None,
        ),
        (
            "slow answers (0.4 s on half)",
            vec![
                json!({"route": "*", "fault": {"type": "latency", "ms": 400}, "probability": 0.5}),
            ],
            None,
        ),
        ("access token expiring every 3 s", vec![], Some(3)),
    ];
    hubspot_cases("hubspot-errors", cases).await;
}

async fn hubspot_cases(name: &str, cases: Vec<HubSpotCase>) {
    let n: u64 = if full() { 2_000 } else { 400 };
    let stack = Stack::start(name, StackOptions::default()).await;
    stack.connect();
    let mut ledger = Ledger::seeded(PORTAL, 500);
    let dir = data_dir(&format!("faults-{name}"));
    let mut report = Vec::new();
    for (i, (case, rules, ttl)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let file = dir.join(format!("contacts-{i}.ndjson"));
        // Each export overlaps the previous one by 50 records (updates) and creates the rest.
        gen_profiles("contacts", 450 + i as u64 * (n - 50), n, &file);
        stack
            .sandbox_api
            .delete("/_sandbox/requests")
            .await
            .unwrap();
        stack
            .sandbox_api
            .put("/_sandbox/faults", json!({"rules": rules, "seed": i}))
            .await
            .unwrap();
        if let Some(secs) = ttl {
            stack
                .sandbox_api
                .put("/_sandbox/token-ttl", json!({"secs": secs}))
                .await
                .unwrap();
            stack
                .sandbox_api
                .post("/_sandbox/tokens/expire", json!({"portalId": PORTAL}))
                .await
                .unwrap();
        }
        let job = stack
            .start_export(&file, "contacts", &format!("hubspot-{i}"))
            .await;
        let done = stack.wait_final(&job).await;
        stack.sandbox_api.delete("/_sandbox/faults").await.unwrap();
        if ttl.is_some() {
            stack
                .sandbox_api
                .put("/_sandbox/token-ttl", json!({"secs": 1800}))
                .await
                .unwrap();
        }
        let log = stack
            .sandbox_api
            .get("/_sandbox/requests?limit=10000")
            .await
            .unwrap();
        let log = log["requests"].as_array().cloned().unwrap_or_default();
        let faults = log.iter().filter(|r| !r["fault"].is_null()).count();
        let token_calls = log
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/oauth")))
            .count();
        let unauthorized = log.iter().filter(|r| r["status"] == 401).count();
        assert!(faults > 0 || ttl.is_some(), "{case}: no fault was served");
        stack
            .assert_exact(&mut ledger, "contacts", &done, case)
            .await;
        if case.contains("DAILY") {
            // A daily limit is not retried: the records of the refused batches fail with the reason.
            assert!(
                done["failed"].as_i64().unwrap() > 0,
                "{case}: records failed on the daily limit: {done}"
            );
        } else {
            assert!(is_completed(&done), "{case}: {done}");
        }
        if ttl.is_some() {
            assert!(
                token_calls > 1,
                "{case}: tokens were refreshed: {token_calls}"
            );
        }
        summary(case, &done, started);
        report.push(json!({"case": case, "faults_served": faults, "token_calls": token_calls, "unauthorized": unauthorized}));
    }
    println!("{}", Value::Array(report));
    stack.stop().await;
}

/// The portal's refresh token is revoked mid-export (and the access token expired, so the next
/// call needs a refresh): the job stops with "reconnect required" and the connection needs
/// re-authorisation. After the admin re-authorises (Change User),
/// a re-export of the same file creates only what the first job did not, and updates what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_revoked_mid_export_then_reconnect() {
    let n = export_size();
    let stack = Stack::start("revoked", StackOptions::default()).await;
    stack.connect();
    let mut ledger = Ledger::seeded(PORTAL, 500);
    let file = data_dir("faults-revoked").join("contacts.ndjson");
    gen_profiles("contacts", 0, n, &file);
    let started = Instant::now();
    let job = stack.start_export(&file, "contacts", "revoked-1").await;
    let seen = stack.wait_progress(&job, n, 0.3).await;
    stack
        .sandbox_api
        .post("/_sandbox/tokens/revoke", json!({"portalId": PORTAL}))
        .await
        .unwrap();
    stack
        .sandbox_api
        .post("/_sandbox/tokens/expire", json!({"portalId": PORTAL}))
        .await
        .unwrap();
    println!("revoked at {} of {n} records done", done_count(&seen));
    let first = stack.wait_final(&job).await;
    summary("refresh token revoked", &first, started);
    assert_eq!(first["state"], "FAILED", "{first}");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(message.contains("reconnect required"), "{first}");
    // Calls in flight when the job failed still land their outcomes; wait until they stop.
    let mut audit1 = audit_job(&stack.db, &job).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = audit_job(&stack.db, &job).await.unwrap();
        if now == audit1 {
            break;
        }
        audit1 = now;
    }
    println!("first job's records once settled: {audit1:?}");
    assert_eq!(audit1.written_without_id, 0, "{audit1:?}");
    assert_eq!(audit1.distinct_created_ids, audit1.created, "{audit1:?}");
    // Records whose create was in flight stay `writing` (HubSpot may hold them): the portal
    // has no duplicate, but its count is only known after the re-export.
    stack
        .assert_portal(
            &Ledger {
                portal: PORTAL,
                live: BTreeMap::new(),
            },
            "after the revoke",
        )
        .await;
    // The connection learnt of the revocation: it needs re-authorisation.
    let status: Value = serde_json::from_str(&ctl(
        stack.services(),
        ADMIN,
        &["status", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(
        status["connection"]["status"], "CONNECTION_STATUS_REAUTH_REQUIRED",
        "{status}"
    );

    // The admin re-authorises (Change User, the guide's way back) and exports the same file
    // again under a new key.
    let started = Instant::now();
    let after = reauthorize_org(stack.cluster.service("connection"), ORG, ADMIN.1, PORTAL)
        .await
        .unwrap();
    assert_eq!(after, "CONNECTION_STATUS_CONNECTED");
    let job2 = stack.start_export(&file, "contacts", "revoked-2").await;
    let second = stack.wait_final(&job2).await;
    assert!(is_completed(&second), "{second}");
    // The file holds the 500 seeded contacts and 1,500 new ones: afterwards the portal holds
    // exactly one record per valid profile of the file, whichever job created it.
    let audit2 = stack.assert_job(&second, "re-export after reconnect").await;
    *ledger.live.get_mut("contacts").unwrap() = audit2.created + audit2.updated;
    stack
        .assert_portal(&ledger, "re-export after reconnect")
        .await;
    // Nothing the first job created is created again: the second job updates it, same id.
    let pool = sqlx::PgPool::connect(&stack.db).await.unwrap();
    let (recreated, kept): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE b.outcome = 1), \
                count(*) FILTER (WHERE b.outcome = 2 AND b.hubspot_id = a.hubspot_id) \
           FROM export.records a JOIN export.records b ON a.record_id = b.record_id \
          WHERE a.job_id = $1 AND b.job_id = $2 AND a.outcome = 1",
    )
    .bind(uuid::Uuid::parse_str(&job).unwrap())
    .bind(uuid::Uuid::parse_str(&job2).unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(recreated, 0, "records created twice");
    assert_eq!(kept, audit1.created, "first job's records updated in place");
    summary("re-export after reconnect", &second, started);
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Load: many orgs, many portals, config reads
// ---------------------------------------------------------------------------------------------

/// N orgs (5 in CI, 20 full), each connected to its own portal of one sandbox that enforces
/// HubSpot's limits, export concurrently while config reads (GetConnection / GetCompiledMapping)
/// run at a fixed rate (200 rps CI, 500 full): no 429 reaches HubSpot, every record lands in its
/// own org's portal, and the config reads' p99 is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_orgs_export_concurrently_under_config_read_load() {
    use spoke_proto::common::v1::ObjectType;
    use spoke_proto::connection::v1::GetConnectionRequest;
    use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
    use spoke_proto::mapping::v1::GetCompiledMappingRequest;
    use spoke_proto::mapping::v1::mapping_service_client::MappingServiceClient;

    let (orgs, per_org, rps) = if full() {
        (20u64, 2_000u64, 500u64)
    } else {
        (5, 400, 200)
    };
    let existing = 100;
    let logs = log_dir("faults/load");
    let dir = data_dir("faults-load");
    // One sandbox, one portal per org.
    let mut portals = Vec::new();
    for i in 0..orgs {
        let f = dir.join(format!("seed-{i}.json"));
        gen_seed(7000 + i, existing, &f);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        portals.extend(v["portals"].as_array().unwrap().iter().cloned());
    }
    let seed = dir.join("seed.json");
    std::fs::write(&seed, json!({ "portals": portals }).to_string()).unwrap();
    let broker = DevBroker::start(&logs).expect("dev broker");
    let sandbox = SandboxProcess::start(
        &seed,
        &["--search-lag-ms", "1000", "--rate-limit", "110/10s"],
        &logs,
    )
    .expect("sandbox");
    let api = Http::new(&sandbox.url);
    let db = fresh_database().await.expect("database");
    let cluster = Cluster::start(
        &db,
        &broker.bootstrap,
        &sandbox.url,
        &BTreeMap::new(),
        &logs,
    )
    .await
    .expect("services start");
    let identity = |i: u64| {
        (
            format!("org-load-{i}"),
            "admin-1".to_string(),
            ADMIN.2.to_string(),
            "admin,user".to_string(),
        )
    };
    for i in 0..orgs {
        let (org, user, email, roles) = identity(i);
        let portal = connect_org_to_portal(cluster.service("connection"), &org, &user, 7000 + i)
            .await
            .unwrap();
        assert_eq!(portal, 7000 + i);
        let id = (org.as_str(), user.as_str(), email.as_str(), roles.as_str());
        ctl(
            &cluster.services,
            id,
            &["users", "add", "admin-1:admin-1@example.com:admin"],
        );
        ctl(&cluster.services, id, &["users", "reset"]);
        ctl(&cluster.services, id, &["enable"]);
    }

    // Config reads at a fixed rate until the exports end.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, errors) = (stop.clone(), errors.clone());
        let conn_addr = format!("http://{}", cluster.service("connection").grpc);
        let map_addr = format!("http://{}", cluster.service("mapping").grpc);
        let tokens: Vec<String> = (0..orgs)
            .map(|i| {
                token(
                    "admin-1",
                    &format!("org-load-{i}"),
                    &[Role::Admin, Role::User],
                )
            })
            .collect();
        tokio::spawn(async move {
            let conn = ConnectionServiceClient::connect(conn_addr).await.unwrap();
            let map = MappingServiceClient::connect(map_addr).await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut calls = Vec::new();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = tokens[k % tokens.len()].clone();
                let (mut conn, mut map, errors) = (conn.clone(), map.clone(), errors.clone());
                let read_mapping = k % 2 == 1;
                k += 1;
                calls.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let ok = if read_mapping {
                        map.get_compiled_mapping(authed(
                            GetCompiledMappingRequest {
                                object: ObjectType::Contacts as i32,
                                version: None,
                            },
                            &t,
                        ))
                        .await
                        .is_ok()
                    } else {
                        conn.get_connection(authed(GetConnectionRequest {}, &t))
                            .await
                            .is_ok()
                    };
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    t0.elapsed()
                }));
            }
            let mut latencies = Vec::with_capacity(calls.len());
            for c in calls {
                if let Ok(d) = c.await {
                    latencies.push(d);
                }
            }
            latencies
        })
    };

    let started = Instant::now();
    let mut exports = Vec::new();
    for i in 0..orgs {
        let file = dir.join(format!("contacts-{i}.ndjson"));
        // Org i exports its own range of the universe; the first 100 of it are in every portal.
        gen_profiles(
            "contacts",
            if i == 0 { 0 } else { i * per_org },
            per_org,
            &file,
        );
        let services: Vec<(String, String)> = cluster
            .services
            .iter()
            .map(|s| (s.name.to_uppercase(), format!("http://{}", s.grpc)))
            .collect();
        let (org, user, email, roles) = identity(i);
        exports.push(tokio::task::spawn_blocking(move || {
            let bin = spoke_e2e::build_binaries().unwrap().join("spokectl");
            let mut cmd = std::process::Command::new(bin);
            cmd.args([
                "export",
                "create",
                &file.display().to_string(),
                "--object",
                "contacts",
                "--on-duplicate",
                "update",
                "--idempotency-key",
                "load",
                "--output",
                "json",
            ])
            .env("SPOKE_ORG", &org)
            .env("SPOKE_USER", &user)
            .env("SPOKE_EMAIL", &email)
            .env("SPOKE_ROLES", &roles)
            .env_remove("SPOKE_TOKEN");
            for (name, url) in services {
                cmd.env(format!("SPOKE_{name}_ENDPOINT"), url);
            }
            // Retry while the services' mirrors learn of the connection.
            for _ in 0..120 {
                let out = cmd.output().unwrap();
                if out.status.success() {
                    return serde_json::from_slice::<Value>(&out.stdout).unwrap();
                }
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(
                    err.contains("not connected") || err.contains("turned off"),
                    "{org}: {err}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            panic!("{org}: export never accepted");
        }));
    }
    let mut jobs = Vec::new();
    for e in exports {
        jobs.push(e.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = reader.await.unwrap();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };

    let log = api.get("/_sandbox/requests?limit=10000").await.unwrap();
    let log = log["requests"].as_array().cloned().unwrap_or_default();
    let throttled = log.iter().filter(|r| r["status"] == 429).count();
    let mut total_created = 0;
    for (i, job) in jobs.iter().enumerate() {
        let i = i as u64;
        assert!(is_completed(job), "org {i}: {job}");
        assert_eq!(done_count(job), per_org as i64, "org {i}: {job}");
        let audit = audit_job(&db, job["job_id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(audit.open, 0, "org {i}: {audit:?}");
        assert_eq!(audit.created, job["created"].as_i64().unwrap());
        assert_eq!(job["portal_id"], 7000 + i, "org {i}: {job}");
        // The org's portal holds its seeded records plus what this org created: nothing of
        // another org landed here.
        let counts = api
            .get(&format!("/_sandbox/portals/{}/counts", 7000 + i))
            .await
            .unwrap();
        assert_eq!(
            counts["live"]["contacts"].as_i64(),
            Some(existing as i64 + audit.created),
            "org {i}: {counts}"
        );
        let d = api
            .get(&format!(
                "/_sandbox/portals/{}/duplicates/contacts",
                7000 + i
            ))
            .await
            .unwrap();
        assert_eq!(d["duplicates"].as_array().map(Vec::len), Some(0), "{d}");
        total_created += audit.created;
    }
    println!(
        "{}",
        json!({
            "case": "load", "orgs": orgs, "records_per_org": per_org, "created": total_created,
            "seconds": elapsed.as_secs_f64(), "hubspot_requests_logged": log.len(), "hubspot_429s": throttled,
            "config_reads": latencies.len(), "config_read_errors": errors.load(Ordering::Relaxed),
            "config_read_rps_target": rps,
            "config_read_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0)},
        })
    );
    assert_eq!(throttled, 0, "HubSpot answered 429s");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "config reads failed");
    cluster.stop().expect("services stop");
    sandbox
        .process
        .stop(Duration::from_secs(10))
        .expect("sandbox stops");
    broker
        .process
        .stop(Duration::from_secs(10))
        .expect("broker stops");
}
