//! Spoke mapping service. See ARCHITECTURE.md for its place in the cluster.

mod app;
mod config;
mod consumers;
mod error;
mod grpc;

pub use app::{Application, MIGRATOR, TOPICS};
pub use config::Config;
pub use error::{Error, Result};
