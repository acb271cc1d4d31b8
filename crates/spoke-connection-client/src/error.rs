//! Errors of the connection client, classified so callers can pause work on REAUTH_REQUIRED.

use crate::wire;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong asking the connection service. Messages never contain tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured endpoint is not a usable URI.
    #[error(
        "invalid connection service endpoint {endpoint:?}: {message} (set SPOKE_CONNECTION__ENDPOINT)"
    )]
    InvalidEndpoint {
        /// The configured value.
        endpoint: String,
        /// Why it was rejected.
        message: String,
    },
    /// A service token could not be minted (auth misconfiguration).
    #[error("cannot mint a service token: {0}")]
    Auth(String),
    /// HubSpot rejected the org's (or user's) refresh token: an admin must reconnect. Pause work.
    #[error("{0}")]
    ReauthRequired(String),
    /// The org has no live HubSpot connection (never connected, disconnected or deleted).
    #[error("{0}")]
    NotConnected(String),
    /// The user has no HubSpot connection of their own (user account mode).
    #[error("{0}")]
    UserNotConnected(String),
    /// The named thing (e.g. an org user) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The connection service answered with another error.
    #[error("connection service: {}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
}

impl Error {
    /// True when only a new OAuth consent can fix it.
    pub fn is_reauth_required(&self) -> bool {
        matches!(self, Error::ReauthRequired(_))
    }

    /// True when the same call may succeed later (the service or HubSpot was unreachable).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Rpc(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
            ),
            _ => false,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let msg = s.message();
        match s.code() {
            tonic::Code::FailedPrecondition if msg.starts_with(wire::RECONNECT_REQUIRED) => {
                Error::ReauthRequired(msg.to_owned())
            }
            tonic::Code::FailedPrecondition if msg.starts_with(wire::USER_NOT_CONNECTED) => {
                Error::UserNotConnected(msg.to_owned())
            }
            tonic::Code::FailedPrecondition if msg.starts_with(wire::NOT_CONNECTED) => {
                Error::NotConnected(msg.to_owned())
            }
            tonic::Code::NotFound => Error::NotFound(msg.to_owned()),
            _ => Error::Rpc(s),
        }
    }
}

impl From<Error> for spoke_hubspot::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::ReauthRequired(message) => spoke_hubspot::Error::Token {
                message,
                reauth_required: true,
            },
            Error::NotConnected(_) | Error::UserNotConnected(_) | Error::NotFound(_) => {
                spoke_hubspot::Error::Token {
                    message: e.to_string(),
                    reauth_required: false,
                }
            }
            // Retriable budget errors make spoke-hubspot back off and try again.
            other if other.is_retriable() => spoke_hubspot::Error::Budget(other.to_string()),
            other => spoke_hubspot::Error::Token {
                message: other.to_string(),
                reauth_required: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_code_and_prefix() {
        let cases: &[(tonic::Code, &str, &str)] = &[
            (
                tonic::Code::FailedPrecondition,
                "reconnect required: HubSpot revoked the refresh token",
                "reauth",
            ),
            (
                tonic::Code::FailedPrecondition,
                "not connected: connect HubSpot first",
                "not_connected",
            ),
            (
                tonic::Code::FailedPrecondition,
                "user not connected: u1 must connect",
                "user_not_connected",
            ),
            (
                tonic::Code::FailedPrecondition,
                "turn the integration off first",
                "rpc",
            ),
            (tonic::Code::NotFound, "unknown user u9", "not_found"),
            (tonic::Code::Unavailable, "db down", "rpc"),
        ];
        for (code, msg, want) in cases {
            let e = Error::from(tonic::Status::new(*code, *msg));
            let got = match &e {
                Error::ReauthRequired(_) => "reauth",
                Error::NotConnected(_) => "not_connected",
                Error::UserNotConnected(_) => "user_not_connected",
                Error::NotFound(_) => "not_found",
                Error::Rpc(_) => "rpc",
                _ => "other",
            };
            assert_eq!(got, *want, "{code:?} {msg}");
        }
    }

    #[test]
    fn reauth_maps_to_a_reauth_token_error_and_unavailable_to_a_retriable_one() {
        let reauth: spoke_hubspot::Error =
            Error::ReauthRequired("reconnect required: revoked".into()).into();
        assert!(reauth.is_reauth_required());
        let down: spoke_hubspot::Error =
            Error::Rpc(tonic::Status::unavailable("connection refused")).into();
        assert!(down.is_retriable());
        assert!(!down.is_reauth_required());
        let denied: spoke_hubspot::Error =
            Error::Rpc(tonic::Status::permission_denied("no")).into();
        assert!(!denied.is_retriable());
    }
}
