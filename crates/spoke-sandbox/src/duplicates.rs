//! Duplicate inspection: which match keys are held by more than one live record.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::objects::ObjectType;
use crate::store::PortalState;

/// Normalizes a company domain the way Spoke matches them: lower case, no scheme, `www.`, path, port
/// or trailing dot. Returns `None` for an empty result.
pub fn normalize_domain(raw: &str) -> Option<String> {
    let mut s = raw.trim().to_lowercase();
    if let Some(i) = s.find("://") {
        s = s[i + 3..].to_owned();
    }
    if let Some(i) = s.find(['/', '?', '#']) {
        s.truncate(i);
    }
    if let Some(i) = s.rfind('@') {
        s = s[i + 1..].to_owned();
    }
    if let Some(i) = s.find(':') {
        s.truncate(i);
    }
    let s = s.trim_end_matches('.');
    let s = s.strip_prefix("www.").unwrap_or(s);
    if s.is_empty() {
        None
    } else {
        Some(s.to_owned())
    }
}

fn norm_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// One key shared by several records.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateKey {
    /// `email`, `name+company` or `domain`.
    pub kind: String,
    /// The normalized key.
    pub key: String,
    /// The record ids holding it, ascending.
    pub ids: Vec<String>,
}

/// Lists the keys with more than one live record: contacts by email and by first+last name+company,
/// companies by normalized domain. Other object types have no duplicate keys.
pub fn find_duplicates(state: &PortalState, object: ObjectType) -> Vec<DuplicateKey> {
    let mut groups: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let table = state.table(object);
    for rec in table.records.values().filter(|r| !r.archived()) {
        match object {
            ObjectType::Contacts => {
                if let Some(e) = rec
                    .get("email")
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
                {
                    groups.entry(("email".into(), e)).or_default().push(rec.id);
                }
                let first = rec.get("firstname").map(norm_text).unwrap_or_default();
                let last = rec.get("lastname").map(norm_text).unwrap_or_default();
                let company = rec.get("company").map(norm_text).unwrap_or_default();
                let has_name = !first.is_empty() || !last.is_empty();
                if has_name && !company.is_empty() {
                    groups
                        .entry(("name+company".into(), format!("{first}|{last}|{company}")))
                        .or_default()
                        .push(rec.id);
                }
            }
            ObjectType::Companies => {
                if let Some(d) = rec.get("domain").and_then(normalize_domain) {
                    groups.entry(("domain".into(), d)).or_default().push(rec.id);
                }
            }
            _ => {}
        }
    }
    groups
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((kind, key), ids)| DuplicateKey {
            kind,
            key,
            ids: ids.into_iter().map(|i| i.to_string()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_domains() {
        let cases = [
            ("Example.com", Some("example.com")),
            ("https://www.Example.com/about?x=1", Some("example.com")),
            ("http://example.com:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("www.sub.example.co.uk/", Some("sub.example.co.uk")),
            ("   ", None),
            ("https://", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_domain(input).as_deref(), want, "{input}");
        }
    }
}
