//! The export pipeline end to end inside one process: CreateExport over gRPC → request batches on
//! Kafka → (stand-in) dedupe → checked batches → writer → HubSpot sandbox; outcomes, counts,
//! review, ownership, update modes, cancel, account modes.

mod common;

use std::collections::HashMap;

use common::*;
use spoke_mapping_core::{DuplicateAction as CoreAction, DuplicateSettings, ExportPreferences};
use spoke_platform::auth::Role;
use spoke_proto::common::v1::{CheckDecision, DuplicateAction, ExportRecord, ObjectType};
use spoke_proto::export::v1::{
    CancelExportRequest, CreateExportRequest, GetExportRequest, ListExportRecordsRequest,
    ListExportsRequest, RecordResolution, RecordStatus, ResolveDuplicatesRequest,
};

fn create(key: &str, object: ObjectType, records: Vec<ExportRecord>) -> CreateExportRequest {
    CreateExportRequest {
        idempotency_key: key.into(),
        object: object as i32,
        records,
        label: "test list".into(),
        ..Default::default()
    }
}

async fn all_records(
    h: &Harness,
    job_id: &str,
) -> Vec<spoke_proto::export::v1::ExportRecordResult> {
    let mut client = h.client().await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_export_records(authed(
                ListExportRecordsRequest {
                    job_id: job_id.into(),
                    page_size: 1000,
                    page_token: token.clone(),
                    status: 0,
                },
                MAPPED_USER,
            ))
            .await
            .expect("list records")
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    New,
    ExistingEmail,
    ExistingName,
    BadPicklist,
    BadEmail,
    LaggedExisting,
    Skip,
}

fn kind_of(i: usize) -> Kind {
    match i % 20 {
        0..=9 | 19 => Kind::New,
        10..=13 => Kind::ExistingEmail,
        14 => Kind::ExistingName,
        15 => Kind::BadPicklist,
        16 => Kind::BadEmail,
        17 => Kind::LaggedExisting,
        _ => Kind::Skip,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_export_of_2000_contacts_ends_with_exact_per_record_outcomes() {
    let h = Harness::start().await;
    let ctl = h.sandbox.control();
    let n = 2000;
    // Existing HubSpot contacts: by email (with phone and job title set), by name+company (no email).
    let mut existing: HashMap<usize, String> = HashMap::new();
    let mut seed_email = Vec::new();
    let mut seed_idx = Vec::new();
    for i in 0..n {
        let mut m = serde_json::Map::new();
        match kind_of(i) {
            Kind::ExistingEmail | Kind::LaggedExisting => {
                m.insert("email".into(), format!("person{i}@acme.example").into());
                m.insert("phone".into(), "111".into());
                m.insert("jobtitle".into(), "Old".into());
            }
            Kind::ExistingName => {
                m.insert("firstname".into(), format!("First{i}").into());
                m.insert("lastname".into(), format!("Last{i}").into());
                m.insert("company".into(), "Acme".into());
            }
            _ => continue,
        }
        seed_email.push(m);
        seed_idx.push(i);
    }
    let ids = ctl
        .insert_records(PORTAL, "contacts", seed_email)
        .expect("seed");
    for (i, id) in seed_idx.iter().zip(ids) {
        existing.insert(*i, id);
    }
    let seeded = existing.len();

    let records: Vec<ExportRecord> = (0..n)
        .map(|i| {
            let email = format!("person{i}@acme.example");
            let first = format!("First{i}");
            let last = format!("Last{i}");
            match kind_of(i) {
                Kind::ExistingName => contact(
                    &i.to_string(),
                    &[
                        ("first_name", &first),
                        ("last_name", &last),
                        ("company_name", "Acme"),
                        ("job_title", "New"),
                    ],
                ),
                Kind::BadPicklist => contact(
                    &i.to_string(),
                    &[("email", &email), ("first_name", &first), ("stage", "Tech")],
                ),
                Kind::BadEmail => contact(
                    &i.to_string(),
                    &[
                        ("email", "not-an-email"),
                        ("first_name", &first),
                        ("last_name", &last),
                    ],
                ),
                _ => contact(
                    &i.to_string(),
                    &[
                        ("email", &email),
                        ("first_name", &first),
                        ("last_name", &last),
                        ("mobile", "999"),
                        ("job_title", "New"),
                        ("stage", "lead"),
                    ],
                ),
            }
        })
        .collect();
    let decisions: HashMap<String, (CheckDecision, String)> = (0..n)
        .map(|i| {
            let d = match kind_of(i) {
                Kind::ExistingEmail | Kind::ExistingName => {
                    (CheckDecision::UpdateExisting, existing[&i].clone())
                }
                // HubSpot's search had not seen it yet: dedupe says create, HubSpot answers 409.
                Kind::LaggedExisting => (CheckDecision::Create, String::new()),
                Kind::Skip => (CheckDecision::Skip, String::new()),
                _ => (CheckDecision::Create, String::new()),
            };
            (i.to_string(), d)
        })
        .collect();
    h.set_decide(move |r| decisions[&r.record_id].clone());

    let mut client = h.client().await;
    let resp = client
        .create_export(authed(
            create("mixed-1", ObjectType::Contacts, records),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner();
    assert!(resp.created);
    let job = resp.job.expect("job");
    assert_eq!(
        job.state,
        spoke_proto::common::v1::ExportJobState::Pending as i32
    );
    assert_eq!(job.counts.as_ref().map(|c| c.total), Some(n as i64));

    let done = h.wait_terminal(&job.job_id, 120).await;
    let c = done.counts.expect("counts");
    let want = |k: Kind| (0..n).filter(|i| kind_of(*i) == k).count() as i64;
    assert_eq!(c.created, want(Kind::New), "{c:?}");
    assert_eq!(
        c.updated,
        want(Kind::ExistingEmail) + want(Kind::ExistingName) + want(Kind::LaggedExisting),
        "{c:?}"
    );
    assert_eq!(
        c.failed,
        want(Kind::BadPicklist) + want(Kind::BadEmail),
        "{c:?}"
    );
    assert_eq!(c.skipped, want(Kind::Skip), "{c:?}");
    assert_eq!((c.pending, c.needs_review), (0, 0));
    assert_eq!(
        done.state,
        spoke_proto::common::v1::ExportJobState::CompletedWithErrors as i32
    );

    let recs = all_records(&h, &job.job_id).await;
    assert_eq!(recs.len(), n);
    for r in &recs {
        let i: usize = r.record_id.parse().expect("id");
        let status = RecordStatus::try_from(r.status).expect("status");
        match kind_of(i) {
            Kind::New => {
                assert_eq!(status, RecordStatus::Created, "{r:?}");
                let p = sandbox_props(&h, "contacts", &r.hubspot_id);
                assert_eq!(
                    p.get("email").map(String::as_str),
                    Some(format!("person{i}@acme.example").as_str())
                );
                assert_eq!(
                    p.get("hubspot_owner_id").map(String::as_str),
                    Some("601"),
                    "mapped user's owner"
                );
                assert_eq!(p.get("phone").map(String::as_str), Some("999"));
            }
            Kind::ExistingEmail | Kind::LaggedExisting => {
                assert_eq!(status, RecordStatus::Updated, "{r:?}");
                assert_eq!(r.hubspot_id, existing[&i]);
                let p = sandbox_props(&h, "contacts", &r.hubspot_id);
                assert_eq!(
                    p.get("phone").map(String::as_str),
                    Some("111"),
                    "complete-if-missing keeps HubSpot's value"
                );
                assert_eq!(
                    p.get("jobtitle").map(String::as_str),
                    Some("New"),
                    "overwrite replaces it"
                );
                assert_eq!(p.get("hubspot_owner_id"), None, "owner only set on creates");
            }
            Kind::ExistingName => {
                assert_eq!(status, RecordStatus::Updated, "{r:?}");
                assert_eq!(r.hubspot_id, existing[&i]);
                let p = sandbox_props(&h, "contacts", &r.hubspot_id);
                assert_eq!(p.get("jobtitle").map(String::as_str), Some("New"));
            }
            Kind::BadPicklist => {
                assert_eq!(status, RecordStatus::Failed, "{r:?}");
                assert!(
                    r.message.contains("lifecyclestage") && r.message.contains("Tech"),
                    "{}",
                    r.message
                );
                assert!(r.hubspot_id.is_empty());
            }
            Kind::BadEmail => {
                assert_eq!(status, RecordStatus::Failed, "{r:?}");
                assert!(r.message.to_lowercase().contains("email"), "{}", r.message);
            }
            Kind::Skip => {
                assert_eq!(status, RecordStatus::Skipped, "{r:?}");
                assert!(!r.message.is_empty());
            }
        }
    }
    let counts = ctl.counts(PORTAL).expect("counts");
    assert_eq!(counts.live["contacts"], seeded + want(Kind::New) as usize);
    assert!(
        ctl.duplicates(PORTAL, "contacts")
            .expect("dups")
            .iter()
            .all(|d| d.kind != "email"),
        "no duplicate emails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_export_is_idempotent_and_validates_records_and_rules() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let recs = || {
        vec![
            contact("a", &[("email", "a@x.example")]),
            contact("b", &[("email", "b@x.example")]),
        ]
    };
    let first = client
        .create_export(authed(
            create("key-1", ObjectType::Contacts, recs()),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner();
    let again = client
        .create_export(authed(
            create("key-1", ObjectType::Contacts, recs()),
            MAPPED_USER,
        ))
        .await
        .expect("retry")
        .into_inner();
    assert!(first.created && !again.created);
    assert_eq!(
        first.job.as_ref().map(|j| &j.job_id),
        again.job.as_ref().map(|j| &j.job_id)
    );
    let err = client
        .create_export(authed(
            create(
                "key-1",
                ObjectType::Contacts,
                vec![contact("z", &[("email", "z@x.example")])],
            ),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("idempotency_key"), "{err:?}");
    // The first job completes once; the retry never started a second one.
    let job_id = first.job.expect("job").job_id;
    let done = h.wait_terminal(&job_id, 60).await;
    assert_eq!(done.counts.map(|c| c.created), Some(2));
    let list = client
        .list_exports(authed(ListExportsRequest::default(), MAPPED_USER))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.jobs.len(), 1);
    assert_eq!(
        h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"],
        2
    );
    assert_eq!(
        h.cluster.regenerated.lock().as_slice(),
        [MAPPED_USER.to_string()],
        "first export regenerates the user mapping"
    );

    // Validation names the record and field.
    let err = client
        .create_export(authed(
            create(
                "key-2",
                ObjectType::Contacts,
                vec![contact("a", &[]), contact("a", &[])],
            ),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("records[1].record_id"), "{err:?}");
    let err = client
        .create_export(authed(
            create(
                "key-3",
                ObjectType::Contacts,
                vec![company("c", &[("name", "Acme")])],
            ),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("records[0]") && err.message().contains("profile.kind"),
        "{err:?}"
    );
    let err = client
        .create_export(authed(
            create("key-4", ObjectType::Contacts, vec![]),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Admin rules: max per export, object not allowed, duplicate choice not offered.
    h.cluster.set_mapping(
        ObjectType::Contacts,
        compiled(
            ObjectType::Contacts,
            ExportPreferences {
                max_per_export: 1,
                ..ExportPreferences::default()
            },
            DuplicateSettings::default(),
        ),
    );
    let err = client
        .create_export(authed(
            create("key-5", ObjectType::Contacts, recs()),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("at most 1"), "{err:?}");
    h.cluster.set_mapping(
        ObjectType::Companies,
        compiled(
            ObjectType::Companies,
            ExportPreferences {
                allowed: false,
                ..ExportPreferences::default()
            },
            DuplicateSettings::default(),
        ),
    );
    let err = client
        .create_export(authed(
            create(
                "key-6",
                ObjectType::Companies,
                vec![company("c", &[("name", "Acme")])],
            ),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let mut req = create(
        "key-7",
        ObjectType::Contacts,
        vec![contact("q", &[("email", "q@x.example")])],
    );
    req.duplicate_choice = DuplicateAction::CreateDuplicate as i32;
    h.cluster.set_mapping(
        ObjectType::Contacts,
        compiled(
            ObjectType::Contacts,
            ExportPreferences::default(),
            DuplicateSettings::default(),
        ),
    );
    let err = client
        .create_export(authed(req, MAPPED_USER))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "duplicate creation is off by default: {err:?}"
    );

    // Who sees what: another user of the org is denied, an admin sees it, another org gets the
    // answer of a missing job (existence is not revealed).
    let err = client
        .get_export(authed(
            GetExportRequest {
                job_id: job_id.clone(),
            },
            UNMAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    client
        .get_export(authed_as(
            GetExportRequest {
                job_id: job_id.clone(),
            },
            "admin-1",
            &[Role::Admin],
        ))
        .await
        .expect("admin sees it");
    let mut other = tonic::Request::new(GetExportRequest {
        job_id: job_id.clone(),
    });
    let token = spoke_platform::testing::dev_token("x", "org-other", &[Role::Admin]);
    other.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("md"),
    );
    let err = client.get_export(other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(err.message(), format!("export job {job_id} not found"));
    // A service must name the user it exports for.
    let err = client
        .create_export(authed_as(
            create("key-8", ObjectType::Contacts, recs()),
            "svc",
            &[Role::Service],
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("on_behalf_of_user_id"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_round_trip_waits_for_decisions_then_writes() {
    let h = Harness::start().await;
    h.cluster.set_mapping(
        ObjectType::Contacts,
        compiled(
            ObjectType::Contacts,
            ExportPreferences {
                allow_duplicate_creation: true,
                ..ExportPreferences::default()
            },
            DuplicateSettings {
                default_action: CoreAction::NeedsReview,
                user_options: vec![
                    CoreAction::UpdateExisting,
                    CoreAction::CreateDuplicate,
                    CoreAction::Skip,
                ],
            },
        ),
    );
    let ctl = h.sandbox.control();
    let mut seed = Vec::new();
    for i in 0..6 {
        let mut m = serde_json::Map::new();
        m.insert("firstname".into(), format!("Dup{i}").into());
        m.insert("lastname".into(), "Person".into());
        m.insert("company".into(), "Initech".into());
        seed.push(m);
    }
    let ids = ctl.insert_records(PORTAL, "contacts", seed).expect("seed");
    let targets: HashMap<String, String> =
        (0..6).map(|i| (format!("r{i}"), ids[i].clone())).collect();
    let t2 = targets.clone();
    h.set_decide(move |r| match t2.get(&r.record_id) {
        Some(id) => (CheckDecision::NeedsReview, id.clone()),
        None => (CheckDecision::Create, String::new()),
    });
    let mut records: Vec<ExportRecord> = (0..6)
        .map(|i| {
            contact(
                &format!("r{i}"),
                &[
                    ("first_name", &format!("Dup{i}")),
                    ("last_name", "Person"),
                    ("company_name", "Initech"),
                    ("job_title", "CTO"),
                ],
            )
        })
        .collect();
    records.push(contact("fresh", &[("email", "fresh@x.example")]));
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("rev", ObjectType::Contacts, records),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    let waiting = h
        .wait_state(
            &job.job_id,
            spoke_proto::common::v1::ExportJobState::AwaitingReview as i32,
            60,
        )
        .await;
    // The record without duplicates is written while the others wait.
    let mut tries = 0;
    loop {
        let j = client
            .get_export(authed(
                GetExportRequest {
                    job_id: job.job_id.clone(),
                },
                MAPPED_USER,
            ))
            .await
            .expect("get")
            .into_inner()
            .job
            .expect("job");
        if j.counts.as_ref().is_some_and(|c| c.created == 1) {
            break;
        }
        tries += 1;
        assert!(tries < 100, "fresh record not written during review: {j:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(waiting.counts.as_ref().map(|c| c.needs_review), Some(6));
    let review = client
        .list_export_records(authed(
            ListExportRecordsRequest {
                job_id: job.job_id.clone(),
                status: RecordStatus::NeedsReview as i32,
                ..Default::default()
            },
            MAPPED_USER,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(review.records.len(), 6);
    assert!(
        review
            .records
            .iter()
            .all(|r| r.check.as_ref().is_some_and(|c| c.candidates.len() == 1))
    );

    // Bad decisions are rejected with the field named.
    let err = client
        .resolve_duplicates(authed(
            ResolveDuplicatesRequest {
                idempotency_key: "bad".into(),
                job_id: job.job_id.clone(),
                resolutions: vec![RecordResolution {
                    record_id: "fresh".into(),
                    action: DuplicateAction::Skip as i32,
                    target_hubspot_id: String::new(),
                }],
                apply_to_rest: 0,
            },
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("resolutions[0].record_id"),
        "{err:?}"
    );

    let decide = ResolveDuplicatesRequest {
        idempotency_key: "r-1".into(),
        job_id: job.job_id.clone(),
        resolutions: vec![
            RecordResolution {
                record_id: "r0".into(),
                action: DuplicateAction::UpdateExisting as i32,
                target_hubspot_id: targets["r0"].clone(),
            },
            RecordResolution {
                record_id: "r1".into(),
                action: DuplicateAction::CreateDuplicate as i32,
                target_hubspot_id: String::new(),
            },
            RecordResolution {
                record_id: "r2".into(),
                action: DuplicateAction::Skip as i32,
                target_hubspot_id: String::new(),
            },
        ],
        apply_to_rest: 0,
    };
    let first = client
        .resolve_duplicates(authed(decide.clone(), MAPPED_USER))
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(first.remaining, 3);
    let replay = client
        .resolve_duplicates(authed(decide, MAPPED_USER))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.remaining, 3, "same key, same result, applied once");
    let rest = ResolveDuplicatesRequest {
        idempotency_key: "r-2".into(),
        job_id: job.job_id.clone(),
        resolutions: vec![],
        apply_to_rest: DuplicateAction::UpdateExisting as i32,
    };
    let second = client
        .resolve_duplicates(authed(rest, MAPPED_USER))
        .await
        .expect("apply to all")
        .into_inner();
    assert_eq!(second.remaining, 0);
    let done = h.wait_terminal(&job.job_id, 60).await;
    let c = done.counts.expect("counts");
    assert_eq!(
        (c.created, c.updated, c.skipped, c.failed),
        (2, 4, 1, 0),
        "{c:?}"
    );
    assert_eq!(
        done.state,
        spoke_proto::common::v1::ExportJobState::Completed as i32
    );
    assert_eq!(
        sandbox_props(&h, "contacts", &targets["r3"])
            .get("jobtitle")
            .map(String::as_str),
        Some("CTO")
    );
    // r1 was created as a duplicate: two live contacts share its name+company now, by the user's choice.
    assert_eq!(ctl.counts(PORTAL).expect("counts").live["contacts"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_user_gets_the_primary_admins_owner() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let recs = vec![
        contact("1", &[("email", "o1@x.example")]),
        contact("2", &[("email", "o2@x.example")]),
    ];
    let job = client
        .create_export(authed(
            create("own", ObjectType::Contacts, recs),
            UNMAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(done.counts.map(|c| c.created), Some(2));
    let mut c2 = h.client().await;
    let recs = c2
        .list_export_records(authed_as(
            ListExportRecordsRequest {
                job_id: job.job_id.clone(),
                ..Default::default()
            },
            "adm",
            &[Role::Admin],
        ))
        .await
        .expect("list")
        .into_inner()
        .records;
    for r in recs {
        assert_eq!(
            sandbox_props(&h, "contacts", &r.hubspot_id)
                .get("hubspot_owner_id")
                .map(String::as_str),
            Some("600")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_account_mode_writes_with_the_users_own_token() {
    let h = Harness::start().await;
    h.connect(true).await;
    let mut client = h.client().await;
    let recs = || {
        vec![
            contact("1", &[("email", "ua1@x.example")]),
            contact("2", &[("email", "ua2@x.example")]),
        ]
    };
    let err = client
        .create_export(authed(
            create("ua-0", ObjectType::Contacts, recs()),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "user has not connected: {err:?}"
    );
    assert!(
        err.message().contains("connect your HubSpot account"),
        "{err:?}"
    );
    h.connect_user(MAPPED_USER, "mapped@provider.example");
    // The service account's tokens are revoked: only the user's own token can write now.
    assert!(h.sandbox.control().revoke_refresh_tokens(Some(PORTAL)) >= 1);
    h.connect_user(MAPPED_USER, "mapped@provider.example");
    let job = client
        .create_export(authed(
            create("ua-1", ObjectType::Contacts, recs()),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    assert!(job.user_account);
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(done.counts.map(|c| c.created), Some(2), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_writing() {
    let h = Harness::start_with(|w| {
        w.workers = 1;
        w.calls_in_flight = 1;
        w.chunk = 100;
    })
    .await;
    h.sandbox
        .control()
        .add_fault(spoke_sandbox::FaultRule::always(
            "/crm/v3/objects/*/batch/create",
            spoke_sandbox::FaultKind::Latency { ms: 300 },
        ));
    let recs: Vec<ExportRecord> = (0..3000)
        .map(|i| contact(&i.to_string(), &[("email", &format!("c{i}@x.example"))]))
        .collect();
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("cancel", ObjectType::Contacts, recs),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    loop {
        let j = client
            .get_export(authed(
                GetExportRequest {
                    job_id: job.job_id.clone(),
                },
                MAPPED_USER,
            ))
            .await
            .expect("get")
            .into_inner()
            .job
            .expect("job");
        if j.counts.is_some_and(|c| c.created >= 100) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cancelled = client
        .cancel_export(authed(
            CancelExportRequest {
                job_id: job.job_id.clone(),
            },
            MAPPED_USER,
        ))
        .await
        .expect("cancel")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(
        cancelled.state,
        spoke_proto::common::v1::ExportJobState::Cancelled as i32
    );
    // At most the call in flight lands after the cancel; then nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let after = h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"];
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"],
        after
    );
    assert!(after < 3000, "writing stopped early: {after}");
    let again = client
        .cancel_export(authed(
            CancelExportRequest {
                job_id: job.job_id.clone(),
            },
            MAPPED_USER,
        ))
        .await
        .expect("cancel again")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(
        again.state, cancelled.state,
        "cancelling a finished job is a no-op"
    );
}

/// The mirror learns of a connect from Kafka seconds later; an export in that window is
/// accepted because the connection service (the authority) confirms the connection. A refusal
/// is never made on the mirror's word alone, and a real refusal still names what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_export_asks_the_connection_service_when_the_mirror_lags() {
    let h = Harness::start().await;
    // The harness connects through the mirror; take that back: the Kafka event "has not arrived".
    let pool = sqlx::PgPool::connect(&h.db).await.expect("pool");
    sqlx::query("DELETE FROM export.connection_mirror")
        .execute(&pool)
        .await
        .expect("clear mirror");
    let mut client = h.client().await;
    let records = || vec![contact("lag-1", &[("email", "lag-1@x.example")])];

    // Neither the mirror nor the authority knows the org.
    let err = client
        .create_export(authed(
            create("lag-a", ObjectType::Contacts, records()),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not connected"), "{err:?}");

    // The authority knows, the mirror does not yet: accepted, and the job completes.
    let authority = |enabled: bool| spoke_platform::connection_mirror::MirroredConnection {
        org_id: ORG.to_string(),
        portal_id: PORTAL as i64,
        status: spoke_platform::connection_mirror::status::CONNECTED.to_string(),
        enabled,
        user_account: false,
        ui_domain: "app.hubspot.com".into(),
    };
    *h.cluster.authority.lock() = Some(authority(false));
    let err = client
        .create_export(authed(
            create("lag-b", ObjectType::Contacts, records()),
            MAPPED_USER,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("turned off"), "{err:?}");

    *h.cluster.authority.lock() = Some(authority(true));
    let job = client
        .create_export(authed(
            create("lag-c", ObjectType::Contacts, records()),
            MAPPED_USER,
        ))
        .await
        .expect("accepted on the connection service's word")
        .into_inner()
        .job
        .expect("job");
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(
        done.counts.expect("counts").created,
        1,
        "the record was written"
    );
}
