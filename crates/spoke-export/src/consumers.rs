//! Kafka consumers of the export service: the connection mirror, and dedupe's checked batches.

use std::sync::Arc;

use spoke_platform::connection_mirror;
use spoke_platform::kafka::{ConsumerSpec, EventHandler, HandlerError, InboundEvent, topics};
use spoke_platform::service::ServiceHost;
use spoke_proto::events::v1::ExportCheckedBatch;
use sqlx::PgConnection;
use tokio::sync::Notify;

use tracing::Instrument;

use crate::error::Error;
use crate::{jobs, store};

/// Stores checked batches (decisions, candidates) and wakes the writer.
pub struct CheckedHandler {
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl EventHandler for CheckedHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let batch: ExportCheckedBatch = event.decode()?;
        let span = tracing::info_span!(
            "export.apply_checked",
            org = batch
                .header
                .as_ref()
                .map(|h| h.org_id.as_str())
                .unwrap_or_default(),
            portal = batch
                .header
                .as_ref()
                .map(|h| h.portal_id)
                .unwrap_or_default(),
            job_id = batch
                .header
                .as_ref()
                .map(|h| h.job_id.as_str())
                .unwrap_or_default(),
        );
        async {
            match jobs::apply_checked(tx, &batch).await {
                Ok(()) => {}
                Err(Error::InvalidArgument(m)) => return Err(HandlerError::Permanent(m)),
                Err(Error::Database(e)) => return Err(HandlerError::from(e)),
                Err(e) => return Err(HandlerError::Retriable(e.to_string())),
            }
            // The writer links its chunk spans to this one (records of several batches fan in).
            if let (Some(header), Some(tp)) = (
                batch.header.as_ref(),
                spoke_platform::telemetry::current_traceparent(),
            ) && let Ok(job_id) = uuid::Uuid::parse_str(&header.job_id)
            {
                let ids: Vec<&str> = batch
                    .records
                    .iter()
                    .filter_map(|r| r.request.as_ref()?.record.as_ref())
                    .map(|r| r.record_id.as_str())
                    .collect();
                store::set_trace_context(tx, job_id, &ids, &tp)
                    .await
                    .map_err(|e| HandlerError::Retriable(e.to_string()))?;
            }
            Ok(())
        }
        .instrument(span)
        .await?;
        // The writer polls too; waking it only saves the poll interval.
        self.wake.notify_waiters();
        Ok(())
    }
}

/// Starts this service's consumers: the connection mirror and the checked batches.
pub fn spawn(host: &mut ServiceHost, wake: Arc<Notify>) {
    host.spawn_consumer(connection_mirror::consumer_spec());
    host.spawn_consumer(ConsumerSpec {
        name: "export-checked".into(),
        topics: vec![topics::EXPORT_CHECKED],
        handler: Arc::new(CheckedHandler { wake }),
    });
}
