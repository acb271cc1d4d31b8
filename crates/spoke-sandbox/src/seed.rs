//! The seed document: portals with their settings, owners, users, properties, pipelines and records.
//!
//! The same types are accepted from a JSON file (`--seed`), from `POST /_sandbox/portals` and in-process
//! through [`crate::SandboxControl::seed_portal`]. Every field except `portalId` has a default, so
//! `{"portals":[{"portalId":1}]}` is a complete seed (standard properties, a default deal pipeline).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A whole seed document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// The portals to create.
    #[serde(default)]
    pub portals: Vec<PortalSeed>,
}

impl Seed {
    /// Reads and parses a seed JSON file.
    pub fn from_file(path: &Path) -> Result<Seed> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::SeedRead {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// One portal (hub) and everything in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortalSeed {
    /// The hub id.
    pub portal_id: u64,
    /// `STANDARD`, `DEVELOPER_TEST`, `SANDBOX`, `APP_DEVELOPER`.
    #[serde(default = "default_account_type")]
    pub account_type: String,
    /// Optional plan tier label reported by the admin API (HubSpot does not expose it in account-info).
    #[serde(default)]
    pub tier: Option<String>,
    /// IANA time zone, e.g. `US/Eastern`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Company currency, e.g. `USD`.
    #[serde(default = "default_currency")]
    pub company_currency: String,
    /// Additional currencies.
    #[serde(default)]
    pub additional_currencies: Vec<String>,
    /// UI domain, e.g. `app.hubspot.com`.
    #[serde(default = "default_ui_domain")]
    pub ui_domain: String,
    /// Data hosting location, e.g. `na1`.
    #[serde(default = "default_hosting")]
    pub data_hosting_location: String,
    /// The user (email or id) `/oauth/authorize` consents as when the request names none.
    #[serde(default)]
    pub default_oauth_user: Option<String>,
    /// Private-app tokens accepted as bearer tokens of this portal.
    #[serde(default)]
    pub private_app_tokens: Vec<String>,
    /// CRM owners.
    #[serde(default)]
    pub owners: Vec<OwnerSeed>,
    /// Users of the portal (settings API).
    #[serde(default)]
    pub users: Vec<UserSeed>,
    /// Extra (custom) properties per object type name, added to the standard set.
    #[serde(default)]
    pub properties: BTreeMap<String, Vec<PropertyDef>>,
    /// Whether the standard HubSpot properties are created (default true).
    #[serde(default = "yes")]
    pub standard_properties: bool,
    /// Pipelines per object type name (`deals`); a default sales pipeline when absent.
    #[serde(default)]
    pub pipelines: BTreeMap<String, Vec<PipelineSeed>>,
    /// Records per object type name.
    #[serde(default)]
    pub records: BTreeMap<String, Vec<RecordSeed>>,
    /// Associations between seeded records.
    #[serde(default)]
    pub associations: Vec<AssociationSeed>,
}

impl PortalSeed {
    /// A portal with every default and no data.
    pub fn new(portal_id: u64) -> Self {
        Self {
            portal_id,
            account_type: default_account_type(),
            tier: None,
            time_zone: default_time_zone(),
            company_currency: default_currency(),
            additional_currencies: Vec::new(),
            ui_domain: default_ui_domain(),
            data_hosting_location: default_hosting(),
            default_oauth_user: None,
            private_app_tokens: Vec::new(),
            owners: Vec::new(),
            users: Vec::new(),
            properties: BTreeMap::new(),
            standard_properties: true,
            pipelines: BTreeMap::new(),
            records: BTreeMap::new(),
            associations: Vec::new(),
        }
    }
}

/// A CRM owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerSeed {
    /// Owner id (what `hubspot_owner_id` holds).
    pub id: String,
    /// Email.
    pub email: String,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: String,
    /// The user id this owner belongs to.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Archived (deactivated) owner.
    #[serde(default)]
    pub archived: bool,
    /// Teams, passed through as given.
    #[serde(default)]
    pub teams: Vec<Value>,
}

/// A user of the portal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSeed {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: String,
    /// Super Admin flag.
    #[serde(default)]
    pub super_admin: bool,
    /// Role ids.
    #[serde(default)]
    pub role_ids: Vec<String>,
    /// Primary team id.
    #[serde(default)]
    pub primary_team_id: Option<String>,
    /// The owner id linked to this user, if any.
    #[serde(default)]
    pub owner_id: Option<String>,
}

/// A property definition (standard or custom).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyDef {
    /// Internal name.
    pub name: String,
    /// Label (defaults to the name).
    #[serde(default)]
    pub label: String,
    /// `string`, `number`, `date`, `datetime`, `enumeration`, `bool`.
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    /// `text`, `textarea`, `number`, `select`, `radio`, `checkbox`, `booleancheckbox`, `date`, ...
    #[serde(default = "default_field_type")]
    pub field_type: String,
    /// Group name (defaults per object).
    #[serde(default)]
    pub group_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Options of an enumeration.
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    /// Calculated by HubSpot (read-only).
    #[serde(default)]
    pub calculated: bool,
    /// Unique values enforced.
    #[serde(default)]
    pub has_unique_value: bool,
    /// Hidden in the UI.
    #[serde(default)]
    pub hidden: bool,
    /// Standard property.
    #[serde(default)]
    pub hubspot_defined: bool,
    /// Values cannot be written through the API.
    #[serde(default)]
    pub read_only_value: bool,
    /// Display order.
    #[serde(default)]
    pub display_order: i64,
}

/// One option of an enumeration property.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyOption {
    /// Label shown to users.
    pub label: String,
    /// Internal value (what the API accepts, case-sensitive).
    pub value: String,
    /// Display order.
    #[serde(default)]
    pub display_order: i64,
    /// Hidden option.
    #[serde(default)]
    pub hidden: bool,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A pipeline with its stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSeed {
    /// Pipeline id (e.g. `default`).
    pub id: String,
    /// Label.
    pub label: String,
    /// Display order.
    #[serde(default)]
    pub display_order: i64,
    /// Stages.
    #[serde(default)]
    pub stages: Vec<StageSeed>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageSeed {
    /// Stage id (what `dealstage` holds).
    pub id: String,
    /// Label.
    pub label: String,
    /// Display order.
    #[serde(default)]
    pub display_order: i64,
    /// Win probability `0.0..=1.0` as HubSpot's metadata string.
    #[serde(default)]
    pub probability: Option<String>,
    /// Closed stage.
    #[serde(default)]
    pub is_closed: bool,
}

/// A record to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordSeed {
    /// Fixed id (optional; assigned otherwise).
    #[serde(default)]
    pub id: Option<String>,
    /// Property values (strings; numbers and booleans are converted).
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// An association between two seeded records (default association type).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssociationSeed {
    /// From object type name.
    pub from_type: String,
    /// From record id.
    pub from_id: String,
    /// To object type name.
    pub to_type: String,
    /// To record id.
    pub to_id: String,
}

fn default_account_type() -> String {
    "STANDARD".into()
}
fn default_time_zone() -> String {
    "US/Eastern".into()
}
fn default_currency() -> String {
    "USD".into()
}
fn default_ui_domain() -> String {
    "app.hubspot.com".into()
}
fn default_hosting() -> String {
    "na1".into()
}
fn default_type() -> String {
    "string".into()
}
fn default_field_type() -> String {
    "text".into()
}
fn yes() -> bool {
    true
}
