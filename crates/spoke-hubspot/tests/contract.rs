//! Contract tests: the client against the real HubSpot emulator (`spoke-sandbox`) on port 0.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::{Map, Value, json};
use spoke_hubspot::{
    AssociationSpec, BatchReadRequest, CallKind, ClientConfig, CreateInput, Error, Filter,
    FilterGroup, GetOptions, HubSpotClient, InlineAssociation, ListOptions, NoBudget,
    OAuthCredentials, OAuthTokenSource, ObjectType, Operator, PortalClient, Properties,
    PropertyListOptions, RateLimitPolicy, RecordRef, RetryPolicy, SearchRequest, SecretString,
    Sort, StaticToken, TokenTypeHint, UpdateInput, engagement_type_id, type_ids,
};
use spoke_sandbox::{
    FaultKind, FaultRule, OwnerSeed, PortalSeed, RateLimits, Sandbox, SandboxConfig, UserSeed,
};
use support::{RecordingBudget, fast_retry};

const PORTAL: u64 = 62515;
const ADMIN: &str = "admin@acme.test";

fn user(id: &str, email: &str, super_admin: bool) -> UserSeed {
    UserSeed {
        id: id.into(),
        email: email.into(),
        first_name: "First".into(),
        last_name: "Last".into(),
        super_admin,
        role_ids: Vec::new(),
        primary_team_id: None,
        owner_id: None,
    }
}

fn owner(i: u32) -> OwnerSeed {
    OwnerSeed {
        id: (1000 + i).to_string(),
        email: if i == 0 {
            ADMIN.to_owned()
        } else {
            format!("owner{i}@acme.test")
        },
        first_name: format!("Owner{i}"),
        last_name: "Test".into(),
        user_id: (i == 0).then_some(7),
        archived: false,
        teams: Vec::new(),
    }
}

fn credentials() -> OAuthCredentials {
    OAuthCredentials {
        client_id: "sandbox-client-id".into(),
        client_secret: SecretString::from("sandbox-client-secret"),
    }
}

struct Env {
    sandbox: Sandbox,
    client: HubSpotClient,
    portal: PortalClient,
}

async fn env_with(retry: RetryPolicy, budget: Arc<dyn spoke_hubspot::Budget>) -> Env {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let mut seed = PortalSeed::new(PORTAL);
    seed.users = vec![user("7", ADMIN, true), user("8", "member@acme.test", false)];
    seed.owners = (0..150).map(owner).collect();
    seed.default_oauth_user = Some(ADMIN.into());
    sandbox.control().seed_portal(&seed).unwrap();
    let client = HubSpotClient::with_budget(
        ClientConfig {
            api_base_url: sandbox.base_url(),
            app_base_url: sandbox.base_url(),
            retry,
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        },
        budget,
    )
    .unwrap();
    let tokens = sandbox.control().issue_tokens(PORTAL, None).unwrap();
    let portal = client.portal(PORTAL, Arc::new(StaticToken::new(tokens.access_token)));
    Env {
        sandbox,
        client,
        portal,
    }
}

async fn env() -> Env {
    env_with(fast_retry(), Arc::new(NoBudget)).await
}

fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn contact(i: usize) -> CreateInput {
    CreateInput {
        properties: props(&[
            ("email", &format!("person{i}@example.com")),
            ("firstname", &format!("Person{i}")),
            ("lastname", "Example"),
        ]),
        associations: Vec::new(),
    }
}

/// API requests (not OAuth, not admin) the sandbox saw for paths starting with `prefix`.
fn api_requests(sandbox: &Sandbox, prefix: &str) -> Vec<spoke_sandbox::LoggedRequest> {
    sandbox
        .control()
        .requests(100_000, None)
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn oauth_code_exchange_introspection_refresh_and_revocation() {
    let e = env().await;
    let redirect = "http://localhost:9999/oauth/callback";
    let url = e.client.authorize_url(
        "sandbox-client-id",
        redirect,
        &["oauth", "crm.objects.contacts.read"],
        &["crm.objects.deals.read"],
        "state-123",
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let location = url::Url::parse(&location).unwrap();
    assert!(location.as_str().starts_with(redirect), "{location}");
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("state-123"));
    let code = q.get("code").expect("code in redirect");

    let tokens = e
        .client
        .exchange_code(&credentials(), code, redirect)
        .await
        .unwrap();
    assert!(tokens.expires_in > 0 && tokens.expires_in <= 1800);

    let info = e
        .client
        .introspect(
            &credentials(),
            &tokens.access_token,
            TokenTypeHint::AccessToken,
        )
        .await
        .unwrap();
    assert!(info.active);
    assert_eq!(info.hub_id, Some(PORTAL));
    assert_eq!(info.user.as_deref(), Some(ADMIN));
    assert!(
        info.scopes.iter().any(|s| s == "crm.objects.contacts.read"),
        "{:?}",
        info.scopes
    );

    // A code is single-use.
    let err = e
        .client
        .exchange_code(&credentials(), code, redirect)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    // Wrong secret is rejected with HubSpot's error body.
    let bad = OAuthCredentials {
        client_secret: SecretString::from("wrong"),
        ..credentials()
    };
    let err = e
        .client
        .refresh_access_token(&bad, &tokens.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(!err.to_string().contains("wrong"), "{err}");

    let refreshed = e
        .client
        .refresh_access_token(&credentials(), &tokens.refresh_token)
        .await
        .unwrap();
    let portal = e.client.portal(
        PORTAL,
        Arc::new(StaticToken::new(
            spoke_hubspot::ExposeSecret::expose_secret(&refreshed.access_token).to_owned(),
        )),
    );
    assert_eq!(portal.account_details().await.unwrap().portal_id, PORTAL);

    e.client
        .revoke_refresh_token(&credentials(), &refreshed.refresh_token)
        .await
        .unwrap();
    let err = e
        .client
        .refresh_access_token(&credentials(), &refreshed.refresh_token)
        .await
        .unwrap_err();
    assert!(err.is_reauth_required(), "{err}");
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_and_the_call_succeeds() {
    let e = env().await;
    let pair = e.sandbox.control().issue_tokens(PORTAL, None).unwrap();
    let set: spoke_hubspot::TokenSet = serde_json::from_value(json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
    }))
    .unwrap();
    let source = Arc::new(OAuthTokenSource::new(e.client.clone(), credentials(), set));
    let portal = e.client.portal(PORTAL, source.clone());
    assert_eq!(portal.account_details().await.unwrap().portal_id, PORTAL);

    assert!(e.sandbox.control().expire_access_tokens(Some(PORTAL)) >= 1);
    e.sandbox.control().clear_requests();
    assert_eq!(portal.account_details().await.unwrap().portal_id, PORTAL);
    let log = e.sandbox.control().requests(100, None);
    let statuses: Vec<(String, u16)> = log.iter().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(
        statuses,
        vec![
            ("/account-info/v3/details".to_string(), 401),
            ("/oauth/v3/token".to_string(), 200),
            ("/account-info/v3/details".to_string(), 200),
        ]
    );

    // A revoked refresh token surfaces as a re-auth error when the source must refresh.
    let pair = e.sandbox.control().issue_tokens(PORTAL, None).unwrap();
    let set: spoke_hubspot::TokenSet = serde_json::from_value(json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": 0,
    }))
    .unwrap();
    assert!(
        e.sandbox
            .control()
            .revoke_refresh_token(&pair.refresh_token)
    );
    let portal = e.client.portal(
        PORTAL,
        Arc::new(OAuthTokenSource::new(e.client.clone(), credentials(), set)),
    );
    let err = portal.account_details().await.unwrap_err();
    assert!(err.is_reauth_required(), "{err}");
    assert!(matches!(err, Error::Token { .. }), "{err}");
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn account_users_and_owners_page_to_the_end() {
    let e = env().await;
    let a = e.portal.account_details().await.unwrap();
    assert_eq!(a.portal_id, PORTAL);
    assert!(a.ui_domain.is_some() && a.time_zone.is_some() && a.company_currency.is_some());

    let users: Vec<_> = e.portal.users().try_collect().await.unwrap();
    assert_eq!(users.len(), 2);
    let admin = e
        .portal
        .user_by_email("ADMIN@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert!(admin.super_admin);
    let member = e
        .portal
        .user_by_email("member@acme.test")
        .await
        .unwrap()
        .unwrap();
    assert!(!member.super_admin);

    let owners: Vec<_> = e.portal.owners().try_collect().await.unwrap();
    assert_eq!(owners.len(), 150, "owners must be paged to the end");
    let ids: BTreeSet<_> = owners.iter().map(|o| o.id.clone()).collect();
    assert_eq!(ids.len(), 150);
    let page = e.portal.owners_page(None, 100, None, false).await.unwrap();
    assert_eq!(page.results.len(), 100);
    assert!(page.next_after.is_some());

    let o = e.portal.owner_by_email(ADMIN).await.unwrap().unwrap();
    assert_eq!(o.id, "1000");
    assert_eq!(o.user_id.as_deref(), Some("7"));
    assert_eq!(
        e.portal
            .owner("1001")
            .await
            .unwrap()
            .unwrap()
            .email
            .as_deref(),
        Some("owner1@acme.test")
    );
    assert!(e.portal.owner("999999").await.unwrap().is_none());
    assert!(
        e.portal
            .owner_by_email("nobody@acme.test")
            .await
            .unwrap()
            .is_none()
    );
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn properties_and_pipelines() {
    let e = env().await;
    let props = e
        .portal
        .properties(ObjectType::Companies, &PropertyListOptions::default())
        .await
        .unwrap();
    let industry = props
        .iter()
        .find(|p| p.name == "industry")
        .expect("industry");
    assert!(industry.is_enumeration());
    assert!(industry.option_values().any(|v| v == "COMPUTER_SOFTWARE"));
    let id_prop = props
        .iter()
        .find(|p| p.name == "hs_object_id")
        .expect("hs_object_id");
    assert!(!id_prop.is_writable());

    let email = e
        .portal
        .property(ObjectType::Contacts, "email")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(email.property_type, "string");
    assert!(
        e.portal
            .property(ObjectType::Contacts, "no_such_prop")
            .await
            .unwrap()
            .is_none()
    );

    let pipelines = e.portal.pipelines(ObjectType::Deals).await.unwrap();
    assert!(!pipelines.is_empty());
    assert!(!pipelines[0].stages.is_empty());
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn crm_objects_create_list_read_update_archive() {
    let e = env().await;
    let mut created = Vec::new();
    for chunk in (0..250).map(contact).collect::<Vec<_>>().chunks(100) {
        let r = e
            .portal
            .batch_create(ObjectType::Contacts, chunk)
            .await
            .unwrap();
        assert!(r.is_complete());
        assert_eq!(r.results.len(), chunk.len());
        created.extend(r.results);
    }
    let first = &created[0];
    assert_eq!(first.property("hs_object_id"), Some(first.id.as_str()));
    assert!(first.created_at.is_some());

    // List pages to the end (3 pages of ≤100).
    let listed: Vec<_> = e
        .portal
        .list(
            ObjectType::Contacts,
            ListOptions {
                properties: vec!["email".into()],
                ..ListOptions::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 250);
    let emails: BTreeSet<_> = listed.iter().filter_map(|o| o.property("email")).collect();
    assert_eq!(emails.len(), 250);
    assert_eq!(
        api_requests(&e.sandbox, "/crm/v3/objects/contacts")
            .iter()
            .filter(|r| r.method == "GET")
            .count(),
        3
    );

    // Get by id and by unique property.
    let got = e
        .portal
        .get_object(ObjectType::Contacts, &first.id, &GetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, first.id);
    let by_email = e
        .portal
        .get_object(
            ObjectType::Contacts,
            "PERSON0@example.com",
            &GetOptions {
                id_property: Some("email".into()),
                properties: vec!["email".into(), "firstname".into()],
                ..GetOptions::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.id, first.id);
    assert!(
        e.portal
            .get_object(ObjectType::Contacts, "99999999", &GetOptions::default())
            .await
            .unwrap()
            .is_none()
    );

    // Batch read by email with one unknown: 207 is a result with per-input errors.
    let r = e
        .portal
        .batch_read(
            ObjectType::Contacts,
            &BatchReadRequest {
                ids: vec!["person1@example.com".into(), "ghost@example.com".into()],
                properties: vec!["email".into()],
                id_property: Some("email".into()),
                archived: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].property("email"), Some("person1@example.com"));
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].category.as_deref(), Some("OBJECT_NOT_FOUND"));
    assert_eq!(r.errors[0].ids(), ["ghost@example.com".to_string()]);

    // Batch update: one known id and one unknown → 207.
    let r = e
        .portal
        .batch_update(
            ObjectType::Contacts,
            &[
                UpdateInput {
                    id: first.id.clone(),
                    properties: props(&[("city", "Berlin")]),
                    id_property: None,
                },
                UpdateInput {
                    id: "99999999".into(),
                    properties: props(&[("city", "Paris")]),
                    id_property: None,
                },
            ],
        )
        .await;
    match r {
        Ok(r) => {
            assert_eq!(r.results.len(), 1);
            assert_eq!(r.results[0].property("city"), Some("Berlin"));
            assert_eq!(r.errors.len(), 1);
        }
        // HubSpot rejects batch updates naming unknown ids as a whole; accept either documented shape.
        Err(err) => assert!(matches!(err.status(), Some(400 | 404)), "{err}"),
    }
    let r = e
        .portal
        .batch_update(
            ObjectType::Contacts,
            &[UpdateInput {
                id: "person2@example.com".into(),
                properties: props(&[("city", "Rome")]),
                id_property: Some("email".into()),
            }],
        )
        .await
        .unwrap();
    assert_eq!(r.results[0].property("city"), Some("Rome"));

    // Archive, then the record is gone from reads and listing.
    let gone = vec![created[1].id.clone(), created[2].id.clone()];
    e.portal
        .batch_archive(ObjectType::Contacts, &gone)
        .await
        .unwrap();
    assert!(
        e.portal
            .get_object(ObjectType::Contacts, &gone[0], &GetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    let archived = e
        .portal
        .get_object(
            ObjectType::Contacts,
            &gone[0],
            &GetOptions {
                archived: true,
                ..GetOptions::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(archived.archived);
    let remaining: Vec<_> = e
        .portal
        .list(ObjectType::Contacts, ListOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(remaining.len(), 248);
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn duplicate_email_conflict_exposes_existing_id() {
    let e = env().await;
    let r = e
        .portal
        .batch_create(ObjectType::Contacts, &[contact(1)])
        .await
        .unwrap();
    let existing = r.results[0].id.clone();
    let mut dup = contact(1);
    dup.properties
        .insert("email".into(), "PERSON1@EXAMPLE.COM".into());
    let err = e
        .portal
        .batch_create(ObjectType::Contacts, &[contact(2), dup])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.existing_id(), Some(existing.as_str()));
    assert_eq!(err.api().unwrap().category.as_deref(), Some("CONFLICT"));
    assert!(err.api().unwrap().correlation_id.is_some());
    // The whole batch failed: person2 was not created, and the 409 was not retried.
    let r = e
        .portal
        .batch_read(
            ObjectType::Contacts,
            &BatchReadRequest {
                ids: vec!["person2@example.com".into()],
                id_property: Some("email".into()),
                ..BatchReadRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(r.results.is_empty());
    let creates = api_requests(&e.sandbox, "/crm/v3/objects/contacts/batch/create");
    assert_eq!(creates.iter().filter(|r| r.status == 409).count(), 1);
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_property_and_allowed_values() {
    let e = env().await;
    let err = e
        .portal
        .batch_create(
            ObjectType::Companies,
            &[CreateInput {
                properties: props(&[("name", "Acme"), ("industry", "Computer Software")]),
                associations: Vec::new(),
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let api = err.api().unwrap();
    assert_eq!(api.category.as_deref(), Some("VALIDATION_ERROR"));
    assert_eq!(api.invalid_options.len(), 1, "{api:?}");
    let bad = &api.invalid_options[0];
    assert_eq!(bad.property, "industry");
    assert_eq!(bad.value.as_deref(), Some("Computer Software"));
    assert!(
        bad.allowed.iter().any(|v| v == "COMPUTER_SOFTWARE"),
        "{:?}",
        bad.allowed
    );
    assert!(
        err.to_string()
            .contains("invalid option \"Computer Software\" for property industry"),
        "{err}"
    );

    let err = e
        .portal
        .batch_create(
            ObjectType::Companies,
            &[CreateInput {
                properties: props(&[("name", "Acme"), ("hs_object_id", "5")]),
                associations: Vec::new(),
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.api()
            .unwrap()
            .errors
            .iter()
            .any(|d| d.code.as_deref() == Some("READ_ONLY_VALUE"))
    );

    let err = e
        .portal
        .batch_create(
            ObjectType::Companies,
            &[CreateInput {
                properties: props(&[("no_such_property", "x")]),
                associations: Vec::new(),
            }],
        )
        .await
        .unwrap_err();
    assert!(
        err.api()
            .unwrap()
            .errors
            .iter()
            .any(|d| d.code.as_deref() == Some("PROPERTY_DOESNT_EXIST"))
    );

    // 400s are never retried: exactly one request per failing call.
    let creates = api_requests(&e.sandbox, "/crm/v3/objects/companies/batch/create");
    assert_eq!(creates.len(), 3);

    // Over-sized batches fail client-side without a request.
    let inputs: Vec<_> = (0..101).map(contact).collect();
    let err = e
        .portal
        .batch_create(ObjectType::Contacts, &inputs)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BatchTooLarge { .. }));
    assert!(api_requests(&e.sandbox, "/crm/v3/objects/contacts/batch/create").is_empty());
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn search_filters_sorts_and_pages_to_the_end() {
    let e = env().await;
    let inputs: Vec<CreateInput> = (0..30)
        .map(|i| CreateInput {
            properties: props(&[
                ("name", &format!("Company {i:02}")),
                ("domain", &format!("c{i}.example.com")),
                (
                    "industry",
                    if i % 2 == 0 {
                        "COMPUTER_SOFTWARE"
                    } else {
                        "ACCOUNTING"
                    },
                ),
            ]),
            associations: Vec::new(),
        })
        .collect();
    e.portal
        .batch_create(ObjectType::Companies, &inputs)
        .await
        .unwrap();

    let page = e
        .portal
        .search(
            ObjectType::Companies,
            &SearchRequest {
                filter_groups: vec![FilterGroup::of(vec![Filter::eq(
                    "domain",
                    "c7.example.com",
                )])],
                properties: vec!["domain".into(), "name".into()],
                ..SearchRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.results[0].property("name"), Some("Company 07"));

    let software: Vec<_> = e
        .portal
        .search_stream(
            ObjectType::Companies,
            SearchRequest {
                filter_groups: vec![FilterGroup::of(vec![Filter::eq(
                    "industry",
                    "COMPUTER_SOFTWARE",
                )])],
                sorts: vec![Sort::desc("name")],
                properties: vec!["name".into()],
                limit: 4,
                ..SearchRequest::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(software.len(), 15);
    let names: Vec<_> = software.iter().filter_map(|o| o.property("name")).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted, "descending by name");
    assert_eq!(
        api_requests(&e.sandbox, "/crm/v3/objects/companies/search").len(),
        1 + 4
    );

    // OR of groups, IN, and NOT_HAS_PROPERTY.
    let page = e
        .portal
        .search(
            ObjectType::Companies,
            &SearchRequest {
                filter_groups: vec![
                    FilterGroup::of(vec![Filter::in_values(
                        "domain",
                        vec!["c1.example.com".into(), "c2.example.com".into()],
                    )]),
                    FilterGroup::of(vec![Filter::new("name", Operator::Eq, "Company 29")]),
                ],
                ..SearchRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    let page = e
        .portal
        .search(
            ObjectType::Companies,
            &SearchRequest {
                filter_groups: vec![FilterGroup::of(vec![Filter::not_has_property("domain")])],
                ..SearchRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn search_beyond_ten_thousand_needs_the_keyset_stream() {
    let e = env().await;
    let records: Vec<Map<String, Value>> = (0..10_150)
        .map(|i| {
            let mut m = Map::new();
            m.insert("name".into(), json!(format!("Bulk {i}")));
            m.insert("city".into(), json!("Springfield"));
            m
        })
        .collect();
    e.sandbox
        .control()
        .insert_records(PORTAL, "companies", records)
        .unwrap();
    let req = SearchRequest {
        filter_groups: vec![FilterGroup::of(vec![Filter::eq("city", "Springfield")])],
        properties: vec!["name".into()],
        limit: 200,
        ..SearchRequest::default()
    };
    let err = e
        .portal
        .search_stream(ObjectType::Companies, req.clone())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SearchCapReached {
                total: 10_150,
                cap: 10_000
            }
        ),
        "{err}"
    );

    let all: Vec<_> = e
        .portal
        .search_all_by_id(ObjectType::Companies, req)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 10_150);
    let ids: BTreeSet<u64> = all.iter().map(|o| o.id.parse().unwrap()).collect();
    assert_eq!(ids.len(), 10_150, "no record twice");
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn engagements_and_associations() {
    let e = env().await;
    let c = e
        .portal
        .batch_create(ObjectType::Contacts, &[contact(1)])
        .await
        .unwrap();
    let contact_id = c.results[0].id.clone();
    let co = e
        .portal
        .batch_create(
            ObjectType::Companies,
            &[CreateInput {
                properties: props(&[("name", "Acme"), ("domain", "acme.test")]),
                associations: Vec::new(),
            }],
        )
        .await
        .unwrap();
    let company_id = co.results[0].id.clone();

    let task_to_contact = engagement_type_id(ObjectType::Tasks, ObjectType::Contacts).unwrap();
    assert_eq!(task_to_contact, type_ids::TASK_TO_CONTACT);
    let task = e
        .portal
        .create_object(
            ObjectType::Tasks,
            &CreateInput {
                properties: props(&[
                    ("hs_timestamp", "2024-05-01T12:00:00.000Z"),
                    ("hs_task_subject", "Follow up"),
                ]),
                associations: vec![InlineAssociation {
                    to: RecordRef {
                        id: contact_id.clone(),
                    },
                    types: vec![AssociationSpec::hubspot_defined(task_to_contact)],
                }],
            },
        )
        .await
        .unwrap();
    assert_eq!(task.property("hs_task_subject"), Some("Follow up"));

    let call = e
        .portal
        .create_object(
            ObjectType::Calls,
            &CreateInput {
                properties: props(&[("hs_timestamp", "2024-05-01T12:00:00.000Z")]),
                associations: Vec::new(),
            },
        )
        .await
        .unwrap();
    e.portal
        .associate_default(
            ObjectType::Calls,
            &call.id,
            ObjectType::Contacts,
            &contact_id,
        )
        .await
        .unwrap();
    let r = e
        .portal
        .associate_default_batch(
            ObjectType::Calls,
            ObjectType::Companies,
            &[(call.id.clone(), company_id.clone())],
        )
        .await
        .unwrap();
    assert!(r.is_complete(), "{:?}", r.errors);

    let err = e
        .portal
        .associate_default(
            ObjectType::Calls,
            &call.id,
            ObjectType::Contacts,
            "99999999",
        )
        .await
        .unwrap_err();
    assert!(matches!(err.status(), Some(400 | 404)), "{err}");
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn associations_batch_read_pages_per_record_and_skips_records_without_any() {
    let e = env().await;
    let control = e.sandbox.control();
    let names = |prefix: &str, n: usize| -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| {
                json!({ "name": format!("{prefix}{i}") })
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect()
    };
    let companies = control
        .insert_records(PORTAL, "companies", names("Co", 620))
        .unwrap();
    let deals = control
        .insert_records(
            PORTAL,
            "deals",
            (0..3)
                .map(|i| {
                    json!({ "dealname": format!("D{i}") })
                        .as_object()
                        .cloned()
                        .unwrap()
                })
                .collect(),
        )
        .unwrap();
    // Deal 0: primary company 7 plus 600 unlabeled ones (more than one page of 500); deal 1: one
    // unlabeled company; deal 2: none.
    control
        .associate_records(
            PORTAL,
            "deals",
            "companies",
            &[(deals[0].clone(), companies[7].clone())],
            Some(type_ids::DEAL_TO_COMPANY_PRIMARY),
        )
        .unwrap();
    let mut pairs: Vec<(String, String)> = companies[10..610]
        .iter()
        .map(|c| (deals[0].clone(), c.clone()))
        .collect();
    pairs.push((deals[1].clone(), companies[3].clone()));
    control
        .associate_records(PORTAL, "deals", "companies", &pairs, None)
        .unwrap();
    e.sandbox.control().clear_requests();

    let read = e
        .portal
        .associations_batch_read(ObjectType::Deals, ObjectType::Companies, &deals)
        .await
        .unwrap();
    assert!(
        read.errors.is_empty(),
        "no associations is not an error: {:?}",
        read.errors
    );
    assert_eq!(read.results.len(), 2, "deal 2 has none and is absent");
    let d0 = read
        .results
        .iter()
        .find(|r| r.from_id == deals[0])
        .expect("deal 0");
    assert_eq!(d0.to.len(), 601, "both pages of deal 0");
    let ids: BTreeSet<&str> = d0.to.iter().map(|t| t.to_object_id.as_str()).collect();
    assert_eq!(ids.len(), 601, "no target twice");
    let primary: Vec<&str> = d0
        .to
        .iter()
        .filter(|t| t.has_type(type_ids::DEAL_TO_COMPANY_PRIMARY))
        .map(|t| t.to_object_id.as_str())
        .collect();
    assert_eq!(primary, vec![companies[7].as_str()]);
    let d1 = read
        .results
        .iter()
        .find(|r| r.from_id == deals[1])
        .expect("deal 1");
    assert_eq!(d1.to.len(), 1);
    assert_eq!(d1.to[0].to_object_id, companies[3]);
    assert!(d1.to[0].has_type(type_ids::DEAL_TO_COMPANY));
    // One call for the three deals, one more for deal 0's second page.
    assert_eq!(
        api_requests(
            &e.sandbox,
            "/crm/v4/associations/deals/companies/batch/read"
        )
        .len(),
        2
    );
    // The reverse direction carries the reverse types.
    let back = e
        .portal
        .associations_batch_read(
            ObjectType::Companies,
            ObjectType::Deals,
            &[companies[7].clone()],
        )
        .await
        .unwrap();
    assert!(back.results[0].to[0].has_type(type_ids::COMPANY_TO_DEAL_PRIMARY));

    let too_many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let err = e
        .portal
        .associations_batch_read(ObjectType::Deals, ObjectType::Companies, &too_many)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BatchTooLarge {
                max: 1000,
                got: 1001,
                ..
            }
        ),
        "{err}"
    );
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn injected_faults_are_retried_until_success() {
    let e = env().await;
    e.portal
        .batch_create(ObjectType::Contacts, &[contact(1)])
        .await
        .unwrap();
    let cases = [
        FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        },
        FaultKind::Status {
            status: 502,
            retry_after_secs: None,
        },
        FaultKind::Status {
            status: 503,
            retry_after_secs: None,
        },
        FaultKind::Status {
            status: 504,
            retry_after_secs: None,
        },
        FaultKind::Status {
            status: 477,
            retry_after_secs: Some(1),
        },
        FaultKind::Reset,
    ];
    for fault in cases {
        e.sandbox.control().clear_requests();
        e.sandbox.control().set_faults(
            vec![FaultRule::always("/crm/v3/objects/contacts", fault.clone()).times(2)],
            Some(1),
        );
        let started = Instant::now();
        let listed: Vec<_> = e
            .portal
            .list(ObjectType::Contacts, ListOptions::default())
            .try_collect()
            .await
            .unwrap_or_else(|err| panic!("{fault:?}: {err}"));
        assert_eq!(listed.len(), 1, "{fault:?}");
        let log = api_requests(&e.sandbox, "/crm/v3/objects/contacts");
        assert_eq!(log.len(), 3, "{fault:?}: {log:?}");
        assert_eq!(log[2].status, 200);
        if matches!(fault, FaultKind::Status { status: 477, .. }) {
            assert!(
                started.elapsed() >= Duration::from_secs(2),
                "Retry-After honoured"
            );
        }
    }

    // 423 waits at least two seconds before the retry.
    e.sandbox.control().clear_requests();
    e.sandbox.control().set_faults(
        vec![
            FaultRule::always(
                "/crm/v3/objects/contacts",
                FaultKind::Status {
                    status: 423,
                    retry_after_secs: None,
                },
            )
            .times(1),
        ],
        Some(1),
    );
    let started = Instant::now();
    let listed: Vec<_> = e
        .portal
        .list(ObjectType::Contacts, ListOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Creates: 503 is retried (not processed), 502 is surfaced because the batch may have been applied.
    e.sandbox.control().set_faults(
        vec![
            FaultRule::always(
                "/crm/v3/objects/contacts/batch/create",
                FaultKind::Status {
                    status: 503,
                    retry_after_secs: None,
                },
            )
            .times(1),
        ],
        Some(1),
    );
    let r = e
        .portal
        .batch_create(ObjectType::Contacts, &[contact(2)])
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1);
    e.sandbox.control().set_faults(
        vec![
            FaultRule::always(
                "/crm/v3/objects/contacts/batch/create",
                FaultKind::Status {
                    status: 502,
                    retry_after_secs: None,
                },
            )
            .times(1),
        ],
        Some(1),
    );
    let err = e
        .portal
        .batch_create(ObjectType::Contacts, &[contact(3)])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.may_have_been_applied());
    e.sandbox.control().clear_faults();
    e.sandbox.shutdown().await;
}

#[tokio::test]
async fn rate_limits_parse_policy_and_report_throttles() {
    let budget = Arc::new(RecordingBudget::default());
    let e = env_with(fast_retry(), budget.clone()).await;

    // An injected SECONDLY 429 is retried and reported to the budget.
    e.sandbox.control().set_faults(
        vec![
            FaultRule::always(
                "/crm/v3/objects/companies/search",
                FaultKind::RateLimit {
                    policy_name: "SECONDLY".into(),
                },
            )
            .times(1),
        ],
        Some(1),
    );
    let page = e
        .portal
        .search(ObjectType::Companies, &SearchRequest::default())
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    assert_eq!(
        *budget.throttled.lock().unwrap(),
        vec![(PORTAL, RateLimitPolicy::Secondly)]
    );
    assert!(
        budget
            .acquired
            .lock()
            .unwrap()
            .iter()
            .all(|(p, k, _)| *p == PORTAL && *k == CallKind::Search)
    );
    e.sandbox.control().clear_faults();

    // The sandbox's real ten-secondly limiter: without retries the 429 surfaces with its policy.
    e.sandbox
        .control()
        .set_rate_limits(
            Some(PORTAL),
            RateLimits {
                enabled: true,
                max_per_interval: 2,
                interval_ms: 10_000,
                search_per_second: 5,
                daily: 0,
            },
        )
        .unwrap();
    let strict = e.client.portal(
        PORTAL,
        Arc::new(StaticToken::new(
            e.sandbox
                .control()
                .issue_tokens(PORTAL, None)
                .unwrap()
                .access_token,
        )),
    );
    let no_retry = HubSpotClient::with_budget(
        ClientConfig {
            api_base_url: e.sandbox.base_url(),
            retry: RetryPolicy::none(),
            ..ClientConfig::default()
        },
        Arc::new(NoBudget),
    )
    .unwrap()
    .portal(
        PORTAL,
        Arc::new(StaticToken::new(
            e.sandbox
                .control()
                .issue_tokens(PORTAL, None)
                .unwrap()
                .access_token,
        )),
    );
    let mut last = None;
    for _ in 0..4 {
        if let Err(err) = no_retry.account_details().await {
            last = Some(err);
            break;
        }
    }
    let err = last.expect("a 429 within 4 calls at 2 per 10 s");
    assert_eq!(err.status(), Some(429));
    assert_eq!(
        err.api().unwrap().policy,
        Some(RateLimitPolicy::TenSecondlyRolling)
    );
    assert!(err.is_retriable());
    drop(strict);

    // The daily cap is final: not retried.
    e.sandbox.control().set_faults(
        vec![FaultRule::always(
            "/account-info/v3/details",
            FaultKind::RateLimit {
                policy_name: "DAILY".into(),
            },
        )],
        Some(1),
    );
    e.sandbox
        .control()
        .set_rate_limits(Some(PORTAL), RateLimits::default())
        .unwrap();
    e.sandbox.control().clear_requests();
    let err = e.portal.account_details().await.unwrap_err();
    assert_eq!(err.api().unwrap().policy, Some(RateLimitPolicy::Daily));
    assert!(!err.is_retriable());
    assert_eq!(api_requests(&e.sandbox, "/account-info").len(), 1);
    e.sandbox.shutdown().await;
}
