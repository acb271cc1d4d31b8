//! The `[hubspot]` and `[connection]` config sections every HubSpot-calling service embeds.

use serde::{Deserialize, Serialize};
use spoke_platform::config::env_var_name;

/// Where HubSpot is: `[hubspot]` `api_base_url`, `app_base_url`
/// (`SPOKE_HUBSPOT__API_BASE_URL`, `SPOKE_HUBSPOT__APP_BASE_URL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HubSpotSettings {
    /// API base URL (`https://api.hubapi.com`, or a sandbox's `http://127.0.0.1:PORT`).
    pub api_base_url: String,
    /// App base URL hosting the OAuth consent page (`https://app.hubspot.com`).
    pub app_base_url: String,
}

impl Default for HubSpotSettings {
    fn default() -> Self {
        Self {
            api_base_url: spoke_hubspot::DEFAULT_API_BASE.into(),
            app_base_url: spoke_hubspot::DEFAULT_APP_BASE.into(),
        }
    }
}

impl HubSpotSettings {
    /// Appends a message per invalid setting, naming its environment variable.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("hubspot.api_base_url", &self.api_base_url),
            ("hubspot.app_base_url", &self.app_base_url),
        ] {
            if !is_http_url(value) {
                problems.push(format!(
                    "{key} must be an http(s) URL, got {value:?} (set {})",
                    env_var_name(key)
                ));
            }
        }
    }

    /// A client config with these base URLs and the client's defaults otherwise.
    pub fn client_config(&self) -> spoke_hubspot::ClientConfig {
        spoke_hubspot::ClientConfig {
            api_base_url: self.api_base_url.clone(),
            app_base_url: self.app_base_url.clone(),
            ..spoke_hubspot::ClientConfig::default()
        }
    }
}

/// Where the connection service is: `[connection]` `endpoint` (`SPOKE_CONNECTION__ENDPOINT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionEndpoint {
    /// gRPC endpoint URI, default `http://127.0.0.1:50051`.
    pub endpoint: String,
}

impl Default for ConnectionEndpoint {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50051".into(),
        }
    }
}

impl ConnectionEndpoint {
    /// An endpoint at `addr` over plain HTTP/2 (tests start the service on port 0).
    pub fn for_addr(addr: std::net::SocketAddr) -> Self {
        Self {
            endpoint: format!("http://{addr}"),
        }
    }

    /// Appends a message when the endpoint is not an http(s) URI.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !is_http_url(&self.endpoint) {
            problems.push(format!(
                "connection.endpoint must be an http(s) URI, got {:?} (set {})",
                self.endpoint,
                env_var_name("connection.endpoint")
            ));
        }
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    matches!(rest, Some(host) if !host.is_empty() && !host.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated_with_env_names() {
        let cases = [
            ("http://127.0.0.1:8080", true),
            ("https://api.hubapi.com", true),
            ("api.hubapi.com", false),
            ("http://", false),
            ("", false),
        ];
        for (url, ok) in cases {
            let mut problems = Vec::new();
            HubSpotSettings {
                api_base_url: url.into(),
                ..HubSpotSettings::default()
            }
            .validate(&mut problems);
            assert_eq!(problems.is_empty(), ok, "{url}: {problems:?}");
            if !ok {
                assert!(
                    problems[0].contains("SPOKE_HUBSPOT__API_BASE_URL"),
                    "{problems:?}"
                );
            }
            let mut problems = Vec::new();
            ConnectionEndpoint {
                endpoint: url.into(),
            }
            .validate(&mut problems);
            assert_eq!(problems.is_empty(), ok, "{url}: {problems:?}");
        }
        let mut problems = Vec::new();
        HubSpotSettings::default().validate(&mut problems);
        ConnectionEndpoint::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
