//! Each service's local view of the orgs' HubSpot connections, kept from
//! `spoke.connection.events.v1` (table `connection_mirror` in the service's schema).
//!
//! Events may arrive late or twice; an event older than the row it would change is ignored, so
//! the mirror converges on the newest state whatever the delivery order within an org.

use spoke_proto::events::v1::ConnectionEvent;
use spoke_proto::events::v1::connection_event::Kind;
use sqlx::PgConnection;

/// Connection status as mirrored.
pub mod status {
    /// Connected with valid tokens.
    pub const CONNECTED: &str = "connected";
    /// HubSpot rejected the refresh token; a reconnect is needed.
    pub const REAUTH_REQUIRED: &str = "reauth_required";
    /// Disconnected by the primary admin.
    pub const DISCONNECTED: &str = "disconnected";
    /// The integration was deleted.
    pub const DELETED: &str = "deleted";
}

/// The mirrored state of one org.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MirroredConnection {
    /// Org id.
    pub org_id: String,
    /// HubSpot portal id.
    pub portal_id: i64,
    /// One of [`status`].
    pub status: String,
    /// Integration enabled for users.
    pub enabled: bool,
    /// Exports use each user's own HubSpot connection.
    pub user_account: bool,
    /// HubSpot UI domain for record links.
    pub ui_domain: String,
}

/// Applies one connection event in the caller's transaction.
pub async fn apply(tx: &mut PgConnection, ev: &ConnectionEvent) -> sqlx::Result<()> {
    let at = ev
        .occurred_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_else(chrono::Utc::now);
    let Some(kind) = &ev.kind else {
        return Ok(());
    };
    // Only newer events change a row (`updated_at < $at`); ties are applied too (idempotent).
    match kind {
        Kind::Connected(c) => {
            sqlx::query(
                "INSERT INTO connection_mirror (org_id, portal_id, status, enabled, user_account, ui_domain, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (org_id) DO UPDATE SET portal_id = EXCLUDED.portal_id, status = EXCLUDED.status, \
                 enabled = EXCLUDED.enabled, user_account = EXCLUDED.user_account, \
                 ui_domain = EXCLUDED.ui_domain, updated_at = EXCLUDED.updated_at \
                 WHERE connection_mirror.updated_at <= EXCLUDED.updated_at",
            )
            .bind(&ev.org_id)
            .bind(ev.portal_id)
            .bind(status::CONNECTED)
            .bind(c.enabled)
            .bind(c.user_account)
            .bind(&c.ui_domain)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        Kind::ReconnectedToDifferentPortal(r) => {
            let c = Change {
                portal_id: Some(r.new_portal_id),
                status: Some(status::CONNECTED),
                ..Change::default()
            };
            update(tx, &ev.org_id, at, c).await?;
        }
        Kind::Disconnected(_) => {
            update(tx, &ev.org_id, at, status_change(status::DISCONNECTED)).await?
        }
        Kind::Deleted(_) => update(tx, &ev.org_id, at, status_change(status::DELETED)).await?,
        Kind::TokensRevoked(_) => {
            update(tx, &ev.org_id, at, status_change(status::REAUTH_REQUIRED)).await?
        }
        Kind::EnabledChanged(e) => {
            update(
                tx,
                &ev.org_id,
                at,
                Change {
                    enabled: Some(e.enabled),
                    ..Change::default()
                },
            )
            .await?
        }
        Kind::ExportAccountModeChanged(m) => {
            let c = Change {
                user_account: Some(m.user_account),
                ..Change::default()
            };
            update(tx, &ev.org_id, at, c).await?
        }
        Kind::PrimaryChanged(_) | Kind::UserConnectionChanged(_) | Kind::UserMappingReset(_) => {}
    }
    Ok(())
}

/// Changes of one event; `None` keeps the column.
#[derive(Default)]
struct Change<'a> {
    portal_id: Option<i64>,
    status: Option<&'a str>,
    enabled: Option<bool>,
    user_account: Option<bool>,
}

async fn update(
    tx: &mut PgConnection,
    org: &str,
    at: chrono::DateTime<chrono::Utc>,
    c: Change<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE connection_mirror SET portal_id = COALESCE($3, portal_id), status = COALESCE($4, status), \
         enabled = COALESCE($5, enabled), user_account = COALESCE($6, user_account), updated_at = $2 \
         WHERE org_id = $1 AND updated_at <= $2",
    )
    .bind(org)
    .bind(at)
    .bind(c.portal_id)
    .bind(c.status)
    .bind(c.enabled)
    .bind(c.user_account)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn status_change(status: &str) -> Change<'_> {
    Change {
        status: Some(status),
        ..Change::default()
    }
}

/// The mirrored connection of `org`, if the service has seen one.
pub async fn get(conn: &mut PgConnection, org: &str) -> sqlx::Result<Option<MirroredConnection>> {
    sqlx::query_as(
        "SELECT org_id, portal_id, status, enabled, user_account, ui_domain FROM connection_mirror WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(conn)
    .await
}

/// A consumer handler that only keeps the mirror; services that must react to connection
/// events (purge on delete, pause on revoked tokens) wrap [`apply`] in their own handler instead.
pub struct MirrorHandler;

#[async_trait::async_trait]
impl crate::kafka::EventHandler for MirrorHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &crate::kafka::InboundEvent,
    ) -> Result<(), crate::kafka::HandlerError> {
        let ev: ConnectionEvent = event.decode()?;
        apply(tx, &ev).await?;
        Ok(())
    }
}

/// The consumer spec of [`MirrorHandler`] on `spoke.connection.events.v1`.
pub fn consumer_spec() -> crate::kafka::ConsumerSpec {
    crate::kafka::ConsumerSpec {
        name: "connection-events".into(),
        topics: vec![crate::kafka::topics::CONNECTION_EVENTS],
        handler: std::sync::Arc::new(MirrorHandler),
    }
}
