//! What others learn about a job: WatchExport's stream, `spoke.export.events.v1`,
//! `spoke.export.results.v1`, `spoke.notifications.v1`, metrics; plus the large-request limit and
//! a job failing as a whole when the connection needs re-authorisation.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use prost::Message;
use spoke_platform::testing::http_get;
use spoke_proto::common::v1::{CheckDecision, ExportJobState, ObjectType, RecordOutcome};
use spoke_proto::events::v1::{
    ExportEvent, ExportResultBatch, Notification, NotificationKind, export_event,
};
use spoke_proto::export::v1::{CreateExportRequest, WatchExportRequest};

fn create(key: &str, records: Vec<spoke_proto::common::v1::ExportRecord>) -> CreateExportRequest {
    CreateExportRequest {
        idempotency_key: key.into(),
        object: ObjectType::Contacts as i32,
        records,
        label: "events".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_streamed_published_and_notified() {
    let h = Harness::start().await;
    h.set_decide(|r| {
        if r.record_id == "skip" {
            (CheckDecision::Skip, String::new())
        } else {
            (CheckDecision::Create, String::new())
        }
    });
    let mut records: Vec<_> = (0..300)
        .map(|i| contact(&i.to_string(), &[("email", &format!("e{i}@ev.example"))]))
        .collect();
    records.push(contact("bad", &[("email", "broken"), ("first_name", "X")]));
    records.push(contact("skip", &[("email", "skip@ev.example")]));
    let mut client = h.client().await;
    let job = client
        .create_export(authed(create("ev-1", records), MAPPED_USER))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");

    let mut stream = client
        .watch_export(authed(
            WatchExportRequest {
                job_id: job.job_id.clone(),
            },
            MAPPED_USER,
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(msg) = stream.message().await.expect("stream") {
        seen.push(msg.job.expect("job"));
    }
    let last = seen.last().expect("at least the snapshot");
    assert_eq!(
        last.state,
        ExportJobState::CompletedWithErrors as i32,
        "stream ends after the terminal state"
    );
    let c = last.counts.expect("counts");
    assert_eq!((c.created, c.failed, c.skipped, c.pending), (300, 1, 1, 0));

    let bootstrap = h.kafka.bootstrap().to_string();
    let events = read_topic(&bootstrap, "spoke.export.events.v1", 30, |m| {
        m.iter().any(|b| {
            ExportEvent::decode(b.as_slice()).is_ok_and(|e| {
                matches!(e.kind, Some(export_event::Kind::StateChanged(ref s)) if s.to == ExportJobState::CompletedWithErrors as i32)
            })
        })
    })
    .await;
    let states: Vec<(i32, i32)> = events
        .iter()
        .filter_map(|b| ExportEvent::decode(b.as_slice()).ok())
        .filter(|e| e.job_id == job.job_id)
        .filter_map(|e| match e.kind {
            Some(export_event::Kind::StateChanged(s)) => Some((s.from, s.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        states.first(),
        Some(&(0, ExportJobState::Pending as i32)),
        "{states:?}"
    );
    assert_eq!(
        states.last().map(|s| s.1),
        Some(ExportJobState::CompletedWithErrors as i32),
        "{states:?}"
    );

    let results = read_topic(&bootstrap, "spoke.export.results.v1", 30, |m| {
        m.iter()
            .filter_map(|b| ExportResultBatch::decode(b.as_slice()).ok())
            .map(|r| r.results.len())
            .sum::<usize>()
            >= 302
    })
    .await;
    let all: Vec<_> = results
        .iter()
        .filter_map(|b| ExportResultBatch::decode(b.as_slice()).ok())
        .flat_map(|r| r.results)
        .collect();
    assert_eq!(all.len(), 302, "one result per record");
    let created = all
        .iter()
        .filter(|r| r.outcome == RecordOutcome::Created as i32)
        .count();
    assert_eq!(created, 300);
    assert!(
        all.iter()
            .filter(|r| r.outcome == RecordOutcome::Created as i32)
            .all(|r| !r.hubspot_id.is_empty() && !r.match_keys.is_empty())
    );
    let bad = all
        .iter()
        .find(|r| r.record_id == "bad")
        .expect("bad result");
    assert_eq!(bad.outcome, RecordOutcome::Failed as i32);
    assert!(!bad.message.is_empty());

    let notes = read_topic(&bootstrap, "spoke.notifications.v1", 30, |m| !m.is_empty()).await;
    let n =
        Notification::decode(notes.first().expect("a notification").as_slice()).expect("decode");
    assert_eq!(n.kind, NotificationKind::ExportFinishedWithErrors as i32);
    assert_eq!(n.subject_id, job.job_id);
    assert!(n.subject.contains("1 failed"), "{}", n.subject);

    let admin = h.app.as_ref().expect("app").admin;
    let (_, metrics) = http_get(admin, "/metrics").await.expect("metrics");
    for name in [
        "spoke_export_records_total",
        "spoke_export_batch_duration_seconds",
        "spoke_export_hubspot_calls_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_up_to_the_documented_limit_are_accepted() {
    let h = Harness::start().await;
    // About 12 MiB: above tonic's 4 MiB default, within the service's 128 MiB.
    let pad = "x".repeat(600);
    let records: Vec<_> = (0..20_000)
        .map(|i| {
            contact(
                &i.to_string(),
                &[("email", &format!("big{i}@x.example")), ("notes", &pad)],
            )
        })
        .collect();
    let mut client = h.client().await;
    let resp = client
        .create_export(authed(create("big", records), MAPPED_USER))
        .await
        .expect("large request accepted")
        .into_inner();
    assert_eq!(
        resp.job.and_then(|j| j.counts).map(|c| c.total),
        Some(20_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_connection_fails_the_job_with_an_actionable_message() {
    let h = Harness::start().await;
    h.cluster.reauth.store(true, Ordering::SeqCst);
    let mut client = h.client().await;
    let job = client
        .create_export(authed(
            create("reauth", vec![contact("1", &[("email", "r@x.example")])]),
            MAPPED_USER,
        ))
        .await
        .expect("create")
        .into_inner()
        .job
        .expect("job");
    let done = h.wait_terminal(&job.job_id, 60).await;
    assert_eq!(done.state, ExportJobState::Failed as i32);
    assert!(
        done.message.contains("reconnect required"),
        "{}",
        done.message
    );
    let notes = read_topic(h.kafka.bootstrap(), "spoke.notifications.v1", 30, |m| {
        !m.is_empty()
    })
    .await;
    let n = Notification::decode(notes.first().expect("notification").as_slice()).expect("decode");
    assert_eq!(n.kind, NotificationKind::ExportFailed as i32);
    assert_eq!(
        h.sandbox.control().counts(PORTAL).expect("counts").live["contacts"],
        0
    );
}
