//! `spokectl`: drive a Spoke cluster from the command line.
//!
//! Endpoints default to the local stack (`cargo xtask up`); the token comes from `--token` /
//! `SPOKE_TOKEN`, or is minted with the dev secret for `--org`/`--user`/`--role` (local stack only).
//! Errors are one line: the gRPC status and what to do.

mod bench;
mod cli;
mod commands;
mod config_file;
mod context;
mod datagen;
mod export;
mod filtering;
mod output;
mod profiles;
mod settings;
mod sharing;
mod writeback;

fn main() -> std::process::ExitCode {
    let cli = match config_file::parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", context::describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
