//! Laws of `apply` over arbitrary mappings, records and existing HubSpot values.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spoke_mapping_core::{
    CompiledMapping, CompiledRow, DuplicateSettings, ExportPreferences, FieldSource, Object,
    SkipReason, UpdateMode, apply, convert_value, is_empty_value,
};

const FIELDS: &[&str] = &["a", "b", "c", "d", "e"];
const TARGETS: &[&str] = &["p1", "p2", "p3", "p4"];
const TYPES: &[(&str, &str)] = &[
    ("string", "text"),
    ("number", "number"),
    ("bool", "booleancheckbox"),
    ("date", "date"),
    ("datetime", "date"),
    ("enumeration", "select"),
    ("enumeration", "checkbox"),
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_string()),
        "[A-Za-z]{1,6}",
        "-?[0-9]{1,7}(\\.[0-9]{1,2})?",
        "[0-9]{1,3}(,[0-9]{3}){0,2}",
        Just("2024-02-29".to_string()),
        Just("true".to_string()),
        any::<String>(),
    ]
}

fn row() -> impl Strategy<Value = CompiledRow> {
    (
        prop::sample::subsequence(FIELDS, 1..=3).prop_shuffle(),
        prop::sample::select(TARGETS),
        any::<bool>(),
        prop::sample::select(TYPES),
        prop::collection::btree_map("[A-Za-z]{1,4}", "[A-Z]{1,4}", 0..3),
        prop::collection::vec("[A-Za-z]{1,4}", 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(sources, target, overwrite, (ty, ft), value_map, allowed, currency)| CompiledRow {
                source_fields: sources.into_iter().map(str::to_owned).collect(),
                target_property: target.to_owned(),
                update_mode: if overwrite {
                    UpdateMode::Overwrite
                } else {
                    UpdateMode::CompleteIfMissing
                },
                value_map,
                target_type: ty.to_owned(),
                target_field_type: ft.to_owned(),
                allowed_values: allowed,
                currency,
            },
        )
}

fn mapping() -> impl Strategy<Value = CompiledMapping> {
    prop::collection::vec(row(), 0..6).prop_map(|rows| CompiledMapping {
        object: Object::Contacts,
        version: 1,
        rows,
        default_currency: "USD".into(),
        intent_topics: vec![],
        preferences: ExportPreferences::default(),
        duplicate_settings: DuplicateSettings::default(),
        portal_id: 1,
    })
}

fn record(names: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(names).prop_map(str::to_owned),
        value(),
        0..names.len(),
    )
}

/// The row that owns each target: the first one naming it.
fn owners(m: &CompiledMapping) -> BTreeMap<&str, &CompiledRow> {
    let mut out = BTreeMap::new();
    for r in &m.rows {
        out.entry(r.target_property.as_str()).or_insert(r);
    }
    out
}

/// The hierarchy's winning value of a row.
fn winner<'a>(r: &CompiledRow, fields: &'a BTreeMap<String, String>) -> Option<&'a str> {
    r.source_fields
        .iter()
        .find_map(|f| fields.field(f).filter(|v| !is_empty_value(Some(v))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn apply_never_panics_and_accounts_for_every_row(
        m in mapping(),
        fields in record(FIELDS),
        existing in prop::option::of(record(TARGETS)),
    ) {
        let applied = apply(&m, &fields, &[], existing.as_ref().map(|e| e as &dyn FieldSource));
        // Every row is written, skipped or a problem: exactly one outcome per row.
        let outcomes = applied.properties.len() + applied.skipped.len() + applied.problems.len();
        prop_assert_eq!(outcomes, m.rows.len());
        for (target, value) in &applied.properties {
            prop_assert!(owners(&m).contains_key(target.as_str()));
            prop_assert!(!value.is_empty() || m.rows.iter().any(|r| r.target_field_type == "checkbox"));
        }
    }

    #[test]
    fn creates_write_every_convertible_winner(m in mapping(), fields in record(FIELDS)) {
        let applied = apply(&m, &fields, &[], None);
        for (target, r) in owners(&m) {
            match winner(r, &fields) {
                None => prop_assert!(!applied.properties.contains_key(target)),
                Some(v) => match convert_value(r, v, "USD") {
                    Ok(converted) => prop_assert_eq!(applied.properties.get(target), Some(&converted)),
                    Err(message) => {
                        prop_assert!(!applied.properties.contains_key(target));
                        prop_assert!(applied.problems.iter().any(|p| p.target_property == target && p.message == message));
                    }
                },
            }
        }
    }

    #[test]
    fn complete_if_missing_never_replaces_and_overwrite_matches_a_create(
        m in mapping(),
        fields in record(FIELDS),
        existing in record(TARGETS),
    ) {
        let update = apply(&m, &fields, &[], Some(&existing));
        let create = apply(&m, &fields, &[], None);
        for (target, r) in owners(&m) {
            let has_value = !is_empty_value(existing.field(target));
            match r.update_mode {
                UpdateMode::CompleteIfMissing if has_value => {
                    prop_assert!(!update.properties.contains_key(target));
                    if winner(r, &fields).is_some() {
                        prop_assert!(update.skipped.iter().any(|s| s.target_property == target && s.reason == SkipReason::KeptExisting));
                    }
                }
                // Overwrite, or an empty HubSpot value: the same outcome as a create.
                _ => prop_assert_eq!(update.properties.get(target), create.properties.get(target)),
            }
        }
    }

    #[test]
    fn converted_values_are_accepted_again(r in row(), v in value()) {
        // A value apply writes is in its final form: converting it again changes nothing.
        if let Ok(once) = convert_value(&r, &v, "USD")
            && !once.is_empty()
            && r.value_map.is_empty()
        {
            prop_assert_eq!(convert_value(&r, &once, "USD"), Ok(once.clone()));
        }
    }
}
