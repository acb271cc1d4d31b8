//! Filtering benchmark: seeds a sandbox (rate limits off) with companies, contacts and deals (each
//! deal associated to its primary company, every fifth also to a second company), loads provider
//! profiles through `LoadProfiles`, runs one filtering run and prints JSON: wall times, records/s,
//! match rate, HubSpot calls, and the peak RSS of the filtering process during the run.
//!
//! `cargo run --release -p spoke-filtering --features bench --bin filtering-bench -- --companies
//! 1000000 --contacts 1000000 --deals 500000 --profiles 5000000 --sandbox-bin target/release/spoke-sandbox`
//! (needs Postgres like the tests). With `--sandbox-bin` the sandbox runs as its own process, so this
//! process is the filtering service (plus the in-process mock Kafka and the load driver); without
//! it the sandbox runs in-process and the RSS includes its records.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value, json};
use spoke_connection_client::HubSpotSettings;
use spoke_filtering::{Application, Config, FilteringSettings, StaticPortal};
use spoke_platform::auth::Role;
use spoke_platform::testing::{MockKafka, dev_token, fresh_database, test_config, wait_serving};
use spoke_proto::common::v1::{FilteringRunState, ObjectType, Profile};
use spoke_proto::filtering::v1 as pb;
use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;
use spoke_sandbox::{Sandbox, SandboxConfig, Seed};

/// Sizes of the benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// HubSpot companies in the sandbox.
    #[arg(long, default_value_t = 20_000)]
    companies: usize,
    /// HubSpot contacts in the sandbox.
    #[arg(long, default_value_t = 20_000)]
    contacts: usize,
    /// HubSpot deals in the sandbox.
    #[arg(long, default_value_t = 10_000)]
    deals: usize,
    /// Provider profiles (half companies, half contacts; 80% of HubSpot records have one).
    #[arg(long, default_value_t = 100_000)]
    profiles: usize,
    /// Run the sandbox as a separate process from this binary (e.g. target/release/spoke-sandbox).
    #[arg(long)]
    sandbox_bin: Option<PathBuf>,
    /// Records matched per batch (`filtering.batch_size`).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Runs one after the other (the second one confirms existing matches: the steady state).
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

const PORTAL: u64 = 4242;
const ORG: &str = "org-bench";
const TOKEN: &str = "pat-na1-bench";

fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Resets this process's peak RSS (VmHWM), so the next reading covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn auth<T>(msg: T, role: Role) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let t = dev_token("bench", ORG, &[role]);
    if let Ok(v) = format!("Bearer {t}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// The sandbox, in this process or as a child process seeded over its admin API.
enum Hub {
    InProcess(Sandbox),
    External {
        child: std::process::Child,
        base: String,
        http: reqwest::Client,
    },
}

impl Hub {
    async fn start(bin: Option<&PathBuf>, seed: Seed) -> anyhow::Result<Hub> {
        let Some(bin) = bin else {
            let sandbox = Sandbox::start(SandboxConfig {
                seed,
                ..SandboxConfig::default()
            })
            .await?;
            return Ok(Hub::InProcess(sandbox));
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let seed_file = std::env::temp_dir().join(format!("filtering-bench-seed-{port}.json"));
        std::fs::write(&seed_file, serde_json::to_vec(&seed)?)?;
        let child = std::process::Command::new(bin)
            .args(["--port", &port.to_string(), "--seed"])
            .arg(&seed_file)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err()
        {
            anyhow::ensure!(Instant::now() < deadline, "sandbox did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(&seed_file);
        Ok(Hub::External { child, base, http })
    }

    fn base_url(&self) -> String {
        match self {
            Hub::InProcess(s) => s.base_url(),
            Hub::External { base, .. } => base.clone(),
        }
    }

    async fn insert(
        &self,
        object: &str,
        batch: Vec<Map<String, Value>>,
    ) -> anyhow::Result<Vec<String>> {
        match self {
            Hub::InProcess(s) => Ok(s.control().insert_records(PORTAL, object, batch)?),
            Hub::External { base, http, .. } => {
                let v: Value = http
                    .post(format!("{base}/_sandbox/portals/{PORTAL}/records/{object}"))
                    .json(&batch)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok(serde_json::from_value(v["ids"].clone())?)
            }
        }
    }

    async fn associate(
        &self,
        pairs: Vec<(String, String)>,
        type_id: Option<u32>,
    ) -> anyhow::Result<()> {
        match self {
            Hub::InProcess(s) => {
                s.control()
                    .associate_records(PORTAL, "deals", "companies", &pairs, type_id)?;
            }
            Hub::External { base, http, .. } => {
                http.post(format!(
                    "{base}/_sandbox/portals/{PORTAL}/associations/deals/companies"
                ))
                .json(&json!({"pairs": pairs, "typeId": type_id}))
                .send()
                .await?
                .error_for_status()?;
            }
        }
        Ok(())
    }

    fn pid(&self) -> Option<String> {
        match self {
            Hub::InProcess(_) => None,
            Hub::External { child, .. } => Some(child.id().to_string()),
        }
    }

    async fn shutdown(self) {
        match self {
            Hub::InProcess(s) => s.shutdown().await,
            Hub::External { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// HubSpot calls by endpoint, from the service's own `spoke_hubspot_requests_total` metric.
async fn hubspot_calls(admin: std::net::SocketAddr) -> Value {
    let text = spoke_platform::testing::http_get(admin, "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    let mut out: std::collections::BTreeMap<String, u64> = Default::default();
    for line in text
        .lines()
        .filter(|l| l.starts_with("spoke_hubspot_requests_total{"))
    {
        let endpoint = line
            .split("endpoint=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(endpoint.to_owned()).or_default() += n as u64;
    }
    json!(out)
}

async fn insert(
    hub: &Hub,
    object: &str,
    n: usize,
    f: impl Fn(usize) -> Map<String, Value>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let batch: Vec<_> = (i..end).map(&f).collect();
        ids.extend(hub.insert(object, batch).await?);
        i = end;
    }
    Ok(ids)
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// One run: Run Now, wait for the end, report times, calls, stats and peak RSS of both processes.
async fn run_once(
    client: &mut FilteringServiceClient<tonic::transport::Channel>,
    hub: &Hub,
    args: &Args,
    admin: std::net::SocketAddr,
    n: usize,
) -> anyhow::Result<Value> {
    let calls_before = hubspot_calls(admin).await;
    reset_peak_rss();
    let sandbox_peak = Arc::new(AtomicU64::new(0));
    let sampler = hub.pid().map(|pid| {
        let peak = sandbox_peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(status_kib(&pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let t = Instant::now();
    let run = client
        .run_now(auth(
            pb::RunNowRequest {
                idempotency_key: format!("bench-{n}"),
                objects: vec![],
            },
            Role::Admin,
        ))
        .await?
        .into_inner()
        .run
        .context("no run")?;
    let run = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = client
            .get_run(auth(
                pb::GetRunRequest {
                    run_id: run.run_id.clone(),
                },
                Role::Admin,
            ))
            .await?
            .into_inner()
            .run
            .context("no run")?;
        if r.state != FilteringRunState::Queued as i32
            && r.state != FilteringRunState::Running as i32
        {
            break r;
        }
    };
    let run_secs = t.elapsed().as_secs_f64();
    let run_peak_kib = status_kib("self", "VmHWM:");
    if let Some(s) = sampler {
        s.abort();
    }
    let records = (args.companies + args.contacts + args.deals) as f64;
    let (passed, matched): (i64, i64) = run
        .stats
        .iter()
        .filter(|s| s.object != ObjectType::Deals as i32)
        .fold((0, 0), |a, s| {
            (a.0 + s.records_passed_filter, a.1 + s.records_matched)
        });
    let calls_after = hubspot_calls(admin).await;
    let calls: Map<String, Value> = calls_after
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let before = calls_before[k].as_u64().unwrap_or(0);
                    (k.clone(), json!(v.as_u64().unwrap_or(0) - before))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "run_state": FilteringRunState::try_from(run.state).map(|s| s.as_str_name()).unwrap_or("?"),
        "run_message": run.message,
        "run_wall_secs": (run_secs * 10.0).round() / 10.0,
        "records_per_sec": (records / run_secs).round(),
        "match_rate_percent": if passed == 0 { 0.0 } else { matched as f64 * 100.0 / passed as f64 },
        "hubspot_calls": calls,
        "stats": run.stats.iter().map(|s| json!({"object": s.object, "scanned": s.records_scanned,
            "matched": s.records_matched, "added": s.matches_added, "linked": s.profiles_linked,
            "deals_matched": s.deals_matched})).collect::<Vec<_>>(),
        "peak_rss_mib_filtering_process_during_run": mib(run_peak_kib),
        "peak_rss_mib_sandbox_process_during_run": hub.pid().map(|_| mib(sandbox_peak.load(Ordering::Relaxed))),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kafka = MockKafka::start(1, 3).map_err(anyhow::Error::msg)?;
    let db = fresh_database().await?;
    let seed: Seed = serde_json::from_value(json!({"portals": [{
        "portalId": PORTAL, "privateAppTokens": [TOKEN],
        "owners": [{"id": "501", "email": "ada@example.com", "firstName": "Ada", "lastName": "L", "userId": 9001}],
    }]}))?;
    let hub = Hub::start(args.sandbox_bin.as_ref(), seed).await?;

    let t = Instant::now();
    let company_ids = insert(&hub, "companies", args.companies, |i| {
        obj(json!({"domain": format!("c{i}.example.com"), "name": format!("Company {i}"), "hubspot_owner_id": "501"}))
    })
    .await?;
    insert(&hub, "contacts", args.contacts, |i| {
        obj(json!({"email": format!("p{i}@example.com"), "firstname": "P", "lastname": format!("{i}")}))
    })
    .await?;
    let deal_ids = insert(&hub, "deals", args.deals, |i| {
        obj(json!({"dealname": format!("Deal {i}"), "hubspot_owner_id": "501"}))
    })
    .await?;
    if !company_ids.is_empty() {
        let n = company_ids.len();
        for (chunk_no, chunk) in deal_ids.chunks(10_000).enumerate() {
            let base = chunk_no * 10_000;
            let primary: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(j, d)| (d.clone(), company_ids[(base + j) % n].clone()))
                .collect();
            hub.associate(
                primary,
                Some(spoke_hubspot::type_ids::DEAL_TO_COMPANY_PRIMARY),
            )
            .await?;
            let second: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .filter(|(j, _)| (base + j) % 5 == 0)
                .map(|(j, d)| (d.clone(), company_ids[(base + j + 1) % n].clone()))
                .collect();
            hub.associate(second, None).await?;
        }
    }
    let seed_secs = t.elapsed().as_secs_f64();

    let config = Config {
        common: test_config(&db, kafka.bootstrap()),
        hubspot: HubSpotSettings {
            api_base_url: hub.base_url(),
            app_base_url: hub.base_url(),
        },
        filtering: FilteringSettings {
            static_portals: vec![StaticPortal {
                org: ORG.into(),
                portal_id: PORTAL,
                token: TOKEN.into(),
            }],
            budget: "off".into(),
            poll_interval_ms: 200,
            batch_size: args.batch_size,
            ..FilteringSettings::default()
        },
        ..Config::default()
    };
    let app = Application::build(config).await?;
    let (grpc, admin, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.filtering.v1.FilteringService")
        .await
        .map_err(anyhow::Error::msg)?;
    let mut client = FilteringServiceClient::connect(format!("http://{grpc}")).await?;

    // Profiles: 80% of the HubSpot records have one; the rest are provider-only profiles.
    reset_peak_rss();
    let t = Instant::now();
    let half = args.profiles / 2;
    let hub_companies = args.companies * 4 / 5;
    let hub_contacts = args.contacts * 4 / 5;
    let total = args.profiles;
    let make_chunk = move |start: usize| {
        let profiles = (start..(start + 1000).min(total))
            .map(|i| {
                let (kind, fields) = if i < half {
                    let domain = if i < hub_companies {
                        format!("c{i}.example.com")
                    } else {
                        format!("x{i}.example.org")
                    };
                    (ObjectType::Companies, vec![("domain".to_owned(), domain)])
                } else {
                    let j = i - half;
                    let email = if j < hub_contacts {
                        format!("p{j}@example.com")
                    } else {
                        format!("x{j}@example.org")
                    };
                    (ObjectType::Contacts, vec![("email".to_owned(), email)])
                };
                Profile {
                    profile_id: format!("P{i}"),
                    kind: kind as i32,
                    fields: fields.into_iter().collect(),
                    ..Profile::default()
                }
            })
            .collect();
        pb::LoadProfilesRequest {
            profiles,
            deletes: vec![],
        }
    };
    // Calls of PROFILES_PER_CALL, as `spokectl profiles load` sends them (each call must end
    // inside the server's 60 s deadline); chunks are generated as they are sent.
    let mut upserted = 0;
    for call_start in (0..total).step_by(spoke_filtering::profiles::PROFILES_PER_CALL) {
        let call_end = (call_start + spoke_filtering::profiles::PROFILES_PER_CALL).min(total);
        let chunks = (call_start..call_end).step_by(1000).map(make_chunk);
        upserted += client
            .load_profiles(auth(futures::stream::iter(chunks), Role::Service))
            .await?
            .into_inner()
            .upserted;
    }
    let load_secs = t.elapsed().as_secs_f64();
    let load_peak_kib = status_kib("self", "VmHWM:");

    client
        .set_filtering_enabled(auth(
            pb::SetFilteringEnabledRequest {
                objects: vec![],
                enabled: true,
            },
            Role::Admin,
        ))
        .await?;
    let mut reports = Vec::new();
    for n in 0..args.runs.max(1) {
        reports.push(run_once(&mut client, &hub, &args, admin, n).await?);
    }
    let out = json!({
        "companies": args.companies, "contacts": args.contacts, "deals": args.deals, "profiles": args.profiles,
        "batch_size": args.batch_size,
        "sandbox": if args.sandbox_bin.is_some() { "separate process" } else { "in process" },
        "profiles_upserted": upserted,
        "seed_secs": (seed_secs * 10.0).round() / 10.0,
        "profile_load_secs": (load_secs * 10.0).round() / 10.0,
        "profiles_per_sec": (args.profiles as f64 / load_secs).round(),
        "peak_rss_mib_during_load": mib(load_peak_kib),
        "runs": reports,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    stop.cancel();
    let _ = running.await;
    hub.shutdown().await;
    Ok(())
}
