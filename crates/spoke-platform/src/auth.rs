//! JWT authentication and authorization for gRPC.
//!
//! Every call carries `authorization: Bearer <JWT>` with claims `sub`, `org`, `email`, `roles`.
//! [`Authenticator`] is a tonic interceptor: it verifies the token (HS256 with a shared secret in
//! development, RS256 public keys in production) and stores the [`Caller`] in the request
//! extensions; handlers then use [`caller`] and the `require_*` checks.
//!
//! Error contract (DESIGN.md §8): a missing, malformed, expired or wrongly signed token is
//! `UNAUTHENTICATED`; a valid caller without the needed role, or acting on another org's resource,
//! is `PERMISSION_DENIED`. [`Caller::require_same_org`] answers identically whether the foreign
//! resource exists or not, so it never reveals existence.
//!
//! Services call each other with a service token: a JWT with role `service` whose `org` claim is
//! the org they act for, minted by [`TokenIssuer`].

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::config::AuthConfig;
use crate::{Error, Result};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An org admin: configures the integration.
    Admin,
    /// An org user: exports, views.
    User,
    /// Another Spoke service or an internal backend acting for an org.
    Service,
}

/// The JWT claims Spoke reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user id (or the service name for service tokens).
    pub sub: String,
    /// The org (tenant) the caller belongs to or acts for.
    pub org: String,
    /// The caller's email (used for owner mapping); empty for services.
    #[serde(default)]
    pub email: String,
    /// Roles; unknown role names are ignored.
    #[serde(default, deserialize_with = "deserialize_roles")]
    pub roles: Vec<Role>,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at (seconds since the epoch).
    #[serde(default)]
    pub iat: u64,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

fn deserialize_roles<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Role>, D::Error> {
    let names: Vec<String> = Vec::deserialize(d)?;
    Ok(names
        .iter()
        .filter_map(|n| match n.as_str() {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "service" => Some(Role::Service),
            _ => None,
        })
        .collect())
}

/// The authenticated caller of one request.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id (or service name).
    pub user_id: String,
    /// Org the caller belongs to or acts for.
    pub org: String,
    /// Email, possibly empty.
    pub email: String,
    /// Roles.
    pub roles: Vec<Role>,
}

impl fmt::Debug for Caller {
    // Emails are personal data; keep them out of debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("user_id", &self.user_id)
            .field("org", &self.org)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// True when the caller has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Org admins only.
    pub fn require_admin(&self) -> std::result::Result<(), Status> {
        if self.has(Role::Admin) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this operation needs the admin role",
            ))
        }
    }

    /// Other Spoke services only.
    pub fn require_service(&self) -> std::result::Result<(), Status> {
        if self.has(Role::Service) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this operation is reserved to Spoke services (role service)",
            ))
        }
    }

    /// Admins or users of the org (not bare service tokens).
    pub fn require_member(&self) -> std::result::Result<(), Status> {
        if self.has(Role::Admin) || self.has(Role::User) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this operation needs the user or admin role",
            ))
        }
    }

    /// The resource belongs to the caller's org; otherwise PERMISSION_DENIED without saying whether
    /// the resource exists.
    pub fn require_same_org(&self, resource_org: &str) -> std::result::Result<(), Status> {
        if self.org == resource_org {
            Ok(())
        } else {
            Err(Status::permission_denied("not permitted for this org"))
        }
    }
}

/// Returns the authenticated caller placed in the request by [`Authenticator`].
pub fn caller<T>(req: &Request<T>) -> std::result::Result<&Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// Verifies JWTs. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Keys>,
}

struct Keys {
    hs256: Option<DecodingKey>,
    rs256: Vec<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.inner.hs256.is_some())
            .field("rs256_keys", &self.inner.rs256.len())
            .finish()
    }
}

impl Authenticator {
    /// Builds the verifier from config (reads RS256 PEM files).
    pub fn from_config(cfg: &AuthConfig) -> Result<Self> {
        let hs256 = cfg
            .hs256_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
        let mut rs256 = Vec::new();
        for path in &cfg.rs256_public_key_paths {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Auth(format!("reading {}: {e}", path.display())))?;
            rs256.push(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                Error::Auth(format!(
                    "{} is not an RSA public key PEM: {e}",
                    path.display()
                ))
            })?);
        }
        Ok(Self {
            inner: Arc::new(Keys {
                hs256,
                rs256,
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
            }),
        })
    }

    /// Verifies a raw JWT and returns the caller.
    pub fn verify(&self, token: &str) -> std::result::Result<Caller, Status> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Status::unauthenticated("malformed bearer token"))?;
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.inner.hs256.iter().collect(),
            Algorithm::RS256 => self.inner.rs256.iter().collect(),
            _ => {
                return Err(Status::unauthenticated(
                    "unsupported token algorithm; use HS256 or RS256",
                ));
            }
        };
        if keys.is_empty() {
            return Err(Status::unauthenticated(format!(
                "tokens signed with {:?} are not accepted by this deployment",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = 30;
        let mut required = vec!["exp", "sub"];
        if self.inner.issuer.is_some() {
            required.push("iss");
        }
        if self.inner.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &self.inner.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.inner.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let mut last_err = None;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let c = data.claims;
                    if c.org.is_empty() {
                        return Err(Status::unauthenticated("token has no org claim"));
                    }
                    return Ok(Caller {
                        user_id: c.sub,
                        org: c.org,
                        email: c.email,
                        roles: c.roles,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        let reason = match last_err.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "bearer token expired",
            Some(jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                "bearer token signature invalid"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidIssuer) => {
                "bearer token issuer not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "bearer token audience not accepted"
            }
            _ => "bearer token invalid",
        };
        Err(Status::unauthenticated(reason))
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        let value = req.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata (Bearer <JWT>)")
        })?;
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("authorization metadata must be `Bearer <JWT>`")
            })?;
        let caller = self.verify(token.trim())?;
        tracing::Span::current().record("org", caller.org.as_str());
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// Mints JWTs: service tokens for service-to-service calls, and dev tokens for `spokectl token`.
#[derive(Clone)]
pub struct TokenIssuer {
    key: Arc<EncodingKey>,
    alg: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
    ttl_secs: u64,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Builds the issuer from config: RS256 private key when configured, else the HS256 secret.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self> {
        let (key, alg) = if let Some(path) = &cfg.rs256_private_key_path {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Auth(format!("reading {}: {e}", path.display())))?;
            let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                Error::Auth(format!(
                    "{} is not an RSA private key PEM: {e}",
                    path.display()
                ))
            })?;
            (key, Algorithm::RS256)
        } else if let Some(secret) = &cfg.hs256_secret {
            (
                EncodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            )
        } else {
            return Err(Error::Auth(
                "no signing key: set auth.rs256_private_key_path or auth.hs256_secret".into(),
            ));
        };
        Ok(Self {
            key: Arc::new(key),
            alg,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl_secs: cfg.service_token_ttl_secs,
        })
    }

    /// An HS256 issuer from a raw secret (dev tools).
    pub fn hs256(secret: &SecretString, ttl_secs: u64) -> Self {
        Self {
            key: Arc::new(EncodingKey::from_secret(secret.expose_secret().as_bytes())),
            alg: Algorithm::HS256,
            issuer: None,
            audience: None,
            ttl_secs,
        }
    }

    /// Signs a token for `sub` in `org` with `roles`.
    pub fn mint(&self, sub: &str, org: &str, email: &str, roles: &[Role]) -> Result<String> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: sub.to_string(),
            org: org.to_string(),
            email: email.to_string(),
            roles: roles.to_vec(),
            exp: now + self.ttl_secs,
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key)
            .map_err(|e| Error::Auth(format!("signing token: {e}")))
    }

    /// A service token acting for `org`.
    pub fn service_token(&self, service: &str, org: &str) -> Result<String> {
        self.mint(service, org, "", &[Role::Service])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    const SECRET: &str = "test-secret-test-secret-test-secret!";

    fn cfg() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some(SecretString::from(SECRET)),
            ..AuthConfig::default()
        }
    }

    fn request_with(token: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", t.parse().unwrap());
        }
        req
    }

    fn intercept(token: Option<&str>) -> std::result::Result<Caller, Status> {
        let mut auth = Authenticator::from_config(&cfg()).unwrap();
        let req = auth.call(request_with(token))?;
        Ok(caller(&req)?.clone())
    }

    fn token_with(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        chrono::Utc::now().timestamp() as u64
    }

    #[test]
    fn accepts_a_valid_token_and_exposes_claims() {
        let issuer = TokenIssuer::from_config(&cfg()).unwrap();
        let t = issuer
            .mint("u1", "org-a", "u1@a.com", &[Role::Admin])
            .unwrap();
        let c = intercept(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(c.user_id, "u1");
        assert_eq!(c.org, "org-a");
        assert_eq!(c.email, "u1@a.com");
        assert!(c.has(Role::Admin));
        assert!(c.require_admin().is_ok());
        assert_eq!(
            c.require_service().unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn rejections_are_unauthenticated() {
        let exp = now() + 600;
        let cases: Vec<(&str, Option<String>)> = vec![
            ("missing header", None),
            ("not bearer", Some("Basic abc".into())),
            ("garbage", Some("Bearer not.a.jwt".into())),
            (
                "wrong secret",
                Some(format!(
                    "Bearer {}",
                    token_with(
                        serde_json::json!({"sub":"u","org":"o","roles":["admin"],"exp":exp}),
                        "another-secret-another-secret-xx"
                    )
                )),
            ),
            (
                "expired",
                Some(format!(
                    "Bearer {}",
                    token_with(
                        serde_json::json!({"sub":"u","org":"o","roles":["admin"],"exp":now()-3600}),
                        SECRET
                    )
                )),
            ),
            (
                "no org",
                Some(format!(
                    "Bearer {}",
                    token_with(
                        serde_json::json!({"sub":"u","org":"","roles":["admin"],"exp":exp}),
                        SECRET
                    )
                )),
            ),
            (
                "no exp",
                Some(format!(
                    "Bearer {}",
                    token_with(
                        serde_json::json!({"sub":"u","org":"o","roles":["admin"]}),
                        SECRET
                    )
                )),
            ),
        ];
        for (name, header) in cases {
            let err = intercept(header.as_deref()).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{name}: {err:?}");
        }
    }

    #[test]
    fn unknown_roles_are_ignored() {
        let t = token_with(
            serde_json::json!({"sub":"u","org":"o","roles":["superuser","user"],"exp":now()+600}),
            SECRET,
        );
        let c = intercept(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(c.roles, vec![Role::User]);
        assert_eq!(
            c.require_admin().unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(c.require_member().is_ok());
    }

    #[test]
    fn other_org_is_permission_denied_without_detail() {
        let issuer = TokenIssuer::from_config(&cfg()).unwrap();
        let t = issuer.service_token("export", "org-a").unwrap();
        let c = intercept(Some(&format!("Bearer {t}"))).unwrap();
        assert!(c.require_service().is_ok());
        assert!(c.require_same_org("org-a").is_ok());
        let err = c.require_same_org("org-b").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(
            !err.message().contains("org-b"),
            "must not echo the other org"
        );
    }

    #[test]
    fn rs256_tokens_need_configured_public_keys() {
        // HS256-only deployment refuses RS256 tokens with a clear reason.
        let fake = format!(
            "{}.{}.sig",
            base64_url(r#"{"alg":"RS256","typ":"JWT"}"#),
            base64_url(r#"{"sub":"u","org":"o","exp":9999999999}"#)
        );
        let err = intercept(Some(&format!("Bearer {fake}"))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("not accepted"), "{err:?}");
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let mut c = cfg();
        c.issuer = Some("spoke".into());
        c.audience = Some("spoke-api".into());
        let good = TokenIssuer::from_config(&c)
            .unwrap()
            .mint("u", "o", "", &[Role::User])
            .unwrap();
        let bad = TokenIssuer::from_config(&cfg())
            .unwrap()
            .mint("u", "o", "", &[Role::User])
            .unwrap();
        let mut auth = Authenticator::from_config(&c).unwrap();
        assert!(
            auth.call(request_with(Some(&format!("Bearer {good}"))))
                .is_ok()
        );
        let err = auth
            .call(request_with(Some(&format!("Bearer {bad}"))))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
