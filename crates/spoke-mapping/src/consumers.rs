//! Kafka consumers of the mapping service.

use std::sync::Arc;

use spoke_platform::connection_mirror;
use spoke_platform::kafka::{ConsumerSpec, EventHandler, HandlerError, InboundEvent, topics};
use spoke_platform::service::ServiceHost;
use spoke_proto::events::v1::ConnectionEvent;
use spoke_proto::events::v1::connection_event::Kind;
use sqlx::PgConnection;

use crate::configs::Configs;
use crate::store;

/// Keeps the connection mirror and purges an org's configuration when its integration is
/// deleted ("Delete a connected integration (including any mapping and export settings)").
pub struct ConnectionEvents {
    configs: Configs,
}

#[async_trait::async_trait]
impl EventHandler for ConnectionEvents {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: ConnectionEvent = event.decode()?;
        connection_mirror::apply(tx, &ev).await?;
        if matches!(ev.kind, Some(Kind::Deleted(_))) {
            let removed = store::purge(tx, &ev.org_id)
                .await
                .map_err(|e| HandlerError::Retriable(e.to_string()))?;
            // This replica's memory; other replicas never reuse a purged version number.
            self.configs.forget(&ev.org_id);
            metrics::counter!("spoke_mapping_purges_total").increment(1);
            tracing::info!(org = %ev.org_id, rows = removed, "integration deleted: configuration purged");
        }
        Ok(())
    }
}

/// Starts this service's consumers: connection events (mirror + purge on delete).
pub fn spawn(host: &mut ServiceHost, configs: Configs) {
    host.spawn_consumer(ConsumerSpec {
        name: "connection-events".into(),
        topics: vec![topics::CONNECTION_EVENTS],
        handler: Arc::new(ConnectionEvents { configs }),
    });
}
