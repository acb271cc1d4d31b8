//! `spoke-mapping` binary: load config, start telemetry, run the service until SIGTERM.

use clap::Parser;

/// Command-line flags; everything else is configuration (file and `SPOKE_*` environment).
#[derive(Parser, Debug)]
#[command(version, about = "Spoke mapping service")]
struct Args {
    /// TOML config file (also `SPOKE_CONFIG`).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: spoke_mapping::Config = spoke_platform::config::load(args.config.as_deref())?;
    let _telemetry = spoke_platform::telemetry::init("mapping", &config.common.telemetry)?;
    spoke_mapping::Application::build(config)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
