//! The compiled mapping: what one object's export needs at one configuration version.

use std::collections::BTreeMap;

/// Upper bound of "max number of records a user can export at a time" (the guide's 100,000).
pub const MAX_PER_EXPORT: u32 = 100_000;

/// An exportable HubSpot object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    /// HubSpot companies.
    Companies,
    /// HubSpot contacts.
    Contacts,
}

impl Object {
    /// Both exportable objects, in display order.
    pub const ALL: [Object; 2] = [Object::Companies, Object::Contacts];

    /// The HubSpot API path segment (`companies`, `contacts`).
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Companies => "companies",
            Object::Contacts => "contacts",
        }
    }

    /// Parses `companies` / `contacts` (the form stored in the database).
    pub fn parse(s: &str) -> Option<Object> {
        match s {
            "companies" => Some(Object::Companies),
            "contacts" => Some(Object::Contacts),
            _ => None,
        }
    }
}

/// How a mapped value is written when the HubSpot record already holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpdateMode {
    /// Only fill empty HubSpot values (the product default). Creates fill everything.
    #[default]
    CompleteIfMissing,
    /// Always write the provider value.
    Overwrite,
}

impl UpdateMode {
    /// Stable name used in storage (`complete_if_missing`, `overwrite`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateMode::CompleteIfMissing => "complete_if_missing",
            UpdateMode::Overwrite => "overwrite",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<UpdateMode> {
        match s {
            "complete_if_missing" => Some(UpdateMode::CompleteIfMissing),
            "overwrite" => Some(UpdateMode::Overwrite),
            _ => None,
        }
    }
}

/// One compiled row: provider fields (hierarchy) → a HubSpot property, resolved against the
/// portal's property definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompiledRow {
    /// Provider fields in priority order; the first non-empty value wins.
    pub source_fields: Vec<String>,
    /// Internal name of the target HubSpot property.
    pub target_property: String,
    /// Update mode of this row.
    pub update_mode: UpdateMode,
    /// Provider value → HubSpot internal value (enumeration targets).
    pub value_map: BTreeMap<String, String>,
    /// HubSpot data type of the target (string, number, date, datetime, enumeration, bool, ...).
    pub target_type: String,
    /// HubSpot UI field type of the target (text, select, checkbox, ...).
    pub target_field_type: String,
    /// Valid internal values of an enumeration target; empty when unknown (not checked).
    pub allowed_values: Vec<String>,
    /// The target holds an amount in the mapping's default currency.
    pub currency: bool,
}

/// One of the five intent data points of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentDataPoint {
    /// Intent signal score (number, 0..=100).
    SignalScore,
    /// Intent audience strength (e.g. "A").
    AudienceStrength,
    /// Where the signal came from.
    SignalLocation,
    /// Provider id of the signal.
    IntentId,
    /// Date the signal was issued (YYYY-MM-DD).
    IssueDate,
}

impl IntentDataPoint {
    /// All five data points, in the guide's order.
    pub const ALL: [IntentDataPoint; 5] = [
        IntentDataPoint::SignalScore,
        IntentDataPoint::AudienceStrength,
        IntentDataPoint::SignalLocation,
        IntentDataPoint::IntentId,
        IntentDataPoint::IssueDate,
    ];

    /// Field name of the data point in `IntentTopicMapping` (without `_property`).
    pub fn as_str(self) -> &'static str {
        match self {
            IntentDataPoint::SignalScore => "signal_score",
            IntentDataPoint::AudienceStrength => "audience_strength",
            IntentDataPoint::SignalLocation => "signal_location",
            IntentDataPoint::IntentId => "intent_id",
            IntentDataPoint::IssueDate => "issue_date",
        }
    }
}

/// The custom company properties receiving one intent topic's data points.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntentTopic {
    /// Provider intent topic id.
    pub topic_id: String,
    /// Topic name, for display.
    pub topic_name: String,
    /// Property for the signal score; `None` leaves it unmapped.
    pub signal_score_property: Option<String>,
    /// Property for the audience strength.
    pub audience_strength_property: Option<String>,
    /// Property for the signal location.
    pub signal_location_property: Option<String>,
    /// Property for the intent id.
    pub intent_id_property: Option<String>,
    /// Property for the issue date.
    pub issue_date_property: Option<String>,
    /// Update mode of these properties.
    pub update_mode: UpdateMode,
}

impl IntentTopic {
    /// The target property of one data point, if mapped.
    pub fn property(&self, point: IntentDataPoint) -> Option<&str> {
        match point {
            IntentDataPoint::SignalScore => self.signal_score_property.as_deref(),
            IntentDataPoint::AudienceStrength => self.audience_strength_property.as_deref(),
            IntentDataPoint::SignalLocation => self.signal_location_property.as_deref(),
            IntentDataPoint::IntentId => self.intent_id_property.as_deref(),
            IntentDataPoint::IssueDate => self.issue_date_property.as_deref(),
        }
    }

    /// Mapped (data point, property) pairs.
    pub fn mapped(&self) -> impl Iterator<Item = (IntentDataPoint, &str)> {
        IntentDataPoint::ALL
            .into_iter()
            .filter_map(|p| self.property(p).map(|name| (p, name)))
    }
}

/// Export preferences of one object ("Export Preferences" tab of the guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportPreferences {
    /// Users may export this object.
    pub allowed: bool,
    /// Max records a user can export at a time, 1..=[`MAX_PER_EXPORT`].
    pub max_per_export: u32,
    /// Records without a duplicate may be created.
    pub create_new: bool,
    /// Users may create a duplicate of an existing record.
    pub allow_duplicate_creation: bool,
    /// Existing records may be updated.
    pub update_existing: bool,
}

impl Default for ExportPreferences {
    /// The guide's defaults: allowed, 100,000, create new, no duplicates, update existing.
    fn default() -> Self {
        Self {
            allowed: true,
            max_per_export: MAX_PER_EXPORT,
            create_new: true,
            allow_duplicate_creation: false,
            update_existing: true,
        }
    }
}

/// What to do with a record that has duplicate candidates in HubSpot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DuplicateAction {
    /// Update the existing record.
    UpdateExisting,
    /// Create a new record although one exists.
    CreateDuplicate,
    /// Do not export the record.
    Skip,
    /// Ask the exporting user (admin default only).
    NeedsReview,
}

impl DuplicateAction {
    /// Stable storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateAction::UpdateExisting => "update_existing",
            DuplicateAction::CreateDuplicate => "create_duplicate",
            DuplicateAction::Skip => "skip",
            DuplicateAction::NeedsReview => "needs_review",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<DuplicateAction> {
        match s {
            "update_existing" => Some(DuplicateAction::UpdateExisting),
            "create_duplicate" => Some(DuplicateAction::CreateDuplicate),
            "skip" => Some(DuplicateAction::Skip),
            "needs_review" => Some(DuplicateAction::NeedsReview),
            _ => None,
        }
    }
}

/// Duplicate settings of one object ("Admin Control of Duplication Settings").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateSettings {
    /// The admin's default action.
    pub default_action: DuplicateAction,
    /// Actions users may choose instead (never `NeedsReview`).
    pub user_options: Vec<DuplicateAction>,
}

impl Default for DuplicateSettings {
    /// Update existing by default; users may pick any of the three actions.
    fn default() -> Self {
        Self {
            default_action: DuplicateAction::UpdateExisting,
            user_options: vec![
                DuplicateAction::UpdateExisting,
                DuplicateAction::CreateDuplicate,
                DuplicateAction::Skip,
            ],
        }
    }
}

impl DuplicateSettings {
    /// The settings as the export sees them: `CreateDuplicate` is removed from the user
    /// options unless the preferences allow duplicate creation (the proto contract of
    /// `CompiledMapping.duplicate_settings`).
    pub fn narrowed(&self, prefs: &ExportPreferences) -> DuplicateSettings {
        let user_options = self
            .user_options
            .iter()
            .copied()
            .filter(|a| prefs.allow_duplicate_creation || *a != DuplicateAction::CreateDuplicate)
            .collect();
        DuplicateSettings {
            default_action: self.default_action,
            user_options,
        }
    }
}

/// Everything the export worker needs for one object at one configuration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledMapping {
    /// The object.
    pub object: Object,
    /// Org configuration version of this snapshot.
    pub version: i64,
    /// Rows in display order; targets are unique.
    pub rows: Vec<CompiledRow>,
    /// Default currency (ISO 4217) of currency targets.
    pub default_currency: String,
    /// Intent topics (companies only).
    pub intent_topics: Vec<IntentTopic>,
    /// Export preferences of the object.
    pub preferences: ExportPreferences,
    /// Duplicate settings of the object, already narrowed by the preferences.
    pub duplicate_settings: DuplicateSettings,
    /// Portal the properties were resolved against.
    pub portal_id: i64,
}
