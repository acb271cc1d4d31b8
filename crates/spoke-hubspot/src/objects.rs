//! CRM objects v3: get, paged list, batch read/create/update/archive, single create.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::associations::AssociationSpec;
use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::{Error, ErrorDetail, Result};

/// Property values of a record. HubSpot sends every value as a string; `null` values are dropped.
pub type Properties = BTreeMap<String, String>;

/// Most inputs HubSpot accepts in one batch call.
pub const BATCH_LIMIT: usize = 100;
/// Most records HubSpot returns per list page.
pub const LIST_PAGE_LIMIT: u32 = 100;

/// The CRM object types Spoke works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// Companies (`0-2`).
    Companies,
    /// Contacts (`0-1`).
    Contacts,
    /// Deals (`0-3`).
    Deals,
    /// Tasks (`0-27`).
    Tasks,
    /// Calls (`0-48`).
    Calls,
    /// Emails (`0-49`).
    Emails,
    /// Meetings (`0-47`).
    Meetings,
}

impl ObjectType {
    /// Every supported type.
    pub const ALL: [ObjectType; 7] = [
        ObjectType::Companies,
        ObjectType::Contacts,
        ObjectType::Deals,
        ObjectType::Tasks,
        ObjectType::Calls,
        ObjectType::Emails,
        ObjectType::Meetings,
    ];

    /// Name used in URL paths, e.g. `contacts`.
    pub fn path(self) -> &'static str {
        match self {
            ObjectType::Companies => "companies",
            ObjectType::Contacts => "contacts",
            ObjectType::Deals => "deals",
            ObjectType::Tasks => "tasks",
            ObjectType::Calls => "calls",
            ObjectType::Emails => "emails",
            ObjectType::Meetings => "meetings",
        }
    }

    /// HubSpot's object type id, e.g. `0-1` for contacts.
    pub fn type_id(self) -> &'static str {
        match self {
            ObjectType::Companies => "0-2",
            ObjectType::Contacts => "0-1",
            ObjectType::Deals => "0-3",
            ObjectType::Tasks => "0-27",
            ObjectType::Calls => "0-48",
            ObjectType::Emails => "0-49",
            ObjectType::Meetings => "0-47",
        }
    }

    /// Whether this is an engagement (activity) type, which needs `hs_timestamp`.
    pub fn is_engagement(self) -> bool {
        matches!(
            self,
            ObjectType::Tasks | ObjectType::Calls | ObjectType::Emails | ObjectType::Meetings
        )
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

impl FromStr for ObjectType {
    type Err = Error;

    /// Accepts path names (plural or singular) and type ids.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        ObjectType::ALL
            .into_iter()
            .find(|t| {
                t.path() == lower || t.type_id() == lower || t.path().trim_end_matches('s') == lower
            })
            .ok_or_else(|| Error::InvalidRequest(format!("unknown HubSpot object type {s:?}")))
    }
}

/// A CRM record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmObject {
    /// Record id (`hs_object_id`).
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub id: String,
    /// Property values; HubSpot's nulls are dropped.
    #[serde(default, deserialize_with = "crate::de::properties")]
    pub properties: Properties,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Last modification time.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Whether the record is archived.
    #[serde(default)]
    pub archived: bool,
    /// When it was archived.
    #[serde(default)]
    pub archived_at: Option<DateTime<Utc>>,
}

impl CrmObject {
    /// A property value, if set.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }
}

/// One page of a paged listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Records of this page.
    pub results: Vec<T>,
    /// Cursor for the next page (`paging.next.after`); `None` on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    results: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(default)]
    pub(crate) next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextPage {
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub(crate) after: String,
}

impl<T> From<RawPage<T>> for Page<T> {
    fn from(raw: RawPage<T>) -> Self {
        Page {
            results: raw.results,
            next_after: raw.paging.and_then(|p| p.next).map(|n| n.after),
        }
    }
}

/// Options of list calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// Properties to return (HubSpot returns a default set when empty).
    pub properties: Vec<String>,
    /// List archived records instead of active ones.
    pub archived: bool,
    /// Page size, 1..=100.
    pub limit: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            properties: Vec::new(),
            archived: false,
            limit: LIST_PAGE_LIMIT,
        }
    }
}

/// Options of single-record reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Properties to return.
    pub properties: Vec<String>,
    /// Look the record up by this unique property (e.g. `email`) instead of the record id.
    pub id_property: Option<String>,
    /// Read an archived record.
    pub archived: bool,
}

/// A batch read by ids or by a unique property.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReadRequest {
    /// Ids (or unique property values when `id_property` is set), at most 100.
    pub ids: Vec<String>,
    /// Properties to return.
    pub properties: Vec<String>,
    /// Unique property to match `ids` against, e.g. `email` for contacts.
    pub id_property: Option<String>,
    /// Read archived records.
    pub archived: bool,
}

/// One record to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateInput {
    /// Property values (internal names → strings).
    pub properties: Properties,
    /// Associations to create together with the record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<InlineAssociation>,
}

/// An association given inline when creating a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InlineAssociation {
    /// The record to associate to.
    pub to: RecordRef,
    /// The association types.
    pub types: Vec<AssociationSpec>,
}

/// A reference to a record by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Record id.
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub id: String,
}

/// One record to update.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInput {
    /// Record id (or unique property value when `id_property` is set).
    pub id: String,
    /// Property values to set.
    pub properties: Properties,
    /// Unique property `id` refers to, e.g. `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
}

/// One per-input error of a batch answer (207 multi-status).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchError {
    /// Usually `error`.
    pub status: String,
    /// E.g. `OBJECT_NOT_FOUND`, `VALIDATION_ERROR`.
    pub category: Option<String>,
    /// Finer classification.
    pub sub_category: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// Context, notably `ids` of the inputs this error is about.
    #[serde(deserialize_with = "crate::de::string_lists")]
    pub context: BTreeMap<String, Vec<String>>,
    /// Nested details.
    pub errors: Vec<ErrorDetail>,
}

impl BatchError {
    /// The input ids this error concerns (`context.ids`).
    pub fn ids(&self) -> &[String] {
        self.context.get("ids").map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The answer of a batch call: successes and per-input errors (HubSpot's 207 is not an `Err`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchResult<T> {
    /// Successful results.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    /// Per-input errors.
    #[serde(default = "Vec::new")]
    pub errors: Vec<BatchError>,
}

impl<T> Default for BatchResult<T> {
    fn default() -> Self {
        Self {
            results: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<T> BatchResult<T> {
    /// True when every input succeeded.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchReadBody<'a> {
    properties: &'a [String],
    properties_with_history: [&'a str; 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    id_property: Option<&'a str>,
    inputs: Vec<IdInput<'a>>,
}

#[derive(Serialize)]
struct IdInput<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Inputs<'a, T> {
    inputs: &'a [T],
}

/// Rejects batches HubSpot would refuse, before any call is made.
pub(crate) fn check_batch(operation: &'static str, len: usize) -> Result<()> {
    if len > BATCH_LIMIT {
        return Err(Error::BatchTooLarge {
            operation,
            max: BATCH_LIMIT,
            got: len,
        });
    }
    Ok(())
}

impl PortalClient {
    /// Reads one record; `Ok(None)` when HubSpot answers 404.
    pub async fn get_object(
        &self,
        object: ObjectType,
        id: &str,
        options: &GetOptions,
    ) -> Result<Option<CrmObject>> {
        let mut req = Request::new(&endpoints::OBJECTS_GET, &[object.path(), id]);
        if !options.properties.is_empty() {
            req = req.query("properties", options.properties.join(","));
        }
        if let Some(p) = &options.id_property {
            req = req.query("idProperty", p.clone());
        }
        if options.archived {
            req = req.query("archived", "true");
        }
        match self.call(req).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads one page of records.
    pub async fn list_page(
        &self,
        object: ObjectType,
        options: &ListOptions,
        after: Option<&str>,
    ) -> Result<Page<CrmObject>> {
        if options.limit == 0 || options.limit > LIST_PAGE_LIMIT {
            return Err(Error::InvalidRequest(format!(
                "list limit {} is outside 1..={LIST_PAGE_LIMIT}",
                options.limit
            )));
        }
        let mut req = Request::new(&endpoints::OBJECTS_LIST, &[object.path()])
            .query("limit", options.limit.to_string());
        if !options.properties.is_empty() {
            req = req.query("properties", options.properties.join(","));
        }
        if options.archived {
            req = req.query("archived", "true");
        }
        if let Some(after) = after {
            req = req.query("after", after);
        }
        let raw: RawPage<CrmObject> = self.call(req).await?;
        Ok(raw.into())
    }

    /// Streams every record of a type, following `paging.next.after` to the end.
    pub fn list(
        &self,
        object: ObjectType,
        options: ListOptions,
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'static {
        let portal = self.clone();
        paged(move |after| {
            let portal = portal.clone();
            let options = options.clone();
            async move { portal.list_page(object, &options, after.as_deref()).await }
        })
    }

    /// Reads up to 100 records by id or by a unique property (`id_property = "email"`).
    /// Missing inputs come back as [`BatchError`]s, not as an `Err`.
    pub async fn batch_read(
        &self,
        object: ObjectType,
        request: &BatchReadRequest,
    ) -> Result<BatchResult<CrmObject>> {
        check_batch("batch_read", request.ids.len())?;
        if request.ids.is_empty() {
            return Ok(BatchResult::default());
        }
        let body = BatchReadBody {
            properties: &request.properties,
            properties_with_history: [],
            id_property: request.id_property.as_deref(),
            inputs: request.ids.iter().map(|id| IdInput { id }).collect(),
        };
        let mut req = Request::new(&endpoints::OBJECTS_BATCH_READ, &[object.path()]).json(&body)?;
        if request.archived {
            req = req.query("archived", "true");
        }
        self.call(req).await
    }

    /// Creates up to 100 records. HubSpot fails the whole batch on one bad input (e.g. 409 with
    /// `Existing ID`), which surfaces as an `Err` carrying [`crate::ApiError::existing_id`].
    pub async fn batch_create(
        &self,
        object: ObjectType,
        inputs: &[CreateInput],
    ) -> Result<BatchResult<CrmObject>> {
        check_batch("batch_create", inputs.len())?;
        if inputs.is_empty() {
            return Ok(BatchResult::default());
        }
        let req = Request::new(&endpoints::OBJECTS_BATCH_CREATE, &[object.path()])
            .json(&Inputs { inputs })?;
        self.call(req).await
    }

    /// Updates up to 100 records.
    pub async fn batch_update(
        &self,
        object: ObjectType,
        inputs: &[UpdateInput],
    ) -> Result<BatchResult<CrmObject>> {
        check_batch("batch_update", inputs.len())?;
        if inputs.is_empty() {
            return Ok(BatchResult::default());
        }
        let req = Request::new(&endpoints::OBJECTS_BATCH_UPDATE, &[object.path()])
            .json(&Inputs { inputs })?;
        self.call(req).await
    }

    /// Archives up to 100 records by id (HubSpot answers 204 even for unknown ids).
    pub async fn batch_archive(&self, object: ObjectType, ids: &[String]) -> Result<()> {
        check_batch("batch_archive", ids.len())?;
        if ids.is_empty() {
            return Ok(());
        }
        let inputs: Vec<IdInput<'_>> = ids.iter().map(|id| IdInput { id }).collect();
        let req = Request::new(&endpoints::OBJECTS_BATCH_ARCHIVE, &[object.path()])
            .json(&Inputs { inputs: &inputs })?;
        self.call_empty(req).await
    }

    /// Creates one record, optionally with inline associations (used for engagements).
    pub async fn create_object(
        &self,
        object: ObjectType,
        input: &CreateInput,
    ) -> Result<CrmObject> {
        let req = Request::new(&endpoints::OBJECTS_CREATE, &[object.path()]).json(input)?;
        self.call(req).await
    }
}

/// Turns a "fetch page after cursor" function into a stream of items that pages to the end.
pub(crate) fn paged<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Page<T>>> + Send + 'static,
{
    // State: Some(cursor) = fetch next page with that cursor; None = done.
    stream::try_unfold(Some(None::<String>), move |state| {
        let next = state.map(&fetch);
        async move {
            let Some(fut) = next else {
                return Ok::<_, Error>(None);
            };
            let page = fut.await?;
            let following = page.next_after.map(Some);
            Ok(Some((
                stream::iter(page.results.into_iter().map(Ok)),
                following,
            )))
        }
    })
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_map_to_paths_and_ids() {
        let cases = [
            (ObjectType::Companies, "companies", "0-2"),
            (ObjectType::Contacts, "contacts", "0-1"),
            (ObjectType::Deals, "deals", "0-3"),
            (ObjectType::Tasks, "tasks", "0-27"),
            (ObjectType::Calls, "calls", "0-48"),
            (ObjectType::Emails, "emails", "0-49"),
            (ObjectType::Meetings, "meetings", "0-47"),
        ];
        for (t, path, id) in cases {
            assert_eq!(t.path(), path);
            assert_eq!(t.type_id(), id);
            assert_eq!(path.parse::<ObjectType>().unwrap(), t);
            assert_eq!(id.parse::<ObjectType>().unwrap(), t);
        }
        assert_eq!(
            "contact".parse::<ObjectType>().unwrap(),
            ObjectType::Contacts
        );
        assert!("tickets".parse::<ObjectType>().is_err());
    }

    #[test]
    fn object_and_batch_bodies_decode() {
        let body = r#"{"status":"COMPLETE","results":[{"id":"51","properties":{"email":"a@x.com","firstname":null,"hs_object_id":"51"},
            "createdAt":"2024-01-02T03:04:05.678Z","updatedAt":"2024-01-02T03:04:05.678Z","archived":false}],
            "numErrors":1,"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.","context":{"ids":["999"]}}]}"#;
        let r: BatchResult<CrmObject> = serde_json::from_str(body).unwrap();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].property("email"), Some("a@x.com"));
        assert_eq!(r.results[0].property("firstname"), None);
        assert_eq!(r.errors[0].ids(), ["999".to_string()]);
        assert!(!r.is_complete());
    }

    #[test]
    fn batch_bodies_serialize_like_hubspot() {
        let input = UpdateInput {
            id: "a@x.com".into(),
            properties: Properties::from([("city".into(), "Berlin".into())]),
            id_property: Some("email".into()),
        };
        let v = serde_json::to_value(Inputs { inputs: &[input] }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"inputs":[{"id":"a@x.com","properties":{"city":"Berlin"},"idProperty":"email"}]})
        );
        let body = BatchReadBody {
            properties: &["email".to_string()],
            properties_with_history: [],
            id_property: Some("email"),
            inputs: vec![IdInput { id: "a@x.com" }],
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"properties":["email"],"propertiesWithHistory":[],"idProperty":"email","inputs":[{"id":"a@x.com"}]})
        );
        assert!(matches!(
            check_batch("batch_create", 101),
            Err(Error::BatchTooLarge {
                max: 100,
                got: 101,
                ..
            })
        ));
        assert!(check_batch("batch_create", 100).is_ok());
    }

    #[tokio::test]
    async fn paged_follows_cursors_to_the_end() {
        let s = paged(|after: Option<String>| async move {
            let n: u32 = after.as_deref().map(|a| a.parse().unwrap()).unwrap_or(0);
            Ok(Page {
                results: vec![n, n + 1],
                next_after: (n < 4).then(|| (n + 2).to_string()),
            })
        });
        let all: Vec<u32> = s.try_collect().await.unwrap();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    }
}
