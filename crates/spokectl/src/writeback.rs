//! CRM writeback (`writeback show|set|activities`): the admin's settings and the activities the
//! export service received, with their state.

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use spoke_proto::common::v1::ActivityType;
use spoke_proto::export::v1::export_service_client::ExportServiceClient;
use spoke_proto::export::v1::{
    ActivityTypeSet, GetWritebackSettingsRequest, ListWritebackActivitiesRequest,
    SaveWritebackSettingsRequest, WritebackLogMode, WritebackSettings, WritebackState,
};

use crate::context::Context;
use crate::output::{self, timestamp as ts};

/// Writeback commands.
#[derive(Subcommand, Debug)]
pub enum WritebackCmd {
    /// The org's writeback settings (admin or service).
    Show,
    /// Change the settings (admin); options not given are kept.
    Set {
        /// Turn writeback on or off.
        #[arg(long)]
        enabled: Option<bool>,
        /// Log activities as tasks or as their engagement type.
        #[arg(long, value_enum)]
        log_as: Option<LogAs>,
        /// Activity types written back, comma-separated (email,call,meeting); `none` for none.
        #[arg(long, value_delimiter = ',')]
        types: Option<Vec<String>>,
    },
    /// Activities received for writeback, newest first (admin or service).
    Activities {
        /// Only this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// How activities are logged.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LogAs {
    /// HubSpot tasks.
    Tasks,
    /// Emails, calls and meetings.
    Engagements,
}

/// An activity state.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum StateArg {
    /// Waiting for a match or for HubSpot.
    Pending,
    /// Logged in HubSpot.
    Written,
    /// Not written by the settings.
    Skipped,
    /// No match within the configured time.
    Dropped,
    /// Invalid or refused by HubSpot.
    Failed,
}

fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

fn type_name(t: i32) -> String {
    ActivityType::try_from(t)
        .map(|t| short(t.as_str_name(), "ACTIVITY_TYPE_"))
        .unwrap_or_else(|_| t.to_string())
}

fn state_name(s: i32) -> String {
    WritebackState::try_from(s)
        .map(|t| short(t.as_str_name(), "WRITEBACK_STATE_"))
        .unwrap_or_else(|_| s.to_string())
}

fn mode_name(m: i32) -> String {
    WritebackLogMode::try_from(m)
        .map(|t| short(t.as_str_name(), "WRITEBACK_LOG_MODE_"))
        .unwrap_or_else(|_| m.to_string())
}

fn parse_types(types: &[String]) -> anyhow::Result<Vec<i32>> {
    if types.len() == 1 && types[0].eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    types
        .iter()
        .map(|t| match t.trim().to_ascii_lowercase().as_str() {
            "email" | "emails" => Ok(ActivityType::Email as i32),
            "call" | "calls" => Ok(ActivityType::Call as i32),
            "meeting" | "meetings" => Ok(ActivityType::Meeting as i32),
            other => Err(anyhow::anyhow!(
                "--types: unknown activity type {other:?}; use email, call, meeting or none"
            )),
        })
        .collect()
}

fn print_settings(ctx: &Context, s: &WritebackSettings) -> anyhow::Result<()> {
    let types: Vec<String> = s.activity_types.iter().map(|t| type_name(*t)).collect();
    let json = json!({
        "enabled": s.enabled,
        "log_mode": mode_name(s.log_mode),
        "activity_types": types,
        "updated_at": s.updated_at.as_ref().map(|t| t.to_string()),
    });
    output::record(
        ctx.global.output,
        &[
            ("enabled", s.enabled.to_string()),
            ("log as", mode_name(s.log_mode)),
            (
                "activity types",
                if types.is_empty() {
                    "none".into()
                } else {
                    types.join(", ")
                },
            ),
            ("updated", ts(&s.updated_at)),
        ],
        &json,
    )
}

/// Runs a writeback command.
pub async fn run(ctx: &Context, cmd: WritebackCmd) -> anyhow::Result<()> {
    let mut client = ExportServiceClient::new(ctx.channel(&ctx.global.export)?);
    match cmd {
        WritebackCmd::Show => {
            let s = client
                .get_writeback_settings(ctx.request(GetWritebackSettingsRequest {})?)
                .await?
                .into_inner()
                .settings
                .unwrap_or_default();
            print_settings(ctx, &s)
        }
        WritebackCmd::Set {
            enabled,
            log_as,
            types,
        } => {
            let activity_types = match types {
                Some(t) => Some(ActivityTypeSet {
                    types: parse_types(&t)?,
                }),
                None => None,
            };
            let log_mode = log_as.map(|m| match m {
                LogAs::Tasks => WritebackLogMode::Tasks as i32,
                LogAs::Engagements => WritebackLogMode::Engagements as i32,
            });
            let s = client
                .save_writeback_settings(ctx.request(SaveWritebackSettingsRequest {
                    enabled,
                    log_mode,
                    activity_types,
                })?)
                .await?
                .into_inner()
                .settings
                .unwrap_or_default();
            print_settings(ctx, &s)
        }
        WritebackCmd::Activities { state, limit } => {
            let state = state.map(|s| match s {
                StateArg::Pending => WritebackState::Pending,
                StateArg::Written => WritebackState::Written,
                StateArg::Skipped => WritebackState::Skipped,
                StateArg::Dropped => WritebackState::Dropped,
                StateArg::Failed => WritebackState::Failed,
            });
            let mut all = Vec::new();
            let mut token = String::new();
            while all.len() < limit {
                let page = client
                    .list_writeback_activities(ctx.request(ListWritebackActivitiesRequest {
                        page_size: (limit - all.len()).min(1000) as i32,
                        page_token: token,
                        state: state.map(|s| s as i32).unwrap_or_default(),
                    })?)
                    .await?
                    .into_inner();
                all.extend(page.activities);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|a| {
                    vec![
                        a.activity_id.clone(),
                        type_name(a.r#type),
                        state_name(a.state),
                        if a.hubspot_id.is_empty() {
                            "-".into()
                        } else {
                            format!("{}/{}", a.hubspot_object, a.hubspot_id)
                        },
                        a.attempts.to_string(),
                        ts(&a.occurred_at),
                        a.reason.clone(),
                    ]
                })
                .collect();
            let json: Vec<_> = all
                .iter()
                .map(|a| {
                    json!({
                        "activity_id": a.activity_id, "type": type_name(a.r#type),
                        "state": state_name(a.state), "reason": a.reason,
                        "hubspot_object": a.hubspot_object, "hubspot_id": a.hubspot_id,
                        "attempts": a.attempts, "user_id": a.user_id,
                        "contact_profile_id": a.contact_profile_id,
                        "company_profile_id": a.company_profile_id,
                        "occurred_at": a.occurred_at.as_ref().map(|t| t.to_string()),
                        "updated_at": a.updated_at.as_ref().map(|t| t.to_string()),
                    })
                })
                .collect();
            output::table(
                ctx.global.output,
                &[
                    "ACTIVITY", "TYPE", "STATE", "HUBSPOT", "ATTEMPTS", "OCCURRED", "REASON",
                ],
                &rows,
                &json,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_with_a_clear_error() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_types(&s(&["email", "Calls"])).unwrap(), vec![1, 2]);
        assert_eq!(parse_types(&s(&["none"])).unwrap(), Vec::<i32>::new());
        let err = parse_types(&s(&["fax"])).unwrap_err().to_string();
        assert!(err.contains("--types") && err.contains("fax"), "{err}");
        assert_eq!(state_name(WritebackState::Dropped as i32), "dropped");
        assert_eq!(mode_name(WritebackLogMode::Tasks as i32), "tasks");
    }
}
