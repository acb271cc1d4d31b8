//! Kafka consumers of the dedupe service: export requests (check and publish), export results
//! (feed the index) and connection events (mirror, purge on delete).

use std::sync::Arc;
use std::time::Instant;

use spoke_platform::connection_mirror;
use spoke_platform::kafka::{
    ConsumerSpec, EventHandler, HandlerError, InboundEvent, Outbox, topics,
};
use spoke_platform::service::ServiceHost;
use spoke_proto::common::v1::{CheckDecision, RecordCheck, RecordOutcome};
use spoke_proto::events::v1::connection_event::Kind;
use spoke_proto::events::v1::{
    ConnectionEvent, ExportCheckedBatch, ExportCheckedRecord, ExportRequestBatch,
    ExportRequestRecord, ExportResultBatch,
};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::check::{Batch, Checker, Mode};
use crate::decision;
use crate::error::Error;
use crate::keys::{self, Object};
use crate::lookup::PortalAccess;
use crate::settings::SettingsSource;
use crate::store::{self, IndexSource};

/// What the handlers share.
#[derive(Clone)]
pub struct Deps {
    /// Check tunables.
    pub checker: Checker,
    /// HubSpot access per org.
    pub portals: Arc<dyn PortalAccess>,
    /// Duplicate settings per org, object and version.
    pub settings: Arc<dyn SettingsSource>,
}

/// Starts this service's consumers.
pub fn spawn(host: &mut ServiceHost, deps: Deps) {
    host.spawn_consumer(ConsumerSpec {
        name: "export-requests".into(),
        topics: vec![topics::EXPORT_REQUESTS],
        handler: Arc::new(RequestsHandler { deps }),
    });
    host.spawn_consumer(ConsumerSpec {
        name: "export-results".into(),
        topics: vec![topics::EXPORT_RESULTS],
        handler: Arc::new(ResultsHandler),
    });
    host.spawn_consumer(ConsumerSpec {
        name: "connection-events".into(),
        topics: vec![topics::CONNECTION_EVENTS],
        handler: Arc::new(ConnectionHandler),
    });
}

fn handler_error(e: Error) -> HandlerError {
    if e.is_retriable() {
        HandlerError::Retriable(e.to_string())
    } else {
        HandlerError::Permanent(e.to_string())
    }
}

/// A FAILED check per record, with the reason, for a batch that cannot be checked.
fn failed_checks(records: &[ExportRequestRecord], e: &Error) -> Vec<RecordCheck> {
    records
        .iter()
        .map(|r| RecordCheck {
            record_id: r
                .record
                .as_ref()
                .map(|rec| rec.record_id.clone())
                .unwrap_or_default(),
            decision: CheckDecision::Failed as i32,
            reason: format!("not checked for duplicates, so not written: {e}"),
            ..RecordCheck::default()
        })
        .collect()
}

/// Checks request batches and publishes the checked batch in the same transaction.
struct RequestsHandler {
    deps: Deps,
}

#[async_trait::async_trait]
impl EventHandler for RequestsHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let batch: ExportRequestBatch = event.decode()?;
        let header = batch
            .header
            .clone()
            .ok_or_else(|| HandlerError::Permanent("request batch without header".into()))?;
        let object = Object::from_proto(header.object).ok_or_else(|| {
            HandlerError::Permanent(format!(
                "request batch of job {} has object {}; only companies and contacts are checked",
                header.job_id, header.object
            ))
        })?;
        let span = tracing::info_span!(
            "dedupe.check_batch",
            org = %header.org_id,
            portal = header.portal_id,
            job_id = %header.job_id,
            batch_index = header.batch_index,
            records = batch.records.len(),
        );
        async {
            let started = Instant::now();
            let policy = self
                .deps
                .settings
                .policy(&header.org_id, object, Some(header.config_version))
                .await
                .map_err(handler_error)?;
            // The check's own writes (reservations) live in a savepoint: a check that fails for
            // good leaves none of them behind.
            let mut savepoint = sqlx::Connection::begin(&mut *tx)
                .await
                .map_err(|e| handler_error(e.into()))?;
            let checked = self
                .deps
                .checker
                .check(
                    &mut savepoint,
                    self.deps.portals.as_ref(),
                    Batch {
                        org: &header.org_id,
                        portal_id: header.portal_id,
                        object,
                        job_id: &header.job_id,
                        records: &batch.records,
                    },
                    &policy,
                    Mode::Pipeline {
                        resolution: batch.resolution,
                    },
                )
                .await;
            let checks = match checked {
                Ok(checks) => {
                    savepoint
                        .commit()
                        .await
                        .map_err(|e| handler_error(e.into()))?;
                    checks
                }
                // Retrying cannot help (HubSpot's daily limit, a connection to reconnect): the
                // records fail with the reason instead of the batch going to the DLQ, where its
                // job would wait for them forever.
                Err(e @ (Error::HubSpot(_) | Error::FailedPrecondition(_))) => {
                    savepoint
                        .rollback()
                        .await
                        .map_err(|e| handler_error(e.into()))?;
                    tracing::warn!(error = %e, "batch could not be checked; its records fail");
                    failed_checks(&batch.records, &e)
                }
                Err(e) => return Err(handler_error(e)),
            };
            for check in &checks {
                store::save_check(
                    tx,
                    &store::CheckRow {
                        job_id: &header.job_id,
                        record_id: &check.record_id,
                        org_id: &header.org_id,
                        portal_id: header.portal_id,
                        batch_index: header.batch_index,
                        decision: decision::decision_name(check.decision()),
                        target_hubspot_id: &check.target_hubspot_id,
                        candidate_count: check.candidates.len() as i32,
                        reason: &check.reason,
                    },
                )
                .await
                .map_err(handler_error)?;
            }
            let checked = ExportCheckedBatch {
                header: Some(header.clone()),
                records: batch
                    .records
                    .into_iter()
                    .zip(checks)
                    .map(|(request, check)| ExportCheckedRecord {
                        request: Some(request),
                        check: Some(check),
                    })
                    .collect(),
            };
            Outbox::enqueue(
                tx,
                topics::EXPORT_CHECKED,
                &header.portal_id.to_string(),
                &checked,
            )
            .await?;
            metrics::histogram!("spoke_dedupe_check_duration_seconds", "path" => "pipeline")
                .record(started.elapsed().as_secs_f64());
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// Feeds the index from written records and releases their reservations.
struct ResultsHandler;

#[async_trait::async_trait]
impl EventHandler for ResultsHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let batch: ExportResultBatch = event.decode()?;
        let header = batch
            .header
            .ok_or_else(|| HandlerError::Permanent("result batch without header".into()))?;
        let span = tracing::info_span!(
            "dedupe.index_results",
            org = %header.org_id,
            portal = header.portal_id,
            job_id = %header.job_id,
        );
        async {
            for result in &batch.results {
                let source = match result.outcome() {
                    RecordOutcome::Created => Some(IndexSource::Created),
                    RecordOutcome::Updated => Some(IndexSource::Updated),
                    _ => None,
                };
                if let Some(source) = source.filter(|_| !result.hubspot_id.is_empty()) {
                    let created_at = match source {
                        IndexSource::Created => result.completed_at.as_ref().and_then(|t| {
                            chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                        }),
                        _ => None,
                    };
                    for key in &result.match_keys {
                        match keys::from_proto(key) {
                            Ok(key) => {
                                store::upsert_index(
                                    tx,
                                    &header.org_id,
                                    header.portal_id,
                                    &key.encode(),
                                    &result.hubspot_id,
                                    source,
                                    created_at,
                                )
                                .await
                                .map_err(handler_error)?;
                            }
                            // One unusable key must not lose the others (or the batch).
                            Err(e) => tracing::warn!(record_id = %result.record_id, error = %e, "result key ignored"),
                        }
                    }
                }
                store::release(tx, header.portal_id, &header.job_id, &result.record_id)
                    .await
                    .map_err(handler_error)?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

/// Keeps the connection mirror and purges an org's index when its integration is deleted.
struct ConnectionHandler;

#[async_trait::async_trait]
impl EventHandler for ConnectionHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: ConnectionEvent = event.decode()?;
        connection_mirror::apply(tx, &ev).await?;
        if let Some(Kind::Deleted(_)) = ev.kind {
            let removed = store::purge_org(tx, &ev.org_id)
                .await
                .map_err(handler_error)?;
            tracing::info!(org = %ev.org_id, removed, "integration deleted: dedupe data purged");
        }
        Ok(())
    }
}
