//! OAuth: authorize URL, code exchange, refresh, introspection and revocation (v3 token endpoints),
//! plus an in-memory refreshing [`TokenSource`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::client::{HubSpotClient, Request, decode};
use crate::endpoints;
use crate::error::{Error, Result};
use crate::token::{TokenSource, same_secret};

/// An app's OAuth client credentials.
#[derive(Clone)]
pub struct OAuthCredentials {
    /// Client id (public).
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
}

impl std::fmt::Debug for OAuthCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Tokens returned by the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    /// Access token (lives `expires_in` seconds, 1800 for HubSpot).
    pub access_token: SecretString,
    /// Refresh token.
    pub refresh_token: SecretString,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// Usually `bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Portal id, when the endpoint includes it.
    #[serde(default)]
    pub hub_id: Option<u64>,
    /// User id, when included.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Granted scopes, when included.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Which kind of token is being introspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// An access token.
    AccessToken,
    /// A refresh token.
    RefreshToken,
}

impl TokenTypeHint {
    fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }
}

/// Token metadata from introspection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    /// Whether the token is valid.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Portal id.
    #[serde(default)]
    pub hub_id: Option<u64>,
    /// Installing user's id.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Installing user's e-mail.
    #[serde(default)]
    pub user: Option<String>,
    /// Portal domain.
    #[serde(default)]
    pub hub_domain: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Seconds until expiry (access tokens).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// App id.
    #[serde(default)]
    pub app_id: Option<u64>,
    /// Client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Token type.
    #[serde(default)]
    pub token_type: Option<String>,
}

fn default_true() -> bool {
    true
}

impl HubSpotClient {
    /// The consent page URL the user is sent to (`{app}/oauth/authorize?...`).
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scopes: &[&str],
        optional_scopes: &[&str],
        state: &str,
    ) -> Url {
        let mut url = self.app_base_url().clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(["oauth", "authorize"]);
        }
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", client_id);
            q.append_pair("redirect_uri", redirect_uri);
            q.append_pair("scope", &scopes.join(" "));
            if !optional_scopes.is_empty() {
                q.append_pair("optional_scope", &optional_scopes.join(" "));
            }
            q.append_pair("state", state);
        }
        url
    }

    async fn token_call(&self, fields: &[(&str, &str)]) -> Result<TokenSet> {
        let req = Request::new(&endpoints::OAUTH_TOKEN, &[]).form(fields);
        let resp = self.execute(&req, None).await?;
        decode(endpoints::OAUTH_TOKEN.operation, &resp.body)
    }

    /// Exchanges the authorization code from the redirect for tokens.
    pub async fn exchange_code(
        &self,
        credentials: &OAuthCredentials,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet> {
        self.token_call(&[
            ("grant_type", "authorization_code"),
            ("client_id", &credentials.client_id),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("code", code),
        ])
        .await
    }

    /// Gets a new access token with a refresh token. A revoked or unknown refresh token yields an
    /// error for which [`Error::is_reauth_required`] is true.
    pub async fn refresh_access_token(
        &self,
        credentials: &OAuthCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet> {
        self.token_call(&[
            ("grant_type", "refresh_token"),
            ("client_id", &credentials.client_id),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ])
        .await
    }

    /// Reads token metadata (hub id, user, scopes, expiry).
    pub async fn introspect(
        &self,
        credentials: &OAuthCredentials,
        token: &SecretString,
        hint: TokenTypeHint,
    ) -> Result<TokenInfo> {
        let req = Request::new(&endpoints::OAUTH_INTROSPECT, &[]).form(&[
            ("client_id", &credentials.client_id),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("token", token.expose_secret()),
            ("token_type_hint", hint.as_str()),
        ]);
        let resp = self.execute(&req, None).await?;
        decode(endpoints::OAUTH_INTROSPECT.operation, &resp.body)
    }

    /// Revokes a refresh token (on disconnect).
    pub async fn revoke_refresh_token(
        &self,
        credentials: &OAuthCredentials,
        refresh_token: &SecretString,
    ) -> Result<()> {
        let req = Request::new(&endpoints::OAUTH_REVOKE, &[]).form(&[
            ("client_id", &credentials.client_id),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("token", refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ]);
        self.execute(&req, None).await.map(|_| ())
    }
}

/// A [`TokenSource`] holding tokens in memory and refreshing them itself, single-flight.
///
/// For services that own their tokens in-process (tools, tests). The connection service persists
/// tokens and implements its own source; other services ask it over gRPC.
pub struct OAuthTokenSource {
    client: HubSpotClient,
    credentials: OAuthCredentials,
    state: tokio::sync::Mutex<Tokens>,
    refresh_margin: Duration,
}

struct Tokens {
    access: SecretString,
    refresh: SecretString,
    expires_at: Instant,
}

impl std::fmt::Debug for OAuthTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokenSource")
            .field("client_id", &self.credentials.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuthTokenSource {
    /// Starts from a token set (e.g. right after [`HubSpotClient::exchange_code`]).
    pub fn new(client: HubSpotClient, credentials: OAuthCredentials, tokens: TokenSet) -> Self {
        Self {
            client,
            credentials,
            state: tokio::sync::Mutex::new(Tokens {
                access: tokens.access_token,
                refresh: tokens.refresh_token,
                expires_at: Instant::now() + Duration::from_secs(tokens.expires_in),
            }),
            refresh_margin: Duration::from_secs(60),
        }
    }

    /// Refreshes this long before expiry instead of waiting for a 401 (default 60 s).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The current refresh token (HubSpot may rotate it on refresh).
    pub async fn refresh_token(&self) -> SecretString {
        self.state.lock().await.refresh.clone()
    }

    async fn do_refresh(&self, tokens: &mut Tokens) -> Result<SecretString> {
        let set = self
            .client
            .refresh_access_token(&self.credentials, &tokens.refresh)
            .await
            .map_err(|e| {
                if e.is_reauth_required() {
                    Error::Token {
                        message: format!("refresh token rejected by HubSpot: {e}"),
                        reauth_required: true,
                    }
                } else {
                    e
                }
            })?;
        tokens.access = set.access_token;
        tokens.refresh = set.refresh_token;
        tokens.expires_at = Instant::now() + Duration::from_secs(set.expires_in);
        Ok(tokens.access.clone())
    }
}

#[async_trait]
impl TokenSource for OAuthTokenSource {
    async fn access_token(&self) -> Result<SecretString> {
        let mut tokens = self.state.lock().await;
        if Instant::now() + self.refresh_margin >= tokens.expires_at {
            return self.do_refresh(&mut tokens).await;
        }
        Ok(tokens.access.clone())
    }

    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString> {
        // The lock makes refresh single-flight; whoever waited finds the token already replaced.
        let mut tokens = self.state.lock().await;
        if !same_secret(&tokens.access, rejected) {
            return Ok(tokens.access.clone());
        }
        self.do_refresh(&mut tokens).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    #[test]
    fn authorize_url_carries_scopes_and_state() {
        let client = HubSpotClient::new(ClientConfig {
            app_base_url: "http://127.0.0.1:9000".into(),
            ..ClientConfig::default()
        })
        .unwrap();
        let url = client.authorize_url(
            "cid",
            "https://spoke.example/oauth/callback",
            &["oauth", "crm.objects.contacts.read"],
            &["crm.objects.deals.read"],
            "st&ate",
        );
        assert_eq!(url.path(), "/oauth/authorize");
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            q,
            vec![
                ("client_id".into(), "cid".into()),
                (
                    "redirect_uri".into(),
                    "https://spoke.example/oauth/callback".into()
                ),
                ("scope".into(), "oauth crm.objects.contacts.read".into()),
                ("optional_scope".into(), "crm.objects.deals.read".into()),
                ("state".into(), "st&ate".into()),
            ]
        );
        let plain = client.authorize_url("cid", "r", &["oauth"], &[], "s");
        assert!(!plain.as_str().contains("optional_scope"));
    }

    #[test]
    fn token_set_debug_hides_tokens() {
        let t: TokenSet = serde_json::from_str(
            r#"{"access_token":"at-123","refresh_token":"rt-456","expires_in":1800,"token_type":"bearer"}"#,
        )
        .unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("at-123") && !dbg.contains("rt-456"), "{dbg}");
        let c = OAuthCredentials {
            client_id: "cid".into(),
            client_secret: SecretString::from("topsecret"),
        };
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
