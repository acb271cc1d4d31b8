//! Match keys: what dedupe and filtering index and look up, with a stable string encoding.
//!
//! # Keys and who uses them
//!
//! | key | built from | dedupe | filtering |
//! |---|---|---|---|
//! | [`MatchKey::Domain`] | company `domain`, then `website` | companies (only key) | companies, 1st |
//! | [`MatchKey::CompanyNameCountry`] | loose company name + country | — | companies, 2nd |
//! | [`MatchKey::Email`] | contact `email` | contacts, 1st | contacts, 1st |
//! | [`MatchKey::NameCompany`] | first + last name + exact company name | contacts, 2nd | contacts, 2nd |
//!
//! [`company_keys`] and [`contact_keys`] return every key a record has, **in priority order**, and
//! a [`FieldRejection`] for every present-but-unusable field, so a contact with a broken email
//! still gets its name + company key (the guide's rule 2) and the user still learns why the email
//! was ignored. When a record yields no key at all, the fields that were missing are reported too
//! ([`Rejection::Missing`]), so "no key" always comes with a reason. A company without a country
//! still gets a name key, with the country empty: it matches only other country-less records.
//!
//! # String encoding (stable: stored in Postgres and sent in Kafka messages)
//!
//! `<kind>:<value>`, where multi-part values are joined with `|` and each part escapes `%` as
//! `%25` and `|` as `%7C`:
//!
//! | key | encoding |
//! |---|---|
//! | domain | `domain:zoominfo.com` |
//! | email | `email:john.doe@acme.com` |
//! | name + company | `name_company:john|doe|acme inc` |
//! | name + country | `company_country:acme|US` (no country: `company_country:acme|`) |
//!
//! Parsing ([`str::parse`]) accepts only what [`fmt::Display`] writes: every part must already be
//! in normalized form, so a key read back from storage is guaranteed canonical.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::country::{Country, normalize_country};
use crate::domain::{Domain, normalize_domain};
use crate::email::{Email, normalize_email};
use crate::names::{
    CompanyName, LooseCompanyName, PersonName, company_name_exact, company_name_loose,
    normalize_person_name,
};
use crate::{Error, Rejection, Result};

/// One match key; see the module docs for meaning and encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKey {
    /// Company by normalized domain.
    Domain(Domain),
    /// Contact by normalized email.
    Email(Email),
    /// Contact by first name + last name + exact company name.
    NameCompany {
        /// Normalized first name.
        first: PersonName,
        /// Normalized last name.
        last: PersonName,
        /// Company name under the exact rule.
        company: CompanyName,
    },
    /// Company by loose company name + country (filtering only).
    CompanyNameCountry {
        /// Company name under the loose rule.
        name: LooseCompanyName,
        /// Normalized country, if the record has one.
        country: Option<Country>,
    },
}

/// The kind of a [`MatchKey`], also the prefix of its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// [`MatchKey::Domain`]
    Domain,
    /// [`MatchKey::Email`]
    Email,
    /// [`MatchKey::NameCompany`]
    NameCompany,
    /// [`MatchKey::CompanyNameCountry`]
    CompanyNameCountry,
}

impl KeyKind {
    /// The encoding prefix (`domain`, `email`, `name_company`, `company_country`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Domain => "domain",
            KeyKind::Email => "email",
            KeyKind::NameCompany => "name_company",
            KeyKind::CompanyNameCountry => "company_country",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MatchKey {
    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            MatchKey::Domain(_) => KeyKind::Domain,
            MatchKey::Email(_) => KeyKind::Email,
            MatchKey::NameCompany { .. } => KeyKind::NameCompany,
            MatchKey::CompanyNameCountry { .. } => KeyKind::CompanyNameCountry,
        }
    }

    /// The encoded key (same as `to_string()`).
    pub fn encode(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for MatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind())?;
        match self {
            MatchKey::Domain(domain) => f.write_str(domain.as_str()),
            MatchKey::Email(email) => f.write_str(email.as_str()),
            MatchKey::NameCompany {
                first,
                last,
                company,
            } => {
                write_part(f, first.as_str())?;
                f.write_str("|")?;
                write_part(f, last.as_str())?;
                f.write_str("|")?;
                write_part(f, company.as_str())
            }
            MatchKey::CompanyNameCountry { name, country } => {
                write_part(f, name.as_str())?;
                f.write_str("|")?;
                write_part(f, country.as_ref().map_or("", Country::as_str))
            }
        }
    }
}

/// Writes one part of a multi-part key with `%` and `|` escaped.
fn write_part(f: &mut fmt::Formatter<'_>, part: &str) -> fmt::Result {
    let mut rest = part;
    while let Some(pos) = rest.find(['%', '|']) {
        f.write_str(&rest[..pos])?;
        f.write_str(if rest.as_bytes()[pos] == b'%' {
            "%25"
        } else {
            "%7C"
        })?;
        rest = &rest[pos + 1..];
    }
    f.write_str(rest)
}

/// Reverses [`write_part`]; only `%25` and `%7C` are valid escapes.
fn unescape_part(key: &str, part: &str) -> Result<String> {
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3);
        match escape {
            Some("%25") => out.push('%'),
            Some("%7C") => out.push('|'),
            _ => return Err(malformed(key, "invalid % escape")),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn malformed(key: &str, reason: &'static str) -> Error {
    Error::MalformedKey {
        key: key.to_owned(),
        reason,
    }
}

/// Requires that `value` normalizes to itself, i.e. was written by [`MatchKey`]'s `Display`.
fn canonical<T: AsRef<str>>(
    key: &str,
    value: &str,
    normalize: impl FnOnce(&str) -> std::result::Result<T, Rejection>,
) -> Result<T> {
    match normalize(value) {
        Ok(normalized) if normalized.as_ref() == value => Ok(normalized),
        _ => Err(Error::NotNormalized {
            key: key.to_owned(),
        }),
    }
}

/// Splits `value` into exactly `N` `|`-separated, unescaped parts.
fn parts<const N: usize>(key: &str, value: &str) -> Result<[String; N]> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    let mut split = value.split('|');
    for slot in &mut out {
        let part = split
            .next()
            .ok_or_else(|| malformed(key, "too few | separated parts"))?;
        *slot = unescape_part(key, part)?;
    }
    if split.next().is_some() {
        return Err(malformed(key, "too many | separated parts"));
    }
    Ok(out)
}

impl FromStr for MatchKey {
    type Err = Error;

    fn from_str(key: &str) -> Result<Self> {
        let (kind, value) = key
            .split_once(':')
            .ok_or_else(|| malformed(key, "no kind prefix"))?;
        match kind {
            "domain" => canonical(key, value, normalize_domain).map(MatchKey::Domain),
            "email" => canonical(key, value, normalize_email).map(MatchKey::Email),
            "name_company" => {
                let [first, last, company] = parts::<3>(key, value)?;
                Ok(MatchKey::NameCompany {
                    first: canonical(key, &first, normalize_person_name)?,
                    last: canonical(key, &last, normalize_person_name)?,
                    company: canonical(key, &company, company_name_exact)?,
                })
            }
            "company_country" => {
                let [name, country] = parts::<2>(key, value)?;
                let country = if country.is_empty() {
                    None
                } else {
                    Some(canonical(key, &country, normalize_country)?)
                };
                Ok(MatchKey::CompanyNameCountry {
                    name: canonical(key, &name, company_name_loose)?,
                    country,
                })
            }
            _ => Err(Error::UnknownKind {
                key: key.to_owned(),
            }),
        }
    }
}

impl Serialize for MatchKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MatchKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        encoded.parse().map_err(serde::de::Error::custom)
    }
}

/// A record field the key builders read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// Company domain.
    Domain,
    /// Company website URL.
    Website,
    /// Company name.
    CompanyName,
    /// Company country.
    Country,
    /// Contact email.
    Email,
    /// Contact first name.
    FirstName,
    /// Contact last name.
    LastName,
    /// Contact's company name.
    ContactCompany,
}

impl Field {
    /// Stable snake_case field name for messages and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Domain => "domain",
            Field::Website => "website",
            Field::CompanyName => "name",
            Field::Country => "country",
            Field::Email => "email",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::ContactCompany => "company",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field whose value could not be used, and why; displays as `email: has no @; ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rejection}")]
pub struct FieldRejection {
    /// The field.
    pub field: Field,
    /// What is wrong with its value.
    pub rejection: Rejection,
}

/// The keys of one record in priority order, plus the reasons fields were not usable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// Keys, highest priority first, without duplicates.
    pub keys: Vec<MatchKey>,
    /// Present-but-invalid fields; plus missing fields when `keys` is empty.
    pub rejections: Vec<FieldRejection>,
}

impl Keys {
    /// Whether the record has no usable key (then `rejections` says why).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The highest-priority key, if any.
    pub fn primary(&self) -> Option<&MatchKey> {
        self.keys.first()
    }

    /// Keys of one kind, in priority order.
    pub fn of_kind(&self, kind: KeyKind) -> impl Iterator<Item = &MatchKey> {
        self.keys.iter().filter(move |key| key.kind() == kind)
    }

    fn push_key(&mut self, key: MatchKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    fn reject(&mut self, field: Field, rejection: Rejection) {
        self.rejections.push(FieldRejection { field, rejection });
    }

    /// Normalizes a present field; records the rejection and returns `None` when unusable.
    fn take<T>(
        &mut self,
        field: Field,
        value: Option<&str>,
        normalize: impl FnOnce(&str) -> std::result::Result<T, Rejection>,
    ) -> Option<T> {
        let value = present(value)?;
        match normalize(value) {
            Ok(normalized) => Some(normalized),
            Err(rejection) => {
                self.reject(field, rejection);
                None
            }
        }
    }

    fn report_missing(&mut self, fields: &[(Field, Option<&str>)]) {
        if self.keys.is_empty() {
            for (field, value) in fields {
                if present(*value).is_none() {
                    self.reject(*field, Rejection::Missing);
                }
            }
        }
    }
}

/// `None` for absent and blank values (the proto's "empty strings count as missing").
fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// The company fields the key rules read; borrow them from any field map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompanyFields<'a> {
    /// Domain (HubSpot `domain`).
    pub domain: Option<&'a str>,
    /// Website URL (HubSpot and provider `website`).
    pub website: Option<&'a str>,
    /// Company name.
    pub name: Option<&'a str>,
    /// Country name or code.
    pub country: Option<&'a str>,
}

impl<'a> CompanyFields<'a> {
    /// Reads HubSpot company properties `domain`, `website`, `name`, `country`.
    pub fn from_hubspot(properties: &'a BTreeMap<String, String>) -> Self {
        Self {
            domain: get(properties, &["domain"]),
            website: get(properties, &["website"]),
            name: get(properties, &["name"]),
            country: get(properties, &["country"]),
        }
    }

    /// Reads provider profile fields `domain`, `website`, `name` (or `company_name`), `country`.
    pub fn from_provider(fields: &'a BTreeMap<String, String>) -> Self {
        Self {
            domain: get(fields, &["domain"]),
            website: get(fields, &["website"]),
            name: get(fields, &["name", "company_name"]),
            country: get(fields, &["country"]),
        }
    }
}

/// The contact fields the key rules read; borrow them from any field map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContactFields<'a> {
    /// Email address.
    pub email: Option<&'a str>,
    /// First name.
    pub first_name: Option<&'a str>,
    /// Last name.
    pub last_name: Option<&'a str>,
    /// Company name as typed on the contact.
    pub company: Option<&'a str>,
}

impl<'a> ContactFields<'a> {
    /// Reads HubSpot contact properties `email`, `firstname`, `lastname`, `company`.
    pub fn from_hubspot(properties: &'a BTreeMap<String, String>) -> Self {
        Self {
            email: get(properties, &["email"]),
            first_name: get(properties, &["firstname"]),
            last_name: get(properties, &["lastname"]),
            company: get(properties, &["company"]),
        }
    }

    /// Reads provider profile fields `email`, `first_name`, `last_name`, `company` (or `company_name`).
    pub fn from_provider(fields: &'a BTreeMap<String, String>) -> Self {
        Self {
            email: get(fields, &["email"]),
            first_name: get(fields, &["first_name"]),
            last_name: get(fields, &["last_name"]),
            company: get(fields, &["company", "company_name"]),
        }
    }
}

/// The first non-blank value among `names`.
fn get<'a>(map: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|name| map.get(*name))
        .map(String::as_str)
        .find(|v| !v.trim().is_empty())
}

/// Company keys in priority order: domain, website's domain, loose name + country.
pub fn company_keys(fields: &CompanyFields<'_>) -> Keys {
    let mut keys = Keys::default();
    for (field, value) in [
        (Field::Domain, fields.domain),
        (Field::Website, fields.website),
    ] {
        if let Some(domain) = keys.take(field, value, normalize_domain) {
            keys.push_key(MatchKey::Domain(domain));
        }
    }
    if let Some(name) = keys.take(Field::CompanyName, fields.name, company_name_loose) {
        let country = keys.take(Field::Country, fields.country, normalize_country);
        keys.push_key(MatchKey::CompanyNameCountry { name, country });
    }
    keys.report_missing(&[
        (Field::Domain, fields.domain),
        (Field::Website, fields.website),
        (Field::CompanyName, fields.name),
    ]);
    keys
}

/// Contact keys in priority order: email, then first + last name + exact company name.
pub fn contact_keys(fields: &ContactFields<'_>) -> Keys {
    let mut keys = Keys::default();
    if let Some(email) = keys.take(Field::Email, fields.email, normalize_email) {
        keys.push_key(MatchKey::Email(email));
    }
    let first = keys.take(Field::FirstName, fields.first_name, normalize_person_name);
    let last = keys.take(Field::LastName, fields.last_name, normalize_person_name);
    let company = keys.take(Field::ContactCompany, fields.company, company_name_exact);
    if let (Some(first), Some(last), Some(company)) = (first, last, company) {
        keys.push_key(MatchKey::NameCompany {
            first,
            last,
            company,
        });
    }
    keys.report_missing(&[
        (Field::Email, fields.email),
        (Field::FirstName, fields.first_name),
        (Field::LastName, fields.last_name),
        (Field::ContactCompany, fields.company),
    ]);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input fields, expected encoded keys, expected rejection messages.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static [&'static str],
    );

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn encoded(keys: &Keys) -> Vec<String> {
        keys.keys.iter().map(MatchKey::encode).collect()
    }

    fn reasons(keys: &Keys) -> Vec<String> {
        keys.rejections.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn company_keys_from_hubspot_properties() {
        let cases: &[Case] = &[
            (
                &[
                    ("domain", "WWW.Acme.com"),
                    ("website", "https://acme.com/about"),
                    ("name", "Acme, Inc."),
                    ("country", "United States"),
                ],
                &["domain:acme.com", "company_country:acme|US"],
                &[],
            ),
            (
                &[
                    ("domain", "acme.com"),
                    ("website", "https://acme.de"),
                    ("name", "Acme GmbH"),
                ],
                &["domain:acme.com", "domain:acme.de", "company_country:acme|"],
                &[],
            ),
            (
                &[
                    ("domain", "john@acme.com"),
                    ("website", "acme.com"),
                    ("name", "  "),
                ],
                &["domain:acme.com"],
                &["domain: is an email address, not a domain"],
            ),
            (
                &[
                    ("website", "Acme Inc"),
                    ("name", "Acme Inc"),
                    ("country", "Deutschland"),
                ],
                &["company_country:acme|DE"],
                &["website: contains spaces; a domain such as example.com was expected"],
            ),
            (
                &[("website", "localhost")],
                &[],
                &[
                    "website: has no dot; a domain such as example.com was expected",
                    "domain: is missing",
                    "name: is missing",
                ],
            ),
            (
                &[],
                &[],
                &[
                    "domain: is missing",
                    "website: is missing",
                    "name: is missing",
                ],
            ),
        ];
        for (fields, expected_keys, expected_reasons) in cases {
            let properties = map(fields);
            let keys = company_keys(&CompanyFields::from_hubspot(&properties));
            assert_eq!(encoded(&keys), *expected_keys, "fields {fields:?}");
            assert_eq!(reasons(&keys), *expected_reasons, "fields {fields:?}");
        }
    }

    #[test]
    fn contact_keys_fall_through_to_name_and_company() {
        let cases: &[Case] = &[
            (
                &[
                    ("email", " John.Doe@ACME.com "),
                    ("firstname", "John"),
                    ("lastname", "Doe"),
                    ("company", "Acme Inc"),
                ],
                &["email:john.doe@acme.com", "name_company:john|doe|acme inc"],
                &[],
            ),
            (
                &[
                    ("email", "john.doe(at)acme.com"),
                    ("firstname", " JOHN "),
                    ("lastname", "Doe"),
                    ("company", "ACME  Inc"),
                ],
                &["name_company:john|doe|acme inc"],
                &["email: has no @; an address such as name@example.com was expected"],
            ),
            (
                &[
                    ("firstname", "Zoë"),
                    ("lastname", "Ørsted"),
                    ("company", "Ørsted A/S"),
                ],
                &["name_company:zoë|ørsted|ørsted a/s"],
                &[],
            ),
            (
                &[("email", "jd@acme.com"), ("firstname", "John")],
                &["email:jd@acme.com"],
                &[],
            ),
            (
                &[("email", "jd@"), ("firstname", "John"), ("company", "Acme")],
                &[],
                &[
                    "email: has an invalid domain after the @: it is empty",
                    "last_name: is missing",
                ],
            ),
            (
                &[
                    ("firstname", "\u{feff}"),
                    ("lastname", "Doe"),
                    ("company", "Acme"),
                ],
                &[],
                &["first_name: is empty", "email: is missing"],
            ),
        ];
        for (fields, expected_keys, expected_reasons) in cases {
            let properties = map(fields);
            let keys = contact_keys(&ContactFields::from_hubspot(&properties));
            assert_eq!(encoded(&keys), *expected_keys, "fields {fields:?}");
            assert_eq!(reasons(&keys), *expected_reasons, "fields {fields:?}");
        }
    }

    #[test]
    fn provider_and_hubspot_spellings_meet_on_the_same_keys() {
        let provider = map(&[
            ("email", "Jürgen.Weiß@Bücher.de"),
            ("first_name", "Jürgen"),
            ("last_name", "Weiß"),
            ("company_name", "Bücher GmbH"),
        ]);
        let hubspot = map(&[
            ("email", "jürgen.weiß@xn--bcher-kva.de"),
            ("firstname", "JÜRGEN"),
            ("lastname", "WEIẞ"),
            ("company", "bücher gmbh"),
        ]);
        let a = contact_keys(&ContactFields::from_provider(&provider));
        let b = contact_keys(&ContactFields::from_hubspot(&hubspot));
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.keys, b.keys);
    }

    #[test]
    fn exact_company_rule_keeps_different_names_apart() {
        let a = map(&[
            ("firstname", "Ann"),
            ("lastname", "Lee"),
            ("company", "Acme"),
        ]);
        let b = map(&[
            ("firstname", "ann"),
            ("lastname", "LEE"),
            ("company", "Acme Inc"),
        ]);
        let ka = contact_keys(&ContactFields::from_hubspot(&a));
        let kb = contact_keys(&ContactFields::from_hubspot(&b));
        assert_eq!(ka.keys.len(), 1);
        assert_ne!(ka.keys, kb.keys);
    }

    #[test]
    fn encoding_escapes_separators_and_parses_back() {
        let key = MatchKey::NameCompany {
            first: normalize_person_name("A|B").unwrap(),
            last: normalize_person_name("100%").unwrap(),
            company: company_name_exact("X | Y %7C").unwrap(),
        };
        let text = key.encode();
        assert_eq!(text, "name_company:a%7Cb|100%25|x %7C y %257c");
        assert_eq!(text.parse::<MatchKey>(), Ok(key));
    }

    #[test]
    fn parsing_rejects_foreign_or_unnormalized_keys() {
        let cases = [
            ("acme.com", "malformed"),
            ("phone:+1555", "unknown"),
            ("domain:WWW.acme.com", "not normalized"),
            ("domain:acme", "not normalized"),
            ("email:John@acme.com", "not normalized"),
            ("name_company:john|doe", "malformed"),
            ("name_company:john|doe|acme|x", "malformed"),
            ("name_company:john|doe|acme%", "malformed"),
            ("name_company:john|doe|acme%41", "malformed"),
            ("name_company:John|doe|acme", "not normalized"),
            ("name_company:john||acme", "not normalized"),
            ("company_country:acme inc|US", "not normalized"),
            ("company_country:acme|usa", "not normalized"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<MatchKey>().unwrap_err();
            let kind = match err {
                Error::MalformedKey { .. } => "malformed",
                Error::UnknownKind { .. } => "unknown",
                Error::NotNormalized { .. } => "not normalized",
            };
            assert_eq!(kind, expected, "key {text:?}: {err}");
        }
    }

    #[test]
    fn serde_uses_the_string_encoding() {
        let key = MatchKey::CompanyNameCountry {
            name: company_name_loose("Acme Inc").unwrap(),
            country: Some(normalize_country("USA").unwrap()),
        };
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"company_country:acme|US\"");
        assert_eq!(serde_json::from_str::<MatchKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<MatchKey>("\"domain:Acme.com\"").is_err());
    }
}
