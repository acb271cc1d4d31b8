//! Data sharing (`sharing show|set|opt-out|contributions`): the org's toggles in the connection
//! service, the contract opt-out that locks them, and what was shared.

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::connection::v1::{
    ContributionCategory, DataSharingSettings, GetDataSharingSettingsRequest,
    ListContributionsRequest, SetDataSharingContractOptOutRequest, SetDataSharingSettingsRequest,
};

use crate::context::Context;
use crate::output::{self, object_name, timestamp as ts};

/// Data-sharing commands.
#[derive(Subcommand, Debug)]
pub enum SharingCmd {
    /// The org's toggles and whether the contract locks them (admin or service).
    Show,
    /// Change the toggles (admin); refused while the contract opts out.
    Set {
        /// Share CRM data (what filtering runs read) with the provider's community.
        #[arg(long)]
        crm: Option<bool>,
        /// Share usage data.
        #[arg(long)]
        usage: Option<bool>,
    },
    /// Record the org's contractual opt-out (service role, e.g. `--role service`): turns every
    /// toggle off and locks them; `--off` lifts it.
    OptOut {
        /// Lift the opt-out instead (the toggles stay off until an admin turns them on).
        #[arg(long)]
        off: bool,
    },
    /// What was shared, newest first (admin).
    Contributions {
        /// Only this category.
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// A contribution category.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum CategoryArg {
    /// CRM data.
    Crm,
    /// Usage data.
    Usage,
}

fn category_name(c: i32) -> String {
    ContributionCategory::try_from(c)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("CONTRIBUTION_CATEGORY_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| c.to_string())
}

fn print_settings(ctx: &Context, s: &DataSharingSettings) -> anyhow::Result<()> {
    let json = json!({
        "share_crm_data": s.share_crm_data,
        "share_usage_data": s.share_usage_data,
        "locked_by_contract": s.locked_by_contract,
        "updated_at": s.updated_at.as_ref().map(|t| t.to_string()),
        "updated_by": s.updated_by,
    });
    let onoff = |b: bool| if b { "on" } else { "off" }.to_string();
    output::record(
        ctx.global.output,
        &[
            ("crm data", onoff(s.share_crm_data)),
            ("usage data", onoff(s.share_usage_data)),
            (
                "locked by contract",
                if s.locked_by_contract {
                    "yes: the toggles stay off and cannot be changed".into()
                } else {
                    "no".into()
                },
            ),
            (
                "updated",
                if s.updated_by.is_empty() {
                    "never".into()
                } else {
                    format!("{} by {}", ts(&s.updated_at), s.updated_by)
                },
            ),
        ],
        &json,
    )
}

/// Runs a data-sharing command.
pub async fn run(ctx: &Context, cmd: SharingCmd) -> anyhow::Result<()> {
    let mut client = ConnectionServiceClient::new(ctx.channel(&ctx.global.connection)?);
    match cmd {
        SharingCmd::Show => {
            let s = client
                .get_data_sharing_settings(ctx.request(GetDataSharingSettingsRequest {})?)
                .await?
                .into_inner()
                .settings
                .unwrap_or_default();
            print_settings(ctx, &s)
        }
        SharingCmd::Set { crm, usage } => {
            if crm.is_none() && usage.is_none() {
                anyhow::bail!("nothing to change: pass --crm and/or --usage (true or false)");
            }
            let s = client
                .set_data_sharing_settings(ctx.request(SetDataSharingSettingsRequest {
                    share_crm_data: crm,
                    share_usage_data: usage,
                })?)
                .await?
                .into_inner()
                .settings
                .unwrap_or_default();
            print_settings(ctx, &s)
        }
        SharingCmd::OptOut { off } => {
            let s = client
                .set_data_sharing_contract_opt_out(
                    ctx.request(SetDataSharingContractOptOutRequest { opted_out: !off })?,
                )
                .await?
                .into_inner()
                .settings
                .unwrap_or_default();
            print_settings(ctx, &s)
        }
        SharingCmd::Contributions { category, limit } => {
            let category = category.map(|c| match c {
                CategoryArg::Crm => ContributionCategory::CrmData,
                CategoryArg::Usage => ContributionCategory::UsageData,
            });
            let mut all = Vec::new();
            let mut token = String::new();
            while all.len() < limit {
                let page = client
                    .list_contributions(ctx.request(ListContributionsRequest {
                        page_size: (limit - all.len()).min(500) as i32,
                        page_token: token,
                        category: category.map(|c| c as i32).unwrap_or_default(),
                    })?)
                    .await?
                    .into_inner();
                all.extend(page.contributions);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|c| {
                    vec![
                        ts(&c.occurred_at),
                        category_name(c.category),
                        object_name(c.object),
                        c.record_count.to_string(),
                        format!("{} {}", c.source, c.source_id),
                    ]
                })
                .collect();
            let json: Vec<_> = all
                .iter()
                .map(|c| {
                    json!({
                        "contribution_id": c.contribution_id, "category": category_name(c.category),
                        "object": object_name(c.object), "record_count": c.record_count,
                        "source": c.source, "source_id": c.source_id,
                        "occurred_at": c.occurred_at.as_ref().map(|t| t.to_string()),
                    })
                })
                .collect();
            output::table(
                ctx.global.output,
                &["SHARED AT", "CATEGORY", "OBJECT", "RECORDS", "SOURCE"],
                &rows,
                &json,
            )
        }
    }
}
