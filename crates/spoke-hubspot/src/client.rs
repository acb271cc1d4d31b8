//! The client, its per-portal handle, and the one function every call goes through (budget, token,
//! span, trace propagation, metrics, retries, single token refresh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use crate::budget::{Budget, LocalBudget};
use crate::endpoints::Endpoint;
use crate::error::{ApiError, Error, Result};
use crate::retry::RetryPolicy;
use crate::token::TokenSource;

/// Default API base (api.hubapi.com).
pub const DEFAULT_API_BASE: &str = "https://api.hubapi.com";
/// Default app base hosting the OAuth consent page (app.hubspot.com).
pub const DEFAULT_APP_BASE: &str = "https://app.hubspot.com";

/// Settings of a [`HubSpotClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base URL, e.g. `https://api.hubapi.com` or a sandbox's `http://127.0.0.1:PORT`.
    pub api_base_url: String,
    /// App base URL for `/oauth/authorize`, e.g. `https://app.hubspot.com`.
    pub app_base_url: String,
    /// Retry policy for every call.
    pub retry: RetryPolicy,
    /// Timeout of one attempt (connect + response body).
    pub request_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_base_url: DEFAULT_API_BASE.into(),
            app_base_url: DEFAULT_APP_BASE.into(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("spoke-hubspot/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// The HubSpot client: cheap to clone, shared by all portals of a service.
#[derive(Clone)]
pub struct HubSpotClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: Url,
    app_base: Url,
    retry: RetryPolicy,
    timeout: Duration,
    budget: Arc<dyn Budget>,
}

impl std::fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotClient")
            .field("api_base", &self.inner.api_base.as_str())
            .field("app_base", &self.inner.app_base.as_str())
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl HubSpotClient {
    /// Builds a client with the in-process [`LocalBudget`] (110 / 10 s, search 5 / s per portal).
    pub fn new(config: ClientConfig) -> Result<Self> {
        Self::with_budget(config, Arc::new(LocalBudget::default()))
    }

    /// Builds a client that asks `budget` before every API call.
    pub fn with_budget(config: ClientConfig, budget: Arc<dyn Budget>) -> Result<Self> {
        let parse = |name: &str, s: &str| {
            Url::parse(s)
                .map_err(|e| Error::InvalidRequest(format!("{name} {s:?} is not a URL: {e}")))
        };
        let api_base = parse("api_base_url", &config.api_base_url)?;
        let app_base = parse("app_base_url", &config.app_base_url)?;
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| Error::InvalidRequest(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_base,
                app_base,
                retry: config.retry,
                timeout: config.request_timeout,
                budget,
            }),
        })
    }

    /// A handle for calls to one portal with the given token source.
    pub fn portal(&self, portal_id: u64, tokens: Arc<dyn TokenSource>) -> PortalClient {
        PortalClient {
            client: self.clone(),
            portal_id,
            tokens,
        }
    }

    /// The API base URL.
    pub fn api_base_url(&self) -> &Url {
        &self.inner.api_base
    }

    /// The app base URL (OAuth consent page host).
    pub fn app_base_url(&self) -> &Url {
        &self.inner.app_base
    }

    /// The budget every call asks.
    pub fn budget(&self) -> &Arc<dyn Budget> {
        &self.inner.budget
    }

    /// Sends `req`, retrying per policy; for portal calls also budgets and refreshes the token once.
    pub(crate) async fn execute(
        &self,
        req: &Request,
        portal: Option<&PortalClient>,
    ) -> Result<RawResponse> {
        let ep = req.endpoint;
        let span = tracing::info_span!(
            "hubspot.call",
            otel.name = %format_args!("hubspot.{}", ep.operation),
            otel.kind = "client",
            operation = ep.operation,
            http.method = %ep.method,
            http.route = ep.template,
            portal = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            attempt = tracing::field::Empty,
        );
        if let Some(p) = portal {
            span.record("portal", p.portal_id);
        }
        let mut attempts = 0;
        let result = self
            .execute_inner(req, portal, &mut attempts)
            .instrument(span.clone())
            .await;
        // Recorded once at the end: OpenTelemetry keeps the first value of a repeated field.
        span.record("attempt", attempts);
        match &result {
            Ok(r) => {
                span.record("http.status_code", r.status);
            }
            Err(Error::Api(api)) => {
                span.record("http.status_code", api.status);
            }
            Err(_) => {}
        }
        result
    }

    async fn execute_inner(
        &self,
        req: &Request,
        portal: Option<&PortalClient>,
        attempt: &mut u32,
    ) -> Result<RawResponse> {
        let ep = req.endpoint;
        let retry = &self.inner.retry;
        let started = Instant::now();
        *attempt = 0;
        let mut failures: u32 = 0;
        let mut refreshed = false;
        let mut fresh_token: Option<SecretString> = None;
        loop {
            *attempt += 1;
            let token = match portal {
                Some(p) => {
                    // Time spent waiting for the portal's budget: near zero unless the portal's
                    // rate limit, not HubSpot's latency, sets the pace.
                    let waiting = Instant::now();
                    self.inner.budget.acquire(p.portal_id, ep.kind, 1).await?;
                    metrics::histogram!("spoke_hubspot_budget_wait_seconds", "kind" => ep.kind.as_str())
                        .record(waiting.elapsed().as_secs_f64());
                    match fresh_token.take() {
                        Some(t) => Some(t),
                        None => Some(p.tokens.access_token().await?),
                    }
                }
                None => None,
            };
            let err = match self.send_once(req, token.as_ref()).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if let (Some(p), Some(rejected), Error::Api(api)) = (portal, token.as_ref(), &err)
                && (api.is_expired_authentication()
                    || api.category.as_deref() == Some("INVALID_AUTHENTICATION"))
                && !refreshed
            {
                // Expired or not, a rejected access token gets one refresh: when the authorisation
                // was revoked, the refresh is what tells the token's owner (the connection then
                // needs re-auth) instead of every caller failing on 401 with the owner unaware.
                // Exactly one refresh per call: a second 401 means refreshing does not help.
                refreshed = true;
                tracing::info!("access token expired; refreshing once");
                fresh_token = Some(p.tokens.refresh(rejected).await?);
                continue;
            }
            if !err.is_retriable() {
                return Err(err);
            }
            if !ep.idempotent && err.may_have_been_applied() && !retry.retry_ambiguous_writes {
                // The create may have happened; repeating it could duplicate records (HubSpot
                // does not enforce unique company domains), so the caller, who can look the
                // records up by unique key, decides.
                return Err(err);
            }
            failures += 1;
            let delay = retry.delay_for(failures, &err, rand::random::<f64>());
            if !retry.allows(failures, started.elapsed(), delay) {
                tracing::warn!(attempts = *attempt, error = %err, "giving up after retries");
                return Err(err);
            }
            if let (Some(p), Error::Api(api)) = (portal, &err)
                && let Some(policy) = &api.policy
            {
                self.inner.budget.throttled(p.portal_id, policy);
            }
            tracing::warn!(attempt = *attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying HubSpot call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(&self, req: &Request, token: Option<&SecretString>) -> Result<RawResponse> {
        let ep = req.endpoint;
        let url = build_url(&self.inner.api_base, &req.segments);
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| Error::Token {
                    message: "access token contains characters not allowed in a header".into(),
                    reauth_required: false,
                })?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        inject_trace_context(&mut headers);
        let mut rb = self
            .inner
            .http
            .request(ep.method.clone(), url)
            .timeout(self.inner.timeout)
            .headers(headers);
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        rb = match &req.body {
            Body::None => rb,
            Body::Json(b) => rb
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(b) => rb
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(b.clone()),
        };
        let start = Instant::now();
        let result = rb.send().await;
        let outcome = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match resp.bytes().await {
                    Ok(body) => {
                        if (200..300).contains(&status) {
                            Ok(RawResponse { status, body })
                        } else {
                            Err(Error::from(ApiError::from_response(
                                ep.operation,
                                status,
                                retry_after,
                                &body,
                            )))
                        }
                    }
                    Err(e) => Err(network_error(ep.operation, e, self.inner.timeout)),
                }
            }
            Err(e) => Err(network_error(ep.operation, e, self.inner.timeout)),
        };
        let status_label = match &outcome {
            Ok(r) => r.status.to_string(),
            Err(Error::Api(a)) => a.status.to_string(),
            Err(Error::Timeout { .. }) => "timeout".into(),
            Err(_) => "network".into(),
        };
        metrics::counter!("spoke_hubspot_requests_total", "endpoint" => ep.operation, "status" => status_label)
            .increment(1);
        metrics::histogram!("spoke_hubspot_request_duration_seconds", "endpoint" => ep.operation)
            .record(start.elapsed().as_secs_f64());
        outcome
    }
}

/// Maps a transport error, dropping the URL (it can contain e-mail addresses in query strings).
fn network_error(operation: &'static str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout { operation, timeout };
    }
    let maybe_sent = !e.is_connect();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Error::Network {
        operation,
        message,
        maybe_sent,
    }
}

/// Writes W3C trace context of the current span into outgoing headers via the global propagator.
fn inject_trace_context(headers: &mut HeaderMap) {
    struct Injector<'a>(&'a mut HeaderMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Injector(headers))
    });
}

/// Appends percent-encoded path segments to a base URL (which may itself have a path prefix).
fn build_url(base: &Url, segments: &[String]) -> Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        segs.extend(segments);
    }
    url
}

/// A handle for one portal: the client plus the portal id and its token source. Cheap to clone.
#[derive(Clone)]
pub struct PortalClient {
    pub(crate) client: HubSpotClient,
    pub(crate) portal_id: u64,
    pub(crate) tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for PortalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalClient")
            .field("portal_id", &self.portal_id)
            .finish_non_exhaustive()
    }
}

impl PortalClient {
    /// The portal (hub) id.
    pub fn portal_id(&self) -> u64 {
        self.portal_id
    }

    /// The underlying client.
    pub fn client(&self) -> &HubSpotClient {
        &self.client
    }

    /// Sends an authenticated request and decodes the JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        let resp = self.client.execute(&req, Some(self)).await?;
        decode(req.endpoint.operation, &resp.body)
    }

    /// Sends an authenticated request whose answer body is not needed.
    pub(crate) async fn call_empty(&self, req: Request) -> Result<()> {
        self.client.execute(&req, Some(self)).await.map(|_| ())
    }
}

/// Decodes a JSON body into `T`.
pub(crate) fn decode<T: DeserializeOwned>(operation: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        operation,
        message: e.to_string(),
    })
}

/// A prepared request: endpoint, concrete path, query and body (serialized once, reused by retries).
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) endpoint: &'static Endpoint,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Body,
}

/// Request body.
#[derive(Debug)]
pub(crate) enum Body {
    None,
    Json(Bytes),
    Form(Bytes),
}

impl Request {
    /// Fills the endpoint's `{placeholders}` in order with `params` (each becomes one encoded segment).
    pub(crate) fn new(endpoint: &'static Endpoint, params: &[&str]) -> Self {
        let mut params = params.iter();
        let segments = endpoint
            .template
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') {
                    params.next().map(|p| (*p).to_owned()).unwrap_or_default()
                } else {
                    s.to_owned()
                }
            })
            .collect();
        Self {
            endpoint,
            segments,
            query: Vec::new(),
            body: Body::None,
        }
    }

    /// Adds a query parameter.
    pub(crate) fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_owned(), value.into()));
        self
    }

    /// Sets a JSON body.
    pub(crate) fn json<B: serde::Serialize>(mut self, body: &B) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidRequest(format!("cannot encode request body: {e}")))?;
        self.body = Body::Json(Bytes::from(bytes));
        Ok(self)
    }

    /// Sets a form-encoded body.
    pub(crate) fn form(mut self, fields: &[(&str, &str)]) -> Self {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.body = Body::Form(Bytes::from(encoded));
        self
    }
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints;

    #[test]
    fn templates_are_filled_and_segments_encoded() {
        let base = Url::parse("http://127.0.0.1:8091").unwrap();
        let cases: [(&'static Endpoint, Vec<&str>, &str); 4] = [
            (
                &endpoints::OBJECTS_BATCH_CREATE,
                vec!["contacts"],
                "http://127.0.0.1:8091/crm/v3/objects/contacts/batch/create",
            ),
            (
                &endpoints::OBJECTS_GET,
                vec!["contacts", "a b/c@x.com"],
                "http://127.0.0.1:8091/crm/v3/objects/contacts/a%20b%2Fc@x.com",
            ),
            (
                &endpoints::ASSOCIATION_DEFAULT,
                vec!["calls", "1", "contacts", "2"],
                "http://127.0.0.1:8091/crm/v4/objects/calls/1/associations/default/contacts/2",
            ),
            (
                &endpoints::ACCOUNT_DETAILS,
                vec![],
                "http://127.0.0.1:8091/account-info/v3/details",
            ),
        ];
        for (ep, params, want) in cases {
            let req = Request::new(ep, &params);
            assert_eq!(build_url(&base, &req.segments).as_str(), want);
        }
        let prefixed = Url::parse("http://h/prefix/").unwrap();
        let req = Request::new(&endpoints::OWNERS_LIST, &[]);
        assert_eq!(
            build_url(&prefixed, &req.segments).as_str(),
            "http://h/prefix/crm/v3/owners"
        );
    }

    #[test]
    fn bad_base_url_is_a_clear_error() {
        let err = HubSpotClient::new(ClientConfig {
            api_base_url: "not a url".into(),
            ..ClientConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("api_base_url"), "{err}");
    }
}
