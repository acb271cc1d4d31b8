//! Kafka consumers of the filtering service: the connection mirror, the profile index
//! (`spoke.profiles.v1`) and run requests (`spoke.filtering.runs.v1`, which wake the runner).

use std::sync::Arc;

use spoke_platform::connection_mirror;
use spoke_platform::kafka::{ConsumerSpec, EventHandler, HandlerError, InboundEvent, topics};
use spoke_platform::service::ServiceHost;
use spoke_proto::events::v1::FilteringRunEvent;
use spoke_proto::events::v1::filtering_run_event::Kind;
use sqlx::PgConnection;
use tokio::sync::Notify;

use crate::profiles::ProfileHandler;

/// Starts this service's consumers.
pub fn spawn(host: &mut ServiceHost, wake: Arc<Notify>) {
    host.spawn_consumer(connection_mirror::consumer_spec());
    host.spawn_consumer(ConsumerSpec {
        name: "profiles".into(),
        topics: vec![topics::PROFILES],
        handler: Arc::new(ProfileHandler),
    });
    host.spawn_consumer(ConsumerSpec {
        name: "run-requests".into(),
        topics: vec![topics::FILTERING_RUNS],
        handler: Arc::new(RunRequestHandler { wake }),
    });
}

/// Wakes this replica's runner when a run is requested; the run row (written with the event)
/// is the work item, so whichever replica claims its lease first executes it.
struct RunRequestHandler {
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl EventHandler for RunRequestHandler {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: FilteringRunEvent = event.decode()?;
        if matches!(ev.kind, Some(Kind::Requested(_))) {
            self.wake.notify_one();
        }
        Ok(())
    }
}
