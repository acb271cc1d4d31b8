//! Benchmarks against a running cluster. Each prints one JSON document (DESIGN.md §11: numbers to
//! compare over time, not pass/fail).

use std::time::{Duration, Instant};

use serde_json::json;
use spoke_proto::common::v1::ObjectType;
use spoke_proto::connection::v1::GetConnectionRequest;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::mapping::v1::GetCompiledMappingRequest;
use spoke_proto::mapping::v1::mapping_service_client::MappingServiceClient;
use tokio::task::JoinSet;

use crate::cli::{BenchCmd, ObjectArg, OnDuplicate};
use crate::context::Context;

/// Runs one benchmark.
pub async fn run(ctx: &Context, cmd: BenchCmd) -> anyhow::Result<()> {
    let report = match cmd {
        BenchCmd::Config { rps, seconds } => config_reads(ctx, rps, seconds).await?,
        BenchCmd::Export {
            file,
            object,
            on_duplicate,
        } => export(ctx, file, object, on_duplicate).await?,
        BenchCmd::Filtering => filtering(ctx).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[derive(Clone, Copy)]
enum ConfigRead {
    Connection,
    CompiledMapping,
}

/// Config reads at a fixed arrival rate, each on its own task (an open-loop load, so a slow
/// answer does not slow the arrivals down and hide itself), alternating GetConnection and
/// GetCompiledMapping.
async fn config_reads(ctx: &Context, rps: u32, seconds: u64) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(rps > 0, "--rps must be at least 1");
    let connection = ConnectionServiceClient::new(ctx.channel(&ctx.global.connection)?);
    let mapping = MappingServiceClient::new(ctx.channel(&ctx.global.mapping)?);
    // Warm both channels (and the services' caches) so connection set-up is not measured.
    for read in [ConfigRead::Connection, ConfigRead::CompiledMapping] {
        one_read(ctx, &connection, &mapping, read).await?;
    }
    let total = u64::from(rps) * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rps));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let read = if i % 2 == 0 {
            ConfigRead::Connection
        } else {
            ConfigRead::CompiledMapping
        };
        let (connection, mapping) = (connection.clone(), mapping.clone());
        let req_conn = ctx.request(GetConnectionRequest {})?;
        let req_map = ctx.request(GetCompiledMappingRequest {
            object: ObjectType::Contacts as i32,
            version: None,
        })?;
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = match read {
                ConfigRead::Connection => connection.clone().get_connection(req_conn).await.is_ok(),
                ConfigRead::CompiledMapping => {
                    mapping.clone().get_compiled_mapping(req_map).await.is_ok()
                }
            };
            (read, ok, t.elapsed())
        });
    }
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut errors = [0u64; 2];
    while let Some(done) = tasks.join_next().await {
        let (read, ok, took) = done?;
        let i = read as usize;
        if ok {
            latencies[i].push(took);
        } else {
            errors[i] += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_method = |i: usize, name: &str| {
        let l = &mut latencies[i].clone();
        l.sort();
        json!({
            "method": name,
            "ok": l.len(),
            "errors": errors[i],
            "p50_ms": percentile_ms(l, 0.50),
            "p99_ms": percentile_ms(l, 0.99),
            "max_ms": l.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        })
    };
    let mut all: Vec<Duration> = latencies.iter().flatten().copied().collect();
    all.sort();
    Ok(json!({
        "bench": "config_reads",
        "target_rps": rps,
        "achieved_rps": total as f64 / elapsed,
        "requests": total,
        "p50_ms": percentile_ms(&all, 0.50),
        "p99_ms": percentile_ms(&all, 0.99),
        "methods": [per_method(0, "GetConnection"), per_method(1, "GetCompiledMapping")],
    }))
}

async fn one_read(
    ctx: &Context,
    connection: &ConnectionServiceClient<tonic::transport::Channel>,
    mapping: &MappingServiceClient<tonic::transport::Channel>,
    read: ConfigRead,
) -> anyhow::Result<()> {
    match read {
        ConfigRead::Connection => {
            connection
                .clone()
                .get_connection(ctx.request(GetConnectionRequest {})?)
                .await?;
        }
        ConfigRead::CompiledMapping => {
            mapping
                .clone()
                .get_compiled_mapping(ctx.request(GetCompiledMappingRequest {
                    object: ObjectType::Contacts as i32,
                    version: None,
                })?)
                .await?;
        }
    }
    Ok(())
}

/// The `q` quantile of sorted latencies, in milliseconds (nearest rank).
fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// One export of FILE, from CreateExport to a final state.
async fn export(
    ctx: &Context,
    file: std::path::PathBuf,
    object: ObjectArg,
    on_duplicate: Option<OnDuplicate>,
) -> anyhow::Result<serde_json::Value> {
    let kind = match object {
        ObjectArg::Companies => "company",
        ObjectArg::Contacts => "contact",
    };
    let loaded = crate::profiles::read(&file, Some(kind))?;
    let records = loaded.profiles.len();
    anyhow::ensure!(records > 0, "{} holds no valid profiles", file.display());
    let started = Instant::now();
    let job = crate::export::create(
        ctx,
        object,
        loaded.profiles,
        on_duplicate,
        "bench".into(),
        None,
    )
    .await?;
    let accepted = started.elapsed().as_secs_f64();
    let done = crate::export::follow(ctx, &job.job_id, on_duplicate).await?;
    let seconds = started.elapsed().as_secs_f64();
    let c = done.counts.unwrap_or_default();
    Ok(json!({
        "bench": "export",
        "job_id": done.job_id,
        "records": records,
        "lines_skipped": loaded.problems.len(),
        "create_export_s": accepted,
        "seconds": seconds,
        "records_per_second": records as f64 / seconds,
        "created": c.created,
        "updated": c.updated,
        "skipped": c.skipped,
        "failed": c.failed,
        "job": crate::export::job_json(&done),
    }))
}

/// One filtering run of every enabled object, from RunNow to its end.
async fn filtering(ctx: &Context) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let run = crate::filtering::run_now(ctx, Vec::new()).await?;
    let run = crate::filtering::wait_run(ctx, &run.run_id).await?;
    let seconds = started.elapsed().as_secs_f64();
    let scanned: i64 = run.stats.iter().map(|s| s.records_scanned).sum();
    let matched: i64 = run.stats.iter().map(|s| s.records_matched).sum();
    Ok(json!({
        "bench": "filtering",
        "run_id": run.run_id,
        "seconds": seconds,
        "records_scanned": scanned,
        "records_matched": matched,
        "records_per_second": scanned as f64 / seconds,
        "run": crate::filtering::run_json(&run),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), 50.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&sorted[..1], 0.99), 1.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }
}
