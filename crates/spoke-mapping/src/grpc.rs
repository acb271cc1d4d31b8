//! The `spoke.mapping.v1.MappingService` gRPC service: authentication checks and request
//! validation, then calls into the domain (`configs`, `validate`, `test_mapping`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use prost::Message;
use sha2::{Digest, Sha256};
use spoke_hubspot::ObjectType;
use spoke_mapping_core::{
    CompiledMapping, DuplicateAction, DuplicateSettings, ExportPreferences, IntentTopic,
    MAX_PER_EXPORT, Object,
};
use spoke_platform::auth::{Caller, Role, caller};
use spoke_proto::events::v1::mapping_event;
use spoke_proto::mapping::v1 as pm;
use spoke_proto::mapping::v1::mapping_service_server::MappingService;
use tonic::{Request, Response, Status};

use crate::configs::{Configs, SaveRequest, hubspot_object};
use crate::defaults;
use crate::error::{Error, Violation};
use crate::snapshot::{self, Snapshot};
use crate::{test_mapping, validate};

/// The gRPC face of the mapping service.
#[derive(Debug, Clone)]
pub struct MappingServiceImpl {
    configs: Configs,
}

impl MappingServiceImpl {
    /// A service over the configuration domain.
    pub fn new(configs: Configs) -> Self {
        Self { configs }
    }
}

type GrpcResult<T> = std::result::Result<Response<T>, Status>;

/// Reads: admin, user or service of the org.
fn require_reader(c: &Caller) -> std::result::Result<(), Status> {
    if c.has(Role::Admin) || c.has(Role::User) || c.has(Role::Service) {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "this operation needs the admin, user or service role",
        ))
    }
}

fn object(value: i32) -> Result<Object, Error> {
    Object::from_proto(value).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "object: must be OBJECT_TYPE_COMPANIES or OBJECT_TYPE_CONTACTS, got {value}"
        ))
    })
}

fn idempotency_key(key: &str) -> Result<&str, Error> {
    if key.is_empty() || key.chars().count() > 200 {
        return Err(Error::InvalidArgument(
            "idempotency_key: required, 1..=200 characters".into(),
        ));
    }
    Ok(key)
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A hash of a SaveMapping request that does not depend on map iteration order.
fn save_mapping_hash(req: &pm::SaveMappingRequest) -> String {
    let rows: Vec<_> = req
        .rows
        .iter()
        .map(|r| {
            let map: BTreeMap<&String, &String> = r.value_map.iter().collect();
            (&r.source_fields, &r.target_property, r.update_mode, map)
        })
        .collect();
    let canonical = format!(
        "{:?}|{:?}|{:?}|{:?}",
        req.object, rows, req.default_currency, req.expected_version
    );
    hash(canonical.as_bytes())
}

fn stamp_mapping(m: &mut pm::Mapping, version: i64, at: &prost_types::Timestamp, actor: &str) {
    m.version = version;
    m.saved_at = Some(*at);
    m.saved_by = actor.to_string();
}

impl MappingServiceImpl {
    /// Validates `rows` of `object` against the portal; `Ok` carries warnings.
    async fn validated(
        &self,
        org: &str,
        object: Object,
        rows: &[pm::MappingRow],
        currency: Option<&str>,
    ) -> Result<(Vec<String>, crate::properties::PortalProperties), Error> {
        let props = self
            .configs
            .catalog()
            .get(org, hubspot_object(object), false)
            .await?;
        let warnings =
            validate::mapping(object, rows, currency, &props).map_err(Error::Validation)?;
        Ok((warnings, props))
    }
}

#[tonic::async_trait]
impl MappingService for MappingServiceImpl {
    async fn get_mapping(
        &self,
        req: Request<pm::GetMappingRequest>,
    ) -> GrpcResult<pm::GetMappingResponse> {
        let c = caller(&req)?.clone();
        require_reader(&c)?;
        let object = object(req.get_ref().object)?;
        let snapshot = self.configs.current(&c.org).await?;
        Ok(Response::new(pm::GetMappingResponse {
            mapping: Some(snapshot.mapping(object).clone()),
        }))
    }

    #[tracing::instrument(name = "mapping.save_mapping", skip_all, fields(org))]
    async fn save_mapping(
        &self,
        req: Request<pm::SaveMappingRequest>,
    ) -> GrpcResult<pm::SaveMappingResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        tracing::Span::current().record("org", c.org.as_str());
        let r = req.into_inner();
        let key = idempotency_key(&r.idempotency_key)?;
        let object = object(r.object)?;
        let (warnings, _) = self
            .validated(&c.org, object, &r.rows, r.default_currency.as_deref())
            .await?;
        let rows = snapshot::normalize_rows(&r.rows);
        let actor = c.user_id.clone();
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "SaveMapping",
                    idempotency: Some((key, save_mapping_hash(&r))),
                    expected_version: r.expected_version,
                    kind: "mapping",
                    event: mapping_event::Kind::MappingSaved(mapping_event::MappingSaved {
                        object: spoke_proto::common::v1::ObjectType::from(object) as i32,
                        reset: false,
                    }),
                },
                |s: &mut Snapshot, at| {
                    let version = s.version;
                    if let Some(currency) = &r.default_currency {
                        s.companies.default_currency = currency.clone();
                        s.contacts.default_currency = currency.clone();
                    }
                    let m = s.mapping_mut(object);
                    m.rows = rows;
                    m.is_default = false;
                    stamp_mapping(m, version, at, &actor);
                    Ok(pm::SaveMappingResponse {
                        mapping: Some(m.clone()),
                        warnings,
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn reset_mapping(
        &self,
        req: Request<pm::ResetMappingRequest>,
    ) -> GrpcResult<pm::ResetMappingResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let object = object(req.get_ref().object)?;
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "ResetMapping",
                    idempotency: None,
                    expected_version: None,
                    kind: "mapping",
                    event: mapping_event::Kind::MappingSaved(mapping_event::MappingSaved {
                        object: spoke_proto::common::v1::ObjectType::from(object) as i32,
                        reset: true,
                    }),
                },
                |s: &mut Snapshot, at| {
                    let version = s.version;
                    let currency = s.default_currency().to_string();
                    let m = s.mapping_mut(object);
                    *m = defaults::default_mapping(object);
                    m.default_currency = currency;
                    stamp_mapping(m, version, at, &c.user_id);
                    Ok(pm::ResetMappingResponse {
                        mapping: Some(m.clone()),
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn list_hub_spot_properties(
        &self,
        req: Request<pm::ListHubSpotPropertiesRequest>,
    ) -> GrpcResult<pm::ListHubSpotPropertiesResponse> {
        let c = caller(&req)?.clone();
        c.require_member()?;
        let r = req.into_inner();
        let hs_object = match spoke_proto::common::v1::ObjectType::try_from(r.object) {
            Ok(spoke_proto::common::v1::ObjectType::Companies) => ObjectType::Companies,
            Ok(spoke_proto::common::v1::ObjectType::Contacts) => ObjectType::Contacts,
            Ok(spoke_proto::common::v1::ObjectType::Deals) => ObjectType::Deals,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "object: must be companies, contacts or deals, got {}",
                    r.object
                ))
                .into());
            }
        };
        let page_size = match r.page_size {
            0 => 500,
            n if n < 0 => {
                return Err(
                    Error::InvalidArgument("page_size: must not be negative".into()).into(),
                );
            }
            n => n.min(1_000) as usize,
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            let bytes = hex::decode(&r.page_token).map_err(|_| {
                Error::InvalidArgument("page_token: not a token from this API".into())
            })?;
            Some(String::from_utf8(bytes).map_err(|_| {
                Error::InvalidArgument("page_token: not a token from this API".into())
            })?)
        };
        let props = self
            .configs
            .catalog()
            .get(&c.org, hs_object, r.refresh)
            .await?;
        let mut page: Vec<pm::HubSpotProperty> = props
            .by_name
            .values()
            .filter(|p| !r.writable_only || p.writable())
            .filter(|p| after.as_ref().is_none_or(|a| p.name.as_str() > a.as_str()))
            .take(page_size + 1)
            .map(|p| p.to_proto())
            .collect();
        let next_page_token = if page.len() > page_size {
            page.truncate(page_size);
            page.last()
                .map(|p| hex::encode(&p.name))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pm::ListHubSpotPropertiesResponse {
            properties: page,
            next_page_token,
            fetched_at: Some(prost_types::Timestamp {
                seconds: props.fetched_at.timestamp(),
                nanos: i32::try_from(props.fetched_at.timestamp_subsec_nanos()).unwrap_or_default(),
            }),
        }))
    }

    #[tracing::instrument(name = "mapping.test_mapping", skip_all, fields(org))]
    async fn test_mapping(
        &self,
        req: Request<pm::TestMappingRequest>,
    ) -> GrpcResult<pm::TestMappingResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        tracing::Span::current().record("org", c.org.as_str());
        let r = req.into_inner();
        let object = object(r.object)?;
        let currency = (!r.default_currency.is_empty()).then_some(r.default_currency.as_str());
        let (_, props) = self.validated(&c.org, object, &r.rows, currency).await?;
        let saved = self.configs.current(&c.org).await?;
        let rows = snapshot::normalize_rows(&r.rows);
        let compiled = CompiledMapping {
            object,
            version: 0,
            rows: snapshot::compile_rows(&rows, &props),
            default_currency: currency.unwrap_or(saved.default_currency()).to_string(),
            intent_topics: Vec::new(),
            preferences: ExportPreferences::default(),
            duplicate_settings: DuplicateSettings::default(),
            portal_id: props.portal_id,
        };
        let given: BTreeMap<String, String> = r.sample_fields.into_iter().collect();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let sample = test_mapping::sample_record(object, &compiled, &given, &unique[..12]);
        let portal = self.configs.catalog().portals().portal(&c.org).await?;
        let resp = test_mapping::run(&portal, object, &compiled, &sample).await?;
        let outcome = if resp.success { "success" } else { "failure" };
        metrics::counter!("spoke_mapping_test_runs_total", "outcome" => outcome).increment(1);
        Ok(Response::new(resp))
    }

    async fn get_export_preferences(
        &self,
        req: Request<pm::GetExportPreferencesRequest>,
    ) -> GrpcResult<pm::GetExportPreferencesResponse> {
        let c = caller(&req)?.clone();
        require_reader(&c)?;
        let s = self.configs.current(&c.org).await?;
        Ok(Response::new(pm::GetExportPreferencesResponse {
            preferences: Some(s.preferences),
        }))
    }

    async fn save_export_preferences(
        &self,
        req: Request<pm::SaveExportPreferencesRequest>,
    ) -> GrpcResult<pm::SaveExportPreferencesResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let key = idempotency_key(&r.idempotency_key)?;
        let mut violations = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, u) in r.updates.iter().enumerate() {
            match Object::from_proto(u.object) {
                None => violations.push(Violation::new(
                    format!("updates[{i}].object"),
                    "must be OBJECT_TYPE_COMPANIES or OBJECT_TYPE_CONTACTS (the exportable objects)",
                )),
                Some(o) if !seen.insert(o) => violations.push(Violation::new(
                    format!("updates[{i}].object"),
                    format!("{} is changed twice; send one update per object", o.as_str()),
                )),
                Some(_) => {}
            }
            if let Some(max) = u.max_per_export
                && !(1..=i64::from(MAX_PER_EXPORT)).contains(&i64::from(max))
            {
                violations.push(Violation::new(
                    format!("updates[{i}].max_per_export"),
                    format!("{max} is outside 1..=100,000"),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations).into());
        }
        let request_hash = hash(&r.encode_to_vec());
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "SaveExportPreferences",
                    idempotency: Some((key, request_hash)),
                    expected_version: r.expected_version,
                    kind: "preferences",
                    event: mapping_event::Kind::PreferencesSaved(mapping_event::PreferencesSaved {
                        reset: false,
                    }),
                },
                |s: &mut Snapshot, at| {
                    let mut objects = Vec::new();
                    for o in Object::ALL {
                        let mut p = s.object_preferences(o)?;
                        if let Some(u) = r
                            .updates
                            .iter()
                            .find(|u| Object::from_proto(u.object) == Some(o))
                        {
                            if let Some(v) = u.allowed {
                                p.allowed = v;
                            }
                            if let Some(v) = u.max_per_export {
                                p.max_per_export = u32::try_from(v).unwrap_or(MAX_PER_EXPORT);
                            }
                            if let Some(v) = u.create_new {
                                p.create_new = v;
                            }
                            if let Some(v) = u.allow_duplicate_creation {
                                p.allow_duplicate_creation = v;
                            }
                            if let Some(v) = u.update_existing {
                                p.update_existing = v;
                            }
                        }
                        objects.push(p.to_proto(o));
                    }
                    s.preferences = pm::ExportPreferences {
                        objects,
                        version: s.version,
                        saved_at: Some(*at),
                    };
                    Ok(pm::SaveExportPreferencesResponse {
                        preferences: Some(s.preferences.clone()),
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn reset_export_preferences(
        &self,
        req: Request<pm::ResetExportPreferencesRequest>,
    ) -> GrpcResult<pm::ResetExportPreferencesResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "ResetExportPreferences",
                    idempotency: None,
                    expected_version: None,
                    kind: "preferences",
                    event: mapping_event::Kind::PreferencesSaved(mapping_event::PreferencesSaved {
                        reset: true,
                    }),
                },
                |s: &mut Snapshot, at| {
                    s.preferences = snapshot::default_preferences();
                    s.preferences.version = s.version;
                    s.preferences.saved_at = Some(*at);
                    Ok(pm::ResetExportPreferencesResponse {
                        preferences: Some(s.preferences.clone()),
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_duplicate_settings(
        &self,
        req: Request<pm::GetDuplicateSettingsRequest>,
    ) -> GrpcResult<pm::GetDuplicateSettingsResponse> {
        let c = caller(&req)?.clone();
        require_reader(&c)?;
        let s = self.configs.current(&c.org).await?;
        Ok(Response::new(pm::GetDuplicateSettingsResponse {
            settings: Some(s.duplicates),
        }))
    }

    async fn save_duplicate_settings(
        &self,
        req: Request<pm::SaveDuplicateSettingsRequest>,
    ) -> GrpcResult<pm::SaveDuplicateSettingsResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let key = idempotency_key(&r.idempotency_key)?;
        let mut violations = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, u) in r.updates.iter().enumerate() {
            match Object::from_proto(u.object) {
                None => violations.push(Violation::new(
                    format!("updates[{i}].object"),
                    "must be OBJECT_TYPE_COMPANIES or OBJECT_TYPE_CONTACTS",
                )),
                Some(o) if !seen.insert(o) => violations.push(Violation::new(
                    format!("updates[{i}].object"),
                    format!(
                        "{} is changed twice; send one update per object",
                        o.as_str()
                    ),
                )),
                Some(_) => {}
            }
            if let Some(a) = u.default_action
                && DuplicateAction::from_proto(a).is_none()
            {
                violations.push(Violation::new(
                    format!("updates[{i}].default_action"),
                    "must be UPDATE_EXISTING, CREATE_DUPLICATE, SKIP or NEEDS_REVIEW",
                ));
            }
            if let Some(set) = &u.user_options {
                for (j, a) in set.actions.iter().enumerate() {
                    match DuplicateAction::from_proto(*a) {
                        None => violations.push(Violation::new(
                            format!("updates[{i}].user_options.actions[{j}]"),
                            "must be UPDATE_EXISTING, CREATE_DUPLICATE or SKIP",
                        )),
                        Some(DuplicateAction::NeedsReview) => violations.push(Violation::new(
                            format!("updates[{i}].user_options.actions[{j}]"),
                            "NEEDS_REVIEW (ask the user) can only be the admin default, not a user option",
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations).into());
        }
        let request_hash = hash(&r.encode_to_vec());
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "SaveDuplicateSettings",
                    idempotency: Some((key, request_hash)),
                    expected_version: r.expected_version,
                    kind: "duplicates",
                    event: mapping_event::Kind::DuplicateSettingsSaved(
                        mapping_event::DuplicateSettingsSaved {},
                    ),
                },
                |s: &mut Snapshot, at| {
                    let mut objects = Vec::new();
                    let mut violations = Vec::new();
                    for o in Object::ALL {
                        let mut d = s.object_duplicates(o)?;
                        let index = r
                            .updates
                            .iter()
                            .position(|u| Object::from_proto(u.object) == Some(o));
                        if let Some(i) = index {
                            let u = &r.updates[i];
                            if let Some(a) = u.default_action.and_then(DuplicateAction::from_proto) {
                                d.default_action = a;
                            }
                            if let Some(set) = &u.user_options {
                                let mut options: Vec<DuplicateAction> = set
                                    .actions
                                    .iter()
                                    .filter_map(|a| DuplicateAction::from_proto(*a))
                                    .collect();
                                options.sort();
                                options.dedup();
                                d.user_options = options;
                            }
                            if d.default_action != DuplicateAction::NeedsReview
                                && !d.user_options.contains(&d.default_action)
                            {
                                violations.push(Violation::new(
                                    format!("updates[{i}].default_action"),
                                    format!(
                                        "the default action {} must be one of the user options of {} (or NEEDS_REVIEW to ask the user)",
                                        d.default_action.as_str(),
                                        o.as_str()
                                    ),
                                ));
                            }
                        }
                        objects.push(d.to_proto(o));
                    }
                    if !violations.is_empty() {
                        return Err(Error::Validation(violations));
                    }
                    s.duplicates = pm::DuplicateSettings {
                        objects,
                        version: s.version,
                        saved_at: Some(*at),
                    };
                    Ok(pm::SaveDuplicateSettingsResponse {
                        settings: Some(s.duplicates.clone()),
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_intent_mapping(
        &self,
        req: Request<pm::GetIntentMappingRequest>,
    ) -> GrpcResult<pm::GetIntentMappingResponse> {
        let c = caller(&req)?.clone();
        require_reader(&c)?;
        let s = self.configs.current(&c.org).await?;
        Ok(Response::new(pm::GetIntentMappingResponse {
            intent_mapping: Some(s.intent),
        }))
    }

    async fn save_intent_mapping(
        &self,
        req: Request<pm::SaveIntentMappingRequest>,
    ) -> GrpcResult<pm::SaveIntentMappingResponse> {
        let c = caller(&req)?.clone();
        c.require_admin()?;
        let r = req.into_inner();
        let key = idempotency_key(&r.idempotency_key)?;
        let mut topics = Vec::new();
        let mut violations = Vec::new();
        for (i, t) in r.topics.iter().enumerate() {
            match IntentTopic::from_proto(t) {
                Ok(t) => topics.push(t),
                Err(e) => violations.push(Violation::new(
                    format!("topics[{i}].update_mode"),
                    e.to_string(),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::Validation(violations).into());
        }
        let props = self
            .configs
            .catalog()
            .get(&c.org, ObjectType::Companies, false)
            .await?;
        validate::intent(&topics, &props).map_err(Error::Validation)?;
        let count = i32::try_from(topics.len()).unwrap_or(i32::MAX);
        let request_hash = hash(&r.encode_to_vec());
        let resp = self
            .configs
            .save(
                SaveRequest {
                    org: &c.org,
                    actor: &c.user_id,
                    method: "SaveIntentMapping",
                    idempotency: Some((key, request_hash)),
                    expected_version: r.expected_version,
                    kind: "intent",
                    event: mapping_event::Kind::IntentMappingSaved(
                        mapping_event::IntentMappingSaved { topics: count },
                    ),
                },
                |s: &mut Snapshot, at| {
                    s.intent = pm::IntentMapping {
                        topics: topics.iter().map(IntentTopic::to_proto).collect(),
                        version: s.version,
                        saved_at: Some(*at),
                    };
                    Ok(pm::SaveIntentMappingResponse {
                        intent_mapping: Some(s.intent.clone()),
                    })
                },
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_compiled_mapping(
        &self,
        req: Request<pm::GetCompiledMappingRequest>,
    ) -> GrpcResult<pm::GetCompiledMappingResponse> {
        let started = Instant::now();
        let c = caller(&req)?.clone();
        if !(c.has(Role::Service) || c.has(Role::Admin)) {
            return Err(Status::permission_denied(
                "this operation needs the service or admin role",
            ));
        }
        let r = req.get_ref();
        let object = object(r.object)?;
        let compiled = self.configs.compiled(&c.org, object, r.version).await?;
        metrics::histogram!("spoke_mapping_compiled_read_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Response::new(pm::GetCompiledMappingResponse {
            compiled: Some((*compiled).clone()),
        }))
    }
}
