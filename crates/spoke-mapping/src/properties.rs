//! The portal's property definitions: fetched through the org's connection, cached in Postgres
//! with a TTL (and refreshable), and the facts validation and compilation need from them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spoke_connection_client::ConnectionClient;
use spoke_hubspot::{HubSpotClient, ObjectType, PortalClient, PropertyDefinition};
use spoke_proto::mapping::v1 as pm;

use crate::error::Result;
use crate::store;

/// Number properties holding money although the portal does not flag them with a currency
/// symbol (HubSpot's standard ones).
const CURRENCY_PROPERTIES: &[&str] = &[
    "annualrevenue",
    "total_revenue",
    "amount",
    "recent_deal_amount",
    "total_money_raised",
    "hs_arr",
    "hs_mrr",
    "hs_tcv",
    "hs_acv",
];

/// One property as Spoke keeps it (a subset of HubSpot's definition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyInfo {
    /// Internal name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Data type (string, number, date, datetime, enumeration, bool, phone_number).
    pub property_type: String,
    /// UI field type.
    pub field_type: String,
    /// Group name.
    pub group_name: String,
    /// Options: (label, internal value, hidden).
    pub options: Vec<(String, String, bool)>,
    /// Unique values enforced.
    pub has_unique_value: bool,
    /// Calculated by HubSpot.
    pub calculated: bool,
    /// Values cannot be written.
    pub read_only: bool,
    /// Standard (HubSpot-defined) rather than custom.
    pub hubspot_defined: bool,
    /// Holds an amount of money.
    pub currency: bool,
}

impl PropertyInfo {
    /// From HubSpot's definition.
    pub fn from_definition(d: &PropertyDefinition) -> Self {
        let read_only = d.modification_metadata.is_some_and(|m| m.read_only_value);
        let currency = d.property_type == "number"
            && (d.show_currency_symbol == Some(true)
                || CURRENCY_PROPERTIES.contains(&d.name.as_str()));
        Self {
            name: d.name.clone(),
            label: d.label.clone(),
            property_type: d.property_type.clone(),
            field_type: d.field_type.clone(),
            group_name: d.group_name.clone().unwrap_or_default(),
            options: d
                .options
                .iter()
                .map(|o| (o.label.clone(), o.value.clone(), o.hidden))
                .collect(),
            has_unique_value: d.has_unique_value,
            calculated: d.calculated,
            read_only,
            hubspot_defined: d.hubspot_defined.unwrap_or(false),
            currency,
        }
    }

    /// Values can be written by an integration.
    pub fn writable(&self) -> bool {
        !self.calculated && !self.read_only
    }

    /// Internal values of the options.
    pub fn option_values(&self) -> Vec<String> {
        self.options.iter().map(|(_, v, _)| v.clone()).collect()
    }

    /// The proto form.
    pub fn to_proto(&self) -> pm::HubSpotProperty {
        pm::HubSpotProperty {
            name: self.name.clone(),
            label: self.label.clone(),
            r#type: self.property_type.clone(),
            field_type: self.field_type.clone(),
            group_name: self.group_name.clone(),
            options: self
                .options
                .iter()
                .map(|(label, value, hidden)| pm::PropertyOption {
                    label: label.clone(),
                    value: value.clone(),
                    hidden: *hidden,
                })
                .collect(),
            has_unique_value: self.has_unique_value,
            calculated: self.calculated,
            read_only: self.read_only,
            hubspot_defined: self.hubspot_defined,
        }
    }
}

/// A portal's properties of one object, by name, with when and where they were read.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalProperties {
    /// HubSpot portal id.
    pub portal_id: i64,
    /// When HubSpot was read.
    pub fetched_at: DateTime<Utc>,
    /// Properties by internal name.
    pub by_name: BTreeMap<String, PropertyInfo>,
}

/// Reaches an org's portal through the connection service (tokens, budget).
#[derive(Clone, Debug)]
pub struct Portals {
    connection: ConnectionClient,
    hubspot: HubSpotClient,
}

impl Portals {
    /// Portals reached with `hubspot` and tokens from `connection`.
    pub fn new(connection: ConnectionClient, hubspot: HubSpotClient) -> Self {
        Self {
            connection,
            hubspot,
        }
    }

    /// The org's portal; FAILED_PRECONDITION when not connected or a reconnect is needed.
    pub async fn portal(&self, org: &str) -> Result<PortalClient> {
        Ok(self.connection.portal(&self.hubspot, org).await?)
    }
}

/// Property lists per org and object, cached in the `property_cache` table.
#[derive(Clone, Debug)]
pub struct PropertyCatalog {
    pool: sqlx::PgPool,
    portals: Portals,
    ttl: Duration,
}

impl PropertyCatalog {
    /// A catalog over `pool` reading HubSpot through `portals`, caching for `ttl`.
    pub fn new(pool: sqlx::PgPool, portals: Portals, ttl: Duration) -> Self {
        Self { pool, portals, ttl }
    }

    /// The portals handle (Test Mapping writes through it).
    pub fn portals(&self) -> &Portals {
        &self.portals
    }

    /// The properties of `object`: from the cache when younger than the TTL (and `refresh` is
    /// false), else read from HubSpot and stored.
    #[tracing::instrument(name = "mapping.properties", skip(self), fields(org = %org, object = object.path()))]
    pub async fn get(
        &self,
        org: &str,
        object: ObjectType,
        refresh: bool,
    ) -> Result<PortalProperties> {
        if !refresh
            && let Some(cached) = store::cached_properties(&self.pool, org, object.path()).await?
        {
            let age = Utc::now().signed_duration_since(cached.fetched_at);
            if age.to_std().is_ok_and(|a| a < self.ttl) {
                metrics::counter!("spoke_mapping_property_reads_total", "source" => "cache")
                    .increment(1);
                return Ok(cached);
            }
        }
        let portal = self.portals.portal(org).await?;
        let defs = portal
            .properties(object, &spoke_hubspot::PropertyListOptions::default())
            .await
            .inspect_err(|_| {
                metrics::counter!("spoke_mapping_property_reads_total", "source" => "hubspot_error")
                    .increment(1);
            })?;
        metrics::counter!("spoke_mapping_property_reads_total", "source" => "hubspot").increment(1);
        let fetched = PortalProperties {
            portal_id: i64::try_from(portal.portal_id()).unwrap_or_default(),
            fetched_at: Utc::now(),
            by_name: defs
                .iter()
                .filter(|d| !d.archived)
                .map(|d| (d.name.clone(), PropertyInfo::from_definition(d)))
                .collect(),
        };
        store::put_properties(&self.pool, org, object.path(), &fetched).await?;
        Ok(fetched)
    }
}
