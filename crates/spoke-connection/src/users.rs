//! Org users, their HubSpot owner mapping (auto by email, manual, reset) and record ownership.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use spoke_proto::connection::v1 as pb;
use spoke_proto::events::v1::{self as ev, connection_event::Kind};

use crate::domain::{Domain, emit, hubspot_err, ts};
use crate::error::{Error, Result};
use crate::store::{self, UserRow};

/// A HubSpot owner reduced to what mappings keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// Owner id.
    pub id: String,
    /// HubSpot user id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// "First Last".
    pub name: String,
}

/// Normalises an email for matching (trimmed, lower-case).
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The owner whose email equals the user's (case-insensitive).
pub fn match_owner<'a>(email: &str, owners: &'a HashMap<String, OwnerRef>) -> Option<&'a OwnerRef> {
    let k = email_key(email);
    if k.is_empty() { None } else { owners.get(&k) }
}

impl UserRow {
    /// The API view.
    pub fn to_proto(&self) -> pb::UserMapping {
        pb::UserMapping {
            user: Some(pb::OrgUser {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                display_name: self.display_name.clone(),
                admin: self.admin,
            }),
            hubspot_owner_id: self.owner_id.clone(),
            hubspot_user_id: self.hubspot_user_id.clone(),
            hubspot_email: self.hubspot_email.clone(),
            hubspot_name: self.hubspot_name.clone(),
            status: self.mapping_status,
            updated_at: Some(ts(self.mapping_updated_at)),
        }
    }
}

fn owner_ref(o: spoke_hubspot::Owner) -> OwnerRef {
    let name = [
        o.first_name.unwrap_or_default(),
        o.last_name.unwrap_or_default(),
    ]
    .join(" ")
    .trim()
    .to_owned();
    OwnerRef {
        id: o.id,
        user_id: o.user_id.unwrap_or_default(),
        email: o.email.unwrap_or_default(),
        name,
    }
}

impl Domain {
    /// The portal's active owners keyed by normalised email.
    async fn owners(self: &Arc<Self>, org: &str, portal: i64) -> Result<HashMap<String, OwnerRef>> {
        let client = self.portal_client(org, portal);
        let owners: Vec<spoke_hubspot::Owner> = client
            .owners()
            .try_collect()
            .await
            .map_err(|e| token_or_hubspot("reading the HubSpot owners", e))?;
        Ok(owners
            .into_iter()
            .map(owner_ref)
            .filter(|o| !o.email.is_empty())
            .map(|o| (email_key(&o.email), o))
            .collect())
    }

    /// Adds/updates/removes org users; returns (inserted, updated, removed).
    pub async fn upsert_users(
        &self,
        org: &str,
        users: &[pb::OrgUser],
        removed: &[String],
    ) -> Result<(i32, i32, i32)> {
        let mut tx = self.begin().await?;
        let (mut ins, mut upd, mut rem) = (0, 0, 0);
        for u in users {
            let (i, c) = store::upsert_user(
                &mut tx,
                org,
                &u.user_id,
                u.email.trim(),
                &u.display_name,
                u.admin,
            )
            .await?;
            ins += i32::from(i);
            upd += i32::from(c);
        }
        for id in removed {
            rem += i32::from(store::remove_user(&mut tx, org, id).await?);
        }
        tx.commit().await?;
        Ok((ins, upd, rem))
    }

    /// Sets or clears mappings by hand; owners must exist in the portal.
    pub async fn set_mappings(
        self: &Arc<Self>,
        org: &str,
        changes: &[pb::UserMappingChange],
    ) -> Result<Vec<pb::UserMapping>> {
        let c = {
            let mut conn = self.pool.acquire().await?;
            self.live_connection(&mut conn, org, false).await?
        };
        let owners = if changes.iter().any(|ch| !ch.hubspot_owner_id.is_empty()) {
            self.owners(org, c.portal_id).await?
        } else {
            HashMap::new()
        };
        let by_id: HashMap<&str, &OwnerRef> = owners.values().map(|o| (o.id.as_str(), o)).collect();
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(changes.len());
        for ch in changes {
            if store::user(&mut tx, org, &ch.user_id).await?.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "changes.user_id: unknown user {:?}",
                    ch.user_id
                )));
            }
            if ch.hubspot_owner_id.is_empty() {
                store::set_mapping(
                    &mut tx,
                    org,
                    &ch.user_id,
                    "",
                    "",
                    "",
                    "",
                    pb::MappingStatus::NotMapped as i32,
                )
                .await?;
            } else {
                let o = by_id.get(ch.hubspot_owner_id.as_str()).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "changes.hubspot_owner_id: {:?} is not an active owner of portal {}",
                        ch.hubspot_owner_id, c.portal_id
                    ))
                })?;
                store::set_mapping(
                    &mut tx,
                    org,
                    &ch.user_id,
                    &o.id,
                    &o.user_id,
                    &o.email,
                    &o.name,
                    pb::MappingStatus::MappedManual as i32,
                )
                .await?;
            }
            if let Some(u) = store::user(&mut tx, org, &ch.user_id).await? {
                out.push(u.to_proto());
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Rebuilds every mapping from the portal's owners by email; returns (mapped, unmapped).
    pub async fn reset_mappings(self: &Arc<Self>, org: &str, actor: &str) -> Result<(i32, i32)> {
        let c = {
            let mut conn = self.pool.acquire().await?;
            self.live_connection(&mut conn, org, false).await?
        };
        let owners = self.owners(org, c.portal_id).await?;
        let mut tx = self.begin().await?;
        let (mut mapped, mut unmapped) = (0, 0);
        for u in store::users(&mut tx, org).await? {
            match match_owner(&u.email, &owners) {
                Some(o) => {
                    store::set_mapping(
                        &mut tx,
                        org,
                        &u.user_id,
                        &o.id,
                        &o.user_id,
                        &o.email,
                        &o.name,
                        pb::MappingStatus::MappedAuto as i32,
                    )
                    .await?;
                    mapped += 1;
                }
                None => {
                    store::set_mapping(
                        &mut tx,
                        org,
                        &u.user_id,
                        "",
                        "",
                        "",
                        "",
                        pb::MappingStatus::NotMapped as i32,
                    )
                    .await?;
                    unmapped += 1;
                }
            }
        }
        emit(
            &mut tx,
            org,
            c.portal_id,
            actor,
            Kind::UserMappingReset(ev::connection_event::UserMappingReset { mapped }),
        )
        .await?;
        tx.commit().await?;
        Ok((mapped, unmapped))
    }

    /// Maps one user by email when unmapped; an existing mapping is returned unchanged.
    pub async fn regenerate_mapping(
        self: &Arc<Self>,
        org: &str,
        user_id: &str,
    ) -> Result<pb::UserMapping> {
        let mut conn = self.pool.acquire().await?;
        let c = self.live_connection(&mut conn, org, false).await?;
        let u = store::user(&mut conn, org, user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown user {user_id:?} in this org")))?;
        drop(conn);
        if !u.owner_id.is_empty() {
            return Ok(u.to_proto());
        }
        let owners = self.owners(org, c.portal_id).await?;
        let mut conn = self.pool.acquire().await?;
        if let Some(o) = match_owner(&u.email, &owners) {
            store::set_mapping(
                &mut conn,
                org,
                user_id,
                &o.id,
                &o.user_id,
                &o.email,
                &o.name,
                pb::MappingStatus::MappedAuto as i32,
            )
            .await?;
        }
        let u = store::user(&mut conn, org, user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown user {user_id:?} in this org")))?;
        Ok(u.to_proto())
    }

    /// The owner id new records of `user_id` get, and where it came from. When the org has no
    /// mapping at all yet (first export), the mapping is built first.
    pub async fn resolve_owner(
        self: &Arc<Self>,
        org: &str,
        user_id: &str,
        email_hint: Option<&str>,
    ) -> Result<(String, pb::OwnerSource)> {
        let mut conn = self.pool.acquire().await?;
        let c = self.live_connection(&mut conn, org, false).await?;
        let user = store::user(&mut conn, org, user_id).await?;
        let none_mapped = store::mapped_count(&mut conn, org).await? == 0;
        drop(conn);
        let owner = match &user {
            Some(u) if !u.owner_id.is_empty() => Some(u.owner_id.clone()),
            Some(_) if none_mapped => {
                self.reset_mappings(org, "").await?;
                let mut conn = self.pool.acquire().await?;
                store::user(&mut conn, org, user_id)
                    .await?
                    .map(|u| u.owner_id)
                    .filter(|o| !o.is_empty())
            }
            Some(u) => {
                let owners = self.owners(org, c.portal_id).await?;
                match_owner(&u.email, &owners).map(|o| o.id.clone())
            }
            None => match email_hint.filter(|e| !e.trim().is_empty()) {
                Some(email) => {
                    let owners = self.owners(org, c.portal_id).await?;
                    match_owner(email, &owners).map(|o| o.id.clone())
                }
                None => {
                    return Err(Error::NotFound(format!(
                        "unknown user {user_id:?} in this org"
                    )));
                }
            },
        };
        if let Some(o) = owner {
            return Ok((o, pb::OwnerSource::UserMapping));
        }
        if c.owner_id.is_empty() {
            return Err(Error::FailedPrecondition(
                "the user is not mapped and the primary admin has no HubSpot owner; map the user or make the primary admin an owner in HubSpot".into(),
            ));
        }
        Ok((c.owner_id, pb::OwnerSource::PrimaryAdmin))
    }
}

fn token_or_hubspot(what: &str, e: spoke_hubspot::Error) -> Error {
    match e {
        spoke_hubspot::Error::Token { message, .. } => Error::FailedPrecondition(message),
        other => hubspot_err(what, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_match_by_email_case_insensitively() {
        let owners: HashMap<String, OwnerRef> =
            [("ada@example.com", "501"), ("bob@example.com", "502")]
                .into_iter()
                .map(|(e, id)| {
                    (
                        email_key(e),
                        OwnerRef {
                            id: id.into(),
                            user_id: String::new(),
                            email: e.into(),
                            name: String::new(),
                        },
                    )
                })
                .collect();
        let cases = [
            ("Ada@Example.com", Some("501")),
            ("  bob@example.COM ", Some("502")),
            ("carol@example.com", None),
            ("", None),
        ];
        for (email, want) in cases {
            assert_eq!(
                match_owner(email, &owners).map(|o| o.id.as_str()),
                want,
                "{email}"
            );
        }
    }
}
