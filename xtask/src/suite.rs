//! The test suite (`cargo xtask test`, what CI runs), `verify`, and the demo scenario.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spoke_e2e::target_dir;

use crate::stack::Stack;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn run(what: &str, cmd: &mut Command) -> Result<Duration> {
    let started = Instant::now();
    println!("\n==> {what}");
    let status = cmd
        .current_dir(workspace())
        .status()
        .with_context(|| format!("starting: {what}"))?;
    let took = started.elapsed();
    if !status.success() {
        bail!("{what} failed ({status}) after {took:.0?}");
    }
    println!("==> {what}: ok in {took:.0?}");
    Ok(took)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Records per object of the demo run by the suite (the seeded portal holds 2,500 of them).
const CI_DEMO_RECORDS: u64 = 3000;

/// The whole suite: unit, integration and end-to-end tests of every crate (one build), then the
/// Helm chart checks.
pub async fn test() -> Result<()> {
    let started = Instant::now();
    let admin = crate::postgres::ensure(&target_dir())?;
    let dropped = crate::postgres::drop_test_databases(&admin).await?;
    if dropped > 0 {
        println!("postgres: dropped {dropped} leftover test databases");
    }
    let mut timings = Vec::new();
    // One build of everything; the test run below reuses it.
    timings.push((
        "build",
        run(
            "cargo build --workspace --all-targets",
            cargo().args(["build", "--workspace", "--all-targets"]),
        )?,
    ));
    // cargo-nextest runs each test in its own process with a hang timeout (.config/nextest.toml);
    // plain `cargo test` where it is not installed.
    let nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut tests = cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        tests.args(["test", "--workspace", "--no-fail-fast"]);
    }
    tests
        .env("SPOKE_TEST_DATABASE_URL", &admin)
        .env("RUST_BACKTRACE", "1");
    timings.push(("tests", run("workspace tests", &mut tests)?));
    if nextest {
        timings.push((
            "doc",
            run(
                "doc tests",
                cargo()
                    .args(["test", "--workspace", "--doc"])
                    .env("SPOKE_TEST_DATABASE_URL", &admin),
            )?,
        ));
    }
    let chart = workspace().join("tests/chart/run.sh");
    if chart.exists() {
        timings.push((
            "chart",
            run(
                "helm chart checks (tests/chart/run.sh)",
                Command::new("bash").arg(&chart),
            )?,
        ));
    }
    // The README's first command in CI mode: the whole demo, non-interactive, at a smaller size;
    // it fails on any spokectl error or a duplicate in HubSpot, and stops the stack afterwards.
    let demo_started = Instant::now();
    println!("\n==> demo (cargo xtask demo --stop --records {CI_DEMO_RECORDS})");
    crate::stack::demo(true, CI_DEMO_RECORDS).await?;
    timings.push(("demo", demo_started.elapsed()));
    let dropped = crate::postgres::drop_test_databases(&admin).await?;
    println!(
        "\nsuite passed in {:.0?} ({} test databases removed)",
        started.elapsed(),
        dropped
    );
    for (what, took) in timings {
        println!("  {what:<6} {took:.0?}");
    }
    Ok(())
}

/// fmt --check, clippy -D warnings, then the suite.
pub async fn verify() -> Result<()> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy --all-targets -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    test().await
}

/// Runs `spokectl ARGS` for the demo admin, echoing the command line; fails on a non-zero exit.
fn spokectl(args: &[&str]) -> Result<()> {
    let bin = spoke_e2e::build_binaries()
        .map_err(anyhow::Error::msg)?
        .join("spokectl");
    println!("\n$ spokectl {}", args.join(" "));
    let status = Command::new(bin)
        .args(args)
        .env("SPOKE_ORG", "demo-org")
        .env("SPOKE_USER", "admin-1")
        .env("SPOKE_EMAIL", crate::stack::DEMO_ADMIN_EMAIL)
        .env("SPOKE_ROLES", "admin,user")
        .current_dir(workspace())
        .status()?;
    if !status.success() {
        bail!("spokectl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Waits until every consuming service's connection mirror shows the demo org connected and
/// enabled (they learn it from `spoke.connection.events.v1`, seconds after the fact).
async fn wait_connection_known(stack: &Stack) -> Result<()> {
    let started = Instant::now();
    for schema in ["mapping", "dedupe", "export", "filtering"] {
        let opts: sqlx::postgres::PgConnectOptions = stack.database_url.parse()?;
        let pool = sqlx::PgPool::connect_with(opts.options([("search_path", schema)])).await?;
        loop {
            let ok: Option<bool> = sqlx::query_scalar(
                "SELECT status = 'connected' AND enabled FROM connection_mirror WHERE org_id = 'demo-org'",
            )
            .fetch_optional(&pool)
            .await?;
            if ok == Some(true) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{schema} did not learn of the connection within 60 s; see target/spoke/logs/{schema}.log"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "\nevery service knows the connection ({:.1?} after enabling)",
        started.elapsed()
    );
    Ok(())
}

/// Live records per object and keys held by more than one record, from the sandbox.
async fn sandbox_report(sandbox_port: u16) -> Result<()> {
    let addr = ([127, 0, 0, 1], sandbox_port).into();
    let portal = crate::stack::DEMO_PORTAL;
    let (_, counts) =
        spoke_platform::testing::http_get(addr, &format!("/_sandbox/portals/{portal}/counts"))
            .await?;
    println!("\nHubSpot sandbox portal {portal}: {counts}");
    for object in ["companies", "contacts"] {
        let (_, body) = spoke_platform::testing::http_get(
            addr,
            &format!("/_sandbox/portals/{portal}/duplicates/{object}"),
        )
        .await?;
        let groups = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["duplicates"].as_array().map(Vec::len))
            .unwrap_or(usize::MAX);
        println!("  {object:<10} duplicate keys in HubSpot: {groups}");
        if groups != 0 {
            bail!("the sandbox holds duplicate {object}: {body}");
        }
    }
    Ok(())
}

/// The demo: connect the sandbox portal, map users, export companies and contacts (part of them
/// already in HubSpot) with progress, show the outcome and that HubSpot holds no duplicates, then
/// load the profiles and run filtering.
pub async fn demo_scenario(stack: &Stack, records: u64) -> Result<()> {
    crate::stack::wait_all(stack).await?;
    let dir = target_dir().join("spoke").join("demo");
    std::fs::create_dir_all(&dir)?;
    let companies = dir.join("companies.ndjson").display().to_string();
    let contacts = dir.join("contacts.ndjson").display().to_string();
    let (n, seed) = (records.to_string(), crate::stack::DEMO_SEED.to_string());

    spokectl(&["status"])?;
    spokectl(&["connect", "--auto"])?;
    spokectl(&[
        "users",
        "add",
        "admin-1:admin-1@example.com:admin",
        "seller-1:sam.seller@example.com",
        "rep-9:nobody@elsewhere.example",
    ])?;
    spokectl(&["users", "reset"])?;
    spokectl(&["users", "map"])?;
    spokectl(&["enable"])?;
    wait_connection_known(stack).await?;
    println!(
        "\nHubSpot already holds the first {} companies and contacts of the data universe; the export overlaps them.",
        crate::stack::EXISTING
    );
    spokectl(&[
        "gen",
        "companies",
        "--count",
        &n,
        "--seed",
        &seed,
        "--out",
        &companies,
    ])?;
    spokectl(&[
        "gen", "contacts", "--count", &n, "--seed", &seed, "--out", &contacts,
    ])?;
    let started = Instant::now();
    spokectl(&[
        "export",
        "create",
        &companies,
        "--object",
        "companies",
        "--on-duplicate",
        "update",
        "--label",
        "demo companies",
    ])?;
    spokectl(&[
        "export",
        "create",
        &contacts,
        "--object",
        "contacts",
        "--on-duplicate",
        "update",
        "--label",
        "demo contacts",
    ])?;
    println!(
        "\nexported {} records in {:.1?}",
        2 * records,
        started.elapsed()
    );
    spokectl(&["export", "list"])?;
    sandbox_report(stack.sandbox_port()).await?;

    // The provider's bulk loader is a service, not a person.
    spokectl(&["profiles", "load", &companies, "--role", "service"])?;
    spokectl(&["profiles", "load", &contacts, "--role", "service"])?;
    spokectl(&["filtering", "enable", "companies", "contacts"])?;
    spokectl(&["filtering", "run-now", "--wait"])?;
    spokectl(&["filtering", "stats"])?;

    println!("\nlogs:    target/spoke/logs/<service>.log");
    println!("metrics: http://127.0.0.1:9101/metrics (connection) .. :9105 (filtering)");
    println!(
        "traces:  set SPOKE_TELEMETRY__OTLP_ENDPOINT (e.g. an OpenTelemetry Collector, deploy/otel-collector.yaml) before `cargo xtask up`"
    );
    Ok(())
}
