//! What every Spoke service shares: layered config, telemetry (logs, traces, W3C propagation),
//! JWT auth for gRPC, Postgres with per-service schemas and embedded migrations, Kafka topics,
//! a transactional outbox and an idempotent inbox consumer, the admin HTTP server (health,
//! readiness, metrics), the gRPC server scaffolding (health, reflection, TLS) and graceful shutdown.
//!
//! A service wires these together through [`service::ServiceHost`]; see ARCHITECTURE.md.

pub mod admin;
pub mod auth;
pub mod config;
pub mod connection_mirror;
pub mod db;
mod error;
pub mod grpc;
pub mod grpc_metrics;
pub mod kafka;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result, ServiceError, into_status};
