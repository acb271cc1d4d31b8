//! Settings of the dedupe service.

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
    /// Where the mapping service is (`[mapping]`).
    pub mapping: MappingEndpoint,
    /// Duplicate check tunables (`[dedupe]`).
    pub dedupe: DedupeSettings,
}

/// `[mapping] endpoint` (`SPOKE_MAPPING__ENDPOINT`), default `http://127.0.0.1:50052`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MappingEndpoint {
    /// gRPC endpoint URI of the mapping service.
    pub endpoint: String,
}

impl Default for MappingEndpoint {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50052".into(),
        }
    }
}

/// `[dedupe]` tunables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DedupeSettings {
    /// How long a check waits for another export's in-flight create of the same key, seconds
    /// (`SPOKE_DEDUPE__IN_FLIGHT_WAIT_SECS`, default 20).
    pub in_flight_wait_secs: u64,
    /// How long a create reservation holds without its result, seconds
    /// (`SPOKE_DEDUPE__RESERVATION_TTL_SECS`, default 3600).
    pub reservation_ttl_secs: u64,
    /// Deadline of a `CheckDuplicates` preview, seconds (`SPOKE_DEDUPE__PREVIEW_TIMEOUT_SECS`, default 25).
    pub preview_timeout_secs: u64,
    /// How often the index stats gauges are refreshed, seconds (`SPOKE_DEDUPE__STATS_INTERVAL_SECS`, default 60).
    pub stats_interval_secs: u64,
}

impl Default for DedupeSettings {
    fn default() -> Self {
        Self {
            in_flight_wait_secs: 20,
            reservation_ttl_secs: 3600,
            preview_timeout_secs: 25,
            stats_interval_secs: 60,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50053;
        common.admin.port = 9103;
        Self {
            common,
            hubspot: HubSpotSettings::default(),
            connection: ConnectionEndpoint::default(),
            mapping: MappingEndpoint::default(),
            dedupe: DedupeSettings::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
        self.hubspot.validate(problems);
        self.connection.validate(problems);
        let e = &self.mapping.endpoint;
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() <= "https://".len() {
            problems.push(format!(
                "mapping.endpoint must be an http(s) URI, got {e:?} (set {})",
                env_var_name("mapping.endpoint")
            ));
        }
        let d = &self.dedupe;
        for (key, value, min, max) in [
            ("dedupe.in_flight_wait_secs", d.in_flight_wait_secs, 0, 300),
            (
                "dedupe.reservation_ttl_secs",
                d.reservation_ttl_secs,
                60,
                7 * 86_400,
            ),
            (
                "dedupe.preview_timeout_secs",
                d.preview_timeout_secs,
                1,
                300,
            ),
            ("dedupe.stats_interval_secs", d.stats_interval_secs, 1, 3600),
        ] {
            if !(min..=max).contains(&value) {
                problems.push(format!(
                    "{key} must be within {min}..={max}, got {value} (set {})",
                    env_var_name(key)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_env_var() {
        let mut config = Config::default();
        // The auth key has no default (a secret); everything else must be valid out of the box.
        config.common.auth.hs256_secret =
            Some("dev-secret-of-at-least-32-bytes!!".to_owned().into());
        let mut problems = Vec::new();
        config.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let mut bad = config;
        bad.dedupe.reservation_ttl_secs = 5;
        bad.mapping.endpoint = "mapping:50052".into();
        let mut problems = Vec::new();
        bad.validate(&mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("SPOKE_DEDUPE__RESERVATION_TTL_SECS"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("SPOKE_MAPPING__ENDPOINT"))
        );
    }
}
