//! `spoke-sandbox` binary: serves the HubSpot emulator until SIGTERM/SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use spoke_sandbox::{OAuthApp, RateLimits, Sandbox, SandboxConfig, Seed};

/// HubSpot API emulator for Spoke's tests, benchmarks and demo.
#[derive(Debug, Parser)]
#[command(name = "spoke-sandbox", version)]
struct Args {
    /// Listen port (0 picks a free one).
    #[arg(long, env = "SPOKE_SANDBOX_PORT", default_value_t = 8091)]
    port: u16,
    /// Listen address.
    #[arg(long, env = "SPOKE_SANDBOX_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Seed JSON file (format: see the crate README and seed/example.json).
    #[arg(long, env = "SPOKE_SANDBOX_SEED")]
    seed: Option<PathBuf>,
    /// Delay before writes become visible to search, in ms.
    #[arg(long, default_value_t = 0)]
    search_lag_ms: u64,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 1800)]
    token_ttl_secs: u64,
    /// Ten-secondly limit per portal, e.g. `110/10s`; `off` disables 429s (headers are still sent).
    #[arg(long, default_value = "off")]
    rate_limit: String,
    /// Search limit per portal, e.g. `5/1s` (only when --rate-limit is on).
    #[arg(long, default_value = "5/1s")]
    search_rate_limit: String,
    /// Daily call cap per portal (0 = none).
    #[arg(long, default_value_t = 0)]
    daily_limit: u64,
    /// OAuth client id accepted by the token endpoint.
    #[arg(
        long,
        env = "SPOKE_SANDBOX_CLIENT_ID",
        default_value = "sandbox-client-id"
    )]
    client_id: String,
    /// OAuth client secret accepted by the token endpoint.
    #[arg(
        long,
        env = "SPOKE_SANDBOX_CLIENT_SECRET",
        default_value = "sandbox-client-secret"
    )]
    client_secret: String,
    /// Portal /oauth/authorize consents to by default.
    #[arg(long)]
    default_portal: Option<u64>,
    /// Seed of the fault-injection RNG.
    #[arg(long, default_value_t = 42)]
    fault_seed: u64,
}

fn limits(args: &Args) -> anyhow::Result<RateLimits> {
    let mut l = RateLimits {
        daily: args.daily_limit,
        ..RateLimits::default()
    };
    if args.rate_limit != "off" {
        let (max, ms) = RateLimits::parse_rate(&args.rate_limit)
            .with_context(|| format!("--rate-limit {} is not like 110/10s", args.rate_limit))?;
        l.enabled = true;
        l.max_per_interval = max;
        l.interval_ms = ms;
    }
    let (search, per) = RateLimits::parse_rate(&args.search_rate_limit).with_context(|| {
        format!(
            "--search-rate-limit {} is not like 5/1s",
            args.search_rate_limit
        )
    })?;
    anyhow::ensure!(
        per == 1000,
        "--search-rate-limit must be per second (e.g. 5/1s)"
    );
    l.search_per_second = search;
    l.enabled |= args.daily_limit > 0;
    Ok(l)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let seed = match &args.seed {
        Some(p) => Seed::from_file(p)?,
        None => Seed::default(),
    };
    let config = SandboxConfig {
        host: args.host,
        port: args.port,
        oauth: OAuthApp {
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            ..OAuthApp::default()
        },
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        search_lag: Duration::from_millis(args.search_lag_ms),
        rate_limits: limits(&args)?,
        default_portal: args.default_portal,
        fault_seed: args.fault_seed,
        seed,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await?;
    println!("spoke-sandbox listening on {}", sandbox.base_url());
    shutdown_signal().await;
    sandbox.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
