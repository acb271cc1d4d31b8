//! CRM writeback through the export service's public surface: activities published on
//! `spoke.activities.v1` (librdkafka mock cluster), links from filtering matches and export
//! results, the settings and list RPCs over gRPC, engagements and their associations read back
//! from the HubSpot sandbox.

mod common;

use std::time::Duration;

use common::{Harness, ORG, PORTAL, authed_as};
use prost::Message;
use serde_json::{Map, Value, json};
use spoke_export::{Application, Config, WritebackConfig};
use spoke_platform::auth::Role;
use spoke_platform::kafka::{EventProducer, OutgoingEvent};
use spoke_platform::testing::{http_get, test_config, wait_serving};
use spoke_proto::common::v1::{ActivityType, ObjectType, RecordOutcome};
use spoke_proto::events::v1::{
    ActivityEvent, ExportBatchHeader, ExportResultBatch, FilteringMatchEvent, MatchChange,
};
use spoke_proto::export::v1::export_service_client::ExportServiceClient;
use spoke_proto::export::v1::{
    ActivityTypeSet, GetWritebackSettingsRequest, ListWritebackActivitiesRequest,
    SaveWritebackSettingsRequest, WritebackActivity, WritebackLogMode, WritebackState,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The export service started by these tests with writeback settings of their own (the shared
/// harness' app is stopped first).
struct WritebackApp {
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl WritebackApp {
    async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.done).await;
    }
}

async fn start(tune: impl FnOnce(&mut WritebackConfig)) -> (Harness, WritebackApp) {
    let mut h = Harness::start().await;
    if let Some(app) = h.app.take() {
        tokio::task::spawn_blocking(move || app.stop())
            .await
            .expect("harness app stopped");
    }
    let mut writeback = WritebackConfig {
        retry_delay_secs: 0.3,
        recovery_delay_secs: 0.5,
        lease_secs: 5.0,
        ..WritebackConfig::default()
    };
    tune(&mut writeback);
    let config = Config {
        common: test_config(&h.db, h.kafka.bootstrap()),
        writer: h.writer.clone(),
        writeback,
        ..Config::default()
    };
    let cluster: std::sync::Arc<dyn spoke_export::ports::Cluster> = h.cluster.clone();
    let app = Application::build_with(config, cluster)
        .await
        .expect("export starts");
    let (grpc, admin, stop) = (app.grpc_addr(), app.admin_addr(), app.shutdown_token());
    let done = tokio::spawn(async move {
        if let Err(e) = app.run_until_stopped().await {
            eprintln!("export stopped with an error: {e}");
        }
    });
    wait_serving(grpc, "spoke.export.v1.ExportService")
        .await
        .expect("serving");
    (
        h,
        WritebackApp {
            grpc,
            admin,
            stop,
            done,
        },
    )
}

async fn client(app: &WritebackApp) -> ExportServiceClient<Channel> {
    ExportServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .expect("connect")
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    authed_as(msg, "admin-1", &[Role::Admin])
}

async fn save(app: &WritebackApp, enabled: bool, mode: WritebackLogMode, types: &[ActivityType]) {
    client(app)
        .await
        .save_writeback_settings(admin(SaveWritebackSettingsRequest {
            enabled: Some(enabled),
            log_mode: Some(mode as i32),
            activity_types: Some(ActivityTypeSet {
                types: types.iter().map(|t| *t as i32).collect(),
            }),
        }))
        .await
        .expect("settings saved");
}

const ALL: [ActivityType; 3] = [
    ActivityType::Email,
    ActivityType::Call,
    ActivityType::Meeting,
];

/// Publishes an event with the given `ce_id`.
async fn publish<M: Message>(
    h: &Harness,
    topic: &'static str,
    ce_type: &str,
    ce_id: &str,
    msg: &M,
) {
    let producer = EventProducer::new(&test_config(&h.db, h.kafka.bootstrap()).kafka, "test")
        .expect("producer");
    let payload = msg.encode_to_vec();
    producer
        .send(&OutgoingEvent {
            topic,
            key: ORG,
            ce_id,
            ce_type,
            payload: &payload,
            traceparent: None,
            tracestate: None,
            time: None,
            extra_headers: &[],
        })
        .await
        .expect("published");
}

fn activity(id: &str, t: ActivityType, contact: &str, company: &str) -> ActivityEvent {
    ActivityEvent {
        activity_id: id.into(),
        org_id: ORG.into(),
        user_id: common::MAPPED_USER.into(),
        r#type: t as i32,
        contact_profile_id: contact.into(),
        company_profile_id: company.into(),
        subject: format!("Subject of {id}"),
        body: format!("Notes of {id}"),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_760_000_000,
            nanos: 0,
        }),
        duration: (t != ActivityType::Email).then_some(prost_types::Duration {
            seconds: 125,
            nanos: 0,
        }),
        outcome: match t {
            ActivityType::Call => "connected".into(),
            _ => String::new(),
        },
        outbound: true,
    }
}

async fn send_activity(h: &Harness, ev: &ActivityEvent) {
    let ce_id = uuid::Uuid::now_v7().to_string();
    publish(
        h,
        "spoke.activities.v1",
        "spoke.events.v1.ActivityEvent",
        &ce_id,
        ev,
    )
    .await;
}

/// A filtering run's "added" matches for one object.
async fn send_match(h: &Harness, object: ObjectType, profile: &str, hubspot_id: &str) {
    let ev = FilteringMatchEvent {
        org_id: ORG.into(),
        run_id: "run-1".into(),
        object: object as i32,
        last_chunk: true,
        added: vec![MatchChange {
            profile_id: profile.into(),
            hubspot_id: hubspot_id.into(),
            owner_id: String::new(),
        }],
        portal_id: PORTAL as i64,
        ..Default::default()
    };
    let ce_id = uuid::Uuid::now_v7().to_string();
    publish(
        h,
        "spoke.filtering.events.v1",
        "spoke.events.v1.FilteringMatchEvent",
        &ce_id,
        &ev,
    )
    .await;
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// A contact and a company in the sandbox: (contact id, company id).
fn seed_records(h: &Harness, n: u32) -> (String, String) {
    let c = h.sandbox.control();
    let contact = c
        .insert_records(
            PORTAL,
            "contacts",
            vec![obj(
                json!({"email": format!("person{n}@acme.example"), "firstname": "Per"}),
            )],
        )
        .expect("contact")
        .remove(0);
    let company = c
        .insert_records(
            PORTAL,
            "companies",
            vec![obj(
                json!({"name": format!("Acme {n}"), "domain": format!("acme{n}.example")}),
            )],
        )
        .expect("company")
        .remove(0);
    (contact, company)
}

async fn list(app: &WritebackApp, state: WritebackState) -> Vec<WritebackActivity> {
    client(app)
        .await
        .list_writeback_activities(admin(ListWritebackActivitiesRequest {
            page_size: 1000,
            page_token: String::new(),
            state: state as i32,
        }))
        .await
        .expect("list")
        .into_inner()
        .activities
}

/// Waits until `id` is in `state` and returns it.
async fn wait_for(
    app: &WritebackApp,
    id: &str,
    state: WritebackState,
    secs: u64,
) -> WritebackActivity {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let all = list(app, WritebackState::Unspecified).await;
        let found = all.iter().find(|a| a.activity_id == id).cloned();
        if let Some(a) = &found
            && a.state == state as i32
        {
            return a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "activity {id} not {state:?} within {secs}s: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until `id` is pending with a reason containing `words`.
async fn wait_pending(app: &WritebackApp, id: &str, words: &str, secs: u64) -> WritebackActivity {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let a = wait_for(app, id, WritebackState::Pending, secs).await;
        if a.reason.contains(words) {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "activity {id} not pending for {words:?} within {secs}s: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn live(h: &Harness, object: &str) -> usize {
    h.sandbox
        .control()
        .counts(PORTAL)
        .expect("counts")
        .live
        .get(object)
        .copied()
        .unwrap_or_default()
}

fn assoc(h: &Harness, from: &str, id: &str, to: &str) -> Vec<(String, u32)> {
    h.sandbox
        .control()
        .associations(PORTAL, from, id, to)
        .expect("associations")
        .into_iter()
        .map(|(id, type_id, category)| {
            assert_eq!(category, "HUBSPOT_DEFINED");
            (id, type_id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_activity_type_lands_in_the_sandbox_with_its_associations_in_both_modes() {
    let (h, app) = start(|_| {}).await;
    let (contact, company) = seed_records(&h, 1);
    send_match(&h, ObjectType::Contacts, "p-contact-1", &contact).await;
    send_match(&h, ObjectType::Companies, "p-company-1", &company).await;

    // (type, mode, object, property holding the title, contact type id, company type id)
    let cases = [
        (
            ActivityType::Email,
            WritebackLogMode::Engagements,
            "emails",
            "hs_email_subject",
            198,
            186,
        ),
        (
            ActivityType::Call,
            WritebackLogMode::Engagements,
            "calls",
            "hs_call_title",
            194,
            182,
        ),
        (
            ActivityType::Meeting,
            WritebackLogMode::Engagements,
            "meetings",
            "hs_meeting_title",
            200,
            188,
        ),
        (
            ActivityType::Email,
            WritebackLogMode::Tasks,
            "tasks",
            "hs_task_subject",
            204,
            192,
        ),
        (
            ActivityType::Call,
            WritebackLogMode::Tasks,
            "tasks",
            "hs_task_subject",
            204,
            192,
        ),
        (
            ActivityType::Meeting,
            WritebackLogMode::Tasks,
            "tasks",
            "hs_task_subject",
            204,
            192,
        ),
    ];
    for (i, (t, mode, object, title_prop, to_contact, to_company)) in cases.into_iter().enumerate()
    {
        save(&app, true, mode, &ALL).await;
        let id = format!("act-{i}");
        send_activity(&h, &activity(&id, t, "p-contact-1", "p-company-1")).await;
        let a = wait_for(&app, &id, WritebackState::Written, 30).await;
        assert_eq!(a.hubspot_object, object, "{t:?} {mode:?}");
        assert!(a.reason.is_empty(), "{a:?}");
        let props = common::sandbox_props(&h, object, &a.hubspot_id);
        assert_eq!(props[title_prop], format!("Subject of {id}"), "{props:?}");
        assert_eq!(
            props["hs_timestamp"].parse::<i64>().ok(),
            Some(1_760_000_000_000),
            "{props:?}"
        );
        // The mapped user's HubSpot owner, resolved like exports.
        assert_eq!(props["hubspot_owner_id"], "601", "{props:?}");
        match object {
            "emails" => {
                assert_eq!(props["hs_email_text"], format!("Notes of {id}"));
                assert_eq!(props["hs_email_direction"], "EMAIL");
            }
            "calls" => {
                assert_eq!(props["hs_call_duration"], "125000");
                assert_eq!(props["hs_call_status"], "COMPLETED");
                assert!(
                    props["hs_call_body"].contains("Outcome: connected"),
                    "{props:?}"
                );
            }
            "meetings" => {
                assert_eq!(
                    props["hs_meeting_end_time"].parse::<i64>().ok(),
                    Some(1_760_000_125_000)
                );
                assert_eq!(props["hs_meeting_outcome"], "COMPLETED");
            }
            _ => {
                assert_eq!(props["hs_task_status"], "COMPLETED");
                let kind = match t {
                    ActivityType::Email => "EMAIL",
                    ActivityType::Call => "CALL",
                    _ => "TODO",
                };
                assert_eq!(props["hs_task_type"], kind);
            }
        }
        assert_eq!(
            assoc(&h, object, &a.hubspot_id, "contacts"),
            vec![(contact.clone(), to_contact)],
            "{t:?} {mode:?}"
        );
        assert_eq!(
            assoc(&h, object, &a.hubspot_id, "companies"),
            vec![(company.clone(), to_company)],
            "{t:?} {mode:?}"
        );
        // HubSpot shows the engagement on the contact's timeline: the reverse edge exists.
        assert!(
            assoc(&h, "contacts", &contact, object)
                .iter()
                .any(|(id, _)| *id == a.hubspot_id),
            "{object} {} not on the contact",
            a.hubspot_id
        );
    }
    assert_eq!(live(&h, "tasks"), 3);
    assert_eq!(
        live(&h, "emails") + live(&h, "calls") + live(&h, "meetings"),
        3
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_logs_the_activity_once() {
    let (h, app) = start(|_| {}).await;
    let (contact, _) = seed_records(&h, 2);
    send_match(&h, ObjectType::Contacts, "p-contact-2", &contact).await;
    save(&app, true, WritebackLogMode::Engagements, &ALL).await;
    let ev = activity("dup-1", ActivityType::Call, "p-contact-2", "");
    // The same message twice (inbox), and the same activity under a new event id (activity key).
    publish(
        &h,
        "spoke.activities.v1",
        "spoke.events.v1.ActivityEvent",
        "ce-dup-1",
        &ev,
    )
    .await;
    publish(
        &h,
        "spoke.activities.v1",
        "spoke.events.v1.ActivityEvent",
        "ce-dup-1",
        &ev,
    )
    .await;
    send_activity(&h, &ev).await;
    let a = wait_for(&app, "dup-1", WritebackState::Written, 30).await;
    // Give the later deliveries time to be handled, then check nothing else was logged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live(&h, "calls"), 1);
    let all = list(&app, WritebackState::Unspecified).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].hubspot_id, a.hubspot_id);
    assert_eq!(all[0].attempts, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_activity_waits_and_is_written_when_a_match_appears() {
    let (h, app) = start(|_| {}).await;
    save(&app, true, WritebackLogMode::Engagements, &ALL).await;
    let (contact, company) = seed_records(&h, 3);
    send_activity(
        &h,
        &activity(
            "late-1",
            ActivityType::Meeting,
            "p-contact-3",
            "p-company-3",
        ),
    )
    .await;
    wait_pending(
        &app,
        "late-1",
        "contact profile p-contact-3 has no HubSpot match yet",
        30,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        live(&h, "meetings"),
        0,
        "nothing is written without a match"
    );

    // Filtering finds the company first: the contact is still missing, so it keeps waiting.
    send_match(&h, ObjectType::Companies, "p-company-3", &company).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_pending(&app, "late-1", "p-contact-3", 5).await;
    send_match(&h, ObjectType::Contacts, "p-contact-3", &contact).await;
    let a = wait_for(&app, "late-1", WritebackState::Written, 30).await;
    assert_eq!(
        assoc(&h, "meetings", &a.hubspot_id, "contacts"),
        vec![(contact, 200)]
    );
    assert_eq!(
        assoc(&h, "meetings", &a.hubspot_id, "companies"),
        vec![(company, 188)]
    );

    // A record this service exported links its profile too (export results).
    let (contact4, _) = seed_records(&h, 4);
    send_activity(
        &h,
        &activity("late-2", ActivityType::Email, "p-contact-4", ""),
    )
    .await;
    wait_pending(&app, "late-2", "p-contact-4", 30).await;
    let results = ExportResultBatch {
        header: Some(ExportBatchHeader {
            org_id: ORG.into(),
            portal_id: PORTAL as i64,
            job_id: uuid::Uuid::now_v7().to_string(),
            object: ObjectType::Contacts as i32,
            ..Default::default()
        }),
        results: vec![spoke_proto::events::v1::ExportRecordResult {
            record_id: "r1".into(),
            profile_id: "p-contact-4".into(),
            outcome: RecordOutcome::Created as i32,
            hubspot_id: contact4.clone(),
            ..Default::default()
        }],
    };
    let ce_id = uuid::Uuid::now_v7().to_string();
    publish(
        &h,
        "spoke.export.results.v1",
        "spoke.events.v1.ExportResultBatch",
        &ce_id,
        &results,
    )
    .await;
    let a = wait_for(&app, "late-2", WritebackState::Written, 30).await;
    assert_eq!(
        assoc(&h, "emails", &a.hubspot_id, "contacts"),
        vec![(contact4, 198)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writeback_disabled_or_type_not_selected_writes_nothing() {
    let (h, app) = start(|_| {}).await;
    let (contact, _) = seed_records(&h, 5);
    send_match(&h, ObjectType::Contacts, "p-contact-5", &contact).await;
    // Never saved: off by default.
    send_activity(
        &h,
        &activity("off-1", ActivityType::Call, "p-contact-5", ""),
    )
    .await;
    let a = wait_for(&app, "off-1", WritebackState::Skipped, 30).await;
    assert!(a.reason.contains("turned off"), "{a:?}");
    save(
        &app,
        true,
        WritebackLogMode::Engagements,
        &[ActivityType::Email],
    )
    .await;
    send_activity(
        &h,
        &activity("off-2", ActivityType::Meeting, "p-contact-5", ""),
    )
    .await;
    let a = wait_for(&app, "off-2", WritebackState::Skipped, 30).await;
    assert!(a.reason.contains("meeting"), "{a:?}");
    // An invalid activity is recorded as failed with the field, not lost.
    let mut bad = activity("bad-1", ActivityType::Call, "p-contact-5", "");
    bad.occurred_at = None;
    send_activity(&h, &bad).await;
    let a = wait_for(&app, "bad-1", WritebackState::Failed, 30).await;
    assert!(a.reason.contains("occurred_at"), "{a:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for object in ["calls", "meetings", "emails", "tasks"] {
        assert_eq!(live(&h, object), 0, "{object}");
    }
    let (_, metrics) = http_get(app.admin, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("spoke_export_writeback_activities_total{outcome=\"skipped\"} 2"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_activity_is_dropped_after_the_ttl() {
    let (h, app) = start(|w| w.pending_ttl_secs = 2.0).await;
    save(&app, true, WritebackLogMode::Tasks, &ALL).await;
    send_activity(&h, &activity("ttl-1", ActivityType::Call, "p-nobody", "")).await;
    let a = wait_for(&app, "ttl-1", WritebackState::Dropped, 30).await;
    assert!(a.reason.contains("no HubSpot match within 2 s"), "{a:?}");
    // A match arriving later does not revive it.
    let (contact, _) = seed_records(&h, 6);
    send_match(&h, ObjectType::Contacts, "p-nobody", &contact).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for(&app, "ttl-1", WritebackState::Dropped, 1).await;
    assert_eq!(live(&h, "tasks"), 0);
    let (_, metrics) = http_get(app.admin, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("spoke_export_writeback_activities_total{outcome=\"dropped\"} 1"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_required_keeps_the_activity_pending_until_it_can_be_written() {
    let (h, app) = start(|_| {}).await;
    let (contact, _) = seed_records(&h, 7);
    send_match(&h, ObjectType::Contacts, "p-contact-7", &contact).await;
    save(&app, true, WritebackLogMode::Engagements, &ALL).await;
    h.cluster
        .reauth
        .store(true, std::sync::atomic::Ordering::SeqCst);
    send_activity(
        &h,
        &activity("auth-1", ActivityType::Email, "p-contact-7", ""),
    )
    .await;
    wait_pending(&app, "auth-1", "reconnected by an admin", 30).await;
    assert_eq!(live(&h, "emails"), 0);
    h.cluster
        .reauth
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for(&app, "auth-1", WritebackState::Written, 60).await;
    assert_eq!(live(&h, "emails"), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_reached_hubspot_before_a_crash_is_adopted_not_repeated() {
    let (h, app) = start(|_| {}).await;
    let (contact, _) = seed_records(&h, 8);
    send_match(&h, ObjectType::Contacts, "p-contact-8", &contact).await;
    save(&app, true, WritebackLogMode::Engagements, &ALL).await;
    // What the crashed attempt left: the call in HubSpot, and the activity pending with its
    // attempt on record but no HubSpot id.
    let ev = activity("crash-1", ActivityType::Call, "p-contact-8", "");
    let created = h
        .sandbox
        .control()
        .insert_records(
            PORTAL,
            "calls",
            vec![obj(
                json!({"hs_call_title": "Subject of crash-1", "hs_timestamp": "1760000000000"}),
            )],
        )
        .expect("call")
        .remove(0);
    let pool = sqlx::PgPool::connect(&h.db).await.expect("pool");
    sqlx::query(
        "INSERT INTO export.writeback_activities (org_id, activity_id, activity_type, user_id, contact_profile_id, \
         event, state, attempts, hubspot_object, portal_id, attempted_at, next_attempt_at) \
         VALUES ($1, 'crash-1', $2, $3, 'p-contact-8', $4, 'pending', 1, 'calls', $5, now() - interval '1 minute', now())",
    )
    .bind(ORG)
    .bind(ActivityType::Call as i32)
    .bind(common::MAPPED_USER)
    .bind(ev.encode_to_vec())
    .bind(PORTAL as i64)
    .execute(&pool)
    .await
    .expect("row");
    pool.close().await;
    // The redelivered event finds the row; the worker finds the call.
    send_activity(&h, &ev).await;
    let a = wait_for(&app, "crash-1", WritebackState::Written, 30).await;
    assert_eq!(a.hubspot_id, created);
    assert_eq!(a.attempts, 1, "no second create: {a:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(live(&h, "calls"), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_api_checks_roles_and_names_bad_fields() {
    let (_h, app) = start(|_| {}).await;
    let mut c = client(&app).await;
    let got = c
        .get_writeback_settings(authed_as(
            GetWritebackSettingsRequest {},
            "svc",
            &[Role::Service],
        ))
        .await
        .expect("service reads")
        .into_inner()
        .settings
        .expect("settings");
    assert!(!got.enabled);
    assert_eq!(got.log_mode, WritebackLogMode::Engagements as i32);
    assert_eq!(got.activity_types, vec![1, 2, 3]);

    let err = c
        .get_writeback_settings(authed_as(
            GetWritebackSettingsRequest {},
            "u1",
            &[Role::User],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = c
        .save_writeback_settings(authed_as(
            SaveWritebackSettingsRequest {
                enabled: Some(true),
                ..Default::default()
            },
            "svc",
            &[Role::Service],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = c
        .list_writeback_activities(authed_as(
            ListWritebackActivitiesRequest::default(),
            "u1",
            &[Role::User],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let err = c
        .save_writeback_settings(admin(SaveWritebackSettingsRequest {
            log_mode: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("log_mode"), "{err:?}");
    let err = c
        .save_writeback_settings(admin(SaveWritebackSettingsRequest {
            activity_types: Some(ActivityTypeSet { types: vec![2, 0] }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("activity_types.types[1]"), "{err:?}");

    // Unset fields are kept.
    c.save_writeback_settings(admin(SaveWritebackSettingsRequest {
        log_mode: Some(WritebackLogMode::Tasks as i32),
        ..Default::default()
    }))
    .await
    .expect("save mode");
    let s = c
        .save_writeback_settings(admin(SaveWritebackSettingsRequest {
            enabled: Some(true),
            activity_types: Some(ActivityTypeSet { types: vec![2, 2] }),
            ..Default::default()
        }))
        .await
        .expect("save")
        .into_inner()
        .settings
        .expect("settings");
    assert!(s.enabled);
    assert_eq!(s.log_mode, WritebackLogMode::Tasks as i32);
    assert_eq!(s.activity_types, vec![2]);
    let err = c
        .list_writeback_activities(admin(ListWritebackActivitiesRequest {
            page_token: "nonsense".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("page_token"), "{err:?}");
    app.shutdown().await;
}
