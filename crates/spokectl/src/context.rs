//! Endpoints, credentials and error wording shared by the commands.

use secrecy::SecretString;
use spoke_platform::auth::{Role, TokenIssuer};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::cli::Global;

/// What a command needs to call Spoke.
pub struct Context {
    pub global: Global,
    token: String,
}

impl Context {
    /// Resolves the bearer token (given, or minted for the dev stack).
    pub fn new(global: Global) -> anyhow::Result<Self> {
        let token = match &global.token {
            Some(t) => t.clone(),
            None => mint(&global)?,
        };
        Ok(Self { global, token })
    }

    /// The bearer token in use.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A request carrying the bearer token.
    pub fn request<T>(&self, msg: T) -> anyhow::Result<Request<T>> {
        let mut req = Request::new(msg);
        let value: MetadataValue<_> = format!("Bearer {}", self.token).parse()?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }

    /// A lazily connecting channel to `endpoint`.
    pub fn channel(&self, endpoint: &str) -> anyhow::Result<Channel> {
        Ok(
            tonic::transport::Endpoint::from_shared(endpoint.to_string())?
                .connect_timeout(std::time::Duration::from_secs(5))
                .connect_lazy(),
        )
    }
}

/// Mints a dev token with `SPOKE_AUTH__HS256_SECRET` or the local stack's dev secret.
pub fn mint(g: &Global) -> anyhow::Result<String> {
    let secret = std::env::var("SPOKE_AUTH__HS256_SECRET")
        .unwrap_or_else(|_| spoke_platform::testing::DEV_JWT_SECRET.to_string());
    let issuer = TokenIssuer::hs256(&SecretString::from(secret), 3600);
    let roles = g
        .roles
        .iter()
        .map(|r| match r.as_str() {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "service" => Ok(Role::Service),
            other => Err(anyhow::anyhow!(
                "unknown role {other:?}; use admin, user or service"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let email = g
        .email
        .clone()
        .unwrap_or_else(|| format!("{}@example.com", g.user));
    Ok(issuer.mint(&g.user, &g.org, &email, &roles)?)
}

/// One line for a failed command: the gRPC status and what to do about it.
pub fn describe(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let hint = match status.code() {
            tonic::Code::Unauthenticated => " — pass a valid token with --token or SPOKE_TOKEN",
            tonic::Code::PermissionDenied => {
                " — this needs another role or org (see --role / --org)"
            }
            tonic::Code::Unavailable => " — is the service running? (cargo xtask status)",
            tonic::Code::Unimplemented => " — this server does not offer that operation yet",
            tonic::Code::FailedPrecondition => "",
            _ => "",
        };
        return format!("{:?}: {}{hint}", status.code(), status.message());
    }
    format!("{e:#}")
}
