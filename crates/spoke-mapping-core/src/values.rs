//! Turning one provider value into the string HubSpot accepts for a target property.
//!
//! HubSpot property values are strings, but it rejects a whole batch with 400 when one value
//! does not fit its property (an unknown enumeration option, text in a number). Checking here
//! turns that into a per-record message naming the field, the value and what is valid.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::compiled::CompiledRow;

/// HubSpot's limit for a single-line or multi-line text value.
const MAX_TEXT_CHARS: usize = 65_536;

/// How many valid options an error message lists before it summarizes the rest.
const MAX_LISTED_OPTIONS: usize = 25;

/// What a target property accepts, derived from its HubSpot type and field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Free text (string, phone_number and unknown types).
    Text,
    /// A number; `currency` when the amount is in the mapping's default currency.
    Number {
        /// The target is a currency amount.
        currency: bool,
    },
    /// true/false.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A point in time (RFC 3339, a date, or epoch milliseconds).
    DateTime,
    /// One option (select/radio) or several separated by `;` (checkbox).
    Enumeration {
        /// Several options may be chosen (`checkbox`).
        multi: bool,
    },
}

impl TargetKind {
    /// The kind of a compiled row's target.
    pub fn of(row: &CompiledRow) -> TargetKind {
        match (row.target_type.as_str(), row.target_field_type.as_str()) {
            (_, "booleancheckbox") | ("bool", _) => TargetKind::Bool,
            ("enumeration", "checkbox") => TargetKind::Enumeration { multi: true },
            ("enumeration", _) => TargetKind::Enumeration { multi: false },
            ("number", _) => TargetKind::Number {
                currency: row.currency,
            },
            ("date", _) => TargetKind::Date,
            ("datetime", _) => TargetKind::DateTime,
            _ if row.currency => TargetKind::Number { currency: true },
            _ => TargetKind::Text,
        }
    }
}

/// Converts a non-empty provider value for `row`'s target: applies the value map, checks
/// options, numbers, booleans and dates. `Err` carries a message for the person reading the
/// export result, e.g. `invalid option "Tech" for property industry; valid: TECHNOLOGY, ...`.
pub fn convert_value(
    row: &CompiledRow,
    raw: &str,
    default_currency: &str,
) -> std::result::Result<String, String> {
    let value = raw.trim();
    let prop = &row.target_property;
    match TargetKind::of(row) {
        TargetKind::Text => {
            let chars = value.chars().count();
            if chars > MAX_TEXT_CHARS {
                return Err(format!(
                    "value for property {prop} is {chars} characters long; HubSpot accepts at most {MAX_TEXT_CHARS}"
                ));
            }
            Ok(value.to_owned())
        }
        TargetKind::Number { currency } => number(prop, value, currency, default_currency),
        TargetKind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok("true".to_owned()),
            "false" | "no" | "n" | "0" => Ok("false".to_owned()),
            _ => Err(format!(
                "value {value:?} for property {prop} is not a boolean; expected true or false"
            )),
        },
        TargetKind::Date => date(value)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .ok_or_else(|| {
                format!("value {value:?} for property {prop} is not a date; expected YYYY-MM-DD")
            }),
        TargetKind::DateTime => datetime(value).ok_or_else(|| {
            format!(
                "value {value:?} for property {prop} is not a date-time; expected RFC 3339 (2024-05-01T12:00:00Z), YYYY-MM-DD or epoch milliseconds"
            )
        }),
        TargetKind::Enumeration { multi: false } => option(row, value),
        TargetKind::Enumeration { multi: true } => {
            let mut out = Vec::new();
            for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                out.push(option(row, part)?);
            }
            Ok(out.join(";"))
        }
    }
}

/// Maps one provider value through the row's value map and checks it against the options.
fn option(row: &CompiledRow, value: &str) -> std::result::Result<String, String> {
    let mapped = row.value_map.get(value).map_or(value, String::as_str);
    if row.allowed_values.is_empty() || row.allowed_values.iter().any(|v| v == mapped) {
        return Ok(mapped.to_owned());
    }
    let shown = if mapped == value {
        format!("{value:?}")
    } else {
        format!("{mapped:?} (mapped from {value:?})")
    };
    let mut listed: Vec<&str> = row
        .allowed_values
        .iter()
        .take(MAX_LISTED_OPTIONS)
        .map(String::as_str)
        .collect();
    let more = row.allowed_values.len().saturating_sub(MAX_LISTED_OPTIONS);
    let more = if more > 0 {
        listed.push("");
        format!("and {more} more")
    } else {
        String::new()
    };
    let listed = listed.join(", ");
    let hint = row
        .allowed_values
        .iter()
        .find(|v| v.eq_ignore_ascii_case(mapped))
        .map(|v| format!(" (internal values are case-sensitive: did you mean {v:?}?)"))
        .unwrap_or_default();
    Err(format!(
        "invalid option {shown} for property {prop}; valid: {listed}{more}{hint}; map the provider value to one of these internal values",
        prop = row.target_property,
    ))
}

/// Normalizes a number: grouping commas and spaces removed; for currency targets a leading
/// or trailing currency symbol or ISO code is accepted when it is the default currency.
fn number(
    prop: &str,
    value: &str,
    currency: bool,
    default_currency: &str,
) -> std::result::Result<String, String> {
    let mut v = value;
    if currency {
        let (rest, code) = strip_currency(v);
        if let Some(code) = code
            && !default_currency.is_empty()
            && !code.eq_ignore_ascii_case(default_currency)
        {
            return Err(format!(
                "amount {value:?} for property {prop} is in {code}, but the mapping's default currency is {default_currency}"
            ));
        }
        v = rest;
    }
    let cleaned = strip_grouping(v).ok_or_else(|| not_a_number(prop, value))?;
    match cleaned.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(cleaned),
        _ => Err(not_a_number(prop, value)),
    }
}

fn not_a_number(prop: &str, value: &str) -> String {
    format!("value {value:?} for property {prop} is not a number")
}

/// Splits a currency marker off an amount: `$`, `€`, `£`, `¥` or a 3-letter ISO code, before
/// or after the number. Returns the rest and the ISO code when one was written.
fn strip_currency(value: &str) -> (&str, Option<&str>) {
    let v = value.trim();
    for sym in ['$', '€', '£', '¥'] {
        if let Some(rest) = v.strip_prefix(sym).or_else(|| v.strip_suffix(sym)) {
            return (rest.trim(), None);
        }
    }
    let is_code = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic());
    if let Some((head, tail)) = v.split_once(char::is_whitespace)
        && is_code(head)
    {
        return (tail.trim(), Some(head));
    }
    if let Some((head, tail)) = v.rsplit_once(char::is_whitespace)
        && is_code(tail)
    {
        return (head.trim(), Some(tail));
    }
    (v, None)
}

/// Removes thousands separators (`1,234,567` and `1 234 567`); `None` when commas are not
/// in groups of three, so a decimal comma (`1,5`) is never silently read as fifteen.
fn strip_grouping(value: &str) -> Option<String> {
    let v: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if !v.contains(',') {
        return Some(v);
    }
    let int_part = v.split('.').next().unwrap_or_default();
    let mut groups = int_part.split(',');
    let first = groups.next().unwrap_or_default();
    let first_digits = first.trim_start_matches(['-', '+']);
    if first_digits.is_empty() || first_digits.len() > 3 {
        return None;
    }
    if !groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(v.replace(',', ""))
}

fn date(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

fn datetime(value: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        );
    }
    if let Some(d) = date(value) {
        return Some(format!("{}T00:00:00.000Z", d.format("%Y-%m-%d")));
    }
    if !value.is_empty() && value.len() <= 15 && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target_type: &str, field_type: &str, allowed: &[&str]) -> CompiledRow {
        CompiledRow {
            source_fields: vec!["f".into()],
            target_property: "prop".into(),
            target_type: target_type.into(),
            target_field_type: field_type.into(),
            allowed_values: allowed.iter().map(|s| s.to_string()).collect(),
            ..CompiledRow::default()
        }
    }

    #[test]
    fn converts_values_by_target_kind() {
        /// (type, field type, options, currency, input, expected value or error fragment)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [&'a str],
            bool,
            &'a str,
            Result<&'a str, &'a str>,
        );
        let cases: &[Case] = &[
            // (type, field type, options, currency, input, expected or error fragment)
            ("string", "text", &[], false, "  Acme  ", Ok("Acme")),
            (
                "phone_number",
                "phonenumber",
                &[],
                false,
                "(781) 693-7500",
                Ok("(781) 693-7500"),
            ),
            ("number", "number", &[], false, "1,200", Ok("1200")),
            ("number", "number", &[], false, "1 200 300", Ok("1200300")),
            ("number", "number", &[], false, "-12.5", Ok("-12.5")),
            (
                "number",
                "number",
                &[],
                false,
                "1,5",
                Err("is not a number"),
            ),
            (
                "number",
                "number",
                &[],
                false,
                "12,34,567",
                Err("is not a number"),
            ),
            (
                "number",
                "number",
                &[],
                false,
                "lots",
                Err("is not a number"),
            ),
            (
                "number",
                "number",
                &[],
                false,
                "NaN",
                Err("is not a number"),
            ),
            (
                "number",
                "number",
                &[],
                false,
                "$100",
                Err("is not a number"),
            ),
            ("number", "number", &[], true, "$1,000,000", Ok("1000000")),
            ("number", "number", &[], true, "USD 2500.50", Ok("2500.50")),
            ("number", "number", &[], true, "2500 usd", Ok("2500")),
            (
                "number",
                "number",
                &[],
                true,
                "EUR 2500",
                Err("is in EUR, but the mapping's default currency is USD"),
            ),
            ("bool", "booleancheckbox", &[], false, "Yes", Ok("true")),
            ("bool", "booleancheckbox", &[], false, "0", Ok("false")),
            (
                "bool",
                "booleancheckbox",
                &[],
                false,
                "maybe",
                Err("is not a boolean"),
            ),
            ("date", "date", &[], false, "2024-02-29", Ok("2024-02-29")),
            (
                "date",
                "date",
                &[],
                false,
                "2023-02-29",
                Err("is not a date"),
            ),
            (
                "datetime",
                "date",
                &[],
                false,
                "2024-05-01T14:00:00+02:00",
                Ok("2024-05-01T12:00:00.000Z"),
            ),
            (
                "datetime",
                "date",
                &[],
                false,
                "2024-05-01",
                Ok("2024-05-01T00:00:00.000Z"),
            ),
            (
                "datetime",
                "date",
                &[],
                false,
                "1714521600000",
                Ok("1714521600000"),
            ),
            (
                "datetime",
                "date",
                &[],
                false,
                "yesterday",
                Err("is not a date-time"),
            ),
            (
                "enumeration",
                "select",
                &["TECHNOLOGY", "FINANCE"],
                false,
                "FINANCE",
                Ok("FINANCE"),
            ),
            (
                "enumeration",
                "select",
                &["TECHNOLOGY", "FINANCE"],
                false,
                "Finance",
                Err("did you mean \"FINANCE\""),
            ),
            (
                "enumeration",
                "select",
                &["TECHNOLOGY"],
                false,
                "Tech",
                Err("invalid option \"Tech\" for property prop; valid: TECHNOLOGY"),
            ),
            (
                "enumeration",
                "select",
                &[],
                false,
                "Anything",
                Ok("Anything"),
            ),
            (
                "enumeration",
                "checkbox",
                &["A", "B", "C"],
                false,
                "A; C",
                Ok("A;C"),
            ),
            (
                "enumeration",
                "checkbox",
                &["A", "B"],
                false,
                "A;D",
                Err("invalid option \"D\""),
            ),
        ];
        for (ty, ft, allowed, currency, input, expected) in cases {
            let mut r = row(ty, ft, allowed);
            r.currency = *currency;
            let got = convert_value(&r, input, "USD");
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(have, want, "{ty}/{ft} {input:?}"),
                (Err(fragment), Err(msg)) => {
                    assert!(msg.contains(fragment), "{ty}/{ft} {input:?}: {msg}")
                }
                _ => panic!("{ty}/{ft} {input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn value_map_is_applied_case_sensitively_before_the_option_check() {
        let mut r = row("enumeration", "select", &["TECHNOLOGY", "FINANCE"]);
        r.value_map.insert("Tech".into(), "TECHNOLOGY".into());
        r.value_map.insert("Banking".into(), "Finance".into());
        assert_eq!(convert_value(&r, "Tech", "USD"), Ok("TECHNOLOGY".into()));
        // The map key is case-sensitive: "tech" is not "Tech" and is not a valid option.
        let err = convert_value(&r, "tech", "USD").unwrap_err();
        assert!(err.contains("invalid option \"tech\""), "{err}");
        // A mapped-to value must itself be a valid internal value.
        let err = convert_value(&r, "Banking", "USD").unwrap_err();
        assert!(
            err.contains("\"Finance\" (mapped from \"Banking\")")
                && err.contains("valid: TECHNOLOGY, FINANCE")
                && err.contains("did you mean \"FINANCE\""),
            "{err}"
        );
    }

    #[test]
    fn long_option_lists_are_summarized() {
        let options: Vec<String> = (0..40).map(|i| format!("V{i}")).collect();
        let refs: Vec<&str> = options.iter().map(String::as_str).collect();
        let r = row("enumeration", "select", &refs);
        let err = convert_value(&r, "X", "USD").unwrap_err();
        assert!(err.contains("V24, and 15 more"), "{err}");
        assert!(!err.contains("V25,"), "{err}");
    }
}
