//! Account info, users, owners, properties and pipelines.

use axum::extract::{Path, RawQuery};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{Offset, TimeZone, Utc};
use serde_json::{Value, json};

use super::{AppState, PortalCtx, QueryParams};
use crate::api_error::{ApiError, ApiResult};
use crate::clock::iso;
use crate::objects::ObjectType;
use crate::seed::{OwnerSeed, UserSeed};
use crate::store::render_property;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account-info/v3/details", get(details))
        .route("/settings/v3/users", get(users))
        .route("/settings/v3/users/{id}", get(user))
        .route("/crm/v3/owners", get(owners))
        .route("/crm/v3/owners/", get(owners))
        .route("/crm/v3/owners/{id}", get(owner))
        .route("/crm/v3/properties/{object}", get(properties))
        .route("/crm/v3/properties/{object}/{name}", get(property))
        .route("/crm/v3/pipelines/{object}", get(pipelines))
        .route("/crm/v3/pipelines/{object}/{id}", get(pipeline))
        .route("/crm/v3/pipelines/{object}/{id}/stages", get(stages))
}

fn object_of(name: &str) -> ApiResult<ObjectType> {
    ObjectType::parse(name)
        .ok_or_else(|| ApiError::validation(format!("Unable to infer object type from: {name}")))
}

async fn details(Extension(ctx): Extension<PortalCtx>) -> Json<Value> {
    let s = ctx.portal.state.read();
    let i = &s.info;
    let offset_ms: i64 = i
        .time_zone
        .parse::<chrono_tz::Tz>()
        .map(|tz| {
            i64::from(
                tz.offset_from_utc_datetime(&Utc::now().naive_utc())
                    .fix()
                    .local_minus_utc(),
            ) * 1000
        })
        .unwrap_or(0);
    let mins = offset_ms.abs() / 60_000;
    let sign = if offset_ms < 0 { '-' } else { '+' };
    Json(json!({
        "portalId": i.portal_id,
        "accountType": i.account_type,
        "timeZone": i.time_zone,
        "companyCurrency": i.company_currency,
        "additionalCurrencies": i.additional_currencies,
        "utcOffset": format!("{sign}{:02}:{:02}", mins / 60, mins % 60),
        "utcOffsetMilliseconds": offset_ms,
        "uiDomain": i.ui_domain,
        "dataHostingLocation": i.data_hosting_location,
    }))
}

/// Offset paging over an in-memory list: `(page, next after)`.
fn page<T: Clone>(
    items: &[T],
    q: &QueryParams,
    default_limit: usize,
    max_limit: usize,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::validation(format!("limit must be a number; got {l}")))?,
        None => default_limit,
    }
    .clamp(1, max_limit);
    let start = match q.get("after") {
        Some(a) => a.parse::<usize>().map_err(|_| {
            ApiError::validation(format!(
                "after must be a cursor from paging.next.after; got {a}"
            ))
        })?,
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let out = items.get(start.min(end)..end).unwrap_or_default().to_vec();
    Ok((out, (end < items.len()).then(|| end.to_string())))
}

fn paged(results: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut body = json!({ "results": results });
    if let Some(after) = next {
        body["paging"] = json!({ "next": { "after": after } });
    }
    Json(body)
}

fn render_user(u: &UserSeed) -> Value {
    let mut v = json!({
        "id": u.id,
        "email": u.email,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "roleIds": u.role_ids,
        "superAdmin": u.super_admin,
    });
    if let Some(t) = &u.primary_team_id {
        v["primaryTeamId"] = json!(t);
    }
    v
}

async fn users(
    Extension(ctx): Extension<PortalCtx>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(raw.as_deref());
    let s = ctx.portal.state.read();
    let (items, next) = page(&s.users, &q, 100, 100)?;
    Ok(paged(items.iter().map(render_user).collect(), next))
}

async fn user(
    Extension(ctx): Extension<PortalCtx>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(raw.as_deref());
    let s = ctx.portal.state.read();
    let by_email = q
        .get("idProperty")
        .is_some_and(|p| p.eq_ignore_ascii_case("EMAIL"));
    s.users
        .iter()
        .find(|u| {
            if by_email {
                u.email.eq_ignore_ascii_case(&id)
            } else {
                u.id == id
            }
        })
        .map(|u| Json(render_user(u)))
        .ok_or_else(|| ApiError::not_found(format!("User {id} not found")))
}

fn render_owner(o: &OwnerSeed, created_ms: i64) -> Value {
    let mut v = json!({
        "id": o.id,
        "email": o.email,
        "firstName": o.first_name,
        "lastName": o.last_name,
        "type": "PERSON",
        "createdAt": iso(created_ms),
        "updatedAt": iso(created_ms),
        "archived": o.archived,
        "teams": o.teams,
    });
    if let Some(u) = o.user_id {
        v["userId"] = json!(u);
        v["userIdIncludingInactive"] = json!(u);
    }
    v
}

async fn owners(
    Extension(ctx): Extension<PortalCtx>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(raw.as_deref());
    let s = ctx.portal.state.read();
    let archived = q.flag("archived");
    let email = q.get("email").map(str::to_lowercase);
    let list: Vec<&OwnerSeed> = s
        .owners
        .iter()
        .filter(|o| o.archived == archived)
        .filter(|o| email.as_deref().is_none_or(|e| o.email.to_lowercase() == e))
        .collect();
    let (items, next) = page(&list, &q, 100, 500)?;
    Ok(paged(
        items
            .iter()
            .map(|o| render_owner(o, s.created_ms))
            .collect(),
        next,
    ))
}

async fn owner(
    Extension(ctx): Extension<PortalCtx>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(raw.as_deref());
    let s = ctx.portal.state.read();
    let by_user = q.get("idProperty") == Some("userId");
    s.owners
        .iter()
        .find(|o| {
            if by_user {
                o.user_id.map(|u| u.to_string()) == Some(id.clone())
            } else {
                o.id == id
            }
        })
        .map(|o| Json(render_owner(o, s.created_ms)))
        .ok_or_else(|| ApiError::not_found(format!("Owner {id} not found")))
}

async fn properties(
    Extension(ctx): Extension<PortalCtx>,
    Path(object): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let s = ctx.portal.state.read();
    let results: Vec<Value> = s
        .table(t)
        .defs
        .values()
        .map(|d| render_property(d, s.created_ms))
        .collect();
    Ok(Json(json!({ "results": results })))
}

async fn property(
    Extension(ctx): Extension<PortalCtx>,
    Path((object, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let s = ctx.portal.state.read();
    s.table(t)
        .defs
        .get(&name)
        .map(|d| Json(render_property(d, s.created_ms)))
        .ok_or_else(|| ApiError::not_found(format!("Property {name} does not exist")))
}

fn render_pipeline(p: &crate::seed::PipelineSeed, created_ms: i64) -> Value {
    json!({
        "id": p.id,
        "label": p.label,
        "displayOrder": p.display_order,
        "stages": p.stages.iter().map(|st| render_stage(st, created_ms)).collect::<Vec<_>>(),
        "createdAt": iso(created_ms),
        "updatedAt": iso(created_ms),
        "archived": false,
    })
}

fn render_stage(st: &crate::seed::StageSeed, created_ms: i64) -> Value {
    let mut metadata = json!({ "isClosed": st.is_closed.to_string() });
    if let Some(p) = &st.probability {
        metadata["probability"] = json!(p);
    }
    json!({
        "id": st.id,
        "label": st.label,
        "displayOrder": st.display_order,
        "metadata": metadata,
        "createdAt": iso(created_ms),
        "updatedAt": iso(created_ms),
        "archived": false,
        "writePermissions": "CRUD",
    })
}

async fn pipelines(
    Extension(ctx): Extension<PortalCtx>,
    Path(object): Path<String>,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let s = ctx.portal.state.read();
    let results: Vec<Value> = s
        .pipelines
        .get(&t)
        .map(|ps| {
            ps.iter()
                .map(|p| render_pipeline(p, s.created_ms))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({ "results": results })))
}

async fn pipeline(
    Extension(ctx): Extension<PortalCtx>,
    Path((object, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let s = ctx.portal.state.read();
    s.pipelines
        .get(&t)
        .and_then(|ps| ps.iter().find(|p| p.id == id))
        .map(|p| Json(render_pipeline(p, s.created_ms)))
        .ok_or_else(|| ApiError::not_found(format!("Pipeline {id} not found")))
}

async fn stages(
    Extension(ctx): Extension<PortalCtx>,
    Path((object, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let t = object_of(&object)?;
    let s = ctx.portal.state.read();
    s.pipelines
        .get(&t)
        .and_then(|ps| ps.iter().find(|p| p.id == id))
        .map(|p| Json(json!({ "results": p.stages.iter().map(|st| render_stage(st, s.created_ms)).collect::<Vec<_>>() })))
        .ok_or_else(|| ApiError::not_found(format!("Pipeline {id} not found")))
}
