//! Property definitions (`/crm/v3/properties`) and pipelines with stages (`/crm/v3/pipelines`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::client::{PortalClient, Request};
use crate::endpoints;
use crate::error::Result;
use crate::objects::ObjectType;

/// An enumeration option. Writes must use [`PropertyOption::value`] (case-sensitive), not the label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    /// Display label.
    pub label: String,
    /// Internal value.
    pub value: String,
    /// Sort position.
    #[serde(default)]
    pub display_order: Option<i64>,
    /// Hidden from forms.
    #[serde(default)]
    pub hidden: bool,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// What HubSpot lets integrations change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModificationMetadata {
    /// The property can be archived.
    pub archivable: bool,
    /// The definition cannot be changed.
    pub read_only_definition: bool,
    /// Values cannot be written.
    pub read_only_value: bool,
    /// Options cannot be changed.
    pub read_only_options: Option<bool>,
}

/// A property definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    /// Internal name.
    pub name: String,
    /// Display label.
    #[serde(default)]
    pub label: String,
    /// Data type: `string`, `number`, `date`, `datetime`, `enumeration`, `bool`, `phone_number`.
    #[serde(rename = "type", default)]
    pub property_type: String,
    /// UI field type: `text`, `textarea`, `select`, `radio`, `checkbox`, `booleancheckbox`, `number`, ….
    #[serde(default)]
    pub field_type: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Property group.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Options of enumeration properties.
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    /// Computed by HubSpot; never writable.
    #[serde(default)]
    pub calculated: bool,
    /// Options come from an external source (e.g. owners).
    #[serde(default)]
    pub external_options: bool,
    /// Values must be unique across records.
    #[serde(default)]
    pub has_unique_value: bool,
    /// Hidden in the UI.
    #[serde(default)]
    pub hidden: bool,
    /// Defined by HubSpot rather than the portal.
    #[serde(default)]
    pub hubspot_defined: Option<bool>,
    /// Whether the property appears in forms.
    #[serde(default)]
    pub form_field: Option<bool>,
    /// Modification rules.
    #[serde(default)]
    pub modification_metadata: Option<ModificationMetadata>,
    /// Archived.
    #[serde(default)]
    pub archived: bool,
    /// For number properties: shown as currency.
    #[serde(default)]
    pub show_currency_symbol: Option<bool>,
    /// The object an id-valued property refers to (e.g. `OWNER`).
    #[serde(default)]
    pub referenced_object_type: Option<String>,
}

impl PropertyDefinition {
    /// Whether integrations may write values (not calculated, not read-only).
    pub fn is_writable(&self) -> bool {
        !self.calculated
            && !self
                .modification_metadata
                .is_some_and(|m| m.read_only_value)
    }

    /// Whether values must be one of [`PropertyDefinition::options`].
    pub fn is_enumeration(&self) -> bool {
        self.property_type == "enumeration"
    }

    /// The allowed internal values of an enumeration.
    pub fn option_values(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(|o| o.value.as_str())
    }
}

/// Options of property listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyListOptions {
    /// List archived properties instead of active ones.
    pub archived: bool,
}

/// A pipeline stage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStage {
    /// Stage id (the value of `dealstage`).
    pub id: String,
    /// Label.
    pub label: String,
    /// Position.
    #[serde(default)]
    pub display_order: i64,
    /// Archived.
    #[serde(default)]
    pub archived: bool,
    /// Metadata such as `probability` and `isClosed` (values as strings).
    #[serde(default, deserialize_with = "crate::de::properties")]
    pub metadata: BTreeMap<String, String>,
}

/// A pipeline with its stages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// Pipeline id (the value of `pipeline`).
    pub id: String,
    /// Label.
    pub label: String,
    /// Position.
    #[serde(default)]
    pub display_order: i64,
    /// Archived.
    #[serde(default)]
    pub archived: bool,
    /// Stages in order.
    #[serde(default)]
    pub stages: Vec<PipelineStage>,
}

#[derive(Deserialize)]
struct Results<T> {
    #[serde(default = "Vec::new")]
    results: Vec<T>,
}

impl PortalClient {
    /// Lists the property definitions of an object type.
    pub async fn properties(
        &self,
        object: ObjectType,
        options: &PropertyListOptions,
    ) -> Result<Vec<PropertyDefinition>> {
        let mut req = Request::new(&endpoints::PROPERTIES_LIST, &[object.path()]);
        if options.archived {
            req = req.query("archived", "true");
        }
        let r: Results<PropertyDefinition> = self.call(req).await?;
        Ok(r.results)
    }

    /// One property definition; `Ok(None)` on 404.
    pub async fn property(
        &self,
        object: ObjectType,
        name: &str,
    ) -> Result<Option<PropertyDefinition>> {
        match self
            .call(Request::new(
                &endpoints::PROPERTIES_GET,
                &[object.path(), name],
            ))
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The pipelines of an object type (deals) with their stages.
    pub async fn pipelines(&self, object: ObjectType) -> Result<Vec<Pipeline>> {
        let r: Results<Pipeline> = self
            .call(Request::new(&endpoints::PIPELINES_LIST, &[object.path()]))
            .await?;
        Ok(r.results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_definitions_decode_with_metadata() {
        let p: PropertyDefinition = serde_json::from_str(
            r#"{"name":"industry","label":"Industry","type":"enumeration","fieldType":"select","groupName":"companyinformation",
                "options":[{"label":"Accounting","value":"ACCOUNTING","displayOrder":0,"hidden":false}],
                "calculated":false,"externalOptions":false,"hasUniqueValue":false,"hidden":false,"hubspotDefined":true,
                "modificationMetadata":{"archivable":false,"readOnlyDefinition":true,"readOnlyValue":false},"formField":true}"#,
        )
        .unwrap();
        assert!(p.is_enumeration());
        assert!(p.is_writable());
        assert_eq!(p.option_values().collect::<Vec<_>>(), vec!["ACCOUNTING"]);
        let ro: PropertyDefinition = serde_json::from_str(
            r#"{"name":"hs_object_id","label":"Record ID","type":"number","fieldType":"number","calculated":false,
                "modificationMetadata":{"archivable":false,"readOnlyDefinition":true,"readOnlyValue":true}}"#,
        )
        .unwrap();
        assert!(!ro.is_writable());
        let calc: PropertyDefinition = serde_json::from_str(
            r#"{"name":"x","type":"number","fieldType":"calculation_equation","calculated":true}"#,
        )
        .unwrap();
        assert!(!calc.is_writable());
    }

    #[test]
    fn pipelines_decode() {
        let p: Pipeline = serde_json::from_str(
            r#"{"id":"default","label":"Sales Pipeline","displayOrder":0,"archived":false,
                "stages":[{"id":"appointmentscheduled","label":"Appointment Scheduled","displayOrder":0,"archived":false,
                "metadata":{"isClosed":"false","probability":"0.2"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            p.stages[0].metadata.get("probability").map(String::as_str),
            Some("0.2")
        );
    }
}
