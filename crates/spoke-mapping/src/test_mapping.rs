//! Test Mapping: write a test record with an unsaved mapping, read it back, delete it, and say
//! per field what happened and what to do.

use std::collections::{BTreeMap, BTreeSet};

use spoke_hubspot::{CreateInput, GetOptions, ObjectType, PortalClient};
use spoke_mapping_core::{CompiledMapping, Object, SkipReason, apply};
use spoke_proto::mapping::v1 as pm;
use spoke_proto::mapping::v1::FieldTestStatus;

use crate::defaults;
use crate::error::{Error, Result};

/// How often the create is retried after HubSpot rejected named properties (each retry drops
/// them, so the remaining fields still get tested).
const MAX_CREATE_ATTEMPTS: usize = 3;

/// The provider record the test writes: the caller's sample or the built-in one, with key
/// fields (email, domain) made unique so no real record is ever touched.
pub fn sample_record(
    object: Object,
    compiled: &CompiledMapping,
    given: &BTreeMap<String, String>,
    unique: &str,
) -> BTreeMap<String, String> {
    let mut sample: BTreeMap<String, String> = if given.is_empty() {
        defaults::provider_fields(object)
            .iter()
            .map(|f| (f.name.to_string(), f.sample.to_string()))
            .collect()
    } else {
        given.clone()
    };
    let key_property = match object {
        Object::Companies => defaults::COMPANY_DOMAIN_PROPERTY,
        Object::Contacts => "email",
    };
    for row in compiled
        .rows
        .iter()
        .filter(|r| r.target_property == key_property)
    {
        let mut any = false;
        for source in &row.source_fields {
            if let Some(v) = sample.get_mut(source)
                && !v.trim().is_empty()
            {
                *v = unique_key(object, v, unique);
                any = true;
            }
        }
        if !any && let Some(first) = row.source_fields.first() {
            sample.insert(first.clone(), unique_key(object, "", unique));
        }
    }
    sample
}

fn unique_key(object: Object, value: &str, unique: &str) -> String {
    match object {
        Object::Contacts => {
            let domain = value
                .rsplit_once('@')
                .map(|(_, d)| d.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or("example.com");
            format!("spoke-mapping-test-{unique}@{domain}")
        }
        Object::Companies => {
            let host = value
                .trim()
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_start_matches("www.");
            let host = host.split('/').next().unwrap_or_default();
            let host = if host.is_empty() { "example.com" } else { host };
            format!("spoke-mapping-test-{unique}.{host}")
        }
    }
}

fn hubspot_object(object: Object) -> ObjectType {
    match object {
        Object::Companies => ObjectType::Companies,
        Object::Contacts => ObjectType::Contacts,
    }
}

fn result(
    target: &str,
    source: &str,
    sent: &str,
    status: FieldTestStatus,
    message: impl Into<String>,
) -> pm::FieldTestResult {
    pm::FieldTestResult {
        target_property: target.to_string(),
        source_field: source.to_string(),
        sent_value: sent.to_string(),
        read_back_value: String::new(),
        status: status as i32,
        message: message.into(),
    }
}

/// HubSpot's per-property complaints of a rejected create: property → message.
fn rejected_properties(
    err: &spoke_hubspot::Error,
    sent: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(api) = err.api() else {
        return out;
    };
    for opt in &api.invalid_options {
        if sent.contains_key(&opt.property) {
            let mut msg = opt.to_string();
            msg.push_str("; map the provider value to one of these internal values");
            out.insert(opt.property.clone(), msg);
        }
    }
    for detail in &api.errors {
        let names = detail
            .context
            .get("propertyName")
            .cloned()
            .unwrap_or_default();
        for name in names {
            if sent.contains_key(&name) && !out.contains_key(&name) {
                let code = detail.code.as_deref().unwrap_or("rejected");
                let advice = match code {
                    "PROPERTY_DOESNT_EXIST" => "; create the property in HubSpot or remove the row",
                    "READ_ONLY_VALUE" => "; choose a writable property",
                    "INVALID_EMAIL" => "; map a provider field holding an email address",
                    _ => "",
                };
                out.insert(
                    name,
                    format!("HubSpot: {} ({code}){advice}", detail.message),
                );
            }
        }
    }
    out
}

fn same_value(sent: &str, read: &str) -> bool {
    if sent == read {
        return true;
    }
    match (sent.parse::<f64>(), read.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs the test against `portal` and reports per row (in row order).
#[tracing::instrument(name = "mapping.test_mapping", skip_all, fields(portal = portal.portal_id(), object = object.as_str()))]
pub async fn run(
    portal: &PortalClient,
    object: Object,
    compiled: &CompiledMapping,
    sample: &BTreeMap<String, String>,
) -> Result<pm::TestMappingResponse> {
    let applied = apply(compiled, sample, &[], None);
    let mut fields: BTreeMap<String, pm::FieldTestResult> = BTreeMap::new();
    for p in &applied.problems {
        fields.insert(
            p.target_property.clone(),
            result(
                &p.target_property,
                &p.source_field,
                &p.value,
                FieldTestStatus::Rejected,
                p.message.clone(),
            ),
        );
    }
    for s in &applied.skipped {
        if s.reason == SkipReason::NoValue {
            fields.insert(
                s.target_property.clone(),
                result(
                    &s.target_property,
                    "",
                    "",
                    FieldTestStatus::NoValue,
                    "no sample value for any of the row's provider fields; nothing was written",
                ),
            );
        }
    }
    let mut to_send = applied.properties.clone();
    let hs_object = hubspot_object(object);
    let mut created = None;
    let mut failure = None;
    for _ in 0..MAX_CREATE_ATTEMPTS {
        let input = CreateInput {
            properties: to_send.clone(),
            associations: Vec::new(),
        };
        match portal.create_object(hs_object, &input).await {
            Ok(obj) => {
                created = Some(obj);
                break;
            }
            Err(e) if e.is_retriable() || e.is_reauth_required() => return Err(e.into()),
            Err(e) => {
                let rejected = rejected_properties(&e, &to_send);
                if rejected.is_empty() {
                    failure = Some(format!("HubSpot did not create the test record: {e}"));
                    break;
                }
                for (name, msg) in rejected {
                    let sent = to_send.remove(&name).unwrap_or_default();
                    let source = applied.sources.get(&name).cloned().unwrap_or_default();
                    fields.insert(
                        name.clone(),
                        result(&name, &source, &sent, FieldTestStatus::Rejected, msg),
                    );
                }
            }
        }
    }
    if created.is_none() && failure.is_none() {
        failure = Some(format!(
            "HubSpot kept rejecting the test record after {MAX_CREATE_ATTEMPTS} attempts"
        ));
    }

    let mut response = pm::TestMappingResponse::default();
    if let Some(record) = &created {
        response.test_record_id = record.id.clone();
        let options = GetOptions {
            properties: to_send.keys().cloned().collect(),
            ..GetOptions::default()
        };
        let read = portal.get_object(hs_object, &record.id, &options).await;
        let archived = portal
            .batch_archive(hs_object, std::slice::from_ref(&record.id))
            .await;
        response.cleaned_up = archived.is_ok();
        if let Err(e) = &archived {
            tracing::warn!(record = %record.id, error = %e, "test record could not be deleted");
        }
        let read_back = match read {
            Ok(Some(obj)) => obj.properties,
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "the test record {} was created but could not be read back: {e}",
                    record.id
                )));
            }
        };
        for (name, sent) in &to_send {
            let source = applied.sources.get(name).cloned().unwrap_or_default();
            let got = read_back.get(name).cloned().unwrap_or_default();
            let (status, msg) = if same_value(sent, &got) {
                (FieldTestStatus::Ok, String::new())
            } else {
                (
                    FieldTestStatus::Mismatch,
                    format!(
                        "HubSpot stored {got:?} instead of {sent:?}; check the property's format"
                    ),
                )
            };
            let mut r = result(name, &source, sent, status, msg);
            r.read_back_value = got;
            fields.insert(name.clone(), r);
        }
    } else {
        for (name, sent) in &to_send {
            let source = applied.sources.get(name).cloned().unwrap_or_default();
            fields.insert(
                name.clone(),
                result(
                    name,
                    &source,
                    sent,
                    FieldTestStatus::Rejected,
                    failure.clone().unwrap_or_default(),
                ),
            );
        }
    }

    // Rows in order; a target appears once (validation rejects duplicates).
    let mut seen = BTreeSet::new();
    for row in &compiled.rows {
        if seen.insert(row.target_property.clone())
            && let Some(r) = fields.remove(&row.target_property)
        {
            response.fields.push(r);
        }
    }
    let bad: Vec<&pm::FieldTestResult> = response
        .fields
        .iter()
        .filter(|f| !matches!(f.status(), FieldTestStatus::Ok | FieldTestStatus::NoValue))
        .collect();
    response.success = created.is_some() && bad.is_empty();
    let cleanup = if created.is_some() && !response.cleaned_up {
        format!(
            " The test record {} could not be deleted; delete it in HubSpot.",
            response.test_record_id
        )
    } else {
        String::new()
    };
    response.message = if response.success {
        format!(
            "Test record created, read back and deleted: {} field(s) OK.{cleanup}",
            response
                .fields
                .iter()
                .filter(|f| f.status() == FieldTestStatus::Ok)
                .count()
        )
    } else if let Some(f) = &failure {
        format!("{f}.{cleanup}")
    } else {
        let names: Vec<&str> = bad.iter().map(|f| f.target_property.as_str()).collect();
        format!(
            "{} field(s) need attention: {}. Adjust the mapping and test again.{cleanup}",
            bad.len(),
            names.join(", ")
        )
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_mapping_core::{CompiledRow, DuplicateSettings, ExportPreferences};

    fn compiled(object: Object, key_sources: &[&str], target: &str) -> CompiledMapping {
        CompiledMapping {
            object,
            version: 0,
            rows: vec![CompiledRow {
                source_fields: key_sources.iter().map(|s| s.to_string()).collect(),
                target_property: target.into(),
                ..CompiledRow::default()
            }],
            default_currency: "USD".into(),
            intent_topics: vec![],
            preferences: ExportPreferences::default(),
            duplicate_settings: DuplicateSettings::default(),
            portal_id: 1,
        }
    }

    #[test]
    fn key_fields_are_made_unique() {
        let c = compiled(Object::Contacts, &["email"], "email");
        let s = sample_record(Object::Contacts, &c, &BTreeMap::new(), "abc");
        assert_eq!(s["email"], "spoke-mapping-test-abc@zoominfo.com");
        assert_eq!(s["first_name"], "Ada");

        let c = compiled(Object::Companies, &["website", "domain"], "domain");
        let given: BTreeMap<String, String> = [(
            "website".to_string(),
            "https://www.acme.io/about".to_string(),
        )]
        .into();
        let s = sample_record(Object::Companies, &c, &given, "x1");
        assert_eq!(s["website"], "spoke-mapping-test-x1.acme.io");
        assert!(!s.contains_key("domain"));

        // No sample value for the key: one is made up so the record never matches a real one.
        let given: BTreeMap<String, String> = [("name".to_string(), "Acme".to_string())].into();
        let c = compiled(Object::Contacts, &["email"], "email");
        let s = sample_record(Object::Contacts, &c, &given, "z");
        assert_eq!(s["email"], "spoke-mapping-test-z@example.com");
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same_value("1200", "1200.0"));
        assert!(same_value("abc", "abc"));
        assert!(!same_value("abc", "ABC"));
    }
}
