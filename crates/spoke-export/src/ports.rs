//! What the export needs from the rest of the cluster, as traits: the pinned mapping and export
//! rules (mapping service), HubSpot access, owners and the user mapping (connection service).
//! The domain code depends on these traits only; `cluster.rs` implements them over the real
//! clients, so the writer's rules are testable without a network.

use std::sync::Arc;

use spoke_hubspot::PortalClient;
use spoke_platform::connection_mirror::MirroredConnection;
use spoke_proto::common::v1::{DuplicateAction, ObjectType, Profile};

use crate::error::Result;

/// The admin's export preferences and duplicate settings of one object, as pinned by a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRules {
    /// Users may export this object.
    pub allowed: bool,
    /// Max records per export (≤ 100,000).
    pub max_per_export: i64,
    /// Records without a duplicate may be created.
    pub create_new: bool,
    /// Users may create duplicates.
    pub allow_duplicate_creation: bool,
    /// Existing records may be updated.
    pub update_existing: bool,
    /// The admin's default action for duplicates.
    pub default_action: DuplicateAction,
    /// Actions a user may choose instead.
    pub user_options: Vec<DuplicateAction>,
}

impl Default for ExportRules {
    /// The product defaults: allowed, 100,000, create and update, no duplicates, update existing.
    fn default() -> Self {
        Self {
            allowed: true,
            max_per_export: crate::jobs::MAX_RECORDS as i64,
            create_new: true,
            allow_duplicate_creation: false,
            update_existing: true,
            default_action: DuplicateAction::UpdateExisting,
            user_options: vec![DuplicateAction::UpdateExisting, DuplicateAction::Skip],
        }
    }
}

impl ExportRules {
    /// Whether a user may pick `action` (as the job's choice or in a review).
    pub fn user_may_choose(&self, action: DuplicateAction) -> bool {
        match action {
            DuplicateAction::Unspecified => true,
            DuplicateAction::CreateDuplicate => {
                self.allow_duplicate_creation
                    && (self.default_action == action || self.user_options.contains(&action))
            }
            DuplicateAction::UpdateExisting => {
                self.update_existing
                    && (self.default_action == action || self.user_options.contains(&action))
            }
            DuplicateAction::NeedsReview | DuplicateAction::Skip => {
                self.default_action == action || self.user_options.contains(&action)
            }
        }
    }
}

/// HubSpot property values by internal name.
pub use spoke_hubspot::Properties;

/// A compiled mapping pinned at one configuration version, with its export rules.
pub trait RecordMapper: Send + Sync {
    /// The configuration version.
    fn version(&self) -> i64;
    /// Export preferences and duplicate settings of the object.
    fn rules(&self) -> &ExportRules;
    /// HubSpot properties whose current values `apply` needs for updates (complete-if-missing).
    fn read_properties(&self) -> Vec<String>;
    /// Whether the mapping itself sets `hubspot_owner_id` (then the owner rule does not).
    fn maps_owner(&self) -> bool;
    /// Maps a profile to HubSpot values; `existing` are the record's current values for updates.
    /// `Err` is a message for people naming the field that cannot be exported.
    fn apply(
        &self,
        profile: &Profile,
        existing: Option<&Properties>,
    ) -> std::result::Result<Properties, String>;
}

/// The rest of the cluster, as the export service uses it.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// The compiled mapping of `object` at `version` (the current one when `None`).
    async fn mapping(
        &self,
        org: &str,
        object: ObjectType,
        version: Option<i64>,
    ) -> Result<Arc<dyn RecordMapper>>;
    /// The org's connection as the connection service (the authority) sees it now; `None` when
    /// the org never connected. Used when the local mirror, fed by Kafka, may lag behind.
    async fn connection(&self, org: &str) -> Result<Option<MirroredConnection>>;
    /// A HubSpot client for the org's portal: the service account, or `user_id`'s own connection.
    async fn portal(&self, org: &str, user_id: Option<&str>) -> Result<PortalClient>;
    /// The HubSpot owner id for records the user creates (mapped user, else the primary admin).
    async fn resolve_owner(
        &self,
        org: &str,
        user_id: &str,
        user_email: &str,
    ) -> Result<Option<String>>;
    /// Maps the exporting user to their HubSpot owner by email when they have no mapping yet
    /// (a user's first export).
    async fn ensure_user_mapping(&self, org: &str, user_id: &str) -> Result<()>;
}
