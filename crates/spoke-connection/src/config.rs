//! Settings of the connection service.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use spoke_connection_client::HubSpotSettings;
use spoke_platform::config::{CommonConfig, Validate, env_var_name};

/// Typed settings, layered defaults < file < `SPOKE_*` environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Settings every service shares (gRPC, admin, database, Kafka, auth, telemetry).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// The HubSpot app (`[hubspot]`).
    pub hubspot: HubSpotAppConfig,
    /// Token encryption and OAuth state signing (`[tokens]`).
    pub tokens: TokensConfig,
    /// The public OAuth callback listener (`[callback]`).
    pub callback: CallbackConfig,
    /// Portal budget limits (`[budget]`).
    pub budget: BudgetConfig,
}

impl Default for Config {
    fn default() -> Self {
        let mut common = CommonConfig::default();
        // Distinct default ports let the whole stack run on one host without configuration.
        common.grpc.port = 50051;
        common.admin.port = 9101;
        Self {
            common,
            hubspot: HubSpotAppConfig::default(),
            tokens: TokensConfig::default(),
            callback: CallbackConfig::default(),
            budget: BudgetConfig::default(),
        }
    }
}

/// `[hubspot]`: where HubSpot is and the OAuth app Spoke connects as.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HubSpotAppConfig {
    /// API and app base URLs (shared with the other services).
    #[serde(flatten)]
    pub urls: HubSpotSettings,
    /// OAuth client id (`SPOKE_HUBSPOT__CLIENT_ID`).
    pub client_id: String,
    /// OAuth client secret (`SPOKE_HUBSPOT__CLIENT_SECRET`).
    #[serde(serialize_with = "spoke_platform::config::serialize_secret")]
    pub client_secret: SecretString,
    /// Redirect URI registered with the app; empty: `http://<callback address>/oauth/callback`.
    pub redirect_uri: String,
    /// Required scopes.
    pub scopes: Vec<String>,
    /// Optional scopes.
    pub optional_scopes: Vec<String>,
}

impl Default for HubSpotAppConfig {
    fn default() -> Self {
        Self {
            urls: HubSpotSettings::default(),
            client_id: "sandbox-client-id".into(),
            client_secret: SecretString::from("sandbox-client-secret"),
            redirect_uri: String::new(),
            scopes: [
                "oauth",
                "crm.objects.companies.read",
                "crm.objects.companies.write",
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.objects.owners.read",
                "settings.users.read",
            ]
            .map(String::from)
            .to_vec(),
            optional_scopes: ["crm.objects.deals.read"].map(String::from).to_vec(),
        }
    }
}

/// `[tokens]`: encryption of HubSpot tokens at rest and signing of OAuth states.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TokensConfig {
    /// Base64 of 32 random bytes (`SPOKE_TOKENS__ENCRYPTION_KEY`). Unset: a random key per process
    /// (development only: stored tokens become unreadable after a restart).
    #[serde(serialize_with = "spoke_platform::config::serialize_opt_secret")]
    pub encryption_key: Option<SecretString>,
    /// Id of the current key, stored with every ciphertext.
    pub key_id: String,
    /// Older keys by id (base64 of 32 bytes): still decrypt, re-encrypted with the current key on use.
    #[serde(serialize_with = "spoke_platform::config::serialize_secret_map")]
    pub previous_keys: BTreeMap<String, SecretString>,
    /// HMAC key for OAuth states; unset: derived from the encryption key.
    #[serde(serialize_with = "spoke_platform::config::serialize_opt_secret")]
    pub state_signing_key: Option<SecretString>,
    /// Lifetime of an OAuth state (seconds).
    pub state_ttl_secs: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            encryption_key: None,
            key_id: "k1".into(),
            previous_keys: BTreeMap::new(),
            state_signing_key: None,
            state_ttl_secs: 600,
        }
    }
}

/// `[callback]`: the public HTTP listener serving `GET /oauth/callback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Allowed prefixes of `return_url`; an empty return_url is always allowed.
    pub allowed_return_urls: Vec<String>,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8181,
            allowed_return_urls: Vec::new(),
        }
    }
}

impl CallbackConfig {
    /// The bind address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// `[budget]`: per-portal HubSpot call allowance enforced by `AcquireBudget`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetConfig {
    /// Standard calls per rolling 10 s (OAuth apps: 110).
    pub standard_per_10s: u32,
    /// Search calls per second (5).
    pub search_per_second: u32,
    /// Overrides of `standard_per_10s` by plan (`free`, `starter`, `professional`, `enterprise`).
    pub standard_per_10s_by_plan: BTreeMap<String, u32>,
    /// How long leased permits stay usable (ms).
    pub lease_ms: u64,
    /// Extra margin added to every window for clock and network delays (ms).
    pub safety_margin_ms: u64,
    /// Pause after a reported 429 without Retry-After (ms).
    pub throttle_pause_ms: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            standard_per_10s: 110,
            search_per_second: 5,
            standard_per_10s_by_plan: BTreeMap::new(),
            lease_ms: 250,
            safety_margin_ms: 100,
            throttle_pause_ms: 2000,
        }
    }
}

/// Decodes a base64 AES-256 key.
pub(crate) fn decode_key(value: &SecretString) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.expose_secret().trim())
        .ok()?;
    bytes.try_into().ok()
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.common.validate(problems);
        self.hubspot.urls.validate(problems);
        if self.hubspot.client_id.trim().is_empty() {
            problems.push(format!(
                "hubspot.client_id is empty (set {})",
                env_var_name("hubspot.client_id")
            ));
        }
        if self.hubspot.client_secret.expose_secret().is_empty() {
            problems.push(format!(
                "hubspot.client_secret is empty (set {})",
                env_var_name("hubspot.client_secret")
            ));
        }
        let uri = &self.hubspot.redirect_uri;
        if !(uri.is_empty() || uri.starts_with("http://") || uri.starts_with("https://")) {
            problems.push(format!(
                "hubspot.redirect_uri must be an http(s) URL (set {})",
                env_var_name("hubspot.redirect_uri")
            ));
        }
        if let Some(k) = &self.tokens.encryption_key
            && decode_key(k).is_none()
        {
            problems.push(format!(
                "tokens.encryption_key must be base64 of exactly 32 bytes (set {})",
                env_var_name("tokens.encryption_key")
            ));
        }
        for (id, k) in &self.tokens.previous_keys {
            if decode_key(k).is_none() {
                problems.push(format!(
                    "tokens.previous_keys.{id} must be base64 of exactly 32 bytes"
                ));
            }
            if *id == self.tokens.key_id {
                problems.push(format!(
                    "tokens.previous_keys.{id} reuses the current tokens.key_id; give the new key a new id"
                ));
            }
        }
        if self.tokens.key_id.trim().is_empty() {
            problems.push(format!(
                "tokens.key_id is empty (set {})",
                env_var_name("tokens.key_id")
            ));
        }
        if self.tokens.state_ttl_secs == 0 {
            problems.push("tokens.state_ttl_secs must be > 0".into());
        }
        if self.budget.standard_per_10s == 0 || self.budget.search_per_second == 0 {
            problems.push(format!(
                "budget.standard_per_10s and budget.search_per_second must be > 0 (set {})",
                env_var_name("budget.standard_per_10s")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_env_var() {
        let mut cfg = Config::default();
        cfg.common.database.url = SecretString::from("postgres://x/y");
        cfg.tokens.encryption_key = Some(SecretString::from("dG9vIHNob3J0"));
        cfg.hubspot.client_id = String::new();
        cfg.budget.search_per_second = 0;
        let mut problems = Vec::new();
        cfg.validate(&mut problems);
        let all = problems.join("\n");
        assert!(all.contains("SPOKE_TOKENS__ENCRYPTION_KEY"), "{all}");
        assert!(all.contains("SPOKE_HUBSPOT__CLIENT_ID"), "{all}");
        assert!(all.contains("budget.search_per_second"), "{all}");
        // Serialization carries secrets (it only seeds the config layers); Debug, what logs
        // see, never does.
        let debug = format!(
            "{:?}",
            Config {
                tokens: TokensConfig {
                    encryption_key: Some(SecretString::from("c2VjcmV0LWtleQ==")),
                    ..TokensConfig::default()
                },
                ..Config::default()
            }
        );
        assert!(!debug.contains("c2VjcmV0LWtleQ") && !debug.contains("sandbox-client-secret"));
    }
}

#[cfg(test)]
mod defaults_tests {
    use secrecy::ExposeSecret;

    #[test]
    fn secret_defaults_survive_the_config_layers() {
        let env = [(
            "SPOKE_AUTH__HS256_SECRET".to_string(),
            spoke_platform::testing::DEV_JWT_SECRET.to_string(),
        )];
        let cfg: super::Config = spoke_platform::config::load_from(None, env).unwrap();
        assert_eq!(
            cfg.hubspot.client_secret.expose_secret(),
            "sandbox-client-secret"
        );
        assert!(
            !format!("{cfg:?}").contains("sandbox-client-secret"),
            "Debug must not show secrets"
        );
    }
}
