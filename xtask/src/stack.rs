//! The local stack: Postgres, the dev broker, the HubSpot sandbox and the five services as
//! background processes with logs under `target/spoke/logs`, and the demo that drives it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use spoke_e2e::{DevBroker, Process, SERVICES, build_binaries, start_service_on, target_dir};
use spoke_platform::testing::{http_get, replace_database, wait_serving};

/// Fixed local ports: gRPC 50051.., admin 9101.., sandbox 8091, OAuth callback 8181.
const SANDBOX_PORT: u16 = 8091;
const CALLBACK_PORT: u16 = 8181;
/// The demo portal and its Super Admin (the demo org's admin).
pub const DEMO_PORTAL: u64 = 101;
/// Email of the demo admin, in the org and in HubSpot.
pub const DEMO_ADMIN_EMAIL: &str = "admin-1@example.com";
/// Seed of the demo's data universe.
pub const DEMO_SEED: u64 = 7;
/// Companies and contacts of the universe that HubSpot already holds.
pub const EXISTING: u64 = 2500;

fn ports(index: usize) -> (u16, u16) {
    (50051 + index as u16, 9101 + index as u16)
}

fn state_dir() -> PathBuf {
    target_dir().join("spoke")
}

fn state_file() -> PathBuf {
    state_dir().join("stack.json")
}

fn log_dir() -> PathBuf {
    state_dir().join("logs")
}

/// What `up` started, for `down` and `status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stack {
    /// The stack's database URL.
    pub database_url: String,
    /// Kafka bootstrap of the dev broker.
    pub bootstrap: String,
    /// Dev broker control API.
    pub broker_control: String,
    /// HubSpot sandbox base URL.
    pub sandbox_url: String,
    /// name → pid, in start order.
    pub pids: Vec<(String, u32)>,
    /// name → (gRPC, admin) ports.
    pub services: BTreeMap<String, (u16, u16)>,
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

fn load() -> Option<Stack> {
    let text = std::fs::read_to_string(state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

impl Stack {
    /// Port of the HubSpot sandbox.
    pub fn sandbox_port(&self) -> u16 {
        self.sandbox_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(SANDBOX_PORT)
    }
}

/// Starts everything; returns the stack description.
pub async fn up() -> Result<Stack> {
    if let Some(stack) = load()
        && stack.pids.iter().all(|(_, pid)| alive(*pid))
    {
        println!("stack already running (cargo xtask down to stop it)");
        return Ok(stack);
    }
    let target = target_dir();
    let admin = crate::postgres::ensure(&target)?;
    let database_url = replace_database(&admin, "spoke");
    create_database(&admin, "spoke").await?;

    println!("building binaries (cargo build --workspace --bins) ...");
    let started = Instant::now();
    build_binaries().map_err(anyhow::Error::msg)?;
    println!("built in {:.0?}", started.elapsed());

    let logs = log_dir();
    std::fs::create_dir_all(&logs)?;
    let mut pids = Vec::new();
    let broker = DevBroker::start(&logs).map_err(anyhow::Error::msg)?;
    let (bootstrap, broker_control) = (broker.bootstrap.clone(), broker.control.clone());
    pids.push(("devbroker".to_string(), broker.process.detach()));
    println!("dev broker   {bootstrap} (control {broker_control})");

    // A realistic portal: owners, users (the demo admin is its Super Admin) and the first
    // profiles of the demo universe already in HubSpot, so the demo's export meets duplicates.
    let seed = state_dir().join("demo-seed.json");
    let bin = build_binaries().map_err(anyhow::Error::msg)?;
    let status = std::process::Command::new(bin.join("spokectl"))
        .args([
            "gen-seed",
            "--portal",
            &DEMO_PORTAL.to_string(),
            "--admin-email",
            DEMO_ADMIN_EMAIL,
        ])
        .args([
            "--companies",
            &EXISTING.to_string(),
            "--contacts",
            &EXISTING.to_string(),
        ])
        .args(["--seed", &DEMO_SEED.to_string()])
        .arg("--out")
        .arg(&seed)
        .status()?;
    anyhow::ensure!(status.success(), "spokectl gen-seed failed");
    let sandbox = Process::start(
        "sandbox",
        "spoke-sandbox",
        &[
            "--port",
            &SANDBOX_PORT.to_string(),
            "--seed",
            &seed.display().to_string(),
            "--search-lag-ms",
            "1000",
        ],
        &BTreeMap::new(),
        &logs,
    )
    .map_err(anyhow::Error::msg)?;
    pids.push(("sandbox".to_string(), sandbox.detach()));
    let sandbox_url = format!("http://127.0.0.1:{SANDBOX_PORT}");
    println!("sandbox      {sandbox_url}");

    let mut services = BTreeMap::new();
    let mut started_services = Vec::new();
    for (i, (name, _)) in SERVICES.iter().enumerate() {
        let p = ports(i);
        let mut extra = BTreeMap::new();
        extra.insert(
            "SPOKE_TELEMETRY__LOG_FORMAT".to_string(),
            "pretty".to_string(),
        );
        extra.insert(
            "SPOKE_HUBSPOT__API_BASE_URL".to_string(),
            sandbox_url.clone(),
        );
        extra.insert(
            "SPOKE_HUBSPOT__APP_BASE_URL".to_string(),
            sandbox_url.clone(),
        );
        extra.insert(
            "SPOKE_CONNECTION__ENDPOINT".to_string(),
            format!("http://127.0.0.1:{}", ports(0).0),
        );
        extra.insert(
            "SPOKE_MAPPING__ENDPOINT".to_string(),
            format!("http://127.0.0.1:{}", ports(1).0),
        );
        if *name == "connection" {
            extra.insert(
                "SPOKE_CALLBACK__PORT".to_string(),
                CALLBACK_PORT.to_string(),
            );
        }
        let svc = start_service_on(name, &database_url, &bootstrap, p, &extra, &logs)
            .map_err(anyhow::Error::msg)?;
        services.insert(name.to_string(), p);
        started_services.push(svc);
    }
    for svc in started_services {
        if let Err(e) = wait_serving(svc.grpc, svc.grpc_service).await {
            let log = svc.process.log().display().to_string();
            pids.push((svc.name.to_string(), svc.process.detach()));
            save(&Stack {
                database_url,
                bootstrap,
                broker_control,
                sandbox_url,
                pids,
                services,
            })?;
            bail!("{e}\nsee {log}; `cargo xtask down` stops what started");
        }
        pids.push((svc.name.to_string(), svc.process.detach()));
    }
    let stack = Stack {
        database_url,
        bootstrap,
        broker_control,
        sandbox_url,
        pids,
        services,
    };
    save(&stack)?;
    print_table(&stack).await;
    println!("logs: {}", logs.display());
    Ok(stack)
}

fn save(stack: &Stack) -> Result<()> {
    std::fs::create_dir_all(state_dir())?;
    std::fs::write(state_file(), serde_json::to_vec_pretty(stack)?)?;
    Ok(())
}

/// (Re)creates the stack's database: the sandbox and the dev broker keep their data in memory,
/// so a stack starts from nothing everywhere.
async fn create_database(admin: &str, name: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .context("connecting to Postgres")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn print_table(stack: &Stack) {
    println!("\n{:<12} {:<18} {:<18} ready", "service", "gRPC", "admin");
    for (name, (g, a)) in &stack.services {
        let ready = match http_get(([127, 0, 0, 1], *a).into(), "/readyz").await {
            Ok((200, _)) => "ready".to_string(),
            Ok((code, body)) => format!("NOT READY ({code}): {}", body.replace('\n', "; ")),
            Err(e) => format!("DOWN: {e}"),
        };
        println!("{name:<12} 127.0.0.1:{g:<8} 127.0.0.1:{a:<8} {ready}");
    }
    println!();
}

/// Stops the stack: services first, then the sandbox and the broker.
pub fn down() -> Result<()> {
    let Some(stack) = load() else {
        println!("no stack is running (no {})", state_file().display());
        return Ok(());
    };
    for (name, pid) in stack.pids.iter().rev() {
        if !alive(*pid) {
            continue;
        }
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(*pid) && Instant::now() < deadline {
            // Reap if it is our child (it is not, after `up` returned); otherwise poll.
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(*pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            println!("{name}: killed after 30 s");
        } else {
            println!("{name}: stopped");
        }
    }
    std::fs::remove_file(state_file())?;
    Ok(())
}

/// Prints the health of the running stack.
pub async fn status() -> Result<()> {
    match load() {
        Some(stack) => {
            print_table(&stack).await;
            Ok(())
        }
        None => bail!("no stack is running; start it with `cargo xtask up`"),
    }
}

/// Starts the stack and runs the demo.
pub async fn demo(stop: bool, records: u64) -> Result<()> {
    let stack = up().await?;
    let result = crate::suite::demo_scenario(&stack, records).await;
    if stop {
        down()?;
    } else {
        println!("The stack keeps running. Stop it with: cargo xtask down");
    }
    result
}

/// Waits for every named service to be SERVING.
pub async fn wait_all(stack: &Stack) -> Result<()> {
    for (name, service) in SERVICES {
        let (g, _) = stack.services[*name];
        wait_serving(([127, 0, 0, 1], g).into(), service)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}
