//! The connection service's state and the helpers its domain modules share: HubSpot access as the
//! service itself, connection-to-proto conversion and events.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use spoke_hubspot::{HubSpotClient, OAuthCredentials};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::connection::v1 as pb;
use spoke_proto::events::v1::{self as ev, connection_event::Kind};
use sqlx::{PgConnection, PgPool};

use crate::config::Config;
use crate::crypto::{StateSigner, TokenCipher};
use crate::error::{Error, Result};
use crate::store::{self, ConnRow, status};

/// Per-connection refresh locks keyed by (org, user).
pub(crate) type RefreshLocks =
    parking_lot::Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

/// Everything the domain operations need. Shared behind an `Arc`.
pub struct Domain {
    pub(crate) pool: PgPool,
    pub(crate) hubspot: HubSpotClient,
    pub(crate) credentials: OAuthCredentials,
    pub(crate) cipher: TokenCipher,
    pub(crate) signer: StateSigner,
    pub(crate) config: Config,
    pub(crate) redirect_uri: String,
    /// One lock per (org, user) connection so concurrent token callers of one replica refresh once.
    pub(crate) refresh_locks: RefreshLocks,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain").finish_non_exhaustive()
    }
}

/// Plain `Timestamp` from a time.
pub(crate) fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The HubSpot plan a portal's reported account type (or tier label) names.
pub fn plan_of(account_type: &str) -> pb::HubSpotPlan {
    let t = account_type.to_ascii_uppercase();
    if t.contains("ENTERPRISE") {
        pb::HubSpotPlan::Enterprise
    } else if t.contains("PROFESSIONAL") || t.contains("PRO") && !t.contains("PROD") {
        pb::HubSpotPlan::Professional
    } else if t.contains("STARTER") || t.contains("BASIC") {
        pb::HubSpotPlan::Starter
    } else if t.contains("FREE") {
        pb::HubSpotPlan::Free
    } else {
        pb::HubSpotPlan::Unspecified
    }
}

impl ConnRow {
    /// The API view of the row.
    pub fn to_proto(&self) -> pb::Connection {
        let status = match self.status.as_str() {
            status::CONNECTED => pb::ConnectionStatus::Connected,
            status::REAUTH_REQUIRED => pb::ConnectionStatus::ReauthRequired,
            _ => pb::ConnectionStatus::Disconnected,
        };
        pb::Connection {
            portal_id: self.portal_id,
            status: status as i32,
            enabled: self.enabled,
            export_account_mode: if self.user_account_mode {
                pb::ExportAccountMode::UserAccount
            } else {
                pb::ExportAccountMode::ServiceAccount
            } as i32,
            primary_admin_user_id: self.primary_admin_user_id.clone(),
            primary_admin_email: self.primary_admin_email.clone(),
            service_account_hubspot_user_id: self.hubspot_user_id.clone(),
            service_account_email: self.hubspot_email.clone(),
            service_account_owner_id: self.owner_id.clone(),
            account_type: self.account_type.clone(),
            plan: self.plan,
            time_zone: self.time_zone.clone(),
            company_currency: self.company_currency.clone(),
            ui_domain: self.ui_domain.clone(),
            scopes: self.scopes.clone(),
            connected_at: Some(ts(self.connected_at)),
            updated_at: Some(ts(self.updated_at)),
            status_message: self.status_message.clone(),
        }
    }
}

/// Writes a connection event in the caller's transaction.
pub(crate) async fn emit(
    tx: &mut PgConnection,
    org: &str,
    portal: i64,
    actor: &str,
    kind: Kind,
) -> Result<()> {
    let msg = ev::ConnectionEvent {
        org_id: org.to_owned(),
        portal_id: portal,
        occurred_at: Some(ts(Utc::now())),
        actor: actor.to_owned(),
        kind: Some(kind),
    };
    Outbox::enqueue(tx, topics::CONNECTION_EVENTS, org, &msg).await?;
    Ok(())
}

impl Domain {
    /// The org's connection row, or FAILED_PRECONDITION "not connected".
    pub(crate) async fn live_connection(
        &self,
        conn: &mut PgConnection,
        org: &str,
        lock: bool,
    ) -> Result<ConnRow> {
        match store::connection(conn, org, lock).await? {
            Some(c) if c.status != status::DISCONNECTED => Ok(c),
            _ => Err(not_connected(org)),
        }
    }

    /// A HubSpot handle for the org's portal acting with the service account's tokens.
    pub(crate) fn portal_client(
        self: &Arc<Self>,
        org: &str,
        portal: i64,
    ) -> spoke_hubspot::PortalClient {
        self.hubspot.portal(
            u64::try_from(portal).unwrap_or_default(),
            Arc::new(crate::tokens::OwnTokenSource {
                domain: self.clone(),
                org: org.to_owned(),
            }),
        )
    }

    /// Transaction start.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// FAILED_PRECONDITION "not connected".
pub(crate) fn not_connected(org: &str) -> Error {
    Error::FailedPrecondition(format!(
        "{}: org {org} has no HubSpot connection; an admin must connect HubSpot first",
        spoke_connection_client::wire::NOT_CONNECTED
    ))
}

/// Maps HubSpot failures during a user-facing call: retriable ones become UNAVAILABLE.
pub(crate) fn hubspot_err(what: &str, e: spoke_hubspot::Error) -> Error {
    if e.is_retriable() {
        Error::Unavailable(format!(
            "HubSpot unreachable while {what}: {e}; retry later"
        ))
    } else {
        Error::HubSpot(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_account_type_or_tier() {
        let cases = [
            ("PROFESSIONAL", pb::HubSpotPlan::Professional),
            ("marketing_pro", pb::HubSpotPlan::Professional),
            ("ENTERPRISE", pb::HubSpotPlan::Enterprise),
            ("STARTER", pb::HubSpotPlan::Starter),
            ("basic", pb::HubSpotPlan::Starter),
            ("FREE", pb::HubSpotPlan::Free),
            ("STANDARD", pb::HubSpotPlan::Unspecified),
            ("DEVELOPER_TEST", pb::HubSpotPlan::Unspecified),
            ("", pb::HubSpotPlan::Unspecified),
        ];
        for (t, want) in cases {
            assert_eq!(plan_of(t), want, "{t}");
        }
    }
}
