//! Sandbox settings.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::seed::Seed;

/// How the sandbox starts.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Listen address (default 127.0.0.1).
    pub host: IpAddr,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// The OAuth app the sandbox accepts.
    pub oauth: OAuthApp,
    /// Lifetime of access tokens (default 1800 s, as HubSpot).
    pub token_ttl: Duration,
    /// Delay before a write becomes visible to search (default 0).
    pub search_lag: Duration,
    /// Rate limits applied to portals created from now on (default: disabled).
    pub rate_limits: RateLimits,
    /// Entries kept in the request log ring buffer.
    pub request_log_capacity: usize,
    /// Seed of the fault-injection RNG, so probabilistic faults repeat across runs.
    pub fault_seed: u64,
    /// Portal `/oauth/authorize` consents to when the request names none (default: the lowest id).
    pub default_portal: Option<u64>,
    /// Data loaded at start and again on `reset`.
    pub seed: Seed,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            oauth: OAuthApp::default(),
            token_ttl: Duration::from_secs(1800),
            search_lag: Duration::ZERO,
            rate_limits: RateLimits::default(),
            request_log_capacity: 10_000,
            fault_seed: 42,
            default_portal: None,
            seed: Seed::default(),
        }
    }
}

/// The OAuth app credentials the token endpoints accept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthApp {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// App id reported by token metadata.
    pub app_id: u64,
}

impl Default for OAuthApp {
    fn default() -> Self {
        Self {
            client_id: "sandbox-client-id".into(),
            client_secret: "sandbox-client-secret".into(),
            app_id: 1_000_001,
        }
    }
}

/// Rate limits of one portal. `enabled: false` answers every call but still sends the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimits {
    /// Whether 429s are sent.
    pub enabled: bool,
    /// Calls per rolling interval (HubSpot: 110 per 10 s for OAuth apps).
    pub max_per_interval: u32,
    /// Rolling interval in milliseconds.
    pub interval_ms: u64,
    /// Search calls per second (HubSpot: 5).
    pub search_per_second: u32,
    /// Calls per day (`0` = no daily cap).
    pub daily: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: false,
            max_per_interval: 110,
            interval_ms: 10_000,
            search_per_second: 5,
            daily: 0,
        }
    }
}

impl RateLimits {
    /// Parses `110/10s`, `100/1s`, `500/500ms` into (max, interval ms).
    pub fn parse_rate(s: &str) -> Option<(u32, u64)> {
        let (n, per) = s.trim().split_once('/')?;
        let n = n.trim().parse().ok()?;
        let per = per.trim();
        let ms = if let Some(v) = per.strip_suffix("ms") {
            v.parse::<u64>().ok()?
        } else if let Some(v) = per.strip_suffix('s') {
            v.parse::<u64>().ok()? * 1000
        } else if let Some(v) = per.strip_suffix('m') {
            v.parse::<u64>().ok()? * 60_000
        } else {
            return None;
        };
        (ms > 0).then_some((n, ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let cases = [
            ("110/10s", Some((110, 10_000))),
            ("5/1s", Some((5, 1000))),
            ("500/250ms", Some((500, 250))),
            ("10/1m", Some((10, 60_000))),
            ("10/0s", None),
            ("ten/1s", None),
            ("10", None),
        ];
        for (input, want) in cases {
            assert_eq!(RateLimits::parse_rate(input), want, "{input}");
        }
    }
}
