//! CRM writeback: activities (emails, calls, meetings) from `spoke.activities.v1` logged in
//! HubSpot as tasks or as their engagement type, associated to the matched contact and company.
//!
//! Path of an activity: `consumers` (ActivityHandler) records it, keyed by (org, activity id), as
//! SKIPPED (settings) or PENDING → `worker` looks up the HubSpot records of its contact and
//! company in the link table (`store::profile_links`, fed by export results and filtering
//! matches) → writes it (`engagement::plan`) → WRITTEN with the HubSpot id. An activity whose
//! contact has no link stays PENDING without polling: a new link marks the activities of its
//! profile due again. Pending activities older than `writeback.pending_ttl_secs` are DROPPED.
//!
//! Idempotency: the inbox drops redelivered events, the (org, activity id) key drops a second
//! event with the same activity id, and the write itself is guarded against the crash between
//! HubSpot's answer and our commit: `attempted_at` is committed before the create is sent, and an
//! activity with an attempt on record is first searched in HubSpot (same `hs_timestamp` and
//! title; after `writeback.recovery_delay_secs`, HubSpot's search lag) and adopted when found.
//! A unique marker property would need a custom property per portal and object, which the
//! integration's scopes do not include; timestamp + title of one user's activity is unique in
//! practice.

pub mod consumers;
pub mod engagement;
pub mod store;
pub mod worker;

use spoke_proto::common::v1::ActivityType;
use spoke_proto::export::v1::{WritebackLogMode, WritebackState};

pub use worker::{Worker, WorkerSettings};

/// Activity states as stored in `writeback_activities.state`.
pub mod state {
    /// Waiting for a match or for HubSpot.
    pub const PENDING: &str = "pending";
    /// Logged in HubSpot.
    pub const WRITTEN: &str = "written";
    /// Not written by the settings (off, or type not selected).
    pub const SKIPPED: &str = "skipped";
    /// No match within the TTL.
    pub const DROPPED: &str = "dropped";
    /// Invalid or refused by HubSpot for good.
    pub const FAILED: &str = "failed";
}

/// The API enum of a stored state.
pub fn state_proto(s: &str) -> WritebackState {
    match s {
        state::PENDING => WritebackState::Pending,
        state::WRITTEN => WritebackState::Written,
        state::SKIPPED => WritebackState::Skipped,
        state::DROPPED => WritebackState::Dropped,
        state::FAILED => WritebackState::Failed,
        _ => WritebackState::Unspecified,
    }
}

/// The stored state of an API enum (`None` for UNSPECIFIED: any).
pub fn state_name(s: WritebackState) -> Option<&'static str> {
    match s {
        WritebackState::Unspecified => None,
        WritebackState::Pending => Some(state::PENDING),
        WritebackState::Written => Some(state::WRITTEN),
        WritebackState::Skipped => Some(state::SKIPPED),
        WritebackState::Dropped => Some(state::DROPPED),
        WritebackState::Failed => Some(state::FAILED),
    }
}

/// Counts an activity outcome in `spoke_export_writeback_activities_total{outcome}`.
pub fn count(outcome: &'static str) {
    metrics::counter!("spoke_export_writeback_activities_total", "outcome" => outcome).increment(1);
}

/// The writeback settings of one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Writeback is on.
    pub enabled: bool,
    /// Tasks or engagements.
    pub log_mode: WritebackLogMode,
    /// Types written back.
    pub activity_types: Vec<ActivityType>,
    /// Last change (`None` when never saved).
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for Settings {
    /// Off, engagements, all three types.
    fn default() -> Self {
        Self {
            enabled: false,
            log_mode: WritebackLogMode::Engagements,
            activity_types: vec![
                ActivityType::Email,
                ActivityType::Call,
                ActivityType::Meeting,
            ],
            updated_at: None,
        }
    }
}

impl Settings {
    /// Why an activity of `t` is not written under these settings, or `None` when it is.
    pub fn skip_reason(&self, t: ActivityType) -> Option<String> {
        if !self.enabled {
            return Some("CRM writeback is turned off for the org".into());
        }
        if !self.activity_types.contains(&t) {
            return Some(format!(
                "activity type {} is not selected in the writeback settings",
                engagement::type_label(t)
            ));
        }
        None
    }
}

/// A change of settings; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// New `enabled`.
    pub enabled: Option<bool>,
    /// New log mode (not UNSPECIFIED).
    pub log_mode: Option<WritebackLogMode>,
    /// New types (none UNSPECIFIED; duplicates removed).
    pub activity_types: Option<Vec<ActivityType>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_follow_the_settings() {
        let mut s = Settings::default();
        assert!(
            s.skip_reason(ActivityType::Call)
                .unwrap()
                .contains("turned off")
        );
        s.enabled = true;
        assert_eq!(s.skip_reason(ActivityType::Call), None);
        s.activity_types = vec![ActivityType::Email];
        assert!(s.skip_reason(ActivityType::Call).unwrap().contains("call"));
        assert_eq!(s.skip_reason(ActivityType::Email), None);
    }

    #[test]
    fn states_round_trip() {
        for s in [
            state::PENDING,
            state::WRITTEN,
            state::SKIPPED,
            state::DROPPED,
            state::FAILED,
        ] {
            assert_eq!(state_name(state_proto(s)), Some(s));
        }
        assert_eq!(state_name(WritebackState::Unspecified), None);
    }
}
