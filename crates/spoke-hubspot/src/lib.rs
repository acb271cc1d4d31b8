//! spoke-hubspot: the typed async HubSpot client every Spoke service uses.
//!
//! ```no_run
//! # async fn demo() -> spoke_hubspot::Result<()> {
//! use std::sync::Arc;
//! use spoke_hubspot::{ClientConfig, HubSpotClient, ObjectType, StaticToken, BatchReadRequest};
//!
//! let client = HubSpotClient::new(ClientConfig::default())?;
//! let portal = client.portal(62515, Arc::new(StaticToken::new("pat-...")));
//! let found = portal
//!     .batch_read(ObjectType::Contacts, &BatchReadRequest {
//!         ids: vec!["ada@example.com".into()],
//!         id_property: Some("email".into()),
//!         properties: vec!["email".into()],
//!         ..Default::default()
//!     })
//!     .await?;
//! # let _ = found; Ok(()) }
//! ```
//!
//! Every call: asks the [`Budget`] for a permit, takes a token from the portal's [`TokenSource`]
//! (refreshing once on 401 `EXPIRED_AUTHENTICATION`), runs in a span named `hubspot.<operation>`
//! (`otel.name`) with W3C trace context injected into the request, records
//! `spoke_hubspot_requests_total{endpoint,status}` and `spoke_hubspot_request_duration_seconds{endpoint}`,
//! and retries per [`RetryPolicy`]. Tokens never appear in Debug output, logs, spans or errors.

mod account;
mod associations;
mod budget;
mod client;
mod de;
pub mod endpoints;
mod error;
mod oauth;
mod objects;
mod properties;
mod retry;
mod search;
mod token;

pub use account::{AccountDetails, Owner, User};
pub use associations::{
    ASSOCIATIONS_READ_LIMIT, AssociatedRecord, AssociationCategory, AssociationResult,
    AssociationSpec, AssociationType, NO_ASSOCIATIONS_FOUND, RecordAssociations,
    engagement_type_id, type_ids,
};
pub use budget::{Budget, BudgetLimits, CallKind, LocalBudget, NoBudget};
pub use client::{ClientConfig, DEFAULT_API_BASE, DEFAULT_APP_BASE, HubSpotClient, PortalClient};
pub use error::{ApiError, Error, ErrorDetail, InvalidOption, RateLimitPolicy, Result};
pub use oauth::{OAuthCredentials, OAuthTokenSource, TokenInfo, TokenSet, TokenTypeHint};
pub use objects::{
    BATCH_LIMIT, BatchError, BatchReadRequest, BatchResult, CreateInput, CrmObject, GetOptions,
    InlineAssociation, LIST_PAGE_LIMIT, ListOptions, ObjectType, Page, Properties, RecordRef,
    UpdateInput,
};
pub use properties::{
    ModificationMetadata, Pipeline, PipelineStage, PropertyDefinition, PropertyListOptions,
    PropertyOption,
};
pub use retry::RetryPolicy;
pub use search::{
    Filter, FilterGroup, MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS_TOTAL, Operator,
    SEARCH_PAGE_LIMIT, SEARCH_RESULT_CAP, SearchPage, SearchRequest, Sort, SortDirection,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use token::{StaticToken, TokenSource};
