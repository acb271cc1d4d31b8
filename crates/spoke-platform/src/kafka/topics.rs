//! The one list of Spoke's Kafka topics: names, what keys them, and which message they carry.
//!
//! Everything that names a topic (services, the dev broker, tests, the Helm chart docs) takes it
//! from here.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::Result;
use crate::config::KafkaConfig;

/// What a topic's messages are keyed by (the value whose order must be kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The org id.
    Org,
    /// The HubSpot portal id (export traffic: keeps one portal's batches in order).
    Portal,
    /// The provider profile id.
    Profile,
    /// Whatever key the original message had (dead letters).
    Original,
}

/// One topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    /// Kafka topic name.
    pub name: &'static str,
    /// What the message key is.
    pub key: KeyKind,
    /// Fully-qualified protobuf message name carried (also the `ce_type` header).
    pub message: &'static str,
}

/// Connection lifecycle events.
pub const CONNECTION_EVENTS: Topic = Topic {
    name: "spoke.connection.events.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.ConnectionEvent",
};
/// Mapping, preference and duplicate-setting saves.
pub const MAPPING_EVENTS: Topic = Topic {
    name: "spoke.mapping.events.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.MappingEvent",
};
/// Batches of export records to check for duplicates.
pub const EXPORT_REQUESTS: Topic = Topic {
    name: "spoke.export.requests.v1",
    key: KeyKind::Portal,
    message: "spoke.events.v1.ExportRequestBatch",
};
/// Checked batches with candidates and decided actions.
pub const EXPORT_CHECKED: Topic = Topic {
    name: "spoke.export.checked.v1",
    key: KeyKind::Portal,
    message: "spoke.events.v1.ExportCheckedBatch",
};
/// Per-record export outcomes.
pub const EXPORT_RESULTS: Topic = Topic {
    name: "spoke.export.results.v1",
    key: KeyKind::Portal,
    message: "spoke.events.v1.ExportResultBatch",
};
/// Export job state changes and progress.
pub const EXPORT_EVENTS: Topic = Topic {
    name: "spoke.export.events.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.ExportEvent",
};
/// Filtering runs requested and finished.
pub const FILTERING_RUNS: Topic = Topic {
    name: "spoke.filtering.runs.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.FilteringRunEvent",
};
/// Matches added/removed per filtering run.
pub const FILTERING_EVENTS: Topic = Topic {
    name: "spoke.filtering.events.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.FilteringMatchEvent",
};
/// Provider profile upserts and deletes.
pub const PROFILES: Topic = Topic {
    name: "spoke.profiles.v1",
    key: KeyKind::Profile,
    message: "spoke.events.v1.ProfileEvent",
};
/// Engagement activities to write back to HubSpot.
pub const ACTIVITIES: Topic = Topic {
    name: "spoke.activities.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.ActivityEvent",
};
/// Email alerts.
pub const NOTIFICATIONS: Topic = Topic {
    name: "spoke.notifications.v1",
    key: KeyKind::Org,
    message: "spoke.events.v1.Notification",
};
/// Dead letters: the original message and headers plus `dlq_*` error headers.
pub const DLQ: Topic = Topic {
    name: "spoke.dlq.v1",
    key: KeyKind::Original,
    message: "(original message)",
};

/// Every topic Spoke uses.
pub const ALL: &[Topic] = &[
    CONNECTION_EVENTS,
    MAPPING_EVENTS,
    EXPORT_REQUESTS,
    EXPORT_CHECKED,
    EXPORT_RESULTS,
    EXPORT_EVENTS,
    FILTERING_RUNS,
    FILTERING_EVENTS,
    PROFILES,
    ACTIVITIES,
    NOTIFICATIONS,
    DLQ,
];

/// Looks a topic up by name.
pub fn by_name(name: &str) -> Option<Topic> {
    ALL.iter().copied().find(|t| t.name == name)
}

/// Creates `topics` if they do not exist.
///
/// Tolerates "already exists" and brokers that do not implement CreateTopics (the dev broker:
/// its topics are pre-created), logging a warning instead of failing start-up.
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[Topic]) -> Result<()> {
    if !cfg.create_topics {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t.name,
                cfg.topic_partitions,
                TopicReplication::Fixed(cfg.topic_replication),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(new.iter(), &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => tracing::info!(topic = %name, "created topic"),
                    Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(topic = %name, "topic exists")
                    }
                    Err((name, code)) => {
                        tracing::warn!(topic = %name, error = %code, "could not create topic; assuming it is managed elsewhere")
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "broker refused CreateTopics; assuming topics are managed elsewhere")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_versioned_and_findable() {
        let mut names: Vec<_> = ALL.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate topic names");
        for t in ALL {
            assert!(
                t.name.starts_with("spoke.") && t.name.ends_with(".v1"),
                "{}",
                t.name
            );
            assert_eq!(by_name(t.name), Some(*t));
        }
        assert_eq!(by_name("nope"), None);
    }

    #[test]
    fn export_traffic_is_keyed_by_portal() {
        for t in [EXPORT_REQUESTS, EXPORT_CHECKED, EXPORT_RESULTS] {
            assert_eq!(t.key, KeyKind::Portal, "{}", t.name);
        }
    }
}
