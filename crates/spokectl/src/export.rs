//! `spokectl export ...`: create an export from a file and follow it, review duplicates, show,
//! list, cancel.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use spoke_proto::common::v1::{
    DuplicateAction, ExportCounts, ExportJobState, ExportRecord, ObjectType, Profile,
};
use spoke_proto::export::v1::export_service_client::ExportServiceClient;
use spoke_proto::export::v1::{
    CancelExportRequest, CreateExportRequest, ExportJob, GetExportRequest,
    ListExportRecordsRequest, ListExportsRequest, RecordStatus, ResolveDuplicatesRequest,
    WatchExportRequest,
};

use crate::cli::{ExportCmd, ObjectArg, OnDuplicate, OutputFormat};
use crate::context::Context;
use crate::output;

type Client = ExportServiceClient<tonic::transport::Channel>;

fn client(ctx: &Context) -> anyhow::Result<Client> {
    Ok(ExportServiceClient::new(ctx.channel(&ctx.global.export)?)
        .max_decoding_message_size(64 << 20))
}

/// Runs an export command.
pub async fn run(ctx: &Context, cmd: ExportCmd) -> anyhow::Result<()> {
    match cmd {
        ExportCmd::Create {
            file,
            object,
            on_duplicate,
            label,
            idempotency_key,
            no_wait,
        } => {
            let kind = match object {
                ObjectArg::Companies => "company",
                ObjectArg::Contacts => "contact",
            };
            let loaded = crate::profiles::read(&file, Some(kind))?;
            // Bad lines are skipped, each named (line, profile, field, why); the rest is exported.
            for p in loaded.problems.iter().take(20) {
                eprintln!("skipped {p}");
            }
            if loaded.problems.len() > 20 {
                eprintln!("... and {} more skipped lines", loaded.problems.len() - 20);
            }
            let profiles = loaded.profiles;
            if profiles.is_empty() {
                anyhow::bail!(
                    "{} holds no valid profiles ({} lines skipped)",
                    file.display(),
                    loaded.problems.len()
                );
            }
            if !loaded.problems.is_empty() {
                eprintln!(
                    "exporting {} valid profiles of {}; {} lines skipped",
                    profiles.len(),
                    file.display(),
                    loaded.problems.len()
                );
            }
            let job = create(ctx, object, profiles, on_duplicate, label, idempotency_key).await?;
            if no_wait {
                return print_job(ctx, &job);
            }
            let done = follow(ctx, &job.job_id, on_duplicate).await?;
            print_job(ctx, &done)?;
            let failed = done.counts.unwrap_or_default().failed;
            if failed > 0 && ctx.global.output == OutputFormat::Table {
                println!("\nfirst failed records:");
                for (record, message) in failures(ctx, &done.job_id, 10).await? {
                    println!("  {record}: {message}");
                }
            }
            Ok(())
        }
        ExportCmd::Show { job_id } => {
            let job = client(ctx)?
                .get_export(ctx.request(GetExportRequest { job_id })?)
                .await?
                .into_inner()
                .job;
            print_job(ctx, &job.unwrap_or_default())
        }
        ExportCmd::List { limit } => list(ctx, limit).await,
        ExportCmd::Cancel { job_id } => {
            let resp = client(ctx)?
                .cancel_export(ctx.request(CancelExportRequest { job_id })?)
                .await?
                .into_inner();
            print_job(ctx, &resp.job.unwrap_or_default())
        }
    }
}

/// The API's object type of a command-line object.
pub fn object_type(o: ObjectArg) -> ObjectType {
    match o {
        ObjectArg::Companies => ObjectType::Companies,
        ObjectArg::Contacts => ObjectType::Contacts,
    }
}

fn action(d: OnDuplicate) -> DuplicateAction {
    match d {
        OnDuplicate::Update => DuplicateAction::UpdateExisting,
        OnDuplicate::Skip => DuplicateAction::Skip,
        OnDuplicate::Create => DuplicateAction::CreateDuplicate,
    }
}

/// Creates the export job; returns it at once.
pub async fn create(
    ctx: &Context,
    object: ObjectArg,
    profiles: Vec<crate::datagen::Profile>,
    on_duplicate: Option<OnDuplicate>,
    label: String,
    idempotency_key: Option<String>,
) -> anyhow::Result<ExportJob> {
    let kind = object_type(object);
    let records = profiles
        .into_iter()
        .map(|(id, fields)| ExportRecord {
            record_id: id.clone(),
            profile: Some(Profile {
                profile_id: id,
                kind: kind as i32,
                fields: fields.into_iter().collect(),
                intents: vec![],
                updated_at: None,
            }),
        })
        .collect();
    let req = CreateExportRequest {
        idempotency_key: idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        object: kind as i32,
        records,
        duplicate_choice: on_duplicate
            .map(action)
            .unwrap_or(DuplicateAction::Unspecified) as i32,
        on_behalf_of_user_id: String::new(),
        label,
    };
    let resp = client(ctx)?
        .create_export(ctx.request(req)?)
        .await?
        .into_inner();
    resp.job
        .ok_or_else(|| anyhow::anyhow!("the export service returned no job"))
}

fn done_count(c: &ExportCounts) -> u64 {
    (c.created + c.updated + c.skipped + c.failed).max(0) as u64
}

fn is_final(state: i32) -> bool {
    matches!(
        ExportJobState::try_from(state),
        Ok(ExportJobState::Completed
            | ExportJobState::CompletedWithErrors
            | ExportJobState::Failed
            | ExportJobState::Cancelled)
    )
}

fn state_name(state: i32) -> String {
    ExportJobState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("EXPORT_JOB_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

/// Follows a job to its end with a progress bar (table output) or silently (JSON), answering
/// duplicate reviews with `on_duplicate` or by asking on a terminal.
pub async fn follow(
    ctx: &Context,
    job_id: &str,
    on_duplicate: Option<OnDuplicate>,
) -> anyhow::Result<ExportJob> {
    let mut c = client(ctx)?;
    let show = ctx.global.output == OutputFormat::Table;
    let bar = if show {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut resolved = false;
    loop {
        let mut stream = c
            .watch_export(ctx.request(WatchExportRequest {
                job_id: job_id.to_string(),
            })?)
            .await?
            .into_inner();
        let mut last: Option<ExportJob> = None;
        while let Some(update) = stream.message().await? {
            let Some(job) = update.job else { continue };
            let counts = job.counts.unwrap_or_default();
            bar.set_length(counts.total.max(0) as u64);
            bar.set_position(done_count(&counts));
            bar.set_message(format!(
                "{} created {} updated {} skipped {} failed {} ({:.0} rec/s)",
                state_name(job.state),
                counts.created,
                counts.updated,
                counts.skipped,
                counts.failed,
                update.records_per_second
            ));
            let awaiting = job.state == ExportJobState::AwaitingReview as i32;
            last = Some(job.clone());
            if is_final(job.state) {
                bar.finish();
                return Ok(job);
            }
            if awaiting && !resolved {
                break;
            }
        }
        let job = match last {
            Some(j) => j,
            None => c
                .get_export(ctx.request(GetExportRequest {
                    job_id: job_id.to_string(),
                })?)
                .await?
                .into_inner()
                .job
                .unwrap_or_default(),
        };
        if is_final(job.state) {
            bar.finish();
            return Ok(job);
        }
        if job.state == ExportJobState::AwaitingReview as i32 && !resolved {
            bar.suspend(|| -> anyhow::Result<()> {
                let choice = review_choice(ctx, &job, on_duplicate)?;
                futures_block(resolve(ctx, job_id, choice))
            })?;
            resolved = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Review prompts run inside `bar.suspend`, which takes a sync closure.
fn futures_block<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn review_choice(
    ctx: &Context,
    job: &ExportJob,
    on_duplicate: Option<OnDuplicate>,
) -> anyhow::Result<DuplicateAction> {
    if let Some(d) = on_duplicate {
        return Ok(action(d));
    }
    let counts = job.counts.unwrap_or_default();
    if !std::io::stdin().is_terminal() || ctx.global.output == OutputFormat::Json {
        anyhow::bail!(
            "export {} found {} possible duplicates and waits for review; rerun with --on-duplicate update|skip|create",
            job.job_id,
            counts.needs_review
        );
    }
    eprintln!(
        "{} records match existing HubSpot records.",
        counts.needs_review
    );
    loop {
        eprint!("[u]pdate existing, [s]kip, [c]reate duplicates? ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        match line.trim() {
            "u" | "update" => return Ok(DuplicateAction::UpdateExisting),
            "s" | "skip" => return Ok(DuplicateAction::Skip),
            "c" | "create" => return Ok(DuplicateAction::CreateDuplicate),
            _ => eprintln!("please answer u, s or c"),
        }
    }
}

async fn resolve(ctx: &Context, job_id: &str, choice: DuplicateAction) -> anyhow::Result<()> {
    client(ctx)?
        .resolve_duplicates(ctx.request(ResolveDuplicatesRequest {
            idempotency_key: format!("{job_id}-apply-to-rest"),
            job_id: job_id.to_string(),
            resolutions: vec![],
            apply_to_rest: choice as i32,
        })?)
        .await?;
    Ok(())
}

/// The job as JSON.
pub fn job_json(job: &ExportJob) -> serde_json::Value {
    let c = job.counts.unwrap_or_default();
    json!({
        "job_id": job.job_id,
        "state": state_name(job.state),
        "total": c.total, "created": c.created, "updated": c.updated, "skipped": c.skipped,
        "failed": c.failed, "pending": c.pending, "needs_review": c.needs_review,
        "portal_id": job.portal_id, "label": job.label, "message": job.message,
    })
}

fn print_job(ctx: &Context, job: &ExportJob) -> anyhow::Result<()> {
    let c = job.counts.unwrap_or_default();
    output::record(
        ctx.global.output,
        &[
            ("job", job.job_id.clone()),
            ("state", state_name(job.state)),
            ("total", c.total.to_string()),
            ("created", c.created.to_string()),
            ("updated", c.updated.to_string()),
            ("skipped", c.skipped.to_string()),
            ("failed", c.failed.to_string()),
            ("pending", c.pending.to_string()),
            ("message", job.message.clone()),
        ],
        &job_json(job),
    )
}

async fn list(ctx: &Context, limit: i32) -> anyhow::Result<()> {
    let resp = client(ctx)?
        .list_exports(ctx.request(ListExportsRequest {
            page_size: limit,
            ..Default::default()
        })?)
        .await?
        .into_inner();
    let rows: Vec<Vec<String>> = resp
        .jobs
        .iter()
        .map(|j| {
            let c = j.counts.unwrap_or_default();
            vec![
                j.job_id.clone(),
                state_name(j.state),
                c.total.to_string(),
                c.created.to_string(),
                c.updated.to_string(),
                c.skipped.to_string(),
                c.failed.to_string(),
                j.label.clone(),
            ]
        })
        .collect();
    let json: Vec<_> = resp.jobs.iter().map(job_json).collect();
    output::table(
        ctx.global.output,
        &[
            "job", "state", "total", "created", "updated", "skipped", "failed", "label",
        ],
        &rows,
        &json,
    )
}

/// Failed records of a job with their messages (for the summary of a finished export).
pub async fn failures(
    ctx: &Context,
    job_id: &str,
    limit: i32,
) -> anyhow::Result<Vec<(String, String)>> {
    let resp = client(ctx)?
        .list_export_records(ctx.request(ListExportRecordsRequest {
            job_id: job_id.to_string(),
            page_size: limit,
            page_token: String::new(),
            status: RecordStatus::Failed as i32,
        })?)
        .await?
        .into_inner();
    Ok(resp
        .records
        .into_iter()
        .map(|r| (r.record_id, r.message))
        .collect())
}
