//! Where duplicate settings come from.
//!
//! Decision: the mapping service's `GetCompiledMapping(object, version)`, called as a `service`
//! caller. The request batches carry only the job's pinned `config_version` (no settings), and
//! the compiled mapping holds exactly what the decision needs at that version: the duplicate
//! settings (user options already narrowed by the preferences) and the export preferences
//! (create new / update existing / allow duplicate creation). A version is an immutable snapshot,
//! so answers are cached per (org, object, version) for the life of the process; the preview
//! (`CheckDuplicates`) asks for the current version and is not cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use spoke_platform::auth::TokenIssuer;
use spoke_platform::telemetry::{MetadataInjector, inject_current};
use spoke_proto::common::v1::DuplicateAction;
use spoke_proto::mapping::v1::mapping_service_client::MappingServiceClient;
use spoke_proto::mapping::v1::{CompiledMapping, GetCompiledMappingRequest};
use tonic::transport::{Channel, Endpoint};

use crate::decision::Policy;
use crate::error::{Error, Result};
use crate::keys::Object;

/// The policy of one object at one configuration version.
#[async_trait::async_trait]
pub trait SettingsSource: Send + Sync + 'static {
    /// Settings of `object` in `org` at `version` (`None` = current).
    async fn policy(&self, org: &str, object: Object, version: Option<i64>) -> Result<Policy>;
}

/// The policy of a compiled mapping; missing parts take the product defaults.
pub fn policy_from_compiled(compiled: &CompiledMapping) -> Policy {
    let defaults = Policy::default();
    let mut policy = Policy {
        version: compiled.version,
        ..defaults.clone()
    };
    if let Some(p) = &compiled.preferences {
        policy.create_new = p.create_new;
        policy.update_existing = p.update_existing;
        policy.allow_duplicate_creation = p.allow_duplicate_creation;
    }
    if let Some(d) = &compiled.duplicate_settings {
        let default_action = d.default_action();
        if default_action != DuplicateAction::Unspecified {
            policy.default_action = default_action;
        }
        policy.user_options = d
            .user_options
            .iter()
            .filter_map(|a| DuplicateAction::try_from(*a).ok())
            .filter(|a| *a != DuplicateAction::Unspecified)
            .collect();
    }
    policy
}

/// (org, object, version): one immutable settings snapshot.
type VersionKey = (String, Object, i64);

/// [`SettingsSource`] over the mapping service's gRPC API.
#[derive(Clone)]
pub struct MappingSettings {
    client: MappingServiceClient<Channel>,
    issuer: TokenIssuer,
    cache: Arc<RwLock<HashMap<VersionKey, Policy>>>,
}

impl std::fmt::Debug for MappingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingSettings").finish_non_exhaustive()
    }
}

impl MappingSettings {
    /// A client over a lazily connected channel to `endpoint`.
    pub fn new(endpoint: &str, issuer: TokenIssuer) -> Result<Self> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "mapping.endpoint {endpoint:?} is not a URI: {e} (set SPOKE_MAPPING__ENDPOINT)"
                ))
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(Self {
            client: MappingServiceClient::new(channel),
            issuer,
            cache: Arc::new(RwLock::new(HashMap::new())),
        })
    }
}

#[async_trait::async_trait]
impl SettingsSource for MappingSettings {
    async fn policy(&self, org: &str, object: Object, version: Option<i64>) -> Result<Policy> {
        // Version 0 means "never saved": the current (default) settings apply.
        let version = version.filter(|v| *v > 0);
        if let Some(v) = version
            && let Some(p) = self.cache.read().get(&(org.to_owned(), object, v))
        {
            return Ok(p.clone());
        }
        let token = self
            .issuer
            .service_token("dedupe", org)
            .map_err(|e| Error::Unavailable(format!("cannot mint a service token: {e}")))?;
        let mut req = tonic::Request::new(GetCompiledMappingRequest {
            object: object.to_proto() as i32,
            version,
        });
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::Unavailable("service token is not valid metadata".into()))?;
        req.metadata_mut().insert("authorization", auth);
        inject_current(&mut MetadataInjector(req.metadata_mut()));
        let resp = self
            .client
            .clone()
            .get_compiled_mapping(req)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => Error::FailedPrecondition(format!(
                    "configuration version {version:?} of org {org} is unknown to the mapping service: {}",
                    s.message()
                )),
                tonic::Code::FailedPrecondition => Error::FailedPrecondition(s.message().into()),
                _ => Error::Unavailable(format!(
                    "mapping service: {}: {}",
                    s.code(),
                    s.message()
                )),
            })?;
        let compiled = resp.into_inner().compiled.ok_or_else(|| {
            Error::Unavailable("mapping service returned no compiled mapping".into())
        })?;
        let policy = policy_from_compiled(&compiled);
        if let Some(v) = version {
            self.cache
                .write()
                .insert((org.to_owned(), object, v), policy.clone());
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::mapping::v1::{ObjectDuplicateSettings, ObjectExportPreferences};

    #[test]
    fn compiled_mapping_becomes_a_policy() {
        let compiled = CompiledMapping {
            version: 7,
            preferences: Some(ObjectExportPreferences {
                create_new: false,
                update_existing: true,
                allow_duplicate_creation: true,
                ..Default::default()
            }),
            duplicate_settings: Some(ObjectDuplicateSettings {
                default_action: DuplicateAction::NeedsReview as i32,
                user_options: vec![DuplicateAction::Skip as i32, 99],
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = policy_from_compiled(&compiled);
        assert_eq!(p.version, 7);
        assert!(!p.create_new && p.update_existing && p.allow_duplicate_creation);
        assert_eq!(p.default_action, DuplicateAction::NeedsReview);
        assert_eq!(p.user_options, vec![DuplicateAction::Skip]);

        let empty = policy_from_compiled(&CompiledMapping::default());
        assert_eq!(empty.default_action, DuplicateAction::UpdateExisting);
        assert!(empty.create_new && empty.update_existing);
    }
}
