//! Data sharing: a completed filtering run records, per object, how many HubSpot records it read
//! as a CRM-data contribution in the connection service (`RecordContribution`). The connection
//! service owns the org's toggles and the contract lock: while the CRM-data toggle is off (or
//! locked) it records nothing, so this module never decides that itself.
//!
//! It consumes the run's own `finished` event (`spoke.filtering.runs.v1`) instead of calling from
//! the run: the event is committed with the run, so a connection service that is down delays the
//! contribution (the consumer retries, then dead-letters) but never fails or slows the run. The
//! idempotency key `filtering-run:<run id>:<object>` makes redeliveries and retries record once.

use std::sync::Arc;

use spoke_connection_client::ConnectionClient;
use spoke_platform::kafka::{ConsumerSpec, EventHandler, HandlerError, InboundEvent, topics};
use spoke_proto::common::v1::{FilteringRunState, ObjectType};
use spoke_proto::connection::v1::{ContributionCategory, RecordContributionRequest};
use spoke_proto::events::v1::FilteringRunEvent;
use spoke_proto::events::v1::filtering_run_event::Kind;
use sqlx::PgConnection;

/// `source` of the contributions filtering records.
pub const SOURCE: &str = "filtering_run";

/// The contributions of a run event: one per object that read records, for completed runs only
/// (a failed, cancelled or limited run keeps the previous matches and shares nothing new).
pub fn contributions(ev: &FilteringRunEvent) -> Vec<RecordContributionRequest> {
    let Some(Kind::Finished(f)) = &ev.kind else {
        return Vec::new();
    };
    if f.state != FilteringRunState::Completed as i32 {
        return Vec::new();
    }
    f.stats
        .iter()
        .filter(|s| s.records_scanned > 0 && s.object != ObjectType::Unspecified as i32)
        .map(|s| {
            let object = ObjectType::try_from(s.object)
                .map(|o| {
                    o.as_str_name()
                        .trim_start_matches("OBJECT_TYPE_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| s.object.to_string());
            RecordContributionRequest {
                idempotency_key: format!("filtering-run:{}:{object}", ev.run_id),
                category: ContributionCategory::CrmData as i32,
                object: s.object,
                record_count: s.records_scanned,
                source: SOURCE.into(),
                source_id: ev.run_id.clone(),
                occurred_at: ev.occurred_at,
            }
        })
        .collect()
}

/// Records the contributions of finished runs.
pub struct ContributionRecorder {
    connection: ConnectionClient,
}

#[async_trait::async_trait]
impl EventHandler for ContributionRecorder {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> Result<(), HandlerError> {
        let ev: FilteringRunEvent = event.decode()?;
        for c in contributions(&ev) {
            let (key, n) = (c.idempotency_key.clone(), c.record_count);
            match self.connection.record_contribution(&ev.org_id, c).await {
                Ok(recorded) => {
                    tracing::info!(org = %ev.org_id, run_id = %ev.run_id, key, records = n, recorded, "data-sharing contribution");
                    let outcome = if recorded { "recorded" } else { "sharing_off" };
                    metrics::counter!("spoke_filtering_contributions_total", "outcome" => outcome)
                        .increment(1);
                }
                Err(spoke_connection_client::Error::Rpc(s))
                    if s.code() == tonic::Code::InvalidArgument =>
                {
                    return Err(HandlerError::Permanent(format!(
                        "contribution {key} of org {}: {}",
                        ev.org_id,
                        s.message()
                    )));
                }
                Err(e) => {
                    return Err(HandlerError::Retriable(format!(
                        "contribution {key} of org {}: {e}",
                        ev.org_id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The consumer of finished runs that records contributions.
pub fn consumer_spec(connection: ConnectionClient) -> ConsumerSpec {
    ConsumerSpec {
        name: "sharing".into(),
        topics: vec![topics::FILTERING_RUNS],
        handler: Arc::new(ContributionRecorder { connection }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::common::v1::ObjectRunStats;
    use spoke_proto::events::v1::filtering_run_event::{Finished, Requested};

    fn finished(state: FilteringRunState) -> FilteringRunEvent {
        let stats = |object: ObjectType, n: i64| ObjectRunStats {
            object: object as i32,
            records_scanned: n,
            ..Default::default()
        };
        FilteringRunEvent {
            org_id: "o".into(),
            run_id: "r1".into(),
            occurred_at: None,
            kind: Some(Kind::Finished(Finished {
                state: state as i32,
                stats: vec![
                    stats(ObjectType::Companies, 12),
                    stats(ObjectType::Contacts, 0),
                    stats(ObjectType::Deals, 3),
                ],
                message: String::new(),
                started_at: None,
            })),
        }
    }

    #[test]
    fn completed_runs_contribute_per_object_that_read_records() {
        let c = contributions(&finished(FilteringRunState::Completed));
        let got: Vec<(String, i32, i64)> = c
            .iter()
            .map(|c| (c.idempotency_key.clone(), c.object, c.record_count))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "filtering-run:r1:companies".into(),
                    ObjectType::Companies as i32,
                    12
                ),
                ("filtering-run:r1:deals".into(), ObjectType::Deals as i32, 3),
            ]
        );
        assert!(
            c.iter()
                .all(|c| c.category == ContributionCategory::CrmData as i32
                    && c.source == SOURCE
                    && c.source_id == "r1")
        );
    }

    #[test]
    fn other_outcomes_and_requests_contribute_nothing() {
        for s in [
            FilteringRunState::Failed,
            FilteringRunState::Cancelled,
            FilteringRunState::LimitReached,
        ] {
            assert!(contributions(&finished(s)).is_empty(), "{s:?}");
        }
        let requested = FilteringRunEvent {
            kind: Some(Kind::Requested(Requested::default())),
            ..finished(FilteringRunState::Completed)
        };
        assert!(contributions(&requested).is_empty());
    }
}
