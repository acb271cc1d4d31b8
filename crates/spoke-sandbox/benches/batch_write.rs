//! Batch-write throughput of the sandbox over HTTP: 4 concurrent clients create contacts in batches of
//! 100. Prints `{"records", "seconds", "records_per_sec", ...}`. Records: `SANDBOX_BENCH_RECORDS` (200000).

use std::time::Instant;

use serde_json::{Value, json};
use spoke_sandbox::{PortalSeed, Sandbox, SandboxConfig, UserSeed};

const CLIENTS: usize = 4;
const BATCH: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = std::env::var("SANDBOX_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let mut portal = PortalSeed::new(1);
    portal.users.push(UserSeed {
        id: "1".into(),
        email: "bench@example.com".into(),
        first_name: String::new(),
        last_name: String::new(),
        super_admin: true,
        role_ids: vec![],
        primary_team_id: None,
        owner_id: None,
    });
    sandbox.control().seed_portal(&portal)?;
    let token = sandbox.control().issue_tokens(1, None)?.access_token;
    let url = format!(
        "{}/crm/v3/objects/contacts/batch/create",
        sandbox.base_url()
    );
    let per_client = records / CLIENTS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut written = 0usize;
            while written < per_client {
                let n = BATCH.min(per_client - written);
                let inputs: Vec<Value> = (written..written + n)
                    .map(|i| {
                        json!({"properties": {
                            "email": format!("c{c}-{i}@bench.example"),
                            "firstname": format!("First{i}"),
                            "lastname": format!("Last{c}"),
                            "company": "Bench Inc",
                            "jobtitle": "Engineer",
                        }})
                    })
                    .collect();
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"inputs": inputs}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status().as_u16() == 201,
                    "batch create answered {}",
                    resp.status()
                );
                let _ = resp.bytes().await?;
                written += n;
            }
            anyhow::Ok(written)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = sandbox.control().counts(1)?.live["contacts"];
    anyhow::ensure!(stored == total, "stored {stored} of {total}");
    // A search over the full data set, to show it stays interactive at this size.
    let search_started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/contacts/search", sandbox.base_url()))
        .bearer_auth(&token)
        .json(&json!({"filterGroups": [{"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "Last3"}]}], "limit": 100}))
        .send()
        .await?;
    let found: Value = resp.json().await?;
    let search_ms = search_started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({
            "records": total,
            "clients": CLIENTS,
            "batch": BATCH,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "records_per_sec": (total as f64 / seconds).round(),
            "full_scan_search_ms": search_ms.round(),
            "search_total": found["total"],
        })
    );
    sandbox.shutdown().await;
    Ok(())
}
