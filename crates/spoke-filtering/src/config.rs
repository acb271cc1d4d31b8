//! Settings of the filtering service.

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
    /// Runs, leases, schedules and limits (`[filtering]`).
    pub filtering: FilteringSettings,
    /// Alert emails (`[smtp]`); off while `host` is empty.
    pub smtp: SmtpSettings,
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50055;
        common.admin.port = 9105;
        Self {
            common,
            hubspot: HubSpotSettings::default(),
            connection: ConnectionEndpoint::default(),
            filtering: FilteringSettings::default(),
            smtp: SmtpSettings::default(),
        }
    }
}

/// `[filtering]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FilteringSettings {
    /// Seconds a replica's lease on a run lasts without a heartbeat; after that another replica
    /// takes the run over.
    pub lease_secs: f64,
    /// How often idle replicas look for runs to take (milliseconds); Kafka requests wake them sooner.
    pub poll_interval_ms: u64,
    /// How often the scheduler looks for due schedules (seconds).
    pub scheduler_interval_secs: u64,
    /// Records matched per database round trip.
    pub batch_size: usize,
    /// Limit of companies and of contacts per org (the guide's 2,000,000).
    pub max_companies_contacts: i64,
    /// Limit of deals per org (the guide's 500,000).
    pub max_deals: i64,
    /// HubSpot call budget: `remote` (the connection service's portal budget), `local` (this
    /// replica only, HubSpot's OAuth limits) or `off` (benchmarks against a sandbox without limits).
    pub budget: String,
    /// Private-app portals by org, used instead of the connection service when non-empty
    /// (development, benchmarks): `[[filtering.static_portals]] org, portal_id, token`.
    pub static_portals: Vec<StaticPortal>,
    /// Record data-sharing contributions of completed runs in the connection service
    /// (`RecordContribution`). Unset: on, unless `static_portals` is set (no connection service).
    pub record_contributions: Option<bool>,
}

impl Default for FilteringSettings {
    fn default() -> Self {
        Self {
            lease_secs: 60.0,
            poll_interval_ms: 2000,
            scheduler_interval_secs: 30,
            batch_size: 1000,
            max_companies_contacts: 2_000_000,
            max_deals: 500_000,
            budget: "remote".into(),
            static_portals: Vec::new(),
            record_contributions: None,
        }
    }
}

/// A portal reached with a private-app token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticPortal {
    /// Org id.
    pub org: String,
    /// HubSpot portal id.
    pub portal_id: u64,
    /// Private-app access token.
    pub token: String,
}

/// `[smtp]` settings of alert emails.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    /// SMTP host; empty turns email off (notifications still go to Kafka).
    pub host: String,
    /// SMTP port (25 when 0).
    pub port: u16,
    /// Use STARTTLS.
    pub starttls: bool,
    /// Sender address.
    pub from: String,
    /// User name (optional).
    pub username: String,
    /// Password (optional).
    pub password: String,
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
        self.hubspot.validate(problems);
        self.connection.validate(problems);
        let f = &self.filtering;
        if f.lease_secs.is_nan() || f.lease_secs < 1.0 {
            problems.push(format!(
                "filtering.lease_secs must be at least 1 (set {})",
                env_var_name("filtering.lease_secs")
            ));
        }
        if f.batch_size == 0 || f.batch_size > 10_000 {
            problems.push(format!(
                "filtering.batch_size must be 1..=10000 (set {})",
                env_var_name("filtering.batch_size")
            ));
        }
        if f.max_companies_contacts < 1 || f.max_deals < 1 {
            problems.push(format!(
                "filtering.max_companies_contacts and filtering.max_deals must be positive (set {} / {})",
                env_var_name("filtering.max_companies_contacts"),
                env_var_name("filtering.max_deals")
            ));
        }
        if !matches!(f.budget.as_str(), "remote" | "local" | "off") {
            problems.push(format!(
                "filtering.budget must be remote, local or off, got {:?} (set {})",
                f.budget,
                env_var_name("filtering.budget")
            ));
        }
        if !self.smtp.host.is_empty() && !self.smtp.from.contains('@') {
            problems.push(format!(
                "smtp.from must be an email address when smtp.host is set (set {})",
                env_var_name("smtp.from")
            ));
        }
    }
}
