//! spoke-connection-client: what every HubSpot-calling Spoke service uses to talk to the connection
//! service.
//!
//! - [`HubSpotSettings`] and [`ConnectionEndpoint`]: the `[hubspot]` and `[connection]` config
//!   sections services embed in their `Config`.
//! - [`ConnectionClient`]: reads an org's connection, hands out a [`spoke_hubspot::TokenSource`] per
//!   org (tokens come from `GetAccessToken`, cached until shortly before expiry), a shared
//!   [`spoke_hubspot::Budget`] backed by the connection service's portal budget (`AcquireBudget` leases
//!   blocks of permits, `ReportThrottle` on 429), ready [`spoke_hubspot::PortalClient`]s, and record
//!   owners (`ResolveOwner`).
//!
//! ```no_run
//! # async fn demo(issuer: spoke_platform::auth::TokenIssuer) -> Result<(), Box<dyn std::error::Error>> {
//! use spoke_connection_client::{ConnectionClient, ConnectionEndpoint, HubSpotSettings};
//! let settings = HubSpotSettings::default();
//! let connection = ConnectionClient::new(&ConnectionEndpoint::default(), issuer, "export")?;
//! let hubspot = spoke_hubspot::HubSpotClient::with_budget(settings.client_config(), connection.budget())?;
//! let portal = connection.portal(&hubspot, "org-1").await?; // REAUTH_REQUIRED → Error::ReauthRequired
//! # let _ = portal; Ok(()) }
//! ```

mod budget;
mod client;
mod error;
mod settings;
mod tokens;

pub use budget::RemoteBudget;
pub use client::{ConnectionClient, ConnectionInfo, OwnerSource, ResolvedOwner};
pub use error::{Error, Result};
pub use settings::{ConnectionEndpoint, HubSpotSettings};
pub use tokens::ServiceTokenSource;

/// Status-message prefixes and metadata keys shared by the connection service and this client, so a
/// FAILED_PRECONDITION can be told apart without parsing free text anywhere else.
pub mod wire {
    /// FAILED_PRECONDITION messages for a connection (or user connection) in REAUTH_REQUIRED start with this.
    pub const RECONNECT_REQUIRED: &str = "reconnect required";
    /// FAILED_PRECONDITION messages for an org without a live connection start with this.
    pub const NOT_CONNECTED: &str = "not connected";
    /// FAILED_PRECONDITION messages for a user without their own HubSpot connection start with this.
    pub const USER_NOT_CONNECTED: &str = "user not connected";
    /// Request metadata carrying the exporting user's email for `ResolveOwner` (used when the user
    /// is not in the org's user directory yet).
    pub const USER_EMAIL_METADATA: &str = "x-spoke-user-email";
}
