//! What an org gets out of the box: the provider's field catalogue, the default mapping per
//! object, the default currency and the sample record Test Mapping writes.

use spoke_mapping_core::{Object, UpdateMode};
use spoke_proto::common::v1 as pc;
use spoke_proto::mapping::v1 as pm;

/// Currency of the default mapping (the guide's "USD United States Dollar").
pub const DEFAULT_CURRENCY: &str = "USD";

/// Kind of value a provider field holds, for type compatibility with HubSpot properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text (names, addresses, labels).
    Text,
    /// A number (counts, amounts, years).
    Number,
    /// A calendar date (YYYY-MM-DD).
    Date,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A URL or domain.
    Url,
}

impl FieldKind {
    /// Short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Number => "a number",
            FieldKind::Date => "a date",
            FieldKind::Email => "an email address",
            FieldKind::Phone => "a phone number",
            FieldKind::Url => "a URL",
        }
    }
}

/// One provider field: name, kind and a sample value for Test Mapping.
#[derive(Debug, Clone, Copy)]
pub struct ProviderField {
    /// Field name as provider records carry it.
    pub name: &'static str,
    /// Kind of value.
    pub kind: FieldKind,
    /// A realistic sample value.
    pub sample: &'static str,
}

const fn f(name: &'static str, kind: FieldKind, sample: &'static str) -> ProviderField {
    ProviderField { name, kind, sample }
}

const COMPANY_FIELDS: &[ProviderField] = &[
    f("name", FieldKind::Text, "Zoom Information, Inc."),
    f("website", FieldKind::Url, "www.zoominfo.com"),
    f("domain", FieldKind::Url, "zoominfo.com"),
    f("phone", FieldKind::Phone, "(781) 693-7500"),
    f("street", FieldKind::Text, "307 Waverley Oaks Road"),
    f("city", FieldKind::Text, "Waltham"),
    f("state", FieldKind::Text, "Massachusetts"),
    f("zip_code", FieldKind::Text, "02452"),
    f("country", FieldKind::Text, "United States"),
    f("employees", FieldKind::Number, "3500"),
    f("employee_range", FieldKind::Text, "1,000 - 5,000"),
    f("revenue", FieldKind::Number, "1200000000"),
    f("revenue_range", FieldKind::Text, "$1B - $5B"),
    f("industry", FieldKind::Text, "COMPUTER_SOFTWARE"),
    f("sub_industry", FieldKind::Text, "Data Services"),
    f(
        "description",
        FieldKind::Text,
        "Go-to-market intelligence platform.",
    ),
    f(
        "linkedin_url",
        FieldKind::Url,
        "https://www.linkedin.com/company/zoominfo",
    ),
    f("founded_year", FieldKind::Number, "2007"),
    f("ticker", FieldKind::Text, "GTM"),
    f("sic_code", FieldKind::Text, "7374"),
    f("naics_code", FieldKind::Text, "518210"),
    f("company_type", FieldKind::Text, "PROSPECT"),
    f("last_updated", FieldKind::Date, "2024-05-01"),
];

const CONTACT_FIELDS: &[ProviderField] = &[
    f("first_name", FieldKind::Text, "Ada"),
    f("last_name", FieldKind::Text, "Lovelace"),
    f("email", FieldKind::Email, "ada.lovelace@zoominfo.com"),
    f("job_title", FieldKind::Text, "VP Engineering"),
    f("job_function", FieldKind::Text, "Engineering"),
    f("management_level", FieldKind::Text, "VP-Level"),
    f("direct_phone", FieldKind::Phone, "(781) 555-0100"),
    f("mobile_phone", FieldKind::Phone, "(781) 555-0199"),
    f("company_phone", FieldKind::Phone, "(781) 693-7500"),
    f("company_name", FieldKind::Text, "Zoom Information, Inc."),
    f("company_website", FieldKind::Url, "www.zoominfo.com"),
    f("street", FieldKind::Text, "307 Waverley Oaks Road"),
    f("city", FieldKind::Text, "Waltham"),
    f("state", FieldKind::Text, "Massachusetts"),
    f("zip_code", FieldKind::Text, "02452"),
    f("country", FieldKind::Text, "United States"),
    f(
        "linkedin_url",
        FieldKind::Url,
        "https://www.linkedin.com/in/ada",
    ),
    f("last_updated", FieldKind::Date, "2024-05-01"),
];

/// The provider fields of an object.
pub fn provider_fields(object: Object) -> &'static [ProviderField] {
    match object {
        Object::Companies => COMPANY_FIELDS,
        Object::Contacts => CONTACT_FIELDS,
    }
}

/// A provider field of an object by name.
pub fn provider_field(object: Object, name: &str) -> Option<&'static ProviderField> {
    provider_fields(object).iter().find(|p| p.name == name)
}

/// The property HubSpot needs to create a record of `object` (required in every mapping).
pub fn required_property(object: Object) -> &'static str {
    match object {
        Object::Companies => "name",
        Object::Contacts => "email",
    }
}

/// The property duplicate checking keys on for companies (recommended, not required).
pub const COMPANY_DOMAIN_PROPERTY: &str = "domain";

/// The default rows of an object: provider fields → HubSpot standard properties, all
/// complete-if-missing (the product default).
pub fn default_rows(object: Object) -> Vec<pm::MappingRow> {
    let rows: &[(&[&str], &str)] = match object {
        Object::Companies => &[
            (&["name"], "name"),
            (&["website", "domain"], "domain"),
            (&["phone"], "phone"),
            (&["street"], "address"),
            (&["city"], "city"),
            (&["state"], "state"),
            (&["zip_code"], "zip"),
            (&["country"], "country"),
            (&["employees"], "numberofemployees"),
            (&["revenue"], "annualrevenue"),
            (&["industry"], "industry"),
            (&["description"], "description"),
            (&["linkedin_url"], "linkedin_company_page"),
        ],
        Object::Contacts => &[
            (&["first_name"], "firstname"),
            (&["last_name"], "lastname"),
            (&["email"], "email"),
            (&["job_title"], "jobtitle"),
            (&["direct_phone", "company_phone"], "phone"),
            (&["mobile_phone"], "mobilephone"),
            (&["company_name"], "company"),
            (&["city"], "city"),
            (&["state"], "state"),
            (&["country"], "country"),
        ],
    };
    rows.iter()
        .map(|(sources, target)| pm::MappingRow {
            source_fields: sources.iter().map(|s| s.to_string()).collect(),
            target_property: target.to_string(),
            update_mode: pc::UpdateMode::from(UpdateMode::CompleteIfMissing) as i32,
            value_map: Default::default(),
        })
        .collect()
}

/// The built-in default mapping of an object (version 0, never saved).
pub fn default_mapping(object: Object) -> pm::Mapping {
    pm::Mapping {
        object: pc::ObjectType::from(object) as i32,
        rows: default_rows(object),
        default_currency: DEFAULT_CURRENCY.to_string(),
        version: 0,
        is_default: true,
        saved_at: None,
        saved_by: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rows_use_known_provider_fields_and_include_the_required_property() {
        for object in Object::ALL {
            let rows = default_rows(object);
            assert!(
                rows.iter()
                    .any(|r| r.target_property == required_property(object)),
                "{object:?}"
            );
            for r in &rows {
                for s in &r.source_fields {
                    assert!(provider_field(object, s).is_some(), "{object:?}: {s}");
                }
            }
            let mut targets: Vec<_> = rows.iter().map(|r| &r.target_property).collect();
            targets.sort();
            targets.dedup();
            assert_eq!(targets.len(), rows.len(), "{object:?}: duplicate targets");
        }
    }
}
