//! Associations v4 (default, unlabeled associations; batch read) and HubSpot-defined association type ids.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::{Error, Result};
use crate::objects::{BatchError, BatchResult, ObjectType, check_batch};

/// Most record ids HubSpot accepts in one associations batch read (since 2025-02-10; larger bodies
/// are rejected). Source: HubSpot developer changelog, "Batch Read Limit for HubSpot Associations API".
pub const ASSOCIATIONS_READ_LIMIT: usize = 1000;

/// The `subCategory` of the per-input error HubSpot sends (in a 207) for a record without
/// associations of the requested type: not a failure, the record simply has none.
pub const NO_ASSOCIATIONS_FOUND: &str = "crm.associations.NO_ASSOCIATIONS_FOUND";

/// HubSpot-defined association type ids (category `HUBSPOT_DEFINED`).
///
/// Source: HubSpot developer documentation, "Associations v4 — association type IDs" (table of
/// HubSpot-defined types between standard objects and activities). Only the unlabeled defaults used by
/// Spoke are listed; custom labels get portal-specific ids and must be looked up per portal.
pub mod type_ids {
    /// Contact → company (unlabeled).
    pub const CONTACT_TO_COMPANY: u32 = 279;
    /// Company → contact (unlabeled).
    pub const COMPANY_TO_CONTACT: u32 = 280;
    /// Call → contact.
    pub const CALL_TO_CONTACT: u32 = 194;
    /// Call → company.
    pub const CALL_TO_COMPANY: u32 = 182;
    /// Email → contact.
    pub const EMAIL_TO_CONTACT: u32 = 198;
    /// Email → company.
    pub const EMAIL_TO_COMPANY: u32 = 186;
    /// Meeting → contact.
    pub const MEETING_TO_CONTACT: u32 = 200;
    /// Meeting → company.
    pub const MEETING_TO_COMPANY: u32 = 188;
    /// Task → contact.
    pub const TASK_TO_CONTACT: u32 = 204;
    /// Task → company.
    pub const TASK_TO_COMPANY: u32 = 192;
    /// Deal → company, primary (the deal's primary company, `associatedcompanyid`).
    pub const DEAL_TO_COMPANY_PRIMARY: u32 = 5;
    /// Company → deal, primary.
    pub const COMPANY_TO_DEAL_PRIMARY: u32 = 6;
    /// Deal → company (unlabeled).
    pub const DEAL_TO_COMPANY: u32 = 341;
    /// Company → deal (unlabeled).
    pub const COMPANY_TO_DEAL: u32 = 342;
}

/// Who defined an association type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssociationCategory {
    /// Built into HubSpot.
    HubspotDefined,
    /// A portal's custom label.
    UserDefined,
    /// Defined by an integration.
    IntegratorDefined,
}

/// An association type as used in create bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationSpec {
    /// Category of the type.
    pub association_category: AssociationCategory,
    /// Type id.
    pub association_type_id: u32,
}

impl AssociationSpec {
    /// A HubSpot-defined type.
    pub fn hubspot_defined(type_id: u32) -> Self {
        Self {
            association_category: AssociationCategory::HubspotDefined,
            association_type_id: type_id,
        }
    }
}

/// The HubSpot-defined default type from an engagement to a contact or company, if there is one.
pub fn engagement_type_id(engagement: ObjectType, to: ObjectType) -> Option<u32> {
    use ObjectType::*;
    use type_ids::*;
    Some(match (engagement, to) {
        (Calls, Contacts) => CALL_TO_CONTACT,
        (Calls, Companies) => CALL_TO_COMPANY,
        (Emails, Contacts) => EMAIL_TO_CONTACT,
        (Emails, Companies) => EMAIL_TO_COMPANY,
        (Meetings, Contacts) => MEETING_TO_CONTACT,
        (Meetings, Companies) => MEETING_TO_COMPANY,
        (Tasks, Contacts) => TASK_TO_CONTACT,
        (Tasks, Companies) => TASK_TO_COMPANY,
        (Contacts, Companies) => CONTACT_TO_COMPANY,
        (Companies, Contacts) => COMPANY_TO_CONTACT,
        _ => return None,
    })
}

/// One created association as reported by HubSpot.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationResult {
    /// Source record id.
    #[serde(default, deserialize_with = "crate::de::opt_string_or_number")]
    pub from_object_id: Option<String>,
    /// Target record id.
    #[serde(default, deserialize_with = "crate::de::opt_string_or_number")]
    pub to_object_id: Option<String>,
    /// Types that now link them.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// One association type on an associated record (batch read answer).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationType {
    /// Who defined the type.
    pub category: AssociationCategory,
    /// Type id (e.g. [`type_ids::DEAL_TO_COMPANY_PRIMARY`]).
    pub type_id: u32,
    /// The label of a labelled type.
    #[serde(default)]
    pub label: Option<String>,
}

/// A record associated to the record that was read, with every type linking them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociatedRecord {
    /// The associated record's id.
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub to_object_id: String,
    /// Types linking the two records.
    #[serde(default)]
    pub association_types: Vec<AssociationType>,
}

impl AssociatedRecord {
    /// Whether one of the types is `type_id`.
    pub fn has_type(&self, type_id: u32) -> bool {
        self.association_types.iter().any(|t| t.type_id == type_id)
    }
}

/// All associations of one record to one object type (every page followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAssociations {
    /// The record that was read.
    pub from_id: String,
    /// Its associated records, in HubSpot's order.
    pub to: Vec<AssociatedRecord>,
}

#[derive(Serialize)]
struct ReadInput<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<&'a str>,
}

#[derive(Serialize)]
struct ReadBody<'a> {
    inputs: Vec<ReadInput<'a>>,
}

#[derive(Deserialize)]
struct ReadAnswer {
    #[serde(default)]
    results: Vec<ReadResult>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
struct ReadResult {
    from: crate::objects::RecordRef,
    #[serde(default)]
    to: Vec<AssociatedRecord>,
    #[serde(default)]
    paging: Option<crate::objects::Paging>,
}

#[derive(Serialize)]
struct Pair<'a> {
    from: Id<'a>,
    to: Id<'a>,
}

#[derive(Serialize)]
struct Id<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Inputs<'a> {
    inputs: Vec<Pair<'a>>,
}

impl PortalClient {
    /// Creates the default (unlabeled) association between two records.
    pub async fn associate_default(
        &self,
        from: ObjectType,
        from_id: &str,
        to: ObjectType,
        to_id: &str,
    ) -> Result<()> {
        let req = Request::new(
            &endpoints::ASSOCIATION_DEFAULT,
            &[from.path(), from_id, to.path(), to_id],
        );
        self.call_empty(req).await
    }

    /// Creates default associations for up to 100 `(from_id, to_id)` pairs.
    pub async fn associate_default_batch(
        &self,
        from: ObjectType,
        to: ObjectType,
        pairs: &[(String, String)],
    ) -> Result<BatchResult<AssociationResult>> {
        check_batch("associate_default_batch", pairs.len())?;
        if pairs.is_empty() {
            return Ok(BatchResult::default());
        }
        let body = Inputs {
            inputs: pairs
                .iter()
                .map(|(f, t)| Pair {
                    from: Id { id: f },
                    to: Id { id: t },
                })
                .collect(),
        };
        let req = Request::new(
            &endpoints::ASSOCIATION_BATCH_DEFAULT,
            &[from.path(), to.path()],
        )
        .json(&body)?;
        self.call(req).await
    }
}

impl PortalClient {
    /// Reads the associations of up to [`ASSOCIATIONS_READ_LIMIT`] records to `to` (v4 batch read),
    /// following each record's `paging.next.after` until it has all of them. Records without
    /// associations are simply absent from `results` (HubSpot's `NO_ASSOCIATIONS_FOUND` per-input
    /// errors are not reported); any other per-input error is in `errors`.
    pub async fn associations_batch_read(
        &self,
        from: ObjectType,
        to: ObjectType,
        ids: &[String],
    ) -> Result<BatchResult<RecordAssociations>> {
        if ids.len() > ASSOCIATIONS_READ_LIMIT {
            return Err(Error::BatchTooLarge {
                operation: endpoints::ASSOCIATIONS_BATCH_READ.operation,
                max: ASSOCIATIONS_READ_LIMIT,
                got: ids.len(),
            });
        }
        let mut out: BatchResult<RecordAssociations> = BatchResult::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut pending: Vec<(String, Option<String>)> =
            ids.iter().map(|id| (id.clone(), None)).collect();
        while !pending.is_empty() {
            let body = ReadBody {
                inputs: pending
                    .iter()
                    .map(|(id, after)| ReadInput {
                        id,
                        after: after.as_deref(),
                    })
                    .collect(),
            };
            let req = Request::new(
                &endpoints::ASSOCIATIONS_BATCH_READ,
                &[from.path(), to.path()],
            )
            .json(&body)?;
            let answer: ReadAnswer = self.call(req).await?;
            pending.clear();
            for r in answer.results {
                if let Some(after) = r.paging.and_then(|p| p.next).map(|n| n.after) {
                    pending.push((r.from.id.clone(), Some(after)));
                }
                match index.get(&r.from.id) {
                    Some(&i) => out.results[i].to.extend(r.to),
                    None => {
                        index.insert(r.from.id.clone(), out.results.len());
                        out.results.push(RecordAssociations {
                            from_id: r.from.id,
                            to: r.to,
                        });
                    }
                }
            }
            out.errors.extend(
                answer
                    .errors
                    .into_iter()
                    .filter(|e| e.sub_category.as_deref() != Some(NO_ASSOCIATIONS_FOUND)),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_read_answer_decodes_with_paging_and_benign_errors() {
        let body = serde_json::json!({
            "status": "COMPLETE",
            "results": [{
                "from": {"id": "11"},
                "to": [{"toObjectId": 21, "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"},
                    {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null}]}],
                "paging": {"next": {"after": "MjE%3D", "link": null}}
            }],
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": "No company is associated with deal 12.",
                "context": {"fromObjectId": ["12"], "fromObjectType": ["deal"], "toObjectType": ["company"]}}],
            "numErrors": 1
        });
        let a: ReadAnswer = serde_json::from_value(body).unwrap();
        assert_eq!(a.results[0].from.id, "11");
        assert_eq!(a.results[0].to[0].to_object_id, "21");
        assert!(a.results[0].to[0].has_type(type_ids::DEAL_TO_COMPANY_PRIMARY));
        assert_eq!(
            a.results[0]
                .paging
                .as_ref()
                .and_then(|p| p.next.as_ref())
                .map(|n| n.after.as_str()),
            Some("MjE%3D")
        );
        assert_eq!(
            a.errors[0].sub_category.as_deref(),
            Some(NO_ASSOCIATIONS_FOUND)
        );
    }

    #[test]
    fn engagement_types_table() {
        use ObjectType::*;
        let cases = [
            (Calls, Contacts, Some(194)),
            (Calls, Companies, Some(182)),
            (Emails, Contacts, Some(198)),
            (Emails, Companies, Some(186)),
            (Meetings, Contacts, Some(200)),
            (Meetings, Companies, Some(188)),
            (Tasks, Contacts, Some(204)),
            (Tasks, Companies, Some(192)),
            (Deals, Contacts, None),
        ];
        for (from, to, want) in cases {
            assert_eq!(engagement_type_id(from, to), want, "{from} → {to}");
        }
        assert_eq!(
            serde_json::to_value(AssociationSpec::hubspot_defined(204)).unwrap(),
            serde_json::json!({"associationCategory":"HUBSPOT_DEFINED","associationTypeId":204})
        );
    }
}
