//! Settings of the mapping service.

use serde::{Deserialize, Serialize};
use spoke_connection_client::{ConnectionEndpoint, HubSpotSettings};
use spoke_platform::config::{CommonConfig, Validate, env_var_name};

/// Typed settings, layered defaults < file < `SPOKE_*` environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Settings every service shares (gRPC, admin, database, Kafka, auth, telemetry).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Where HubSpot is (`[hubspot]`).
    pub hubspot: HubSpotSettings,
    /// Where the connection service is (`[connection]`).
    pub connection: ConnectionEndpoint,
    /// Mapping-specific settings (`[mapping]`).
    pub mapping: MappingSettings,
}

/// `[mapping]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MappingSettings {
    /// How long a portal's property list is served from the cache before HubSpot is read again
    /// (`SPOKE_MAPPING__PROPERTIES_TTL_SECS`, default 900 = 15 minutes).
    pub properties_ttl_secs: u64,
    /// Compiled mappings kept in memory per replica (`SPOKE_MAPPING__COMPILED_CACHE_ENTRIES`).
    pub compiled_cache_entries: usize,
}

impl Default for MappingSettings {
    fn default() -> Self {
        Self {
            properties_ttl_secs: 900,
            compiled_cache_entries: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50052;
        common.admin.port = 9102;
        Self {
            common,
            hubspot: HubSpotSettings::default(),
            connection: ConnectionEndpoint::default(),
            mapping: MappingSettings::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
        self.hubspot.validate(problems);
        self.connection.validate(problems);
        if !(1..=86_400).contains(&self.mapping.properties_ttl_secs) {
            problems.push(format!(
                "mapping.properties_ttl_secs must be within 1..=86400, got {} (set {})",
                self.mapping.properties_ttl_secs,
                env_var_name("mapping.properties_ttl_secs")
            ));
        }
        if self.mapping.compiled_cache_entries == 0 {
            problems.push(format!(
                "mapping.compiled_cache_entries must be at least 1 (set {})",
                env_var_name("mapping.compiled_cache_entries")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_env_vars() {
        let mut c = Config::default();
        c.mapping.properties_ttl_secs = 0;
        c.mapping.compiled_cache_entries = 0;
        c.connection.endpoint = "nowhere".into();
        let mut problems = Vec::new();
        c.validate(&mut problems);
        let all = problems.join("\n");
        for env in [
            "SPOKE_MAPPING__PROPERTIES_TTL_SECS",
            "SPOKE_MAPPING__COMPILED_CACHE_ENTRIES",
            "SPOKE_CONNECTION__ENDPOINT",
        ] {
            assert!(all.contains(env), "{env} missing in {all}");
        }
    }
}
