//! Spoke dedupe service: finds existing HubSpot records for exported profiles and decides per
//! record (create, update existing, create duplicate, skip, needs review) without ever creating a
//! duplicate because of HubSpot's search lag. See ARCHITECTURE.md for its place in the cluster.
//!
//! - [`keys`]: which match keys a record has (normalization from `spoke-match`).
//! - [`check`]: lookup order and the in-flight reservation design against the search-lag race.
//! - [`decision`]: the decision table from duplicate settings, preferences and the user's choice.
//! - [`settings`]: where duplicate settings come from (mapping service, per pinned version).
//! - `lookup`: HubSpot batch read by email and `IN` searches.
//! - `store`: all SQL (index, reservations, record checks).
//!
//! Metrics: `spoke_dedupe_lookups_total{source=index|hubspot,result=hit|miss}` (keys looked up),
//! `spoke_dedupe_decisions_total{action}`, `spoke_dedupe_check_duration_seconds{path=pipeline|preview}`,
//! `spoke_dedupe_in_flight_waits_total`, `spoke_dedupe_index_entries{source}`,
//! `spoke_dedupe_pending_creates`.

mod app;
pub mod check;
mod config;
mod consumers;
pub mod decision;
mod error;
mod grpc;
pub mod keys;
pub mod lookup;
pub mod settings;
mod store;

pub use app::{Application, MIGRATOR, Overrides, TOPICS};
pub use config::{Config, DedupeSettings, MappingEndpoint};
pub use error::{Error, Result};
