//! Conversions between the compiled mapping and its proto form (`spoke.mapping.v1`).

use spoke_proto::common::v1 as pc;
use spoke_proto::mapping::v1 as pm;

use crate::compiled::{
    CompiledMapping, CompiledRow, DuplicateAction, DuplicateSettings, ExportPreferences,
    IntentTopic, MAX_PER_EXPORT, Object, UpdateMode,
};
use crate::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidProto(msg.into())
}

impl From<Object> for pc::ObjectType {
    fn from(o: Object) -> Self {
        match o {
            Object::Companies => pc::ObjectType::Companies,
            Object::Contacts => pc::ObjectType::Contacts,
        }
    }
}

impl Object {
    /// The object of a proto `ObjectType` value; `None` for unspecified, deals or unknown.
    pub fn from_proto(value: i32) -> Option<Object> {
        match pc::ObjectType::try_from(value).ok()? {
            pc::ObjectType::Companies => Some(Object::Companies),
            pc::ObjectType::Contacts => Some(Object::Contacts),
            pc::ObjectType::Unspecified | pc::ObjectType::Deals => None,
        }
    }
}

impl From<UpdateMode> for pc::UpdateMode {
    fn from(m: UpdateMode) -> Self {
        match m {
            UpdateMode::CompleteIfMissing => pc::UpdateMode::CompleteIfMissing,
            UpdateMode::Overwrite => pc::UpdateMode::Overwrite,
        }
    }
}

impl UpdateMode {
    /// The mode of a proto `UpdateMode` value; UNSPECIFIED is the default
    /// (complete if missing), unknown values are `None`.
    pub fn from_proto(value: i32) -> Option<UpdateMode> {
        match pc::UpdateMode::try_from(value).ok()? {
            pc::UpdateMode::Unspecified | pc::UpdateMode::CompleteIfMissing => {
                Some(UpdateMode::CompleteIfMissing)
            }
            pc::UpdateMode::Overwrite => Some(UpdateMode::Overwrite),
        }
    }
}

impl From<DuplicateAction> for pc::DuplicateAction {
    fn from(a: DuplicateAction) -> Self {
        match a {
            DuplicateAction::UpdateExisting => pc::DuplicateAction::UpdateExisting,
            DuplicateAction::CreateDuplicate => pc::DuplicateAction::CreateDuplicate,
            DuplicateAction::Skip => pc::DuplicateAction::Skip,
            DuplicateAction::NeedsReview => pc::DuplicateAction::NeedsReview,
        }
    }
}

impl DuplicateAction {
    /// The action of a proto `DuplicateAction` value; `None` for unspecified or unknown.
    pub fn from_proto(value: i32) -> Option<DuplicateAction> {
        match pc::DuplicateAction::try_from(value).ok()? {
            pc::DuplicateAction::UpdateExisting => Some(DuplicateAction::UpdateExisting),
            pc::DuplicateAction::CreateDuplicate => Some(DuplicateAction::CreateDuplicate),
            pc::DuplicateAction::Skip => Some(DuplicateAction::Skip),
            pc::DuplicateAction::NeedsReview => Some(DuplicateAction::NeedsReview),
            pc::DuplicateAction::Unspecified => None,
        }
    }
}

impl ExportPreferences {
    /// The proto form for `object`.
    pub fn to_proto(&self, object: Object) -> pm::ObjectExportPreferences {
        pm::ObjectExportPreferences {
            object: pc::ObjectType::from(object) as i32,
            allowed: self.allowed,
            max_per_export: i32::try_from(self.max_per_export).unwrap_or(i32::MAX),
            create_new: self.create_new,
            allow_duplicate_creation: self.allow_duplicate_creation,
            update_existing: self.update_existing,
        }
    }

    /// From the proto form; `max_per_export` must be within 1..=100,000.
    pub fn from_proto(p: &pm::ObjectExportPreferences) -> Result<Self> {
        let max = u32::try_from(p.max_per_export)
            .ok()
            .filter(|m| (1..=MAX_PER_EXPORT).contains(m))
            .ok_or_else(|| {
                invalid(format!(
                    "preferences.max_per_export {} is outside 1..={MAX_PER_EXPORT}",
                    p.max_per_export
                ))
            })?;
        Ok(Self {
            allowed: p.allowed,
            max_per_export: max,
            create_new: p.create_new,
            allow_duplicate_creation: p.allow_duplicate_creation,
            update_existing: p.update_existing,
        })
    }
}

impl DuplicateSettings {
    /// The proto form for `object`.
    pub fn to_proto(&self, object: Object) -> pm::ObjectDuplicateSettings {
        pm::ObjectDuplicateSettings {
            object: pc::ObjectType::from(object) as i32,
            default_action: pc::DuplicateAction::from(self.default_action) as i32,
            user_options: self
                .user_options
                .iter()
                .map(|a| pc::DuplicateAction::from(*a) as i32)
                .collect(),
        }
    }

    /// From the proto form; every action must be known.
    pub fn from_proto(p: &pm::ObjectDuplicateSettings) -> Result<Self> {
        let default_action = DuplicateAction::from_proto(p.default_action).ok_or_else(|| {
            invalid(format!(
                "duplicate_settings.default_action {} is not an action",
                p.default_action
            ))
        })?;
        let user_options = p
            .user_options
            .iter()
            .enumerate()
            .map(|(i, a)| {
                DuplicateAction::from_proto(*a).ok_or_else(|| {
                    invalid(format!(
                        "duplicate_settings.user_options[{i}] {a} is not an action"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            default_action,
            user_options,
        })
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl IntentTopic {
    /// The proto form (unmapped data points as empty strings).
    pub fn to_proto(&self) -> pm::IntentTopicMapping {
        let name = |p: &Option<String>| p.clone().unwrap_or_default();
        pm::IntentTopicMapping {
            topic_id: self.topic_id.clone(),
            topic_name: self.topic_name.clone(),
            signal_score_property: name(&self.signal_score_property),
            audience_strength_property: name(&self.audience_strength_property),
            signal_location_property: name(&self.signal_location_property),
            intent_id_property: name(&self.intent_id_property),
            issue_date_property: name(&self.issue_date_property),
            update_mode: pc::UpdateMode::from(self.update_mode) as i32,
        }
    }

    /// From the proto form (empty property names are unmapped data points).
    pub fn from_proto(p: &pm::IntentTopicMapping) -> Result<Self> {
        Ok(Self {
            topic_id: p.topic_id.clone(),
            topic_name: p.topic_name.clone(),
            signal_score_property: non_empty(&p.signal_score_property),
            audience_strength_property: non_empty(&p.audience_strength_property),
            signal_location_property: non_empty(&p.signal_location_property),
            intent_id_property: non_empty(&p.intent_id_property),
            issue_date_property: non_empty(&p.issue_date_property),
            update_mode: UpdateMode::from_proto(p.update_mode).ok_or_else(|| {
                invalid(format!(
                    "intent topic {:?}: update_mode {} is unknown",
                    p.topic_id, p.update_mode
                ))
            })?,
        })
    }
}

impl CompiledRow {
    /// The proto form.
    pub fn to_proto(&self) -> pm::CompiledRow {
        pm::CompiledRow {
            source_fields: self.source_fields.clone(),
            target_property: self.target_property.clone(),
            update_mode: pc::UpdateMode::from(self.update_mode) as i32,
            value_map: self
                .value_map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target_type: self.target_type.clone(),
            target_field_type: self.target_field_type.clone(),
            allowed_values: self.allowed_values.clone(),
            currency: self.currency,
        }
    }

    /// From the proto form.
    pub fn from_proto(index: usize, p: &pm::CompiledRow) -> Result<Self> {
        if p.target_property.trim().is_empty() {
            return Err(invalid(format!("rows[{index}].target_property is empty")));
        }
        Ok(Self {
            source_fields: p.source_fields.clone(),
            target_property: p.target_property.clone(),
            update_mode: UpdateMode::from_proto(p.update_mode).ok_or_else(|| {
                invalid(format!(
                    "rows[{index}].update_mode {} is unknown",
                    p.update_mode
                ))
            })?,
            value_map: p
                .value_map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target_type: p.target_type.clone(),
            target_field_type: p.target_field_type.clone(),
            allowed_values: p.allowed_values.clone(),
            currency: p.currency,
        })
    }
}

impl CompiledMapping {
    /// The proto form served by `GetCompiledMapping`.
    pub fn to_proto(&self) -> pm::CompiledMapping {
        pm::CompiledMapping {
            object: pc::ObjectType::from(self.object) as i32,
            version: self.version,
            rows: self.rows.iter().map(CompiledRow::to_proto).collect(),
            default_currency: self.default_currency.clone(),
            intent_topics: self
                .intent_topics
                .iter()
                .map(IntentTopic::to_proto)
                .collect(),
            preferences: Some(self.preferences.to_proto(self.object)),
            duplicate_settings: Some(self.duplicate_settings.to_proto(self.object)),
            portal_id: self.portal_id,
        }
    }
}

impl TryFrom<&pm::CompiledMapping> for CompiledMapping {
    type Error = Error;

    fn try_from(p: &pm::CompiledMapping) -> Result<Self> {
        let object = Object::from_proto(p.object)
            .ok_or_else(|| invalid(format!("object {} is not companies or contacts", p.object)))?;
        let rows = p
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRow::from_proto(i, r))
            .collect::<Result<_>>()?;
        let intent_topics = p
            .intent_topics
            .iter()
            .map(IntentTopic::from_proto)
            .collect::<Result<_>>()?;
        let preferences = p
            .preferences
            .as_ref()
            .ok_or_else(|| invalid("preferences is missing"))
            .and_then(ExportPreferences::from_proto)?;
        let duplicate_settings = p
            .duplicate_settings
            .as_ref()
            .ok_or_else(|| invalid("duplicate_settings is missing"))
            .and_then(DuplicateSettings::from_proto)?;
        Ok(Self {
            object,
            version: p.version,
            rows,
            default_currency: p.default_currency.clone(),
            intent_topics,
            preferences,
            duplicate_settings,
            portal_id: p.portal_id,
        })
    }
}

impl TryFrom<pm::CompiledMapping> for CompiledMapping {
    type Error = Error;

    fn try_from(p: pm::CompiledMapping) -> Result<Self> {
        CompiledMapping::try_from(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::DuplicateAction as D;

    fn sample() -> CompiledMapping {
        CompiledMapping {
            object: Object::Companies,
            version: 7,
            rows: vec![CompiledRow {
                source_fields: vec!["industry".into(), "sub_industry".into()],
                target_property: "industry".into(),
                update_mode: UpdateMode::Overwrite,
                value_map: [("Tech".to_string(), "TECHNOLOGY".to_string())].into(),
                target_type: "enumeration".into(),
                target_field_type: "select".into(),
                allowed_values: vec!["TECHNOLOGY".into()],
                currency: false,
            }],
            default_currency: "EUR".into(),
            intent_topics: vec![IntentTopic {
                topic_id: "cloud".into(),
                topic_name: "Cloud".into(),
                signal_score_property: Some("cloud_score".into()),
                issue_date_property: Some("cloud_date".into()),
                ..IntentTopic::default()
            }],
            preferences: ExportPreferences {
                max_per_export: 500,
                allow_duplicate_creation: true,
                ..ExportPreferences::default()
            },
            duplicate_settings: DuplicateSettings {
                default_action: D::NeedsReview,
                user_options: vec![D::Skip, D::CreateDuplicate],
            },
            portal_id: 42,
        }
    }

    #[test]
    fn round_trips_through_proto() {
        let m = sample();
        let proto = m.to_proto();
        assert_eq!(proto.preferences.as_ref().unwrap().max_per_export, 500);
        assert_eq!(proto.intent_topics[0].signal_location_property, "");
        assert_eq!(CompiledMapping::try_from(&proto).unwrap(), m);
    }

    #[test]
    fn rejects_malformed_proto_naming_the_field() {
        type Mutation = Box<dyn Fn(&mut pm::CompiledMapping)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|p| p.object = 3), "object 3"),
            (
                Box::new(|p| p.rows[0].update_mode = 9),
                "rows[0].update_mode",
            ),
            (
                Box::new(|p| p.rows[0].target_property.clear()),
                "rows[0].target_property",
            ),
            (Box::new(|p| p.preferences = None), "preferences is missing"),
            (
                Box::new(|p| p.preferences.as_mut().unwrap().max_per_export = 0),
                "max_per_export 0",
            ),
            (
                Box::new(|p| p.preferences.as_mut().unwrap().max_per_export = 100_001),
                "max_per_export 100001",
            ),
            (
                Box::new(|p| p.duplicate_settings.as_mut().unwrap().default_action = 0),
                "default_action",
            ),
            (
                Box::new(|p| p.duplicate_settings.as_mut().unwrap().user_options.push(17)),
                "user_options[2]",
            ),
        ];
        for (mutate, fragment) in cases {
            let mut p = sample().to_proto();
            mutate(&mut p);
            let err = CompiledMapping::try_from(&p).unwrap_err().to_string();
            assert!(err.contains(fragment), "{fragment}: {err}");
        }
    }

    #[test]
    fn unspecified_update_mode_reads_as_complete_if_missing() {
        let mut p = sample().to_proto();
        p.rows[0].update_mode = 0;
        let m = CompiledMapping::try_from(&p).unwrap();
        assert_eq!(m.rows[0].update_mode, UpdateMode::CompleteIfMissing);
    }

    #[test]
    fn narrowing_drops_create_duplicate_unless_allowed() {
        let s = DuplicateSettings::default();
        let closed = s.narrowed(&ExportPreferences::default());
        assert_eq!(closed.user_options, vec![D::UpdateExisting, D::Skip]);
        let open = s.narrowed(&ExportPreferences {
            allow_duplicate_creation: true,
            ..ExportPreferences::default()
        });
        assert_eq!(open.user_options, s.user_options);
    }
}
