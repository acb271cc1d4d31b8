//! Match keys of exported records: which rule builds which key, and how keys travel.
//!
//! The normalization itself lives in `spoke-match` (one definition shared with filtering); this
//! module picks the keys dedupe uses, turns rejected values into per-record reasons and converts
//! keys to and from the proto `MatchKey`.
//!
//! # Rules (the guide's "Duplicate Logic")
//!
//! **Companies** are matched by normalized domain only: the provider's `domain` field, then the
//! domain of `website` (both when they differ). Normalization (`spoke_match::normalize_domain`):
//! trim, lower-case, strip scheme, `user@`, `www.`, path, query, fragment, port and trailing dot,
//! IDN → punycode. Values that are not domains are rejected with a reason and the record is then
//! created without a duplicate check (nothing to match on).
//!
//! | provider value | key / reason |
//! |---|---|
//! | `https://WWW.Acme.com/about` | `acme.com` |
//! | `acme.com.` / `acme.com:8080` / `//acme.com?x=1` | `acme.com` |
//! | `Bücher.de` / `https://www.münchen.de` | `xn--bcher-kva.de` / `xn--mnchen-3ya.de` |
//! | `Acme Inc` | `website: contains spaces; a domain such as example.com was expected` |
//! | `localhost` | `domain: has no dot; a domain such as example.com was expected` |
//! | `john@acme.com` | `domain: is an email address, not a domain` |
//! | `10.0.0.1` | `domain: is an IP address, not a domain` |
//!
//! **Contacts**, in order (`spoke_match::contact_keys`):
//! 1. Email: trimmed, lower-cased (`  John.Doe@ACME.com ` → `john.doe@acme.com`; `+tags` and dots
//!    are kept; an IDN domain becomes punycode). An invalid email gets a reason
//!    (`email: has no @; ...`) and the contact falls through to rule 2.
//! 2. First name + last name + exact company name: names trimmed, inner whitespace collapsed,
//!    invisible characters dropped, lower-cased, Unicode NFC (`  ZOË ` = `Zoe\u{308}` = `zoë`,
//!    `WEIẞ` = `weiß`, but `Weiß` ≠ `Weiss`); the company name by the same rules and nothing
//!    more, so `Acme` ≠ `Acme Inc` and `Acme, Inc.` ≠ `Acme Inc` ("exact company name").
//!    Needs all three; a missing part gives no rule-2 key.
//!
//! Rule 2 is looked up only when rule 1 found nothing (see [`crate::check`]).
//!
//! # Encodings
//!
//! Stored keys (index, reservations) use spoke-match's stable encoding (`domain:acme.com`,
//! `email:a@b.com`, `name_company:zoë|ørsted|acme inc`). On the wire (`spoke.common.v1.MatchKey`)
//! the value is the normalized value; name + company joins first, last and company with U+001F.

use std::collections::BTreeMap;

use spoke_match::{
    CompanyFields, ContactFields, Field, KeyKind, MatchKey, company_name_exact, contact_keys,
    normalize_domain, normalize_email, normalize_person_name,
};
use spoke_proto::common::v1 as pb;

use crate::error::{Error, Result};

/// The separator of name + company parts in the proto encoding.
const UNIT_SEPARATOR: char = '\u{1f}';
/// Raw values in `InvalidMatchKey` are cut to this many characters.
const RAW_VALUE_LIMIT: usize = 256;

/// The object types dedupe checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    /// HubSpot companies.
    Companies,
    /// HubSpot contacts.
    Contacts,
}

impl Object {
    /// The object of a proto `ObjectType`, if dedupe checks it.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::ObjectType::try_from(value) {
            Ok(pb::ObjectType::Companies) => Some(Object::Companies),
            Ok(pb::ObjectType::Contacts) => Some(Object::Contacts),
            _ => None,
        }
    }

    /// The proto `ObjectType`.
    pub fn to_proto(self) -> pb::ObjectType {
        match self {
            Object::Companies => pb::ObjectType::Companies,
            Object::Contacts => pb::ObjectType::Contacts,
        }
    }

    /// The HubSpot object type.
    pub fn hubspot(self) -> spoke_hubspot::ObjectType {
        match self {
            Object::Companies => spoke_hubspot::ObjectType::Companies,
            Object::Contacts => spoke_hubspot::ObjectType::Contacts,
        }
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Companies => "companies",
            Object::Contacts => "contacts",
        }
    }
}

/// The keys of one record in lookup order, and the values that could not become keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordKeys {
    /// Keys, highest priority first, no duplicates.
    pub keys: Vec<MatchKey>,
    /// Rejected values with reasons.
    pub invalid: Vec<pb::InvalidMatchKey>,
}

/// Builds the dedupe keys of a provider profile's fields.
pub fn record_keys(object: Object, fields: &BTreeMap<String, String>) -> RecordKeys {
    match object {
        Object::Companies => company_keys(fields),
        Object::Contacts => {
            let built = contact_keys(&ContactFields::from_provider(fields));
            RecordKeys {
                invalid: built
                    .rejections
                    .iter()
                    .map(|r| invalid_key(r.field, fields, r.to_string()))
                    .collect(),
                keys: built.keys,
            }
        }
    }
}

/// Companies: domain keys only (filtering's name + country key is not a dedupe rule).
fn company_keys(fields: &BTreeMap<String, String>) -> RecordKeys {
    let built = spoke_match::company_keys(&CompanyFields::from_provider(fields));
    let keys: Vec<MatchKey> = built
        .keys
        .into_iter()
        .filter(|k| k.kind() == KeyKind::Domain)
        .collect();
    let mut invalid: Vec<pb::InvalidMatchKey> = built
        .rejections
        .iter()
        .filter(|r| matches!(r.field, Field::Domain | Field::Website))
        .filter(|r| r.rejection != spoke_match::Rejection::Missing || keys.is_empty())
        .map(|r| invalid_key(r.field, fields, r.to_string()))
        .collect();
    if keys.is_empty() && invalid.is_empty() {
        // spoke-match reports missing fields only when a record has no key at all; a company
        // with just a name has its (filtering) name key, but no dedupe key.
        for field in [Field::Domain, Field::Website] {
            let missing = spoke_match::FieldRejection {
                field,
                rejection: spoke_match::Rejection::Missing,
            };
            invalid.push(invalid_key(field, fields, missing.to_string()));
        }
    }
    RecordKeys { keys, invalid }
}

/// The provider field names spoke-match reads for `field` (first present wins).
fn provider_names(field: Field) -> &'static [&'static str] {
    match field {
        Field::Domain => &["domain"],
        Field::Website => &["website"],
        Field::CompanyName => &["name", "company_name"],
        Field::Country => &["country"],
        Field::Email => &["email"],
        Field::FirstName => &["first_name"],
        Field::LastName => &["last_name"],
        Field::ContactCompany => &["company", "company_name"],
    }
}

fn invalid_key(
    field: Field,
    fields: &BTreeMap<String, String>,
    reason: String,
) -> pb::InvalidMatchKey {
    let kind = match field {
        Field::Domain | Field::Website => pb::MatchKeyKind::Domain,
        Field::Email => pb::MatchKeyKind::Email,
        _ => pb::MatchKeyKind::NameAndCompany,
    };
    let raw = provider_names(field)
        .iter()
        .filter_map(|n| fields.get(*n))
        .find(|v| !v.trim().is_empty())
        .map(|v| v.chars().take(RAW_VALUE_LIMIT).collect())
        .unwrap_or_default();
    pb::InvalidMatchKey {
        kind: kind as i32,
        raw_value: raw,
        reason,
    }
}

/// The proto form of a key.
pub fn to_proto(key: &MatchKey) -> pb::MatchKey {
    let (kind, value) = match key {
        MatchKey::Domain(d) => (pb::MatchKeyKind::Domain, d.as_str().to_owned()),
        MatchKey::Email(e) => (pb::MatchKeyKind::Email, e.as_str().to_owned()),
        MatchKey::NameCompany {
            first,
            last,
            company,
        } => (
            pb::MatchKeyKind::NameAndCompany,
            format!(
                "{}{UNIT_SEPARATOR}{}{UNIT_SEPARATOR}{}",
                first.as_str(),
                last.as_str(),
                company.as_str()
            ),
        ),
        // Not a dedupe key; never sent. Encoded like a domain-less unspecified key.
        MatchKey::CompanyNameCountry { .. } => (pb::MatchKeyKind::Unspecified, key.encode()),
    };
    pb::MatchKey {
        kind: kind as i32,
        value,
    }
}

/// Reads a proto key back, normalizing its value (so a sender's raw spelling still lands on the
/// canonical key).
pub fn from_proto(key: &pb::MatchKey) -> Result<MatchKey> {
    let bad =
        |reason: String| Error::InvalidArgument(format!("match key {:?}: {reason}", key.value));
    match pb::MatchKeyKind::try_from(key.kind) {
        Ok(pb::MatchKeyKind::Domain) => normalize_domain(&key.value)
            .map(MatchKey::Domain)
            .map_err(|r| bad(r.to_string())),
        Ok(pb::MatchKeyKind::Email) => normalize_email(&key.value)
            .map(MatchKey::Email)
            .map_err(|r| bad(r.to_string())),
        Ok(pb::MatchKeyKind::NameAndCompany) => {
            let parts: Vec<&str> = key.value.split(UNIT_SEPARATOR).collect();
            let [first, last, company] = parts.as_slice() else {
                return Err(bad(
                    "name and company keys need three parts joined by U+001F".into(),
                ));
            };
            Ok(MatchKey::NameCompany {
                first: normalize_person_name(first).map_err(|r| bad(r.to_string()))?,
                last: normalize_person_name(last).map_err(|r| bad(r.to_string()))?,
                company: company_name_exact(company).map_err(|r| bad(r.to_string()))?,
            })
        }
        _ => Err(bad("unknown key kind".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn encoded(keys: &RecordKeys) -> Vec<String> {
        keys.keys.iter().map(MatchKey::encode).collect()
    }

    fn reasons(keys: &RecordKeys) -> Vec<(String, String)> {
        keys.invalid
            .iter()
            .map(|i| (i.raw_value.clone(), i.reason.clone()))
            .collect()
    }

    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );

    #[test]
    fn company_keys_are_normalized_domains_with_reasons_for_rejects() {
        let cases: &[Case] = &[
            (
                &[("domain", "https://WWW.Acme.com/about")],
                &["domain:acme.com"],
                &[],
            ),
            (
                &[
                    ("website", " HTTP://www.Acme.com:8080/x?y=1#z "),
                    ("name", "Acme"),
                ],
                &["domain:acme.com"],
                &[],
            ),
            (&[("domain", "acme.com.")], &["domain:acme.com"], &[]),
            (
                &[
                    ("domain", "Bücher.de"),
                    ("website", "https://www.münchen.de"),
                ],
                &["domain:xn--bcher-kva.de", "domain:xn--mnchen-3ya.de"],
                &[],
            ),
            (
                &[("domain", "acme.com"), ("website", "https://acme.com/")],
                &["domain:acme.com"],
                &[],
            ),
            (
                &[("domain", "john@acme.com"), ("website", "Acme Inc")],
                &[],
                &[
                    ("john@acme.com", "domain: is an email address, not a domain"),
                    (
                        "Acme Inc",
                        "website: contains spaces; a domain such as example.com was expected",
                    ),
                ],
            ),
            (
                &[("domain", "localhost"), ("name", "Acme")],
                &[],
                &[(
                    "localhost",
                    "domain: has no dot; a domain such as example.com was expected",
                )],
            ),
            (
                &[("domain", "10.0.0.1")],
                &[],
                &[
                    ("10.0.0.1", "domain: is an IP address, not a domain"),
                    ("", "website: is missing"),
                ],
            ),
            (
                &[("name", "Acme")],
                &[],
                &[("", "domain: is missing"), ("", "website: is missing")],
            ),
            (
                &[],
                &[],
                &[("", "domain: is missing"), ("", "website: is missing")],
            ),
        ];
        for (input, keys, invalid) in cases {
            let got = record_keys(Object::Companies, &fields(input));
            assert_eq!(encoded(&got), *keys, "input {input:?}");
            let want: Vec<(String, String)> = invalid
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            assert_eq!(reasons(&got), want, "input {input:?}");
        }
    }

    #[test]
    fn contact_keys_email_first_then_name_and_exact_company() {
        let cases: &[Case] = &[
            (
                &[
                    ("email", "  John.Doe@ACME.com "),
                    ("first_name", "John"),
                    ("last_name", "Doe"),
                    ("company", "Acme Inc"),
                ],
                &["email:john.doe@acme.com", "name_company:john|doe|acme inc"],
                &[],
            ),
            (
                &[
                    ("email", "john.doe(at)acme.com"),
                    ("first_name", " JOHN "),
                    ("last_name", "Doe"),
                    ("company", "ACME  Inc"),
                ],
                &["name_company:john|doe|acme inc"],
                &[(
                    "john.doe(at)acme.com",
                    "email: has no @; an address such as name@example.com was expected",
                )],
            ),
            (
                &[
                    ("first_name", "  ZOË "),
                    ("last_name", "Ørsted"),
                    ("company_name", "Ørsted A/S"),
                ],
                &["name_company:zoë|ørsted|ørsted a/s"],
                &[],
            ),
            (
                &[
                    ("first_name", "Zoe\u{308}"),
                    ("last_name", "WEIẞ"),
                    ("company", "Bücher GmbH"),
                ],
                &["name_company:zoë|weiß|bücher gmbh"],
                &[],
            ),
            (
                &[("email", "Jürgen@Bücher.de")],
                &["email:jürgen@xn--bcher-kva.de"],
                &[],
            ),
            (
                &[("first_name", "Ann"), ("company", "Acme")],
                &[],
                &[("", "email: is missing"), ("", "last_name: is missing")],
            ),
        ];
        for (input, keys, invalid) in cases {
            let got = record_keys(Object::Contacts, &fields(input));
            assert_eq!(encoded(&got), *keys, "input {input:?}");
            let want: Vec<(String, String)> = invalid
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            assert_eq!(reasons(&got), want, "input {input:?}");
        }
    }

    #[test]
    fn exact_company_name_keeps_suffixes_and_punctuation_apart() {
        let key = |company: &str| {
            let f = fields(&[
                ("first_name", "Ann"),
                ("last_name", "Lee"),
                ("company", company),
            ]);
            encoded(&record_keys(Object::Contacts, &f))
        };
        assert_eq!(key("ACME inc"), key(" Acme  Inc "));
        assert_ne!(key("Acme"), key("Acme Inc"));
        assert_ne!(key("Acme, Inc."), key("Acme Inc"));
        assert_ne!(key("Müller"), key("Muller"));
    }

    #[test]
    fn proto_round_trip_and_lenient_normalization() {
        let cases = [
            (pb::MatchKeyKind::Domain, "acme.com", "domain:acme.com"),
            (
                pb::MatchKeyKind::Domain,
                "https://WWW.Acme.com/about",
                "domain:acme.com",
            ),
            (pb::MatchKeyKind::Email, " A@B.com", "email:a@b.com"),
            (
                pb::MatchKeyKind::NameAndCompany,
                "Zoë\u{1f}Ørsted\u{1f}ACME Inc",
                "name_company:zoë|ørsted|acme inc",
            ),
        ];
        for (kind, value, want) in cases {
            let key = from_proto(&pb::MatchKey {
                kind: kind as i32,
                value: value.into(),
            })
            .unwrap();
            assert_eq!(key.encode(), want);
            assert_eq!(from_proto(&to_proto(&key)).unwrap(), key);
        }
        for (kind, value) in [
            (pb::MatchKeyKind::Domain, "not a domain"),
            (pb::MatchKeyKind::Email, "nope"),
            (pb::MatchKeyKind::NameAndCompany, "a\u{1f}b"),
            (pb::MatchKeyKind::Unspecified, "acme.com"),
        ] {
            let err = from_proto(&pb::MatchKey {
                kind: kind as i32,
                value: value.into(),
            });
            assert!(err.is_err(), "{kind:?} {value:?} accepted");
        }
    }
}
