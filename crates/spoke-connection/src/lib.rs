//! Spoke connection service: OAuth connect flows, encrypted tokens, admins, user mapping and record
//! ownership, the shared portal budget, and data sharing. See ARCHITECTURE.md for its place in the cluster.

mod admins;
mod app;
mod budget;
mod callback;
mod config;
mod connect;
mod consumers;
mod crypto;
mod domain;
mod error;
mod grpc;
mod sharing;
mod store;
mod tokens;
mod users;

pub use app::{Application, MIGRATOR, TOPICS};
pub use config::{BudgetConfig, CallbackConfig, Config, HubSpotAppConfig, TokensConfig};
pub use error::{Error, Result};
