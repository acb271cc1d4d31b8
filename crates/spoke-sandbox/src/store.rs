//! One portal's state: settings, owners, users, properties, pipelines, records, indexes, associations.
//!
//! Every rule HubSpot applies on writes (unknown property, read-only, enumeration options, unique email)
//! is enforced here, independent of HTTP, and reported as HubSpot-shaped [`ApiError`]s.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::api_error::{ApiError, ApiResult, ErrorDetail};
use crate::clock::iso;
use crate::duplicates::normalize_domain;
use crate::objects::{ObjectType, default_association_type, reverse_association_type};
use crate::properties::{default_deal_pipeline, standard_properties};
use crate::seed::{OwnerSeed, PipelineSeed, PortalSeed, PropertyDef, PropertyOption, UserSeed};

/// Property values of a record, sorted by name; names are interned per portal.
pub type Props = Vec<(Arc<str>, String)>;

/// One CRM record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Record id.
    pub id: u64,
    /// Stored property values (computed ones such as `hs_object_id` are not stored).
    pub props: Props,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Last update time, epoch ms.
    pub updated_ms: i64,
    /// Archive time when archived.
    pub archived_ms: Option<i64>,
    /// From this time on search sees `props`; before it, search sees `search_prev` (or nothing).
    pub visible_at_ms: i64,
    /// The version search still sees while the index lags behind a write.
    pub search_prev: Option<Box<Props>>,
}

impl Record {
    /// A stored value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.props
            .binary_search_by(|(k, _)| k.as_ref().cmp(name))
            .ok()
            .map(|i| self.props[i].1.as_str())
    }

    /// Whether the record is archived.
    pub fn archived(&self) -> bool {
        self.archived_ms.is_some()
    }

    /// The property values search sees at `now_ms`.
    pub fn searchable_props(&self, now_ms: i64) -> Option<&Props> {
        if now_ms >= self.visible_at_ms {
            Some(&self.props)
        } else {
            self.search_prev.as_deref()
        }
    }
}

/// Looks a value up in a sorted property list.
pub fn props_get<'a>(props: &'a Props, name: &str) -> Option<&'a str> {
    props
        .binary_search_by(|(k, _)| k.as_ref().cmp(name))
        .ok()
        .map(|i| props[i].1.as_str())
}

/// A property value of a record, including the computed ones (`hs_object_id`, create/modified dates).
pub fn value_of<'a>(
    object: ObjectType,
    rec: &'a Record,
    props: &'a Props,
    name: &str,
) -> Option<Cow<'a, str>> {
    match name {
        "hs_object_id" => Some(Cow::Owned(rec.id.to_string())),
        n if n == object.create_date_property() || n == "createdate" => {
            Some(Cow::Owned(iso(rec.created_ms)))
        }
        n if n == object.last_modified_property() || n == "hs_lastmodifieddate" => {
            Some(Cow::Owned(iso(rec.updated_ms)))
        }
        _ => props_get(props, name).map(Cow::Borrowed),
    }
}

/// The records and property definitions of one object type.
#[derive(Debug, Default)]
pub struct ObjectTable {
    /// Records by id (ordered, so list paging is a range scan).
    pub records: BTreeMap<u64, Record>,
    /// Property definitions by name.
    pub defs: BTreeMap<String, PropertyDef>,
    keys: HashMap<String, Arc<str>>,
    /// Lower-cased email → contact id (live records only).
    pub email_index: HashMap<String, u64>,
    /// Normalized domain → company ids (live records only).
    pub domain_index: HashMap<String, BTreeSet<u64>>,
    /// Live (not archived) record count.
    pub live: usize,
}

impl ObjectTable {
    fn new(defs: Vec<PropertyDef>) -> Self {
        let mut t = ObjectTable::default();
        for d in defs {
            t.keys.insert(d.name.clone(), Arc::from(d.name.as_str()));
            t.defs.insert(d.name.clone(), d);
        }
        t
    }

    fn key(&self, name: &str) -> Arc<str> {
        self.keys
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }

    fn index_insert(&mut self, object: ObjectType, id: u64, props: &Props) {
        match object {
            ObjectType::Contacts => {
                if let Some(e) = props_get(props, "email").filter(|e| !e.is_empty()) {
                    self.email_index.insert(e.trim().to_lowercase(), id);
                }
            }
            ObjectType::Companies => {
                if let Some(d) = props_get(props, "domain").and_then(normalize_domain) {
                    self.domain_index.entry(d).or_default().insert(id);
                }
            }
            _ => {}
        }
    }

    fn index_remove(&mut self, object: ObjectType, id: u64, props: &Props) {
        match object {
            ObjectType::Contacts => {
                if let Some(e) = props_get(props, "email") {
                    let k = e.trim().to_lowercase();
                    if self.email_index.get(&k) == Some(&id) {
                        self.email_index.remove(&k);
                    }
                }
            }
            ObjectType::Companies => {
                if let Some(d) = props_get(props, "domain").and_then(normalize_domain)
                    && let Some(set) = self.domain_index.get_mut(&d)
                {
                    set.remove(&id);
                    if set.is_empty() {
                        self.domain_index.remove(&d);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An association edge stored on the `from` side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssocEdge {
    /// Target object type.
    pub to_type: ObjectType,
    /// Target id.
    pub to_id: u64,
    /// `HUBSPOT_DEFINED` or `USER_DEFINED` (the known ones are not allocated per edge).
    pub category: Cow<'static, str>,
    /// Association type id.
    pub type_id: u32,
}

/// The account settings reported by `/account-info/v3/details`.
#[derive(Debug, Clone)]
pub struct PortalInfo {
    /// Hub id.
    pub portal_id: u64,
    /// Account type.
    pub account_type: String,
    /// Plan tier label (sandbox only).
    pub tier: Option<String>,
    /// Time zone.
    pub time_zone: String,
    /// Company currency.
    pub company_currency: String,
    /// Additional currencies.
    pub additional_currencies: Vec<String>,
    /// UI domain.
    pub ui_domain: String,
    /// Data hosting location.
    pub data_hosting_location: String,
    /// Default consenting user for OAuth.
    pub default_oauth_user: Option<String>,
}

/// Everything of one portal.
#[derive(Debug)]
pub struct PortalState {
    /// Settings.
    pub info: PortalInfo,
    /// Owners in id order.
    pub owners: Vec<OwnerSeed>,
    /// Users in id order.
    pub users: Vec<UserSeed>,
    /// Pipelines per object type.
    pub pipelines: BTreeMap<ObjectType, Vec<PipelineSeed>>,
    tables: Vec<ObjectTable>,
    /// Association edges by (from type, from id).
    pub associations: HashMap<(ObjectType, u64), Vec<AssocEdge>>,
    next_id: u64,
    /// Creation time (owners, pipelines report it).
    pub created_ms: i64,
}

fn table_index(object: ObjectType) -> usize {
    ObjectType::ALL
        .iter()
        .position(|t| *t == object)
        .unwrap_or(0)
}

/// Converts a JSON property value to HubSpot's string form.
pub fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A property-level validation failure, before it is wrapped into HubSpot's error body.
#[derive(Debug, Clone)]
struct PropertyProblem {
    name: String,
    code: &'static str,
    message: String,
}

fn validation_error(problems: Vec<PropertyProblem>) -> ApiError {
    let listed: Vec<Value> = problems
        .iter()
        .map(|p| {
            json!({
                "isValid": false,
                "message": p.message,
                "error": p.code,
                "name": p.name,
                "localizedErrorMessage": p.message,
            })
        })
        .collect();
    let mut e = ApiError::validation(format!(
        "Property values were not valid: {}",
        Value::Array(listed)
    ));
    for p in problems {
        e = e.with_detail(ErrorDetail {
            message: p.message,
            code: Some(p.code.to_owned()),
            context: Some(json!({ "propertyName": [p.name] })),
        });
    }
    e
}

impl PortalState {
    /// Builds a portal from its seed (records are inserted by the caller through [`Self::insert_seeded`]).
    pub fn from_seed(seed: &PortalSeed, now_ms: i64) -> std::result::Result<Self, String> {
        let mut owners = seed.owners.clone();
        owners.sort_by_key(|o| o.id.parse::<u64>().unwrap_or(u64::MAX));
        let mut users = seed.users.clone();
        users.sort_by_key(|u| u.id.parse::<u64>().unwrap_or(u64::MAX));
        let mut pipelines = BTreeMap::new();
        for (name, list) in &seed.pipelines {
            let t = ObjectType::parse(name)
                .ok_or_else(|| format!("unknown object type {name} in pipelines"))?;
            pipelines.insert(t, list.clone());
        }
        pipelines
            .entry(ObjectType::Deals)
            .or_insert_with(|| vec![default_deal_pipeline()]);
        let mut custom: HashMap<ObjectType, Vec<PropertyDef>> = HashMap::new();
        for (name, list) in &seed.properties {
            let t = ObjectType::parse(name)
                .ok_or_else(|| format!("unknown object type {name} in properties"))?;
            custom.entry(t).or_default().extend(list.iter().cloned());
        }
        let owner_options: Vec<PropertyOption> = owners
            .iter()
            .filter(|o| !o.archived)
            .enumerate()
            .map(|(i, o)| PropertyOption {
                label: format!("{} {}", o.first_name, o.last_name)
                    .trim()
                    .to_owned(),
                value: o.id.clone(),
                display_order: i as i64,
                hidden: false,
                description: String::new(),
            })
            .collect();
        let mut tables = Vec::new();
        for t in ObjectType::ALL {
            let mut defs = if seed.standard_properties {
                standard_properties(t)
            } else {
                standard_properties(t)
                    .into_iter()
                    .filter(|d| d.read_only_value)
                    .collect()
            };
            for mut c in custom.remove(&t).unwrap_or_default() {
                if c.label.is_empty() {
                    c.label = c.name.clone();
                }
                if c.group_name.is_empty() {
                    c.group_name = format!("{}information", t.singular_upper().to_lowercase());
                }
                defs.retain(|d| d.name != c.name);
                defs.push(c);
            }
            for d in &mut defs {
                match d.name.as_str() {
                    "hubspot_owner_id" => d.options = owner_options.clone(),
                    "pipeline" => {
                        d.options = pipelines
                            .get(&t)
                            .map(|ps| {
                                ps.iter()
                                    .map(|p| PropertyOption {
                                        label: p.label.clone(),
                                        value: p.id.clone(),
                                        display_order: p.display_order,
                                        hidden: false,
                                        description: String::new(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    }
                    "dealstage" => {
                        d.options = pipelines
                            .get(&t)
                            .map(|ps| {
                                ps.iter()
                                    .flat_map(|p| p.stages.iter())
                                    .map(|s| PropertyOption {
                                        label: s.label.clone(),
                                        value: s.id.clone(),
                                        display_order: s.display_order,
                                        hidden: false,
                                        description: String::new(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    }
                    _ => {}
                }
            }
            tables.push(ObjectTable::new(defs));
        }
        Ok(PortalState {
            info: PortalInfo {
                portal_id: seed.portal_id,
                account_type: seed.account_type.clone(),
                tier: seed.tier.clone(),
                time_zone: seed.time_zone.clone(),
                company_currency: seed.company_currency.clone(),
                additional_currencies: seed.additional_currencies.clone(),
                ui_domain: seed.ui_domain.clone(),
                data_hosting_location: seed.data_hosting_location.clone(),
                default_oauth_user: seed.default_oauth_user.clone(),
            },
            owners,
            users,
            pipelines,
            tables,
            associations: HashMap::new(),
            next_id: 100_001,
            created_ms: now_ms,
        })
    }

    /// The table of one object type.
    pub fn table(&self, object: ObjectType) -> &ObjectTable {
        &self.tables[table_index(object)]
    }

    fn table_mut(&mut self, object: ObjectType) -> &mut ObjectTable {
        &mut self.tables[table_index(object)]
    }

    /// Checks property values against the definitions and returns them sorted and interned.
    /// `allow_read_only` is for seeding, where fixtures may carry calculated values.
    pub fn validate(
        &self,
        object: ObjectType,
        input: &Map<String, Value>,
        allow_read_only: bool,
    ) -> ApiResult<Props> {
        let table = self.table(object);
        let mut problems = Vec::new();
        let mut out: Props = Vec::with_capacity(input.len());
        for (name, raw) in input {
            let value = value_to_string(raw);
            let Some(def) = table.defs.get(name) else {
                problems.push(PropertyProblem {
                    name: name.clone(),
                    code: "PROPERTY_DOESNT_EXIST",
                    message: format!("Property \"{name}\" does not exist"),
                });
                continue;
            };
            if def.read_only_value && !allow_read_only {
                problems.push(PropertyProblem {
                    name: name.clone(),
                    code: "READ_ONLY_VALUE",
                    message: format!(
                        "\"{name}\" is a read only property; its value cannot be set."
                    ),
                });
                continue;
            }
            if !value.is_empty() && (def.kind == "enumeration" || def.kind == "bool") {
                let multi = def.field_type == "checkbox";
                let parts: Vec<&str> = if multi {
                    value.split(';').filter(|s| !s.is_empty()).collect()
                } else {
                    vec![value.as_str()]
                };
                if let Some(bad) = parts
                    .iter()
                    .find(|p| !def.options.iter().any(|o| o.value == **p))
                {
                    let allowed: Vec<&str> = def.options.iter().map(|o| o.value.as_str()).collect();
                    problems.push(PropertyProblem {
                        name: name.clone(),
                        code: "INVALID_OPTION",
                        message: format!(
                            "{bad} was not one of the allowed options: [{}]",
                            allowed.join(", ")
                        ),
                    });
                    continue;
                }
            }
            if name == "email"
                && object == ObjectType::Contacts
                && !value.is_empty()
                && !valid_email(&value)
            {
                problems.push(PropertyProblem {
                    name: name.clone(),
                    code: "INVALID_EMAIL",
                    message: format!("Email address {value} is invalid"),
                });
                continue;
            }
            out.push((table.key(name), value));
        }
        if !problems.is_empty() {
            return Err(validation_error(problems));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Finds a live record by id.
    pub fn get(&self, object: ObjectType, id: u64) -> Option<&Record> {
        self.table(object)
            .records
            .get(&id)
            .filter(|r| !r.archived())
    }

    /// Resolves an id or unique property value (`idProperty`) to a record id.
    pub fn resolve(
        &self,
        object: ObjectType,
        key: &str,
        id_property: Option<&str>,
        archived: bool,
    ) -> Option<u64> {
        let table = self.table(object);
        match id_property {
            None | Some("hs_object_id") => {
                let id = key.parse::<u64>().ok()?;
                table
                    .records
                    .get(&id)
                    .filter(|r| r.archived() == archived)
                    .map(|r| r.id)
            }
            Some("email") if object == ObjectType::Contacts && !archived => {
                table.email_index.get(&key.trim().to_lowercase()).copied()
            }
            Some(prop) => table
                .records
                .values()
                .find(|r| {
                    r.archived() == archived
                        && r.get(prop).is_some_and(|v| v.eq_ignore_ascii_case(key))
                })
                .map(|r| r.id),
        }
    }

    /// Whether a unique email is taken by a live contact other than `except`.
    fn email_owner(&self, email: &str, except: Option<u64>) -> Option<u64> {
        self.table(ObjectType::Contacts)
            .email_index
            .get(&email.trim().to_lowercase())
            .copied()
            .filter(|id| Some(*id) != except)
    }

    /// Creates records atomically: all inputs are validated first and nothing is written on error.
    pub fn create_many(
        &mut self,
        object: ObjectType,
        inputs: Vec<Props>,
        now_ms: i64,
        lag_ms: i64,
        fixed_ids: Option<Vec<Option<u64>>>,
    ) -> ApiResult<Vec<u64>> {
        if object == ObjectType::Contacts {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for p in &inputs {
                if let Some(e) = props_get(p, "email").filter(|e| !e.is_empty()) {
                    if let Some(id) = self.email_owner(e, None) {
                        return Err(ApiError::contact_exists(id));
                    }
                    let k = e.trim().to_lowercase();
                    if seen.insert(k.clone(), 0).is_some() {
                        return Err(ApiError::validation(format!(
                            "Duplicate email in batch input: {k}"
                        )));
                    }
                }
            }
        }
        let mut ids = Vec::with_capacity(inputs.len());
        for (i, props) in inputs.into_iter().enumerate() {
            let fixed = fixed_ids.as_ref().and_then(|f| f.get(i).copied().flatten());
            let id = match fixed {
                Some(id) => {
                    self.next_id = self.next_id.max(id + 1);
                    id
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    id
                }
            };
            let table = self.table_mut(object);
            table.index_insert(object, id, &props);
            table.live += 1;
            table.records.insert(
                id,
                Record {
                    id,
                    props,
                    created_ms: now_ms,
                    updated_ms: now_ms,
                    archived_ms: None,
                    visible_at_ms: now_ms + lag_ms,
                    search_prev: None,
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    /// Checks that an update would not break email uniqueness.
    pub fn check_update(&self, object: ObjectType, id: u64, props: &Props) -> ApiResult<()> {
        if object == ObjectType::Contacts
            && let Some(e) = props_get(props, "email").filter(|e| !e.is_empty())
            && let Some(other) = self.email_owner(e, Some(id))
        {
            return Err(ApiError::contact_exists(other));
        }
        Ok(())
    }

    /// Merges property values into a live record. Empty strings clear a value, as in HubSpot.
    pub fn update(
        &mut self,
        object: ObjectType,
        id: u64,
        props: Props,
        now_ms: i64,
        lag_ms: i64,
    ) -> ApiResult<()> {
        self.check_update(object, id, &props)?;
        let table = self.table_mut(object);
        let Some(rec) = table.records.get(&id).filter(|r| !r.archived()) else {
            return Err(ApiError::not_found(format!("Object {id} not found")));
        };
        let old = rec.props.clone();
        let mut merged = old.clone();
        for (k, v) in props {
            match merged.binary_search_by(|(mk, _)| mk.as_ref().cmp(k.as_ref())) {
                Ok(i) if v.is_empty() => {
                    merged.remove(i);
                }
                Ok(i) => merged[i].1 = v,
                Err(_) if v.is_empty() => {}
                Err(i) => merged.insert(i, (k, v)),
            }
        }
        table.index_remove(object, id, &old);
        table.index_insert(object, id, &merged);
        if let Some(rec) = table.records.get_mut(&id) {
            if lag_ms > 0 {
                // Search keeps seeing the version it had indexed until the lag has passed.
                if now_ms >= rec.visible_at_ms {
                    rec.search_prev = Some(Box::new(old));
                }
                rec.visible_at_ms = now_ms + lag_ms;
            } else {
                rec.search_prev = None;
                rec.visible_at_ms = now_ms;
            }
            rec.props = merged;
            rec.updated_ms = now_ms;
        }
        Ok(())
    }

    /// Archives a record; returns whether it existed.
    pub fn archive(&mut self, object: ObjectType, id: u64, now_ms: i64) -> bool {
        let table = self.table_mut(object);
        let Some(rec) = table.records.get(&id).filter(|r| !r.archived()) else {
            return false;
        };
        let props = rec.props.clone();
        table.index_remove(object, id, &props);
        table.live = table.live.saturating_sub(1);
        if let Some(rec) = table.records.get_mut(&id) {
            rec.archived_ms = Some(now_ms);
            rec.updated_ms = now_ms;
        }
        true
    }

    /// Adds an association in both directions; fails when either record is missing.
    pub fn associate(
        &mut self,
        from: ObjectType,
        from_id: u64,
        to: ObjectType,
        to_id: u64,
        type_id: Option<u32>,
        category: &str,
    ) -> ApiResult<u32> {
        if self.get(from, from_id).is_none() {
            return Err(ApiError::not_found(format!(
                "No {} with ID {from_id} exists",
                from.singular_upper()
            )));
        }
        if self.get(to, to_id).is_none() {
            return Err(ApiError::not_found(format!(
                "No {} with ID {to_id} exists",
                to.singular_upper()
            )));
        }
        let type_id = match type_id.or_else(|| default_association_type(from, to)) {
            Some(t) => t,
            None => {
                return Err(ApiError::validation(format!(
                    "No default association type from {} to {}",
                    from.name(),
                    to.name()
                )));
            }
        };
        let reverse = reverse_association_type(from, to, type_id);
        let category: Cow<'static, str> = match category {
            "HUBSPOT_DEFINED" => Cow::Borrowed("HUBSPOT_DEFINED"),
            "USER_DEFINED" => Cow::Borrowed("USER_DEFINED"),
            "INTEGRATOR_DEFINED" => Cow::Borrowed("INTEGRATOR_DEFINED"),
            other => Cow::Owned(other.to_owned()),
        };
        let edge = AssocEdge {
            to_type: to,
            to_id,
            category: category.clone(),
            type_id,
        };
        let back = AssocEdge {
            to_type: from,
            to_id: from_id,
            category,
            type_id: reverse,
        };
        for (key, e) in [((from, from_id), edge), ((to, to_id), back)] {
            let list = self.associations.entry(key).or_default();
            if !list.contains(&e) {
                list.push(e);
            }
        }
        Ok(type_id)
    }

    /// The associations of a record to one object type.
    pub fn associations_of(&self, from: ObjectType, id: u64, to: ObjectType) -> Vec<&AssocEdge> {
        self.associations
            .get(&(from, id))
            .map(|l| l.iter().filter(|e| e.to_type == to).collect())
            .unwrap_or_default()
    }

    /// Removes every record (keeps settings, owners, users, properties).
    pub fn clear_records(&mut self) {
        for t in &mut self.tables {
            t.records.clear();
            t.email_index.clear();
            t.domain_index.clear();
            t.live = 0;
        }
        self.associations.clear();
    }
}

/// HubSpot rejects addresses without a local part and a dotted domain.
fn valid_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(' ')
        }
        None => false,
    }
}

/// Which properties a read returns.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// HubSpot's default set of the object type.
    Default,
    /// The named ones (plus the always-returned id and dates).
    Named(Vec<String>),
}

impl Wanted {
    /// From a `properties=a,b` query value or a JSON list; empty means default.
    pub fn from_list(list: Vec<String>) -> Self {
        let list: Vec<String> = list
            .into_iter()
            .flat_map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            Wanted::Default
        } else {
            Wanted::Named(list)
        }
    }
}

/// Renders a record as HubSpot's `SimplePublicObject`.
pub fn render(object: ObjectType, rec: &Record, props: &Props, wanted: &Wanted) -> Value {
    let mut out = Map::new();
    let mut put = |name: &str| {
        let v = value_of(object, rec, props, name).map(|c| Value::String(c.into_owned()));
        out.insert(name.to_owned(), v.unwrap_or(Value::Null));
    };
    match wanted {
        Wanted::Default => object.default_properties().iter().for_each(|n| put(n)),
        Wanted::Named(names) => {
            for n in [
                "hs_object_id",
                object.create_date_property(),
                object.last_modified_property(),
            ] {
                put(n);
            }
            names.iter().for_each(|n| put(n));
        }
    }
    let mut obj = json!({
        "id": rec.id.to_string(),
        "properties": Value::Object(out),
        "createdAt": iso(rec.created_ms),
        "updatedAt": iso(rec.updated_ms),
        "archived": rec.archived(),
    });
    if let (Some(ms), Some(o)) = (rec.archived_ms, obj.as_object_mut()) {
        o.insert("archivedAt".into(), json!(iso(ms)));
    }
    obj
}

/// Renders a property definition as HubSpot's `Property`.
pub fn render_property(def: &PropertyDef, created_ms: i64) -> Value {
    json!({
        "name": def.name,
        "label": def.label,
        "type": def.kind,
        "fieldType": def.field_type,
        "description": def.description,
        "groupName": def.group_name,
        "options": def.options.iter().map(|o| json!({
            "label": o.label,
            "value": o.value,
            "displayOrder": o.display_order,
            "hidden": o.hidden,
            "description": o.description,
        })).collect::<Vec<_>>(),
        "displayOrder": def.display_order,
        "calculated": def.calculated,
        "externalOptions": false,
        "hasUniqueValue": def.has_unique_value,
        "hidden": def.hidden,
        "hubspotDefined": def.hubspot_defined,
        "formField": !def.read_only_value,
        "modificationMetadata": {
            "archivable": !def.hubspot_defined,
            "readOnlyDefinition": def.hubspot_defined,
            "readOnlyValue": def.read_only_value,
        },
        "createdAt": iso(created_ms),
        "updatedAt": iso(created_ms),
        "archived": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal() -> PortalState {
        let mut seed = PortalSeed::new(1);
        seed.owners.push(OwnerSeed {
            id: "55".into(),
            email: "o@x.com".into(),
            first_name: "O".into(),
            last_name: "W".into(),
            user_id: Some(1),
            archived: false,
            teams: vec![],
        });
        PortalState::from_seed(&seed, 0).expect("seed")
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn validation_rules() {
        let p = portal();
        let cases: Vec<(ObjectType, Value, Option<&str>)> = vec![
            (
                ObjectType::Companies,
                json!({"industry": "COMPUTER_SOFTWARE"}),
                None,
            ),
            (
                ObjectType::Companies,
                json!({"industry": "computer_software"}),
                Some("INVALID_OPTION"),
            ),
            (
                ObjectType::Companies,
                json!({"industry": "Tech"}),
                Some("INVALID_OPTION"),
            ),
            (ObjectType::Companies, json!({"industry": ""}), None),
            (
                ObjectType::Companies,
                json!({"nope": "x"}),
                Some("PROPERTY_DOESNT_EXIST"),
            ),
            (
                ObjectType::Companies,
                json!({"hs_object_id": "1"}),
                Some("READ_ONLY_VALUE"),
            ),
            (
                ObjectType::Companies,
                json!({"createdate": "1"}),
                Some("READ_ONLY_VALUE"),
            ),
            (
                ObjectType::Contacts,
                json!({"hubspot_owner_id": "55"}),
                None,
            ),
            (
                ObjectType::Contacts,
                json!({"hubspot_owner_id": "56"}),
                Some("INVALID_OPTION"),
            ),
            (
                ObjectType::Contacts,
                json!({"email": "not-an-email"}),
                Some("INVALID_EMAIL"),
            ),
            (
                ObjectType::Deals,
                json!({"dealstage": "closedwon", "pipeline": "default"}),
                None,
            ),
            (ObjectType::Deals, json!({"amount": 10}), None),
        ];
        for (object, input, want) in cases {
            let got = p.validate(object, &map(input.clone()), false);
            match want {
                None => assert!(got.is_ok(), "{input}: {got:?}"),
                Some(code) => {
                    let e = got.expect_err(&input.to_string());
                    assert_eq!(e.status, 400);
                    assert_eq!(e.category, "VALIDATION_ERROR");
                    assert_eq!(e.errors[0].code.as_deref(), Some(code), "{input}");
                    assert!(e.message.contains(code), "{}", e.message);
                }
            }
        }
    }

    #[test]
    fn invalid_option_message_lists_allowed_values() {
        let p = portal();
        let e = p
            .validate(
                ObjectType::Companies,
                &map(json!({"industry": "Tech"})),
                false,
            )
            .expect_err("invalid");
        assert!(
            e.errors[0]
                .message
                .starts_with("Tech was not one of the allowed options: [ACCOUNTING, ")
        );
        assert!(e.errors[0].message.contains("COMPUTER_SOFTWARE"));
    }

    #[test]
    fn email_is_unique_case_insensitively() {
        let mut p = portal();
        let a = p
            .validate(
                ObjectType::Contacts,
                &map(json!({"email": "A@x.com"})),
                false,
            )
            .expect("ok");
        let ids = p
            .create_many(ObjectType::Contacts, vec![a], 0, 0, None)
            .expect("create");
        let b = p
            .validate(
                ObjectType::Contacts,
                &map(json!({"email": "a@X.com "})),
                false,
            )
            .expect("ok");
        let e = p
            .create_many(ObjectType::Contacts, vec![b.clone()], 0, 0, None)
            .expect_err("dup");
        assert_eq!(e.status, 409);
        assert_eq!(
            e.message,
            format!("Contact already exists. Existing ID: {}", ids[0])
        );
        assert!(p.archive(ObjectType::Contacts, ids[0], 1));
        assert!(
            p.create_many(ObjectType::Contacts, vec![b], 2, 0, None)
                .is_ok()
        );
    }

    #[test]
    fn update_merges_and_clears() {
        let mut p = portal();
        let a = p
            .validate(
                ObjectType::Contacts,
                &map(json!({"firstname": "A", "lastname": "B"})),
                false,
            )
            .expect("ok");
        let id = p
            .create_many(ObjectType::Contacts, vec![a], 0, 0, None)
            .expect("create")[0];
        let u = p
            .validate(
                ObjectType::Contacts,
                &map(json!({"firstname": "C", "lastname": ""})),
                false,
            )
            .expect("ok");
        p.update(ObjectType::Contacts, id, u, 5, 0).expect("update");
        let r = p.get(ObjectType::Contacts, id).expect("exists");
        assert_eq!(r.get("firstname"), Some("C"));
        assert_eq!(r.get("lastname"), None);
        assert_eq!(r.updated_ms, 5);
    }

    #[test]
    fn search_lag_keeps_previous_version_visible() {
        let mut p = portal();
        let a = p
            .validate(ObjectType::Contacts, &map(json!({"firstname": "A"})), false)
            .expect("ok");
        let id = p
            .create_many(ObjectType::Contacts, vec![a], 0, 100, None)
            .expect("create")[0];
        let r = p.get(ObjectType::Contacts, id).expect("exists");
        assert!(r.searchable_props(50).is_none());
        assert!(r.searchable_props(100).is_some());
        let u = p
            .validate(ObjectType::Contacts, &map(json!({"firstname": "B"})), false)
            .expect("ok");
        p.update(ObjectType::Contacts, id, u, 200, 100)
            .expect("update");
        let r = p.get(ObjectType::Contacts, id).expect("exists");
        assert_eq!(
            r.searchable_props(250)
                .and_then(|s| props_get(s, "firstname")),
            Some("A")
        );
        assert_eq!(
            r.searchable_props(300)
                .and_then(|s| props_get(s, "firstname")),
            Some("B")
        );
    }
}
