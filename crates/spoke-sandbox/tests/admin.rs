//! The `/_sandbox` admin API and seeding from the example JSON file.

mod common;

use std::path::PathBuf;

use reqwest::Client;
use serde_json::{Value, json};
use spoke_sandbox::{Sandbox, SandboxConfig, Seed};

fn example() -> Seed {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seed/example.json");
    Seed::from_file(&path).expect("example seed parses")
}

async fn get(http: &Client, url: String) -> (u16, Value) {
    let r = http.get(url).send().await.expect("get");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn send(http: &Client, method: reqwest::Method, url: String, body: Value) -> (u16, Value) {
    let r = http
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn seeds_from_the_example_file() {
    let sb = Sandbox::start(SandboxConfig {
        seed: example(),
        ..SandboxConfig::default()
    })
    .await
    .expect("start");
    let http = Client::new();
    let base = sb.base_url();
    let (s, p) = get(&http, format!("{base}/_sandbox/portals")).await;
    assert_eq!(
        (s, p["portals"].clone()),
        (200, json!([20250001, 20250002]))
    );

    let r = http
        .get(format!("{base}/account-info/v3/details"))
        .bearer_auth("pat-na1-sandbox-example")
        .send()
        .await
        .expect("get");
    let details: Value = r.json().await.expect("json");
    assert_eq!(details["portalId"], 20250001);
    assert_eq!(details["companyCurrency"], "USD");

    let (_, counts) = get(&http, format!("{base}/_sandbox/portals/20250001/counts")).await;
    assert_eq!(counts["live"]["companies"], 3);
    assert_eq!(counts["live"]["contacts"], 3);
    assert_eq!(counts["live"]["deals"], 1);
    assert_eq!(counts["tier"], "PROFESSIONAL");
    assert_eq!(counts["associations"], 4);

    let (_, d) = get(
        &http,
        format!("{base}/_sandbox/portals/20250001/duplicates/companies"),
    )
    .await;
    assert_eq!(
        d["duplicates"],
        json!([{"kind": "domain", "key": "acme.example", "ids": ["1001", "1002"]}])
    );
    let (_, d) = get(
        &http,
        format!("{base}/_sandbox/portals/20250001/duplicates/contacts"),
    )
    .await;
    assert_eq!(
        d["duplicates"],
        json!([{"kind": "name+company", "key": "jane|doe|acme software", "ids": ["2001", "2003"]}])
    );

    // Custom checkbox enumeration from the seed validates multi-values.
    let tokens = sb.control().issue_tokens(20250001, None).expect("tokens");
    let r = http
        .post(format!("{base}/crm/v3/objects/companies"))
        .bearer_auth(&tokens.access_token)
        .json(&json!({"properties": {"name": "X", "intent_topics": "cloud;security"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
    let (_, rec) = get(
        &http,
        format!("{base}/_sandbox/portals/20250001/records/companies/1001"),
    )
    .await;
    assert_eq!(rec["properties"]["industry"], "COMPUTER_SOFTWARE");
    sb.shutdown().await;
}

#[tokio::test]
async fn admin_routes_control_the_sandbox() {
    let sb = Sandbox::start(SandboxConfig::default())
        .await
        .expect("start");
    let http = Client::new();
    let base = sb.base_url();
    use reqwest::Method;
    let (s, _) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/portals"),
        json!({"portalId": 5, "users": [{"id": "1", "email": "a@b.co", "superAdmin": true}]}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, tokens) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/portals/5/tokens"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let access = tokens["access_token"].as_str().expect("token").to_owned();
    let (s, ids) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/portals/5/records/companies"),
        json!([{"name": "A", "domain": "a.com"}, {"name": "B", "domain": "www.A.com"}]),
    )
    .await;
    assert_eq!((s, ids["ids"].as_array().map(Vec::len)), (201, Some(2)));
    let (_, d) = get(
        &http,
        format!("{base}/_sandbox/portals/5/duplicates/companies"),
    )
    .await;
    assert_eq!(d["duplicates"][0]["key"], "a.com");

    let api = |path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(&access)
            .send()
    };
    assert_eq!(
        api("/crm/v3/objects/companies")
            .await
            .expect("get")
            .status()
            .as_u16(),
        200
    );
    let (_, log) = get(&http, format!("{base}/_sandbox/requests?limit=5&portal=5")).await;
    let last = log["requests"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .expect("logged");
    assert_eq!(
        (
            last["method"].clone(),
            last["path"].clone(),
            last["status"].clone(),
            last["portal"].clone()
        ),
        (
            json!("GET"),
            json!("/crm/v3/objects/companies"),
            json!(200),
            json!(5)
        )
    );

    let (s, _) = send(
        &http,
        Method::PUT,
        format!("{base}/_sandbox/portals/5/limits"),
        json!({"enabled": true, "maxPerInterval": 2}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        api("/crm/v3/owners").await.expect("get").status().as_u16(),
        200
    );
    assert_eq!(
        api("/crm/v3/owners").await.expect("get").status().as_u16(),
        429
    );
    let (s, _) = send(
        &http,
        Method::PUT,
        format!("{base}/_sandbox/limits"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(s, 200);

    let (s, f) = send(&http, Method::PUT, format!("{base}/_sandbox/faults"), json!({"rules": [{"route": "/crm/v3/owners", "fault": {"type": "status", "status": 502}, "count": 1}], "seed": 9})).await;
    assert_eq!((s, f["rules"].as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        api("/crm/v3/owners").await.expect("get").status().as_u16(),
        502
    );
    assert_eq!(
        api("/crm/v3/owners").await.expect("get").status().as_u16(),
        200
    );

    let (s, e) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/tokens/expire"),
        json!({"portalId": 5}),
    )
    .await;
    assert_eq!((s, e["expired"].clone()), (200, json!(1)));
    assert_eq!(
        api("/crm/v3/owners").await.expect("get").status().as_u16(),
        401
    );
    let (_, r) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/tokens/revoke"),
        json!({"portalId": 5}),
    )
    .await;
    assert_eq!(r["revoked"], 1);

    let (s, _) = send(
        &http,
        Method::PUT,
        format!("{base}/_sandbox/search-lag"),
        json!({"ms": 10}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &http,
        Method::POST,
        format!("{base}/_sandbox/reset"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, p) = get(&http, format!("{base}/_sandbox/portals")).await;
    assert_eq!(p["portals"], json!([]));
    let (s, e) = get(&http, format!("{base}/_sandbox/portals/5/counts")).await;
    assert_eq!((s, e["category"].clone()), (404, json!("SANDBOX_ADMIN")));
    sb.shutdown().await;
}
