//! The admin/inspection API under `/_sandbox` (no auth). Each route calls one [`SandboxControl`] method.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AppState, parse_body};
use crate::api_error::ApiError;
use crate::config::RateLimits;
use crate::error::Error;
use crate::faults::FaultRule;
use crate::seed::{PortalSeed, Seed};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/reset", post(reset))
        .route("/seed", post(seed))
        .route("/portals", get(portals).post(create_portal))
        .route("/portals/{id}", delete(remove_portal))
        .route("/portals/{id}/records", delete(clear_records))
        .route("/portals/{id}/records/{object}", post(insert_records))
        .route("/portals/{id}/records/{object}/{record}", get(record))
        .route(
            "/portals/{id}/associations/{from}/{to}",
            post(associate_records),
        )
        .route("/portals/{id}/counts", get(counts))
        .route("/portals/{id}/duplicates/{object}", get(duplicates))
        .route("/portals/{id}/limits", get(get_limits).put(put_limits))
        .route("/portals/{id}/tokens", post(issue_tokens))
        .route("/portals/{id}/private-app-tokens", post(add_private_token))
        .route("/limits", put(put_all_limits))
        .route("/search-lag", put(put_search_lag))
        .route("/token-ttl", put(put_token_ttl))
        .route(
            "/faults",
            get(get_faults)
                .put(put_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/requests", get(requests).delete(clear_requests))
        .route("/tokens/revoke", post(revoke_tokens))
        .route("/tokens/expire", post(expire_tokens))
}

fn admin_error(e: Error) -> Response {
    let status = match e {
        Error::UnknownPortal(_) => 404,
        _ => 400,
    };
    ApiError::new(status, "SANDBOX_ADMIN", e.to_string()).into_response()
}

fn done<T: serde::Serialize>(r: crate::error::Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn reset(State(app): State<AppState>) -> Response {
    done(app.control.reset().map(|_| json!({"reset": true})))
}

async fn seed(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<Seed>(&body) {
        Ok(s) => done(app.control.seed(&s).map(
            |_| json!({"portals": s.portals.iter().map(|p| p.portal_id).collect::<Vec<_>>()}),
        )),
        Err(e) => e.into_response(),
    }
}

async fn portals(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "portals": app.control.portal_ids() }))
}

async fn create_portal(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<PortalSeed>(&body) {
        Ok(p) => match app.control.seed_portal(&p) {
            Ok(()) => (StatusCode::CREATED, Json(json!({"portalId": p.portal_id}))).into_response(),
            Err(e) => admin_error(e),
        },
        Err(e) => e.into_response(),
    }
}

async fn remove_portal(State(app): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    if app.control.remove_portal(id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn clear_records(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    match app.control.clear_records(id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => admin_error(e),
    }
}

async fn insert_records(
    State(app): State<AppState>,
    Path((id, object)): Path<(u64, String)>,
    body: Bytes,
) -> Response {
    match parse_body::<Vec<Map<String, Value>>>(&body) {
        Ok(list) => match app.control.insert_records(id, &object, list) {
            Ok(ids) => (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response(),
            Err(e) => admin_error(e),
        },
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociateBody {
    /// `[from id, to id]` pairs.
    pairs: Vec<(String, String)>,
    #[serde(default)]
    type_id: Option<u32>,
}

async fn associate_records(
    State(app): State<AppState>,
    Path((id, from, to)): Path<(u64, String, String)>,
    body: Bytes,
) -> Response {
    match parse_body::<AssociateBody>(&body) {
        Ok(b) => match app
            .control
            .associate_records(id, &from, &to, &b.pairs, b.type_id)
        {
            Ok(n) => (StatusCode::CREATED, Json(json!({ "associated": n }))).into_response(),
            Err(e) => admin_error(e),
        },
        Err(e) => e.into_response(),
    }
}

async fn record(
    State(app): State<AppState>,
    Path((id, object, record)): Path<(u64, String, String)>,
) -> Response {
    match app.control.record(id, &object, &record) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => ApiError::not_found(format!("record {record} not found")).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn counts(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    done(app.control.counts(id))
}

async fn duplicates(
    State(app): State<AppState>,
    Path((id, object)): Path<(u64, String)>,
) -> Response {
    done(
        app.control
            .duplicates(id, &object)
            .map(|d| json!({ "duplicates": d })),
    )
}

async fn get_limits(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    done(app.control.rate_limits(id))
}

async fn put_limits(State(app): State<AppState>, Path(id): Path<u64>, body: Bytes) -> Response {
    match parse_body::<RateLimits>(&body) {
        Ok(l) => done(app.control.set_rate_limits(Some(id), l).map(|_| l)),
        Err(e) => e.into_response(),
    }
}

async fn put_all_limits(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<RateLimits>(&body) {
        Ok(l) => done(app.control.set_rate_limits(None, l).map(|_| l)),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

async fn put_search_lag(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<Millis>(&body) {
        Ok(m) => {
            app.control
                .set_search_lag(std::time::Duration::from_millis(m.ms));
            Json(json!({ "ms": m.ms })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct Secs {
    secs: u64,
}

async fn put_token_ttl(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<Secs>(&body) {
        Ok(s) => {
            app.control
                .set_token_ttl(std::time::Duration::from_secs(s.secs));
            Json(json!({ "secs": s.secs })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct IssueBody {
    #[serde(default)]
    user: Option<String>,
}

async fn issue_tokens(State(app): State<AppState>, Path(id): Path<u64>, body: Bytes) -> Response {
    let user = if body.is_empty() {
        None
    } else {
        match parse_body::<IssueBody>(&body) {
            Ok(b) => b.user,
            Err(e) => return e.into_response(),
        }
    };
    done(app.control.issue_tokens(id, user.as_deref()))
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn add_private_token(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    match parse_body::<TokenBody>(&body) {
        Ok(t) => done(
            app.control
                .add_private_app_token(id, &t.token)
                .map(|_| json!({"added": true})),
        ),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultsBody {
    rules: Vec<FaultRule>,
    #[serde(default)]
    seed: Option<u64>,
}

async fn get_faults(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "rules": app.control.faults() }))
}

async fn put_faults(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<FaultsBody>(&body) {
        Ok(b) => {
            app.control.set_faults(b.rules, b.seed);
            Json(json!({ "rules": app.control.faults() })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn add_fault(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<FaultRule>(&body) {
        Ok(r) => {
            app.control.add_fault(r);
            Json(json!({ "rules": app.control.faults() })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn clear_faults(State(app): State<AppState>) -> StatusCode {
    app.control.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    portal: Option<u64>,
}

async fn requests(State(app): State<AppState>, Query(q): Query<LogQuery>) -> Json<Value> {
    Json(json!({ "requests": app.control.requests(q.limit.unwrap_or(100), q.portal) }))
}

async fn clear_requests(State(app): State<AppState>) -> StatusCode {
    app.control.clear_requests();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenScope {
    #[serde(default)]
    portal_id: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

fn scope(body: &Bytes) -> Result<TokenScope, ApiError> {
    if body.is_empty() {
        Ok(TokenScope {
            portal_id: None,
            refresh_token: None,
        })
    } else {
        parse_body(body)
    }
}

async fn revoke_tokens(State(app): State<AppState>, body: Bytes) -> Response {
    match scope(&body) {
        Ok(TokenScope {
            refresh_token: Some(t),
            ..
        }) => Json(json!({ "revoked": usize::from(app.control.revoke_refresh_token(&t)) }))
            .into_response(),
        Ok(s) => Json(json!({ "revoked": app.control.revoke_refresh_tokens(s.portal_id) }))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire_tokens(State(app): State<AppState>, body: Bytes) -> Response {
    match scope(&body) {
        Ok(s) => Json(json!({ "expired": app.control.expire_access_tokens(s.portal_id) }))
            .into_response(),
        Err(e) => e.into_response(),
    }
}
