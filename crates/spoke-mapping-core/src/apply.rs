//! Applying a compiled mapping to one provider record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use spoke_proto::common::v1::{IntentEntry, Profile};

use crate::compiled::{CompiledMapping, IntentDataPoint, Object, UpdateMode};
use crate::values::convert_value;

/// Read access to string fields by name: provider fields or HubSpot property values.
pub trait FieldSource {
    /// The value of `name`, if present.
    fn field(&self, name: &str) -> Option<&str>;
}

impl FieldSource for BTreeMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> FieldSource for HashMap<String, String, S> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Empty means unset, empty or only whitespace: such a provider value never wins the
/// hierarchy and such a HubSpot value counts as missing for complete-if-missing.
pub fn is_empty_value(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

/// Why a mapped property was not written (not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// No source field had a value.
    NoValue,
    /// Complete if missing, and HubSpot already holds a value.
    KeptExisting,
    /// An earlier row or intent topic already wrote this property.
    TargetAlreadyWritten,
}

/// A mapped property that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Target HubSpot property.
    pub target_property: String,
    /// Why it was not written.
    pub reason: SkipReason,
}

/// A value that cannot be written: the record's export fails with this message instead of
/// HubSpot rejecting the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Target HubSpot property.
    pub target_property: String,
    /// Provider field (or `intent:<topic>.<data point>`) the value came from.
    pub source_field: String,
    /// The provider value.
    pub value: String,
    /// What is wrong and what is valid.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.message, self.source_field)
    }
}

/// The outcome of applying a mapping to one record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// Properties to write, by internal name.
    pub properties: BTreeMap<String, String>,
    /// For each written property, the provider field its value came from.
    pub sources: BTreeMap<String, String>,
    /// Mapped properties not written, with the reason.
    pub skipped: Vec<Skipped>,
    /// Values that cannot be written; non-empty means the record must fail.
    pub problems: Vec<FieldProblem>,
}

impl Applied {
    /// True when no field has a problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// One message for a failed record: every problem, separated by `; `-joined lines.
    pub fn error_message(&self) -> Option<String> {
        if self.problems.is_empty() {
            return None;
        }
        Some(
            self.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

/// The company property duplicate checking keys on.
pub const COMPANY_DOMAIN: &str = "domain";

enum DomainPick<'a> {
    Found(&'a String, String),
    NoValue,
    Invalid(&'a String, &'a str, String),
}

/// The first source field holding a valid domain (normalized), else the first invalid value.
fn company_domain<'a>(sources: &'a [String], fields: &'a dyn FieldSource) -> DomainPick<'a> {
    let mut first_invalid = None;
    for name in sources {
        let Some(raw) = fields.field(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        match spoke_match::normalize_domain(raw) {
            Ok(d) => return DomainPick::Found(name, d.as_str().to_owned()),
            Err(e) => {
                first_invalid.get_or_insert((name, raw, e.to_string()));
            }
        }
    }
    match first_invalid {
        Some((name, raw, reason)) => DomainPick::Invalid(name, raw, reason),
        None => DomainPick::NoValue,
    }
}

/// Applies `compiled` to one provider record.
///
/// - Hierarchy: per row, the first source field with a non-empty value wins.
/// - `existing == None` is a create: every value is written. Otherwise complete-if-missing
///   writes only where HubSpot's value is empty, overwrite always writes.
/// - Values are converted for their target (value map, options, numbers, booleans, dates,
///   currency); a value that does not fit becomes a [`FieldProblem`] and is not written.
/// - Intent topics (companies) write the mapped data points of the record's matching signal.
/// - A company's `domain` is written normalized; the first source with a valid domain wins.
pub fn apply(
    compiled: &CompiledMapping,
    fields: &dyn FieldSource,
    intents: &[IntentEntry],
    existing: Option<&dyn FieldSource>,
) -> Applied {
    let mut out = Applied::default();
    let mut targets: BTreeSet<&str> = BTreeSet::new();
    for row in &compiled.rows {
        let target = row.target_property.as_str();
        if !targets.insert(target) {
            out.skip(target, SkipReason::TargetAlreadyWritten);
            continue;
        }
        if compiled.object == Object::Companies && target == COMPANY_DOMAIN {
            // Duplicate checking of companies keys on the domain, so HubSpot gets the
            // normalized domain (`https://WWW.Acme.com/about` → `acme.com`): the first source
            // holding a valid domain wins; values that are not domains fail the record rather
            // than create a company no later export could find.
            match company_domain(&row.source_fields, fields) {
                DomainPick::Found(source, domain) => {
                    if may_write(row.update_mode, existing, target) {
                        out.write(target, source, domain);
                    } else {
                        out.skip(target, SkipReason::KeptExisting);
                    }
                }
                DomainPick::NoValue => out.skip(target, SkipReason::NoValue),
                DomainPick::Invalid(source, value, reason) => out.problems.push(FieldProblem {
                    target_property: target.to_owned(),
                    source_field: source.clone(),
                    value: value.to_owned(),
                    message: format!("{source} {value:?} is not a domain: {reason}"),
                }),
            }
            continue;
        }
        let winner = row.source_fields.iter().find_map(|name| {
            fields
                .field(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        });
        let Some((source, raw)) = winner else {
            out.skip(target, SkipReason::NoValue);
            continue;
        };
        if !may_write(row.update_mode, existing, target) {
            out.skip(target, SkipReason::KeptExisting);
            continue;
        }
        match convert_value(row, raw, &compiled.default_currency) {
            Ok(value) => out.write(target, source, value),
            Err(message) => out.problems.push(FieldProblem {
                target_property: target.to_owned(),
                source_field: source.clone(),
                value: raw.to_owned(),
                message,
            }),
        }
    }
    for topic in &compiled.intent_topics {
        let signal = intents.iter().find(|i| i.topic_id == topic.topic_id);
        for (point, target) in topic.mapped() {
            if !targets.insert(target) {
                out.skip(target, SkipReason::TargetAlreadyWritten);
                continue;
            }
            let Some(value) = signal.and_then(|s| intent_value(s, point)) else {
                out.skip(target, SkipReason::NoValue);
                continue;
            };
            if !may_write(topic.update_mode, existing, target) {
                out.skip(target, SkipReason::KeptExisting);
                continue;
            }
            let source = format!("intent:{}.{}", topic.topic_id, point.as_str());
            match check_intent(point, target, &value) {
                Ok(()) => out.write(target, &source, value),
                Err(message) => out.problems.push(FieldProblem {
                    target_property: target.to_owned(),
                    source_field: source,
                    value,
                    message,
                }),
            }
        }
    }
    out
}

/// [`apply`] for a proto profile (its fields and intent signals).
pub fn apply_profile(
    compiled: &CompiledMapping,
    profile: &Profile,
    existing: Option<&dyn FieldSource>,
) -> Applied {
    apply(compiled, &profile.fields, &profile.intents, existing)
}

impl Applied {
    fn skip(&mut self, target: &str, reason: SkipReason) {
        self.skipped.push(Skipped {
            target_property: target.to_owned(),
            reason,
        });
    }

    fn write(&mut self, target: &str, source: &str, value: String) {
        self.properties.insert(target.to_owned(), value);
        self.sources.insert(target.to_owned(), source.to_owned());
    }
}

fn may_write(mode: UpdateMode, existing: Option<&dyn FieldSource>, target: &str) -> bool {
    match (existing, mode) {
        (None, _) | (Some(_), UpdateMode::Overwrite) => true,
        (Some(current), UpdateMode::CompleteIfMissing) => is_empty_value(current.field(target)),
    }
}

/// The value of one intent data point, `None` when the signal lacks it.
fn intent_value(signal: &IntentEntry, point: IntentDataPoint) -> Option<String> {
    let text = match point {
        IntentDataPoint::SignalScore => return Some(signal.signal_score.to_string()),
        IntentDataPoint::AudienceStrength => &signal.audience_strength,
        IntentDataPoint::SignalLocation => &signal.signal_location,
        IntentDataPoint::IntentId => &signal.intent_id,
        IntentDataPoint::IssueDate => &signal.issue_date,
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn check_intent(point: IntentDataPoint, target: &str, value: &str) -> Result<(), String> {
    match point {
        IntentDataPoint::SignalScore => match value.parse::<i32>() {
            Ok(0..=100) => Ok(()),
            _ => Err(format!(
                "intent signal score {value} for property {target} is outside 0..=100"
            )),
        },
        IntentDataPoint::IssueDate => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|_| ())
            .map_err(|_| {
                format!("intent issue date {value:?} for property {target} is not YYYY-MM-DD")
            }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::{CompiledRow, DuplicateSettings, ExportPreferences, IntentTopic, Object};

    fn row(sources: &[&str], target: &str, mode: UpdateMode) -> CompiledRow {
        CompiledRow {
            source_fields: sources.iter().map(|s| s.to_string()).collect(),
            target_property: target.into(),
            update_mode: mode,
            target_type: "string".into(),
            target_field_type: "text".into(),
            ..CompiledRow::default()
        }
    }

    fn mapping(rows: Vec<CompiledRow>) -> CompiledMapping {
        CompiledMapping {
            object: Object::Companies,
            version: 1,
            rows,
            default_currency: "USD".into(),
            intent_topics: vec![],
            preferences: ExportPreferences::default(),
            duplicate_settings: DuplicateSettings::default(),
            portal_id: 1,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hierarchy_takes_the_first_non_empty_source() {
        let m = mapping(vec![row(
            &["direct_phone", "mobile_phone", "company_phone"],
            "phone",
            UpdateMode::CompleteIfMissing,
        )]);
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[("direct_phone", "1"), ("company_phone", "3")], Some("1")),
            (&[("direct_phone", ""), ("company_phone", "3")], Some("3")),
            (
                &[
                    ("direct_phone", "   "),
                    ("mobile_phone", "2"),
                    ("company_phone", "3"),
                ],
                Some("2"),
            ),
            (&[("company_phone", "3")], Some("3")),
            (&[("other", "9")], None),
            (&[], None),
        ];
        for (fields, expected) in cases {
            let applied = apply(&m, &map(fields), &[], None);
            assert_eq!(
                applied.properties.get("phone").map(String::as_str),
                *expected,
                "{fields:?}"
            );
            if expected.is_none() {
                assert_eq!(applied.skipped[0].reason, SkipReason::NoValue);
            }
        }
        let applied = apply(
            &m,
            &map(&[("direct_phone", ""), ("mobile_phone", "2")]),
            &[],
            None,
        );
        assert_eq!(applied.sources["phone"], "mobile_phone");
    }

    #[test]
    fn update_modes_decide_per_field_against_existing_values() {
        let m = mapping(vec![
            row(&["name"], "name", UpdateMode::CompleteIfMissing),
            row(&["city"], "city", UpdateMode::Overwrite),
        ]);
        let fields = map(&[("name", "Acme"), ("city", "Boston")]);
        // (existing HubSpot values or None for a create, expected name, expected city)
        type Case<'a> = (
            Option<&'a [(&'a str, &'a str)]>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (None, Some("Acme"), Some("Boston")),
            (Some(&[]), Some("Acme"), Some("Boston")),
            (
                Some(&[("name", ""), ("city", "")]),
                Some("Acme"),
                Some("Boston"),
            ),
            (Some(&[("name", "  ")]), Some("Acme"), Some("Boston")),
            (
                Some(&[("name", "Old"), ("city", "Waltham")]),
                None,
                Some("Boston"),
            ),
        ];
        for (existing, name, city) in cases {
            let existing = existing.map(map);
            let applied = apply(
                &m,
                &fields,
                &[],
                existing.as_ref().map(|e| e as &dyn FieldSource),
            );
            assert_eq!(
                applied.properties.get("name").map(String::as_str),
                *name,
                "{existing:?}"
            );
            assert_eq!(
                applied.properties.get("city").map(String::as_str),
                *city,
                "{existing:?}"
            );
            if name.is_none() {
                assert!(applied.skipped.contains(&Skipped {
                    target_property: "name".into(),
                    reason: SkipReason::KeptExisting
                }));
            }
        }
    }

    #[test]
    fn bad_enumeration_value_is_a_problem_naming_field_value_and_options() {
        let mut industry = row(&["industry"], "industry", UpdateMode::Overwrite);
        industry.target_type = "enumeration".into();
        industry.target_field_type = "select".into();
        industry.allowed_values = vec!["TECHNOLOGY".into(), "FINANCE".into()];
        let m = mapping(vec![
            row(&["name"], "name", UpdateMode::Overwrite),
            industry,
        ]);
        let applied = apply(
            &m,
            &map(&[("name", "Acme"), ("industry", "Tech")]),
            &[],
            None,
        );
        assert!(!applied.is_ok());
        assert_eq!(applied.properties, map(&[("name", "Acme")]));
        let problem = &applied.problems[0];
        assert_eq!(problem.target_property, "industry");
        assert_eq!(problem.value, "Tech");
        assert_eq!(
            applied.error_message().unwrap(),
            "invalid option \"Tech\" for property industry; valid: TECHNOLOGY, FINANCE; map the provider value to one of these internal values (from industry)"
        );
    }

    #[test]
    fn kept_existing_values_are_not_checked() {
        // A value that would be rejected is irrelevant when complete-if-missing keeps HubSpot's.
        let mut industry = row(&["industry"], "industry", UpdateMode::CompleteIfMissing);
        industry.target_type = "enumeration".into();
        industry.allowed_values = vec!["FINANCE".into()];
        let m = mapping(vec![industry]);
        let existing = map(&[("industry", "FINANCE")]);
        let applied = apply(&m, &map(&[("industry", "Tech")]), &[], Some(&existing));
        assert!(applied.is_ok());
        assert!(applied.properties.is_empty());
    }

    #[test]
    fn duplicate_targets_write_once() {
        let m = mapping(vec![
            row(&["a"], "phone", UpdateMode::Overwrite),
            row(&["b"], "phone", UpdateMode::Overwrite),
        ]);
        let applied = apply(&m, &map(&[("a", "1"), ("b", "2")]), &[], None);
        assert_eq!(applied.properties, map(&[("phone", "1")]));
        assert_eq!(applied.skipped[0].reason, SkipReason::TargetAlreadyWritten);
    }

    #[test]
    fn intent_topics_write_their_data_points() {
        let mut m = mapping(vec![]);
        m.intent_topics = vec![
            IntentTopic {
                topic_id: "cloud".into(),
                topic_name: "Cloud".into(),
                signal_score_property: Some("cloud_score".into()),
                audience_strength_property: Some("cloud_strength".into()),
                signal_location_property: None,
                intent_id_property: Some("cloud_id".into()),
                issue_date_property: Some("cloud_date".into()),
                update_mode: UpdateMode::CompleteIfMissing,
            },
            IntentTopic {
                topic_id: "ai".into(),
                signal_score_property: Some("ai_score".into()),
                ..IntentTopic::default()
            },
        ];
        let intents = vec![IntentEntry {
            topic_id: "cloud".into(),
            topic_name: "Cloud".into(),
            signal_score: 87,
            audience_strength: "A".into(),
            signal_location: "US - Boston, MA".into(),
            intent_id: "i-1".into(),
            issue_date: "2024-05-01".into(),
        }];
        let applied = apply(&m, &BTreeMap::new(), &intents, None);
        assert_eq!(
            applied.properties,
            map(&[
                ("cloud_score", "87"),
                ("cloud_strength", "A"),
                ("cloud_id", "i-1"),
                ("cloud_date", "2024-05-01")
            ])
        );
        assert!(applied.skipped.contains(&Skipped {
            target_property: "ai_score".into(),
            reason: SkipReason::NoValue
        }));
        // Complete if missing applies to intent properties too.
        let existing = map(&[("cloud_score", "50")]);
        let applied = apply(&m, &BTreeMap::new(), &intents, Some(&existing));
        assert!(!applied.properties.contains_key("cloud_score"));
        assert_eq!(applied.properties["cloud_id"], "i-1");

        let bad = vec![IntentEntry {
            topic_id: "cloud".into(),
            signal_score: 140,
            issue_date: "May 1".into(),
            ..IntentEntry::default()
        }];
        let applied = apply(&m, &BTreeMap::new(), &bad, None);
        let targets: Vec<&str> = applied
            .problems
            .iter()
            .map(|p| p.target_property.as_str())
            .collect();
        assert_eq!(targets, ["cloud_score", "cloud_date"]);
        assert_eq!(
            applied.problems[0].source_field,
            "intent:cloud.signal_score"
        );
    }

    #[test]
    fn apply_profile_reads_proto_fields_and_intents() {
        let m = mapping(vec![row(&["name"], "name", UpdateMode::CompleteIfMissing)]);
        let profile = Profile {
            profile_id: "p1".into(),
            fields: [("name".to_string(), "Acme".to_string())].into(),
            ..Profile::default()
        };
        assert_eq!(apply_profile(&m, &profile, None).properties["name"], "Acme");
    }

    #[test]
    fn company_domain_is_normalized_and_falls_through_invalid_sources() {
        let c = mapping(vec![row(
            &["website", "domain"],
            "domain",
            UpdateMode::CompleteIfMissing,
        )]);
        let applied = |website: &str, domain: &str| {
            let f = map(&[("website", website), ("domain", domain)]);
            apply(&c, &f, &[], None)
        };
        let a = applied("https://WWW.Acme.com/about", "");
        assert_eq!(
            a.properties.get("domain").map(String::as_str),
            Some("acme.com")
        );
        let a = applied("not a website", "acme.io");
        assert_eq!(
            a.properties.get("domain").map(String::as_str),
            Some("acme.io"),
            "second source wins"
        );
        let a = applied("not a website", "");
        assert!(!a.properties.contains_key("domain"));
        let msg = a.error_message().unwrap_or_default();
        assert!(
            msg.contains("website")
                && msg.contains("not a website")
                && msg.contains("not a domain"),
            "{msg}"
        );
        let a = applied("", "");
        assert!(a.is_ok() && !a.properties.contains_key("domain"));
    }
}
