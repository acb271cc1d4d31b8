//! A scripted HTTP server for retry/refresh tests: answers requests with a queue of canned replies
//! and records what it received.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use spoke_hubspot::{
    Budget, CallKind, ClientConfig, HubSpotClient, RateLimitPolicy, Result, RetryPolicy,
    SecretString, TokenSource,
};

/// One canned answer.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// What the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// The running server.
pub struct Scripted {
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies.into()),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn remaining(&self) -> usize {
        self.shared.replies.lock().unwrap().len()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
        at: Instant::now(),
    });
    let reply = shared.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::IM_A_TEAPOT, "script exhausted").into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", "application/json")],
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

/// A budget that grants everything and records what it was asked.
#[derive(Default)]
pub struct RecordingBudget {
    pub acquired: Mutex<Vec<(u64, CallKind, u32)>>,
    pub throttled: Mutex<Vec<(u64, RateLimitPolicy)>>,
}

#[async_trait]
impl Budget for RecordingBudget {
    async fn acquire(&self, portal: u64, kind: CallKind, n: u32) -> Result<()> {
        self.acquired.lock().unwrap().push((portal, kind, n));
        Ok(())
    }

    fn throttled(&self, portal: u64, policy: &RateLimitPolicy) {
        self.throttled
            .lock()
            .unwrap()
            .push((portal, policy.clone()));
    }
}

/// A token source that hands out `old` until refreshed, then `new`, counting refreshes.
pub struct SwappingToken {
    pub current: Mutex<String>,
    pub next: String,
    pub refreshes: Mutex<u32>,
}

impl SwappingToken {
    pub fn new(old: &str, new: &str) -> Self {
        Self {
            current: Mutex::new(old.to_owned()),
            next: new.to_owned(),
            refreshes: Mutex::new(0),
        }
    }
}

#[async_trait]
impl TokenSource for SwappingToken {
    async fn access_token(&self) -> Result<SecretString> {
        Ok(SecretString::from(self.current.lock().unwrap().clone()))
    }

    async fn refresh(&self, _rejected: &SecretString) -> Result<SecretString> {
        *self.refreshes.lock().unwrap() += 1;
        *self.current.lock().unwrap() = self.next.clone();
        Ok(SecretString::from(self.next.clone()))
    }
}

/// Fast retries so tests stay quick; the 423 minimum stays at HubSpot's 2 s.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        max_elapsed: Duration::from_secs(20),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        locked_min_delay: Duration::from_secs(2),
        retry_ambiguous_writes: false,
    }
}

/// A client for `base_url` with the given budget and retry policy.
pub fn client(base_url: &str, budget: Arc<dyn Budget>, retry: RetryPolicy) -> HubSpotClient {
    HubSpotClient::with_budget(
        ClientConfig {
            api_base_url: base_url.to_owned(),
            app_base_url: base_url.to_owned(),
            retry,
            request_timeout: Duration::from_millis(1500),
            ..ClientConfig::default()
        },
        budget,
    )
    .unwrap()
}
