//! Crash-exactness and fault tolerance of the writer: a killed service, ambiguous HubSpot
//! answers and sandbox faults never lose a record nor create one twice.

mod common;

use std::time::Duration;

use common::*;
use spoke_export::ports::Cluster;
use spoke_proto::common::v1::{ExportJobState, ExportRecord, ObjectType};
use spoke_proto::export::v1::{CreateExportRequest, GetExportRequest, ListExportRecordsRequest};
use spoke_sandbox::{FaultKind, FaultRule};

fn create(key: &str, object: ObjectType, records: Vec<ExportRecord>) -> CreateExportRequest {
    CreateExportRequest {
        idempotency_key: key.into(),
        object: object as i32,
        records,
        ..Default::default()
    }
}

fn contacts(n: usize, tag: &str) -> Vec<ExportRecord> {
    (0..n)
        .map(|i| {
            contact(
                &i.to_string(),
                &[
                    ("email", &format!("{tag}{i}@crash.example")),
                    ("first_name", "F"),
                    ("last_name", &format!("L{i}")),
                ],
            )
        })
        .collect()
}

async fn records_of(h: &Harness, job_id: &str) -> Vec<spoke_proto::export::v1::ExportRecordResult> {
    let mut client = h.client().await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_export_records(authed_as(
                ListExportRecordsRequest {
                    job_id: job_id.into(),
                    page_size: 1000,
                    page_token: token.clone(),
                    status: 0,
                },
                "adm",
                &[spoke_platform::auth::Role::Admin],
            ))
            .await
            .expect("records")
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn wait_for_502(h: &Harness) {
    for _ in 0..200 {
        if h.sandbox
            .control()
            .requests(1000, None)
            .iter()
            .any(|r| r.status == 502 && r.path.ends_with("/batch/create"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the faulty create was never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_killed_mid_export_leaves_exactly_one_record_per_profile() {
    let mut h = Harness::start_with(|w| {
        w.lease_secs = 2.0;
        w.recovery_delay_secs = 0.5;
    })
    .await;
    // Slow creates keep several calls in flight when the process dies.
    h.sandbox.control().add_fault(FaultRule::always(
        "/crm/v3/objects/*/batch/create",
        FaultKind::Latency { ms: 120 },
    ));
    let n = 5000;
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("crash-1", ObjectType::Contacts, contacts(n, "k")),
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
        if j.counts.is_some_and(|c| c.created >= 1000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.app.take().expect("app").kill();
    let at_kill = h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"];
    assert!(at_kill < n, "killed before the end ({at_kill})");
    h.app = Some(h.start_app().await);
    let done = h.wait_terminal(&job.job_id, 180).await;
    let c = done.counts.expect("counts");
    assert_eq!(done.state, ExportJobState::Completed as i32, "{c:?}");
    assert_eq!(c.created, n as i64, "{c:?}");
    assert_eq!(
        h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"],
        n
    );
    assert!(
        h.sandbox
            .control()
            .duplicates(PORTAL, "contacts")
            .expect("dups")
            .is_empty()
    );
    let recs = records_of(&h, &job.job_id).await;
    let ids: std::collections::HashSet<&str> = recs.iter().map(|r| r.hubspot_id.as_str()).collect();
    assert_eq!(ids.len(), n, "every profile has its own HubSpot id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_create_is_recovered_by_unique_key_not_repeated() {
    let h = Harness::start_with(|w| {
        w.recovery_delay_secs = 2.0;
        w.workers = 1;
    })
    .await;
    let ctl = h.sandbox.control();
    // Contacts: HubSpot "applied" the batch although it answered 502 (the test inserts them).
    ctl.add_fault(
        FaultRule::always(
            "/crm/v3/objects/contacts/batch/create",
            FaultKind::Status {
                status: 502,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("amb-1", ObjectType::Contacts, contacts(100, "a")),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    wait_for_502(&h).await;
    let applied: Vec<serde_json::Map<String, serde_json::Value>> = (0..100)
        .map(|i| {
            let mut m = serde_json::Map::new();
            m.insert("email".into(), format!("a{i}@crash.example").into());
            m
        })
        .collect();
    let applied_ids = ctl
        .insert_records(PORTAL, "contacts", applied)
        .expect("insert");
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(
        done.counts.as_ref().map(|c| c.created),
        Some(100),
        "{done:?}"
    );
    let recs = records_of(&h, &job.job_id).await;
    for r in &recs {
        let i: usize = r.record_id.parse().expect("id");
        assert_eq!(
            r.hubspot_id, applied_ids[i],
            "recovered by email, not created again"
        );
    }
    assert_eq!(ctl.counts(PORTAL).expect("counts").live["contacts"], 100);
    let creates_ok = ctl
        .requests(10_000, None)
        .iter()
        .filter(|r| r.path.ends_with("contacts/batch/create") && r.status < 300)
        .count();
    assert_eq!(creates_ok, 0, "no second create was sent");

    // Companies (no unique key in HubSpot): found by domain search once the search lag passed.
    ctl.set_search_lag(Duration::from_millis(800));
    ctl.add_fault(
        FaultRule::always(
            "/crm/v3/objects/companies/batch/create",
            FaultKind::Status {
                status: 502,
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    ctl.clear_requests();
    let recs: Vec<ExportRecord> = (0..20)
        .map(|i| {
            company(
                &i.to_string(),
                &[
                    ("name", &format!("Co {i}")),
                    ("website", &format!("https://www.co{i}.example/about")),
                ],
            )
        })
        .collect();
    let recs_sent = recs.clone();
    let job = client
        .create_export(authed(
            create("amb-2", ObjectType::Companies, recs),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    wait_for_502(&h).await;
    // Half of them "went through": they exist with the values the create sent, the rest does not.
    let mapper = h
        .cluster
        .mapping(ORG, ObjectType::Companies, None)
        .await
        .expect("mapping");
    let applied: Vec<serde_json::Map<String, serde_json::Value>> = recs_sent[..10]
        .iter()
        .map(|r| {
            let props = mapper
                .apply(r.profile.as_ref().expect("profile"), None)
                .expect("maps");
            props
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::from(v)))
                .collect()
        })
        .collect();
    let applied_ids = ctl
        .insert_records(PORTAL, "companies", applied)
        .expect("insert");
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(
        done.counts.as_ref().map(|c| c.created),
        Some(20),
        "{done:?}"
    );
    for r in records_of(&h, &job.job_id).await {
        let i: usize = r.record_id.parse().expect("id");
        if i < 10 {
            assert_eq!(r.hubspot_id, applied_ids[i], "found by domain");
        }
    }
    assert_eq!(ctl.counts(PORTAL).expect("counts").live["companies"], 20);
    assert!(
        ctl.duplicates(PORTAL, "companies")
            .expect("dups")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_faults_and_token_expiry_lose_nothing() {
    let h = Harness::start_with(|w| {
        w.recovery_delay_secs = 0.5;
        w.retry_delay_secs = 0.2;
    })
    .await;
    let ctl = h.sandbox.control();
    let route = "/crm/v3/objects/*";
    let status = |s: u16| FaultKind::Status {
        status: s,
        retry_after_secs: Some(0),
    };
    let mut rules = Vec::new();
    for s in [500, 502, 503, 504] {
        rules.push(FaultRule {
            probability: 0.0125,
            ..FaultRule::always(route, status(s))
        });
    }
    rules.push(
        FaultRule::always(
            route,
            FaultKind::Status {
                status: 423,
                retry_after_secs: Some(2),
            },
        )
        .times(2),
    );
    rules.push(
        FaultRule::always(
            route,
            FaultKind::RateLimit {
                policy_name: "TEN_SECONDLY_ROLLING".into(),
            },
        )
        .times(4),
    );
    ctl.set_faults(rules, Some(7));
    let n = 1500;
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("faults", ObjectType::Contacts, contacts(n, "f")),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    // Tokens expire in the middle: the token source refreshes and the write goes on.
    tokio::time::sleep(Duration::from_millis(700)).await;
    ctl.expire_access_tokens(Some(PORTAL));
    let done = h.wait_terminal(&job.job_id, 180).await;
    let c = done.counts.expect("counts");
    assert_eq!((c.created, c.failed), (n as i64, 0), "{c:?}");
    assert_eq!(ctl.counts(PORTAL).expect("counts").live["contacts"], n);
    assert!(ctl.duplicates(PORTAL, "contacts").expect("dups").is_empty());
    let faulted = ctl
        .requests(10_000, None)
        .iter()
        .filter(|r| r.fault.is_some() || r.status >= 423)
        .count();
    assert!(faulted > 0, "faults fired");
}

/// Under a rate limit a chunk waits on the portal budget, often longer than its lease: the worker
/// renews the lease while it works, so no other worker retakes the records and sends their
/// creates a second time (each would come back 409 — or, for companies, make a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_waiting_on_the_budget_keep_their_lease() {
    let h = Harness::start_full(
        |w| {
            w.lease_secs = 1.0;
            w.workers = 4;
            w.chunk = 500;
        },
        true,
    )
    .await;
    let ctl = h.sandbox.control();
    ctl.clear_requests();
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create(
                "budget-lease",
                ObjectType::Contacts,
                contacts(16_000, "lease"),
            ),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    let done = h.wait_terminal(&job.job_id, 240).await;
    assert_eq!(
        done.counts.as_ref().map(|c| c.created),
        Some(16_000),
        "{done:?}"
    );
    let log = ctl.requests(100_000, None);
    let resent = log
        .iter()
        .filter(|r| r.path.ends_with("contacts/batch/create") && r.status == 409)
        .count();
    assert_eq!(resent, 0, "creates sent twice (409 already exists)");
    assert_eq!(log.iter().filter(|r| r.status == 429).count(), 0, "no 429s");
}
