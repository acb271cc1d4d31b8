//! Layered configuration: built-in defaults < TOML file < `SPOKE_*` environment variables.
//!
//! Every service has a typed settings struct that embeds [`CommonConfig`] under the key `common`
//! flattened to the top level, so a service's TOML file reads
//!
//! ```toml
//! [grpc]
//! port = 50051
//! [database]
//! url = "postgres://postgres@127.0.0.1:5432/spoke"
//! ```
//!
//! and the same keys come from the environment as `SPOKE_GRPC__PORT=50051`,
//! `SPOKE_DATABASE__URL=...` (double underscore separates nesting levels). Two well-known
//! variables are honoured as aliases because operators expect them: `DATABASE_URL` for
//! `database.url` and `SPOKE_KAFKA_BOOTSTRAP` for `kafka.bootstrap`. The file comes from
//! `SPOKE_CONFIG` (or an explicit path given by the binary's `--config` flag).
//!
//! After loading, [`Validate`] runs and every problem is reported at once, each naming the key
//! and the environment variable that sets it, so a bad deployment fails at start-up with one
//! readable message instead of at the first request.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Environment variable prefix of every Spoke setting.
pub const ENV_PREFIX: &str = "SPOKE_";

/// A settings struct that can check itself after loading.
pub trait Validate {
    /// Appends one human-readable message per problem to `problems`.
    fn validate(&self, problems: &mut Vec<String>);
}

/// Loads `T` from defaults, then the optional TOML file, then the environment, and validates it.
///
/// `file` overrides `SPOKE_CONFIG`. A file that was named but does not exist is an error (a typo in
/// a path should not silently fall back to defaults).
pub fn load<T>(file: Option<&Path>) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    load_from(file, std::env::vars())
}

/// Like [`load`] but with an explicit environment, which keeps tests free of process-global state.
pub fn load_from<T, I>(file: Option<&Path>, env: I) -> Result<T>
where
    T: DeserializeOwned + Serialize + Default + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let file: Option<PathBuf> = file
        .map(Path::to_path_buf)
        .or_else(|| env.get("SPOKE_CONFIG").map(PathBuf::from));

    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = &file {
        if !path.exists() {
            return Err(Error::Config(format!(
                "config file {} (from --config or SPOKE_CONFIG) does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    // Aliases first so that the explicit SPOKE_ form wins when both are set.
    if let Some(url) = env.get("DATABASE_URL") {
        figment = figment.merge(Serialized::default("database.url", url));
    }
    if let Some(bootstrap) = env.get("SPOKE_KAFKA_BOOTSTRAP") {
        figment = figment.merge(Serialized::default("kafka.bootstrap", bootstrap));
    }
    // The environment is applied by hand (not figment's `Env`, which reads the process environment)
    // so that tests stay hermetic and the alias rules above stay in one place.
    for (key, value) in &env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest == "CONFIG" || rest == "KAFKA_BOOTSTRAP" {
            continue;
        }
        let path = rest.to_ascii_lowercase().replace("__", ".");
        let typed = env_value(value, figment.find_value(&path).ok().as_ref());
        figment = figment.merge(Serialized::default(&path, typed));
    }

    // `#[serde(flatten)]` hides key paths from figment's errors; extracting the common part on
    // its own first gives errors in it their key and variable name.
    figment.extract::<CommonConfig>().map_err(describe)?;
    let config: T = figment.extract().map_err(describe)?;
    let mut problems = Vec::new();
    config.validate(&mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(Error::Config(format!(
            "invalid configuration:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// An environment value typed like the value it replaces (the default or the file's): a
/// number where a number was, a boolean where a boolean was, else a string. So a secret such as
/// `123456` or `[x]` is never read as a number or a list. Lists and optional numbers come from
/// the config file.
fn env_value(raw: &str, current: Option<&figment::value::Value>) -> figment::value::Value {
    use figment::value::Value;
    let as_string = || Value::from(raw.to_string());
    match current {
        Some(Value::Num(..)) => {
            if let Ok(n) = raw.parse::<u64>() {
                Value::from(n)
            } else if let Ok(n) = raw.parse::<i64>() {
                Value::from(n)
            } else if let Ok(n) = raw.parse::<f64>() {
                Value::from(n)
            } else {
                as_string()
            }
        }
        Some(Value::Bool(..)) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::from(true),
            "false" | "0" | "no" | "off" => Value::from(false),
            _ => as_string(),
        },
        _ => as_string(),
    }
}

fn describe(e: figment::Error) -> Error {
    let msgs: Vec<String> = e
        .into_iter()
        .map(|err| {
            let key = err.path.join(".");
            if key.is_empty() {
                format!("{}", err.kind)
            } else {
                format!(
                    "{key}: {} (set it in the config file or as {})",
                    err.kind,
                    env_var_name(&key)
                )
            }
        })
        .collect();
    Error::Config(msgs.join("; "))
}

/// The environment variable that sets a dotted config key.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

/// Settings every service has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonConfig {
    /// gRPC server.
    pub grpc: GrpcConfig,
    /// Admin HTTP server (health, readiness, metrics).
    pub admin: AdminConfig,
    /// Postgres.
    pub database: DatabaseConfig,
    /// Kafka.
    pub kafka: KafkaConfig,
    /// JWT verification and service-token issuing.
    pub auth: AuthConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Seconds to drain in-flight work after SIGTERM before exiting.
    pub shutdown_grace_secs: u64,
}

impl Default for CommonConfig {
    fn default() -> Self {
        Self {
            grpc: GrpcConfig::default(),
            admin: AdminConfig::default(),
            database: DatabaseConfig::default(),
            kafka: KafkaConfig::default(),
            auth: AuthConfig::default(),
            telemetry: TelemetryConfig::default(),
            shutdown_grace_secs: 25,
        }
    }
}

impl Validate for CommonConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.database.validate(problems);
        self.kafka.validate(problems);
        self.auth.validate(problems);
        self.telemetry.validate(problems);
        self.grpc.validate(problems);
        if self.shutdown_grace_secs == 0 {
            problems.push("shutdown_grace_secs must be > 0 (SPOKE_SHUTDOWN_GRACE_SECS)".into());
        }
        if self.grpc.port != 0
            && self.grpc.port == self.admin.port
            && self.grpc.host == self.admin.host
        {
            problems.push(format!(
                "grpc.port and admin.port are both {}; give the admin server its own port (SPOKE_ADMIN__PORT)",
                self.grpc.port
            ));
        }
    }
}

/// gRPC listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Port; 0 picks a free port (tests).
    pub port: u16,
    /// Optional TLS: PEM certificate chain and key files.
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 50051,
            tls: None,
        }
    }
}

impl GrpcConfig {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if let Some(tls) = &self.tls {
            for (name, path) in [("cert_path", &tls.cert_path), ("key_path", &tls.key_path)] {
                if !path.exists() {
                    problems.push(format!(
                        "grpc.tls.{name}: file {} does not exist ({})",
                        path.display(),
                        env_var_name(&format!("grpc.tls.{name}"))
                    ));
                }
            }
        }
    }
}

/// PEM files for a TLS server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert_path: PathBuf,
    /// Private key (PEM).
    pub key_path: PathBuf,
}

/// Admin HTTP listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Port; 0 picks a free port (tests).
    pub port: u16,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 9090,
        }
    }
}

impl AdminConfig {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// Postgres settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// Connection URL (`postgres://user:pass@host:port/db`); also read from `DATABASE_URL`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// The schema this service owns; defaults to the service name.
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// Seconds to wait for a connection before failing.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/postgres"),
            schema: None,
            max_connections: 10,
            connect_timeout_secs: 10,
        }
    }
}

impl DatabaseConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        let url = self.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push(
                "database.url must start with postgres:// (SPOKE_DATABASE__URL or DATABASE_URL)"
                    .into(),
            );
        }
        if let Some(schema) = &self.schema
            && !is_identifier(schema)
        {
            problems.push(format!(
                "database.schema {schema:?} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*) (SPOKE_DATABASE__SCHEMA)"
            ));
        }
        if self.max_connections == 0 {
            problems.push(
                "database.max_connections must be > 0 (SPOKE_DATABASE__MAX_CONNECTIONS)".into(),
            );
        }
    }
}

/// True for names safe to splice into DDL (`CREATE SCHEMA name`).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

/// Kafka settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,...`); also read from `SPOKE_KAFKA_BOOTSTRAP`.
    pub bootstrap: String,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
    /// SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) when SASL is used.
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password.
    #[serde(serialize_with = "serialize_opt_secret")]
    pub sasl_password: Option<SecretString>,
    /// CA bundle for SSL.
    pub ssl_ca_location: Option<PathBuf>,
    /// Partitions of topics this service creates at start-up.
    pub topic_partitions: i32,
    /// Replication factor of topics this service creates at start-up.
    pub topic_replication: i32,
    /// Attempts of a failing message before it goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Create the topics this service uses at start-up (off for the dev broker, whose topics
    /// exist already and which does not implement CreateTopics).
    pub create_topics: bool,
    /// Extra librdkafka properties for producers and consumers.
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".into(),
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            topic_partitions: 6,
            topic_replication: 1,
            max_attempts: 5,
            create_topics: true,
            extra: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.bootstrap.trim().is_empty() {
            problems.push("kafka.bootstrap is empty (SPOKE_KAFKA_BOOTSTRAP)".into());
        }
        let proto = self.security_protocol.to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&proto.as_str()) {
            problems.push(format!(
                "kafka.security_protocol {:?} must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (SPOKE_KAFKA__SECURITY_PROTOCOL)",
                self.security_protocol
            ));
        }
        if proto.starts_with("SASL")
            && (self.sasl_mechanism.is_none()
                || self.sasl_username.is_none()
                || self.sasl_password.is_none())
        {
            problems.push(
                "kafka: SASL needs sasl_mechanism, sasl_username and sasl_password (SPOKE_KAFKA__SASL_*)"
                    .into(),
            );
        }
        if self.topic_partitions < 1 || self.topic_replication < 1 {
            problems.push("kafka.topic_partitions and kafka.topic_replication must be >= 1".into());
        }
        if self.max_attempts == 0 {
            problems.push("kafka.max_attempts must be >= 1 (SPOKE_KAFKA__MAX_ATTEMPTS)".into());
        }
    }

    /// librdkafka client properties shared by producers, consumers and the admin client.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut cfg = rdkafka::ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", &self.security_protocol);
        if let Some(m) = &self.sasl_mechanism {
            cfg.set("sasl.mechanisms", m);
        }
        if let Some(u) = &self.sasl_username {
            cfg.set("sasl.username", u);
        }
        if let Some(p) = &self.sasl_password {
            cfg.set("sasl.password", p.expose_secret());
        }
        if let Some(ca) = &self.ssl_ca_location {
            cfg.set("ssl.ca.location", ca.display().to_string());
        }
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }
}

/// JWT settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HS256 shared secret (development). At least 32 bytes.
    #[serde(serialize_with = "serialize_opt_secret")]
    pub hs256_secret: Option<SecretString>,
    /// RS256 public keys (PEM files) accepted for verification (production; rotate by listing two).
    pub rs256_public_key_paths: Vec<PathBuf>,
    /// RS256 private key (PEM file) used to mint service tokens for calls to other services.
    pub rs256_private_key_path: Option<PathBuf>,
    /// Expected `iss` claim, if set.
    pub issuer: Option<String>,
    /// Expected `aud` claim, if set.
    pub audience: Option<String>,
    /// Lifetime of service tokens this service mints, in seconds.
    pub service_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_paths: Vec::new(),
            rs256_private_key_path: None,
            issuer: None,
            audience: None,
            service_token_ttl_secs: 300,
        }
    }
}

impl AuthConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        match &self.hs256_secret {
            Some(s) if s.expose_secret().len() < 32 => problems.push(
                "auth.hs256_secret must be at least 32 bytes (SPOKE_AUTH__HS256_SECRET)".into(),
            ),
            None if self.rs256_public_key_paths.is_empty() => problems.push(
                "auth: no JWT verification key: set auth.hs256_secret (SPOKE_AUTH__HS256_SECRET) for development or auth.rs256_public_key_paths for production"
                    .into(),
            ),
            _ => {}
        }
        for p in &self.rs256_public_key_paths {
            if !p.exists() {
                problems.push(format!(
                    "auth.rs256_public_key_paths: {} does not exist",
                    p.display()
                ));
            }
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (development).
    Pretty,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directive, e.g. `info,spoke_export=debug`.
    pub log_filter: String,
    /// OTLP gRPC endpoint (e.g. `http://otel-collector:4317`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            otlp_endpoint: None,
        }
    }
}

impl TelemetryConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!(
                "telemetry.log_filter {:?} is not a valid filter: {e} (SPOKE_TELEMETRY__LOG_FILTER)",
                self.log_filter
            ));
        }
        if let Some(ep) = &self.otlp_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.otlp_endpoint {ep:?} must be an http(s) URL (SPOKE_TELEMETRY__OTLP_ENDPOINT)"
            ));
        }
    }
}

/// Serializes a secret's value. Settings are serialized only to seed the config layers with
/// their defaults, which must round-trip; `Debug` (what logs see) stays redacted.
pub fn serialize_secret<S: serde::Serializer>(
    s: &SecretString,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    // Defaults are serialized into figment only to be read back; they must round-trip.
    ser.serialize_str(s.expose_secret())
}

/// [`serialize_secret`] for optional secrets.
pub fn serialize_opt_secret<S: serde::Serializer>(
    s: &Option<SecretString>,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// [`serialize_secret`] for maps of secrets (e.g. previous keys by id).
pub fn serialize_secret_map<S: serde::Serializer>(
    m: &BTreeMap<String, SecretString>,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = ser.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        map.serialize_entry(k, v.expose_secret())?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct TestConfig {
        #[serde(flatten)]
        common: CommonConfig,
        batch_size: u32,
    }

    impl Validate for TestConfig {
        fn validate(&self, problems: &mut Vec<String>) {
            self.common.validate(problems);
            if self.batch_size > 500 {
                problems.push("batch_size must be <= 500 (SPOKE_BATCH_SIZE)".into());
            }
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let cfg: TestConfig =
            load_from(None, env(&[("SPOKE_AUTH__HS256_SECRET", SECRET)])).unwrap();
        assert_eq!(cfg.common.grpc.port, 50051);
        assert_eq!(cfg.common.admin.port, 9090);
        assert_eq!(cfg.common.kafka.bootstrap, "127.0.0.1:9092");
        assert_eq!(cfg.batch_size, 0);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spoke.toml");
        std::fs::write(
            &path,
            "batch_size = 100\n[grpc]\nport = 6000\n[admin]\nport = 6001\n[kafka]\nbootstrap = \"file:9092\"\n",
        )
        .unwrap();
        let cfg: TestConfig = load_from(
            Some(&path),
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", SECRET),
                ("SPOKE_GRPC__PORT", "7000"),
                ("SPOKE_BATCH_SIZE", "200"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.common.grpc.port, 7000, "env wins over file");
        assert_eq!(cfg.common.admin.port, 6001, "file wins over default");
        assert_eq!(cfg.common.kafka.bootstrap, "file:9092");
        assert_eq!(cfg.batch_size, 200, "top-level keys come from env too");
    }

    #[test]
    fn well_known_aliases_are_honoured_and_explicit_form_wins() {
        let cfg: TestConfig = load_from(
            None,
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", SECRET),
                ("DATABASE_URL", "postgres://alias@db/x"),
                ("SPOKE_KAFKA_BOOTSTRAP", "broker:1234"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.common.database.url.expose_secret(),
            "postgres://alias@db/x"
        );
        assert_eq!(cfg.common.kafka.bootstrap, "broker:1234");

        let cfg: TestConfig = load_from(
            None,
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", SECRET),
                ("DATABASE_URL", "postgres://alias@db/x"),
                ("SPOKE_DATABASE__URL", "postgres://explicit@db/x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.common.database.url.expose_secret(),
            "postgres://explicit@db/x"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_env_var() {
        let err = load_from::<TestConfig, _>(
            None,
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", "short"),
                ("SPOKE_DATABASE__URL", "mysql://x"),
                ("SPOKE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
                ("SPOKE_DATABASE__SCHEMA", "Bad-Name"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "SPOKE_AUTH__HS256_SECRET",
            "SPOKE_DATABASE__URL",
            "SASL needs",
            "SPOKE_DATABASE__SCHEMA",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn service_specific_validation_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "batch_size = 1000\n").unwrap();
        let err =
            load_from::<TestConfig, _>(Some(&path), env(&[("SPOKE_AUTH__HS256_SECRET", SECRET)]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("batch_size must be <= 500"), "{err}");
    }

    #[test]
    fn type_errors_name_the_key_and_variable() {
        let err = load_from::<TestConfig, _>(
            None,
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", SECRET),
                ("SPOKE_GRPC__PORT", "not-a-port"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("grpc.port"), "{err}");
        assert!(err.contains("SPOKE_GRPC__PORT"), "{err}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = load_from::<TestConfig, _>(
            Some(Path::new("/nonexistent/spoke.toml")),
            env(&[("SPOKE_AUTH__HS256_SECRET", SECRET)]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let cfg: TestConfig =
            load_from(None, env(&[("SPOKE_AUTH__HS256_SECRET", SECRET)])).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains(SECRET), "secret leaked in Debug: {dbg}");
    }

    #[test]
    fn secret_values_that_look_like_numbers_or_lists_stay_strings() {
        let digits = "12345678901234567890123456789012345";
        let cfg: TestConfig = load_from(
            None,
            env(&[
                ("SPOKE_AUTH__HS256_SECRET", digits),
                ("SPOKE_KAFKA__SASL_PASSWORD", "[abc]"),
                ("SPOKE_KAFKA__SASL_USERNAME", "123456"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.common.kafka.sasl_username.as_deref(), Some("123456"));
        assert_eq!(
            cfg.common
                .auth
                .hs256_secret
                .as_ref()
                .unwrap()
                .expose_secret(),
            digits
        );
        assert_eq!(
            cfg.common
                .kafka
                .sasl_password
                .as_ref()
                .unwrap()
                .expose_secret(),
            "[abc]"
        );
    }

    #[test]
    fn identifiers() {
        for (s, ok) in [
            ("export", true),
            ("_x1", true),
            ("Export", false),
            ("1x", false),
            ("a-b", false),
            ("", false),
        ] {
            assert_eq!(is_identifier(s), ok, "{s}");
        }
    }
}
