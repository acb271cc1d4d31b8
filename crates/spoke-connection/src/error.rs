//! Errors of the connection service and their one mapping to gRPC status codes.

use spoke_platform::ServiceError;

/// What can go wrong in the connection service. No variant carries a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The resource does not exist (in the caller's org).
    #[error("{0}")]
    NotFound(String),
    /// The resource exists already; the message says what to do instead.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller may not do this; the message says who may.
    #[error("{0}")]
    PermissionDenied(String),
    /// The operation needs a state it is not in; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// HubSpot could not be reached or failed temporarily; retrying helps.
    #[error("{0}")]
    Unavailable(String),
    /// HubSpot answered in a way Spoke cannot use.
    #[error("HubSpot: {0}")]
    HubSpot(#[from] spoke_hubspot::Error),
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Token encryption or decryption failed (wrong or missing key).
    #[error("token encryption: {0}")]
    Crypto(String),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Infrastructure failed at start-up or while serving.
    #[error(transparent)]
    Platform(#[from] spoke_platform::Error),
    /// The callback listener failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of the connection service.
pub type Result<T> = std::result::Result<T, Error>;

impl ServiceError for Error {
    fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::HubSpot(e) if e.is_retriable() => tonic::Code::Unavailable,
            Error::HubSpot(_) => tonic::Code::Internal,
            Error::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                tonic::Code::Unavailable
            }
            Error::Config(_)
            | Error::Crypto(_)
            | Error::Database(_)
            | Error::Platform(_)
            | Error::Io(_) => tonic::Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        spoke_platform::into_status(e)
    }
}
