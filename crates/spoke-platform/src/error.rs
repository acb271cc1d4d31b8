//! Platform errors and the one mapping from a service error to a gRPC status.

/// Errors of the platform layer (start-up, infrastructure).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration could not be loaded or is invalid; the message lists every problem.
    #[error("configuration error: {0}")]
    Config(String),
    /// Postgres failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Kafka failed.
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A socket could not be bound or served.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Telemetry could not be initialised.
    #[error("telemetry error: {0}")]
    Telemetry(String),
    /// A JWT could not be created or a key could not be read.
    #[error("auth error: {0}")]
    Auth(String),
    /// A background task failed or panicked.
    #[error("task failed: {0}")]
    Task(String),
    /// The gRPC server failed.
    #[error("grpc server error: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Result alias of the platform crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A service error that knows which gRPC status code describes it.
///
/// Each service implements this once for its `Error` enum; [`into_status`] is then the only place
/// that turns errors into `tonic::Status`, so codes stay consistent across all RPCs.
pub trait ServiceError: std::error::Error {
    /// The gRPC code a caller should see.
    fn grpc_code(&self) -> tonic::Code;
}

/// Converts a service error into a status whose message is the error's display text.
///
/// Internal errors are logged here with their full chain and returned with a generic message so
/// that database or network details never reach callers.
pub fn into_status<E: ServiceError>(err: E) -> tonic::Status {
    let code = err.grpc_code();
    match code {
        tonic::Code::Internal | tonic::Code::Unknown => {
            tracing::error!(error = %err, "internal error");
            tonic::Status::new(code, "internal error; see the service logs for details")
        }
        _ => tonic::Status::new(code, err.to_string()),
    }
}
