//! A [`spoke_hubspot::TokenSource`] backed by `GetAccessToken`, cached until shortly before expiry.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use spoke_proto::connection::v1 as pb;

use crate::client::ConnectionClient;

/// Asking for this much remaining validity makes the connection service refresh a token unless it
/// was just refreshed (the proto's maximum).
const FORCE_MIN_VALIDITY: Duration = Duration::from_secs(25 * 60);
/// Re-ask this long before expiry at most (shorter for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Access tokens of one org's (or one user's) HubSpot connection, fetched from the connection service.
pub struct ServiceTokenSource {
    client: ConnectionClient,
    org: String,
    user_id: String,
    // An async mutex makes concurrent callers of one org wait for one fetch instead of each asking.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    reuse_until: Instant,
}

impl std::fmt::Debug for ServiceTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenSource")
            .field("org", &self.org)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenSource {
    pub(crate) fn new(client: ConnectionClient, org: &str, user_id: &str) -> Self {
        Self {
            client,
            org: org.to_owned(),
            user_id: user_id.to_owned(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn fetch(&self, min_validity: Option<Duration>) -> crate::Result<Cached> {
        let req = self.client.request(
            &self.org,
            pb::GetAccessTokenRequest {
                user_id: self.user_id.clone(),
                min_validity: min_validity.map(|d| prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            },
        )?;
        let resp = self.client.grpc().get_access_token(req).await?.into_inner();
        if resp.portal_id > 0 {
            self.client
                .inner
                .portal_orgs
                .write()
                .insert(resp.portal_id as u64, self.org.clone());
        }
        let remaining = resp
            .expires_at
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
            .unwrap_or_default();
        let margin = REFRESH_MARGIN.min(remaining / 2);
        Ok(Cached {
            token: SecretString::from(resp.access_token),
            reuse_until: Instant::now() + remaining.saturating_sub(margin),
        })
    }
}

#[async_trait]
impl spoke_hubspot::TokenSource for ServiceTokenSource {
    async fn access_token(&self) -> spoke_hubspot::Result<SecretString> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.reuse_until
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(None).await.map_err(spoke_hubspot::Error::from)?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn refresh(&self, rejected: &SecretString) -> spoke_hubspot::Result<SecretString> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.token.expose_secret() != rejected.expose_secret()
            && Instant::now() < c.reuse_until
        {
            // Another caller already replaced the rejected token.
            return Ok(c.token.clone());
        }
        let fresh = self
            .fetch(Some(FORCE_MIN_VALIDITY))
            .await
            .map_err(spoke_hubspot::Error::from)?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }
}
