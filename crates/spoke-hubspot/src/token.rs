//! Where a portal handle gets its bearer token from, and how it asks for a fresh one.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// Supplies access tokens for one portal.
///
/// The client calls [`TokenSource::access_token`] before each request and, when HubSpot answers
/// 401 (`EXPIRED_AUTHENTICATION`, or `INVALID_AUTHENTICATION` for a revoked authorisation), calls
/// [`TokenSource::refresh`] exactly once with the rejected token
/// and retries with the result. Implementations should be single-flight: when several requests see the
/// same expired token, one refresh serves them all (compare `rejected` with the current token).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The current access token.
    async fn access_token(&self) -> Result<SecretString>;
    /// A token newer than `rejected`, refreshing it if nobody else has yet.
    async fn refresh(&self, rejected: &SecretString) -> Result<SecretString>;
}

/// A fixed token (private apps, tests). It cannot be refreshed.
#[derive(Clone)]
pub struct StaticToken(SecretString);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken([REDACTED])")
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<SecretString> {
        Ok(self.0.clone())
    }

    async fn refresh(&self, _rejected: &SecretString) -> Result<SecretString> {
        Err(Error::Token {
            message:
                "the static access token expired and cannot be refreshed; configure a new token"
                    .into(),
            reauth_required: true,
        })
    }
}

/// Compares two secrets without exposing them outside this function.
pub(crate) fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_token_never_prints_and_cannot_refresh() {
        let t = StaticToken::new("pat-na1-secret");
        assert!(!format!("{t:?}").contains("secret"));
        let got = t.access_token().await.unwrap();
        assert_eq!(got.expose_secret(), "pat-na1-secret");
        assert!(!format!("{got:?}").contains("pat-na1"));
        let err = t.refresh(&got).await.unwrap_err();
        assert!(err.is_reauth_required());
        assert!(!err.to_string().contains("pat-na1"));
    }
}
