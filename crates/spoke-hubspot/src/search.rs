//! CRM search: typed filters, one page, a stream to the end, and a keyset stream past the 10,000 cap.

use futures::{Stream, StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::{Error, Result};
use crate::objects::{CrmObject, ObjectType, Paging};

/// Most results per search page.
pub const SEARCH_PAGE_LIMIT: u32 = 200;
/// Most results one search query can page through.
pub const SEARCH_RESULT_CAP: u64 = 10_000;
/// Most filter groups per search (groups are ORed).
pub const MAX_FILTER_GROUPS: usize = 5;
/// Most filters per group (filters are ANDed).
pub const MAX_FILTERS_PER_GROUP: usize = 6;
/// Most filters across all groups.
pub const MAX_FILTERS_TOTAL: usize = 18;

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Between `value` and `highValue`.
    Between,
    /// One of `values`.
    In,
    /// None of `values`.
    NotIn,
    /// Has any value.
    HasProperty,
    /// Has no value.
    NotHasProperty,
    /// Contains the token (word / wildcard).
    ContainsToken,
    /// Does not contain the token.
    NotContainsToken,
}

/// One filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Property internal name.
    pub property_name: String,
    /// Operator.
    pub operator: Operator,
    /// Operand of single-value operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Operands of `IN` / `NOT_IN`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Upper bound of `BETWEEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
}

impl Filter {
    /// `property <op> value`.
    pub fn new(property: impl Into<String>, operator: Operator, value: impl Into<String>) -> Self {
        Self {
            property_name: property.into(),
            operator,
            value: Some(value.into()),
            values: Vec::new(),
            high_value: None,
        }
    }

    /// `property = value`.
    pub fn eq(property: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(property, Operator::Eq, value)
    }

    /// `property IN values`.
    pub fn in_values(property: impl Into<String>, values: Vec<String>) -> Self {
        Self {
            property_name: property.into(),
            operator: Operator::In,
            value: None,
            values,
            high_value: None,
        }
    }

    /// `property NOT IN values`.
    pub fn not_in(property: impl Into<String>, values: Vec<String>) -> Self {
        Self {
            operator: Operator::NotIn,
            ..Self::in_values(property, values)
        }
    }

    /// `property` has a value.
    pub fn has_property(property: impl Into<String>) -> Self {
        Self {
            property_name: property.into(),
            operator: Operator::HasProperty,
            value: None,
            values: Vec::new(),
            high_value: None,
        }
    }

    /// `property` has no value.
    pub fn not_has_property(property: impl Into<String>) -> Self {
        Self {
            operator: Operator::NotHasProperty,
            ..Self::has_property(property)
        }
    }

    /// `low <= property <= high`.
    pub fn between(
        property: impl Into<String>,
        low: impl Into<String>,
        high: impl Into<String>,
    ) -> Self {
        Self {
            high_value: Some(high.into()),
            ..Self::new(property, Operator::Between, low)
        }
    }
}

/// Filters ANDed together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterGroup {
    /// The filters.
    pub filters: Vec<Filter>,
}

impl FilterGroup {
    /// A group of the given filters.
    pub fn of(filters: Vec<Filter>) -> Self {
        Self { filters }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortDirection {
    /// Ascending.
    Ascending,
    /// Descending.
    Descending,
}

/// A sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    /// Property internal name.
    pub property_name: String,
    /// Direction.
    pub direction: SortDirection,
}

impl Sort {
    /// Ascending by `property`.
    pub fn asc(property: impl Into<String>) -> Self {
        Self {
            property_name: property.into(),
            direction: SortDirection::Ascending,
        }
    }

    /// Descending by `property`.
    pub fn desc(property: impl Into<String>) -> Self {
        Self {
            property_name: property.into(),
            direction: SortDirection::Descending,
        }
    }
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// Groups ORed together (≤5, ≤6 filters each, ≤18 in total).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_groups: Vec<FilterGroup>,
    /// Sort keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sorts: Vec<Sort>,
    /// Free-text query over default searchable properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Properties to return.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    /// Page size, 1..=200.
    pub limit: u32,
    /// Cursor from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        Self {
            filter_groups: Vec::new(),
            sorts: Vec::new(),
            query: None,
            properties: Vec::new(),
            limit: 100,
            after: None,
        }
    }
}

impl SearchRequest {
    /// Checks HubSpot's documented limits so a bad request fails before spending budget.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > SEARCH_PAGE_LIMIT {
            return Err(Error::InvalidRequest(format!(
                "search limit {} is outside 1..={SEARCH_PAGE_LIMIT}",
                self.limit
            )));
        }
        if self.filter_groups.len() > MAX_FILTER_GROUPS {
            return Err(Error::InvalidRequest(format!(
                "{} filter groups given; HubSpot allows {MAX_FILTER_GROUPS}",
                self.filter_groups.len()
            )));
        }
        if let Some(g) = self
            .filter_groups
            .iter()
            .find(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        {
            return Err(Error::InvalidRequest(format!(
                "a filter group has {} filters; HubSpot allows {MAX_FILTERS_PER_GROUP}",
                g.filters.len()
            )));
        }
        let total: usize = self.filter_groups.iter().map(|g| g.filters.len()).sum();
        if total > MAX_FILTERS_TOTAL {
            return Err(Error::InvalidRequest(format!(
                "{total} filters given; HubSpot allows {MAX_FILTERS_TOTAL} in total"
            )));
        }
        if let Some(after) = &self.after
            && after.parse::<u64>().is_ok_and(|a| a >= SEARCH_RESULT_CAP)
        {
            return Err(Error::SearchCapReached {
                total: SEARCH_RESULT_CAP,
                cap: SEARCH_RESULT_CAP,
            });
        }
        Ok(())
    }
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// Total matches of the query (not just this page).
    pub total: u64,
    /// Records of this page.
    pub results: Vec<CrmObject>,
    /// Cursor of the next page.
    pub next_after: Option<String>,
}

#[derive(Deserialize)]
struct RawSearchPage {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    results: Vec<CrmObject>,
    #[serde(default)]
    paging: Option<Paging>,
}

impl PortalClient {
    /// Runs one search page (counts against the search limit of the budget).
    pub async fn search(&self, object: ObjectType, request: &SearchRequest) -> Result<SearchPage> {
        request.validate()?;
        let req = Request::new(&endpoints::OBJECTS_SEARCH, &[object.path()]).json(request)?;
        let raw: RawSearchPage = self.call(req).await?;
        Ok(SearchPage {
            total: raw.total,
            results: raw.results,
            next_after: raw.paging.and_then(|p| p.next).map(|n| n.after),
        })
    }

    /// Streams all matches of a search, page by page. When the query matches more than HubSpot can
    /// page through (10,000), the stream fails up front with [`Error::SearchCapReached`] instead of
    /// silently returning a truncated set; use [`PortalClient::search_all_by_id`] for such sets.
    pub fn search_stream(
        &self,
        object: ObjectType,
        request: SearchRequest,
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'static {
        let portal = self.clone();
        stream::try_unfold(Some(request), move |state| {
            let portal = portal.clone();
            async move {
                let Some(req) = state else {
                    return Ok::<_, Error>(None);
                };
                let page = portal.search(object, &req).await?;
                if req.after.is_none() && page.total > SEARCH_RESULT_CAP {
                    return Err(Error::SearchCapReached {
                        total: page.total,
                        cap: SEARCH_RESULT_CAP,
                    });
                }
                let next = page.next_after.map(|after| SearchRequest {
                    after: Some(after),
                    ..req
                });
                Ok(Some((stream::iter(page.results.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Streams all matches regardless of the 10,000 cap by sorting on `hs_object_id` and restarting
    /// the query with `hs_object_id > last id` (added to every filter group) before reaching the cap.
    /// The request's own sorts and cursor are replaced.
    pub fn search_all_by_id(
        &self,
        object: ObjectType,
        request: SearchRequest,
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'static {
        let portal = self.clone();
        let state = KeysetState {
            base: request,
            last_id: None,
            floor: None,
            after: None,
            seen_in_query: 0,
            done: false,
        };
        stream::try_unfold(state, move |mut st| {
            let portal = portal.clone();
            async move {
                if st.done {
                    return Ok::<_, Error>(None);
                }
                let req = st.request()?;
                let page = portal.search(object, &req).await?;
                st.seen_in_query += page.results.len() as u64;
                if let Some(last) = page.results.last() {
                    st.last_id = Some(last.id.clone());
                }
                let more_in_query = page.total > st.seen_in_query;
                let near_cap = st.seen_in_query + u64::from(req.limit) > SEARCH_RESULT_CAP;
                match page.next_after {
                    _ if page.results.is_empty() => st.done = true,
                    None if !more_in_query => st.done = true,
                    // Restart above the last id before a page would cross the cap (HubSpot may
                    // also stop offering a cursor at the cap while `total` says there is more).
                    None => st.restart(),
                    Some(_) if near_cap => st.restart(),
                    Some(after) => st.after = Some(after),
                }
                Ok(Some((stream::iter(page.results.into_iter().map(Ok)), st)))
            }
        })
        .try_flatten()
        .boxed()
    }
}

struct KeysetState {
    base: SearchRequest,
    /// Id of the last record yielded.
    last_id: Option<String>,
    /// Lower id bound of the current query (`hs_object_id > floor`).
    floor: Option<String>,
    after: Option<String>,
    seen_in_query: u64,
    done: bool,
}

impl KeysetState {
    fn restart(&mut self) {
        self.after = None;
        self.floor = self.last_id.clone();
        self.seen_in_query = 0;
    }

    fn request(&self) -> Result<SearchRequest> {
        let mut req = self.base.clone();
        req.sorts = vec![Sort::asc("hs_object_id")];
        req.after = self.after.clone();
        if let Some(floor) = &self.floor {
            let keyset = Filter::new("hs_object_id", Operator::Gt, floor.clone());
            if req.filter_groups.is_empty() {
                req.filter_groups.push(FilterGroup::default());
            }
            for g in &mut req.filter_groups {
                g.filters.push(keyset.clone());
            }
        }
        req.validate()?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_serializes_like_hubspot() {
        let req = SearchRequest {
            filter_groups: vec![FilterGroup::of(vec![
                Filter::eq("domain", "example.com"),
                Filter::in_values("hubspot_owner_id", vec!["1".into(), "2".into()]),
                Filter::has_property("name"),
                Filter::between("createdate", "1", "2"),
            ])],
            sorts: vec![Sort::desc("createdate")],
            properties: vec!["domain".into()],
            limit: 200,
            after: Some("200".into()),
            ..SearchRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({
                "filterGroups":[{"filters":[
                    {"propertyName":"domain","operator":"EQ","value":"example.com"},
                    {"propertyName":"hubspot_owner_id","operator":"IN","values":["1","2"]},
                    {"propertyName":"name","operator":"HAS_PROPERTY"},
                    {"propertyName":"createdate","operator":"BETWEEN","value":"1","highValue":"2"}
                ]}],
                "sorts":[{"propertyName":"createdate","direction":"DESCENDING"}],
                "properties":["domain"],
                "limit":200,
                "after":"200"
            })
        );
    }

    #[test]
    fn limits_are_checked_before_sending() {
        let six = || FilterGroup::of((0..6).map(|i| Filter::eq(format!("p{i}"), "x")).collect());
        let cases: Vec<(SearchRequest, bool)> = vec![
            (SearchRequest::default(), true),
            (
                SearchRequest {
                    limit: 201,
                    ..Default::default()
                },
                false,
            ),
            (
                SearchRequest {
                    limit: 0,
                    ..Default::default()
                },
                false,
            ),
            (
                SearchRequest {
                    filter_groups: vec![six(); 3],
                    ..Default::default()
                },
                true,
            ),
            (
                SearchRequest {
                    filter_groups: vec![six(); 4],
                    ..Default::default()
                },
                false,
            ),
            (
                SearchRequest {
                    filter_groups: vec![FilterGroup::default(); 6],
                    ..Default::default()
                },
                false,
            ),
            (
                SearchRequest {
                    filter_groups: vec![FilterGroup::of(
                        (0..7).map(|i| Filter::eq(format!("p{i}"), "x")).collect(),
                    )],
                    ..Default::default()
                },
                false,
            ),
            (
                SearchRequest {
                    after: Some("9800".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                SearchRequest {
                    after: Some("10000".into()),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (i, (req, ok)) in cases.into_iter().enumerate() {
            assert_eq!(req.validate().is_ok(), ok, "case {i}");
        }
    }

    #[test]
    fn keyset_request_adds_id_filter_to_every_group() {
        let st = KeysetState {
            base: SearchRequest {
                filter_groups: vec![
                    FilterGroup::of(vec![Filter::eq("a", "1")]),
                    FilterGroup::of(vec![Filter::eq("b", "2")]),
                ],
                sorts: vec![Sort::desc("name")],
                ..Default::default()
            },
            last_id: Some("90".into()),
            floor: Some("77".into()),
            after: Some("100".into()),
            seen_in_query: 0,
            done: false,
        };
        let req = st.request().unwrap();
        assert_eq!(req.sorts, vec![Sort::asc("hs_object_id")]);
        for g in &req.filter_groups {
            assert_eq!(
                g.filters.last(),
                Some(&Filter::new("hs_object_id", Operator::Gt, "77"))
            );
        }
        let first = KeysetState { floor: None, ..st };
        assert_eq!(first.request().unwrap().filter_groups[0].filters.len(), 1);
    }
}
