//! Settings only admins change: the enabled toggle, export account mode, Disconnect (primary admin
//! only) and DeleteIntegration.

use std::sync::Arc;

use chrono::Utc;
use spoke_proto::connection::v1 as pb;
use spoke_proto::events::v1::{self as ev, connection_event::Kind};

use crate::domain::{Domain, emit};
use crate::error::{Error, Result};
use crate::store::{self, ConnRow, status};

/// Whether switching export account mode is allowed: user → service needs the integration off.
pub fn mode_switch_allowed(currently_user: bool, to_user: bool, enabled: bool) -> bool {
    !(currently_user && !to_user && enabled)
}

impl Domain {
    /// Turns the integration on or off.
    pub async fn set_enabled(&self, org: &str, actor: &str, enabled: bool) -> Result<ConnRow> {
        let mut tx = self.begin().await?;
        let mut c = self.live_connection(&mut tx, org, true).await?;
        if c.enabled != enabled {
            c.enabled = enabled;
            c.updated_at = Utc::now();
            store::upsert_connection(&mut tx, &c).await?;
            emit(
                &mut tx,
                org,
                c.portal_id,
                actor,
                Kind::EnabledChanged(ev::connection_event::EnabledChanged { enabled }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(c)
    }

    /// Chooses the export account mode.
    pub async fn set_export_mode(
        &self,
        org: &str,
        actor: &str,
        user_account: bool,
    ) -> Result<ConnRow> {
        let mut tx = self.begin().await?;
        let mut c = self.live_connection(&mut tx, org, true).await?;
        if !mode_switch_allowed(c.user_account_mode, user_account, c.enabled) {
            return Err(Error::FailedPrecondition(
                "switching from user account to service account: turn the integration off first"
                    .into(),
            ));
        }
        if c.user_account_mode != user_account {
            c.user_account_mode = user_account;
            c.updated_at = Utc::now();
            store::upsert_connection(&mut tx, &c).await?;
            emit(
                &mut tx,
                org,
                c.portal_id,
                actor,
                Kind::ExportAccountModeChanged(ev::connection_event::ExportAccountModeChanged {
                    user_account,
                }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(c)
    }

    /// Disconnects (primary admin only): revokes and deletes tokens, keeps settings.
    pub async fn disconnect(self: &Arc<Self>, org: &str, actor: &str) -> Result<ConnRow> {
        let mut tx = self.begin().await?;
        let mut c = self.live_connection(&mut tx, org, true).await?;
        if c.primary_admin_user_id != actor {
            return Err(Error::PermissionDenied(
                "only the primary admin may disconnect HubSpot; use Change User to become the primary admin first".into(),
            ));
        }
        if let Some(t) = store::token(&mut tx, org, "", false).await?
            && let Ok(refresh) = self.cipher.open(
                &crate::crypto::Sealed {
                    key_id: t.key_id.clone(),
                    bytes: t.refresh_token_ct.clone(),
                },
                &crate::tokens::context(org, "", "refresh"),
            )
            && let Err(e) = self
                .hubspot
                .revoke_refresh_token(&self.credentials, &refresh)
                .await
        {
            // The tokens are deleted anyway; HubSpot expires an unused refresh token on its own.
            tracing::warn!(org, error = %e, "revoking the refresh token at HubSpot failed");
        }
        store::delete_tokens(&mut tx, org, None).await?;
        c.status = status::DISCONNECTED.into();
        c.status_message = String::new();
        c.updated_at = Utc::now();
        store::upsert_connection(&mut tx, &c).await?;
        emit(
            &mut tx,
            org,
            c.portal_id,
            actor,
            Kind::Disconnected(ev::connection_event::Disconnected {}),
        )
        .await?;
        tx.commit().await?;
        self.update_reauth_gauge().await;
        Ok(c)
    }

    /// Deletes the integration (primary admin, or any admin when no primary admin remains).
    pub async fn delete_integration(&self, org: &str, actor: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(c) = store::connection(&mut tx, org, true).await? else {
            let deleted = store::delete_org(&mut tx, org).await?;
            tx.commit().await?;
            return Ok(deleted);
        };
        let primary_present = !c.primary_admin_user_id.is_empty()
            && store::user(&mut tx, org, &c.primary_admin_user_id)
                .await?
                .is_none_or(|u| u.admin);
        if primary_present && c.primary_admin_user_id != actor {
            return Err(Error::PermissionDenied(
                "only the primary admin may delete the integration".into(),
            ));
        }
        store::delete_org(&mut tx, org).await?;
        emit(
            &mut tx,
            org,
            c.portal_id,
            actor,
            Kind::Deleted(ev::connection_event::Deleted {}),
        )
        .await?;
        tx.commit().await?;
        self.update_reauth_gauge().await;
        Ok(true)
    }

    /// The connection for GetConnection.
    pub async fn get_connection(&self, org: &str) -> Result<pb::Connection> {
        store::connection_by_pool(&self.pool, org)
            .await?
            .map(|c| c.to_proto())
            .ok_or_else(|| Error::NotFound(format!("org {org} has never connected HubSpot")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_to_service_account_needs_the_integration_off() {
        // (currently user account, to user account, enabled, allowed)
        let cases = [
            (true, false, true, false),
            (true, false, false, true),
            (false, true, true, true),
            (false, false, true, true),
            (true, true, true, true),
        ];
        for (cur, to, en, want) in cases {
            assert_eq!(mode_switch_allowed(cur, to, en), want, "{cur} {to} {en}");
        }
    }
}
