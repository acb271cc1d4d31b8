//! Helpers for fault tests: a cluster whose services can be SIGKILLed and restarted on the same
//! ports, the sandbox's admin API and the dev broker's control API over HTTP, connecting an org to
//! a chosen sandbox portal, and the exactness checks every fault case makes (each record has
//! exactly one outcome, HubSpot holds no duplicates, portal count = seeded + created).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use spoke_platform::auth::Role;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_proto::connection::v1::{
    CompleteChangePrimaryUserRequest, CompleteConnectRequest, ConnectionStatus,
    StartChangePrimaryUserRequest, StartConnectRequest,
};

use crate::{Result, ServiceProcess, start_cluster, start_service_on};

/// The five services, started by [`start_cluster`], that a test can kill and restart.
pub struct Cluster {
    /// The running services, in [`crate::SERVICES`] order.
    pub services: Vec<ServiceProcess>,
    database_url: String,
    bootstrap: String,
    env: BTreeMap<String, String>,
    log_dir: PathBuf,
    restarts: u32,
}

impl Cluster {
    /// Starts the five services wired to each other and to `hubspot_url`, waits until each serves.
    pub async fn start(
        database_url: &str,
        bootstrap: &str,
        hubspot_url: &str,
        extra: &BTreeMap<String, String>,
        log_dir: &Path,
    ) -> Result<Self> {
        let services = start_cluster(database_url, bootstrap, Some(hubspot_url), extra, log_dir)?;
        // The environment start_cluster gave every service, to restart one the same way.
        let mut env = BTreeMap::new();
        for s in &services {
            match s.name {
                "connection" => {
                    env.insert(
                        "SPOKE_CONNECTION__ENDPOINT".into(),
                        format!("http://{}", s.grpc),
                    );
                }
                "mapping" => {
                    env.insert(
                        "SPOKE_MAPPING__ENDPOINT".into(),
                        format!("http://{}", s.grpc),
                    );
                }
                _ => {}
            }
        }
        env.insert("SPOKE_HUBSPOT__API_BASE_URL".into(), hubspot_url.into());
        env.insert("SPOKE_HUBSPOT__APP_BASE_URL".into(), hubspot_url.into());
        env.extend(extra.clone());
        let cluster = Self {
            services,
            database_url: database_url.into(),
            bootstrap: bootstrap.into(),
            env,
            log_dir: log_dir.into(),
            restarts: 0,
        };
        cluster.wait_serving().await?;
        Ok(cluster)
    }

    /// Waits until every service answers gRPC health with SERVING.
    pub async fn wait_serving(&self) -> Result<()> {
        for s in &self.services {
            spoke_platform::testing::wait_serving(s.grpc, s.grpc_service)
                .await
                .map_err(|e| format!("{e}; see {}", s.process.log().display()))?;
        }
        Ok(())
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> &ServiceProcess {
        self.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// SIGKILLs service `name`, waits `down`, starts it again on the same ports with the same
    /// environment (its log continues in `<name>.restart<N>.log`) and waits until it serves.
    pub async fn kill_and_restart(&mut self, name: &str, down: Duration) -> Result<()> {
        let i = self
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no service {name}"))?;
        let old = self.services.remove(i);
        let (service, ports) = (old.name, (old.grpc.port(), old.admin.port()));
        old.process.kill();
        tokio::time::sleep(down).await;
        self.restarts += 1;
        let logs = self.log_dir.join(format!("restart{}", self.restarts));
        // The listener may still be in the kernel's hands for a moment after SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(20);
        let started = loop {
            let s = start_service_on(
                service,
                &self.database_url,
                &self.bootstrap,
                ports,
                &self.env,
                &logs,
            )?;
            match spoke_platform::testing::wait_serving(s.grpc, s.grpc_service).await {
                Ok(()) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "{service} did not serve after restart: {e}; see {}",
                        s.process.log().display()
                    ));
                }
                Err(_) => {
                    s.process.kill();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        self.services.insert(i, started);
        Ok(())
    }

    /// Stops every service with SIGTERM (reverse order), failing on an unclean exit.
    pub fn stop(self) -> Result<()> {
        let mut errors = Vec::new();
        for s in self.services.into_iter().rev() {
            let name = s.name;
            if let Err(e) = s.process.stop(Duration::from_secs(30)) {
                errors.push(format!("{name}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// A small JSON-over-HTTP client for the sandbox's `/_sandbox` API and the dev broker's control.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    /// Calls paths under `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {url}: {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST without a body.
    pub async fn post_empty(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::POST, path, None).await
    }

    /// PUT `body` to `path`.
    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// A dev token for `user` of `org` (email `<user>@example.com`) with `roles`.
pub fn token(user: &str, org: &str, roles: &[Role]) -> String {
    spoke_platform::testing::dev_token(user, org, roles)
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    req
}

/// Follows an authorize URL on the sandbox, consenting for `portal`; returns (code, state).
async fn consent(authorize_url: &str, portal: u64) -> Result<(String, String)> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{authorize_url}&sandbox_portal={portal}");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("authorize answered {} without a redirect", resp.status()))?
        .to_string();
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    let code = param("code").ok_or_else(|| format!("no code in {location}"))?;
    Ok((code, param("state").unwrap_or_default()))
}

async fn connection_client(
    connection: &ServiceProcess,
) -> Result<ConnectionServiceClient<tonic::transport::Channel>> {
    ConnectionServiceClient::connect(format!("http://{}", connection.grpc))
        .await
        .map_err(|e| format!("connecting to connection: {e}"))
}

/// Connects `org` (as its admin `user`) to sandbox portal `portal`: StartConnect, the sandbox's
/// consent page with `sandbox_portal`, CompleteConnect. Returns the connected portal id.
pub async fn connect_org_to_portal(
    connection: &ServiceProcess,
    org: &str,
    user: &str,
    portal: u64,
) -> Result<u64> {
    let t = token(user, org, &[Role::Admin, Role::User]);
    let mut client = connection_client(connection).await?;
    let start = client
        .start_connect(authed(
            StartConnectRequest {
                return_url: String::new(),
                allow_portal_change: true,
            },
            &t,
        ))
        .await
        .map_err(|e| format!("StartConnect {org}: {e}"))?
        .into_inner();
    let (code, state) = consent(&start.authorize_url, portal).await?;
    let done = client
        .complete_connect(authed(CompleteConnectRequest { code, state }, &t))
        .await
        .map_err(|e| format!("CompleteConnect {org}: {e}"))?
        .into_inner();
    Ok(done.connection.map(|c| c.portal_id as u64).unwrap_or(0))
}

/// Re-authorises `org`'s connection as admin `user` with the "Change User" flow (the way back
/// from REAUTH_REQUIRED); returns the connection status name afterwards.
pub async fn reauthorize_org(
    connection: &ServiceProcess,
    org: &str,
    user: &str,
    portal: u64,
) -> Result<String> {
    let t = token(user, org, &[Role::Admin, Role::User]);
    let mut client = connection_client(connection).await?;
    let start = client
        .start_change_primary_user(authed(
            StartChangePrimaryUserRequest {
                return_url: String::new(),
            },
            &t,
        ))
        .await
        .map_err(|e| format!("StartChangePrimaryUser {org}: {e}"))?
        .into_inner();
    let (code, state) = consent(&start.authorize_url, portal).await?;
    let done = client
        .complete_change_primary_user(authed(CompleteChangePrimaryUserRequest { code, state }, &t))
        .await
        .map_err(|e| format!("CompleteChangePrimaryUser {org}: {e}"))?
        .into_inner();
    Ok(done
        .connection
        .and_then(|c| ConnectionStatus::try_from(c.status).ok())
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_default())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the export schema says about one job's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordAudit {
    /// Records of the job.
    pub records: i64,
    /// Records not in phase `done` or without an outcome.
    pub open: i64,
    /// Created / updated / skipped / failed records.
    pub created: i64,
    /// Updated records.
    pub updated: i64,
    /// Skipped records.
    pub skipped: i64,
    /// Failed records.
    pub failed: i64,
    /// Created or updated records without a HubSpot id.
    pub written_without_id: i64,
    /// Distinct HubSpot ids among created records.
    pub distinct_created_ids: i64,
}

/// Reads every record of `job_id` from the export schema of `database_url`.
pub async fn audit_job(database_url: &str, job_id: &str) -> Result<RecordAudit> {
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .map_err(|e| format!("connecting to {database_url}: {e}"))?;
    let job: uuid::Uuid = job_id
        .parse()
        .map_err(|e| format!("job id {job_id}: {e}"))?;
    let row: (i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), \
                count(*) FILTER (WHERE phase <> 'done' OR outcome = 0), \
                count(*) FILTER (WHERE outcome = 1), \
                count(*) FILTER (WHERE outcome = 2), \
                count(*) FILTER (WHERE outcome = 3), \
                count(*) FILTER (WHERE outcome = 4), \
                count(*) FILTER (WHERE outcome IN (1, 2) AND hubspot_id = ''), \
                count(DISTINCT hubspot_id) FILTER (WHERE outcome = 1) \
           FROM export.records WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("auditing job {job_id}: {e}"))?;
    pool.close().await;
    Ok(RecordAudit {
        records: row.0,
        open: row.1,
        created: row.2,
        updated: row.3,
        skipped: row.4,
        failed: row.5,
        written_without_id: row.6,
        distinct_created_ids: row.7,
    })
}

/// The final job states.
pub const FINAL_STATES: &[&str] = &["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"];

/// Polls `spokectl export show JOB` (tolerating a service that is down) until the job reaches a
/// final state or `timeout` passes; returns the last job JSON.
pub async fn wait_job_final(
    services: &[ServiceProcess],
    identity: (&str, &str, &str, &str),
    job_id: &str,
    timeout: Duration,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Ok((true, out, _)) = crate::spokectl(
            services,
            identity,
            &["export", "show", job_id, "--output", "json"],
        ) && let Ok(v) = serde_json::from_str::<Value>(&out)
        {
            if v["state"]
                .as_str()
                .is_some_and(|s| FINAL_STATES.contains(&s))
            {
                return Ok(v);
            }
            last = v;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "job {job_id} not final after {timeout:?}; last seen: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the job until `pred` holds for its JSON (or `timeout`); returns that JSON.
pub async fn wait_job(
    services: &[ServiceProcess],
    identity: (&str, &str, &str, &str),
    job_id: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        if let Ok((true, out, _)) = crate::spokectl(
            services,
            identity,
            &["export", "show", job_id, "--output", "json"],
        ) && let Ok(v) = serde_json::from_str::<Value>(&out)
        {
            if pred(&v) {
                return Ok(v);
            }
            last = v;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "job {job_id}: condition not reached after {timeout:?}; last seen: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records written so far (created + updated + skipped + failed) of a job JSON.
pub fn done_count(job: &Value) -> i64 {
    ["created", "updated", "skipped", "failed"]
        .iter()
        .map(|k| job[k].as_i64().unwrap_or(0))
        .sum()
}
