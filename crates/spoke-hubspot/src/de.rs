//! Lenient deserializers for HubSpot's loosely typed JSON (null property values, scalar-or-list contexts).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Renders a JSON scalar as HubSpot would have sent it as a string; `None` for null and containers.
fn scalar_to_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `{"k": ["a","b"] | "a" | 1 | null}` → `{"k": ["a","b"]}`; a null map becomes empty.
pub(crate) fn string_lists<'de, D>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let values = match v {
            Value::Array(items) => items.into_iter().filter_map(scalar_to_string).collect(),
            other => scalar_to_string(other).into_iter().collect(),
        };
        out.insert(k, values);
    }
    Ok(out)
}

/// Property maps: HubSpot sends every value as a string but uses `null` for "no value"; nulls are
/// dropped so that "absent" and "empty in HubSpot" read the same to callers.
pub(crate) fn properties<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| scalar_to_string(v).map(|s| (k, s)))
        .collect())
}

/// A string that may arrive as a JSON number (HubSpot ids are strings in v3 but numbers in some bodies).
pub(crate) fn string_or_number<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    scalar_to_string(v).ok_or_else(|| serde::de::Error::custom("expected a string or number"))
}

/// Like [`string_or_number`] but allows null/absent.
pub(crate) fn opt_string_or_number<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let v: Option<Value> = Option::deserialize(d)?;
    Ok(v.and_then(scalar_to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct P {
        #[serde(deserialize_with = "properties", default)]
        p: BTreeMap<String, String>,
        #[serde(deserialize_with = "string_lists", default)]
        c: BTreeMap<String, Vec<String>>,
    }

    #[test]
    fn nulls_are_dropped_and_scalars_stringified() {
        let v: P = serde_json::from_str(
            r#"{"p":{"a":"x","b":null,"n":12,"t":true},"c":{"ids":["1",2],"one":"z","none":null}}"#,
        )
        .unwrap();
        assert_eq!(v.p.get("a").map(String::as_str), Some("x"));
        assert!(!v.p.contains_key("b"));
        assert_eq!(v.p.get("n").map(String::as_str), Some("12"));
        assert_eq!(v.p.get("t").map(String::as_str), Some("true"));
        assert_eq!(v.c["ids"], vec!["1", "2"]);
        assert_eq!(v.c["one"], vec!["z"]);
        assert!(v.c["none"].is_empty());
        let v: P = serde_json::from_str(r#"{"p":null,"c":null}"#).unwrap();
        assert!(v.p.is_empty() && v.c.is_empty());
    }
}
