//! Shared test harness: a sandbox on port 0 with one seeded portal and a token for it.

#![allow(dead_code)]

use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use spoke_sandbox::{OwnerSeed, PortalSeed, Sandbox, SandboxConfig, UserSeed};

pub const PORTAL: u64 = 777;

pub struct Harness {
    pub sandbox: Sandbox,
    pub http: Client,
    pub token: String,
    pub refresh: String,
}

pub fn portal_seed() -> PortalSeed {
    let mut p = PortalSeed::new(PORTAL);
    for i in 1..=3u64 {
        p.owners.push(OwnerSeed {
            id: format!("{}", 100 + i),
            email: format!("owner{i}@example.com"),
            first_name: format!("Owner{i}"),
            last_name: "Test".into(),
            user_id: Some(200 + i),
            archived: false,
            teams: vec![],
        });
        p.users.push(UserSeed {
            id: format!("{}", 200 + i),
            email: format!("owner{i}@example.com"),
            first_name: format!("Owner{i}"),
            last_name: "Test".into(),
            super_admin: i == 1,
            role_ids: vec![],
            primary_team_id: None,
            owner_id: Some(format!("{}", 100 + i)),
        });
    }
    p
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(config: SandboxConfig) -> Harness {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        sandbox
            .control()
            .seed_portal(&portal_seed())
            .expect("seed portal");
        let pair = sandbox
            .control()
            .issue_tokens(PORTAL, None)
            .expect("tokens");
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Harness {
            sandbox,
            http,
            token: pair.access_token,
            refresh: pair.refresh_token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sandbox.base_url(), path)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }

    /// Sends and returns (status, JSON body or Null).
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let resp = self.call(method, path, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_contacts(&self, n: usize, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut i = 0;
        while i < n {
            let end = (i + 100).min(n);
            let inputs: Vec<Value> = (i..end)
                .map(|k| json!({"properties": {"email": format!("{prefix}{k}@example.com"), "firstname": format!("F{k}"), "lastname": prefix}}))
                .collect();
            let (status, body) = self
                .json(
                    Method::POST,
                    "/crm/v3/objects/contacts/batch/create",
                    Some(json!({"inputs": inputs})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            ids.extend(
                body["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(|r| r["id"].as_str().unwrap_or_default().to_owned()),
            );
            i = end;
        }
        ids
    }
}
