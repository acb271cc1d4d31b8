//! Building the protobuf messages the export service returns and publishes from its rows, and
//! enqueueing the job events (state changes, progress, notifications) in the caller's transaction.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::common::v1::{ExportJobState, RecordCheck, RecordOutcome};
use spoke_proto::events::v1::{ExportEvent, Notification, NotificationKind, export_event};
use spoke_proto::export::v1::{ExportJob, ExportRecordResult, RecordStatus};
use sqlx::PgConnection;

use crate::error::Result;
use crate::model::phase;
use crate::store::{JobRow, RecordRow};

/// A protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The API view of a job row.
pub fn job_proto(j: &JobRow) -> ExportJob {
    ExportJob {
        job_id: j.job_id.to_string(),
        object: j.object,
        state: j.state,
        counts: Some(j.counters().to_proto()),
        user_id: j.user_id.clone(),
        duplicate_choice: j.duplicate_choice,
        config_version: j.config_version,
        portal_id: j.portal_id,
        label: j.label.clone(),
        created_at: Some(ts(j.created_at)),
        updated_at: Some(ts(j.updated_at)),
        finished_at: j.finished_at.map(ts),
        message: j.message.clone(),
        user_account: j.user_account,
    }
}

/// The API status of a record row.
pub fn record_status(r: &RecordRow) -> RecordStatus {
    match r.phase.as_str() {
        phase::REVIEW => RecordStatus::NeedsReview,
        phase::DONE => match RecordOutcome::try_from(r.outcome) {
            Ok(RecordOutcome::Created) => RecordStatus::Created,
            Ok(RecordOutcome::Updated) => RecordStatus::Updated,
            Ok(RecordOutcome::Skipped) => RecordStatus::Skipped,
            _ => RecordStatus::Failed,
        },
        _ => RecordStatus::Pending,
    }
}

/// The API view of a record row.
pub fn record_proto(r: &RecordRow) -> ExportRecordResult {
    let check = r
        .check_result
        .as_deref()
        .and_then(|b| <RecordCheck as prost::Message>::decode(b).ok());
    ExportRecordResult {
        record_id: r.record_id.clone(),
        profile_id: r.profile_id.clone(),
        status: record_status(r) as i32,
        hubspot_id: r.hubspot_id.clone(),
        check,
        message: r.message.clone(),
        updated_at: Some(ts(r.updated_at)),
    }
}

fn event(j: &JobRow, kind: export_event::Kind) -> ExportEvent {
    ExportEvent {
        org_id: j.org_id.clone(),
        job_id: j.job_id.to_string(),
        occurred_at: Some(ts(Utc::now())),
        user_id: j.user_id.clone(),
        object: j.object,
        counts: Some(j.counters().to_proto()),
        kind: Some(kind),
    }
}

/// Enqueues a state change event (and, for jobs that end with errors or fail, a notification).
pub async fn state_changed(
    conn: &mut PgConnection,
    j: &JobRow,
    from: ExportJobState,
) -> Result<()> {
    let to = ExportJobState::try_from(j.state).unwrap_or(ExportJobState::Unspecified);
    let ev = event(
        j,
        export_event::Kind::StateChanged(export_event::StateChanged {
            from: from as i32,
            to: to as i32,
            message: j.message.clone(),
        }),
    );
    Outbox::enqueue(conn, topics::EXPORT_EVENTS, &j.org_id, &ev).await?;
    let kind = match to {
        ExportJobState::CompletedWithErrors => NotificationKind::ExportFinishedWithErrors,
        ExportJobState::Failed => NotificationKind::ExportFailed,
        _ => return Ok(()),
    };
    let c = j.counters();
    let subject = match kind {
        NotificationKind::ExportFailed => {
            format!("Your HubSpot export \"{}\" failed", display_label(j))
        }
        _ => format!(
            "Your HubSpot export \"{}\" finished with {} failed record(s)",
            display_label(j),
            c.failed
        ),
    };
    let body = format!(
        "Export {} of {} record(s): {} created, {} updated, {} skipped, {} failed.{}{}\n\
         See the failed records and their reasons in the export's details.",
        j.job_id,
        c.total,
        c.created,
        c.updated,
        c.skipped,
        c.failed,
        if j.message.is_empty() {
            ""
        } else {
            "\nReason: "
        },
        j.message
    );
    let n = Notification {
        org_id: j.org_id.clone(),
        recipients: vec![spoke_proto::events::v1::Recipient {
            user_id: j.user_id.clone(),
            email: j.user_email.clone(),
        }],
        kind: kind as i32,
        subject,
        body,
        links: vec![],
        occurred_at: Some(ts(Utc::now())),
        subject_id: j.job_id.to_string(),
    };
    Outbox::enqueue(conn, topics::NOTIFICATIONS, &j.org_id, &n).await?;
    Ok(())
}

/// Enqueues a progress event.
pub async fn progress(conn: &mut PgConnection, j: &JobRow) -> Result<()> {
    let ev = event(j, export_event::Kind::Progress(export_event::Progress {}));
    Outbox::enqueue(conn, topics::EXPORT_EVENTS, &j.org_id, &ev).await?;
    Ok(())
}

fn display_label(j: &JobRow) -> &str {
    if j.label.is_empty() {
        "untitled"
    } else {
        &j.label
    }
}
