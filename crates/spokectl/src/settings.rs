//! Admin configuration: field mapping (`mapping show|set|test|reset`) and export preferences with
//! duplicate settings (`prefs show|set|reset`).
//!
//! `mapping show --output json` prints the file `mapping set` and `mapping test` read, so the
//! round trip is: show → edit → test → set. `set` sends the version it was shown, so a change
//! someone else saved in between is refused (ABORTED) instead of silently overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use spoke_proto::common::v1::{DuplicateAction, UpdateMode};
use spoke_proto::mapping::v1::mapping_service_client::MappingServiceClient;
use spoke_proto::mapping::v1::{
    DuplicateActionSet, FieldTestStatus, GetDuplicateSettingsRequest, GetExportPreferencesRequest,
    GetMappingRequest, Mapping, MappingRow, ObjectDuplicateSettingsUpdate,
    ObjectExportPreferencesUpdate, ResetExportPreferencesRequest, ResetMappingRequest,
    SaveDuplicateSettingsRequest, SaveExportPreferencesRequest, SaveMappingRequest,
    TestMappingRequest,
};

use crate::cli::{ObjectArg, OutputFormat};
use crate::context::Context;
use crate::export::object_type;
use crate::output::{self, object_name};

/// Field-mapping commands (admin).
#[derive(Subcommand, Debug)]
pub enum MappingCmd {
    /// Show the current mapping of an object (`--output json` gives the file `set` reads).
    Show {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
    },
    /// Validate against the portal's properties and save FILE as the object's new mapping.
    Set {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
        /// JSON as printed by `mapping show --output json`.
        file: PathBuf,
        /// Save even if someone saved another version since FILE was shown.
        #[arg(long)]
        force: bool,
    },
    /// Create a test record in HubSpot with FILE's rows (default: the saved mapping), read it
    /// back, delete it, and show the result per field.
    Test {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
        /// Unsaved mapping to test (JSON as printed by `mapping show --output json`).
        file: Option<PathBuf>,
    },
    /// Back to the default mapping (saved as a new version).
    Reset {
        /// companies or contacts.
        #[arg(value_enum)]
        object: ObjectArg,
    },
}

/// Export-preference and duplicate-setting commands (admin).
#[derive(Subcommand, Debug)]
pub enum PrefsCmd {
    /// Export preferences and duplicate settings of every object.
    Show,
    /// Change one object's preferences; options not given are kept.
    Set {
        /// companies or contacts.
        #[arg(long, value_enum)]
        object: ObjectArg,
        /// Users may export this object.
        #[arg(long)]
        allowed: Option<bool>,
        /// Max records per export (1..=100000).
        #[arg(long)]
        max_per_export: Option<i32>,
        /// Records without a duplicate may be created.
        #[arg(long)]
        create_new: Option<bool>,
        /// Users may create duplicates of existing records.
        #[arg(long)]
        allow_duplicate_creation: Option<bool>,
        /// Existing records may be updated.
        #[arg(long)]
        update_existing: Option<bool>,
        /// What happens to a duplicate by default.
        #[arg(long, value_enum)]
        default_action: Option<ActionArg>,
        /// The actions users may choose instead (comma separated; empty: none).
        #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
        user_options: Option<Vec<ActionArg>>,
    },
    /// Back to the default export preferences.
    Reset,
}

/// A duplicate action on the command line.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionArg {
    /// Update the existing record.
    Update,
    /// Create a duplicate.
    Create,
    /// Skip the record.
    Skip,
    /// Ask the exporting user (review step).
    Ask,
}

impl From<ActionArg> for DuplicateAction {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::Update => DuplicateAction::UpdateExisting,
            ActionArg::Create => DuplicateAction::CreateDuplicate,
            ActionArg::Skip => DuplicateAction::Skip,
            ActionArg::Ask => DuplicateAction::NeedsReview,
        }
    }
}

type Client = MappingServiceClient<tonic::transport::Channel>;

fn client(ctx: &Context) -> anyhow::Result<Client> {
    Ok(MappingServiceClient::new(ctx.channel(&ctx.global.mapping)?))
}

fn name_of(prefix: &str, s: &str) -> String {
    s.trim_start_matches(prefix).to_ascii_lowercase()
}

fn action_name(a: i32) -> String {
    match DuplicateAction::try_from(a) {
        Ok(DuplicateAction::UpdateExisting) => "update".into(),
        Ok(DuplicateAction::CreateDuplicate) => "create".into(),
        Ok(DuplicateAction::Skip) => "skip".into(),
        Ok(DuplicateAction::NeedsReview) => "ask".into(),
        _ => "-".into(),
    }
}

/// One mapping row in the file `mapping show` prints and `mapping set` reads.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RowFile {
    /// Provider fields, first non-empty wins.
    pub sources: Vec<String>,
    /// HubSpot property (internal name).
    pub target: String,
    /// `complete_if_missing` (default) or `overwrite`.
    #[serde(default = "default_mode")]
    pub update_mode: String,
    /// Provider value → HubSpot internal value (enumeration targets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_map: BTreeMap<String, String>,
}

fn default_mode() -> String {
    "complete_if_missing".into()
}

/// The mapping file.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// companies or contacts.
    pub object: String,
    /// Version it was shown at (0: the built-in default).
    #[serde(default)]
    pub version: i64,
    /// Universal default currency (ISO 4217).
    #[serde(default)]
    pub default_currency: String,
    /// The rows, in display order.
    pub rows: Vec<RowFile>,
    /// Informational: the built-in default.
    #[serde(default, skip_serializing)]
    pub is_default: bool,
}

impl MappingFile {
    fn from_proto(m: &Mapping) -> Self {
        Self {
            object: object_name(m.object),
            version: m.version,
            default_currency: m.default_currency.clone(),
            is_default: m.is_default,
            rows: m
                .rows
                .iter()
                .map(|r| RowFile {
                    sources: r.source_fields.clone(),
                    target: r.target_property.clone(),
                    update_mode: match r.update_mode() {
                        UpdateMode::Overwrite => "overwrite".into(),
                        _ => "complete_if_missing".into(),
                    },
                    value_map: r.value_map.clone().into_iter().collect(),
                })
                .collect(),
        }
    }

    /// The rows as the API takes them; an unknown update mode names its row.
    fn rows(&self) -> anyhow::Result<Vec<MappingRow>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mode = match r.update_mode.as_str() {
                    "complete_if_missing" => UpdateMode::CompleteIfMissing,
                    "overwrite" => UpdateMode::Overwrite,
                    other => anyhow::bail!(
                        "rows[{i}] (target {:?}): update_mode {other:?} is not complete_if_missing or overwrite",
                        r.target
                    ),
                };
                Ok(MappingRow {
                    source_fields: r.sources.clone(),
                    target_property: r.target.clone(),
                    update_mode: mode as i32,
                    value_map: r.value_map.clone().into_iter().collect(),
                })
            })
            .collect()
    }
}

/// Reads a mapping file for `object`; errors name the file and what is wrong.
pub fn read_mapping_file(path: &Path, object: ObjectArg) -> anyhow::Result<MappingFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let file: MappingFile = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a mapping file: {e}", path.display()))?;
    let want = object_name(object_type(object) as i32);
    anyhow::ensure!(
        file.object == want,
        "{}: holds the {} mapping, not {want}",
        path.display(),
        file.object
    );
    Ok(file)
}

fn print_mapping(ctx: &Context, m: &Mapping, warnings: &[String]) -> anyhow::Result<()> {
    let file = MappingFile::from_proto(m);
    if ctx.global.output == OutputFormat::Table {
        println!(
            "{} mapping, version {}{}, default currency {}",
            file.object,
            file.version,
            if m.is_default {
                " (built-in default)"
            } else {
                ""
            },
            file.default_currency
        );
    }
    let rows: Vec<Vec<String>> = file
        .rows
        .iter()
        .map(|r| {
            vec![
                r.sources.join(" > "),
                r.target.clone(),
                r.update_mode.clone(),
                r.value_map
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    output::table(
        ctx.global.output,
        &[
            "sources (first non-empty wins)",
            "HubSpot property",
            "update mode",
            "value map",
        ],
        &rows,
        &file,
    )?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// The object's current (saved or default) mapping.
async fn current_mapping(
    ctx: &Context,
    c: &mut Client,
    object: ObjectArg,
) -> anyhow::Result<Mapping> {
    Ok(c.get_mapping(ctx.request(GetMappingRequest {
        object: object_type(object) as i32,
    })?)
    .await?
    .into_inner()
    .mapping
    .unwrap_or_default())
}

/// Runs a mapping command.
pub async fn mapping(ctx: &Context, cmd: MappingCmd) -> anyhow::Result<()> {
    let mut c = client(ctx)?;
    match cmd {
        MappingCmd::Show { object } => {
            let m = current_mapping(ctx, &mut c, object).await?;
            print_mapping(ctx, &m, &[])
        }
        MappingCmd::Set {
            object,
            file,
            force,
        } => {
            let f = read_mapping_file(&file, object)?;
            let resp = c
                .save_mapping(ctx.request(SaveMappingRequest {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    object: object_type(object) as i32,
                    rows: f.rows()?,
                    default_currency:
                        (!f.default_currency.is_empty()).then(|| f.default_currency.clone()),
                    expected_version: (!force).then_some(f.version),
                })?)
                .await?
                .into_inner();
            print_mapping(ctx, &resp.mapping.unwrap_or_default(), &resp.warnings)
        }
        MappingCmd::Test { object, file } => {
            let (rows, currency) = match file {
                Some(path) => {
                    let f = read_mapping_file(&path, object)?;
                    (f.rows()?, f.default_currency)
                }
                None => {
                    let m = current_mapping(ctx, &mut c, object).await?;
                    (m.rows, m.default_currency)
                }
            };
            let resp = c
                .test_mapping(ctx.request(TestMappingRequest {
                    object: object_type(object) as i32,
                    rows,
                    default_currency: currency,
                    sample_fields: Default::default(),
                })?)
                .await?
                .into_inner();
            let status = |s: i32| {
                FieldTestStatus::try_from(s)
                    .map(|s| name_of("FIELD_TEST_STATUS_", s.as_str_name()))
                    .unwrap_or_else(|_| s.to_string())
            };
            let rows: Vec<Vec<String>> = resp
                .fields
                .iter()
                .map(|f| {
                    vec![
                        f.target_property.clone(),
                        f.source_field.clone(),
                        f.sent_value.clone(),
                        f.read_back_value.clone(),
                        status(f.status),
                        f.message.clone(),
                    ]
                })
                .collect();
            let json = serde_json::json!({
                "success": resp.success,
                "message": resp.message,
                "test_record_id": resp.test_record_id,
                "cleaned_up": resp.cleaned_up,
                "fields": resp.fields.iter().map(|f| serde_json::json!({
                    "target": f.target_property, "source": f.source_field,
                    "sent": f.sent_value, "read_back": f.read_back_value,
                    "status": status(f.status), "message": f.message,
                })).collect::<Vec<_>>(),
            });
            output::table(
                ctx.global.output,
                &[
                    "property",
                    "source",
                    "sent",
                    "read back",
                    "result",
                    "message",
                ],
                &rows,
                &json,
            )?;
            if ctx.global.output == OutputFormat::Table {
                println!("\n{}", resp.message);
            }
            anyhow::ensure!(
                resp.success,
                "the test mapping did not pass: {}",
                resp.message
            );
            Ok(())
        }
        MappingCmd::Reset { object } => {
            let m = c
                .reset_mapping(ctx.request(ResetMappingRequest {
                    object: object_type(object) as i32,
                })?)
                .await?
                .into_inner()
                .mapping
                .unwrap_or_default();
            print_mapping(ctx, &m, &[])
        }
    }
}

/// Runs a preferences command.
pub async fn prefs(ctx: &Context, cmd: PrefsCmd) -> anyhow::Result<()> {
    let mut c = client(ctx)?;
    match cmd {
        PrefsCmd::Show => {}
        PrefsCmd::Reset => {
            c.reset_export_preferences(ctx.request(ResetExportPreferencesRequest {})?)
                .await?;
        }
        PrefsCmd::Set {
            object,
            allowed,
            max_per_export,
            create_new,
            allow_duplicate_creation,
            update_existing,
            default_action,
            user_options,
        } => {
            let object = object_type(object) as i32;
            let prefs_changed = allowed.is_some()
                || max_per_export.is_some()
                || create_new.is_some()
                || allow_duplicate_creation.is_some()
                || update_existing.is_some();
            let dups_changed = default_action.is_some() || user_options.is_some();
            anyhow::ensure!(
                prefs_changed || dups_changed,
                "nothing to change: give at least one option (see `spokectl prefs set --help`)"
            );
            // Preferences first: a duplicate default of "create" is only valid once duplicate
            // creation is allowed; the server judges each combination.
            if prefs_changed {
                c.save_export_preferences(ctx.request(SaveExportPreferencesRequest {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    updates: vec![ObjectExportPreferencesUpdate {
                        object,
                        allowed,
                        max_per_export,
                        create_new,
                        allow_duplicate_creation,
                        update_existing,
                    }],
                    expected_version: None,
                })?)
                .await?;
            }
            if dups_changed {
                c.save_duplicate_settings(ctx.request(SaveDuplicateSettingsRequest {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    updates: vec![ObjectDuplicateSettingsUpdate {
                        object,
                        default_action: default_action.map(|a| DuplicateAction::from(a) as i32),
                        user_options: user_options.map(|opts| {
                            DuplicateActionSet {
                                actions: opts
                                    .into_iter()
                                    .map(|a| DuplicateAction::from(a) as i32)
                                    .collect(),
                            }
                        }),
                    }],
                    expected_version: None,
                })?)
                .await?;
            }
        }
    }
    show_prefs(ctx, &mut c).await
}

async fn show_prefs(ctx: &Context, c: &mut Client) -> anyhow::Result<()> {
    let prefs = c
        .get_export_preferences(ctx.request(GetExportPreferencesRequest {})?)
        .await?
        .into_inner()
        .preferences
        .unwrap_or_default();
    let dups = c
        .get_duplicate_settings(ctx.request(GetDuplicateSettingsRequest {})?)
        .await?
        .into_inner()
        .settings
        .unwrap_or_default();
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for p in &prefs.objects {
        let d = dups.objects.iter().find(|d| d.object == p.object);
        let default_action = d.map(|d| action_name(d.default_action)).unwrap_or_default();
        let options: Vec<String> = d
            .map(|d| d.user_options.iter().map(|a| action_name(*a)).collect())
            .unwrap_or_default();
        rows.push(vec![
            object_name(p.object),
            yes(p.allowed),
            p.max_per_export.to_string(),
            yes(p.create_new),
            yes(p.allow_duplicate_creation),
            yes(p.update_existing),
            default_action.clone(),
            options.join(","),
        ]);
        json.push(serde_json::json!({
            "object": object_name(p.object),
            "allowed": p.allowed,
            "max_per_export": p.max_per_export,
            "create_new": p.create_new,
            "allow_duplicate_creation": p.allow_duplicate_creation,
            "update_existing": p.update_existing,
            "default_action": default_action,
            "user_options": options,
        }));
    }
    output::table(
        ctx.global.output,
        &[
            "object",
            "allowed",
            "max per export",
            "create new",
            "duplicates allowed",
            "update existing",
            "on duplicate",
            "users may choose",
        ],
        &rows,
        &json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::common::v1::ObjectType;

    #[test]
    fn mapping_file_round_trips_and_names_bad_rows() {
        let m = Mapping {
            object: ObjectType::Companies as i32,
            rows: vec![MappingRow {
                source_fields: vec!["company_name".into(), "legal_name".into()],
                target_property: "name".into(),
                update_mode: UpdateMode::Overwrite as i32,
                value_map: [("Tech".to_string(), "TECHNOLOGY".to_string())].into(),
            }],
            default_currency: "EUR".into(),
            version: 4,
            ..Default::default()
        };
        let file = MappingFile::from_proto(&m);
        let text = serde_json::to_string(&file).unwrap();
        let back: MappingFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, file);
        let rows = back.rows().unwrap();
        assert_eq!(rows, m.rows);

        let bad: MappingFile = serde_json::from_str(
            r#"{"object":"companies","rows":[{"sources":["a"],"target":"name"},{"sources":["b"],"target":"phone","update_mode":"always"}]}"#,
        )
        .unwrap();
        let err = bad.rows().unwrap_err().to_string();
        assert!(
            err.contains("rows[1]") && err.contains("phone") && err.contains("always"),
            "{err}"
        );
        assert_eq!(
            bad.rows.first().map(|r| r.update_mode.as_str()),
            Some("complete_if_missing")
        );
    }

    #[test]
    fn mapping_file_of_another_object_is_refused() {
        let path =
            std::env::temp_dir().join(format!("spokectl-mapping-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"object":"contacts","rows":[]}"#).unwrap();
        let err = read_mapping_file(&path, ObjectArg::Companies)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("contacts") && err.contains("companies"),
            "{err}"
        );
        std::fs::write(&path, r#"{"object":"companies","rows":[], "colour": 1}"#).unwrap();
        let err = read_mapping_file(&path, ObjectArg::Companies)
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
