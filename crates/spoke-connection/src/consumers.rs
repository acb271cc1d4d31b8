//! Kafka consumers of the connection service: none; it is the source of connection events.

use spoke_platform::service::ServiceHost;

/// Starts this service's consumers (none).
pub fn spawn(_host: &mut ServiceHost) {}
