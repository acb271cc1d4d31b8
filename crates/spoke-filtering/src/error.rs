//! Errors of the filtering service and their one mapping to gRPC status codes.

use spoke_platform::ServiceError;

/// What can go wrong in the filtering service.
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
    /// A run is already queued or running; the message names it.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller may not do this (e.g. an admin setting the engagement entitlement).
    #[error("{0}")]
    PermissionDenied(String),
    /// The org's HubSpot connection needs a new consent; an admin must reconnect.
    #[error("{0}")]
    ReauthRequired(String),
    /// The org has no live HubSpot connection.
    #[error("{0}")]
    NotConnected(String),
    /// HubSpot failed (after the client's retries).
    #[error("HubSpot: {0}")]
    HubSpot(#[from] spoke_hubspot::Error),
    /// HubSpot answered, but refused part of a batch (per-input errors); the message names the records.
    #[error("HubSpot: {0}")]
    HubSpotPartial(String),
    /// The connection service failed.
    #[error("connection service: {0}")]
    Connection(String),
    /// Sending an alert email failed.
    #[error("email: {0}")]
    Email(String),
    /// A profile file could not be read.
    #[error("{0}")]
    Input(String),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Infrastructure failed at start-up or while serving.
    #[error(transparent)]
    Platform(#[from] spoke_platform::Error),
}

/// Result alias of the filtering service.
pub type Result<T> = std::result::Result<T, Error>;

impl From<spoke_connection_client::Error> for Error {
    fn from(e: spoke_connection_client::Error) -> Self {
        match e {
            spoke_connection_client::Error::ReauthRequired(m) => Error::ReauthRequired(m),
            spoke_connection_client::Error::NotConnected(m) => Error::NotConnected(m),
            other => Error::Connection(other.to_string()),
        }
    }
}

impl ServiceError for Error {
    fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) | Error::Input(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::FailedPrecondition(_) | Error::ReauthRequired(_) | Error::NotConnected(_) => {
                tonic::Code::FailedPrecondition
            }
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::HubSpot(e) if e.is_retriable() => tonic::Code::Unavailable,
            Error::Connection(_) => tonic::Code::Unavailable,
            Error::HubSpot(_)
            | Error::HubSpotPartial(_)
            | Error::Email(_)
            | Error::Database(_)
            | Error::Platform(_) => tonic::Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        spoke_platform::into_status(e)
    }
}
