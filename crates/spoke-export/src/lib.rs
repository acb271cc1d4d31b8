//! Spoke export service. See ARCHITECTURE.md for its place in the cluster.
//!
//! Path of a job: `grpc` (CreateExport) → `jobs` (validate, persist, request batches) → dedupe →
//! `consumers` (checked batches) → `writer` (mapping, owners, HubSpot batches, crash recovery) →
//! `jobs` (outcomes, counts, events, results).
//!
//! CRM writeback: `writeback` (activities from `spoke.activities.v1` logged in HubSpot as tasks or
//! engagements, associated to the contact and company found through export results and filtering
//! matches).

mod app;
pub mod cluster;
mod config;
mod consumers;
mod error;
mod events;
pub mod failures;
mod grpc;
pub mod jobs;
pub mod model;
pub mod ports;
pub mod store;
pub mod writeback;
pub mod writer;

pub use app::{Application, MIGRATOR, TOPICS};
pub use config::{Config, ExportLimits, MappingEndpoint, WritebackConfig, WriterConfig};
pub use error::{Error, Result};
