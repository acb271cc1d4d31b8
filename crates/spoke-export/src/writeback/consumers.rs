//! Kafka consumers of the writeback: activities (`spoke.activities.v1`), and the links from
//! provider profiles to HubSpot records: export results (`spoke.export.results.v1`, records
//! this service wrote) and filtering matches (`spoke.filtering.events.v1`, records already in
//! HubSpot). Each runs in the platform consumer's inbox transaction, so a redelivery is skipped.

use std::sync::Arc;

use chrono::DateTime;
use spoke_platform::connection_mirror;
use spoke_platform::kafka::{ConsumerSpec, EventHandler, HandlerError, InboundEvent, topics};
use spoke_platform::service::ServiceHost;
use spoke_proto::common::v1::{ObjectType, RecordOutcome};
use spoke_proto::events::v1::{ActivityEvent, ExportResultBatch, FilteringMatchEvent};
use sqlx::PgConnection;
use tokio::sync::Notify;
use tracing::Instrument;

use super::store::{self, Link, NewActivity};
use super::{count, engagement, state};
use crate::error::Error;

fn handler_error(e: Error) -> HandlerError {
    match e {
        Error::InvalidArgument(m) => HandlerError::Permanent(m),
        Error::Database(e) => HandlerError::from(e),
        e => HandlerError::Retriable(e.to_string()),
    }
}

/// Records each activity once, as PENDING, SKIPPED (settings) or FAILED (invalid), and wakes the
/// worker.
pub struct ActivityHandler {
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl EventHandler for ActivityHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: ActivityEvent = event.decode()?;
        if ev.org_id.is_empty() || ev.activity_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "activity event {}: org_id and activity_id are required (got org {:?}, activity {:?})",
                event.ce_id, ev.org_id, ev.activity_id
            )));
        }
        let span = tracing::info_span!(
            "export.receive_activity",
            org = %ev.org_id,
            activity_id = %ev.activity_id,
        );
        self.record(tx, ev).instrument(span).await
    }
}

impl ActivityHandler {
    async fn record(&self, tx: &mut PgConnection, ev: ActivityEvent) -> Result<(), HandlerError> {
        let (new_state, reason) = match engagement::validate(&ev) {
            Err(m) => (state::FAILED, m),
            Ok(t) => match store::settings(tx, &ev.org_id)
                .await
                .map_err(handler_error)?
                .skip_reason(t)
            {
                Some(r) => (state::SKIPPED, r),
                None => (state::PENDING, String::new()),
            },
        };
        let occurred_at = ev
            .occurred_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32));
        let payload = prost::Message::encode_to_vec(&ev);
        let new = store::insert_activity(
            tx,
            &NewActivity {
                org: &ev.org_id,
                activity_id: &ev.activity_id,
                activity_type: ev.r#type,
                user_id: &ev.user_id,
                contact_profile_id: &ev.contact_profile_id,
                company_profile_id: &ev.company_profile_id,
                event: &payload,
                state: new_state,
                reason: &reason,
                occurred_at,
            },
        )
        .await
        .map_err(handler_error)?;
        if !new {
            tracing::info!("activity already received; ignored");
            return Ok(());
        }
        match new_state {
            state::SKIPPED => count("skipped"),
            state::FAILED => {
                tracing::warn!(reason = %reason, "invalid activity recorded as failed");
                count("failed")
            }
            _ => self.wake.notify_one(),
        }
        Ok(())
    }
}

/// Links from export results: the HubSpot id of each profile this service created or updated.
pub struct ExportResultLinks {
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl EventHandler for ExportResultLinks {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let batch: ExportResultBatch = event.decode()?;
        let Some(h) = &batch.header else {
            return Err(HandlerError::Permanent(
                "export result batch without header".into(),
            ));
        };
        let object = ObjectType::try_from(h.object).unwrap_or(ObjectType::Unspecified);
        if !matches!(object, ObjectType::Contacts | ObjectType::Companies) {
            return Ok(());
        }
        let links: Vec<Link> = batch
            .results
            .iter()
            .filter(|r| {
                !r.hubspot_id.is_empty()
                    && !r.profile_id.is_empty()
                    && matches!(
                        RecordOutcome::try_from(r.outcome),
                        Ok(RecordOutcome::Created | RecordOutcome::Updated)
                    )
            })
            .map(|r| Link {
                profile_id: r.profile_id.clone(),
                hubspot_id: r.hubspot_id.clone(),
            })
            .collect();
        let due = store::upsert_links(tx, &h.org_id, h.portal_id, object, "export", &links)
            .await
            .map_err(handler_error)?;
        if due > 0 {
            tracing::info!(org = %h.org_id, activities = due, "exported records matched pending activities");
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Links from filtering matches (added), removed again when a run finds them stale.
pub struct FilteringMatchLinks {
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl EventHandler for FilteringMatchLinks {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: FilteringMatchEvent = event.decode()?;
        let object = ObjectType::try_from(ev.object).unwrap_or(ObjectType::Unspecified);
        if !matches!(object, ObjectType::Contacts | ObjectType::Companies) || ev.org_id.is_empty() {
            return Ok(());
        }
        let portal = if ev.portal_id != 0 {
            ev.portal_id
        } else {
            match connection_mirror::get(tx, &ev.org_id).await? {
                Some(m) => m.portal_id,
                None => return Ok(()),
            }
        };
        let as_links = |changes: &[spoke_proto::events::v1::MatchChange]| -> Vec<Link> {
            changes
                .iter()
                .filter(|c| !c.profile_id.is_empty() && !c.hubspot_id.is_empty())
                .map(|c| Link {
                    profile_id: c.profile_id.clone(),
                    hubspot_id: c.hubspot_id.clone(),
                })
                .collect()
        };
        store::remove_links(tx, &ev.org_id, object, &as_links(&ev.removed))
            .await
            .map_err(handler_error)?;
        let due = store::upsert_links(
            tx,
            &ev.org_id,
            portal,
            object,
            "filtering",
            &as_links(&ev.added),
        )
        .await
        .map_err(handler_error)?;
        if due > 0 {
            tracing::info!(org = %ev.org_id, activities = due, "filtering matches matched pending activities");
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Starts the writeback consumers.
pub fn spawn(host: &mut ServiceHost, wake: Arc<Notify>) {
    host.spawn_consumer(ConsumerSpec {
        name: "writeback-activities".into(),
        topics: vec![topics::ACTIVITIES],
        handler: Arc::new(ActivityHandler { wake: wake.clone() }),
    });
    host.spawn_consumer(ConsumerSpec {
        name: "writeback-export-links".into(),
        topics: vec![topics::EXPORT_RESULTS],
        handler: Arc::new(ExportResultLinks { wake: wake.clone() }),
    });
    host.spawn_consumer(ConsumerSpec {
        name: "writeback-match-links".into(),
        topics: vec![topics::FILTERING_EVENTS],
        handler: Arc::new(FilteringMatchLinks { wake }),
    });
}
