//! Access tokens: decrypt, refresh single-flight per connection before expiry, and on a rejected
//! refresh token mark the connection REAUTH_REQUIRED with an event and a notification.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use spoke_connection_client::wire;
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::{self as ev, connection_event::Kind};
use tracing::Instrument;

use crate::crypto::Sealed;
use crate::domain::{Domain, emit, not_connected, ts};
use crate::error::{Error, Result};
use crate::store::{self, TokenRow, status};

/// The default remaining validity callers get (GetAccessToken without min_validity).
pub const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(5 * 60);
/// Asking for this much or more forces a refresh unless the token was issued moments ago.
pub const MAX_MIN_VALIDITY: Duration = Duration::from_secs(25 * 60);

/// A valid token and what it is for.
#[derive(Debug)]
pub struct AccessToken {
    /// The token.
    pub token: SecretString,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Portal.
    pub portal_id: i64,
    /// HubSpot user the token acts as.
    pub hubspot_user_id: String,
}

/// Encryption context binding a ciphertext to its row and kind.
pub(crate) fn context(org: &str, user: &str, kind: &str) -> String {
    format!("{org}|{user}|{kind}")
}

/// Whether a stored token must be refreshed for a caller needing `min_validity`.
///
/// Short-lived tokens (sandbox tests) would otherwise always look expiring: the need is capped at
/// half the token's lifetime. A forced refresh (`min_validity` ≥ 25 min) is skipped when the token was
/// issued after the caller started waiting, i.e. someone else just refreshed it.
pub fn needs_refresh(
    now: DateTime<Utc>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    min_validity: Duration,
    waited_since: DateTime<Utc>,
) -> bool {
    if issued_at >= waited_since {
        return false;
    }
    let lifetime = (expires_at - issued_at).to_std().unwrap_or_default();
    if min_validity >= MAX_MIN_VALIDITY {
        return true;
    }
    let need = min_validity.min(lifetime / 2);
    let left = (expires_at - now).to_std().unwrap_or_default();
    left <= need
}

impl Domain {
    /// Seals a token pair into a row (current key).
    pub(crate) fn seal_tokens(
        &self,
        row: &mut TokenRow,
        access: &SecretString,
        refresh: &SecretString,
    ) -> Result<()> {
        let a = self
            .cipher
            .seal(access, &context(&row.org_id, &row.user_id, "access"))?;
        let r = self
            .cipher
            .seal(refresh, &context(&row.org_id, &row.user_id, "refresh"))?;
        row.key_id = a.key_id;
        row.access_token_ct = a.bytes;
        row.refresh_token_ct = r.bytes;
        Ok(())
    }

    fn open(&self, row: &TokenRow, kind: &str, bytes: &[u8]) -> Result<SecretString> {
        self.cipher.open(
            &Sealed {
                key_id: row.key_id.clone(),
                bytes: bytes.to_vec(),
            },
            &context(&row.org_id, &row.user_id, kind),
        )
    }

    fn reauth_error(&self, org: &str, user: &str) -> Error {
        if user.is_empty() {
            Error::FailedPrecondition(format!(
                "{}: HubSpot rejected org {org}'s refresh token; the primary admin must reconnect (Change User or Disconnect + Connect)",
                wire::RECONNECT_REQUIRED
            ))
        } else {
            Error::FailedPrecondition(format!(
                "{}: HubSpot rejected user {user}'s refresh token; the user must connect their HubSpot account again",
                wire::RECONNECT_REQUIRED
            ))
        }
    }

    /// A valid access token for the org (user "" = service account), refreshing single-flight.
    pub async fn access_token(
        &self,
        org: &str,
        user: &str,
        min_validity: Duration,
    ) -> Result<AccessToken> {
        let started = Utc::now();
        let mut conn = self.pool.acquire().await?;
        let c = self.live_connection(&mut conn, org, false).await?;
        if c.status == status::REAUTH_REQUIRED && user.is_empty() {
            return Err(self.reauth_error(org, user));
        }
        let row = store::token(&mut conn, org, user, false).await?.ok_or_else(|| {
            if user.is_empty() {
                not_connected(org)
            } else {
                Error::FailedPrecondition(format!(
                    "{}: user {user} has not connected their own HubSpot account (user account mode)",
                    wire::USER_NOT_CONNECTED
                ))
            }
        })?;
        if row.status == status::REAUTH_REQUIRED {
            return Err(self.reauth_error(org, user));
        }
        drop(conn);
        if !needs_refresh(
            Utc::now(),
            row.issued_at,
            row.expires_at,
            min_validity,
            started,
        ) {
            return self.current(row).await;
        }
        // In-process single flight first (keeps waiting callers off the pool), then the row lock
        // for other replicas.
        let lock = self
            .refresh_locks
            .lock()
            .entry((org.to_owned(), user.to_owned()))
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let mut tx = self.begin().await?;
        let Some(row) = store::token(&mut tx, org, user, true).await? else {
            return Err(not_connected(org));
        };
        if row.status == status::REAUTH_REQUIRED {
            return Err(self.reauth_error(org, user));
        }
        if !needs_refresh(
            Utc::now(),
            row.issued_at,
            row.expires_at,
            min_validity,
            started,
        ) {
            tx.commit().await?;
            return self.current(row).await;
        }
        let refresh = self.open(&row, "refresh", &row.refresh_token_ct)?;
        let span = tracing::info_span!("connection.refresh_token", org, portal = row.portal_id);
        let result = self
            .hubspot
            .refresh_access_token(&self.credentials, &refresh)
            .instrument(span)
            .await;
        match result {
            Ok(set) => {
                let now = Utc::now();
                let mut new = row.clone();
                new.issued_at = now;
                new.expires_at = now + chrono::Duration::seconds(set.expires_in as i64);
                self.seal_tokens(&mut new, &set.access_token, &set.refresh_token)?;
                store::upsert_token(&mut tx, &new).await?;
                tx.commit().await?;
                metrics::counter!("spoke_connection_token_refreshes_total", "outcome" => "ok")
                    .increment(1);
                Ok(AccessToken {
                    token: set.access_token,
                    expires_at: new.expires_at,
                    portal_id: new.portal_id,
                    hubspot_user_id: new.hubspot_user_id,
                })
            }
            Err(e) if e.is_reauth_required() => {
                metrics::counter!("spoke_connection_token_refreshes_total", "outcome" => "revoked")
                    .increment(1);
                tracing::warn!(
                    org,
                    portal = row.portal_id,
                    user,
                    "HubSpot rejected the refresh token; connection needs re-authorisation"
                );
                self.mark_revoked(&mut tx, org, user, row.portal_id).await?;
                tx.commit().await?;
                self.update_reauth_gauge().await;
                Err(self.reauth_error(org, user))
            }
            Err(e) => {
                metrics::counter!("spoke_connection_token_refreshes_total", "outcome" => "error")
                    .increment(1);
                Err(Error::Unavailable(format!(
                    "refreshing the HubSpot token failed: {e}; retry with backoff"
                )))
            }
        }
    }

    async fn mark_revoked(
        &self,
        tx: &mut sqlx::PgConnection,
        org: &str,
        user: &str,
        portal: i64,
    ) -> Result<()> {
        let reason = format!(
            "HubSpot revoked the refresh token on {}; {} must reconnect",
            Utc::now().format("%Y-%m-%d"),
            if user.is_empty() {
                "the primary admin"
            } else {
                "the user"
            }
        );
        store::set_token_status(tx, org, user, status::REAUTH_REQUIRED).await?;
        if user.is_empty() {
            store::set_connection_status(tx, org, status::REAUTH_REQUIRED, &reason).await?;
        }
        emit(
            tx,
            org,
            portal,
            "",
            Kind::TokensRevoked(ev::connection_event::TokensRevoked {
                user_id: user.to_owned(),
                reason: reason.clone(),
            }),
        )
        .await?;
        let note = ev::Notification {
            org_id: org.to_owned(),
            recipients: Vec::new(),
            kind: ev::NotificationKind::ConnectionReauthRequired as i32,
            subject: "HubSpot connection needs to be re-authorised".into(),
            body: format!(
                "{reason}. Until then exports and filtering for HubSpot portal {portal} are paused."
            ),
            links: Vec::new(),
            occurred_at: Some(ts(Utc::now())),
            subject_id: format!("connection:{org}:{user}"),
        };
        Outbox::enqueue(tx, topics::NOTIFICATIONS, org, &note).await?;
        Ok(())
    }

    async fn current(&self, row: TokenRow) -> Result<AccessToken> {
        let token = self.open(&row, "access", &row.access_token_ct)?;
        if row.key_id != self.cipher.current_key_id() {
            // Lazy rotation: re-encrypt with the current key the first time an old row is used.
            let refresh = self.open(&row, "refresh", &row.refresh_token_ct)?;
            let mut new = row.clone();
            self.seal_tokens(&mut new, &token, &refresh)?;
            let mut conn = self.pool.acquire().await?;
            store::upsert_token(&mut conn, &new).await?;
        }
        Ok(AccessToken {
            token,
            expires_at: row.expires_at,
            portal_id: row.portal_id,
            hubspot_user_id: row.hubspot_user_id,
        })
    }

    /// Sets the REAUTH_REQUIRED gauge from the database (all replicas agree).
    pub(crate) async fn update_reauth_gauge(&self) {
        if let Ok(n) = store::count_reauth_required(&self.pool).await {
            metrics::gauge!("spoke_connection_reauth_required").set(n as f64);
        }
    }
}

/// The connection service's own token source for its HubSpot calls (owners, users).
pub(crate) struct OwnTokenSource {
    pub(crate) domain: Arc<Domain>,
    pub(crate) org: String,
}

fn to_hubspot(e: Error) -> spoke_hubspot::Error {
    let reauth =
        matches!(&e, Error::FailedPrecondition(m) if m.starts_with(wire::RECONNECT_REQUIRED));
    spoke_hubspot::Error::Token {
        message: e.to_string(),
        reauth_required: reauth,
    }
}

#[async_trait]
impl spoke_hubspot::TokenSource for OwnTokenSource {
    async fn access_token(&self) -> spoke_hubspot::Result<SecretString> {
        self.domain
            .access_token(&self.org, "", DEFAULT_MIN_VALIDITY)
            .await
            .map(|t| t.token)
            .map_err(to_hubspot)
    }

    async fn refresh(&self, _rejected: &SecretString) -> spoke_hubspot::Result<SecretString> {
        self.domain
            .access_token(&self.org, "", MAX_MIN_VALIDITY)
            .await
            .map(|t| t.token)
            .map_err(to_hubspot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_rule() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let min5 = DEFAULT_MIN_VALIDITY;
        // (now, issued, expires, min_validity, waited_since, refresh?)
        let cases = [
            (s(0), s(0), s(1800), min5, s(1), false), // fresh 30-min token
            (s(1600), s(0), s(1800), min5, s(1601), true), // 200 s left < 5 min
            (s(1400), s(0), s(1800), min5, s(1401), false), // 400 s left
            (s(1), s(0), s(4), min5, s(2), false),    // 4 s token, 3 s left > half life
            (s(3), s(0), s(4), min5, s(4), true),     // 1 s left
            (s(10), s(0), s(1800), MAX_MIN_VALIDITY, s(11), true), // forced
            (s(10), s(5), s(1800), MAX_MIN_VALIDITY, s(4), false), // refreshed while waiting
        ];
        for (i, (now, issued, exp, min, since, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                needs_refresh(now, issued, exp, min, since),
                want,
                "case {i}"
            );
        }
    }
}
