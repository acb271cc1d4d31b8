//! Domain types of filtering: objects, runs, counters, matches.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An object filtering imports. Codes follow `spoke.common.v1.ObjectType`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum ObjectKind {
    /// HubSpot companies.
    #[default]
    Companies,
    /// HubSpot contacts.
    Contacts,
    /// HubSpot deals.
    Deals,
}

impl ObjectKind {
    /// All three, in the order a run processes them (deals first: companies may require deals).
    pub const RUN_ORDER: [ObjectKind; 3] = [
        ObjectKind::Deals,
        ObjectKind::Companies,
        ObjectKind::Contacts,
    ];
    /// All three in API order.
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Companies,
        ObjectKind::Contacts,
        ObjectKind::Deals,
    ];

    /// The proto / database code.
    pub fn code(self) -> i16 {
        match self {
            ObjectKind::Companies => 1,
            ObjectKind::Contacts => 2,
            ObjectKind::Deals => 3,
        }
    }

    /// From the proto / database code.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(ObjectKind::Companies),
            2 => Some(ObjectKind::Contacts),
            3 => Some(ObjectKind::Deals),
            _ => None,
        }
    }

    /// Plural name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Companies => "companies",
            ObjectKind::Contacts => "contacts",
            ObjectKind::Deals => "deals",
        }
    }

    /// The HubSpot object type.
    pub fn hubspot(self) -> spoke_hubspot::ObjectType {
        match self {
            ObjectKind::Companies => spoke_hubspot::ObjectType::Companies,
            ObjectKind::Contacts => spoke_hubspot::ObjectType::Contacts,
            ObjectKind::Deals => spoke_hubspot::ObjectType::Deals,
        }
    }
}

/// State of a run. Codes follow `spoke.common.v1.FilteringRunState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Waiting for a replica.
    Queued,
    /// Executing.
    Running,
    /// Finished; stale matches removed.
    Completed,
    /// Stopped by an error; previous matches kept.
    Failed,
    /// Stopped at the org's record limit; previous matches kept.
    LimitReached,
    /// Cancelled (filtering disabled, integration deleted).
    Cancelled,
}

impl RunState {
    /// The proto / database code.
    pub fn code(self) -> i16 {
        match self {
            RunState::Queued => 1,
            RunState::Running => 2,
            RunState::Completed => 3,
            RunState::Failed => 4,
            RunState::LimitReached => 5,
            RunState::Cancelled => 6,
        }
    }
}

/// Why a run started. Codes follow `spoke.common.v1.RunTrigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule.
    Schedule,
    /// Run Now.
    RunNow,
}

impl Trigger {
    /// The proto / database code.
    pub fn code(self) -> i16 {
        match self {
            Trigger::Schedule => 1,
            Trigger::RunNow => 2,
        }
    }
}

/// Counters of one object in one run (stored as JSON on the run row).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectStats {
    /// The object.
    pub object: ObjectKind,
    /// Records read.
    pub scanned: i64,
    /// Records that passed the filters.
    pub passed: i64,
    /// Records matched to a profile (before collapsing).
    pub matched: i64,
    /// Distinct profiles linked after the run.
    pub profiles_linked: i64,
    /// Matches added.
    pub added: i64,
    /// Stale matches removed.
    pub removed: i64,
    /// Deals matched.
    pub deals_matched: i64,
}

impl ObjectStats {
    /// matched / passed in percent; 0 when nothing passed.
    pub fn match_rate(&self) -> f64 {
        if self.passed == 0 {
            0.0
        } else {
            self.matched as f64 * 100.0 / self.passed as f64
        }
    }

    /// As the proto message.
    pub fn to_proto(&self) -> spoke_proto::common::v1::ObjectRunStats {
        spoke_proto::common::v1::ObjectRunStats {
            object: i32::from(self.object.code()),
            records_scanned: self.scanned,
            records_passed_filter: self.passed,
            records_matched: self.matched,
            profiles_linked: self.profiles_linked,
            matches_added: self.added,
            matches_removed: self.removed,
            deals_matched: self.deals_matched,
            match_rate_percent: self.match_rate(),
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct Run {
    /// Run id.
    pub run_id: Uuid,
    /// Org.
    pub org_id: String,
    /// Trigger code.
    pub trigger: i16,
    /// Objects covered.
    pub objects: Vec<ObjectKind>,
    /// State code.
    pub state: i16,
    /// Per-object counters.
    pub stats: Vec<ObjectStats>,
    /// Requested.
    pub requested_at: DateTime<Utc>,
    /// Started executing.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who pressed Run Now.
    pub requested_by: String,
    /// Message for people.
    pub message: String,
    /// Schedule slot.
    pub scheduled_for: Option<DateTime<Utc>>,
}

/// Converts a chrono time to a protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl Run {
    /// As the proto message.
    pub fn to_proto(&self) -> spoke_proto::filtering::v1::FilteringRun {
        spoke_proto::filtering::v1::FilteringRun {
            run_id: self.run_id.to_string(),
            trigger: i32::from(self.trigger),
            objects: self.objects.iter().map(|o| i32::from(o.code())).collect(),
            state: i32::from(self.state),
            stats: self.stats.iter().map(ObjectStats::to_proto).collect(),
            requested_at: Some(ts(self.requested_at)),
            started_at: self.started_at.map(ts),
            finished_at: self.finished_at.map(ts),
            requested_by: self.requested_by.clone(),
            message: self.message.clone(),
        }
    }
}

/// One match as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Object.
    pub object: ObjectKind,
    /// Provider profile id.
    pub profile_id: String,
    /// Representative HubSpot id.
    pub hubspot_id: String,
    /// All matched HubSpot ids, oldest first.
    pub collapsed_ids: Vec<String>,
    /// Owner id.
    pub owner_id: String,
    /// Owner name.
    pub owner_name: String,
    /// Filter date.
    pub filtered_at: DateTime<Utc>,
    /// Link to the HubSpot record.
    pub hubspot_url: String,
    /// Key kind that matched.
    pub matched_by: String,
}

impl Match {
    /// As the proto message.
    pub fn to_proto(&self) -> spoke_proto::filtering::v1::Match {
        spoke_proto::filtering::v1::Match {
            object: i32::from(self.object.code()),
            profile_id: self.profile_id.clone(),
            hubspot_id: self.hubspot_id.clone(),
            collapsed_hubspot_ids: self.collapsed_ids.clone(),
            owner_id: self.owner_id.clone(),
            owner_name: self.owner_name.clone(),
            filtered_at: Some(ts(self.filtered_at)),
            hubspot_url: self.hubspot_url.clone(),
            matched_by: self.matched_by.clone(),
        }
    }
}

/// Link to a HubSpot record: `https://{ui_domain}/contacts/{portal}/record/{type_id}/{id}`.
pub fn record_url(ui_domain: &str, portal: u64, object: ObjectKind, id: &str) -> String {
    let domain = if ui_domain.is_empty() {
        "app.hubspot.com"
    } else {
        ui_domain
    };
    let scheme = if domain.starts_with("http://") || domain.starts_with("https://") {
        ""
    } else {
        "https://"
    };
    format!(
        "{scheme}{domain}/contacts/{portal}/record/{}/{id}",
        object.hubspot().type_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_links_use_the_ui_domain_and_type_id() {
        let cases = [
            (
                "app.hubspot.com",
                ObjectKind::Contacts,
                "7",
                "https://app.hubspot.com/contacts/42/record/0-1/7",
            ),
            (
                "app-eu1.hubspot.com",
                ObjectKind::Companies,
                "8",
                "https://app-eu1.hubspot.com/contacts/42/record/0-2/8",
            ),
            (
                "",
                ObjectKind::Deals,
                "9",
                "https://app.hubspot.com/contacts/42/record/0-3/9",
            ),
        ];
        for (domain, object, id, want) in cases {
            assert_eq!(record_url(domain, 42, object, id), want);
        }
    }

    #[test]
    fn match_rate_is_matched_over_passed() {
        let s = ObjectStats {
            passed: 9,
            matched: 8,
            ..ObjectStats::default()
        };
        assert!((s.match_rate() - 88.888_888).abs() < 0.001);
        assert_eq!(ObjectStats::default().match_rate(), 0.0);
    }
}
