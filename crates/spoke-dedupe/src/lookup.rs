//! HubSpot lookups for keys the match index does not know.
//!
//! - Emails: batch read of contacts with `idProperty=email`, 100 per call. Batch reads see writes
//!   at once (no search lag) and cost a standard call, not a search call.
//! - Domains: company search with one `domain IN (...)` filter (25 keys, each as `d`, `www.d`
//!   and their Unicode spellings: at most 100 values per call).
//! - Name + company: contact search with `firstname IN`, `lastname IN`, `company IN` (up to 100
//!   keys per call); HubSpot returns a superset (the cross product), which is narrowed here by
//!   building each result's key with the same spoke-match rules.
//!
//! Search calls go through the client's budget as `CallKind::Search`. Every result is turned back
//! into keys with spoke-match, so a record is a candidate only when its own normalized key equals
//! the exported record's key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use spoke_hubspot::{
    BatchReadRequest, CrmObject, Filter, FilterGroup, PortalClient, SearchRequest, Sort,
};
use spoke_match::{CompanyFields, ContactFields, KeyKind, MatchKey};

use crate::error::Result;
use crate::keys::Object;

/// Values per batch read or `IN` filter.
const CHUNK: usize = 100;
/// Domain keys per search: up to four spellings each stay within HubSpot's 100 `IN` values.
const DOMAIN_CHUNK: usize = 25;
/// Search page size (HubSpot's maximum).
const SEARCH_PAGE: u32 = 200;
/// Pages read per search before giving up on completeness (a key with more records than this is
/// already a duplicate in HubSpot; the first ones, oldest first, are enough).
const MAX_PAGES: usize = 5;

/// A HubSpot record found for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Record id.
    pub hubspot_id: String,
    /// When HubSpot created it.
    pub created_at: Option<DateTime<Utc>>,
    /// A few identifying properties for the review screen.
    pub display: BTreeMap<String, String>,
}

/// Properties read for companies.
const COMPANY_PROPERTIES: &[&str] = &["name", "domain", "website", "createdate"];
/// Properties read for contacts.
const CONTACT_PROPERTIES: &[&str] = &["email", "firstname", "lastname", "company", "createdate"];

fn properties(object: Object) -> Vec<String> {
    let list = match object {
        Object::Companies => COMPANY_PROPERTIES,
        Object::Contacts => CONTACT_PROPERTIES,
    };
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn hit(record: &CrmObject) -> Hit {
    let created_at = record.created_at.or_else(|| {
        record
            .property("createdate")
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|d| d.with_timezone(&Utc))
    });
    Hit {
        hubspot_id: record.id.clone(),
        created_at,
        display: record
            .properties
            .iter()
            .filter(|(k, v)| !v.is_empty() && k.as_str() != "hs_object_id")
            .take(10)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The keys a HubSpot record carries (same rules as exported records).
fn hubspot_keys(object: Object, record: &CrmObject) -> Vec<MatchKey> {
    match object {
        Object::Companies => {
            spoke_match::company_keys(&CompanyFields::from_hubspot(&record.properties))
                .keys
                .into_iter()
                .filter(|k| k.kind() == KeyKind::Domain)
                .collect()
        }
        Object::Contacts => {
            spoke_match::contact_keys(&ContactFields::from_hubspot(&record.properties)).keys
        }
    }
}

/// Files `records` under each wanted key they carry.
fn collect(
    object: Object,
    records: &[CrmObject],
    wanted: &BTreeSet<&MatchKey>,
    out: &mut BTreeMap<MatchKey, Vec<Hit>>,
) {
    for record in records.iter().filter(|r| !r.archived) {
        for key in hubspot_keys(object, record) {
            if wanted.contains(&key) {
                let hits = out.entry(key).or_default();
                if !hits.iter().any(|h| h.hubspot_id == record.id) {
                    hits.push(hit(record));
                }
            }
        }
    }
}

/// Looks up `keys` (all of one object) in HubSpot; returns hits per key, oldest first.
pub async fn find(
    portal: &PortalClient,
    object: Object,
    keys: &[MatchKey],
) -> Result<BTreeMap<MatchKey, Vec<Hit>>> {
    let mut out = BTreeMap::new();
    let emails: Vec<&MatchKey> = keys.iter().filter(|k| k.kind() == KeyKind::Email).collect();
    let domains: Vec<&MatchKey> = keys
        .iter()
        .filter(|k| k.kind() == KeyKind::Domain)
        .collect();
    let names: Vec<&MatchKey> = keys
        .iter()
        .filter(|k| k.kind() == KeyKind::NameCompany)
        .collect();
    for chunk in emails.chunks(CHUNK) {
        by_email(portal, chunk, &mut out).await?;
    }
    for chunk in domains.chunks(DOMAIN_CHUNK) {
        by_domain(portal, object, chunk, &mut out).await?;
    }
    for chunk in names.chunks(CHUNK) {
        by_name_company(portal, chunk, &mut out).await?;
    }
    for hits in out.values_mut() {
        hits.sort_by(|a, b| {
            (a.created_at.is_none(), a.created_at, &a.hubspot_id).cmp(&(
                b.created_at.is_none(),
                b.created_at,
                &b.hubspot_id,
            ))
        });
    }
    Ok(out)
}

async fn by_email(
    portal: &PortalClient,
    keys: &[&MatchKey],
    out: &mut BTreeMap<MatchKey, Vec<Hit>>,
) -> Result<()> {
    let ids: Vec<String> = keys
        .iter()
        .filter_map(|k| match k {
            MatchKey::Email(e) => Some(e.as_str().to_owned()),
            _ => None,
        })
        .collect();
    let request = BatchReadRequest {
        ids,
        properties: properties(Object::Contacts),
        id_property: Some("email".into()),
        archived: false,
    };
    let found = portal
        .batch_read(spoke_hubspot::ObjectType::Contacts, &request)
        .await?;
    // Missing emails come back as per-input errors (207); they simply have no hit.
    let wanted: BTreeSet<&MatchKey> = keys.iter().copied().collect();
    collect(Object::Contacts, &found.results, &wanted, out);
    Ok(())
}

async fn by_domain(
    portal: &PortalClient,
    object: Object,
    keys: &[&MatchKey],
    out: &mut BTreeMap<MatchKey, Vec<Hit>>,
) -> Result<()> {
    let mut values = BTreeSet::new();
    for key in keys {
        if let MatchKey::Domain(d) = key {
            // HubSpot compares the stored value as typed: ask for the usual spellings (IDN in
            // Unicode, a leading `www.`); results are narrowed by their normalized key anyway.
            for spelling in [d.as_str().to_owned(), d.to_unicode()] {
                values.insert(format!("www.{spelling}"));
                values.insert(spelling);
            }
        }
    }
    let filter = Filter::in_values("domain", values.into_iter().collect());
    search(
        portal,
        object,
        vec![FilterGroup::of(vec![filter])],
        keys,
        out,
    )
    .await
}

async fn by_name_company(
    portal: &PortalClient,
    keys: &[&MatchKey],
    out: &mut BTreeMap<MatchKey, Vec<Hit>>,
) -> Result<()> {
    let (mut firsts, mut lasts, mut companies) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for key in keys {
        if let MatchKey::NameCompany {
            first,
            last,
            company,
        } = key
        {
            firsts.insert(first.as_str().to_owned());
            lasts.insert(last.as_str().to_owned());
            companies.insert(company.as_str().to_owned());
        }
    }
    let group = FilterGroup::of(vec![
        Filter::in_values("firstname", firsts.into_iter().collect()),
        Filter::in_values("lastname", lasts.into_iter().collect()),
        Filter::in_values("company", companies.into_iter().collect()),
    ]);
    search(portal, Object::Contacts, vec![group], keys, out).await
}

async fn search(
    portal: &PortalClient,
    object: Object,
    groups: Vec<FilterGroup>,
    keys: &[&MatchKey],
    out: &mut BTreeMap<MatchKey, Vec<Hit>>,
) -> Result<()> {
    let wanted: BTreeSet<&MatchKey> = keys.iter().copied().collect();
    let mut request = SearchRequest {
        filter_groups: groups,
        sorts: vec![Sort::asc("createdate")],
        properties: properties(object),
        limit: SEARCH_PAGE,
        ..SearchRequest::default()
    };
    for _ in 0..MAX_PAGES {
        let page = portal.search(object.hubspot(), &request).await?;
        collect(object, &page.results, &wanted, out);
        match page.next_after {
            Some(after) => request.after = Some(after),
            None => break,
        }
    }
    Ok(())
}

/// How the check gets a HubSpot client for an org's portal.
#[async_trait::async_trait]
pub trait PortalAccess: Send + Sync + 'static {
    /// A client for the org's connected portal (service account tokens, shared portal budget).
    async fn portal(&self, org: &str) -> Result<PortalClient>;
}

/// [`PortalAccess`] through the connection service: its token source and portal budget.
#[derive(Debug, Clone)]
pub struct ConnectionPortals {
    /// The connection service client.
    pub connection: spoke_connection_client::ConnectionClient,
    /// The HubSpot client (built with the connection service's budget).
    pub hubspot: spoke_hubspot::HubSpotClient,
}

#[async_trait::async_trait]
impl PortalAccess for ConnectionPortals {
    async fn portal(&self, org: &str) -> Result<PortalClient> {
        Ok(self.connection.portal(&self.hubspot, org).await?)
    }
}
