//! HTTP surface: HubSpot's API routes, OAuth routes and the `/_sandbox` admin API, plus the gate every
//! non-admin request passes (faults, bearer auth, rate limits, request log).

mod account;
mod admin;
mod crm;
mod oauth;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;

use crate::api_error::ApiError;
use crate::clock::{iso, now_ms};
use crate::control::{Portal, SandboxControl, Shared};
use crate::faults::FaultKind;
use crate::limits::CallKind;
use crate::oauth::AuthFailure;
use crate::reqlog::LoggedRequest;

/// State of every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub shared: Arc<Shared>,
    pub control: SandboxControl,
}

/// Lets a handler ask the connection task to drop the connection (fault `reset`).
#[derive(Clone, Default)]
pub(crate) struct ConnReset(pub Arc<Notify>);

/// The authenticated portal of an API request.
#[derive(Clone)]
pub(crate) struct PortalCtx {
    pub portal: Arc<Portal>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Parses a JSON body into `T`, answering HubSpot's 400 on malformed input.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(format!(
            "Invalid input JSON on line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// Query parameters in order, repeated keys kept (`properties=a&properties=b`).
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let api = crm::routes()
        .merge(account::routes())
        .merge(oauth::routes())
        .layer(middleware::from_fn_with_state(state.clone(), gate));
    Router::new()
        .merge(api)
        .nest("/_sandbox", admin::routes())
        .with_state(state)
}

fn bearer(req: &Request) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn fault_response(kind: &FaultKind) -> Response {
    match kind {
        FaultKind::Status {
            status,
            retry_after_secs,
        } => {
            let (category, message) = match status {
                423 => (
                    "LOCKED",
                    "The resource is locked; retry after a short wait.",
                ),
                477 => (
                    "MIGRATION_IN_PROGRESS",
                    "The portal is being migrated; retry later.",
                ),
                502 => ("BAD_GATEWAY", "Bad gateway."),
                503 => ("SERVICE_UNAVAILABLE", "Service unavailable."),
                504 => ("GATEWAY_TIMEOUT", "Gateway timeout."),
                _ => ("INTERNAL_ERROR", "internal error"),
            };
            let mut e = ApiError::new(*status, category, message);
            e.retry_after = retry_after_secs.or(match status {
                477 => Some(1),
                423 => Some(2),
                _ => None,
            });
            e.into_response()
        }
        FaultKind::RateLimit { policy_name } => ApiError::rate_limited(policy_name).into_response(),
        FaultKind::Latency { .. } | FaultKind::Reset => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn auth_error(f: AuthFailure) -> ApiError {
    match f {
        AuthFailure::Missing => ApiError::unauthorized(
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ),
        AuthFailure::Invalid => ApiError::unauthorized(
            "INVALID_AUTHENTICATION",
            "Authentication credentials not valid: the OAuth token is unknown or was revoked.",
        ),
        AuthFailure::Expired(ms) => ApiError::unauthorized(
            "EXPIRED_AUTHENTICATION",
            format!(
                "The OAuth token used to make this call expired {} minute(s) ago.",
                ms / 60_000
            ),
        ),
    }
}

/// Faults, authentication, rate limits and the request log for every HubSpot route.
async fn gate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let time = iso(now_ms());
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let is_api = !path.starts_with("/oauth/");
    let now = now_ms();
    let auth = is_api.then(|| {
        app.shared
            .tokens
            .lock()
            .authenticate(bearer(&req).as_deref(), now)
    });
    let portal_id = auth
        .as_ref()
        .and_then(|a| a.as_ref().ok())
        .map(|a| a.portal);
    let decision = app.shared.faults.lock().decide(&method, &path, portal_id);
    let mut fault_label = None;
    if decision.latency_ms > 0 {
        fault_label = Some(format!("latency {}ms", decision.latency_ms));
        tokio::time::sleep(std::time::Duration::from_millis(decision.latency_ms)).await;
    }
    let log = |status: u16, fault: Option<String>| {
        app.shared.log.push(LoggedRequest {
            seq: 0,
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status,
            portal: portal_id,
            time: time.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            fault,
        });
    };
    match &decision.terminal {
        Some(FaultKind::Reset) => {
            log(0, Some("reset".into()));
            if let Some(reset) = req.extensions().get::<ConnReset>() {
                reset.0.notify_one();
                // Never answer: the connection task drops the socket once notified.
                std::future::pending::<()>().await;
            }
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(kind) => {
            let resp = fault_response(kind);
            log(resp.status().as_u16(), Some(format!("{kind:?}")));
            return resp;
        }
        None => {}
    }
    let mut limit_headers = Vec::new();
    if let Some(auth) = auth {
        let portal = match auth {
            Ok(a) => app.shared.portal(a.portal),
            Err(f) => {
                let resp = auth_error(f).into_response();
                log(resp.status().as_u16(), fault_label);
                return resp;
            }
        };
        let Some(portal) = portal else {
            let resp = auth_error(AuthFailure::Invalid).into_response();
            log(resp.status().as_u16(), fault_label);
            return resp;
        };
        let kind = if method == "POST" && path.ends_with("/search") {
            CallKind::Search
        } else {
            CallKind::Standard
        };
        let verdict = portal.limiter.lock().check(kind, now);
        limit_headers = verdict.headers;
        if let Some(policy) = verdict.refused {
            let mut resp = ApiError::rate_limited(policy).into_response();
            add_headers(&mut resp, &limit_headers);
            log(429, fault_label);
            return resp;
        }
        req.extensions_mut().insert(PortalCtx { portal });
    }
    let mut resp = next.run(req).await;
    add_headers(&mut resp, &limit_headers);
    log(resp.status().as_u16(), fault_label);
    resp
}

fn add_headers(resp: &mut Response, headers: &[(&'static str, String)]) {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
}

/// 404 for unknown routes, in HubSpot's shape.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"status": "error", "message": "Route not found", "category": "OBJECT_NOT_FOUND"})),
    )
        .into_response()
}
