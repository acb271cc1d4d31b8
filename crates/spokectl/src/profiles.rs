//! Reading provider profiles from CSV or NDJSON files.
//!
//! NDJSON: one object per line, either `{"profile_id": "...", "fields": {...}}` or a flat object
//! whose `profile_id` (or `id`) key names the profile and whose other string keys are fields.
//! CSV: a header row; the `profile_id` (or `id`) column names the profile, the other columns are
//! fields; empty cells are left out. In both, an optional `kind` (company|contact) says what the
//! profile is; it is not a field.
//!
//! A bad line never stops the read: it is skipped and reported (line, profile and field, and
//! why), and every valid line is still read. Only a file without a usable CSV header fails as a
//! whole. Lines are checked against the export service's own rules (field values up to 64 KiB,
//! unique profile ids, the export's object kind) so problems are reported before anything is sent.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, bail};

use crate::datagen::Profile;

/// Longest field value the export service accepts (bytes).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// What a file held: the valid profiles and one message per skipped line.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    /// Valid profiles, in file order.
    pub profiles: Vec<Profile>,
    /// Skipped lines: `line N (profile "id"), field "f": why`.
    pub problems: Vec<String>,
}

/// Reads every profile of `path` (format by extension: `.csv`, else NDJSON). `kind` (company or
/// contact), when given, is the only kind of profile accepted.
pub fn read(path: &Path, kind: Option<&str>) -> anyhow::Result<Loaded> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if is_csv {
        read_csv(&bytes, kind)
    } else {
        Ok(read_ndjson(&bytes, kind))
    }
}

/// `company`/`companies` → `company`, `contact`/`contacts` → `contact`.
fn kind_name(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "company" | "companies" => Some("company"),
        "contact" | "contacts" => Some("contact"),
        _ => None,
    }
}

/// Checks one parsed line and adds it (or its problem) to `out`.
struct Checker<'a> {
    kind: Option<&'a str>,
    seen: HashMap<String, usize>,
    out: Loaded,
}

impl Checker<'_> {
    fn push(
        &mut self,
        line: usize,
        id: String,
        kind: Option<&str>,
        mut fields: BTreeMap<String, String>,
    ) {
        fields.retain(|_, v| !v.trim().is_empty());
        let at = format!("line {line} (profile {id:?})");
        if let (Some(want), Some(got)) = (self.kind, kind) {
            match kind_name(got) {
                Some(k) if k == want => {}
                Some(k) => {
                    return self.problem(format!(
                        "{at}, field \"kind\": a {k}, but this export is of {want} profiles"
                    ));
                }
                None => {
                    return self.problem(format!(
                        "{at}, field \"kind\": must be company or contact, got {got:?}"
                    ));
                }
            }
        }
        if let Some((name, v)) = fields.iter().find(|(_, v)| v.len() > MAX_VALUE_BYTES) {
            return self.problem(format!(
                "{at}, field {name:?}: value of {} bytes; at most {MAX_VALUE_BYTES}",
                v.len()
            ));
        }
        if fields.is_empty() {
            return self.problem(format!("{at}: no field values (empty record)"));
        }
        if let Some(first) = self.seen.get(&id) {
            return self.problem(format!(
                "{at}, field \"profile_id\": duplicate of line {first}"
            ));
        }
        self.seen.insert(id.clone(), line);
        self.out.profiles.push((id, fields));
    }

    fn problem(&mut self, message: String) {
        self.out.problems.push(message);
    }
}

/// A parsed line: profile id, optional kind, fields.
type Line = (String, Option<String>, BTreeMap<String, String>);

/// One NDJSON line as (id, kind, fields), or why not.
fn parse_json_line(n: usize, line: &str) -> Result<Line, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("line {n}: not a JSON object ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| format!("line {n}: expected a JSON object"))?;
    let id = obj
        .get("profile_id")
        .or_else(|| obj.get("id"))
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|i| i.to_string()))
        })
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| format!("line {n}, field \"profile_id\": missing or empty"))?;
    let kind = match obj.get("kind") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(k)) => Some(k.clone()),
        Some(other) => {
            return Err(format!(
                "line {n} (profile {id:?}), field \"kind\": must be a string, got {other}"
            ));
        }
    };
    let source = match obj.get("fields") {
        Some(f) => f.as_object().ok_or_else(|| {
            format!("line {n} (profile {id:?}), field \"fields\": must be an object")
        })?,
        None => obj,
    };
    let mut fields = BTreeMap::new();
    for (k, v) in source {
        if k == "profile_id" || k == "id" || k == "kind" {
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
            _ => {
                return Err(format!(
                    "line {n} (profile {id:?}), field {k:?}: must be a string, number or boolean"
                ));
            }
        }
    }
    Ok((id, kind, fields))
}

fn read_ndjson(bytes: &[u8], kind: Option<&str>) -> Loaded {
    let mut check = Checker {
        kind,
        seen: HashMap::new(),
        out: Loaded::default(),
    };
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l.trim(),
            Err(e) => {
                check.problem(format!(
                    "line {n}: not valid UTF-8 (at byte {} of the line)",
                    e.valid_up_to()
                ));
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        match parse_json_line(n, line) {
            Ok((id, k, fields)) => check.push(n, id, k.as_deref(), fields),
            Err(why) => check.problem(why),
        }
    }
    check.out
}

fn read_csv(bytes: &[u8], kind: Option<&str>) -> anyhow::Result<Loaded> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let raw_headers = reader
        .byte_headers()
        .context("line 1: no CSV header")?
        .clone();
    let mut headers = Vec::with_capacity(raw_headers.len());
    for (j, h) in raw_headers.iter().enumerate() {
        match std::str::from_utf8(h) {
            Ok(h) => headers.push(h.trim().to_string()),
            Err(_) => bail!("line 1: header column {} is not valid UTF-8", j + 1),
        }
    }
    let id_col = headers
        .iter()
        .position(|h| h == "profile_id" || h == "id")
        .context("line 1: the CSV header needs a profile_id column")?;
    let kind_col = headers.iter().position(|h| h == "kind");
    let mut check = Checker {
        kind,
        seen: HashMap::new(),
        out: Loaded::default(),
    };
    let mut rec = csv::ByteRecord::new();
    let mut next_line = 2usize;
    loop {
        let read = reader.read_byte_record(&mut rec);
        let n = rec.position().map_or(next_line, |p| p.line() as usize);
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let n = e.position().map_or(next_line, |p| p.line() as usize);
                check.problem(format!("line {n}: malformed CSV ({e})"));
                next_line = n + 1;
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        next_line = n + 1;
        if rec.len() != headers.len() {
            check.problem(format!(
                "line {n}: {} columns, the header has {}",
                rec.len(),
                headers.len()
            ));
            continue;
        }
        let mut values = Vec::with_capacity(rec.len());
        let mut bad = None;
        for (j, v) in rec.iter().enumerate() {
            match std::str::from_utf8(v) {
                Ok(v) => values.push(v),
                Err(_) => {
                    bad = Some(j);
                    break;
                }
            }
        }
        if let Some(j) = bad {
            check.problem(format!("line {n}, field {:?}: not valid UTF-8", headers[j]));
            continue;
        }
        let id = values[id_col].trim().to_string();
        if id.is_empty() {
            check.problem(format!("line {n}, field \"profile_id\": empty"));
            continue;
        }
        let fields = headers
            .iter()
            .zip(values.iter())
            .enumerate()
            .filter(|(c, (_, v))| *c != id_col && Some(*c) != kind_col && !v.trim().is_empty())
            .map(|(_, (h, v))| (h.clone(), (*v).to_string()))
            .collect();
        let k = kind_col.map(|c| values[c]).filter(|k| !k.trim().is_empty());
        check.push(n, id, k, fields);
    }
    Ok(check.out)
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
    use proptest::prelude::*;

    #[test]
    fn ndjson_both_shapes_and_errors_name_the_line() {
        let ok = read_ndjson(b"{\"profile_id\":\"a\",\"fields\":{\"email\":\"x@y.com\"}}\n\n{\"id\":7,\"name\":\"Acme\",\"employees\":12}\n", None);
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(ok.profiles[0].0, "a");
        assert_eq!(ok.profiles[0].1["email"], "x@y.com");
        assert_eq!(ok.profiles[1].0, "7");
        assert_eq!(ok.profiles[1].1["employees"], "12");
        let got = read_ndjson(
            b"{\"profile_id\":\"a\",\"name\":\"A\"}\n{\"name\":\"b\"}\n",
            None,
        );
        assert_eq!(got.profiles.len(), 1);
        assert!(
            got.problems[0].contains("line 2") && got.problems[0].contains("profile_id"),
            "{:?}",
            got.problems
        );
    }

    #[test]
    fn csv_with_empty_cells_and_missing_id() {
        let ok = read_csv(
            b"profile_id,name,website\np1,Acme,\np2,Globex,globex.com\n",
            None,
        )
        .unwrap();
        assert_eq!(ok.profiles.len(), 2);
        assert!(!ok.profiles[0].1.contains_key("website"));
        assert_eq!(ok.profiles[1].1["website"], "globex.com");
        let err = read_csv(b"name\nAcme\n", None).unwrap_err().to_string();
        assert!(err.contains("profile_id"), "{err}");
        let got = read_csv(b"profile_id,name\n,Acme\np2,Globex\n", None).unwrap();
        assert_eq!(got.profiles.len(), 1);
        assert!(got.problems[0].contains("line 2"), "{:?}", got.problems);
    }

    #[test]
    fn generated_profiles_round_trip_through_ndjson() {
        let ps: Vec<Profile> = (0..20).map(|i| crate::datagen::contact(3, i)).collect();
        let got = read_ndjson(to_ndjson(&ps, "contact").as_bytes(), Some("contact"));
        assert_eq!(got.profiles, ps);
        assert!(got.problems.is_empty());
    }

    /// Invalid UTF-8, a 10 MB value, an empty record, a wrong kind, a non-scalar value and a
    /// duplicate id each skip their line with the line, profile and field named; the valid lines
    /// around them are all read.
    #[test]
    fn bad_lines_are_reported_and_good_lines_kept_ndjson() {
        let big = "x".repeat(10 * 1024 * 1024);
        let mut file = Vec::new();
        file.extend_from_slice(
            b"{\"profile_id\":\"good-1\",\"kind\":\"company\",\"fields\":{\"name\":\"Acme\"}}\n",
        );
        file.extend_from_slice(b"{\"profile_id\":\"bad-utf8\",\"name\":\"Ac\xff\xfeme\"}\n");
        file.extend_from_slice(
            format!("{{\"profile_id\":\"huge\",\"name\":\"{big}\"}}\n").as_bytes(),
        );
        file.extend_from_slice(b"{\"profile_id\":\"empty\",\"fields\":{}}\n");
        file.extend_from_slice(b"{\"profile_id\":\"person\",\"kind\":\"contact\",\"fields\":{\"email\":\"a@b.com\"}}\n");
        file.extend_from_slice(b"{\"profile_id\":\"nested\",\"name\":{\"x\":1}}\n");
        file.extend_from_slice(b"[1,2]\n");
        file.extend_from_slice(b"{\"profile_id\":\"good-1\",\"name\":\"Again\"}\n");
        file.extend_from_slice(b"{\"profile_id\":\"good-2\",\"website\":\"globex.com\"}\n");
        let got = read_ndjson(&file, Some("company"));
        let ids: Vec<&str> = got.profiles.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["good-1", "good-2"]);
        let expect = [
            ("line 2", "UTF-8"),
            (
                "line 3 (profile \"huge\"), field \"name\"",
                "10485760 bytes",
            ),
            ("line 4 (profile \"empty\")", "empty record"),
            ("line 5 (profile \"person\"), field \"kind\"", "a contact"),
            (
                "line 6 (profile \"nested\"), field \"name\"",
                "string, number or boolean",
            ),
            ("line 7", "JSON object"),
            (
                "line 8 (profile \"good-1\"), field \"profile_id\"",
                "duplicate of line 1",
            ),
        ];
        assert_eq!(got.problems.len(), expect.len(), "{:?}", got.problems);
        for (p, (at, why)) in got.problems.iter().zip(expect) {
            assert!(
                p.starts_with(at) && p.contains(why),
                "{p:?} should start {at:?} and say {why:?}"
            );
        }
    }

    #[test]
    fn bad_lines_are_reported_and_good_lines_kept_csv() {
        let big = "y".repeat(10 * 1024 * 1024);
        let mut file = Vec::new();
        file.extend_from_slice(b"profile_id,kind,name,website\n");
        file.extend_from_slice(b"c1,company,Acme,acme.com\n");
        file.extend_from_slice(b"c2,company,Gl\xffobex,globex.com\n");
        file.extend_from_slice(format!("c3,company,{big},big.com\n").as_bytes());
        file.extend_from_slice(b"c4,company,,\n");
        file.extend_from_slice(b"p1,contact,Pat,pat.com\n");
        file.extend_from_slice(b"c5,company,Short\n");
        file.extend_from_slice(b"c6,company,\"Multi\nline\",multi.com\n");
        file.extend_from_slice(b"c7,company,Last,last.com\n");
        let got = read_csv(&file, Some("company")).unwrap();
        let ids: Vec<&str> = got.profiles.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c1", "c6", "c7"]);
        assert_eq!(got.profiles[1].1["name"], "Multi\nline");
        assert!(
            !got.profiles[0].1.contains_key("kind"),
            "kind is not a field"
        );
        let expect = [
            ("line 3, field \"name\"", "UTF-8"),
            ("line 4 (profile \"c3\"), field \"name\"", "bytes"),
            ("line 5 (profile \"c4\")", "empty record"),
            ("line 6 (profile \"p1\"), field \"kind\"", "a contact"),
            ("line 7", "3 columns"),
        ];
        assert_eq!(got.problems.len(), expect.len(), "{:?}", got.problems);
        for (p, (at, why)) in got.problems.iter().zip(expect) {
            assert!(
                p.starts_with(at) && p.contains(why),
                "{p:?} should start {at:?} and say {why:?}"
            );
        }
    }

    /// spoke-filtering's readers (used by `profiles load`) name the line of a bad entry and
    /// go on with the next one.
    #[test]
    fn profile_load_readers_report_the_line_and_go_on() {
        let mut file = Vec::new();
        file.extend_from_slice(
            b"{\"profile_id\":\"a\",\"kind\":\"company\",\"fields\":{\"name\":\"Acme\"}}\n",
        );
        file.extend_from_slice(
            b"{\"profile_id\":\"b\",\"kind\":\"company\",\"fields\":{\"name\":\"\xff\"}}\n",
        );
        file.extend_from_slice(b"{\"profile_id\":\"c\",\"kind\":\"deal\"}\n");
        file.extend_from_slice(
            b"{\"profile_id\":\"d\",\"kind\":\"contact\",\"fields\":{\"email\":\"d@x.com\"}}\n",
        );
        let got: Vec<_> = spoke_filtering::profiles::read_ndjson(file.as_slice()).collect();
        assert_eq!(got.len(), 4);
        assert!(got[0].is_ok() && got[3].is_ok(), "{got:?}");
        let e1 = got[1].as_ref().unwrap_err().to_string();
        let e2 = got[2].as_ref().unwrap_err().to_string();
        assert!(e1.contains("line 2"), "{e1}");
        assert!(e2.contains("line 3") && e2.contains("kind"), "{e2}");
    }

    /// A valid line for property tests, with an id unique to its position.
    fn line(i: usize, name: &str) -> String {
        serde_json::json!({"profile_id": format!("p{i}"), "fields": {"name": name}}).to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Arbitrary bytes never panic either reader.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = read_ndjson(&bytes, None);
            let _ = read_ndjson(&bytes, Some("company"));
            let _ = read_csv(&bytes, None);
            let mut with_header = b"profile_id,kind,name\n".to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = read_csv(&with_header, Some("contact"));
        }

        /// `profiles load` reads files with spoke-filtering's readers: arbitrary bytes never
        /// panic them either.
        #[test]
        fn profile_load_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = spoke_filtering::profiles::read_ndjson(bytes.as_slice()).count();
            if let Ok(entries) = spoke_filtering::profiles::read_csv(bytes.as_slice()) {
                let _ = entries.count();
            }
            let mut with_header = b"profile_id,kind,name\n".to_vec();
            with_header.extend_from_slice(&bytes);
            if let Ok(entries) = spoke_filtering::profiles::read_csv(with_header.as_slice()) {
                let _ = entries.count();
            }
        }

        /// Garbage lines (any bytes, invalid UTF-8 included) between valid ones are each
        /// reported with their line number, and every valid line is still read.
        #[test]
        fn garbage_lines_never_hide_valid_ones(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[a-zA-Z ]{1,20}".prop_map(|n| (true, n.into_bytes())),
                    proptest::collection::vec(any::<u8>(), 1..40)
                        .prop_filter("a non-blank line that is not an object", |b| {
                            let text = String::from_utf8_lossy(b);
                            !b.contains(&b'\n') && !text.trim().is_empty() && !text.trim_start().starts_with('{')
                        })
                        .prop_map(|b| (false, b)),
                ],
                1..30,
            )
        ) {
            let mut file = Vec::new();
            let mut want_ok = Vec::new();
            let mut want_bad = Vec::new();
            for (i, (good, bytes)) in lines.iter().enumerate() {
                if *good {
                    let name = String::from_utf8_lossy(bytes);
                    file.extend_from_slice(line(i, &name).as_bytes());
                    if name.trim().is_empty() {
                        want_bad.push(i + 1);
                    } else {
                        want_ok.push(format!("p{i}"));
                    }
                } else {
                    file.extend_from_slice(bytes);
                    want_bad.push(i + 1);
                }
                file.push(b'\n');
            }
            let got = read_ndjson(&file, None);
            let ids: Vec<String> = got.profiles.iter().map(|(id, _)| id.clone()).collect();
            prop_assert_eq!(ids, want_ok);
            prop_assert_eq!(got.problems.len(), want_bad.len(), "{:?}", got.problems);
            for (p, n) in got.problems.iter().zip(want_bad) {
                let prefix = format!("line {n}");
                prop_assert!(p.starts_with(&prefix), "{:?} vs line {}", p, n);
            }
        }
    }
}
