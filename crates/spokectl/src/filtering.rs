//! `spokectl filtering ...` and `spokectl profiles load`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use spoke_proto::common::v1::{FilteringRunState, ObjectType};
use spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient;
use spoke_proto::filtering::v1::{
    DealCreatedWindow, FilterMode, FilterSettings, FilteringRun, Frequency,
    GetFilterSettingsRequest, GetRunRequest, GetScheduleRequest, GetStatsRequest,
    ListMatchesRequest, ObjectFilterSettingsUpdate, RunNowRequest, SaveFilterSettingsRequest,
    SaveScheduleRequest, Schedule, SetFilteringEnabledRequest, StringList, ValueFilter, Weekday,
};

use crate::cli::{
    DealWindowArg, FilterObjectArg, FilteringCmd, FrequencyArg, ObjectArg, OutputFormat, WeekdayArg,
};
use crate::context::Context;
use crate::output::{self, object_name, timestamp as ts};

type Client = FilteringServiceClient<tonic::transport::Channel>;

fn client(ctx: &Context) -> anyhow::Result<Client> {
    Ok(FilteringServiceClient::new(
        ctx.channel(&ctx.global.filtering)?,
    ))
}

fn objects(list: &[ObjectArg], deals: bool) -> Vec<i32> {
    let mut v: Vec<i32> = list
        .iter()
        .map(|o| match o {
            ObjectArg::Companies => ObjectType::Companies as i32,
            ObjectArg::Contacts => ObjectType::Contacts as i32,
        })
        .collect();
    if deals {
        v.push(ObjectType::Deals as i32);
    }
    v
}

fn state_name(s: i32) -> String {
    FilteringRunState::try_from(s)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("FILTERING_RUN_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

pub fn run_json(run: &FilteringRun) -> serde_json::Value {
    json!({
        "run_id": run.run_id,
        "state": state_name(run.state),
        "message": run.message,
        "objects": run.stats.iter().map(|s| json!({
            "object": object_name(s.object), "scanned": s.records_scanned, "passed_filter": s.records_passed_filter,
            "matched": s.records_matched, "profiles_linked": s.profiles_linked, "added": s.matches_added,
            "removed": s.matches_removed, "deals_matched": s.deals_matched, "match_rate_percent": s.match_rate_percent,
        })).collect::<Vec<_>>(),
    })
}

/// Runs a filtering command.
pub async fn run(ctx: &Context, cmd: FilteringCmd) -> anyhow::Result<()> {
    match cmd {
        FilteringCmd::Enable {
            objects: list,
            deals,
        } => set_enabled(ctx, &list, deals, true).await,
        FilteringCmd::Disable {
            objects: list,
            deals,
        } => set_enabled(ctx, &list, deals, false).await,
        FilteringCmd::RunNow {
            objects: list,
            deals,
            wait,
        } => {
            let run = run_now(ctx, objects(&list, deals)).await?;
            let run = if wait {
                wait_run(ctx, &run.run_id).await?
            } else {
                run
            };
            print_run(ctx, &run)
        }
        cmd @ FilteringCmd::Settings { .. } => settings(ctx, cmd).await,
        FilteringCmd::Schedule {
            frequency,
            weekday,
            day,
        } => schedule(ctx, frequency, weekday, day).await,
        FilteringCmd::Stats => stats(ctx).await,
        FilteringCmd::Matches { object, limit } => matches(ctx, object, limit).await,
    }
}

/// Starts a run of `objects` (every enabled object when empty).
pub async fn run_now(ctx: &Context, objects: Vec<i32>) -> anyhow::Result<FilteringRun> {
    Ok(client(ctx)?
        .run_now(ctx.request(RunNowRequest {
            idempotency_key: format!("spokectl-{}", std::process::id()),
            objects,
        })?)
        .await?
        .into_inner()
        .run
        .unwrap_or_default())
}

async fn set_enabled(
    ctx: &Context,
    list: &[ObjectArg],
    deals: bool,
    enabled: bool,
) -> anyhow::Result<()> {
    client(ctx)?
        .set_filtering_enabled(ctx.request(SetFilteringEnabledRequest {
            objects: objects(list, deals),
            enabled,
        })?)
        .await?;
    if ctx.global.output == OutputFormat::Table {
        println!(
            "filtering {} for {}",
            if enabled { "enabled" } else { "disabled" },
            ctx.global.org
        );
    }
    Ok(())
}

/// Polls a run until it ends, with a spinner.
pub async fn wait_run(ctx: &Context, run_id: &str) -> anyhow::Result<FilteringRun> {
    let mut c = client(ctx)?;
    let bar = if ctx.global.output == OutputFormat::Table {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    loop {
        let run = c
            .get_run(ctx.request(GetRunRequest {
                run_id: run_id.to_string(),
            })?)
            .await?
            .into_inner()
            .run
            .unwrap_or_default();
        let scanned: i64 = run.stats.iter().map(|s| s.records_scanned).sum();
        let matched: i64 = run.stats.iter().map(|s| s.records_matched).sum();
        bar.set_message(format!(
            "filtering run {} {} — {scanned} records scanned, {matched} matched",
            run.run_id,
            state_name(run.state)
        ));
        let done = !matches!(
            FilteringRunState::try_from(run.state),
            Ok(FilteringRunState::Queued | FilteringRunState::Running)
        );
        if done {
            bar.finish();
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_run(ctx: &Context, run: &FilteringRun) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = run
        .stats
        .iter()
        .map(|s| {
            vec![
                object_name(s.object),
                s.records_scanned.to_string(),
                s.records_matched.to_string(),
                s.profiles_linked.to_string(),
                s.matches_added.to_string(),
                s.matches_removed.to_string(),
                format!("{:.2}%", s.match_rate_percent),
            ]
        })
        .collect();
    if ctx.global.output == OutputFormat::Table {
        println!(
            "run {}: {} {}",
            run.run_id,
            state_name(run.state),
            run.message
        );
    }
    output::table(
        ctx.global.output,
        &[
            "object",
            "scanned",
            "matched",
            "linked",
            "added",
            "removed",
            "match rate",
        ],
        &rows,
        &run_json(run),
    )
}

async fn stats(ctx: &Context) -> anyhow::Result<()> {
    let resp = client(ctx)?
        .get_stats(ctx.request(GetStatsRequest {})?)
        .await?
        .into_inner();
    let rows: Vec<Vec<String>> = resp
        .objects
        .iter()
        .map(|s| {
            vec![
                object_name(s.object),
                if s.enabled { "on".into() } else { "off".into() },
                state_name(s.status),
                format!("{:.2}%", s.match_rate_percent),
                s.profiles_linked.to_string(),
                s.total_deals_matched.to_string(),
                ts(&s.last_match_at),
                ts(&s.next_match_at),
            ]
        })
        .collect();
    let json: Vec<_> = resp
        .objects
        .iter()
        .map(|s| json!({"object": object_name(s.object), "enabled": s.enabled, "status": state_name(s.status),
            "match_rate_percent": s.match_rate_percent, "profiles_linked": s.profiles_linked,
            "total_deals_matched": s.total_deals_matched, "last_match": ts(&s.last_match_at), "next_match": ts(&s.next_match_at)}))
        .collect();
    output::table(
        ctx.global.output,
        &[
            "object",
            "filtering",
            "status",
            "match rate",
            "linked",
            "deals",
            "last match",
            "next match",
        ],
        &rows,
        &json,
    )
}

async fn matches(ctx: &Context, object: ObjectArg, limit: i32) -> anyhow::Result<()> {
    let resp = client(ctx)?
        .list_matches(ctx.request(ListMatchesRequest {
            page_size: limit,
            object: objects(&[object], false)[0],
            ..Default::default()
        })?)
        .await?
        .into_inner();
    let rows: Vec<Vec<String>> = resp
        .matches
        .iter()
        .map(|m| {
            vec![
                m.profile_id.clone(),
                m.hubspot_id.clone(),
                m.owner_name.clone(),
                m.matched_by.clone(),
                m.hubspot_url.clone(),
            ]
        })
        .collect();
    let json: Vec<_> = resp
        .matches
        .iter()
        .map(|m| json!({"profile_id": m.profile_id, "hubspot_id": m.hubspot_id, "owner": m.owner_name, "matched_by": m.matched_by, "url": m.hubspot_url}))
        .collect();
    output::table(
        ctx.global.output,
        &["profile", "hubspot id", "owner", "matched by", "link"],
        &rows,
        &json,
    )
}

/// `spokectl profiles load FILE`: streams the file to LoadProfiles with a progress bar.
pub async fn load_profiles(ctx: &Context, path: &std::path::Path) -> anyhow::Result<()> {
    let mut c = client(ctx)?;
    let bar = if ctx.global.output == OutputFormat::Table {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {pos} profiles sent ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let b = bar.clone();
    let resp =
        spoke_filtering::profiles::load_file(&mut c, ctx.token(), path, move |n| b.set_position(n))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish();
    let json = json!({"upserted": resp.upserted, "deleted": resp.deleted, "rejected": resp.rejected,
        "rejection_samples": resp.rejection_samples.iter().map(|r| json!({"profile_id": r.profile_id, "reason": r.reason})).collect::<Vec<_>>()});
    output::record(
        ctx.global.output,
        &[
            ("upserted", resp.upserted.to_string()),
            ("deleted", resp.deleted.to_string()),
            ("rejected", resp.rejected.to_string()),
        ],
        &json,
    )?;
    if ctx.global.output == OutputFormat::Table {
        for r in &resp.rejection_samples {
            println!("  rejected {}: {}", r.profile_id, r.reason);
        }
    }
    Ok(())
}

/// A value filter from include/exclude lists: `None` keeps the current filter.
fn value_filter(include: Option<Vec<String>>, exclude: Option<Vec<String>>) -> Option<ValueFilter> {
    let clean = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match (include, exclude) {
        (Some(v), _) => Some(ValueFilter {
            mode: FilterMode::Include as i32,
            values: clean(v),
        }),
        (None, Some(v)) => Some(ValueFilter {
            mode: FilterMode::Exclude as i32,
            values: clean(v),
        }),
        (None, None) => None,
    }
}

fn describe_filter(f: &Option<ValueFilter>) -> String {
    match f {
        Some(f) if !f.values.is_empty() => format!(
            "{} {}",
            if f.mode == FilterMode::Exclude as i32 {
                "exclude"
            } else {
                "include"
            },
            f.values.join(",")
        ),
        _ => "-".into(),
    }
}

fn window_name(w: i32) -> &'static str {
    match DealCreatedWindow::try_from(w) {
        Ok(DealCreatedWindow::SixMonths) => "6m",
        Ok(DealCreatedWindow::OneYear) => "1y",
        Ok(DealCreatedWindow::TwoYears) => "2y",
        _ => "-",
    }
}

async fn settings(ctx: &Context, cmd: FilteringCmd) -> anyhow::Result<()> {
    let FilteringCmd::Settings {
        object,
        include_owners,
        exclude_owners,
        include_company_types,
        exclude_company_types,
        require_deals,
        exclude_email_opt_outs,
        deals_created_within,
        email_alerts,
    } = cmd
    else {
        unreachable!("called with FilteringCmd::Settings only")
    };
    let mut c = client(ctx)?;
    let owners = value_filter(include_owners, exclude_owners);
    let company_types = value_filter(include_company_types, exclude_company_types);
    let changes_object = owners.is_some()
        || company_types.is_some()
        || require_deals.is_some()
        || exclude_email_opt_outs.is_some()
        || deals_created_within.is_some();
    let (settings, locked) = if changes_object || email_alerts.is_some() {
        let updates = match object {
            Some(o) => vec![ObjectFilterSettingsUpdate {
                object: match o {
                    FilterObjectArg::Companies => ObjectType::Companies,
                    FilterObjectArg::Contacts => ObjectType::Contacts,
                    FilterObjectArg::Deals => ObjectType::Deals,
                } as i32,
                owners,
                company_types,
                deal_created_window: deals_created_within.map(|w| {
                    let window = match w {
                        DealWindowArg::SixMonths => DealCreatedWindow::SixMonths,
                        DealWindowArg::OneYear => DealCreatedWindow::OneYear,
                        DealWindowArg::TwoYears => DealCreatedWindow::TwoYears,
                    };
                    window as i32
                }),
                require_deals,
                exclude_email_opt_outs,
                contact_list_ids: None::<StringList>,
            }],
            None if changes_object => {
                anyhow::bail!("--object is required to change an object's filters")
            }
            None => vec![],
        };
        let s = c
            .save_filter_settings(ctx.request(SaveFilterSettingsRequest {
                updates,
                email_alerts,
            })?)
            .await?
            .into_inner()
            .settings
            .unwrap_or_default();
        (s, false)
    } else {
        let r = c
            .get_filter_settings(ctx.request(GetFilterSettingsRequest {})?)
            .await?
            .into_inner();
        (r.settings.unwrap_or_default(), r.locked_by_advanced_sync)
    };
    print_settings(ctx, &settings, locked)
}

fn print_settings(ctx: &Context, s: &FilterSettings, locked: bool) -> anyhow::Result<()> {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = s
        .objects
        .iter()
        .map(|o| {
            vec![
                object_name(o.object),
                if o.enabled { "on" } else { "off" }.into(),
                describe_filter(&o.owners),
                describe_filter(&o.company_types),
                yes(o.require_deals),
                yes(o.exclude_email_opt_outs),
                window_name(o.deal_created_window).into(),
            ]
        })
        .collect();
    let json = json!({
        "email_alerts": s.email_alerts,
        "locked_by_advanced_sync": locked,
        "objects": s.objects.iter().map(|o| json!({
            "object": object_name(o.object),
            "enabled": o.enabled,
            "owners": describe_filter(&o.owners),
            "company_types": describe_filter(&o.company_types),
            "require_deals": o.require_deals,
            "exclude_email_opt_outs": o.exclude_email_opt_outs,
            "deals_created_within": window_name(o.deal_created_window),
        })).collect::<Vec<_>>(),
    });
    output::table(
        ctx.global.output,
        &[
            "object",
            "filtering",
            "owners",
            "company types",
            "require deals",
            "exclude opt-outs",
            "deals created within",
        ],
        &rows,
        &json,
    )?;
    if ctx.global.output == OutputFormat::Table {
        println!(
            "email alerts: {}{}",
            if s.email_alerts { "on" } else { "off" },
            if locked {
                " — Advanced Sync is on: filters are locked"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn schedule(
    ctx: &Context,
    frequency: Option<FrequencyArg>,
    weekday: Option<WeekdayArg>,
    day: Option<i32>,
) -> anyhow::Result<()> {
    let mut c = client(ctx)?;
    let schedule = match frequency {
        None => {
            anyhow::ensure!(
                weekday.is_none() && day.is_none(),
                "give the frequency (weekly or monthly) to change the schedule"
            );
            c.get_schedule(ctx.request(GetScheduleRequest {})?)
                .await?
                .into_inner()
                .schedule
        }
        Some(f) => {
            let req = match f {
                FrequencyArg::Weekly => SaveScheduleRequest {
                    frequency: Frequency::Weekly as i32,
                    weekday: weekday.map(|w| w as i32 + 1).ok_or_else(|| {
                        anyhow::anyhow!("weekly needs --weekday (monday..sunday)")
                    })?,
                    day_of_month: 0,
                },
                FrequencyArg::Monthly => SaveScheduleRequest {
                    frequency: Frequency::Monthly as i32,
                    weekday: 0,
                    day_of_month: day
                        .ok_or_else(|| anyhow::anyhow!("monthly needs --day (1..=28)"))?,
                },
            };
            c.save_schedule(ctx.request(req)?)
                .await?
                .into_inner()
                .schedule
        }
    }
    .unwrap_or_default();
    print_schedule(ctx, &schedule)
}

fn print_schedule(ctx: &Context, s: &Schedule) -> anyhow::Result<()> {
    let frequency = Frequency::try_from(s.frequency)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("FREQUENCY_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let on = match Frequency::try_from(s.frequency) {
        Ok(Frequency::Weekly) => Weekday::try_from(s.weekday)
            .map(|w| {
                w.as_str_name()
                    .trim_start_matches("WEEKDAY_")
                    .to_lowercase()
            })
            .unwrap_or_default(),
        Ok(Frequency::Monthly) => format!("day {}", s.day_of_month),
        _ => "-".into(),
    };
    let next = ts(&s.next_run_at);
    output::record(
        ctx.global.output,
        &[
            ("frequency", frequency.clone()),
            ("on", on.clone()),
            ("next run", next.clone()),
            ("window", format!("8 PM-6 AM {}", s.time_zone)),
        ],
        &json!({
            "frequency": frequency, "on": on, "next_run_at": next, "time_zone": s.time_zone,
        }),
    )
}
