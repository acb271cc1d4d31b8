//! The test suite (`cargo xtask test`, what CI runs), `verify`, and the demo scenario.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spoke_e2e::target_dir;
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::ConnectionEvent;
use spoke_proto::events::v1::connection_event::{Connected, Kind};
use sqlx::postgres::{PgConnectOptions, PgPool};

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
    timings.push((
        "tests",
        run(
            "cargo test --workspace",
            cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .env("SPOKE_TEST_DATABASE_URL", &admin)
                .env("RUST_BACKTRACE", "1"),
        )?,
    ));
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

async fn schema_pool(url: &str, schema: &str) -> Result<PgPool> {
    let opts: PgConnectOptions = url.parse()?;
    Ok(PgPool::connect_with(opts.options([("search_path", schema)])).await?)
}

/// The demo: the stack's health, then one event through the connection service's outbox to every
/// consuming service, exactly once.
pub async fn demo_scenario(stack: &Stack) -> Result<()> {
    crate::stack::wait_all(stack).await?;
    println!("all five services are SERVING (gRPC health) and ready (/readyz)");

    let connection = schema_pool(&stack.database_url, "connection").await?;
    let org = format!("demo-org-{}", std::process::id());
    let event = ConnectionEvent {
        org_id: org.clone(),
        portal_id: 101,
        occurred_at: Some(prost_types::Timestamp {
            seconds: chrono_now(),
            nanos: 0,
        }),
        actor: "demo".into(),
        kind: Some(Kind::Connected(Connected {
            primary_admin_user_id: "demo-admin".into(),
            hubspot_user_id: "1".into(),
            ui_domain: "app.hubspot.com".into(),
            time_zone: "US/Eastern".into(),
        })),
    };
    let mut tx = connection.begin().await?;
    let ce_id = Outbox::enqueue(&mut tx, topics::CONNECTION_EVENTS, &org, &event).await?;
    tx.commit().await?;
    println!("published ConnectionEvent {ce_id} for {org} through the connection service's outbox");

    let started = Instant::now();
    for schema in ["mapping", "dedupe", "export", "filtering"] {
        let pool = schema_pool(&stack.database_url, schema).await?;
        loop {
            let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE ce_id = $1")
                .bind(ce_id.to_string())
                .fetch_one(&pool)
                .await?;
            if seen == 1 {
                println!(
                    "  {schema:<10} consumed it once ({:.0?} after publishing)",
                    started.elapsed()
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{schema} did not consume the event within 60 s; see target/spoke/logs/{schema}.log"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("\nlogs:    target/spoke/logs/<service>.log");
    println!("metrics: http://127.0.0.1:9101/metrics (connection) .. :9105 (filtering)");
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
