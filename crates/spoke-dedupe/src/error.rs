//! Errors of the dedupe service and their one mapping to gRPC status codes.

use spoke_platform::ServiceError;

/// What can go wrong in the dedupe service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The resource does not exist (in the caller's org).
    #[error("{0}")]
    NotFound(String),
    /// The operation needs a state it is not in; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency (HubSpot, the search budget, another service) is unavailable; retrying helps.
    #[error("{0}")]
    Unavailable(String),
    /// The lookups took longer than the caller's deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// HubSpot answered with an error that retrying does not fix.
    #[error("HubSpot: {0}")]
    HubSpot(spoke_hubspot::Error),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Infrastructure failed at start-up or while serving.
    #[error(transparent)]
    Platform(#[from] spoke_platform::Error),
}

/// Result alias of the dedupe service.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True when the same work may succeed later (the consumer retries it).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_)
                | Error::DeadlineExceeded(_)
                | Error::Database(_)
                | Error::Platform(_)
        )
    }
}

impl From<spoke_hubspot::Error> for Error {
    fn from(e: spoke_hubspot::Error) -> Self {
        if e.is_reauth_required() {
            Error::FailedPrecondition(format!(
                "reconnect required: HubSpot rejected the connection ({e}); an admin must reconnect HubSpot"
            ))
        } else if e.is_retriable() || matches!(e, spoke_hubspot::Error::Budget(_)) {
            Error::Unavailable(format!("HubSpot is unavailable, retry later: {e}"))
        } else {
            Error::HubSpot(e)
        }
    }
}

impl From<spoke_connection_client::Error> for Error {
    fn from(e: spoke_connection_client::Error) -> Self {
        use spoke_connection_client::Error as C;
        match e {
            C::ReauthRequired(m) | C::NotConnected(m) | C::UserNotConnected(m) => {
                Error::FailedPrecondition(m)
            }
            C::NotFound(m) => Error::NotFound(m),
            other if other.is_retriable() => Error::Unavailable(other.to_string()),
            other => Error::Unavailable(format!("connection service: {other}")),
        }
    }
}

impl ServiceError for Error {
    fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::DeadlineExceeded(_) => tonic::Code::DeadlineExceeded,
            Error::HubSpot(_) => tonic::Code::FailedPrecondition,
            Error::Database(_) | Error::Platform(_) => tonic::Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        spoke_platform::into_status(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes_callers_can_act_on() {
        let cases = [
            (
                Error::InvalidArgument("records: too many".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                Error::FailedPrecondition("connect first".into()),
                tonic::Code::FailedPrecondition,
            ),
            (
                Error::Unavailable("budget".into()),
                tonic::Code::Unavailable,
            ),
            (
                Error::DeadlineExceeded("slow".into()),
                tonic::Code::DeadlineExceeded,
            ),
            (
                Error::from(spoke_hubspot::Error::Budget("no permits".into())),
                tonic::Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }
}
