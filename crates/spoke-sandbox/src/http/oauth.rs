//! OAuth: `/oauth/authorize` (auto-consent), token exchange/refresh (v1 and v3 paths), token metadata,
//! introspection and revocation.

use std::collections::HashMap;

use axum::extract::{Path, Query, RawForm, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::clock::now_ms;
use crate::oauth::{TokenError, TokenInfo};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/v1/token", post(token))
        .route("/oauth/v3/token", post(token))
        .route("/oauth/v3/token/introspect", post(introspect))
        .route("/oauth/v3/token/revoke", post(revoke))
        .route("/oauth/v1/access-tokens/{token}", get(access_token_info))
        .route(
            "/oauth/v1/refresh-tokens/{token}",
            get(refresh_token_info).delete(delete_refresh_token),
        )
}

/// The token endpoint's error shape: `{"status": CODE, "message", "correlationId"}`.
fn oauth_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "status": code,
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

fn form(raw: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

async fn authorize(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let settings = app.shared.settings.read().clone();
    if q.get("client_id") != Some(&settings.oauth.client_id) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_CLIENT_ID",
            "missing or unknown client_id",
        );
    }
    let Some(redirect) = q.get("redirect_uri").and_then(|r| url::Url::parse(r).ok()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_REDIRECT_URI",
            "missing or invalid redirect_uri",
        );
    };
    let portal = match q.get("sandbox_portal") {
        Some(p) => match p.parse::<u64>() {
            Ok(p) => Some(p),
            Err(_) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "BAD_PORTAL",
                    "sandbox_portal must be a number",
                );
            }
        },
        None => settings
            .default_portal
            .or_else(|| app.control.portal_ids().first().copied()),
    };
    let Some(portal) = portal else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_PORTAL",
            "the sandbox has no portal to consent to; seed one",
        );
    };
    let mut scopes: Vec<String> = q
        .get("scope")
        .map(|s| {
            s.split([' ', '+', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(opt) = q.get("optional_scope") {
        scopes.extend(
            opt.split([' ', '+', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    let grant =
        match app
            .control
            .grant_for(portal, q.get("sandbox_user").map(String::as_str), scopes)
        {
            Ok(g) => g,
            Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "BAD_PORTAL", &e.to_string()),
        };
    let redirect_str = q.get("redirect_uri").cloned().unwrap_or_default();
    let code = app
        .shared
        .tokens
        .lock()
        .issue_code(grant, &redirect_str, now_ms());
    let mut target = redirect;
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

async fn token(State(app): State<AppState>, RawForm(raw): RawForm) -> Response {
    let f = form(&raw);
    let settings = app.shared.settings.read().clone();
    if f.get("client_id") != Some(&settings.oauth.client_id) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_CLIENT_ID",
            "missing or unknown client_id",
        );
    }
    if f.get("client_secret") != Some(&settings.oauth.client_secret) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_CLIENT_SECRET",
            "missing or invalid client_secret",
        );
    }
    let now = now_ms();
    let ttl = settings.token_ttl_ms;
    let result = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f.get("code").map(String::as_str).unwrap_or_default();
            let redirect = f
                .get("redirect_uri")
                .map(String::as_str)
                .unwrap_or_default();
            app.shared
                .tokens
                .lock()
                .exchange_code(code, redirect, ttl, now)
        }
        Some("refresh_token") => {
            let rt = f
                .get("refresh_token")
                .map(String::as_str)
                .unwrap_or_default();
            app.shared.tokens.lock().refresh(rt, ttl, now)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "BAD_GRANT_TYPE",
                "grant_type must be authorization_code or refresh_token",
            );
        }
    };
    match result {
        Ok(pair) => Json(pair).into_response(),
        Err(TokenError::BadAuthCode) => oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_AUTH_CODE",
            "missing or unknown auth code",
        ),
        Err(TokenError::BadRedirectUri) => oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_REDIRECT_URI",
            "redirect_uri does not match initial auth code URL",
        ),
        Err(TokenError::BadRefreshToken) => oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_REFRESH_TOKEN",
            "missing or invalid refresh token",
        ),
    }
}

fn hub_domain(app: &AppState, portal: u64) -> String {
    app.shared
        .portal(portal)
        .map(|p| p.state.read().info.ui_domain.clone())
        .unwrap_or_default()
}

fn metadata(app: &AppState, token: &str, info: &TokenInfo, now: i64) -> Value {
    let g = &info.grant;
    let mut v = json!({
        "token": token,
        "user": g.user_email,
        "hub_domain": hub_domain(app, g.portal),
        "scopes": g.scopes,
        "hub_id": g.portal,
        "user_id": g.user_id,
        "token_type": info.kind,
    });
    match info.expires_ms {
        Some(exp) => {
            v["app_id"] = json!(app.shared.settings.read().oauth.app_id);
            v["expires_in"] = json!((exp - now) / 1000);
            v["is_private_distribution"] = json!(false);
        }
        None => v["client_id"] = json!(g.client_id),
    }
    v
}

async fn access_token_info(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let now = now_ms();
    let info = app
        .shared
        .tokens
        .lock()
        .info(&token, now)
        .filter(|i| i.kind == "access");
    match info {
        Some(i) => Json(metadata(&app, &token, &i, now)).into_response(),
        None => oauth_error(
            StatusCode::NOT_FOUND,
            "error",
            "access token does not exist or has expired",
        ),
    }
}

async fn refresh_token_info(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let now = now_ms();
    let info = app
        .shared
        .tokens
        .lock()
        .info(&token, now)
        .filter(|i| i.kind == "refresh");
    match info {
        Some(i) => Json(metadata(&app, &token, &i, now)).into_response(),
        None => oauth_error(
            StatusCode::NOT_FOUND,
            "error",
            "refresh token does not exist or was revoked",
        ),
    }
}

async fn delete_refresh_token(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    if app.shared.tokens.lock().revoke_refresh(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        oauth_error(
            StatusCode::NOT_FOUND,
            "error",
            "refresh token does not exist or was revoked",
        )
    }
}

fn client_ok(app: &AppState, f: &HashMap<String, String>) -> Option<Response> {
    let s = app.shared.settings.read();
    if f.get("client_id") != Some(&s.oauth.client_id) {
        return Some(oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_CLIENT_ID",
            "missing or unknown client_id",
        ));
    }
    if f.get("client_secret") != Some(&s.oauth.client_secret) {
        return Some(oauth_error(
            StatusCode::BAD_REQUEST,
            "BAD_CLIENT_SECRET",
            "missing or invalid client_secret",
        ));
    }
    None
}

async fn introspect(State(app): State<AppState>, RawForm(raw): RawForm) -> Response {
    let f = form(&raw);
    if let Some(err) = client_ok(&app, &f) {
        return err;
    }
    let token = f.get("token").cloned().unwrap_or_default();
    let now = now_ms();
    let info = app.shared.tokens.lock().info(&token, now);
    let Some(info) = info else {
        return Json(json!({ "active": false })).into_response();
    };
    let mut v = metadata(&app, &token, &info, now);
    v["active"] = json!(true);
    v["client_id"] = json!(info.grant.client_id);
    v["scope"] = json!(info.grant.scopes.join(" "));
    if let Some(exp) = info.expires_ms {
        v["exp"] = json!(exp / 1000);
    }
    Json(v).into_response()
}

async fn revoke(State(app): State<AppState>, RawForm(raw): RawForm) -> Response {
    let f = form(&raw);
    if let Some(err) = client_ok(&app, &f) {
        return err;
    }
    let token = f.get("token").cloned().unwrap_or_default();
    app.shared.tokens.lock().revoke_refresh(&token);
    // RFC 7009: revoking an unknown token is not an error.
    StatusCode::OK.into_response()
}
