//! Errors of the mapping service and their one mapping to gRPC status codes.

use spoke_platform::ServiceError;

/// One invalid field of a request: its path (e.g. `rows[2].target_property`) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path in the request.
    pub field: String,
    /// What is wrong and what to do.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// What can go wrong in the mapping service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request failed validation; every problem is listed with its field path.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Validation(Vec<Violation>),
    /// The resource does not exist (in the caller's org).
    #[error("{0}")]
    NotFound(String),
    /// The operation needs a state it is not in; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// `expected_version` is stale: someone saved in between.
    #[error("{0}")]
    Aborted(String),
    /// HubSpot or the connection service could not be reached; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored message could not be decoded (corrupt row).
    #[error("stored configuration is unreadable: {0}")]
    Corrupt(String),
    /// Infrastructure failed at start-up or while serving.
    #[error(transparent)]
    Platform(#[from] spoke_platform::Error),
}

/// Result alias of the mapping service.
pub type Result<T> = std::result::Result<T, Error>;

impl ServiceError for Error {
    fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) | Error::Validation(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Aborted(_) => tonic::Code::Aborted,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Database(_) | Error::Corrupt(_) | Error::Platform(_) => tonic::Code::Internal,
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
            other if other.is_retriable() => Error::Unavailable(other.to_string()),
            other => Error::Unavailable(format!("connection service: {other}")),
        }
    }
}

impl From<spoke_hubspot::Error> for Error {
    fn from(e: spoke_hubspot::Error) -> Self {
        if e.is_reauth_required() {
            return Error::FailedPrecondition(format!(
                "reconnect required: HubSpot no longer accepts the connection ({e}); an admin must reconnect"
            ));
        }
        if let spoke_hubspot::Error::Token { message, .. } = &e
            && message.starts_with(spoke_connection_client::wire::NOT_CONNECTED)
        {
            return Error::FailedPrecondition(message.clone());
        }
        Error::Unavailable(format!("HubSpot could not be read: {e}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        if let Error::Validation(violations) = &e {
            // Callers read the field violations with tonic-types' StatusExt (proto/README.md).
            let mut details = ErrorDetails::new();
            for v in violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            return tonic::Status::with_error_details(
                tonic::Code::InvalidArgument,
                e.to_string(),
                details,
            );
        }
        spoke_platform::into_status(e)
    }
}
