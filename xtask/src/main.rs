//! `cargo xtask <command>`: the developer entry point (nothing to install).
//!
//! - `demo`   start the local stack (Postgres, dev broker, HubSpot sandbox, all services) and run the demo
//! - `up`     start the local stack and leave it running; `down` stops it; `status` shows health
//! - `test`   the whole test suite (what CI runs)
//! - `verify` fmt --check, clippy -D warnings, then `test`

mod postgres;
mod stack;
mod suite;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Spoke developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the local stack and run the demo; leaves the stack running unless --stop.
    Demo {
        /// Stop the stack cleanly when the demo is done.
        #[arg(long)]
        stop: bool,
        /// Companies and contacts to export (each).
        #[arg(long, default_value_t = 10_000)]
        records: u64,
    },
    /// Start the local stack and leave it running.
    Up,
    /// Stop the local stack.
    Down,
    /// Show the health of the local stack.
    Status,
    /// Run the whole test suite (CI runs this).
    Test,
    /// cargo fmt --check, clippy -D warnings, and the test suite.
    Verify,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::Demo { stop, records } => rt.block_on(stack::demo(stop, records)),
        Cmd::Up => rt.block_on(async { stack::up().await.map(|_| ()) }),
        Cmd::Down => stack::down(),
        Cmd::Status => rt.block_on(stack::status()),
        Cmd::Test => rt.block_on(suite::test()),
        Cmd::Verify => rt.block_on(suite::verify()),
    }
}
