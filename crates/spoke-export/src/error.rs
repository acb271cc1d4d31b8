//! Errors of the export service and their one mapping to gRPC status codes.

use spoke_platform::ServiceError;

/// What can go wrong in the export service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the record and field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The resource does not exist (in the caller's org).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (role, or another user's job); never reveals existence.
    #[error("{0}")]
    PermissionDenied(String),
    /// The operation needs a state it is not in; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The HubSpot connection must be re-authorised by an admin before exports can continue.
    #[error("reconnect required: {0}")]
    ReauthRequired(String),
    /// Another service (connection, mapping) or HubSpot is unreachable now; retrying helps.
    #[error("{0}")]
    Unavailable(String),
    /// HubSpot answered with an error the writer did not turn into a record outcome.
    #[error(transparent)]
    HubSpot(#[from] spoke_hubspot::Error),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Infrastructure failed at start-up or while serving.
    #[error(transparent)]
    Platform(#[from] spoke_platform::Error),
}

/// Result alias of the export service.
pub type Result<T> = std::result::Result<T, Error>;

impl ServiceError for Error {
    fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::FailedPrecondition(_) | Error::ReauthRequired(_) => {
                tonic::Code::FailedPrecondition
            }
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::HubSpot(e) if e.is_retriable() => tonic::Code::Unavailable,
            Error::HubSpot(_) | Error::Database(_) | Error::Platform(_) => tonic::Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        spoke_platform::into_status(e)
    }
}
