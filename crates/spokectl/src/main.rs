//! `spokectl`: drive a Spoke cluster from the command line.
//!
//! Endpoints default to the local stack (`cargo xtask up`); the token comes from `--token` /
//! `SPOKE_TOKEN`, or is minted with the dev secret for `--org`/`--user`/`--role` (local stack only).
//! Errors are one line: the gRPC status and what to do.

mod bench;
mod cli;
mod commands;
mod context;
mod datagen;
mod export;
mod filtering;
mod output;
mod profiles;
mod settings;
mod sharing;
mod writeback;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", context::describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
