//! Filtering benchmark: seeds an in-process sandbox (rate limits off) with companies, contacts and
//! deals, loads provider profiles through `LoadProfiles`, runs one filtering run and prints JSON
//! (wall times, records/s, match rate, peak RSS of this process, which also holds the sandbox).
//!
//! `cargo run -p spoke-filtering --features bench --bin filtering-bench -- --companies 1000000
//! --contacts 1000000 --deals 500000 --profiles 5000000` (needs Postgres like the tests).

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
}

const PORTAL: u64 = 4242;
const ORG: &str = "org-bench";
const TOKEN: &str = "pat-na1-bench";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn auth<T>(msg: T, role: Role) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let t = dev_token("bench", ORG, &[role]);
    if let Ok(v) = format!("Bearer {t}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn insert(
    sandbox: &Sandbox,
    object: &str,
    n: usize,
    f: impl Fn(usize) -> Map<String, Value>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let batch: Vec<_> = (i..end).map(&f).collect();
        ids.extend(sandbox.control().insert_records(PORTAL, object, batch)?);
        i = end;
    }
    Ok(ids)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kafka = MockKafka::start(1, 3).map_err(anyhow::Error::msg)?;
    let db = fresh_database().await?;
    let seed: Seed = serde_json::from_value(json!({"portals": [{
        "portalId": PORTAL, "privateAppTokens": [TOKEN],
        "owners": [{"id": "501", "email": "ada@example.com", "firstName": "Ada", "lastName": "L", "userId": 9001}],
        "properties": {"deals": [{"name": "associatedcompanyid", "label": "Company", "type": "number", "fieldType": "number"}]}
    }]}))?;
    let sandbox = Sandbox::start(SandboxConfig {
        seed,
        ..SandboxConfig::default()
    })
    .await?;

    let t = Instant::now();
    let company_ids = insert(&sandbox, "companies", args.companies, |i| {
        json!({"domain": format!("c{i}.example.com"), "name": format!("Company {i}"), "hubspot_owner_id": "501"})
            .as_object().cloned().unwrap_or_default()
    })?;
    insert(&sandbox, "contacts", args.contacts, |i| {
        json!({"email": format!("p{i}@example.com"), "firstname": "P", "lastname": format!("{i}")})
            .as_object()
            .cloned()
            .unwrap_or_default()
    })?;
    insert(&sandbox, "deals", args.deals, |i| {
        let company = company_ids
            .get(i % company_ids.len().max(1))
            .cloned()
            .unwrap_or_default();
        json!({"dealname": format!("Deal {i}"), "associatedcompanyid": company})
            .as_object()
            .cloned()
            .unwrap_or_default()
    })?;
    let seed_secs = t.elapsed().as_secs_f64();

    let config = Config {
        common: test_config(&db, kafka.bootstrap()),
        hubspot: HubSpotSettings {
            api_base_url: sandbox.base_url(),
            app_base_url: sandbox.base_url(),
        },
        filtering: FilteringSettings {
            static_portals: vec![StaticPortal {
                org: ORG.into(),
                portal_id: PORTAL,
                token: TOKEN.into(),
            }],
            budget: "off".into(),
            poll_interval_ms: 200,
            ..FilteringSettings::default()
        },
        ..Config::default()
    };
    let app = Application::build(config).await?;
    let (grpc, stop) = (app.grpc_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.filtering.v1.FilteringService")
        .await
        .map_err(anyhow::Error::msg)?;
    let mut client = FilteringServiceClient::connect(format!("http://{grpc}")).await?;

    // Profiles: 80% of the HubSpot records have one; the rest are provider-only profiles.
    let t = Instant::now();
    let half = args.profiles / 2;
    let hub_companies = args.companies * 4 / 5;
    let hub_contacts = args.contacts * 4 / 5;
    let chunks = (0..args.profiles).step_by(1000).map(move |start| {
        let profiles = (start..(start + 1000).min(args.profiles))
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
    });
    let loaded = client
        .load_profiles(auth(futures::stream::iter(chunks), Role::Service))
        .await?
        .into_inner();
    let load_secs = t.elapsed().as_secs_f64();

    client
        .set_filtering_enabled(auth(
            pb::SetFilteringEnabledRequest {
                objects: vec![],
                enabled: true,
            },
            Role::Admin,
        ))
        .await?;
    let t = Instant::now();
    let run = client
        .run_now(auth(
            pb::RunNowRequest {
                idempotency_key: "bench".into(),
                objects: vec![],
            },
            Role::Admin,
        ))
        .await?
        .into_inner()
        .run
        .context("no run")?;
    let run = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    let records = (args.companies + args.contacts + args.deals) as f64;
    let (passed, matched): (i64, i64) = run
        .stats
        .iter()
        .filter(|s| s.object != ObjectType::Deals as i32)
        .fold((0, 0), |a, s| {
            (a.0 + s.records_passed_filter, a.1 + s.records_matched)
        });
    let out = json!({
        "companies": args.companies, "contacts": args.contacts, "deals": args.deals, "profiles": args.profiles,
        "profiles_upserted": loaded.upserted,
        "seed_secs": seed_secs,
        "profile_load_secs": load_secs,
        "profiles_per_sec": args.profiles as f64 / load_secs,
        "run_state": FilteringRunState::try_from(run.state).map(|s| s.as_str_name()).unwrap_or("?"),
        "run_message": run.message,
        "run_wall_secs": run_secs,
        "records_per_sec": records / run_secs,
        "match_rate_percent": if passed == 0 { 0.0 } else { matched as f64 * 100.0 / passed as f64 },
        "stats": run.stats.iter().map(|s| json!({"object": s.object, "scanned": s.records_scanned,
            "matched": s.records_matched, "linked": s.profiles_linked, "deals_matched": s.deals_matched})).collect::<Vec<_>>(),
        "peak_rss_mib_process_incl_sandbox": peak_rss_kib() as f64 / 1024.0,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    stop.cancel();
    let _ = running.await;
    sandbox.shutdown().await;
    Ok(())
}
