//! Errors of the sandbox as a library (starting, seeding); HubSpot-shaped API errors live in `api_error`.

use std::path::PathBuf;

/// What can go wrong when starting or seeding the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not bind to the configured address.
    #[error("cannot bind the sandbox to {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A seed file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A seed document is not valid JSON of the documented shape.
    #[error("seed is not valid: {0}")]
    SeedParse(#[from] serde_json::Error),
    /// A seed document is well-formed but inconsistent (e.g. an unknown object type or a bad record).
    #[error("seed is not valid: {0}")]
    SeedInvalid(String),
    /// A portal that an operation names does not exist.
    #[error("portal {0} does not exist; seed it first")]
    UnknownPortal(u64),
    /// A configuration value is out of range.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
