//! OAuth state: authorization codes, access tokens (expiring), refresh tokens (revocable), private-app tokens.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

/// Who granted access to which portal, with which scopes.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Portal id.
    pub portal: u64,
    /// User id of the consenting user.
    pub user_id: u64,
    /// Email of the consenting user.
    pub user_email: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// OAuth client id.
    pub client_id: String,
}

/// The token pair HubSpot's token endpoint returns.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    /// Bearer token for API calls.
    pub access_token: String,
    /// Long-lived refresh token.
    pub refresh_token: String,
    /// Seconds until `access_token` expires.
    pub expires_in: i64,
    /// Always `bearer`.
    pub token_type: String,
}

#[derive(Debug)]
struct Code {
    grant: Arc<Grant>,
    redirect_uri: String,
    expires_ms: i64,
}

#[derive(Debug)]
struct Access {
    grant: Arc<Grant>,
    refresh: Option<String>,
    expires_ms: i64,
}

#[derive(Debug)]
struct Refresh {
    grant: Arc<Grant>,
    revoked: bool,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Unknown or revoked token.
    Invalid,
    /// Expired this many milliseconds ago.
    Expired(i64),
}

/// A bearer token accepted for a portal.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Portal id.
    pub portal: u64,
}

/// Token metadata as reported by introspection.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The grant.
    pub grant: Arc<Grant>,
    /// `access` or `refresh`.
    pub kind: &'static str,
    /// Expiry of an access token.
    pub expires_ms: Option<i64>,
}

/// Why a token request failed; maps to HubSpot's `status` codes of the token endpoint.
#[allow(clippy::enum_variant_names)] // the names mirror HubSpot's BAD_* codes
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// `BAD_AUTH_CODE`.
    BadAuthCode,
    /// `BAD_REDIRECT_URI`.
    BadRedirectUri,
    /// `BAD_REFRESH_TOKEN`.
    BadRefreshToken,
}

/// All tokens of the sandbox (they name their portal, so one store serves every portal).
#[derive(Debug, Default)]
pub struct TokenStore {
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    private: HashMap<String, u64>,
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

const CODE_TTL_MS: i64 = 10 * 60 * 1000;

impl TokenStore {
    /// Registers a private-app token of a portal.
    pub fn add_private(&mut self, token: &str, portal: u64) {
        self.private.insert(token.to_owned(), portal);
    }

    /// Forgets every token of a portal (when the portal is replaced or removed).
    pub fn forget_portal(&mut self, portal: u64) {
        self.codes.retain(|_, c| c.grant.portal != portal);
        self.access.retain(|_, a| a.grant.portal != portal);
        self.refresh.retain(|_, r| r.grant.portal != portal);
        self.private.retain(|_, p| *p != portal);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = TokenStore::default();
    }

    /// Issues a single-use authorization code.
    pub fn issue_code(&mut self, grant: Grant, redirect_uri: &str, now_ms: i64) -> String {
        let code = fresh("sbx-code-");
        self.codes.insert(
            code.clone(),
            Code {
                grant: Arc::new(grant),
                redirect_uri: redirect_uri.to_owned(),
                expires_ms: now_ms + CODE_TTL_MS,
            },
        );
        code
    }

    /// Issues a token pair directly (in-process shortcut for tests).
    pub fn issue_pair(&mut self, grant: Grant, ttl_ms: i64, now_ms: i64) -> TokenPair {
        let grant = Arc::new(grant);
        let refresh = fresh("sbx-rt-");
        self.refresh.insert(
            refresh.clone(),
            Refresh {
                grant: grant.clone(),
                revoked: false,
            },
        );
        self.new_access(grant, refresh, ttl_ms, now_ms)
    }

    fn new_access(
        &mut self,
        grant: Arc<Grant>,
        refresh: String,
        ttl_ms: i64,
        now_ms: i64,
    ) -> TokenPair {
        let access = fresh("sbx-at-");
        self.access.insert(
            access.clone(),
            Access {
                grant,
                refresh: Some(refresh.clone()),
                expires_ms: now_ms + ttl_ms,
            },
        );
        TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: ttl_ms / 1000,
            token_type: "bearer".into(),
        }
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(
        &mut self,
        code: &str,
        redirect_uri: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<TokenPair, TokenError> {
        let Some(c) = self.codes.get(code) else {
            return Err(TokenError::BadAuthCode);
        };
        if c.expires_ms < now_ms {
            self.codes.remove(code);
            return Err(TokenError::BadAuthCode);
        }
        if c.redirect_uri != redirect_uri {
            return Err(TokenError::BadRedirectUri);
        }
        let grant = self
            .codes
            .remove(code)
            .map(|c| c.grant)
            .ok_or(TokenError::BadAuthCode)?;
        let refresh = fresh("sbx-rt-");
        self.refresh.insert(
            refresh.clone(),
            Refresh {
                grant: grant.clone(),
                revoked: false,
            },
        );
        Ok(self.new_access(grant, refresh, ttl_ms, now_ms))
    }

    /// `grant_type=refresh_token`: a new access token, the same refresh token (as HubSpot does).
    pub fn refresh(
        &mut self,
        refresh: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<TokenPair, TokenError> {
        let grant = match self.refresh.get(refresh) {
            Some(r) if !r.revoked => r.grant.clone(),
            _ => return Err(TokenError::BadRefreshToken),
        };
        Ok(self.new_access(grant, refresh.to_owned(), ttl_ms, now_ms))
    }

    /// Checks a bearer token.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        now_ms: i64,
    ) -> Result<Authenticated, AuthFailure> {
        let token = token.ok_or(AuthFailure::Missing)?;
        if let Some(p) = self.private.get(token) {
            return Ok(Authenticated { portal: *p });
        }
        let a = self.access.get(token).ok_or(AuthFailure::Invalid)?;
        if a.refresh
            .as_ref()
            .and_then(|r| self.refresh.get(r))
            .is_some_and(|r| r.revoked)
        {
            return Err(AuthFailure::Invalid);
        }
        if a.expires_ms <= now_ms {
            return Err(AuthFailure::Expired(now_ms - a.expires_ms));
        }
        Ok(Authenticated {
            portal: a.grant.portal,
        })
    }

    /// Metadata of a live access or refresh token.
    pub fn info(&self, token: &str, now_ms: i64) -> Option<TokenInfo> {
        if let Some(a) = self.access.get(token) {
            let revoked = a
                .refresh
                .as_ref()
                .and_then(|r| self.refresh.get(r))
                .is_some_and(|r| r.revoked);
            return (a.expires_ms > now_ms && !revoked).then(|| TokenInfo {
                grant: a.grant.clone(),
                kind: "access",
                expires_ms: Some(a.expires_ms),
            });
        }
        self.refresh
            .get(token)
            .filter(|r| !r.revoked)
            .map(|r| TokenInfo {
                grant: r.grant.clone(),
                kind: "refresh",
                expires_ms: None,
            })
    }

    /// Revokes one refresh token (and the access tokens minted from it); returns whether it was live.
    pub fn revoke_refresh(&mut self, token: &str) -> bool {
        match self.refresh.get_mut(token) {
            Some(r) if !r.revoked => {
                r.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Revokes every refresh token of a portal (or of all portals); returns how many.
    pub fn revoke_portal(&mut self, portal: Option<u64>) -> usize {
        let mut n = 0;
        for r in self.refresh.values_mut() {
            if !r.revoked && portal.is_none_or(|p| p == r.grant.portal) {
                r.revoked = true;
                n += 1;
            }
        }
        n
    }

    /// Makes every access token of a portal (or all) expire now; returns how many.
    pub fn expire_access(&mut self, portal: Option<u64>, now_ms: i64) -> usize {
        let mut n = 0;
        for a in self.access.values_mut() {
            if a.expires_ms > now_ms && portal.is_none_or(|p| p == a.grant.portal) {
                a.expires_ms = now_ms;
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            portal: 7,
            user_id: 1,
            user_email: "a@b.c".into(),
            scopes: vec!["oauth".into()],
            client_id: "c".into(),
        }
    }

    #[test]
    fn code_is_single_use_and_bound_to_redirect() {
        let mut s = TokenStore::default();
        let code = s.issue_code(grant(), "http://x/cb", 0);
        assert_eq!(
            s.exchange_code(&code, "http://y/cb", 1000, 1).err(),
            Some(TokenError::BadRedirectUri)
        );
        let pair = s
            .exchange_code(&code, "http://x/cb", 1000, 1)
            .expect("exchange");
        assert_eq!(
            s.exchange_code(&code, "http://x/cb", 1000, 2).err(),
            Some(TokenError::BadAuthCode)
        );
        assert_eq!(
            s.authenticate(Some(&pair.access_token), 500)
                .map(|a| a.portal),
            Ok(7)
        );
        assert_eq!(
            s.authenticate(Some(&pair.access_token), 1001).err(),
            Some(AuthFailure::Expired(0))
        );
        let again = s.refresh(&pair.refresh_token, 1000, 2000).expect("refresh");
        assert_eq!(again.refresh_token, pair.refresh_token);
        assert!(s.revoke_refresh(&pair.refresh_token));
        assert_eq!(
            s.authenticate(Some(&again.access_token), 2001).err(),
            Some(AuthFailure::Invalid)
        );
        assert_eq!(
            s.refresh(&pair.refresh_token, 1000, 2002).err(),
            Some(TokenError::BadRefreshToken)
        );
        assert_eq!(s.authenticate(None, 0).err(), Some(AuthFailure::Missing));
    }

    #[test]
    fn expired_codes_are_refused() {
        let mut s = TokenStore::default();
        let code = s.issue_code(grant(), "r", 0);
        assert_eq!(
            s.exchange_code(&code, "r", 1000, CODE_TTL_MS + 1).err(),
            Some(TokenError::BadAuthCode)
        );
    }
}
