//! In-process control of a running sandbox: seeding, inspection, fault/limit/lag toggles, token control.
//! The admin HTTP API (`/_sandbox/...`) calls exactly these operations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::clock::now_ms;
use crate::config::{OAuthApp, RateLimits, SandboxConfig};
use crate::duplicates::{DuplicateKey, find_duplicates};
use crate::error::{Error, Result};
use crate::faults::{FaultRule, FaultState};
use crate::limits::Limiter;
use crate::oauth::{Grant, TokenPair, TokenStore};
use crate::objects::ObjectType;
use crate::reqlog::{LoggedRequest, RequestLog};
use crate::seed::{PortalSeed, Seed};
use crate::store::{PortalState, Wanted, render, value_to_string};

/// One portal: its data behind a read/write lock and its limiter.
#[derive(Debug)]
pub struct Portal {
    /// Data.
    pub state: RwLock<PortalState>,
    /// Rate limiter.
    pub limiter: Mutex<Limiter>,
}

/// Settings that can change at runtime.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Search lag in ms.
    pub search_lag_ms: i64,
    /// Access token lifetime in ms.
    pub token_ttl_ms: i64,
    /// Limits given to new portals.
    pub default_limits: RateLimits,
    /// Default portal of `/oauth/authorize`.
    pub default_portal: Option<u64>,
    /// Accepted OAuth app.
    pub oauth: OAuthApp,
}

/// State shared by the HTTP handlers and the control handle.
#[derive(Debug)]
pub struct Shared {
    /// Portals by id.
    pub portals: RwLock<BTreeMap<u64, Arc<Portal>>>,
    /// Tokens.
    pub tokens: Mutex<TokenStore>,
    /// Fault rules.
    pub faults: Mutex<FaultState>,
    /// Request log.
    pub log: RequestLog,
    /// Runtime settings.
    pub settings: RwLock<Settings>,
    initial_seed: Seed,
}

impl Shared {
    /// The portal with this id.
    pub fn portal(&self, id: u64) -> Option<Arc<Portal>> {
        self.portals.read().get(&id).cloned()
    }
}

/// Record counts of one portal.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Portal id.
    pub portal_id: u64,
    /// Account type.
    pub account_type: String,
    /// Plan tier label, when seeded.
    pub tier: Option<String>,
    /// Live records per object type name.
    pub live: BTreeMap<String, usize>,
    /// Archived records per object type name.
    pub archived: BTreeMap<String, usize>,
    /// Association edges (each direction counted).
    pub associations: usize,
}

/// Handle to control a running sandbox in-process (cheap to clone).
#[derive(Debug, Clone)]
pub struct SandboxControl {
    pub(crate) shared: Arc<Shared>,
}

fn object(name: &str) -> Result<ObjectType> {
    ObjectType::parse(name).ok_or_else(|| Error::SeedInvalid(format!("unknown object type {name}")))
}

impl SandboxControl {
    /// Builds the shared state from a config and applies its seed.
    pub(crate) fn new(config: &SandboxConfig) -> Result<Self> {
        let shared = Arc::new(Shared {
            portals: RwLock::new(BTreeMap::new()),
            tokens: Mutex::new(TokenStore::default()),
            faults: Mutex::new(FaultState::new(config.fault_seed)),
            log: RequestLog::new(config.request_log_capacity),
            settings: RwLock::new(Settings {
                search_lag_ms: config.search_lag.as_millis() as i64,
                token_ttl_ms: config.token_ttl.as_millis() as i64,
                default_limits: config.rate_limits,
                default_portal: config.default_portal,
                oauth: config.oauth.clone(),
            }),
            initial_seed: config.seed.clone(),
        });
        let control = SandboxControl { shared };
        control.seed(&config.seed)?;
        Ok(control)
    }

    /// Applies a seed document (each portal is created or replaced).
    pub fn seed(&self, seed: &Seed) -> Result<()> {
        for p in &seed.portals {
            self.seed_portal(p)?;
        }
        Ok(())
    }

    /// Creates or replaces one portal with everything in its seed.
    pub fn seed_portal(&self, seed: &PortalSeed) -> Result<()> {
        let now = now_ms();
        let mut state = PortalState::from_seed(seed, now).map_err(Error::SeedInvalid)?;
        let mut ids_by_type: BTreeMap<ObjectType, Vec<String>> = BTreeMap::new();
        for (name, records) in &seed.records {
            let t = object(name)?;
            let mut inputs = Vec::new();
            let mut fixed = Vec::new();
            for r in records {
                let mut m = Map::new();
                for (k, v) in &r.properties {
                    // Computed values come from the record itself, not from fixtures.
                    if k == "hs_object_id"
                        || k == t.create_date_property()
                        || k == t.last_modified_property()
                    {
                        continue;
                    }
                    m.insert(k.clone(), Value::String(value_to_string(v)));
                }
                let props = state
                    .validate(t, &m, true)
                    .map_err(|e| Error::SeedInvalid(format!("{name}: {}", e.message)))?;
                inputs.push(props);
                fixed.push(match &r.id {
                    Some(id) => Some(id.parse::<u64>().map_err(|_| {
                        Error::SeedInvalid(format!("{name}: record id {id} is not a number"))
                    })?),
                    None => None,
                });
            }
            let ids = state
                .create_many(t, inputs, now, 0, Some(fixed))
                .map_err(|e| Error::SeedInvalid(format!("{name}: {}", e.message)))?;
            ids_by_type
                .entry(t)
                .or_default()
                .extend(ids.iter().map(|i| i.to_string()));
        }
        for a in &seed.associations {
            let (from, to) = (object(&a.from_type)?, object(&a.to_type)?);
            let parse = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| Error::SeedInvalid(format!("association id {s} is not a number")))
            };
            state
                .associate(
                    from,
                    parse(&a.from_id)?,
                    to,
                    parse(&a.to_id)?,
                    None,
                    "HUBSPOT_DEFINED",
                )
                .map_err(|e| Error::SeedInvalid(e.message))?;
        }
        let limits = self.shared.settings.read().default_limits;
        let portal = Arc::new(Portal {
            state: RwLock::new(state),
            limiter: Mutex::new(Limiter::new(limits)),
        });
        {
            let mut tokens = self.shared.tokens.lock();
            tokens.forget_portal(seed.portal_id);
            for t in &seed.private_app_tokens {
                tokens.add_private(t, seed.portal_id);
            }
        }
        self.shared.portals.write().insert(seed.portal_id, portal);
        tracing::info!(portal = seed.portal_id, "sandbox.portal_seeded");
        Ok(())
    }

    /// Removes a portal and its tokens; returns whether it existed.
    pub fn remove_portal(&self, portal: u64) -> bool {
        self.shared.tokens.lock().forget_portal(portal);
        self.shared.portals.write().remove(&portal).is_some()
    }

    /// The ids of all portals.
    pub fn portal_ids(&self) -> Vec<u64> {
        self.shared.portals.read().keys().copied().collect()
    }

    fn portal(&self, portal: u64) -> Result<Arc<Portal>> {
        self.shared
            .portal(portal)
            .ok_or(Error::UnknownPortal(portal))
    }

    /// Inserts records with HubSpot's write rules (unique email, options); returns their ids.
    /// Records are visible to search at once (seeding is not subject to the index lag).
    pub fn insert_records(
        &self,
        portal: u64,
        object_type: &str,
        records: Vec<Map<String, Value>>,
    ) -> Result<Vec<String>> {
        let t = object(object_type)?;
        let p = self.portal(portal)?;
        let mut state = p.state.write();
        let mut inputs = Vec::with_capacity(records.len());
        for m in &records {
            inputs.push(
                state
                    .validate(t, m, true)
                    .map_err(|e| Error::SeedInvalid(e.message))?,
            );
        }
        let ids = state
            .create_many(t, inputs, now_ms(), 0, None)
            .map_err(|e: ApiError| Error::SeedInvalid(e.message))?;
        Ok(ids.iter().map(|i| i.to_string()).collect())
    }

    /// Associates records in bulk (`(from id, to id)` pairs, both directions), with `type_id` or the
    /// default type of `from → to`; returns how many pairs were associated. Stops at the first pair
    /// whose records do not exist.
    pub fn associate_records(
        &self,
        portal: u64,
        from_type: &str,
        to_type: &str,
        pairs: &[(String, String)],
        type_id: Option<u32>,
    ) -> Result<usize> {
        let (from, to) = (object(from_type)?, object(to_type)?);
        let p = self.portal(portal)?;
        let mut state = p.state.write();
        let parse = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| Error::SeedInvalid(format!("association id {s} is not a number")))
        };
        for (a, b) in pairs {
            state
                .associate(from, parse(a)?, to, parse(b)?, type_id, "HUBSPOT_DEFINED")
                .map_err(|e| Error::SeedInvalid(e.message))?;
        }
        Ok(pairs.len())
    }

    /// A record with all its stored properties, as the API would render it (archived ones too).
    pub fn record(&self, portal: u64, object_type: &str, id: &str) -> Result<Option<Value>> {
        let t = object(object_type)?;
        let p = self.portal(portal)?;
        let state = p.state.read();
        let Some(rec) = id
            .parse::<u64>()
            .ok()
            .and_then(|i| state.table(t).records.get(&i))
        else {
            return Ok(None);
        };
        let names = rec.props.iter().map(|(k, _)| k.to_string()).collect();
        Ok(Some(render(t, rec, &rec.props, &Wanted::Named(names))))
    }

    /// The associations of a record to one object type, as stored (what the v4 associations read
    /// returns): `(target id, association type id, category)` in insertion order.
    pub fn associations(
        &self,
        portal: u64,
        from_type: &str,
        id: &str,
        to_type: &str,
    ) -> Result<Vec<(String, u32, String)>> {
        let (f, t) = (object(from_type)?, object(to_type)?);
        let p = self.portal(portal)?;
        let state = p.state.read();
        let Ok(id) = id.parse::<u64>() else {
            return Ok(Vec::new());
        };
        Ok(state
            .associations_of(f, id, t)
            .into_iter()
            .map(|e| (e.to_id.to_string(), e.type_id, e.category.to_string()))
            .collect())
    }

    /// Record counts per object type.
    pub fn counts(&self, portal: u64) -> Result<Counts> {
        let p = self.portal(portal)?;
        let state = p.state.read();
        let mut live = BTreeMap::new();
        let mut archived = BTreeMap::new();
        for t in ObjectType::ALL {
            let table = state.table(t);
            live.insert(t.name().to_owned(), table.live);
            archived.insert(t.name().to_owned(), table.records.len() - table.live);
        }
        Ok(Counts {
            portal_id: portal,
            account_type: state.info.account_type.clone(),
            tier: state.info.tier.clone(),
            live,
            archived,
            associations: state.associations.values().map(Vec::len).sum(),
        })
    }

    /// Keys held by more than one live record (contacts: email, name+company; companies: domain).
    pub fn duplicates(&self, portal: u64, object_type: &str) -> Result<Vec<DuplicateKey>> {
        let t = object(object_type)?;
        let p = self.portal(portal)?;
        let state = p.state.read();
        Ok(find_duplicates(&state, t))
    }

    /// The newest `limit` logged requests, optionally of one portal.
    pub fn requests(&self, limit: usize, portal: Option<u64>) -> Vec<LoggedRequest> {
        self.shared.log.recent(limit, portal)
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// Replaces the fault rules; `seed` reseeds the RNG for repeatable runs.
    pub fn set_faults(&self, rules: Vec<FaultRule>, seed: Option<u64>) {
        self.shared.faults.lock().set(rules, seed);
    }

    /// Adds one fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults.lock().add(rule);
    }

    /// The active fault rules.
    pub fn faults(&self) -> Vec<FaultRule> {
        self.shared.faults.lock().rules()
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().set(Vec::new(), None);
    }

    /// Sets the rate limits of one portal, or of every portal and future ones when `portal` is `None`.
    pub fn set_rate_limits(&self, portal: Option<u64>, limits: RateLimits) -> Result<()> {
        match portal {
            Some(id) => self.portal(id)?.limiter.lock().set(limits),
            None => {
                self.shared.settings.write().default_limits = limits;
                for p in self.shared.portals.read().values() {
                    p.limiter.lock().set(limits);
                }
            }
        }
        Ok(())
    }

    /// The rate limits of a portal.
    pub fn rate_limits(&self, portal: u64) -> Result<RateLimits> {
        Ok(self.portal(portal)?.limiter.lock().config)
    }

    /// Sets the search index lag for writes from now on.
    pub fn set_search_lag(&self, lag: Duration) {
        self.shared.settings.write().search_lag_ms = lag.as_millis() as i64;
    }

    /// Sets the lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.settings.write().token_ttl_ms = ttl.as_millis() as i64;
    }

    /// Issues a token pair for a portal user without the browser step (email or id; default user if `None`).
    pub fn issue_tokens(&self, portal: u64, user: Option<&str>) -> Result<TokenPair> {
        let grant = self.grant_for(portal, user, Vec::new())?;
        let ttl = self.shared.settings.read().token_ttl_ms;
        Ok(self.shared.tokens.lock().issue_pair(grant, ttl, now_ms()))
    }

    /// Resolves the consenting user of a portal into a grant.
    pub(crate) fn grant_for(
        &self,
        portal: u64,
        user: Option<&str>,
        scopes: Vec<String>,
    ) -> Result<Grant> {
        let p = self.portal(portal)?;
        let state = p.state.read();
        let wanted = user
            .map(str::to_owned)
            .or_else(|| state.info.default_oauth_user.clone());
        let found = match wanted.as_deref() {
            Some(w) => state
                .users
                .iter()
                .find(|u| u.id == w || u.email.eq_ignore_ascii_case(w))
                .ok_or_else(|| Error::SeedInvalid(format!("portal {portal} has no user {w}")))?
                .clone(),
            None => state
                .users
                .iter()
                .find(|u| u.super_admin)
                .or_else(|| state.users.first())
                .cloned()
                .ok_or_else(|| {
                    Error::SeedInvalid(format!("portal {portal} has no users to consent as"))
                })?,
        };
        Ok(Grant {
            portal,
            user_id: found.id.parse().unwrap_or(0),
            user_email: found.email,
            scopes,
            client_id: self.shared.settings.read().oauth.client_id.clone(),
        })
    }

    /// Registers a private-app token for a portal.
    pub fn add_private_app_token(&self, portal: u64, token: &str) -> Result<()> {
        self.portal(portal)?;
        self.shared.tokens.lock().add_private(token, portal);
        Ok(())
    }

    /// Revokes refresh tokens of a portal (all portals when `None`); returns how many.
    pub fn revoke_refresh_tokens(&self, portal: Option<u64>) -> usize {
        self.shared.tokens.lock().revoke_portal(portal)
    }

    /// Revokes one refresh token; returns whether it was live.
    pub fn revoke_refresh_token(&self, token: &str) -> bool {
        self.shared.tokens.lock().revoke_refresh(token)
    }

    /// Expires access tokens of a portal (all when `None`) now; returns how many.
    pub fn expire_access_tokens(&self, portal: Option<u64>) -> usize {
        self.shared.tokens.lock().expire_access(portal, now_ms())
    }

    /// Removes every record of a portal, keeping its settings, owners, users and properties.
    pub fn clear_records(&self, portal: u64) -> Result<()> {
        self.portal(portal)?.state.write().clear_records();
        Ok(())
    }

    /// Back to the start: drops portals, tokens, faults and the log, then applies the startup seed.
    pub fn reset(&self) -> Result<()> {
        self.shared.portals.write().clear();
        self.shared.tokens.lock().clear();
        self.shared.faults.lock().set(Vec::new(), None);
        self.shared.log.clear();
        let seed = self.shared.initial_seed.clone();
        self.seed(&seed)
    }
}
