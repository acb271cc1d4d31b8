//! Settings of the export service.

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
    /// The writer (`[writer]`).
    pub writer: WriterConfig,
    /// Largest CreateExport request accepted, in bytes (`[export] max_request_bytes`).
    pub export: ExportLimits,
    /// CRM writeback of activities (`[writeback]`).
    pub writeback: WritebackConfig,
}

/// `[writeback]` tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WritebackConfig {
    /// Seconds an activity may wait for its contact's HubSpot match before it is DROPPED
    /// (`SPOKE_WRITEBACK__PENDING_TTL_SECS`, default 7 days).
    pub pending_ttl_secs: f64,
    /// Seconds before retrying after HubSpot or the connection failed (doubled per attempt).
    pub retry_delay_secs: f64,
    /// Seconds after an attempt before HubSpot's search is trusted to show what it created.
    pub recovery_delay_secs: f64,
    /// Lease of a taken activity in seconds (a crashed worker's activities are retaken after it).
    pub lease_secs: f64,
}

impl Default for WritebackConfig {
    fn default() -> Self {
        Self {
            pending_ttl_secs: 7.0 * 24.0 * 3600.0,
            retry_delay_secs: 30.0,
            recovery_delay_secs: 15.0,
            lease_secs: 120.0,
        }
    }
}

impl WritebackConfig {
    /// The worker's settings.
    pub fn settings(&self) -> crate::writeback::WorkerSettings {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
        crate::writeback::WorkerSettings {
            pending_ttl: secs(self.pending_ttl_secs),
            retry_delay: secs(self.retry_delay_secs),
            recovery_delay: secs(self.recovery_delay_secs),
            lease: secs(self.lease_secs),
            ..crate::writeback::WorkerSettings::default()
        }
    }
}

/// `[mapping]` `endpoint` (`SPOKE_MAPPING__ENDPOINT`).
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

/// `[export]` limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportLimits {
    /// Max gRPC message size of CreateExport (default 128 MiB: about 100,000 records of 1 KiB).
    pub max_request_bytes: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 128 * 1024 * 1024,
        }
    }
}

/// `[writer]` tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WriterConfig {
    /// Chunks written at the same time.
    pub workers: usize,
    /// Records claimed per chunk.
    pub chunk: i64,
    /// HubSpot batch calls in flight per chunk.
    pub calls_in_flight: usize,
    /// Lease of a claimed chunk in seconds (a crashed worker's records are retaken after it).
    pub lease_secs: f64,
    /// Seconds after a create attempt before its records are looked up (HubSpot search lag).
    pub recovery_delay_secs: f64,
    /// Seconds before records HubSpot refused for now are tried again.
    pub retry_delay_secs: f64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            chunk: 500,
            calls_in_flight: 2,
            lease_secs: 120.0,
            recovery_delay_secs: 15.0,
            retry_delay_secs: 5.0,
        }
    }
}

impl WriterConfig {
    /// The writer's settings.
    pub fn settings(&self) -> crate::writer::WriterSettings {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
        crate::writer::WriterSettings {
            workers: self.workers,
            chunk: self.chunk,
            calls_in_flight: self.calls_in_flight,
            lease: secs(self.lease_secs),
            recovery_delay: secs(self.recovery_delay_secs),
            retry_delay: secs(self.retry_delay_secs),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50054;
        common.admin.port = 9104;
        Self {
            common,
            hubspot: HubSpotSettings::default(),
            connection: ConnectionEndpoint::default(),
            mapping: MappingEndpoint::default(),
            writer: WriterConfig::default(),
            export: ExportLimits::default(),
            writeback: WritebackConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
        self.hubspot.validate(problems);
        self.connection.validate(problems);
        if !(self.mapping.endpoint.starts_with("http://")
            || self.mapping.endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "mapping.endpoint must be an http(s) URI, got {:?} (set {})",
                self.mapping.endpoint,
                env_var_name("mapping.endpoint")
            ));
        }
        let w = &self.writer;
        for (key, ok) in [
            ("writer.workers", (1..=64).contains(&w.workers)),
            ("writer.chunk", (1..=5000).contains(&w.chunk)),
            (
                "writer.calls_in_flight",
                (1..=16).contains(&w.calls_in_flight),
            ),
            ("writer.lease_secs", w.lease_secs >= 1.0),
            ("writer.recovery_delay_secs", w.recovery_delay_secs >= 0.0),
            ("writer.retry_delay_secs", w.retry_delay_secs >= 0.0),
            (
                "writeback.pending_ttl_secs",
                self.writeback.pending_ttl_secs >= 1.0,
            ),
            (
                "writeback.retry_delay_secs",
                self.writeback.retry_delay_secs >= 0.0,
            ),
            (
                "writeback.recovery_delay_secs",
                self.writeback.recovery_delay_secs >= 0.0,
            ),
            ("writeback.lease_secs", self.writeback.lease_secs >= 1.0),
        ] {
            if !ok {
                problems.push(format!("{key} is out of range (set {})", env_var_name(key)));
            }
        }
        if self.export.max_request_bytes < 1024 * 1024 {
            problems.push(format!(
                "export.max_request_bytes must be at least 1 MiB (set {})",
                env_var_name("export.max_request_bytes")
            ));
        }
    }
}
