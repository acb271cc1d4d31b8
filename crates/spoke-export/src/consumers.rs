//! Kafka consumers of the export service.

use spoke_platform::connection_mirror;
use spoke_platform::service::ServiceHost;

/// Starts this service's consumers: the connection mirror.
pub fn spawn(host: &mut ServiceHost) {
    host.spawn_consumer(connection_mirror::consumer_spec());
}
