//! CRM objects v3 (list, get, create, update, archive, batch, search) and associations v4.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AppState, PortalCtx, QueryParams, parse_body};
use crate::api_error::{ApiError, ApiResult};
use crate::clock::{iso, now_ms};
use crate::objects::{ObjectType, default_association_type};
use crate::search::{SearchRequest, execute};
use crate::store::{PortalState, Record, Wanted, render};

/// Inputs a batch call accepts.
const MAX_BATCH: usize = 100;
/// Record ids an associations batch read accepts (HubSpot's limit since 2025-02-10).
const MAX_ASSOC_READ: usize = 1000;
/// Associated records per record and page of an associations batch read.
pub(crate) const ASSOC_PAGE: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/crm/v3/objects/{object}", get(list).post(create))
        .route("/crm/v3/objects/{object}/search", post(search))
        .route("/crm/v3/objects/{object}/batch/{action}", post(batch))
        .route(
            "/crm/v3/objects/{object}/{id}",
            get(read).patch(update).delete(archive),
        )
        .route(
            "/crm/v4/objects/{from}/{from_id}/associations/default/{to}/{to_id}",
            put(associate_default),
        )
        .route(
            "/crm/v4/objects/{from}/{from_id}/associations/{to}/{to_id}",
            put(associate_labelled),
        )
        .route(
            "/crm/v4/objects/{from}/{from_id}/associations/{to}",
            get(list_associations),
        )
        .route(
            "/crm/v4/associations/{from}/{to}/batch/{action}",
            post(batch_associations),
        )
        .route(
            "/crm/v4/associations/{from}/{to}/batch/associate/default",
            post(batch_associate_default),
        )
}

fn object_of(name: &str) -> ApiResult<ObjectType> {
    ObjectType::parse(name)
        .ok_or_else(|| ApiError::validation(format!("Unable to infer object type from: {name}")))
}

fn lag_ms(app: &AppState) -> i64 {
    app.shared.settings.read().search_lag_ms
}

fn parse_id(id: &str) -> Option<u64> {
    id.trim().parse().ok()
}

/// Adds `associations` of the requested types to a rendered record.
fn with_associations(
    state: &PortalState,
    object: ObjectType,
    rec: &Record,
    mut body: Value,
    wanted: &[String],
) -> Value {
    let mut out = Map::new();
    for name in wanted.iter().flat_map(|w| w.split(',')) {
        let Some(to) = ObjectType::parse(name.trim()) else {
            continue;
        };
        let edges = state.associations_of(object, rec.id, to);
        if edges.is_empty() {
            continue;
        }
        let results: Vec<Value> = edges
            .iter()
            .map(|e| {
                json!({
                    "id": e.to_id.to_string(),
                    "type": format!(
                        "{}_to_{}",
                        object.singular_upper().to_lowercase(),
                        to.singular_upper().to_lowercase()
                    ),
                })
            })
            .collect();
        out.insert(to.name().to_owned(), json!({ "results": results }));
    }
    if !out.is_empty() {
        body["associations"] = Value::Object(out);
    }
    body
}

async fn list(
    Extension(ctx): Extension<PortalCtx>,
    Path(object): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let q = QueryParams::parse(raw.as_deref());
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::validation(format!("limit must be a number; got {l}")))?,
        None => 10,
    }
    .clamp(1, 100);
    let after = match q.get("after") {
        Some(a) => parse_id(a).ok_or_else(|| {
            ApiError::validation(format!(
                "after must be a cursor from paging.next.after; got {a}"
            ))
        })?,
        None => 0,
    };
    let archived = q.flag("archived");
    let wanted = Wanted::from_list(q.all("properties"));
    let assoc = q.all("associations");
    let s = ctx.portal.state.read();
    let mut iter = s
        .table(t)
        .records
        .range(after..)
        .map(|(_, r)| r)
        .filter(|r| r.archived() == archived);
    let page: Vec<&Record> = iter.by_ref().take(limit).collect();
    let next = iter.next().map(|r| r.id);
    let results: Vec<Value> = page
        .iter()
        .map(|r| with_associations(&s, t, r, render(t, r, &r.props, &wanted), &assoc))
        .collect();
    let mut body = json!({ "results": results });
    if let Some(n) = next {
        body["paging"] = json!({ "next": { "after": n.to_string() } });
    }
    Ok(Json(body))
}

async fn read(
    Extension(ctx): Extension<PortalCtx>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let q = QueryParams::parse(raw.as_deref());
    let wanted = Wanted::from_list(q.all("properties"));
    let s = ctx.portal.state.read();
    let rid = s
        .resolve(t, &id, q.get("idProperty"), q.flag("archived"))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Object not found.  objectId are usually numeric.  {id}"
            ))
        })?;
    let rec = s
        .table(t)
        .records
        .get(&rid)
        .ok_or_else(|| ApiError::not_found(format!("Object {id} not found")))?;
    Ok(Json(with_associations(
        &s,
        t,
        rec,
        render(t, rec, &rec.props, &wanted),
        &q.all("associations"),
    )))
}

#[derive(Debug, Deserialize)]
struct AssocTo {
    id: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssocType {
    #[serde(default)]
    association_category: Option<String>,
    association_type_id: u32,
}

#[derive(Debug, Deserialize)]
struct InlineAssociation {
    to: AssocTo,
    #[serde(default)]
    types: Vec<AssocType>,
}

#[derive(Debug, Deserialize)]
struct CreateInput {
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    associations: Vec<InlineAssociation>,
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The object type an association type id points to from `from` (HubSpot infers it from the id).
fn target_of(from: ObjectType, type_id: u32) -> Option<ObjectType> {
    let primary = match (from, type_id) {
        (ObjectType::Contacts, 1) | (ObjectType::Deals, 5) => Some(ObjectType::Companies),
        (ObjectType::Companies, 2) => Some(ObjectType::Contacts),
        (ObjectType::Companies, 6) => Some(ObjectType::Deals),
        _ => None,
    };
    primary.or_else(|| {
        ObjectType::ALL
            .into_iter()
            .find(|to| default_association_type(from, *to) == Some(type_id))
    })
}

/// One planned association: target type, target id, type id, category.
type PlannedAssociation = (ObjectType, u64, u32, String);

/// Checks inline associations before anything is written: targets must exist and types be known.
fn plan_associations(
    state: &PortalState,
    from: ObjectType,
    inputs: &[CreateInput],
) -> ApiResult<Vec<Vec<PlannedAssociation>>> {
    let mut plans = Vec::new();
    for input in inputs {
        let mut plan = Vec::new();
        for a in &input.associations {
            let to_id = parse_id(&id_text(&a.to.id)).ok_or_else(|| {
                ApiError::validation(format!(
                    "Invalid association target id {}",
                    id_text(&a.to.id)
                ))
            })?;
            for ty in &a.types {
                let to = target_of(from, ty.association_type_id).ok_or_else(|| {
                    ApiError::validation(format!(
                        "Association type id {} is not valid from {}",
                        ty.association_type_id,
                        from.name()
                    ))
                })?;
                if state.get(to, to_id).is_none() {
                    return Err(ApiError::validation(format!(
                        "{} {to_id} does not exist; cannot associate",
                        to.singular_upper()
                    )));
                }
                plan.push((
                    to,
                    to_id,
                    ty.association_type_id,
                    ty.association_category
                        .clone()
                        .unwrap_or_else(|| "HUBSPOT_DEFINED".into()),
                ));
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Validates and creates records all-or-nothing, with their inline associations.
fn create_records(
    app: &AppState,
    ctx: &PortalCtx,
    t: ObjectType,
    inputs: Vec<CreateInput>,
) -> ApiResult<Vec<Value>> {
    let now = now_ms();
    let lag = lag_ms(app);
    let mut s = ctx.portal.state.write();
    let mut validated = Vec::with_capacity(inputs.len());
    for i in &inputs {
        validated.push(s.validate(t, &i.properties, false)?);
    }
    let plans = plan_associations(&s, t, &inputs)?;
    let ids = s.create_many(t, validated, now, lag, None)?;
    for (id, plan) in ids.iter().zip(plans) {
        for (to, to_id, type_id, category) in plan {
            s.associate(t, *id, to, to_id, Some(type_id), &category)?;
        }
    }
    Ok(ids
        .iter()
        .filter_map(|id| s.table(t).records.get(id))
        .map(|r| {
            render(
                t,
                r,
                &r.props,
                &Wanted::Named(r.props.iter().map(|(k, _)| k.to_string()).collect()),
            )
        })
        .collect())
}

async fn create(
    State(app): State<AppState>,
    Extension(ctx): Extension<PortalCtx>,
    Path(object): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let t = object_of(&object)?;
    let input: CreateInput = parse_body(&body)?;
    let mut out = create_records(&app, &ctx, t, vec![input])?;
    let rec = out.pop().unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(rec)).into_response())
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    #[serde(default)]
    properties: Map<String, Value>,
}

async fn update(
    State(app): State<AppState>,
    Extension(ctx): Extension<PortalCtx>,
    Path((object, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let q = QueryParams::parse(raw.as_deref());
    let input: UpdateBody = parse_body(&body)?;
    let lag = lag_ms(&app);
    let mut s = ctx.portal.state.write();
    let rid = s
        .resolve(t, &id, q.get("idProperty"), false)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Object not found.  objectId are usually numeric.  {id}"
            ))
        })?;
    let props = s.validate(t, &input.properties, false)?;
    s.update(t, rid, props, now_ms(), lag)?;
    let rec = s
        .table(t)
        .records
        .get(&rid)
        .ok_or_else(|| ApiError::not_found(format!("Object {id} not found")))?;
    let names = rec.props.iter().map(|(k, _)| k.to_string()).collect();
    Ok(Json(render(t, rec, &rec.props, &Wanted::Named(names))))
}

async fn archive(
    Extension(ctx): Extension<PortalCtx>,
    Path((object, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = object_of(&object)?;
    if let Some(rid) = parse_id(&id) {
        ctx.portal.state.write().archive(t, rid, now_ms());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn search(
    Extension(ctx): Extension<PortalCtx>,
    Path(object): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let req: SearchRequest = parse_body(&body)?;
    let s = ctx.portal.state.read();
    Ok(Json(execute(&s, t, &req, now_ms())?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchBody {
    #[serde(default)]
    inputs: Vec<Value>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    id_property: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdInput {
    id: Value,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    id_property: Option<String>,
}

fn batch_envelope(
    status: StatusCode,
    results: Vec<Value>,
    errors: Vec<Value>,
    started: i64,
) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso(started),
        "completedAt": iso(now_ms()),
    });
    let status = if errors.is_empty() {
        status
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

fn missing_error(t: ObjectType, ids: Vec<String>) -> Value {
    json!({
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!(
            "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
            t.singular_upper()
        ),
        "context": { "ids": ids },
        "errors": [],
        "links": {},
    })
}

async fn batch(
    State(app): State<AppState>,
    Extension(ctx): Extension<PortalCtx>,
    Path((object, action)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let t = object_of(&object)?;
    let started = now_ms();
    let q = QueryParams::parse(raw.as_deref());
    let req: BatchBody = parse_body(&body)?;
    if req.inputs.len() > MAX_BATCH {
        return Err(ApiError::validation(format!(
            "Too many inputs: {} exceeds the batch limit of {MAX_BATCH}",
            req.inputs.len()
        )));
    }
    let decode = |v: Value| -> ApiResult<IdInput> {
        serde_json::from_value(v)
            .map_err(|e| ApiError::validation(format!("Invalid input JSON: {e}")))
    };
    match action.as_str() {
        "create" => {
            let inputs = req
                .inputs
                .into_iter()
                .map(|v| {
                    serde_json::from_value::<CreateInput>(v)
                        .map_err(|e| ApiError::validation(format!("Invalid input JSON: {e}")))
                })
                .collect::<ApiResult<Vec<_>>>()?;
            let results = create_records(&app, &ctx, t, inputs)?;
            Ok(batch_envelope(
                StatusCode::CREATED,
                results,
                Vec::new(),
                started,
            ))
        }
        "read" => {
            let wanted = Wanted::from_list(req.properties);
            let archived = q.flag("archived");
            let s = ctx.portal.state.read();
            let mut results = Vec::new();
            let mut missing = Vec::new();
            for v in req.inputs {
                let key = id_text(&decode(v)?.id);
                match s
                    .resolve(t, &key, req.id_property.as_deref(), archived)
                    .and_then(|id| s.table(t).records.get(&id))
                {
                    Some(r) => results.push(render(t, r, &r.props, &wanted)),
                    None => missing.push(key),
                }
            }
            let errors = if missing.is_empty() {
                vec![]
            } else {
                vec![missing_error(t, missing)]
            };
            Ok(batch_envelope(StatusCode::OK, results, errors, started))
        }
        "update" | "upsert" => {
            let upsert = action == "upsert";
            let inputs = req
                .inputs
                .into_iter()
                .map(decode)
                .collect::<ApiResult<Vec<_>>>()?;
            let lag = lag_ms(&app);
            let now = now_ms();
            let mut s = ctx.portal.state.write();
            // Validate everything first: a bad property fails the whole batch, as in HubSpot.
            let mut planned = Vec::new();
            for i in &inputs {
                let key = id_text(&i.id);
                let id_prop = i.id_property.as_deref().or(req.id_property.as_deref());
                let props = s.validate(t, &i.properties, false)?;
                let found = s.resolve(t, &key, id_prop, false);
                if let Some(id) = found {
                    s.check_update(t, id, &props)?;
                }
                planned.push((key, id_prop.map(str::to_owned), found, props));
            }
            let mut results = Vec::new();
            let mut missing = Vec::new();
            for (key, id_prop, found, mut props) in planned {
                let (id, is_new) = match found {
                    Some(id) => {
                        s.update(t, id, props, now, lag)?;
                        (id, false)
                    }
                    None if upsert => {
                        if let Some(p) = id_prop.as_deref().filter(|p| *p != "hs_object_id") {
                            let mut m = Map::new();
                            m.insert(p.to_owned(), Value::String(key.clone()));
                            props.extend(s.validate(t, &m, false)?);
                            props.sort_by(|a, b| a.0.cmp(&b.0));
                            props.dedup_by(|a, b| a.0 == b.0);
                        }
                        (s.create_many(t, vec![props], now, lag, None)?[0], true)
                    }
                    None => {
                        missing.push(key);
                        continue;
                    }
                };
                if let Some(r) = s.table(t).records.get(&id) {
                    let names = r.props.iter().map(|(k, _)| k.to_string()).collect();
                    let mut v = render(t, r, &r.props, &Wanted::Named(names));
                    if upsert {
                        v["new"] = json!(is_new);
                    }
                    results.push(v);
                }
            }
            let errors = if missing.is_empty() {
                vec![]
            } else {
                vec![missing_error(t, missing)]
            };
            Ok(batch_envelope(StatusCode::OK, results, errors, started))
        }
        "archive" => {
            let inputs = req
                .inputs
                .into_iter()
                .map(decode)
                .collect::<ApiResult<Vec<_>>>()?;
            let now = now_ms();
            let mut s = ctx.portal.state.write();
            for i in inputs {
                if let Some(id) = parse_id(&id_text(&i.id)) {
                    s.archive(t, id, now);
                }
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Err(ApiError::not_found(format!("Unknown batch action {other}"))),
    }
}

fn assoc_pair(
    from: &str,
    from_id: &str,
    to: &str,
    to_id: &str,
) -> ApiResult<(ObjectType, u64, ObjectType, u64)> {
    let f = object_of(from)?;
    let t = object_of(to)?;
    let fid =
        parse_id(from_id).ok_or_else(|| ApiError::validation(format!("Invalid id {from_id}")))?;
    let tid = parse_id(to_id).ok_or_else(|| ApiError::validation(format!("Invalid id {to_id}")))?;
    Ok((f, fid, t, tid))
}

async fn associate_default(
    Extension(ctx): Extension<PortalCtx>,
    Path((from, from_id, to, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let started = now_ms();
    let (f, fid, t, tid) = assoc_pair(&from, &from_id, &to, &to_id)?;
    let type_id = ctx
        .portal
        .state
        .write()
        .associate(f, fid, t, tid, None, "HUBSPOT_DEFINED")?;
    let result = json!({
        "from": { "id": fid.to_string() },
        "to": { "id": tid.to_string() },
        "associationSpec": { "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id },
    });
    Ok(batch_envelope(
        StatusCode::OK,
        vec![result],
        vec![],
        started,
    ))
}

async fn associate_labelled(
    Extension(ctx): Extension<PortalCtx>,
    Path((from, from_id, to, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (f, fid, t, tid) = assoc_pair(&from, &from_id, &to, &to_id)?;
    let types: Vec<AssocType> = parse_body(&body)?;
    let mut s = ctx.portal.state.write();
    for ty in &types {
        let category = ty
            .association_category
            .as_deref()
            .unwrap_or("HUBSPOT_DEFINED");
        s.associate(f, fid, t, tid, Some(ty.association_type_id), category)?;
    }
    let body = json!({
        "fromObjectTypeId": f.type_id(),
        "fromObjectId": fid,
        "toObjectTypeId": t.type_id(),
        "toObjectId": tid,
        "labels": [],
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_associations(
    Extension(ctx): Extension<PortalCtx>,
    Path((from, from_id, to)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let f = object_of(&from)?;
    let t = object_of(&to)?;
    let fid =
        parse_id(&from_id).ok_or_else(|| ApiError::validation(format!("Invalid id {from_id}")))?;
    let s = ctx.portal.state.read();
    Ok(Json(json!({ "results": render_edges(&s, f, fid, t) })))
}

fn render_edges(s: &PortalState, f: ObjectType, fid: u64, t: ObjectType) -> Vec<Value> {
    render_edges_from(s, f, fid, t, 0, usize::MAX)
        .into_iter()
        .map(|(id, types)| json!({ "toObjectId": id, "associationTypes": types }))
        .collect()
}

/// A record's targets of type `t` with ids ≥ `after`, ordered by id, at most `limit`, each with
/// its association types.
fn render_edges_from(
    s: &PortalState,
    f: ObjectType,
    fid: u64,
    t: ObjectType,
    after: u64,
    limit: usize,
) -> Vec<(u64, Vec<Value>)> {
    let mut by_target: std::collections::BTreeMap<u64, Vec<Value>> = Default::default();
    for e in s.associations_of(f, fid, t) {
        if e.to_id >= after {
            by_target.entry(e.to_id).or_default().push(json!({
                "category": e.category,
                "typeId": e.type_id,
                "label": association_label(e.type_id),
            }));
        }
    }
    by_target.into_iter().take(limit).collect()
}

/// HubSpot labels its primary association types "Primary"; unlabeled ones have no label.
fn association_label(type_id: u32) -> Option<&'static str> {
    matches!(type_id, 1 | 2 | 5 | 6).then_some("Primary")
}

#[derive(Debug, Deserialize)]
struct PairInput {
    from: AssocTo,
    to: AssocTo,
    #[serde(default)]
    types: Vec<AssocType>,
}

async fn batch_associate_default(
    Extension(ctx): Extension<PortalCtx>,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    batch_associate(ctx, from, to, body, true).await
}

async fn batch_associations(
    Extension(ctx): Extension<PortalCtx>,
    Path((from, to, action)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    match action.as_str() {
        "create" => batch_associate(ctx, from, to, body, false).await,
        "read" => read_associations(ctx, from, to, body),
        other => Err(ApiError::not_found(format!(
            "Unknown association batch action {other}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct ReadAssocInput {
    id: Value,
    #[serde(default)]
    after: Option<String>,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: at most [`MAX_ASSOC_READ`] ids; each record's
/// associations come in pages of [`ASSOC_PAGE`] targets (ordered by id, `paging.next.after` to go on);
/// a record without any gets a `NO_ASSOCIATIONS_FOUND` error entry and the answer becomes a 207.
fn read_associations(ctx: PortalCtx, from: String, to: String, body: Bytes) -> ApiResult<Response> {
    let started = now_ms();
    let f = object_of(&from)?;
    let t = object_of(&to)?;
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        inputs: Vec<ReadAssocInput>,
    }
    let req: Body = parse_body(&body)?;
    if req.inputs.len() > MAX_ASSOC_READ {
        return Err(ApiError::validation(format!(
            "Too many inputs: {} exceeds the batch read limit of {MAX_ASSOC_READ} ids",
            req.inputs.len()
        )));
    }
    let s = ctx.portal.state.read();
    let mut results = Vec::with_capacity(req.inputs.len());
    let mut errors = Vec::new();
    for input in req.inputs {
        let key = id_text(&input.id);
        let after = match input.after.as_deref() {
            None => 0,
            Some(a) => parse_id(a).ok_or_else(|| {
                ApiError::validation(format!(
                    "after must be a cursor from paging.next.after; got {a}"
                ))
            })?,
        };
        let edges = parse_id(&key)
            .map(|id| render_edges_from(&s, f, id, t, after, ASSOC_PAGE + 1))
            .unwrap_or_default();
        if edges.is_empty() {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": format!("No {} is associated with {} {key}.",
                    t.singular_upper().to_lowercase(), f.singular_upper().to_lowercase()),
                "context": {
                    "fromObjectId": [key],
                    "fromObjectType": [f.singular_upper().to_lowercase()],
                    "toObjectType": [t.singular_upper().to_lowercase()],
                },
                "errors": [],
                "links": {},
            }));
            continue;
        }
        let (page, next) = match edges.get(ASSOC_PAGE) {
            Some((next, _)) => (&edges[..ASSOC_PAGE], Some(*next)),
            None => (&edges[..], None),
        };
        let mut result = json!({
            "from": { "id": key },
            "to": page.iter().map(|(id, types)| json!({ "toObjectId": id, "associationTypes": types })).collect::<Vec<_>>(),
        });
        if let Some(n) = next {
            result["paging"] = json!({ "next": { "after": n.to_string() } });
        }
        results.push(result);
    }
    Ok(batch_envelope(StatusCode::OK, results, errors, started))
}

async fn batch_associate(
    ctx: PortalCtx,
    from: String,
    to: String,
    body: Bytes,
    default: bool,
) -> ApiResult<Response> {
    let started = now_ms();
    let f = object_of(&from)?;
    let t = object_of(&to)?;
    #[derive(Deserialize)]
    struct Body {
        inputs: Vec<PairInput>,
    }
    let req: Body = parse_body(&body)?;
    if req.inputs.len() > MAX_BATCH * 10 {
        return Err(ApiError::validation(format!(
            "Too many inputs: {} exceeds the batch limit of {}",
            req.inputs.len(),
            MAX_BATCH * 10
        )));
    }
    let mut s = ctx.portal.state.write();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for i in req.inputs {
        let (fid, tid) = (id_text(&i.from.id), id_text(&i.to.id));
        let (Some(a), Some(b)) = (parse_id(&fid), parse_id(&tid)) else {
            errors.push(json!({"status": "error", "category": "VALIDATION_ERROR", "message": format!("Invalid ids {fid} -> {tid}"), "context": {}, "errors": [], "links": {}}));
            continue;
        };
        let types: Vec<(Option<u32>, String)> = if default || i.types.is_empty() {
            vec![(None, "HUBSPOT_DEFINED".into())]
        } else {
            i.types
                .iter()
                .map(|ty| {
                    (
                        Some(ty.association_type_id),
                        ty.association_category
                            .clone()
                            .unwrap_or_else(|| "HUBSPOT_DEFINED".into()),
                    )
                })
                .collect()
        };
        for (type_id, category) in types {
            match s.associate(f, a, t, b, type_id, &category) {
                Ok(type_id) => results.push(if default {
                    json!({
                        "from": { "id": fid },
                        "to": { "id": tid },
                        "associationSpec": { "associationCategory": category, "associationTypeId": type_id },
                    })
                } else {
                    json!({
                        "fromObjectTypeId": f.type_id(),
                        "fromObjectId": a,
                        "toObjectTypeId": t.type_id(),
                        "toObjectId": b,
                        "labels": [],
                    })
                }),
                Err(e) => errors.push(json!({
                    "status": "error",
                    "category": e.category,
                    "message": e.message,
                    "context": { "fromId": [fid], "toId": [tid] },
                    "errors": [],
                    "links": {},
                })),
            }
        }
    }
    let status = if default {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(batch_envelope(status, results, errors, started))
}
