//! The CRM object types the sandbox serves and HubSpot's default association types between them.

use serde::{Deserialize, Serialize};

/// A HubSpot CRM object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    /// `companies`, `0-2`.
    Companies,
    /// `contacts`, `0-1`.
    Contacts,
    /// `deals`, `0-3`.
    Deals,
    /// `tasks`, `0-27`.
    Tasks,
    /// `calls`, `0-48`.
    Calls,
    /// `emails`, `0-49`.
    Emails,
    /// `meetings`, `0-47`.
    Meetings,
}

impl ObjectType {
    /// Every object type, in a stable order.
    pub const ALL: [ObjectType; 7] = [
        ObjectType::Companies,
        ObjectType::Contacts,
        ObjectType::Deals,
        ObjectType::Tasks,
        ObjectType::Calls,
        ObjectType::Emails,
        ObjectType::Meetings,
    ];

    /// Parses a path segment: plural name, singular name or the `0-N` type id.
    pub fn parse(s: &str) -> Option<Self> {
        let t = match s.to_ascii_lowercase().as_str() {
            "companies" | "company" | "0-2" => Self::Companies,
            "contacts" | "contact" | "0-1" => Self::Contacts,
            "deals" | "deal" | "0-3" => Self::Deals,
            "tasks" | "task" | "0-27" => Self::Tasks,
            "calls" | "call" | "0-48" => Self::Calls,
            "emails" | "email" | "0-49" => Self::Emails,
            "meetings" | "meeting" | "0-47" => Self::Meetings,
            _ => return None,
        };
        Some(t)
    }

    /// The plural path name, e.g. `contacts`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Companies => "companies",
            Self::Contacts => "contacts",
            Self::Deals => "deals",
            Self::Tasks => "tasks",
            Self::Calls => "calls",
            Self::Emails => "emails",
            Self::Meetings => "meetings",
        }
    }

    /// HubSpot's object type id, e.g. `0-1`.
    pub fn type_id(self) -> &'static str {
        match self {
            Self::Companies => "0-2",
            Self::Contacts => "0-1",
            Self::Deals => "0-3",
            Self::Tasks => "0-27",
            Self::Calls => "0-48",
            Self::Emails => "0-49",
            Self::Meetings => "0-47",
        }
    }

    /// The upper-case singular name HubSpot uses in messages, e.g. `CONTACT`.
    pub fn singular_upper(self) -> &'static str {
        match self {
            Self::Companies => "COMPANY",
            Self::Contacts => "CONTACT",
            Self::Deals => "DEAL",
            Self::Tasks => "TASK",
            Self::Calls => "CALL",
            Self::Emails => "EMAIL",
            Self::Meetings => "MEETING",
        }
    }

    /// Whether this is an engagement (needs `hs_timestamp`).
    pub fn is_engagement(self) -> bool {
        matches!(
            self,
            Self::Tasks | Self::Calls | Self::Emails | Self::Meetings
        )
    }

    /// The property holding the last-modified timestamp.
    pub fn last_modified_property(self) -> &'static str {
        match self {
            Self::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// The property holding the creation timestamp.
    pub fn create_date_property(self) -> &'static str {
        if self.is_engagement() {
            "hs_createdate"
        } else {
            "createdate"
        }
    }

    /// Properties returned when a read names none (HubSpot's defaults per object).
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            Self::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            Self::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// Properties a search `query` string matches against.
    pub fn query_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &["firstname", "lastname", "email", "phone", "company"],
            Self::Companies => &["name", "domain", "website", "phone"],
            Self::Deals => &["dealname"],
            _ => &[
                "hs_task_subject",
                "hs_call_title",
                "hs_email_subject",
                "hs_meeting_title",
            ],
        }
    }
}

/// HubSpot's `HUBSPOT_DEFINED` default association type id from one object type to another.
pub fn default_association_type(from: ObjectType, to: ObjectType) -> Option<u32> {
    use ObjectType::*;
    let id = match (from, to) {
        (Contacts, Companies) => 279,
        (Companies, Contacts) => 280,
        (Deals, Contacts) => 3,
        (Contacts, Deals) => 4,
        (Deals, Companies) => 341,
        (Companies, Deals) => 342,
        (Contacts, Tasks) => 203,
        (Tasks, Contacts) => 204,
        (Companies, Tasks) => 191,
        (Tasks, Companies) => 192,
        (Contacts, Calls) => 193,
        (Calls, Contacts) => 194,
        (Companies, Calls) => 181,
        (Calls, Companies) => 182,
        (Contacts, Emails) => 197,
        (Emails, Contacts) => 198,
        (Companies, Emails) => 185,
        (Emails, Companies) => 186,
        (Contacts, Meetings) => 199,
        (Meetings, Contacts) => 200,
        (Companies, Meetings) => 187,
        (Meetings, Companies) => 188,
        (Deals, Tasks) => 215,
        (Tasks, Deals) => 216,
        (Deals, Calls) => 205,
        (Calls, Deals) => 206,
        (Deals, Emails) => 209,
        (Emails, Deals) => 210,
        (Deals, Meetings) => 211,
        (Meetings, Deals) => 212,
        _ => return None,
    };
    Some(id)
}

/// The type id of the reverse direction of an association (`from → to` with `type_id`): primary
/// types pair up (contact→company 1 / company→contact 2, deal→company 5 / company→deal 6), every
/// other type's reverse is the default type of `to → from`.
pub fn reverse_association_type(from: ObjectType, to: ObjectType, type_id: u32) -> u32 {
    use ObjectType::*;
    match (from, to, type_id) {
        (Contacts, Companies, 1) => 2,
        (Companies, Contacts, 2) => 1,
        (Deals, Companies, 5) => 6,
        (Companies, Deals, 6) => 5,
        _ => default_association_type(to, from).unwrap_or(type_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_type_ids() {
        let cases = [
            ("contacts", Some(ObjectType::Contacts)),
            ("0-1", Some(ObjectType::Contacts)),
            ("0-2", Some(ObjectType::Companies)),
            ("0-3", Some(ObjectType::Deals)),
            ("0-27", Some(ObjectType::Tasks)),
            ("0-48", Some(ObjectType::Calls)),
            ("0-49", Some(ObjectType::Emails)),
            ("0-47", Some(ObjectType::Meetings)),
            ("Companies", Some(ObjectType::Companies)),
            ("tickets", None),
        ];
        for (input, want) in cases {
            assert_eq!(ObjectType::parse(input), want, "{input}");
        }
        for t in ObjectType::ALL {
            assert_eq!(ObjectType::parse(t.type_id()), Some(t));
            assert_eq!(ObjectType::parse(t.name()), Some(t));
        }
    }

    #[test]
    fn engagement_associations_exist_both_ways() {
        for e in [
            ObjectType::Tasks,
            ObjectType::Calls,
            ObjectType::Emails,
            ObjectType::Meetings,
        ] {
            for t in [
                ObjectType::Contacts,
                ObjectType::Companies,
                ObjectType::Deals,
            ] {
                assert!(default_association_type(e, t).is_some(), "{e:?}->{t:?}");
                assert!(default_association_type(t, e).is_some(), "{t:?}->{e:?}");
            }
        }
        assert_eq!(
            default_association_type(ObjectType::Contacts, ObjectType::Companies),
            Some(279)
        );
    }
}
