//! Rate limits (429 body and headers) and every fault kind, over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PORTAL};
use reqwest::Method;
use serde_json::json;
use spoke_sandbox::{FaultKind, FaultRule, RateLimits};

#[tokio::test]
async fn ten_secondly_search_and_daily_limits() {
    let h = Harness::start().await;
    let resp = h.call(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(resp.headers()["x-hubspot-ratelimit-max"], "110");
    assert_eq!(
        resp.headers()["x-hubspot-ratelimit-interval-milliseconds"],
        "10000"
    );

    let limits = RateLimits {
        enabled: true,
        max_per_interval: 4,
        interval_ms: 10_000,
        search_per_second: 2,
        daily: 0,
    };
    h.sandbox
        .control()
        .set_rate_limits(Some(PORTAL), limits)
        .expect("limits");
    // The call above already used one of the four.
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = h.call(Method::GET, "/crm/v3/owners", None).await;
        assert_eq!(resp.status().as_u16(), 200);
        remaining.push(
            resp.headers()["x-hubspot-ratelimit-remaining"]
                .to_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let resp = h.call(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["x-hubspot-ratelimit-remaining"], "0");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert!(body["correlationId"].is_string());

    // Search has its own secondly budget.
    let search = || {
        h.call(
            Method::POST,
            "/crm/v3/objects/contacts/search",
            Some(json!({})),
        )
    };
    assert_eq!(search().await.status().as_u16(), 200);
    let second = search().await;
    assert_eq!(second.headers()["x-hubspot-ratelimit-secondly"], "2");
    assert_eq!(
        second.headers()["x-hubspot-ratelimit-secondly-remaining"],
        "0"
    );
    let third = search().await;
    assert_eq!(third.status().as_u16(), 429);
    let body: serde_json::Value = third.json().await.expect("json");
    assert_eq!(body["policyName"], "SECONDLY");

    h.sandbox
        .control()
        .set_rate_limits(
            None,
            RateLimits {
                enabled: true,
                max_per_interval: 1000,
                daily: 1,
                ..RateLimits::default()
            },
        )
        .expect("limits");
    let resp = h.call(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-hubspot-ratelimit-daily"], "1");
    assert_eq!(resp.headers()["x-hubspot-ratelimit-daily-remaining"], "0");
    let (s, b) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!((s, b["policyName"].clone()), (429, json!("DAILY")));

    h.sandbox
        .control()
        .set_rate_limits(None, RateLimits::default())
        .expect("off");
    let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(s, 200, "disabling limits takes effect at once");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn status_faults_with_retry_after_and_counts() {
    let h = Harness::start().await;
    let c = h.sandbox.control();
    for status in [500u16, 502, 503, 504] {
        c.add_fault(
            FaultRule::always(
                "/crm/v3/owners",
                FaultKind::Status {
                    status,
                    retry_after_secs: None,
                },
            )
            .times(1),
        );
        let (s, b) = h.json(Method::GET, "/crm/v3/owners", None).await;
        assert_eq!(s, status);
        assert_eq!(b["status"], "error");
        let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
        assert_eq!(s, 200, "count-limited fault fires once");
    }
    c.add_fault(
        FaultRule::always(
            "/crm/v3/objects/*",
            FaultKind::Status {
                status: 477,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let resp = h.call(Method::GET, "/crm/v3/objects/contacts", None).await;
    assert_eq!(resp.status().as_u16(), 477);
    assert_eq!(resp.headers()["retry-after"], "1");
    c.add_fault(
        FaultRule::always(
            "/crm/v3/objects/*",
            FaultKind::Status {
                status: 423,
                retry_after_secs: Some(3),
            },
        )
        .times(1),
    );
    let resp = h.call(Method::GET, "/crm/v3/objects/contacts", None).await;
    assert_eq!(resp.status().as_u16(), 423);
    assert_eq!(resp.headers()["retry-after"], "3");
    // Other routes are not affected by a route-specific rule.
    c.add_fault(FaultRule::always(
        "/crm/v3/objects/deals*",
        FaultKind::Status {
            status: 503,
            retry_after_secs: None,
        },
    ));
    let (s, _) = h.json(Method::GET, "/crm/v3/objects/companies", None).await;
    assert_eq!(s, 200);
    let (s, _) = h.json(Method::GET, "/crm/v3/objects/deals", None).await;
    assert_eq!(s, 503);
    c.clear_faults();
    let (s, _) = h.json(Method::GET, "/crm/v3/objects/deals", None).await;
    assert_eq!(s, 200);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn latency_reset_and_429_storm() {
    let h = Harness::start().await;
    let c = h.sandbox.control();
    c.add_fault(FaultRule::always("/crm/v3/owners", FaultKind::Latency { ms: 250 }).times(1));
    let t = Instant::now();
    let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(250));

    c.add_fault(FaultRule::always("/crm/v3/owners", FaultKind::Reset).times(1));
    let err = h
        .call_raw("/crm/v3/owners")
        .await
        .expect_err("connection must be dropped");
    assert!(
        err.is_request() || err.is_connect() || err.to_string().contains("closed"),
        "{err}"
    );
    let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(s, 200, "the next connection works");

    c.add_fault(
        FaultRule::always(
            "/crm/*",
            FaultKind::RateLimit {
                policy_name: "TEN_SECONDLY_ROLLING".into(),
            },
        )
        .times(3),
    );
    for _ in 0..3 {
        let (s, b) = h.json(Method::GET, "/crm/v3/owners", None).await;
        assert_eq!(
            (s, b["policyName"].clone(), b["errorType"].clone()),
            (429, json!("TEN_SECONDLY_ROLLING"), json!("RATE_LIMIT"))
        );
    }
    let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(s, 200);

    let log = c.requests(20, Some(PORTAL));
    assert!(
        log.iter()
            .any(|e| e.status == 0 && e.fault.as_deref() == Some("reset"))
    );
    assert_eq!(log.iter().filter(|e| e.status == 429).count(), 3);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn probabilistic_faults_repeat_with_the_same_seed() {
    let h = Harness::start().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut rule = FaultRule::always(
            "/crm/v3/owners",
            FaultKind::Status {
                status: 503,
                retry_after_secs: None,
            },
        );
        rule.probability = 0.5;
        h.sandbox.control().set_faults(vec![rule], Some(1234));
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(h.json(Method::GET, "/crm/v3/owners", None).await.0);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let failures = runs[0].iter().filter(|s| **s == 503).count();
    assert!((3..=17).contains(&failures), "{failures}");
    h.sandbox.shutdown().await;
}

trait Raw {
    async fn call_raw(&self, path: &str) -> Result<reqwest::Response, reqwest::Error>;
}

impl Raw for Harness {
    async fn call_raw(&self, path: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
    }
}
