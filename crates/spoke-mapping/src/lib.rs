//! Spoke mapping service. See ARCHITECTURE.md for its place in the cluster.

mod app;
mod config;
mod configs;
mod consumers;
pub mod defaults;
mod error;
mod grpc;
mod properties;
mod snapshot;
mod store;
mod test_mapping;
mod validate;

pub use app::{Application, MIGRATOR, TOPICS};
pub use config::{Config, MappingSettings};
pub use error::{Error, Result, Violation};
