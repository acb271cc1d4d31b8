//! How a run reaches an org's HubSpot portal: through the connection service (tokens and the
//! shared portal budget), or, for development and benchmarks, a configured private-app token.

use std::collections::HashMap;
use std::sync::Arc;

use spoke_connection_client::ConnectionClient;
use spoke_hubspot::{HubSpotClient, PortalClient, StaticToken};

use crate::config::StaticPortal;
use crate::error::{Error, Result};

/// A ready portal handle plus what record links need.
#[derive(Clone)]
pub struct Portal {
    /// The HubSpot client for this portal.
    pub client: PortalClient,
    /// HubSpot UI domain for record links.
    pub ui_domain: String,
}

/// Hands out portal handles by org.
#[async_trait::async_trait]
pub trait PortalAccess: Send + Sync + 'static {
    /// The org's portal; REAUTH_REQUIRED → [`Error::ReauthRequired`], none → [`Error::NotConnected`].
    async fn portal(&self, org: &str) -> Result<Portal>;
}

/// Portals through the connection service.
pub struct ConnectionPortals {
    connection: ConnectionClient,
    hubspot: HubSpotClient,
}

impl ConnectionPortals {
    /// Over a connection client and a HubSpot client (built with the connection's budget).
    pub fn new(connection: ConnectionClient, hubspot: HubSpotClient) -> Self {
        Self {
            connection,
            hubspot,
        }
    }
}

#[async_trait::async_trait]
impl PortalAccess for ConnectionPortals {
    async fn portal(&self, org: &str) -> Result<Portal> {
        let info = self.connection.connection(org).await?;
        info.usable()?;
        Ok(Portal {
            client: self
                .hubspot
                .portal(info.portal_id, self.connection.token_source(org)),
            ui_domain: info.ui_domain,
        })
    }
}

/// Portals reached with configured private-app tokens.
pub struct StaticPortals {
    hubspot: HubSpotClient,
    portals: HashMap<String, (u64, String)>,
}

impl StaticPortals {
    /// Over a HubSpot client and the configured portals.
    pub fn new(hubspot: HubSpotClient, portals: &[StaticPortal]) -> Self {
        Self {
            hubspot,
            portals: portals
                .iter()
                .map(|p| (p.org.clone(), (p.portal_id, p.token.clone())))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl PortalAccess for StaticPortals {
    async fn portal(&self, org: &str) -> Result<Portal> {
        let (portal_id, token) = self.portals.get(org).ok_or_else(|| {
            Error::NotConnected(format!(
                "not connected: org {org} has no configured portal (filtering.static_portals)"
            ))
        })?;
        let client = self
            .hubspot
            .portal(*portal_id, Arc::new(StaticToken::new(token.clone())));
        let details = client.account_details().await?;
        Ok(Portal {
            client,
            ui_domain: details.ui_domain.unwrap_or_default(),
        })
    }
}
