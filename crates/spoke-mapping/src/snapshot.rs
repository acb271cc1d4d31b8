//! One org configuration version: both mappings, export preferences, duplicate settings and the
//! intent mapping, exactly as the APIs return them. Every save stores a complete snapshot, so a
//! pinned version can always be read back unchanged.

use spoke_mapping_core::{
    CompiledMapping, CompiledRow, DuplicateSettings, ExportPreferences, IntentTopic, Object,
    UpdateMode,
};
use spoke_proto::common::v1 as pc;
use spoke_proto::mapping::v1 as pm;

use crate::defaults;
use crate::error::{Error, Result};
use crate::properties::PortalProperties;

/// The whole configuration of an org at one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Org configuration version.
    pub version: i64,
    /// Companies mapping.
    pub companies: pm::Mapping,
    /// Contacts mapping.
    pub contacts: pm::Mapping,
    /// Export preferences (one entry per object).
    pub preferences: pm::ExportPreferences,
    /// Duplicate settings (one entry per object).
    pub duplicates: pm::DuplicateSettings,
    /// Intent mapping.
    pub intent: pm::IntentMapping,
}

/// Default export preferences of every object, unsaved.
pub fn default_preferences() -> pm::ExportPreferences {
    pm::ExportPreferences {
        objects: Object::ALL
            .iter()
            .map(|o| ExportPreferences::default().to_proto(*o))
            .collect(),
        version: 0,
        saved_at: None,
    }
}

/// Default duplicate settings of every object, unsaved.
pub fn default_duplicates() -> pm::DuplicateSettings {
    pm::DuplicateSettings {
        objects: Object::ALL
            .iter()
            .map(|o| DuplicateSettings::default().to_proto(*o))
            .collect(),
        version: 0,
        saved_at: None,
    }
}

impl Snapshot {
    /// The built-in configuration, reported at `version` (0 for an org that never saved).
    pub fn defaults(version: i64) -> Self {
        Self {
            version,
            companies: defaults::default_mapping(Object::Companies),
            contacts: defaults::default_mapping(Object::Contacts),
            preferences: default_preferences(),
            duplicates: default_duplicates(),
            intent: pm::IntentMapping::default(),
        }
    }

    /// The mapping of `object`.
    pub fn mapping(&self, object: Object) -> &pm::Mapping {
        match object {
            Object::Companies => &self.companies,
            Object::Contacts => &self.contacts,
        }
    }

    /// The mapping of `object`, mutable.
    pub fn mapping_mut(&mut self, object: Object) -> &mut pm::Mapping {
        match object {
            Object::Companies => &mut self.companies,
            Object::Contacts => &mut self.contacts,
        }
    }

    /// The universal default currency (kept equal on both mappings).
    pub fn default_currency(&self) -> &str {
        &self.companies.default_currency
    }

    /// Export preferences of `object`.
    pub fn object_preferences(&self, object: Object) -> Result<ExportPreferences> {
        let p = self
            .preferences
            .objects
            .iter()
            .find(|p| Object::from_proto(p.object) == Some(object));
        match p {
            Some(p) => ExportPreferences::from_proto(p).map_err(|e| Error::Corrupt(e.to_string())),
            None => Ok(ExportPreferences::default()),
        }
    }

    /// Duplicate settings of `object`.
    pub fn object_duplicates(&self, object: Object) -> Result<DuplicateSettings> {
        let d = self
            .duplicates
            .objects
            .iter()
            .find(|d| Object::from_proto(d.object) == Some(object));
        match d {
            Some(d) => DuplicateSettings::from_proto(d).map_err(|e| Error::Corrupt(e.to_string())),
            None => Ok(DuplicateSettings::default()),
        }
    }

    /// Intent topics in core form.
    pub fn intent_topics(&self) -> Result<Vec<IntentTopic>> {
        self.intent
            .topics
            .iter()
            .map(|t| IntentTopic::from_proto(t).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }

    /// Compiles `object` against the portal's properties: what the export worker applies.
    pub fn compile(&self, object: Object, props: &PortalProperties) -> Result<CompiledMapping> {
        let preferences = self.object_preferences(object)?;
        let duplicate_settings = self.object_duplicates(object)?.narrowed(&preferences);
        let intent_topics = match object {
            Object::Companies => self.intent_topics()?,
            Object::Contacts => Vec::new(),
        };
        Ok(CompiledMapping {
            object,
            version: self.version,
            rows: compile_rows(&self.mapping(object).rows, props),
            default_currency: self.default_currency().to_string(),
            intent_topics,
            preferences,
            duplicate_settings,
            portal_id: props.portal_id,
        })
    }
}

/// Resolves rows against property definitions. A target missing from the portal (deleted
/// after the save) compiles as text, so HubSpot's own answer reaches the record's result.
pub fn compile_rows(rows: &[pm::MappingRow], props: &PortalProperties) -> Vec<CompiledRow> {
    rows.iter()
        .map(|r| {
            let prop = props.by_name.get(r.target_property.trim());
            CompiledRow {
                source_fields: r
                    .source_fields
                    .iter()
                    .map(|s| s.trim().to_string())
                    .collect(),
                target_property: r.target_property.trim().to_string(),
                update_mode: UpdateMode::from_proto(r.update_mode).unwrap_or_default(),
                value_map: r
                    .value_map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                target_type: prop.map_or_else(|| "string".into(), |p| p.property_type.clone()),
                target_field_type: prop.map_or_else(|| "text".into(), |p| p.field_type.clone()),
                allowed_values: prop
                    .filter(|p| p.property_type == "enumeration")
                    .map(|p| p.option_values())
                    .unwrap_or_default(),
                currency: prop.is_some_and(|p| p.currency),
            }
        })
        .collect()
}

/// Rows as saved: UNSPECIFIED update modes become complete-if-missing, names trimmed.
pub fn normalize_rows(rows: &[pm::MappingRow]) -> Vec<pm::MappingRow> {
    rows.iter()
        .map(|r| pm::MappingRow {
            source_fields: r
                .source_fields
                .iter()
                .map(|s| s.trim().to_string())
                .collect(),
            target_property: r.target_property.trim().to_string(),
            update_mode: pc::UpdateMode::from(
                UpdateMode::from_proto(r.update_mode).unwrap_or_default(),
            ) as i32,
            value_map: r.value_map.clone(),
        })
        .collect()
}
