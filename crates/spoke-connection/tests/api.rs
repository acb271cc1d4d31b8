//! The connection service through its public surface: gRPC and the OAuth callback on port 0, real
//! Postgres (fresh database), Kafka (librdkafka mock cluster over TCP) and the HubSpot sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use spoke_connection::{Application, CallbackConfig, Config, HubSpotAppConfig, TokensConfig};
use spoke_connection_client::{ConnectionClient, ConnectionEndpoint, HubSpotSettings, OwnerSource};
use spoke_platform::auth::Role;
use spoke_platform::testing::{
    MockKafka, dev_issuer, dev_token, fresh_database, http_get, test_config, wait_serving,
};
use spoke_proto::connection::v1 as pb;
use spoke_proto::connection::v1::connection_service_client::ConnectionServiceClient;
use spoke_sandbox::{OwnerSeed, PortalSeed, RateLimits, Sandbox, SandboxConfig, Seed, UserSeed};
use tonic::transport::Channel;

const PORTAL: u64 = 101;
const OTHER_PORTAL: u64 = 202;

fn portal_seed(id: u64) -> PortalSeed {
    let mut p = PortalSeed::new(id);
    p.account_type = "PROFESSIONAL".into();
    p.default_oauth_user = Some("ada@example.com".into());
    for (uid, email, owner, sa) in [
        ("9001", "ada@example.com", "501", true),
        ("9002", "bob@example.com", "502", false),
        ("9003", "carol@example.com", "503", false),
    ] {
        p.users.push(UserSeed {
            id: uid.into(),
            email: email.into(),
            first_name: String::new(),
            last_name: String::new(),
            super_admin: sa,
            role_ids: Vec::new(),
            primary_team_id: None,
            owner_id: Some(owner.into()),
        });
        p.owners.push(OwnerSeed {
            id: owner.into(),
            email: email.into(),
            first_name: email.split('@').next().unwrap_or_default().into(),
            last_name: "Test".into(),
            user_id: uid.parse().ok(),
            archived: false,
            teams: Vec::new(),
        });
    }
    p
}

struct Harness {
    sandbox: Sandbox,
    app_grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    db: String,
    stop: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<spoke_connection::Result<()>>,
    _kafka: MockKafka,
}

async fn start(token_ttl: Duration) -> Harness {
    let kafka = MockKafka::start(1, 3).expect("mock kafka");
    let db = fresh_database().await.expect("fresh database");
    let sandbox = Sandbox::start(SandboxConfig {
        token_ttl,
        default_portal: Some(PORTAL),
        seed: Seed {
            portals: vec![portal_seed(PORTAL), portal_seed(OTHER_PORTAL)],
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let app = Application::build(Config {
        common: test_config(&db, kafka.bootstrap()),
        hubspot: HubSpotAppConfig {
            urls: HubSpotSettings {
                api_base_url: sandbox.base_url(),
                app_base_url: sandbox.base_url(),
            },
            ..HubSpotAppConfig::default()
        },
        tokens: TokensConfig {
            encryption_key: Some(key.into()),
            ..TokensConfig::default()
        },
        callback: CallbackConfig {
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 0,
            allowed_return_urls: vec!["https://app.provider.example/".into()],
        },
        ..Config::default()
    })
    .await
    .expect("service starts");
    let (grpc, admin, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let running = tokio::spawn(app.run_until_stopped());
    wait_serving(grpc, "spoke.connection.v1.ConnectionService")
        .await
        .expect("gRPC health SERVING");
    Harness {
        sandbox,
        app_grpc: grpc,
        admin,
        db,
        stop,
        running,
        _kafka: kafka,
    }
}

impl Harness {
    async fn client(&self) -> ConnectionServiceClient<Channel> {
        ConnectionServiceClient::connect(format!("http://{}", self.app_grpc))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.running.await.unwrap().expect("clean shutdown");
        self.sandbox.shutdown().await;
    }

    /// Starts a connect flow as `admin` of `org` and follows the sandbox's consent redirect to the
    /// callback; returns the callback's status and body.
    async fn connect_via_browser(
        &self,
        org: &str,
        admin: &str,
        hubspot_user: Option<&str>,
        allow_change: bool,
        portal: Option<u64>,
    ) -> (u16, String, String) {
        let mut c = self.client().await;
        let started = c
            .start_connect(authed(
                pb::StartConnectRequest {
                    return_url: String::new(),
                    allow_portal_change: allow_change,
                },
                admin,
                org,
                &[Role::Admin],
            ))
            .await
            .expect("StartConnect")
            .into_inner();
        let mut url = url::Url::parse(&started.authorize_url).unwrap();
        if let Some(u) = hubspot_user {
            url.query_pairs_mut().append_pair("sandbox_user", u);
        }
        if let Some(p) = portal {
            url.query_pairs_mut()
                .append_pair("sandbox_portal", &p.to_string());
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = http.get(url).send().await.unwrap();
        assert_eq!(consent.status().as_u16(), 302, "sandbox consents");
        let callback = consent.headers()["location"].to_str().unwrap().to_owned();
        let resp = http.get(&callback).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap(), callback)
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET search_path TO connection")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(&self.db)
            .await
            .unwrap()
    }
}

fn authed<T>(msg: T, sub: &str, org: &str, roles: &[Role]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", dev_token(sub, org, roles))
            .parse()
            .unwrap(),
    );
    req
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    authed(msg, "admin-1", "org-1", &[Role::Admin])
}

fn second<T>(msg: T) -> tonic::Request<T> {
    authed(msg, "admin-2", "org-1", &[Role::Admin])
}

fn service<T>(msg: T, org: &str) -> tonic::Request<T> {
    authed(msg, "export", org, &[Role::Service])
}

#[tokio::test]
async fn oauth_round_trip_through_the_http_callback_with_encrypted_tokens_and_single_use_state() {
    let h = start(Duration::from_secs(1800)).await;
    let mut c = h.client().await;

    // Non-admins may not start a connect flow.
    let err = c
        .start_connect(authed(
            pb::StartConnectRequest::default(),
            "u9",
            "org-1",
            &[Role::User],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let (status, body, callback) = h
        .connect_via_browser("org-1", "admin-1", None, false, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("portal 101 is connected"), "{body}");

    let conn = c
        .get_connection(authed(
            pb::GetConnectionRequest {},
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(conn.portal_id, PORTAL as i64);
    assert_eq!(conn.status(), pb::ConnectionStatus::Connected);
    assert_eq!(conn.primary_admin_user_id, "admin-1");
    assert_eq!(conn.service_account_email, "ada@example.com");
    assert_eq!(conn.service_account_owner_id, "501");
    assert_eq!(conn.plan(), pb::HubSpotPlan::Professional);
    assert_eq!(conn.ui_domain, "app.hubspot.com");
    assert!(!conn.time_zone.is_empty() && !conn.company_currency.is_empty());

    // A second StartConnect is ALREADY_EXISTS.
    let err = c
        .start_connect(authed(
            pb::StartConnectRequest::default(),
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    // Retrying the same callback returns the first result; another code with the same state is a replay.
    let http = reqwest::Client::new();
    let again = http.get(&callback).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let err = c
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                code: "other-code".into(),
                state: state.clone(),
            },
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("replayed"), "{}", err.message());
    // Another org's admin cannot complete org-1's flow.
    let err = c
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                code: "x".into(),
                state,
            },
            "admin-2",
            "org-2",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Tampered or expired-looking states are rejected.
    let err = c
        .complete_connect(authed(
            pb::CompleteConnectRequest {
                code: "x".into(),
                state: "abc.def".into(),
            },
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Tokens: only services get them; the raw columns never contain them.
    let err = c
        .get_access_token(authed(
            pb::GetAccessTokenRequest::default(),
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let tok = c
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tok.portal_id, PORTAL as i64);
    assert!(tok.access_token.len() > 8);
    let pool = h.pool().await;
    let (access, refresh): (Vec<u8>, Vec<u8>) = sqlx::query_as("SELECT access_token_ct, refresh_token_ct FROM tokens WHERE org_id = 'org-1' AND user_id = ''")
        .fetch_one(&pool)
        .await
        .unwrap();
    let needle = tok.access_token.as_bytes();
    assert!(
        !access.windows(needle.len()).any(|w| w == needle),
        "access token stored in clear"
    );
    assert!(!refresh.windows(needle.len()).any(|w| w == needle));
    // A service of another org sees no connection (no cross-org token).
    let err = c
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Events landed in the outbox: connected.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE topic = 'spoke.connection.events.v1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(n >= 1);
    h.stop().await;
}

#[tokio::test]
async fn non_super_admin_is_rejected_and_nothing_is_stored() {
    let h = start(Duration::from_secs(1800)).await;
    let (status, body, _) = h
        .connect_via_browser("org-1", "admin-1", Some("bob@example.com"), false, None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not a Super Admin"), "{body}");
    let mut c = h.client().await;
    let err = c
        .get_connection(authed(
            pb::GetConnectionRequest {},
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    h.stop().await;
}

#[tokio::test]
async fn tokens_refresh_once_for_20_concurrent_callers_and_revocation_requires_reauth() {
    let h = start(Duration::from_secs(4)).await;
    let (status, body, _) = h
        .connect_via_browser("org-1", "admin-1", None, false, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let first = h
        .client()
        .await
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
        .await
        .unwrap()
        .into_inner();
    // Past half of the 4 s lifetime every caller needs a refresh.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    h.sandbox.control().clear_requests();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = h.client().await;
        tasks.push(tokio::spawn(async move {
            c.get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
                .await
                .map(|r| r.into_inner().access_token)
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().expect("token"));
    }
    let refreshes = h
        .sandbox
        .control()
        .requests(1000, None)
        .iter()
        .filter(|r| r.path.starts_with("/oauth/v3/token") && r.method == "POST")
        .count();
    assert_eq!(refreshes, 1, "one refresh for 20 callers");
    assert_eq!(tokens.len(), 1);
    assert!(!tokens.contains(&first.access_token));

    // Revoked refresh token → REAUTH_REQUIRED for every caller, with an event and a notification.
    h.sandbox.control().revoke_refresh_tokens(Some(PORTAL));
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut c = h.client().await;
    let err = c
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().starts_with("reconnect required"),
        "{}",
        err.message()
    );
    let err2 = c
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
        .await
        .unwrap_err();
    assert!(err2.message().starts_with("reconnect required"));
    let conn = c
        .get_connection(service(pb::GetConnectionRequest {}, "org-1"))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(conn.status(), pb::ConnectionStatus::ReauthRequired);
    let pool = h.pool().await;
    let notes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'spoke.notifications.v1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(notes, 1);
    // The shared client surfaces it as a typed error.
    let client = ConnectionClient::new(
        &ConnectionEndpoint::for_addr(h.app_grpc),
        dev_issuer(),
        "export",
    )
    .unwrap();
    let hubspot = spoke_hubspot::HubSpotClient::with_budget(
        HubSpotSettings {
            api_base_url: h.sandbox.base_url(),
            app_base_url: h.sandbox.base_url(),
        }
        .client_config(),
        client.budget(),
    )
    .unwrap();
    let err = client.portal(&hubspot, "org-1").await.unwrap_err();
    assert!(err.is_reauth_required(), "{err}");
    h.stop().await;
}

#[tokio::test]
async fn admins_mapping_ownership_and_account_mode_rules() {
    let h = start(Duration::from_secs(1800)).await;
    let (status, body, _) = h
        .connect_via_browser("org-1", "admin-1", None, false, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut c = h.client().await;

    // Secondary admin may change settings but not disconnect; users may not change settings.
    c.set_enabled(second(pb::SetEnabledRequest { enabled: true }))
        .await
        .unwrap();
    let err = c
        .disconnect(second(pb::DisconnectRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = c
        .set_enabled(authed(
            pb::SetEnabledRequest { enabled: false },
            "u1",
            "org-1",
            &[Role::User],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Account mode: user → service while enabled is rejected, allowed once off.
    c.set_export_account_mode(admin(pb::SetExportAccountModeRequest {
        mode: pb::ExportAccountMode::UserAccount as i32,
    }))
    .await
    .unwrap();
    let err = c
        .set_export_account_mode(admin(pb::SetExportAccountModeRequest {
            mode: pb::ExportAccountMode::ServiceAccount as i32,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("turn the integration off first"));
    c.set_enabled(admin(pb::SetEnabledRequest { enabled: false }))
        .await
        .unwrap();
    let conn = c
        .set_export_account_mode(admin(pb::SetExportAccountModeRequest {
            mode: pb::ExportAccountMode::ServiceAccount as i32,
        }))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(
        conn.export_account_mode(),
        pb::ExportAccountMode::ServiceAccount
    );
    assert!(!conn.enabled);

    // Users and mapping: auto by email (case-insensitive), manual, reset.
    let users = vec![
        pb::OrgUser {
            user_id: "u-ada".into(),
            email: "ADA@example.com".into(),
            display_name: "Ada".into(),
            admin: true,
        },
        pb::OrgUser {
            user_id: "u-bob".into(),
            email: "bob@example.com".into(),
            display_name: "Bob".into(),
            admin: false,
        },
        pb::OrgUser {
            user_id: "u-zed".into(),
            email: "zed@example.com".into(),
            display_name: "Zed".into(),
            admin: false,
        },
    ];
    let r = c
        .upsert_org_users(service(
            pb::UpsertOrgUsersRequest {
                users,
                removed_user_ids: vec![],
            },
            "org-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.inserted, r.updated, r.removed), (3, 0, 0));

    // First export with an empty mapping builds it: bob resolves to his own owner, zed to the primary admin's.
    let client = ConnectionClient::new(
        &ConnectionEndpoint::for_addr(h.app_grpc),
        dev_issuer(),
        "export",
    )
    .unwrap();
    let bob = client
        .resolve_owner("org-1", "u-bob", "bob@example.com")
        .await
        .unwrap();
    assert_eq!(
        (bob.owner_id.as_str(), bob.source),
        ("502", OwnerSource::UserMapping)
    );
    let zed = client
        .resolve_owner("org-1", "u-zed", "zed@example.com")
        .await
        .unwrap();
    assert_eq!(
        (zed.owner_id.as_str(), zed.source),
        ("501", OwnerSource::PrimaryAdmin)
    );
    let list = c
        .list_user_mappings(admin(pb::ListUserMappingsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .mappings;
    let by: std::collections::HashMap<_, _> = list
        .iter()
        .map(|m| {
            (
                m.user.as_ref().unwrap().user_id.clone(),
                (m.hubspot_owner_id.clone(), m.status()),
            )
        })
        .collect();
    assert_eq!(by["u-ada"], ("501".into(), pb::MappingStatus::MappedAuto));
    assert_eq!(by["u-zed"], (String::new(), pb::MappingStatus::NotMapped));

    // Manual mapping; unknown owners are rejected; reset discards manual mappings.
    let m = c
        .set_user_mapping(admin(pb::SetUserMappingRequest {
            changes: vec![pb::UserMappingChange {
                user_id: "u-zed".into(),
                hubspot_owner_id: "503".into(),
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.mappings[0].status(), pb::MappingStatus::MappedManual);
    assert_eq!(
        client
            .resolve_owner("org-1", "u-zed", "")
            .await
            .unwrap()
            .owner_id,
        "503"
    );
    let err = c
        .set_user_mapping(admin(pb::SetUserMappingRequest {
            changes: vec![pb::UserMappingChange {
                user_id: "u-zed".into(),
                hubspot_owner_id: "999".into(),
            }],
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let reset = c
        .reset_user_mappings(admin(pb::ResetUserMappingsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reset.mapped, reset.unmapped), (2, 1));
    assert_eq!(
        client
            .resolve_owner("org-1", "u-zed", "")
            .await
            .unwrap()
            .source,
        OwnerSource::PrimaryAdmin
    );

    // Data sharing: toggles, then locked by contract.
    let s = c
        .set_data_sharing_settings(admin(pb::SetDataSharingSettingsRequest {
            share_crm_data: Some(true),
            share_usage_data: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(s.share_crm_data && !s.share_usage_data);
    c.set_data_sharing_contract_opt_out(service(
        pb::SetDataSharingContractOptOutRequest { opted_out: true },
        "org-1",
    ))
    .await
    .unwrap();
    let err = c
        .set_data_sharing_settings(admin(pb::SetDataSharingSettingsRequest {
            share_crm_data: Some(true),
            share_usage_data: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Only the primary admin disconnects; delete is then idempotent.
    let d = c
        .disconnect(admin(pb::DisconnectRequest {}))
        .await
        .unwrap()
        .into_inner()
        .connection
        .unwrap();
    assert_eq!(d.status(), pb::ConnectionStatus::Disconnected);
    let err = c
        .get_access_token(service(pb::GetAccessTokenRequest::default(), "org-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        c.delete_integration(admin(pb::DeleteIntegrationRequest {}))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !c.delete_integration(admin(pb::DeleteIntegrationRequest {}))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    let pool = h.pool().await;
    let deleted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE topic = 'spoke.connection.events.v1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        deleted >= 7,
        "connected, enabled x2, mode x2, reset, disconnected, deleted: {deleted}"
    );
    h.stop().await;
}

#[tokio::test]
async fn budget_keeps_three_consumers_under_the_portal_limit_for_60_seconds() {
    let h = start(Duration::from_secs(1800)).await;
    let (status, body, _) = h
        .connect_via_browser("org-1", "admin-1", None, false, None)
        .await;
    assert_eq!(status, 200, "{body}");
    h.sandbox
        .control()
        .set_rate_limits(
            Some(PORTAL),
            RateLimits {
                enabled: true,
                max_per_interval: 110,
                interval_ms: 10_000,
                search_per_second: 5,
                daily: 0,
            },
        )
        .unwrap();
    h.sandbox.control().clear_requests();
    let settings = HubSpotSettings {
        api_base_url: h.sandbox.base_url(),
        app_base_url: h.sandbox.base_url(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for i in 0..3 {
        // Each consumer is its own "service replica" with its own client, leases and HubSpot client.
        let client = ConnectionClient::new(
            &ConnectionEndpoint::for_addr(h.app_grpc),
            dev_issuer(),
            "export",
        )
        .unwrap();
        let hubspot =
            spoke_hubspot::HubSpotClient::with_budget(settings.client_config(), client.budget())
                .unwrap();
        let portal = Arc::new(client.portal(&hubspot, "org-1").await.unwrap());
        tasks.push(tokio::spawn(async move {
            let mut calls = 0u32;
            while Instant::now() < deadline {
                portal
                    .owners_page(None, 10, None, false)
                    .await
                    .unwrap_or_else(|e| panic!("consumer {i}: {e}"));
                calls += 1;
            }
            calls
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let log = h.sandbox.control().requests(10_000, Some(PORTAL));
    let throttled = log.iter().filter(|r| r.status == 429).count();
    let api_calls = log
        .iter()
        .filter(|r| r.path.starts_with("/crm/v3/owners"))
        .count();
    println!(
        "budget: {total} calls in 60 s by 3 consumers, {api_calls} seen by HubSpot, {throttled} 429s (limit 660)"
    );
    assert_eq!(throttled, 0, "no 429s");
    assert!(total as f64 >= 0.9 * 660.0, "used {total} of 660");
    h.stop().await;
}

#[tokio::test]
async fn serves_health_readiness_metrics_and_authenticates_calls() {
    let h = start(Duration::from_secs(1800)).await;
    let (status, body) = http_get(h.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("postgres: ok") && body.contains("kafka: ok"),
        "{body}"
    );
    let (status, body) = http_get(h.admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("spoke_connection_reauth_required"), "{body}");
    let mut c = h.client().await;
    let err = c
        .get_connection(pb::GetConnectionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    h.stop().await;
}

#[tokio::test]
async fn data_sharing_locked_by_contract_rejects_changes_and_records_nothing() {
    let h = start(Duration::from_secs(1800)).await;
    let mut c = h.client().await;
    let contribution = |key: &str, category: pb::ContributionCategory, n: i64| {
        service(
            pb::RecordContributionRequest {
                idempotency_key: key.into(),
                category: category as i32,
                object: spoke_proto::common::v1::ObjectType::Contacts as i32,
                record_count: n,
                source: "filtering_run".into(),
                source_id: key.into(),
                occurred_at: None,
            },
            "org-1",
        )
    };

    // Off by default: nothing is recorded.
    let r = c
        .record_contribution(contribution("k0", pb::ContributionCategory::CrmData, 5))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.recorded);

    // On: recorded once per key, whatever the retries.
    c.set_data_sharing_settings(admin(pb::SetDataSharingSettingsRequest {
        share_crm_data: Some(true),
        share_usage_data: None,
    }))
    .await
    .unwrap();
    let first = c
        .record_contribution(contribution("k1", pb::ContributionCategory::CrmData, 7))
        .await
        .unwrap()
        .into_inner();
    assert!(first.recorded);
    let again = c
        .record_contribution(contribution("k1", pb::ContributionCategory::CrmData, 7))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.contribution.as_ref().map(|c| &c.contribution_id),
        first.contribution.as_ref().map(|c| &c.contribution_id)
    );
    // The usage toggle is still off.
    let usage = c
        .record_contribution(contribution("k2", pb::ContributionCategory::UsageData, 1))
        .await
        .unwrap()
        .into_inner();
    assert!(!usage.recorded);
    // Only services record; users and admins may not.
    let err = c
        .record_contribution(authed(
            pb::RecordContributionRequest {
                idempotency_key: "k3".into(),
                category: pb::ContributionCategory::CrmData as i32,
                ..Default::default()
            },
            "admin-1",
            "org-1",
            &[Role::Admin],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // The contract opts out: toggles off and locked; changes are refused; nothing is recorded.
    let locked = c
        .set_data_sharing_contract_opt_out(service(
            pb::SetDataSharingContractOptOutRequest { opted_out: true },
            "org-1",
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(locked.locked_by_contract && !locked.share_crm_data && !locked.share_usage_data);
    for (crm, usage) in [(Some(true), None), (None, Some(true)), (Some(false), None)] {
        let err = c
            .set_data_sharing_settings(admin(pb::SetDataSharingSettingsRequest {
                share_crm_data: crm,
                share_usage_data: usage,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("locked by your contract"), "{err:?}");
    }
    let r = c
        .record_contribution(contribution("k4", pb::ContributionCategory::CrmData, 3))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.recorded);
    let got = c
        .get_data_sharing_settings(admin(pb::GetDataSharingSettingsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(got.locked_by_contract && !got.share_crm_data);
    // Only services record the opt-out.
    let err = c
        .set_data_sharing_contract_opt_out(admin(pb::SetDataSharingContractOptOutRequest {
            opted_out: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // The list holds exactly the one recorded contribution; users may not list.
    let list = c
        .list_contributions(admin(pb::ListContributionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .contributions;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].record_count, 7);
    assert_eq!(list[0].source_id, "k1");
    let err = c
        .list_contributions(authed(
            pb::ListContributionsRequest::default(),
            "u-1",
            "org-1",
            &[Role::User],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Lifting the opt-out unlocks the toggles, which stay off until an admin turns them on.
    let unlocked = c
        .set_data_sharing_contract_opt_out(service(
            pb::SetDataSharingContractOptOutRequest { opted_out: false },
            "org-1",
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert!(!unlocked.locked_by_contract && !unlocked.share_crm_data);
    c.set_data_sharing_settings(admin(pb::SetDataSharingSettingsRequest {
        share_crm_data: Some(true),
        share_usage_data: None,
    }))
    .await
    .unwrap();
    h.stop().await;
}
