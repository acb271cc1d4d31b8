//! Export benchmark: N contacts (default 100,000), half already in HubSpot, through the export
//! service end to end (gRPC CreateExport → Kafka → checked batches → writer → sandbox) with real
//! Postgres and Kafka (librdkafka mock cluster). Prints one JSON object.
//!
//! `cargo bench -p spoke-export --bench export` (release). Environment: `SPOKE_BENCH_RECORDS`
//! (default 100000), `SPOKE_BENCH_RATE_LIMIT=1` to enforce 110 calls / 10 s in the sandbox and pace
//! the client to it. The connection, mapping and dedupe services are stood in for as in the tests
//! (see `tests/common/mod.rs`), so the number measures the export service and HubSpot writes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use spoke_proto::common::v1::{CheckDecision, ObjectType};
use spoke_proto::export::v1::CreateExportRequest;

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

fn main() {
    // RUST_LOG=warn shows what the service logs while the benchmark runs.
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let n: usize = std::env::var("SPOKE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let limited = std::env::var("SPOKE_BENCH_RATE_LIMIT").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let h = Harness::start_full(
            |w| {
                w.workers = 4;
                w.chunk = 500;
                w.calls_in_flight = 2;
                // The production lease (the test harness shortens it for crash tests): under a
                // rate limit a chunk can wait on the budget longer than a short lease, and then
                // a second worker retakes it and re-sends its creates (409s, splits, recovery reads).
                w.lease_secs = 120.0;
            },
            limited,
        )
        .await;
        let ctl = h.sandbox.control();
        // Half the contacts exist in HubSpot already (found by email by dedupe: update).
        let existing: Vec<serde_json::Map<String, serde_json::Value>> = (0..n / 2)
            .map(|i| {
                let mut m = serde_json::Map::new();
                m.insert("email".into(), format!("p{}@bench.example", i * 2).into());
                m.insert("phone".into(), "111".into());
                m
            })
            .collect();
        let ids = ctl.insert_records(PORTAL, "contacts", existing).expect("seed");
        let targets: Arc<HashMap<String, String>> =
            Arc::new((0..n / 2).map(|i| ((i * 2).to_string(), ids[i].clone())).collect());
        let t = targets.clone();
        h.set_decide(move |r| match t.get(&r.record_id) {
            Some(id) => (CheckDecision::UpdateExisting, id.clone()),
            None => (CheckDecision::Create, String::new()),
        });
        let records = (0..n)
            .map(|i| {
                contact(
                    &i.to_string(),
                    &[
                        ("email", &format!("p{i}@bench.example")),
                        ("first_name", "Bench"),
                        ("last_name", &format!("Person {i}")),
                        ("company_name", "Bench Corp"),
                        ("job_title", "Engineer"),
                        ("mobile", "+1 555 0100"),
                    ],
                )
            })
            .collect();
        ctl.clear_requests();
        let mut client = h.client().await;
        let started = Instant::now();
        let job = client
            .create_export(authed(
                CreateExportRequest {
                    idempotency_key: "bench".into(),
                    object: ObjectType::Contacts as i32,
                    records,
                    ..Default::default()
                },
                MAPPED_USER,
            ))
            .await
            .expect("create")
            .into_inner()
            .job
            .expect("job");
        let accepted = started.elapsed();
        let done = h.wait_terminal(&job.job_id, 3600).await;
        let wall = started.elapsed().as_secs_f64();
        let c = done.counts.unwrap_or_default();
        let log = ctl.requests(1_000_000, None);
        let calls = log.iter().filter(|r| r.path.starts_with("/crm/")).count();
        let throttled = log.iter().filter(|r| r.status == 429).count();
        // Where the calls went: "METHOD path status" with record ids folded, for reading a
        // regression at a glance.
        let mut by_endpoint = std::collections::BTreeMap::<String, u64>::new();
        for r in log.iter().filter(|r| r.path.starts_with("/crm/")) {
            let path: Vec<&str> = r
                .path
                .split('/')
                .map(|seg| if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() { "{id}" } else { seg })
                .collect();
            *by_endpoint
                .entry(format!("{} {} {}", r.method, path.join("/"), r.status))
                .or_default() += 1;
        }
        let dups = ctl.duplicates(PORTAL, "contacts").expect("duplicates").len();
        let live = ctl.counts(PORTAL).expect("counts").live["contacts"];
        // Floor: every HubSpot call spaced at 110 per 10 s.
        let floor = calls as f64 / 11.0;
        let out = serde_json::json!({
            "benchmark": "export",
            "records": n,
            "existing": n / 2,
            "rate_limited": limited,
            "wall_seconds": (wall * 100.0).round() / 100.0,
            "create_export_accept_seconds": (accepted.as_secs_f64() * 100.0).round() / 100.0,
            "records_per_second": ((n as f64 / wall) * 10.0).round() / 10.0,
            "outcomes": {"created": c.created, "updated": c.updated, "skipped": c.skipped, "failed": c.failed},
            "hubspot_calls": calls,
            "hubspot_429s": throttled,
            "hubspot_calls_by_endpoint": by_endpoint,
            "rate_limit_floor_seconds": if limited { Some((floor * 10.0).round() / 10.0) } else { None },
            "vs_floor": if limited { Some(((wall / floor) * 100.0).round() / 100.0) } else { None },
            "sandbox_contacts": live,
            "duplicates_in_sandbox": dups,
            "peak_rss_mib_bench_process": peak_rss_kib() / 1024,
            "note": "one process: export service, sandbox, stand-in dedupe; Postgres separate"
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    });
}
