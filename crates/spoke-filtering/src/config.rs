//! Settings of the filtering service.

use serde::{Deserialize, Serialize};
use spoke_platform::config::{CommonConfig, Validate};

/// Typed settings, layered defaults < file < `SPOKE_*` environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Settings every service shares (gRPC, admin, database, Kafka, auth, telemetry).
    #[serde(flatten)]
    pub common: CommonConfig,
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50055;
        common.admin.port = 9105;
        Self { common }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
    }
}
