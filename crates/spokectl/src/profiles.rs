//! Reading provider profiles from CSV or NDJSON files.
//!
//! NDJSON: one object per line, either `{"profile_id": "...", "fields": {...}}` or a flat object
//! whose `profile_id` (or `id`) key names the profile and whose other string keys are fields.
//! CSV: a header row; the `profile_id` (or `id`) column names the profile, the other columns are
//! fields; empty cells are left out. Errors name the line and what is wrong.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

use crate::datagen::Profile;

/// Reads every profile of `path` (format by extension: `.csv`, else NDJSON).
pub fn read(path: &Path) -> anyhow::Result<Vec<Profile>> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if is_csv {
        read_csv(&text)
    } else {
        read_ndjson(&text)
    }
}

fn read_ndjson(text: &str) -> anyhow::Result<Vec<Profile>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {n}: not a JSON object"))?;
        let obj = value
            .as_object()
            .with_context(|| format!("line {n}: expected a JSON object"))?;
        let id = obj
            .get("profile_id")
            .or_else(|| obj.get("id"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|i| i.to_string()))
            })
            .with_context(|| format!("line {n}: missing \"profile_id\""))?;
        let source = match obj.get("fields") {
            Some(f) => f
                .as_object()
                .with_context(|| format!("line {n}: \"fields\" must be an object"))?,
            None => obj,
        };
        let mut fields = BTreeMap::new();
        for (k, v) in source {
            if k == "profile_id" || k == "id" {
                continue;
            }
            match v {
                serde_json::Value::String(s) => {
                    fields.insert(k.clone(), s.clone());
                }
                serde_json::Value::Number(num) => {
                    fields.insert(k.clone(), num.to_string());
                }
                serde_json::Value::Bool(b) => {
                    fields.insert(k.clone(), b.to_string());
                }
                serde_json::Value::Null => {}
                _ => bail!("line {n}: field {k:?} must be a string, number or boolean"),
            }
        }
        out.push((id, fields));
    }
    Ok(out)
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Profile>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().context("line 1: no CSV header")?.clone();
    let id_col = headers
        .iter()
        .position(|h| h == "profile_id" || h == "id")
        .context("line 1: the CSV header needs a profile_id column")?;
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let n = i + 2;
        let rec = rec.with_context(|| format!("line {n}: malformed CSV"))?;
        let id = rec.get(id_col).unwrap_or_default().trim().to_string();
        if id.is_empty() {
            bail!("line {n}: empty profile_id");
        }
        let fields = headers
            .iter()
            .zip(rec.iter())
            .enumerate()
            .filter(|(c, (_, v))| *c != id_col && !v.trim().is_empty())
            .map(|(_, (h, v))| (h.to_string(), v.to_string()))
            .collect();
        out.push((id, fields));
    }
    Ok(out)
}

/// Writes profiles as NDJSON lines; `kind` (company|contact) lets the same file feed
/// `profiles load`.
pub fn to_ndjson(profiles: &[Profile], kind: &str) -> String {
    let mut s = String::new();
    for (id, fields) in profiles {
        s.push_str(
            &serde_json::json!({"profile_id": id, "kind": kind, "fields": fields}).to_string(),
        );
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_both_shapes_and_errors_name_the_line() {
        let ok = read_ndjson("{\"profile_id\":\"a\",\"fields\":{\"email\":\"x@y.com\"}}\n\n{\"id\":7,\"name\":\"Acme\",\"employees\":12}\n").unwrap();
        assert_eq!(ok[0].0, "a");
        assert_eq!(ok[0].1["email"], "x@y.com");
        assert_eq!(ok[1].0, "7");
        assert_eq!(ok[1].1["employees"], "12");
        let err = read_ndjson("{\"profile_id\":\"a\"}\n{\"name\":\"b\"}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("profile_id"),
            "{err}"
        );
    }

    #[test]
    fn csv_with_empty_cells_and_missing_id() {
        let ok = read_csv("profile_id,name,website\np1,Acme,\np2,Globex,globex.com\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert!(!ok[0].1.contains_key("website"));
        assert_eq!(ok[1].1["website"], "globex.com");
        let err = read_csv("name\nAcme\n").unwrap_err().to_string();
        assert!(err.contains("profile_id"), "{err}");
        let err = read_csv("profile_id,name\n,Acme\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn generated_profiles_round_trip_through_ndjson() {
        let ps: Vec<Profile> = (0..20).map(|i| crate::datagen::contact(3, i)).collect();
        assert_eq!(read_ndjson(&to_ndjson(&ps, "contact")).unwrap(), ps);
    }
}
