//! # spoke-sandbox — a stateful HubSpot API emulator
//!
//! Every Spoke test, benchmark and the demo run against this emulator instead of HubSpot. It serves the
//! HubSpot endpoints Spoke uses with HubSpot's status codes, JSON shapes and error bodies, so HubSpot's
//! official client libraries work against it unchanged (see `compat/`).
//!
//! ```no_run
//! # async fn demo() -> spoke_sandbox::Result<()> {
//! use spoke_sandbox::{PortalSeed, Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! sandbox.control().seed_portal(&PortalSeed::new(123))?;
//! let tokens = sandbox.control().issue_tokens(123, None);
//! println!("{} {:?}", sandbox.base_url(), tokens.is_err()); // no users seeded: no one to consent as
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The crate README documents the endpoints, the seed format and the admin API (`/_sandbox/...`).

mod api_error;
mod clock;
mod config;
mod control;
mod duplicates;
mod error;
mod faults;
mod http;
mod limits;
mod oauth;
mod objects;
mod properties;
mod reqlog;
mod search;
mod seed;
mod server;
mod store;

pub use api_error::{ApiError, ErrorDetail};
pub use config::{OAuthApp, RateLimits, SandboxConfig};
pub use control::{Counts, SandboxControl};
pub use duplicates::{DuplicateKey, normalize_domain};
pub use error::{Error, Result};
pub use faults::{FaultKind, FaultRule};
pub use oauth::TokenPair;
pub use objects::{ObjectType, default_association_type};
pub use reqlog::LoggedRequest;
pub use seed::{
    AssociationSeed, OwnerSeed, PipelineSeed, PortalSeed, PropertyDef, PropertyOption, RecordSeed,
    Seed, StageSeed, UserSeed,
};
pub use server::Sandbox;
