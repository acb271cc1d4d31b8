//! CRM search: filterGroups (OR of ANDed filters), a query string, sorts and offset paging, with
//! HubSpot's limits (200 a page, 5 groups × 6 filters, 18 filters, 10,000 results a query).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::{ApiError, ApiResult};
use crate::clock::parse_ms;
use crate::duplicates::normalize_domain;
use crate::objects::ObjectType;
use crate::store::{PortalState, Props, Record, Wanted, render, value_of};

/// Largest page.
pub const MAX_LIMIT: i64 = 200;
/// Results reachable by paging one query.
pub const MAX_RESULTS: usize = 10_000;
/// Filter groups per request.
pub const MAX_GROUPS: usize = 5;
/// Filters per group.
pub const MAX_FILTERS_PER_GROUP: usize = 6;
/// Filters per request.
pub const MAX_FILTERS: usize = 18;

/// A search request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// OR-ed groups of AND-ed filters.
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    /// Sort specs (HubSpot honours one).
    #[serde(default)]
    pub sorts: Vec<SortSpec>,
    /// Free-text query: every term must prefix a token of one of the searchable properties.
    #[serde(default)]
    pub query: Option<String>,
    /// Properties to return.
    #[serde(default)]
    pub properties: Vec<String>,
    /// Page size (default 10).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Offset cursor from `paging.next.after`.
    #[serde(default)]
    pub after: Option<Value>,
}

/// A group of filters that must all match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterGroup {
    /// Filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// One filter.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Property name.
    pub property_name: String,
    /// Operator, e.g. `EQ`.
    pub operator: String,
    /// Single value.
    #[serde(default)]
    pub value: Option<Value>,
    /// Upper bound of `BETWEEN`.
    #[serde(default)]
    pub high_value: Option<Value>,
    /// Values of `IN` / `NOT_IN`.
    #[serde(default)]
    pub values: Option<Vec<Value>>,
}

/// A sort: `{"propertyName","direction"}` or HubSpot's string form (`"-createdate"` is descending).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SortSpec {
    /// Object form.
    Object {
        /// Property name.
        #[serde(rename = "propertyName")]
        property_name: String,
        /// `ASCENDING` or `DESCENDING`.
        #[serde(default)]
        direction: Option<String>,
    },
    /// String form.
    Text(String),
}

impl SortSpec {
    fn parts(&self) -> (String, bool) {
        match self {
            SortSpec::Object {
                property_name,
                direction,
            } => (
                property_name.clone(),
                direction
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case("DESCENDING")),
            ),
            SortSpec::Text(s) => match s.strip_prefix('-') {
                Some(p) => (p.to_owned(), true),
                None => (s.clone(), false),
            },
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How values of a property compare.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Number,
    Date,
    Text,
}

fn compare(kind: Kind, stored: &str, given: &str) -> Option<Ordering> {
    match kind {
        Kind::Number => {
            let a = stored.parse::<f64>().ok()?;
            let b = given.parse::<f64>().ok()?;
            a.partial_cmp(&b)
        }
        Kind::Date => Some(parse_ms(stored)?.cmp(&parse_ms(given)?)),
        Kind::Text => Some(stored.to_lowercase().cmp(&given.to_lowercase())),
    }
}

fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '@' || c == '.' || c == '_' || c == '-'))
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
}

fn glob(pattern: &str, text: &str) -> bool {
    // Iterative `*` matcher; patterns are short.
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn contains_token(stored: &str, given: &str) -> bool {
    let g = given.to_lowercase();
    let whole = stored.to_lowercase();
    if g.contains('*') {
        return glob(&g, &whole) || tokens(stored).any(|t| glob(&g, &t));
    }
    whole == g || tokens(stored).any(|t| t == g)
}

struct Compiled<'a> {
    filter: &'a Filter,
    kind: Kind,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

const OPERATORS: &[&str] = &[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

impl Compiled<'_> {
    fn matches(&self, object: ObjectType, rec: &Record, props: &Props) -> bool {
        let stored =
            value_of(object, rec, props, &self.filter.property_name).filter(|v| !v.is_empty());
        let cmp = |given: &Option<String>| -> Option<Ordering> {
            compare(self.kind, stored.as_deref()?, given.as_deref()?)
        };
        match self.filter.operator.as_str() {
            "EQ" => cmp(&self.value) == Some(Ordering::Equal),
            "NEQ" => cmp(&self.value) != Some(Ordering::Equal),
            "LT" => cmp(&self.value) == Some(Ordering::Less),
            "LTE" => matches!(cmp(&self.value), Some(Ordering::Less | Ordering::Equal)),
            "GT" => cmp(&self.value) == Some(Ordering::Greater),
            "GTE" => matches!(cmp(&self.value), Some(Ordering::Greater | Ordering::Equal)),
            "BETWEEN" => {
                matches!(cmp(&self.value), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(&self.high), Some(Ordering::Less | Ordering::Equal))
            }
            "IN" => self.values.iter().any(|v| {
                stored.as_deref().and_then(|s| compare(self.kind, s, v)) == Some(Ordering::Equal)
            }),
            "NOT_IN" => !self.values.iter().any(|v| {
                stored.as_deref().and_then(|s| compare(self.kind, s, v)) == Some(Ordering::Equal)
            }),
            "HAS_PROPERTY" => stored.is_some(),
            "NOT_HAS_PROPERTY" => stored.is_none(),
            "CONTAINS_TOKEN" => match (&stored, &self.value) {
                (Some(s), Some(v)) => contains_token(s, v),
                _ => false,
            },
            "NOT_CONTAINS_TOKEN" => match (&stored, &self.value) {
                (Some(s), Some(v)) => !contains_token(s, v),
                _ => true,
            },
            _ => false,
        }
    }
}

fn kind_of(state: &PortalState, object: ObjectType, name: &str) -> Kind {
    match state.table(object).defs.get(name).map(|d| d.kind.as_str()) {
        Some("number") => Kind::Number,
        Some("date" | "datetime") => Kind::Date,
        _ => Kind::Text,
    }
}

/// Candidate ids from the unique-email / domain indexes when every group pins one; `None` means scan.
fn indexed_candidates(
    state: &PortalState,
    object: ObjectType,
    groups: &[FilterGroup],
) -> Option<BTreeSet<u64>> {
    if groups.is_empty() {
        return None;
    }
    let table = state.table(object);
    let mut out = BTreeSet::new();
    for g in groups {
        let pin = g.filters.iter().find(|f| {
            matches!(f.operator.as_str(), "EQ" | "IN")
                && matches!(
                    (object, f.property_name.as_str()),
                    (ObjectType::Contacts, "email") | (ObjectType::Companies, "domain")
                )
        })?;
        let mut wanted: Vec<String> = pin
            .values
            .clone()
            .unwrap_or_default()
            .iter()
            .map(text_of)
            .collect();
        if let Some(v) = &pin.value {
            wanted.push(text_of(v));
        }
        for w in wanted {
            if object == ObjectType::Contacts {
                if let Some(id) = table.email_index.get(&w.trim().to_lowercase()) {
                    out.insert(*id);
                }
            } else if let Some(ids) = normalize_domain(&w).and_then(|d| table.domain_index.get(&d))
            {
                out.extend(ids.iter().copied());
            }
        }
    }
    Some(out)
}

/// Runs a search and renders HubSpot's `{total, results, paging}` answer.
pub fn execute(
    state: &PortalState,
    object: ObjectType,
    req: &SearchRequest,
    now_ms: i64,
) -> ApiResult<Value> {
    let limit = req.limit.unwrap_or(10);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {MAX_LIMIT}; got {limit}"
        )));
    }
    if req.filter_groups.len() > MAX_GROUPS {
        return Err(ApiError::validation(format!(
            "Too many filter groups: {} (maximum {MAX_GROUPS})",
            req.filter_groups.len()
        )));
    }
    let total_filters: usize = req.filter_groups.iter().map(|g| g.filters.len()).sum();
    if req
        .filter_groups
        .iter()
        .any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        || total_filters > MAX_FILTERS
    {
        return Err(ApiError::validation(format!(
            "Too many filters: at most {MAX_FILTERS_PER_GROUP} per group and {MAX_FILTERS} in total"
        )));
    }
    let offset: usize = match &req.after {
        None => 0,
        Some(v) => text_of(v).parse().map_err(|_| {
            ApiError::validation(format!("after must be a number; got {}", text_of(v)))
        })?,
    };
    if offset >= MAX_RESULTS {
        return Err(ApiError::validation(format!(
            "Paging beyond {MAX_RESULTS} results is not supported; narrow the query (after={offset})"
        )));
    }
    let mut groups: Vec<Vec<Compiled<'_>>> = Vec::new();
    for g in &req.filter_groups {
        let mut compiled = Vec::new();
        for f in &g.filters {
            if !OPERATORS.contains(&f.operator.as_str()) {
                return Err(ApiError::validation(format!(
                    "Unknown operator {} for property {}",
                    f.operator, f.property_name
                )));
            }
            compiled.push(Compiled {
                filter: f,
                kind: kind_of(state, object, &f.property_name),
                value: f.value.as_ref().map(text_of),
                high: f.high_value.as_ref().map(text_of),
                values: f
                    .values
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .map(text_of)
                    .collect(),
            });
        }
        groups.push(compiled);
    }
    let terms: Vec<String> = req
        .query
        .as_deref()
        .map(|q| q.split_whitespace().map(|t| t.to_lowercase()).collect())
        .unwrap_or_default();
    let table = state.table(object);
    let matches = |rec: &Record, props: &Props| -> bool {
        let group_ok = groups.is_empty()
            || groups
                .iter()
                .any(|g| g.iter().all(|f| f.matches(object, rec, props)));
        group_ok
            && terms.iter().all(|t| {
                object.query_properties().iter().any(|p| {
                    value_of(object, rec, props, p)
                        .is_some_and(|v| tokens(&v).any(|tok| tok.starts_with(t.as_str())))
                })
            })
    };
    let visible = |rec: &'_ Record| -> bool { !rec.archived() };
    let mut hits: Vec<(&Record, &Props)> = Vec::new();
    let mut consider = |rec| {
        let rec: &Record = rec;
        if !visible(rec) {
            return;
        }
        if let Some(props) = rec.searchable_props(now_ms)
            && matches(rec, props)
        {
            hits.push((rec, props));
        }
    };
    match indexed_candidates(state, object, &req.filter_groups) {
        Some(ids) => ids
            .iter()
            .filter_map(|id| table.records.get(id))
            .for_each(&mut consider),
        None => table.records.values().for_each(&mut consider),
    }
    let total = hits.len();
    if let Some((prop, desc)) = req.sorts.first().map(SortSpec::parts) {
        let kind = kind_of(state, object, &prop);
        hits.sort_by(|(ra, pa), (rb, pb)| {
            let a = value_of(object, ra, pa, &prop).filter(|v| !v.is_empty());
            let b = value_of(object, rb, pb, &prop).filter(|v| !v.is_empty());
            let o = match (a, b) {
                (Some(a), Some(b)) => compare(kind, &a, &b).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            let o = if desc { o.reverse() } else { o };
            o.then(ra.id.cmp(&rb.id))
        });
    }
    let wanted = Wanted::from_list(req.properties.clone());
    let end = (offset + limit as usize).min(total).min(MAX_RESULTS);
    let results: Vec<Value> = hits
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|(r, p)| render(object, r, p, &wanted))
        .collect();
    let mut body = json!({ "total": total, "results": results });
    if end < total && end < MAX_RESULTS {
        body["paging"] = json!({ "next": { "after": end.to_string() } });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matching() {
        let cases = [
            ("jane@example.com", "jane@example.com", true),
            ("jane@example.com", "*@example.com", true),
            ("Acme Software Inc", "software", true),
            ("Acme Software Inc", "soft", false),
            ("Acme Software Inc", "soft*", true),
            ("Acme", "beta", false),
        ];
        for (stored, given, want) in cases {
            assert_eq!(contains_token(stored, given), want, "{stored} ~ {given}");
        }
    }

    #[test]
    fn compares_by_kind() {
        assert_eq!(compare(Kind::Number, "10", "9"), Some(Ordering::Greater));
        assert_eq!(compare(Kind::Text, "10", "9"), Some(Ordering::Less));
        assert_eq!(
            compare(Kind::Date, "2024-01-01T00:00:00.000Z", "1704067200000"),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(Kind::Text, "Acme", "ACME"), Some(Ordering::Equal));
        assert_eq!(compare(Kind::Number, "x", "1"), None);
    }
}
