//! The public HTTP listener: `GET /oauth/callback` completes any flow from the signed state alone
//! (the browser carries no JWT) and renders a short page or redirects to the flow's return URL.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connect::Completed;
use crate::domain::Domain;
use crate::error::Error;

/// Serves the callback on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    domain: Arc<Domain>,
    cancel: CancellationToken,
) -> spoke_platform::Result<()> {
    let app = axum::Router::new()
        .route("/oauth/callback", get(callback))
        .with_state(domain);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    );
    (status, Html(body)).into_response()
}

async fn callback(
    State(domain): State<Arc<Domain>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(err) = q.get("error") {
        let desc = q.get("error_description").map_or("", String::as_str);
        return page(
            StatusCode::BAD_REQUEST,
            "HubSpot was not connected",
            &format!("HubSpot answered {err}. {desc}"),
        );
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "HubSpot was not connected",
            "The link is missing its code or state; start the connection again.",
        );
    };
    match domain.complete_flow(code, state, None, None).await {
        Ok(done) => {
            let (portal, return_url) = done.summary();
            if !return_url.is_empty() {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, return_url)]).into_response();
            }
            let text = match done {
                Completed::Connect(_) => {
                    format!("HubSpot portal {portal} is connected. You can close this window.")
                }
                Completed::ChangePrimary(_) => format!(
                    "You are now the primary admin of HubSpot portal {portal}. You can close this window."
                ),
                Completed::User(_) => {
                    "Your HubSpot account is connected. You can close this window.".to_owned()
                }
            };
            page(StatusCode::OK, "HubSpot connected", &text)
        }
        Err(e) => {
            let status = match &e {
                Error::InvalidArgument(_)
                | Error::FailedPrecondition(_)
                | Error::AlreadyExists(_) => StatusCode::BAD_REQUEST,
                Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
                Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "OAuth callback failed");
                "Something went wrong on our side; try again later.".to_owned()
            } else {
                e.to_string()
            };
            page(status, "HubSpot was not connected", &text)
        }
    }
}
