//! Portal-level reads: account details, users (Super Admin check) and owners.

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use serde::Deserialize;

use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::Result;
use crate::objects::{NextPage, Page, Paging, paged};

/// `GET /account-info/v3/details`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetails {
    /// Portal (hub) id.
    pub portal_id: u64,
    /// E.g. `STANDARD`, `DEVELOPER_TEST`, `SANDBOX`.
    #[serde(default)]
    pub account_type: Option<String>,
    /// IANA time zone, e.g. `US/Eastern`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Company currency code, e.g. `USD`.
    #[serde(default)]
    pub company_currency: Option<String>,
    /// Further currencies.
    #[serde(default)]
    pub additional_currencies: Vec<String>,
    /// UTC offset, e.g. `-05:00`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// UTC offset in milliseconds.
    #[serde(default)]
    pub utc_offset_milliseconds: Option<i64>,
    /// Domain of the HubSpot UI for record links, e.g. `app.hubspot.com`.
    #[serde(default)]
    pub ui_domain: Option<String>,
    /// Data hosting location, e.g. `na1`.
    #[serde(default)]
    pub data_hosting_location: Option<String>,
}

/// A user of the portal (`/settings/v3/users`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id.
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub id: String,
    /// Login e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Role id, if any.
    #[serde(default, deserialize_with = "crate::de::opt_string_or_number")]
    pub role_id: Option<String>,
    /// Primary team id, if any.
    #[serde(default, deserialize_with = "crate::de::opt_string_or_number")]
    pub primary_team_id: Option<String>,
    /// Whether the user is a Super Admin (required to connect the integration).
    #[serde(default)]
    pub super_admin: bool,
}

/// A CRM owner (`/crm/v3/owners`). Set `hubspot_owner_id` to [`Owner::id`], not the user id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// Owner id.
    #[serde(deserialize_with = "crate::de::string_or_number")]
    pub id: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// The user behind the owner, if any.
    #[serde(default, deserialize_with = "crate::de::opt_string_or_number")]
    pub user_id: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Archived (deactivated) owner.
    #[serde(default)]
    pub archived: bool,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    results: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

impl<T> RawPage<T> {
    fn into_page(self) -> Page<T> {
        Page {
            results: self.results,
            next_after: self
                .paging
                .and_then(|p| p.next)
                .map(|NextPage { after }| after),
        }
    }
}

impl PortalClient {
    /// Reads the portal's account details.
    pub async fn account_details(&self) -> Result<AccountDetails> {
        self.call(Request::new(&endpoints::ACCOUNT_DETAILS, &[]))
            .await
    }

    /// Reads one page of users.
    pub async fn users_page(&self, limit: u32, after: Option<&str>) -> Result<Page<User>> {
        let mut req = Request::new(&endpoints::USERS_LIST, &[]).query("limit", limit.to_string());
        if let Some(a) = after {
            req = req.query("after", a);
        }
        let raw: RawPage<User> = self.call(req).await?;
        Ok(raw.into_page())
    }

    /// Streams all users.
    pub fn users(&self) -> impl Stream<Item = Result<User>> + Send + 'static {
        let portal = self.clone();
        paged(move |after| {
            let portal = portal.clone();
            async move { portal.users_page(100, after.as_deref()).await }
        })
    }

    /// Finds a user by e-mail (case-insensitive), e.g. to check that the connecting user is a Super Admin.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let wanted = email.trim().to_ascii_lowercase();
        let users = self.users();
        futures::pin_mut!(users);
        while let Some(u) = users.try_next().await? {
            if u.email.as_deref().map(|e| e.trim().to_ascii_lowercase()) == Some(wanted.clone()) {
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// Reads one page of owners, optionally filtered by e-mail.
    pub async fn owners_page(
        &self,
        email: Option<&str>,
        limit: u32,
        after: Option<&str>,
        archived: bool,
    ) -> Result<Page<Owner>> {
        let mut req = Request::new(&endpoints::OWNERS_LIST, &[]).query("limit", limit.to_string());
        if let Some(e) = email {
            req = req.query("email", e);
        }
        if let Some(a) = after {
            req = req.query("after", a);
        }
        if archived {
            req = req.query("archived", "true");
        }
        let raw: RawPage<Owner> = self.call(req).await?;
        Ok(raw.into_page())
    }

    /// Streams all active owners.
    pub fn owners(&self) -> impl Stream<Item = Result<Owner>> + Send + 'static {
        let portal = self.clone();
        paged(move |after| {
            let portal = portal.clone();
            async move { portal.owners_page(None, 100, after.as_deref(), false).await }
        })
    }

    /// The active owner with this e-mail, if any.
    pub async fn owner_by_email(&self, email: &str) -> Result<Option<Owner>> {
        let page = self.owners_page(Some(email), 100, None, false).await?;
        let wanted = email.trim().to_ascii_lowercase();
        Ok(page.results.into_iter().find(|o| {
            o.email.as_deref().map(|e| e.trim().to_ascii_lowercase()) == Some(wanted.clone())
        }))
    }

    /// An owner by id; `Ok(None)` on 404.
    pub async fn owner(&self, owner_id: &str) -> Result<Option<Owner>> {
        match self
            .call(Request::new(&endpoints::OWNERS_GET, &[owner_id]))
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_users_and_owners_decode() {
        let a: AccountDetails = serde_json::from_str(
            r#"{"portalId":62515,"accountType":"STANDARD","timeZone":"US/Eastern","companyCurrency":"USD",
                "additionalCurrencies":[],"utcOffset":"-05:00","utcOffsetMilliseconds":-18000000,"uiDomain":"app.hubspot.com","dataHostingLocation":"na1"}"#,
        )
        .unwrap();
        assert_eq!(a.portal_id, 62515);
        assert_eq!(a.ui_domain.as_deref(), Some("app.hubspot.com"));
        let u: User =
            serde_json::from_str(r#"{"id":"7","email":"a@x.com","roleId":null,"superAdmin":true}"#)
                .unwrap();
        assert!(u.super_admin);
        let o: Owner = serde_json::from_str(
            r#"{"id":"41","email":"a@x.com","firstName":"A","lastName":"B","userId":7,"createdAt":"2024-01-01T00:00:00Z","archived":false}"#,
        )
        .unwrap();
        assert_eq!(o.user_id.as_deref(), Some("7"));
    }
}
