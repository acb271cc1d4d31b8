//! Requesting runs: Run Now and the schedule. A request is a queued run row plus a
//! `FilteringRunEvent.requested` on `spoke.filtering.runs.v1`, written in one transaction; any
//! replica's runner takes it from there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::FilteringRunEvent;
use spoke_proto::events::v1::filtering_run_event::{Kind, Requested};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{ObjectKind, Run, RunState, Trigger, ts};
use crate::schedule::{self, Frequency};
use crate::store::{self, ScheduleRow};

/// Queues a run in the caller's transaction; ALREADY_EXISTS names the org's active run.
pub async fn request_run(
    conn: &mut PgConnection,
    org: &str,
    trigger: Trigger,
    objects: Vec<ObjectKind>,
    requested_by: &str,
    scheduled_for: Option<DateTime<Utc>>,
) -> Result<Run> {
    let run = Run {
        run_id: Uuid::now_v7(),
        org_id: org.to_owned(),
        trigger: trigger.code(),
        objects,
        state: RunState::Queued.code(),
        stats: Vec::new(),
        requested_at: Utc::now(),
        started_at: None,
        finished_at: None,
        requested_by: requested_by.to_owned(),
        message: String::new(),
        scheduled_for,
    };
    if !store::insert_run(conn, &run).await? {
        let active = store::active_run(conn, org).await?;
        return Err(Error::AlreadyExists(format!(
            "a filtering run is already queued or running: {}",
            active.map(|r| r.run_id.to_string()).unwrap_or_default()
        )));
    }
    let ev = FilteringRunEvent {
        org_id: org.to_owned(),
        run_id: run.run_id.to_string(),
        occurred_at: Some(ts(run.requested_at)),
        kind: Some(Kind::Requested(Requested {
            trigger: i32::from(trigger.code()),
            objects: run.objects.iter().map(|o| i32::from(o.code())).collect(),
            requested_by: requested_by.to_owned(),
            scheduled_for: scheduled_for.map(ts),
        })),
    };
    Outbox::enqueue(conn, topics::FILTERING_RUNS, org, &ev).await?;
    Ok(run)
}

/// The frequency of a stored schedule.
pub fn frequency_of(s: &ScheduleRow) -> Option<Frequency> {
    match s.frequency {
        1 => weekday(s.weekday).map(Frequency::Weekly),
        2 => Some(Frequency::Monthly(
            u32::try_from(s.day_of_month).unwrap_or(1),
        )),
        _ => None,
    }
}

/// ISO weekday number → chrono weekday.
pub fn weekday(n: i16) -> Option<chrono::Weekday> {
    use chrono::Weekday::*;
    Some(match n {
        1 => Mon,
        2 => Tue,
        3 => Wed,
        4 => Thu,
        5 => Fri,
        6 => Sat,
        7 => Sun,
        _ => return None,
    })
}

/// The org's next slot after `after`.
pub fn next_slot(s: &ScheduleRow, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    frequency_of(s).map(|f| schedule::next_run(f, schedule::slot_offset_minutes(&s.org_id), after))
}

/// Requests the runs whose slot has come and moves their schedules to the next slot.
/// Returns how many runs were requested. Safe on every replica (rows are locked, skipped by others).
pub async fn tick(pool: &PgPool, now: DateTime<Utc>) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let due = store::due_schedules(&mut tx, now).await?;
    let mut requested = 0;
    for mut s in due {
        let filters = store::load_filters(&mut tx, &s.org_id).await?;
        let objects: Vec<ObjectKind> = filters
            .iter()
            .filter(|f| f.enabled)
            .map(|f| f.object)
            .collect();
        let slot = s.next_run_at;
        if !objects.is_empty() {
            match request_run(&mut tx, &s.org_id, Trigger::Schedule, objects, "", slot).await {
                Ok(_) => requested += 1,
                // A Run Now still going covers this slot.
                Err(Error::AlreadyExists(m)) => {
                    tracing::info!(org = %s.org_id, "{m}; slot skipped")
                }
                Err(e) => return Err(e),
            }
        }
        s.next_run_at = next_slot(&s, now);
        store::save_schedule(&mut tx, &s).await?;
    }
    tx.commit().await?;
    Ok(requested)
}

/// Runs [`tick`] every `interval` until `cancel`.
pub async fn run_loop(
    pool: PgPool,
    interval: Duration,
    cancel: CancellationToken,
) -> spoke_platform::Result<()> {
    loop {
        match tick(&pool, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "scheduled filtering runs requested"),
            Err(e) => tracing::warn!(error = %e, "filtering scheduler tick failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
