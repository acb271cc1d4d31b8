//! The OAuth flows: connect, Change User and a user's own connection. States are signed, expire,
//! and are single-use; a retry with the same state and code returns the first result.

use std::sync::Arc;

use chrono::Utc;
use prost::Message;
use secrecy::SecretString;
use spoke_hubspot::{StaticToken, TokenTypeHint};
use spoke_proto::connection::v1 as pb;
use spoke_proto::events::v1::{self as ev, connection_event::Kind};
use tracing::Instrument;

use crate::crypto::{Flow, StateClaims, code_hash};
use crate::domain::{Domain, emit, hubspot_err, not_connected, plan_of, ts};
use crate::error::{Error, Result};
use crate::store::{self, ConnRow, StateRow, TokenRow, status};

/// Who starts a flow.
#[derive(Debug, Clone)]
pub struct Starter {
    /// Org.
    pub org: String,
    /// Provider user id.
    pub user_id: String,
    /// Provider email.
    pub email: String,
}

/// A started flow.
#[derive(Debug, Clone)]
pub struct Started {
    /// HubSpot authorize URL.
    pub authorize_url: String,
    /// Signed state.
    pub state: String,
    /// Expiry.
    pub expires_at: prost_types::Timestamp,
}

/// The result of completing any flow (the response of the matching Complete* RPC).
#[derive(Debug, Clone)]
pub enum Completed {
    /// CompleteConnect.
    Connect(pb::CompleteConnectResponse),
    /// CompleteChangePrimaryUser.
    ChangePrimary(pb::CompleteChangePrimaryUserResponse),
    /// CompleteUserConnect.
    User(pb::CompleteUserConnectResponse),
}

impl Completed {
    fn encode(&self) -> Vec<u8> {
        match self {
            Completed::Connect(r) => r.encode_to_vec(),
            Completed::ChangePrimary(r) => r.encode_to_vec(),
            Completed::User(r) => r.encode_to_vec(),
        }
    }

    fn decode(flow: Flow, bytes: &[u8]) -> Result<Self> {
        let bad =
            |e: prost::DecodeError| Error::Config(format!("stored flow result unreadable: {e}"));
        Ok(match flow {
            Flow::Connect => Completed::Connect(Message::decode(bytes).map_err(bad)?),
            Flow::ChangePrimary => Completed::ChangePrimary(Message::decode(bytes).map_err(bad)?),
            Flow::UserConnect => Completed::User(Message::decode(bytes).map_err(bad)?),
        })
    }

    /// Portal and return URL for the callback page.
    pub fn summary(&self) -> (i64, String) {
        match self {
            Completed::Connect(r) => (
                r.connection.as_ref().map_or(0, |c| c.portal_id),
                r.return_url.clone(),
            ),
            Completed::ChangePrimary(r) => (
                r.connection.as_ref().map_or(0, |c| c.portal_id),
                r.return_url.clone(),
            ),
            Completed::User(r) => (0, r.return_url.clone()),
        }
    }
}

/// What HubSpot says about the account that consented.
struct Consent {
    tokens: spoke_hubspot::TokenSet,
    portal_id: i64,
    hubspot_user_id: String,
    hubspot_email: String,
    owner_id: String,
    account: spoke_hubspot::AccountDetails,
}

impl Domain {
    /// Starts a flow: stores the state row and returns the authorize URL.
    pub async fn start_flow(
        &self,
        who: &Starter,
        flow: Flow,
        return_url: &str,
        allow_portal_change: bool,
    ) -> Result<Started> {
        if !return_url.is_empty()
            && !self
                .config
                .callback
                .allowed_return_urls
                .iter()
                .any(|p| return_url.starts_with(p.as_str()))
        {
            return Err(Error::InvalidArgument(
                "return_url: not on the allow-list (callback.allowed_return_urls); leave it empty for the default page".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let existing = store::connection(&mut tx, &who.org, false).await?;
        match flow {
            Flow::Connect => {
                if existing
                    .as_ref()
                    .is_some_and(|c| c.status != status::DISCONNECTED)
                {
                    return Err(Error::AlreadyExists(format!(
                        "org {} is already connected to HubSpot; use Change User to switch the connecting user",
                        who.org
                    )));
                }
            }
            Flow::ChangePrimary => {
                if existing
                    .as_ref()
                    .is_none_or(|c| c.status == status::DISCONNECTED)
                {
                    return Err(not_connected(&who.org));
                }
            }
            Flow::UserConnect => {
                let c = existing.ok_or_else(|| not_connected(&who.org))?;
                if c.status == status::DISCONNECTED {
                    return Err(not_connected(&who.org));
                }
                if !c.enabled {
                    return Err(Error::FailedPrecondition(
                        "the integration is turned off for this org; an admin must turn it on"
                            .into(),
                    ));
                }
                if !c.user_account_mode {
                    return Err(Error::FailedPrecondition(
                        "the org exports with the service account; users connect their own HubSpot only in user account mode".into(),
                    ));
                }
            }
        }
        let expires =
            Utc::now() + chrono::Duration::seconds(self.config.tokens.state_ttl_secs as i64);
        let claims = StateClaims {
            id: uuid::Uuid::now_v7(),
            org: who.org.clone(),
            sub: who.user_id.clone(),
            flow,
            exp: expires.timestamp(),
        };
        let state = self.signer.sign(&claims)?;
        store::insert_state(
            &mut tx,
            &StateRow {
                state_id: claims.id,
                org_id: who.org.clone(),
                user_id: who.user_id.clone(),
                user_email: who.email.clone(),
                flow: flow.as_str().into(),
                return_url: return_url.into(),
                allow_portal_change,
                expires_at: expires,
                used_at: None,
                code_hash: None,
                result: None,
            },
        )
        .await?;
        tx.commit().await?;
        let scopes: Vec<&str> = self
            .config
            .hubspot
            .scopes
            .iter()
            .map(String::as_str)
            .collect();
        let optional: Vec<&str> = self
            .config
            .hubspot
            .optional_scopes
            .iter()
            .map(String::as_str)
            .collect();
        let url = self.hubspot.authorize_url(
            &self.config.hubspot.client_id,
            &self.redirect_uri,
            &scopes,
            &optional,
            &state,
        );
        Ok(Started {
            authorize_url: url.to_string(),
            state,
            expires_at: ts(expires),
        })
    }

    /// Completes a flow. `caller` is `Some((org, user))` for gRPC (must be who started it) and `None`
    /// for the browser callback, where the signed state alone identifies them. `expected` restricts
    /// the flow (gRPC methods are per flow; the callback accepts any).
    pub async fn complete_flow(
        self: &Arc<Self>,
        code: &str,
        state: &str,
        caller: Option<(&str, &str)>,
        expected: Option<Flow>,
    ) -> Result<Completed> {
        if code.trim().is_empty() {
            return Err(Error::InvalidArgument("code: must not be empty".into()));
        }
        let claims = self.signer.verify(state, Utc::now().timestamp())?;
        if let Some(flow) = expected
            && flow != claims.flow
        {
            return Err(Error::InvalidArgument(format!(
                "state: belongs to the {} flow, not {}",
                claims.flow.as_str(),
                flow.as_str()
            )));
        }
        if let Some((org, user)) = caller
            && (org != claims.org || user != claims.sub)
        {
            return Err(Error::PermissionDenied(
                "only the admin who started this flow may complete it".into(),
            ));
        }
        let hash = code_hash(code);
        // Check for a replay before spending the code at HubSpot.
        {
            let mut tx = self.begin().await?;
            let row = store::state_for_update(&mut tx, claims.id)
                .await?
                .ok_or_else(|| Error::InvalidArgument("state: unknown state".into()))?;
            if let Some(done) = self.replayed(&row, &hash, claims.flow)? {
                return Ok(done);
            }
        }
        let consent = self
            .read_consent(code)
            .instrument(tracing::info_span!("connection.complete_flow", org = %claims.org, flow = claims.flow.as_str()))
            .await?;
        let mut tx = self.begin().await?;
        let row = store::state_for_update(&mut tx, claims.id)
            .await?
            .ok_or_else(|| Error::InvalidArgument("state: unknown state".into()))?;
        if let Some(done) = self.replayed(&row, &hash, claims.flow)? {
            return Ok(done);
        }
        let result = match claims.flow {
            Flow::Connect => self.finish_connect(&mut tx, &row, consent).await?,
            Flow::ChangePrimary => self.finish_change_primary(&mut tx, &row, consent).await?,
            Flow::UserConnect => self.finish_user_connect(&mut tx, &row, consent).await?,
        };
        store::mark_state_used(&mut tx, claims.id, &hash, &result.encode()).await?;
        tx.commit().await?;
        self.update_reauth_gauge().await;
        Ok(result)
    }

    fn replayed(&self, row: &StateRow, hash: &str, flow: Flow) -> Result<Option<Completed>> {
        if row.used_at.is_none() {
            return Ok(None);
        }
        match (&row.code_hash, &row.result) {
            (Some(h), Some(r)) if h == hash => Ok(Some(Completed::decode(flow, r)?)),
            _ => Err(Error::InvalidArgument(
                "state: replayed (this connect flow was already completed); start a new one".into(),
            )),
        }
    }

    /// Exchanges the code and reads who consented, in which portal, and whether they are a Super Admin.
    async fn read_consent(&self, code: &str) -> Result<Consent> {
        let tokens = self
            .hubspot
            .exchange_code(&self.credentials, code, &self.redirect_uri)
            .await
            .map_err(|e| {
                if e.is_retriable() {
                    hubspot_err("exchanging the authorization code", e)
                } else {
                    Error::InvalidArgument(format!("code: HubSpot rejected the authorization code ({e}); start the connect flow again"))
                }
            })?;
        let info = self
            .hubspot
            .introspect(
                &self.credentials,
                &tokens.access_token,
                TokenTypeHint::AccessToken,
            )
            .await
            .map_err(|e| hubspot_err("reading the token's account", e))?;
        let portal = info.hub_id.or(tokens.hub_id).ok_or_else(|| {
            Error::HubSpot(spoke_hubspot::Error::Decode {
                operation: "introspect",
                message: "no hub_id".into(),
            })
        })?;
        let user_id = info
            .user_id
            .or(tokens.user_id)
            .map(|u| u.to_string())
            .unwrap_or_default();
        let client = self.hubspot.portal(
            portal,
            Arc::new(StaticToken::new(
                secrecy::ExposeSecret::expose_secret(&tokens.access_token).to_owned(),
            )),
        );
        let account = client
            .account_details()
            .await
            .map_err(|e| hubspot_err("reading the account details", e))?;
        let email = info.user.clone().unwrap_or_default();
        let user = if email.is_empty() {
            None
        } else {
            client
                .user_by_email(&email)
                .await
                .map_err(|e| hubspot_err("reading the HubSpot users", e))?
        };
        let Some(user) = user.filter(|u| u.super_admin) else {
            return Err(Error::PermissionDenied(format!(
                "HubSpot user {email} is not a Super Admin of portal {portal}; ask a Super Admin of the portal to connect"
            )));
        };
        let owner_id = client
            .owner_by_email(&email)
            .await
            .map_err(|e| hubspot_err("reading the HubSpot owners", e))?
            .map(|o| o.id)
            .unwrap_or_default();
        Ok(Consent {
            tokens,
            portal_id: i64::try_from(portal).unwrap_or_default(),
            hubspot_user_id: if user_id.is_empty() { user.id } else { user_id },
            hubspot_email: email,
            owner_id,
            account,
        })
    }

    fn token_row(&self, org: &str, user: &str, c: &Consent) -> Result<TokenRow> {
        let now = Utc::now();
        let mut row = TokenRow {
            org_id: org.to_owned(),
            user_id: user.to_owned(),
            portal_id: c.portal_id,
            hubspot_user_id: c.hubspot_user_id.clone(),
            hubspot_email: c.hubspot_email.clone(),
            key_id: String::new(),
            access_token_ct: Vec::new(),
            refresh_token_ct: Vec::new(),
            expires_at: now + chrono::Duration::seconds(c.tokens.expires_in as i64),
            issued_at: now,
            status: status::CONNECTED.into(),
            connected_at: now,
        };
        let (a, r): (&SecretString, &SecretString) =
            (&c.tokens.access_token, &c.tokens.refresh_token);
        self.seal_tokens(&mut row, a, r)?;
        Ok(row)
    }

    async fn finish_connect(
        &self,
        tx: &mut sqlx::PgConnection,
        st: &StateRow,
        c: Consent,
    ) -> Result<Completed> {
        let org = &st.org_id;
        let previous = store::connection(tx, org, true).await?;
        if previous
            .as_ref()
            .is_some_and(|p| p.status != status::DISCONNECTED)
        {
            return Err(Error::AlreadyExists(format!(
                "org {org} is already connected to HubSpot"
            )));
        }
        let old_portal = previous
            .as_ref()
            .map(|p| p.portal_id)
            .filter(|p| *p != c.portal_id);
        if old_portal.is_some() && !st.allow_portal_change {
            return Err(Error::FailedPrecondition(format!(
                "HubSpot portal {} differs from the org's previous portal {}; start the connect flow with allow_portal_change to switch (user mappings are reset)",
                c.portal_id,
                old_portal.unwrap_or_default()
            )));
        }
        let now = Utc::now();
        let account_type = c.account.account_type.clone().unwrap_or_default();
        let row = ConnRow {
            org_id: org.clone(),
            portal_id: c.portal_id,
            status: status::CONNECTED.into(),
            status_message: String::new(),
            enabled: previous.as_ref().is_none_or(|p| p.enabled),
            user_account_mode: previous.as_ref().is_some_and(|p| p.user_account_mode),
            primary_admin_user_id: st.user_id.clone(),
            primary_admin_email: st.user_email.clone(),
            hubspot_user_id: c.hubspot_user_id.clone(),
            hubspot_email: c.hubspot_email.clone(),
            owner_id: c.owner_id.clone(),
            plan: plan_of(&account_type) as i32,
            account_type,
            time_zone: c.account.time_zone.clone().unwrap_or_default(),
            company_currency: c.account.company_currency.clone().unwrap_or_default(),
            ui_domain: c.account.ui_domain.clone().unwrap_or_default(),
            scopes: c.tokens.scopes.clone(),
            connected_at: previous
                .as_ref()
                .filter(|_| old_portal.is_none())
                .map_or(now, |p| p.connected_at),
            updated_at: now,
        };
        store::upsert_connection(tx, &row).await?;
        store::upsert_token(tx, &self.token_row(org, "", &c)?).await?;
        if let Some(old) = old_portal {
            store::clear_mappings(tx, org, pb::MappingStatus::NotMapped as i32).await?;
            emit(
                tx,
                org,
                old,
                &st.user_id,
                Kind::ReconnectedToDifferentPortal(
                    ev::connection_event::ReconnectedToDifferentPortal {
                        new_portal_id: c.portal_id,
                    },
                ),
            )
            .await?;
        }
        emit(
            tx,
            org,
            c.portal_id,
            &st.user_id,
            Kind::Connected(ev::connection_event::Connected {
                primary_admin_user_id: st.user_id.clone(),
                hubspot_user_id: c.hubspot_user_id.clone(),
                ui_domain: row.ui_domain.clone(),
                time_zone: row.time_zone.clone(),
                enabled: row.enabled,
                user_account: row.user_account_mode,
            }),
        )
        .await?;
        tracing::info!(org = %org, portal = c.portal_id, "HubSpot connected");
        Ok(Completed::Connect(pb::CompleteConnectResponse {
            connection: Some(row.to_proto()),
            portal_changed: old_portal.is_some(),
            return_url: st.return_url.clone(),
        }))
    }

    async fn finish_change_primary(
        &self,
        tx: &mut sqlx::PgConnection,
        st: &StateRow,
        c: Consent,
    ) -> Result<Completed> {
        let org = &st.org_id;
        let mut row = self.live_connection(tx, org, true).await?;
        if row.portal_id != c.portal_id {
            return Err(Error::FailedPrecondition(format!(
                "the HubSpot account belongs to portal {}, not the connected portal {}; sign in to HubSpot with an account of the connected portal",
                c.portal_id, row.portal_id
            )));
        }
        let previous = std::mem::replace(&mut row.primary_admin_user_id, st.user_id.clone());
        row.primary_admin_email = st.user_email.clone();
        row.hubspot_user_id = c.hubspot_user_id.clone();
        row.hubspot_email = c.hubspot_email.clone();
        row.owner_id = c.owner_id.clone();
        row.status = status::CONNECTED.into();
        row.status_message = String::new();
        row.updated_at = Utc::now();
        store::upsert_connection(tx, &row).await?;
        store::upsert_token(tx, &self.token_row(org, "", &c)?).await?;
        emit(
            tx,
            org,
            row.portal_id,
            &st.user_id,
            Kind::PrimaryChanged(ev::connection_event::PrimaryChanged {
                previous_user_id: previous.clone(),
                new_user_id: st.user_id.clone(),
                hubspot_user_id: c.hubspot_user_id.clone(),
            }),
        )
        .await?;
        Ok(Completed::ChangePrimary(
            pb::CompleteChangePrimaryUserResponse {
                connection: Some(row.to_proto()),
                previous_primary_admin_user_id: previous,
                return_url: st.return_url.clone(),
            },
        ))
    }

    async fn finish_user_connect(
        &self,
        tx: &mut sqlx::PgConnection,
        st: &StateRow,
        c: Consent,
    ) -> Result<Completed> {
        let org = &st.org_id;
        let row = self.live_connection(tx, org, false).await?;
        if row.portal_id != c.portal_id {
            return Err(Error::FailedPrecondition(format!(
                "the HubSpot account belongs to portal {}, not the org's portal {}",
                c.portal_id, row.portal_id
            )));
        }
        let t = self.token_row(org, &st.user_id, &c)?;
        store::upsert_token(tx, &t).await?;
        emit(
            tx,
            org,
            row.portal_id,
            &st.user_id,
            Kind::UserConnectionChanged(ev::connection_event::UserConnectionChanged {
                user_id: st.user_id.clone(),
                connected: true,
            }),
        )
        .await?;
        Ok(Completed::User(pb::CompleteUserConnectResponse {
            user_connection: Some(user_connection(&t)),
            return_url: st.return_url.clone(),
        }))
    }
}

/// The API view of a user's own connection.
pub(crate) fn user_connection(t: &TokenRow) -> pb::UserConnection {
    pb::UserConnection {
        user_id: t.user_id.clone(),
        hubspot_user_id: t.hubspot_user_id.clone(),
        hubspot_email: t.hubspot_email.clone(),
        status: if t.status == status::REAUTH_REQUIRED {
            pb::ConnectionStatus::ReauthRequired
        } else {
            pb::ConnectionStatus::Connected
        } as i32,
        connected_at: Some(ts(t.connected_at)),
    }
}
