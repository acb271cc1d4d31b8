//! OAuth over HTTP: authorize → code → token → API → refresh → introspect → revoke → 401; expiry; errors.

mod common;

use std::time::Duration;

use common::{Harness, PORTAL};
use reqwest::Method;
use serde_json::{Value, json};
use spoke_sandbox::SandboxConfig;

const CLIENT_ID: &str = "sandbox-client-id";
const SECRET: &str = "sandbox-client-secret";
const REDIRECT: &str = "http://localhost:9/callback";

async fn authorize(h: &Harness, extra: &str) -> String {
    let url = h.url(&format!(
        "/oauth/authorize?client_id={CLIENT_ID}&redirect_uri={}&scope=crm.objects.contacts.read%20oauth&optional_scope=crm.objects.deals.read&state=xyz{extra}",
        urlencode(REDIRECT)
    ));
    let resp = h.http.get(url).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    assert!(loc.contains("state=xyz"), "{loc}");
    loc.split("code=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("code")
        .to_owned()
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

async fn token(h: &Harness, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = h
        .http
        .post(h.url(path))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get_with(h: &Harness, token: &str, path: &str) -> (u16, Value) {
    let resp = h
        .http
        .get(h.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn code_token_refresh_introspect_revoke() {
    let h = Harness::start().await;
    let code = authorize(&h, "").await;
    let (s, pair) = token(
        &h,
        "/oauth/v3/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(s, 200, "{pair}");
    assert_eq!(pair["expires_in"], 1800);
    assert_eq!(pair["token_type"], "bearer");
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let (s, b) = get_with(&h, &access, "/account-info/v3/details").await;
    assert_eq!((s, b["portalId"].clone()), (200, json!(PORTAL)));

    // The code is single-use.
    let (s, e) = token(
        &h,
        "/oauth/v1/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!((s, e["status"].clone()), (400, json!("BAD_AUTH_CODE")));

    let (s, introspected) = token(
        &h,
        "/oauth/v3/token/introspect",
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("token", &access),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["hub_id"], json!(PORTAL));
    assert_eq!(introspected["user"], "owner1@example.com");
    assert!(
        introspected["scopes"]
            .as_array()
            .expect("scopes")
            .iter()
            .any(|s| s == "crm.objects.deals.read")
    );
    let (s, meta) = get_with(&h, "", &format!("/oauth/v1/access-tokens/{access}")).await;
    assert_eq!(
        (s, meta["hub_id"].clone(), meta["token_type"].clone()),
        (200, json!(PORTAL), json!("access"))
    );
    let (s, meta) = get_with(&h, "", &format!("/oauth/v1/refresh-tokens/{refresh}")).await;
    assert_eq!((s, meta["user_id"].clone()), (200, json!(201)));

    let (s, again) = token(
        &h,
        "/oauth/v3/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_ne!(again["access_token"], pair["access_token"]);
    assert_eq!(again["refresh_token"], pair["refresh_token"]);
    let new_access = again["access_token"].as_str().expect("access").to_owned();

    let resp = h
        .http
        .delete(h.url(&format!("/oauth/v1/refresh-tokens/{refresh}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status().as_u16(), 204);
    let (s, e) = get_with(&h, &new_access, "/crm/v3/owners").await;
    assert_eq!(
        (s, e["category"].clone()),
        (401, json!("INVALID_AUTHENTICATION"))
    );
    assert!(e["correlationId"].is_string());
    let (s, e) = token(
        &h,
        "/oauth/v3/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("refresh_token", &refresh),
        ],
    )
    .await;
    assert_eq!((s, e["status"].clone()), (400, json!("BAD_REFRESH_TOKEN")));
    let (_, inactive) = token(
        &h,
        "/oauth/v3/token/introspect",
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("token", &refresh),
        ],
    )
    .await;
    assert_eq!(inactive["active"], false);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_errors_and_consent_overrides() {
    let h = Harness::start().await;
    let code = authorize(
        &h,
        &format!("&sandbox_portal={PORTAL}&sandbox_user=owner2@example.com"),
    )
    .await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "wrong"),
                ("client_secret", SECRET),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "BAD_CLIENT_ID",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", "wrong"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "BAD_CLIENT_SECRET",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("redirect_uri", "http://other/cb"),
                ("code", &code),
            ],
            "BAD_REDIRECT_URI",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
            ],
            "BAD_GRANT_TYPE",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("refresh_token", "nope"),
            ],
            "BAD_REFRESH_TOKEN",
        ),
    ];
    for (form, want) in cases {
        let (s, e) = token(&h, "/oauth/v3/token", &form).await;
        assert_eq!((s, e["status"].as_str()), (400, Some(want)));
        assert!(e["message"].is_string());
    }
    let (s, pair) = token(
        &h,
        "/oauth/v3/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let (_, meta) = get_with(
        &h,
        "",
        &format!(
            "/oauth/v1/access-tokens/{}",
            pair["access_token"].as_str().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(meta["user"], "owner2@example.com");
    let resp = h
        .http
        .get(h.url("/oauth/authorize?client_id=wrong&redirect_uri=http%3A%2F%2Fx"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status().as_u16(), 400);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn missing_expired_and_private_app_tokens() {
    let h = Harness::start_with(SandboxConfig {
        token_ttl: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await;
    let resp = h
        .http
        .get(h.url("/crm/v3/owners"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 401);
    let e: Value = resp.json().await.expect("json");
    assert_eq!(e["category"], "INVALID_AUTHENTICATION");
    assert_eq!(e["status"], "error");

    let (s, _) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, e) = h.json(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(
        (s, e["category"].clone()),
        (401, json!("EXPIRED_AUTHENTICATION"))
    );

    let fresh = h
        .sandbox
        .control()
        .issue_tokens(PORTAL, None)
        .expect("tokens");
    let (s, _) = get_with(&h, &fresh.access_token, "/crm/v3/owners").await;
    assert_eq!(s, 200);
    assert_eq!(h.sandbox.control().expire_access_tokens(Some(PORTAL)), 1);
    let (s, e) = get_with(&h, &fresh.access_token, "/crm/v3/owners").await;
    assert_eq!(
        (s, e["category"].clone()),
        (401, json!("EXPIRED_AUTHENTICATION"))
    );

    h.sandbox
        .control()
        .add_private_app_token(PORTAL, "pat-na1-test")
        .expect("token");
    let (s, _) = get_with(&h, "pat-na1-test", "/crm/v3/owners").await;
    assert_eq!(s, 200);
    let (s, _) = get_with(&h, "garbage", "/crm/v3/owners").await;
    assert_eq!(s, 401);
    h.sandbox.shutdown().await;
}
