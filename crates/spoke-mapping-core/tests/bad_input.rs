//! Bad input for `apply` (issue 12, item 5): records with arbitrary field names and values
//! (any Unicode, control characters, 10 MB values), for companies (the normalized domain path)
//! and contacts, with arbitrary intent signals. Nothing panics, every row has exactly one
//! outcome, and the output holds only mapped targets, each taken from one of its row's sources.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use spoke_mapping_core::{
    CompiledMapping, CompiledRow, DuplicateSettings, ExportPreferences, Object, UpdateMode, apply,
};

/// The company target that gets a normalized domain (spoke_mapping_core's `COMPANY_DOMAIN`).
const COMPANY_DOMAIN: &str = "domain";
const FIELDS: &[&str] = &["name", "website", "email", "phone", "city"];
const TARGETS: &[&str] = &[COMPANY_DOMAIN, "name", "phone", "city", "numberofemployees"];
const TYPES: &[(&str, &str)] = &[
    ("string", "text"),
    ("number", "number"),
    ("bool", "booleancheckbox"),
    ("date", "date"),
    ("enumeration", "select"),
];

fn row() -> impl Strategy<Value = CompiledRow> {
    (
        prop::sample::subsequence(FIELDS, 1..=3).prop_shuffle(),
        prop::sample::select(TARGETS),
        any::<bool>(),
        prop::sample::select(TYPES),
        prop::collection::vec("[A-Za-z]{1,4}", 0..3),
    )
        .prop_map(
            |(sources, target, overwrite, (ty, ft), allowed)| CompiledRow {
                source_fields: sources.into_iter().map(str::to_owned).collect(),
                target_property: target.to_owned(),
                update_mode: if overwrite {
                    UpdateMode::Overwrite
                } else {
                    UpdateMode::CompleteIfMissing
                },
                value_map: BTreeMap::new(),
                target_type: ty.to_owned(),
                target_field_type: ft.to_owned(),
                allowed_values: allowed,
                currency: false,
            },
        )
}

fn mapping() -> impl Strategy<Value = CompiledMapping> {
    (prop::collection::vec(row(), 0..6), any::<bool>()).prop_map(|(rows, companies)| {
        CompiledMapping {
            object: if companies {
                Object::Companies
            } else {
                Object::Contacts
            },
            version: 1,
            rows,
            default_currency: "USD".into(),
            intent_topics: vec![],
            preferences: ExportPreferences::default(),
            duplicate_settings: DuplicateSettings::default(),
            portal_id: 1,
        }
    })
}

/// Field names: the mapped ones and arbitrary others; values: anything, websites included.
fn record() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![
            3 => prop::sample::select(FIELDS).prop_map(str::to_owned),
            1 => any::<String>(),
        ],
        prop_oneof![
            any::<String>(),
            "(https?://)?(www\\.)?[a-zA-Zäö0-9-]{1,10}\\.[a-z]{2,4}(:[0-9]{1,5})?(/[a-z]*)?",
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            Just("\u{0}\u{7f}\u{feff}\u{200b}".to_string()),
        ],
        0..8,
    )
}

fn check(m: &CompiledMapping, fields: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    let applied = apply(m, fields, &[], None);
    prop_assert_eq!(
        applied.properties.len() + applied.skipped.len() + applied.problems.len(),
        m.rows.len()
    );
    for (target, value) in &applied.properties {
        let row = m.rows.iter().find(|r| &r.target_property == target);
        prop_assert!(row.is_some(), "unmapped target {target:?} written");
        let source = applied.sources.get(target);
        prop_assert!(
            source.is_some_and(|s| row.is_some_and(|r| r.source_fields.contains(s))),
            "{target:?} came from {source:?}, not one of its row's sources"
        );
        if m.object == Object::Companies && target == COMPANY_DOMAIN {
            prop_assert_eq!(
                spoke_match::normalize_domain(value).map(|d| d.into_string()),
                Ok(value.clone()),
                "the domain written is normalized"
            );
        }
    }
    for p in &applied.problems {
        prop_assert!(!p.message.is_empty() && !p.source_field.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_records_never_panic_and_write_only_mapped_targets(m in mapping(), fields in record()) {
        check(&m, &fields)?;
    }
}

/// A 10 MB value in every mapped source field: no panic, one outcome per row.
#[test]
fn ten_megabyte_values() {
    let big = "9".repeat(10 * 1024 * 1024);
    let mut runner = proptest::test_runner::TestRunner::default();
    for _ in 0..20 {
        let m = mapping()
            .new_tree(&mut runner)
            .expect("a mapping")
            .current();
        let fields: BTreeMap<String, String> = FIELDS
            .iter()
            .map(|f| ((*f).to_owned(), big.clone()))
            .collect();
        check(&m, &fields).expect("properties hold for 10 MB values");
    }
}
