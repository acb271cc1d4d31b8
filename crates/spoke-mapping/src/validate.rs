//! Validation of mappings and intent mappings against the portal's properties. Every problem is
//! reported with its field path, so the admin can fix all of them at once.

use std::collections::{BTreeMap, BTreeSet};

use spoke_mapping_core::{IntentDataPoint, IntentTopic, Object, UpdateMode};
use spoke_proto::mapping::v1 as pm;

use crate::defaults::{self, FieldKind};
use crate::error::Violation;
use crate::properties::{PortalProperties, PropertyInfo};

/// Most rows a mapping may have.
pub const MAX_ROWS: usize = 500;
/// Most source fields in one row's hierarchy.
pub const MAX_SOURCES: usize = 5;
/// Most entries of one value map.
pub const MAX_VALUE_MAP: usize = 1_000;
/// Most intent topics.
pub const MAX_TOPICS: usize = 200;

/// The outcome of a validation that passed: advice that does not block saving.
pub type Warnings = Vec<String>;

/// Validates a mapping's rows and currency for `object`; `Ok` carries warnings.
pub fn mapping(
    object: Object,
    rows: &[pm::MappingRow],
    default_currency: Option<&str>,
    props: &PortalProperties,
) -> Result<Warnings, Vec<Violation>> {
    let mut v = Vec::new();
    if rows.len() > MAX_ROWS {
        v.push(Violation::new(
            "rows",
            format!("{} rows; a mapping has at most {MAX_ROWS}", rows.len()),
        ));
    }
    if let Some(c) = default_currency
        && !is_currency_code(c)
    {
        v.push(Violation::new(
            "default_currency",
            format!("{c:?} is not an ISO 4217 currency code such as USD"),
        ));
    }
    let mut targets: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let target = row.target_property.trim();
        let blank_sources = row.source_fields.iter().all(|s| s.trim().is_empty());
        if target.is_empty() && blank_sources {
            v.push(Violation::new(
                format!("rows[{i}]"),
                "blank row: choose a provider field and a HubSpot property, or remove the row",
            ));
            continue;
        }
        check_sources(object, i, row, &mut v);
        let field = format!("rows[{i}].target_property");
        if target.is_empty() {
            v.push(Violation::new(
                field,
                "choose a HubSpot property for this row",
            ));
            continue;
        }
        if let Some(first) = targets.insert(target, i) {
            targets.insert(target, first);
            v.push(Violation::new(
                field,
                format!(
                    "property {target:?} is already the target of rows[{first}]; put both provider fields in one row to set a hierarchy"
                ),
            ));
            continue;
        }
        if UpdateMode::from_proto(row.update_mode).is_none() {
            v.push(Violation::new(
                format!("rows[{i}].update_mode"),
                format!("unknown update mode {}", row.update_mode),
            ));
        }
        let Some(prop) = writable_property(&field, target, props, &mut v) else {
            continue;
        };
        check_compatibility(object, i, row, prop, &mut v);
        check_value_map(i, row, prop, &mut v);
    }
    let required = defaults::required_property(object);
    if !rows.iter().any(|r| r.target_property.trim() == required) {
        v.push(Violation::new(
            "rows",
            format!(
                "property {required:?} must be mapped: HubSpot needs it to create {}",
                object.as_str()
            ),
        ));
    }
    if !v.is_empty() {
        return Err(v);
    }
    let mut warnings = Vec::new();
    if object == Object::Companies
        && !rows
            .iter()
            .any(|r| r.target_property.trim() == defaults::COMPANY_DOMAIN_PROPERTY)
    {
        warnings.push(
            "domain is not mapped: company duplicate checking needs it, so exports may create duplicate companies"
                .to_string(),
        );
    }
    Ok(warnings)
}

fn is_currency_code(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_sources(object: Object, i: usize, row: &pm::MappingRow, v: &mut Vec<Violation>) {
    let field = format!("rows[{i}].source_fields");
    if row.source_fields.is_empty() {
        v.push(Violation::new(field, "choose at least one provider field"));
        return;
    }
    if row.source_fields.len() > MAX_SOURCES {
        v.push(Violation::new(
            field.clone(),
            format!(
                "{} provider fields; a hierarchy has at most {MAX_SOURCES}",
                row.source_fields.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (j, s) in row.source_fields.iter().enumerate() {
        let path = format!("{field}[{j}]");
        let s = s.trim();
        if s.is_empty() {
            v.push(Violation::new(path, "blank provider field; remove it"));
        } else if !seen.insert(s) {
            v.push(Violation::new(
                path,
                format!("provider field {s:?} is listed twice"),
            ));
        } else if defaults::provider_field(object, s).is_none() {
            v.push(Violation::new(
                path,
                format!("{s:?} is not a provider field of {}", object.as_str()),
            ));
        }
    }
}

/// The property named `name` if it exists and can be written; otherwise a violation.
fn writable_property<'p>(
    field: &str,
    name: &str,
    props: &'p PortalProperties,
    v: &mut Vec<Violation>,
) -> Option<&'p PropertyInfo> {
    let Some(prop) = props.by_name.get(name) else {
        v.push(Violation::new(
            field,
            format!(
                "property {name:?} does not exist in HubSpot; custom properties must be created in HubSpot before they can be mapped (refresh the property list after creating it)"
            ),
        ));
        return None;
    };
    if prop.calculated {
        v.push(Violation::new(
            field,
            format!("property {name:?} is calculated by HubSpot and cannot be written"),
        ));
        return None;
    }
    if prop.read_only {
        v.push(Violation::new(
            field,
            format!("property {name:?} is read-only in HubSpot and cannot be written"),
        ));
        return None;
    }
    Some(prop)
}

/// Which provider field kinds a HubSpot property type accepts.
fn accepts(property_type: &str, kind: FieldKind) -> bool {
    match property_type {
        "number" => kind == FieldKind::Number,
        "date" | "datetime" => kind == FieldKind::Date,
        "bool" => kind == FieldKind::Text,
        // Text, phone numbers and enumerations (through the value map) take any kind.
        _ => true,
    }
}

fn check_compatibility(
    object: Object,
    i: usize,
    row: &pm::MappingRow,
    prop: &PropertyInfo,
    v: &mut Vec<Violation>,
) {
    for (j, s) in row.source_fields.iter().enumerate() {
        if let Some(pf) = defaults::provider_field(object, s.trim())
            && !accepts(&prop.property_type, pf.kind)
        {
            v.push(Violation::new(
                format!("rows[{i}].source_fields[{j}]"),
                format!(
                    "provider field {:?} holds {} but property {:?} is of type {}",
                    pf.name,
                    pf.kind.as_str(),
                    prop.name,
                    prop.property_type
                ),
            ));
        }
    }
}

fn check_value_map(i: usize, row: &pm::MappingRow, prop: &PropertyInfo, v: &mut Vec<Violation>) {
    if row.value_map.is_empty() {
        return;
    }
    let field = format!("rows[{i}].value_map");
    if prop.property_type != "enumeration" {
        v.push(Violation::new(
            field,
            format!(
                "property {:?} is of type {}; value maps are only for dropdown, radio and checkbox properties",
                prop.name, prop.property_type
            ),
        ));
        return;
    }
    if row.value_map.len() > MAX_VALUE_MAP {
        v.push(Violation::new(
            field.clone(),
            format!(
                "{} entries; a value map has at most {MAX_VALUE_MAP}",
                row.value_map.len()
            ),
        ));
    }
    let valid = prop.option_values();
    // Sorted so the messages come out in a stable order.
    let entries: BTreeMap<&String, &String> = row.value_map.iter().collect();
    for (from, to) in entries {
        if valid.iter().any(|o| o == to) {
            continue;
        }
        let hint = valid
            .iter()
            .find(|o| o.eq_ignore_ascii_case(to))
            .map(|o| format!(" (internal values are case-sensitive: did you mean {o:?}?)"))
            .unwrap_or_default();
        v.push(Violation::new(
            format!("{field}[{from:?}]"),
            format!(
                "{to:?} is not an internal value of property {:?}; valid: {}{hint}",
                prop.name,
                list(&valid)
            ),
        ));
    }
}

fn list(values: &[String]) -> String {
    const SHOWN: usize = 25;
    let mut out = values
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        out.push_str(&format!(", and {} more", values.len() - SHOWN));
    }
    out
}

/// Validates intent topics against the company properties.
pub fn intent(topics: &[IntentTopic], props: &PortalProperties) -> Result<(), Vec<Violation>> {
    let mut v = Vec::new();
    if topics.len() > MAX_TOPICS {
        v.push(Violation::new(
            "topics",
            format!("{} topics; at most {MAX_TOPICS}", topics.len()),
        ));
    }
    let mut ids = BTreeSet::new();
    let mut used: BTreeMap<&str, String> = BTreeMap::new();
    for (i, t) in topics.iter().enumerate() {
        if t.topic_id.trim().is_empty() {
            v.push(Violation::new(
                format!("topics[{i}].topic_id"),
                "topic id is empty",
            ));
        } else if !ids.insert(t.topic_id.as_str()) {
            v.push(Violation::new(
                format!("topics[{i}].topic_id"),
                format!("topic {:?} is listed twice", t.topic_id),
            ));
        }
        for (point, name) in t.mapped() {
            let field = format!("topics[{i}].{}_property", point.as_str());
            if let Some(first) = used.get(name) {
                v.push(Violation::new(
                    field,
                    format!("property {name:?} is already used by {first}; each data point needs its own custom property"),
                ));
                continue;
            }
            used.insert(name, field.clone());
            let Some(prop) = writable_property(&field, name, props, &mut v) else {
                continue;
            };
            if prop.hubspot_defined {
                v.push(Violation::new(
                    field,
                    format!(
                        "property {name:?} is a HubSpot standard property; intent data goes to custom properties created for each topic"
                    ),
                ));
                continue;
            }
            let fits = match point {
                IntentDataPoint::SignalScore => {
                    matches!(prop.property_type.as_str(), "number" | "string")
                }
                IntentDataPoint::AudienceStrength => {
                    matches!(prop.property_type.as_str(), "string" | "enumeration")
                }
                IntentDataPoint::SignalLocation | IntentDataPoint::IntentId => {
                    prop.property_type == "string"
                }
                IntentDataPoint::IssueDate => {
                    matches!(prop.property_type.as_str(), "date" | "datetime" | "string")
                }
            };
            if !fits {
                v.push(Violation::new(
                    field,
                    format!(
                        "property {name:?} is of type {}, which cannot hold the intent {}",
                        prop.property_type,
                        point.as_str().replace('_', " ")
                    ),
                ));
            }
        }
    }
    if v.is_empty() { Ok(()) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::common::v1 as pc;

    fn prop(name: &str, ty: &str, ft: &str, options: &[&str]) -> PropertyInfo {
        PropertyInfo {
            name: name.into(),
            label: name.into(),
            property_type: ty.into(),
            field_type: ft.into(),
            group_name: String::new(),
            options: options
                .iter()
                .map(|o| (o.to_string(), o.to_string(), false))
                .collect(),
            has_unique_value: false,
            calculated: false,
            read_only: false,
            hubspot_defined: true,
            currency: false,
        }
    }

    fn props() -> PortalProperties {
        let mut list = vec![
            prop("name", "string", "text", &[]),
            prop("domain", "string", "text", &[]),
            prop("phone", "string", "phonenumber", &[]),
            prop("numberofemployees", "number", "number", &[]),
            prop(
                "industry",
                "enumeration",
                "select",
                &["TECHNOLOGY", "FINANCE"],
            ),
            prop("founded", "date", "date", &[]),
            prop("email", "string", "text", &[]),
        ];
        let mut calc = prop("hs_num_deals", "number", "calculation_equation", &[]);
        calc.calculated = true;
        let mut ro = prop("hs_object_id", "number", "number", &[]);
        ro.read_only = true;
        let mut custom = prop("cloud_score", "number", "number", &[]);
        custom.hubspot_defined = false;
        let mut custom_text = prop("cloud_location", "string", "text", &[]);
        custom_text.hubspot_defined = false;
        list.extend([calc, ro, custom, custom_text]);
        PortalProperties {
            portal_id: 1,
            fetched_at: chrono::Utc::now(),
            by_name: list.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    fn row(sources: &[&str], target: &str) -> pm::MappingRow {
        pm::MappingRow {
            source_fields: sources.iter().map(|s| s.to_string()).collect(),
            target_property: target.into(),
            update_mode: pc::UpdateMode::CompleteIfMissing as i32,
            value_map: Default::default(),
        }
    }

    /// A valid companies mapping plus `extra`.
    fn with(extra: pm::MappingRow) -> Vec<pm::MappingRow> {
        vec![row(&["name"], "name"), row(&["website"], "domain"), extra]
    }

    #[test]
    fn each_invalid_row_is_reported_with_its_path_and_message() {
        let mut industry_map = row(&["industry"], "industry");
        industry_map
            .value_map
            .insert("Tech".into(), "technology".into());
        let mut text_map = row(&["phone"], "phone");
        text_map.value_map.insert("x".into(), "y".into());
        let mut bad_mode = row(&["phone"], "phone");
        bad_mode.update_mode = 7;
        let cases: Vec<(pm::MappingRow, &str, &str)> = vec![
            (row(&[], ""), "rows[2]", "blank row"),
            (
                row(&["phone"], ""),
                "rows[2].target_property",
                "choose a HubSpot property",
            ),
            (
                row(&[], "phone"),
                "rows[2].source_fields",
                "at least one provider field",
            ),
            (
                row(&["phone", " "], "phone"),
                "rows[2].source_fields[1]",
                "blank provider field",
            ),
            (
                row(&["phone", "phone"], "phone"),
                "rows[2].source_fields[1]",
                "listed twice",
            ),
            (
                row(&["fax"], "phone"),
                "rows[2].source_fields[0]",
                "\"fax\" is not a provider field of companies",
            ),
            (
                row(&["a", "b", "c", "d", "e", "f"], "phone"),
                "rows[2].source_fields",
                "at most 5",
            ),
            (
                row(&["phone"], "industri"),
                "rows[2].target_property",
                "property \"industri\" does not exist in HubSpot; custom properties must be created in HubSpot",
            ),
            (
                row(&["employees"], "hs_num_deals"),
                "rows[2].target_property",
                "calculated by HubSpot",
            ),
            (
                row(&["employees"], "hs_object_id"),
                "rows[2].target_property",
                "read-only",
            ),
            (
                row(&["phone"], "name"),
                "rows[2].target_property",
                "already the target of rows[0]",
            ),
            (
                row(&["city"], "numberofemployees"),
                "rows[2].source_fields[0]",
                "\"city\" holds text but property \"numberofemployees\" is of type number",
            ),
            (
                row(&["employees"], "founded"),
                "rows[2].source_fields[0]",
                "is of type date",
            ),
            (
                industry_map,
                "rows[2].value_map[\"Tech\"]",
                "\"technology\" is not an internal value of property \"industry\"; valid: TECHNOLOGY, FINANCE (internal values are case-sensitive: did you mean \"TECHNOLOGY\"?)",
            ),
            (text_map, "rows[2].value_map", "only for dropdown"),
            (bad_mode, "rows[2].update_mode", "unknown update mode 7"),
        ];
        for (extra, path, fragment) in cases {
            let errs =
                mapping(Object::Companies, &with(extra.clone()), None, &props()).expect_err(path);
            assert!(
                errs.iter()
                    .any(|e| e.field == path && e.description.contains(fragment)),
                "{path}: {fragment}\n got {errs:?}"
            );
        }
    }

    #[test]
    fn required_property_currency_and_domain_warning() {
        let errs = mapping(
            Object::Contacts,
            &[row(&["first_name"], "name")],
            None,
            &props(),
        )
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "rows" && e.description.contains("\"email\" must be mapped"))
        );
        let errs = mapping(
            Object::Companies,
            &[row(&["name"], "name")],
            Some("usd"),
            &props(),
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "default_currency");
        let warnings = mapping(
            Object::Companies,
            &[row(&["name"], "name")],
            Some("EUR"),
            &props(),
        )
        .unwrap();
        assert!(
            warnings[0].starts_with("domain is not mapped"),
            "{warnings:?}"
        );
        let mut ok = row(&["industry"], "industry");
        ok.value_map.insert("Tech".into(), "TECHNOLOGY".into());
        assert_eq!(
            mapping(Object::Companies, &with(ok), None, &props()),
            Ok(vec![])
        );
    }

    #[test]
    fn intent_topics_need_distinct_writable_custom_properties_of_fitting_types() {
        let topic = |id: &str, score: &str, location: &str| IntentTopic {
            topic_id: id.into(),
            signal_score_property: (!score.is_empty()).then(|| score.to_string()),
            signal_location_property: (!location.is_empty()).then(|| location.to_string()),
            ..IntentTopic::default()
        };
        assert_eq!(
            intent(&[topic("cloud", "cloud_score", "cloud_location")], &props()),
            Ok(())
        );
        let cases: Vec<(Vec<IntentTopic>, &str, &str)> = vec![
            (
                vec![topic("", "cloud_score", "")],
                "topics[0].topic_id",
                "empty",
            ),
            (
                vec![topic("a", "", ""), topic("a", "", "")],
                "topics[1].topic_id",
                "listed twice",
            ),
            (
                vec![topic("a", "nope", "")],
                "topics[0].signal_score_property",
                "does not exist in HubSpot",
            ),
            (
                vec![topic("a", "name", "")],
                "topics[0].signal_score_property",
                "HubSpot standard property",
            ),
            (
                vec![topic("a", "cloud_location", "")],
                "topics[0].signal_score_property",
                "",
            ),
            (
                vec![topic("a", "", "cloud_score")],
                "topics[0].signal_location_property",
                "cannot hold the intent signal location",
            ),
            (
                vec![topic("a", "cloud_score", ""), topic("b", "cloud_score", "")],
                "topics[1].signal_score_property",
                "already used by topics[0].signal_score_property",
            ),
        ];
        for (topics, path, fragment) in cases {
            let result = intent(&topics, &props());
            if fragment.is_empty() {
                // A string property can hold a score.
                assert_eq!(result, Ok(()), "{path}");
                continue;
            }
            let errs = result.expect_err(path);
            assert!(
                errs.iter()
                    .any(|e| e.field == path && e.description.contains(fragment)),
                "{path}: {fragment}\n got {errs:?}"
            );
        }
    }
}
