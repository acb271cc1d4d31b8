//! Spoke filtering service. See ARCHITECTURE.md for its place in the cluster.
//!
//! Domain modules: [`schedule`] (off-hours slot math), [`filters`] (filter settings and the pass
//! rule), [`profiles`] (profile index, loaders), `run` (executing a run under a lease),
//! `scheduler` (requesting runs), `alerts` (notifications and email), [`sharing`] (data-sharing
//! contributions of completed runs); `store` holds all SQL.

mod alerts;
mod app;
mod config;
mod consumers;
mod error;
pub mod filters;
mod grpc;
pub mod model;
mod portals;
pub mod profiles;
mod run;
pub mod schedule;
mod scheduler;
pub mod sharing;
mod store;

pub use app::{Application, MIGRATOR, TOPICS};
pub use config::{Config, FilteringSettings, SmtpSettings, StaticPortal};
pub use error::{Error, Result};
pub use portals::{Portal, PortalAccess};
