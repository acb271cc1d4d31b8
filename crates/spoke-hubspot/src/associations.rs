//! Associations v4 (default, unlabeled associations) and HubSpot-defined association type ids.

use serde::{Deserialize, Serialize};

use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::Result;
use crate::objects::{BatchResult, ObjectType, check_batch};

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

#[cfg(test)]
mod tests {
    use super::*;

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
