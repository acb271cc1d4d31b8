//! Every HubSpot endpoint this client calls, in one list: operation name (span `hubspot.<operation>`,
//! metric label `endpoint`), method, path template and which limit it counts against.

use http::Method;

use crate::budget::CallKind;

/// One HubSpot endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Short operation name, e.g. `batch_create`.
    pub operation: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Path template with placeholders, e.g. `/crm/v3/objects/{objectType}/batch/create`.
    pub template: &'static str,
    /// Which budget it draws from.
    pub kind: CallKind,
    /// Whether repeating it after an ambiguous network failure cannot create duplicates.
    pub idempotent: bool,
}

macro_rules! endpoint {
    ($name:ident, $op:literal, $method:ident, $tmpl:literal, $kind:ident, $idem:literal) => {
        #[doc = concat!("`", stringify!($method), " ", $tmpl, "`")]
        pub static $name: Endpoint = Endpoint {
            operation: $op,
            method: Method::$method,
            template: $tmpl,
            kind: CallKind::$kind,
            idempotent: $idem,
        };
    };
}

endpoint!(
    OAUTH_TOKEN,
    "oauth_token",
    POST,
    "/oauth/v3/token",
    Standard,
    true
);
endpoint!(
    OAUTH_INTROSPECT,
    "oauth_introspect",
    POST,
    "/oauth/v3/token/introspect",
    Standard,
    true
);
endpoint!(
    OAUTH_REVOKE,
    "oauth_revoke",
    POST,
    "/oauth/v3/token/revoke",
    Standard,
    true
);
endpoint!(
    ACCOUNT_DETAILS,
    "account_details",
    GET,
    "/account-info/v3/details",
    Standard,
    true
);
endpoint!(
    USERS_LIST,
    "users_list",
    GET,
    "/settings/v3/users",
    Standard,
    true
);
endpoint!(
    OWNERS_LIST,
    "owners_list",
    GET,
    "/crm/v3/owners",
    Standard,
    true
);
endpoint!(
    OWNERS_GET,
    "owners_get",
    GET,
    "/crm/v3/owners/{ownerId}",
    Standard,
    true
);
endpoint!(
    PROPERTIES_LIST,
    "properties_list",
    GET,
    "/crm/v3/properties/{objectType}",
    Standard,
    true
);
endpoint!(
    PROPERTIES_GET,
    "properties_get",
    GET,
    "/crm/v3/properties/{objectType}/{propertyName}",
    Standard,
    true
);
endpoint!(
    PIPELINES_LIST,
    "pipelines_list",
    GET,
    "/crm/v3/pipelines/{objectType}",
    Standard,
    true
);
endpoint!(
    OBJECTS_LIST,
    "objects_list",
    GET,
    "/crm/v3/objects/{objectType}",
    Standard,
    true
);
endpoint!(
    OBJECTS_GET,
    "objects_get",
    GET,
    "/crm/v3/objects/{objectType}/{objectId}",
    Standard,
    true
);
endpoint!(
    OBJECTS_CREATE,
    "objects_create",
    POST,
    "/crm/v3/objects/{objectType}",
    Standard,
    false
);
endpoint!(
    OBJECTS_BATCH_READ,
    "batch_read",
    POST,
    "/crm/v3/objects/{objectType}/batch/read",
    Standard,
    true
);
endpoint!(
    OBJECTS_BATCH_CREATE,
    "batch_create",
    POST,
    "/crm/v3/objects/{objectType}/batch/create",
    Standard,
    false
);
endpoint!(
    OBJECTS_BATCH_UPDATE,
    "batch_update",
    POST,
    "/crm/v3/objects/{objectType}/batch/update",
    Standard,
    true
);
endpoint!(
    OBJECTS_BATCH_ARCHIVE,
    "batch_archive",
    POST,
    "/crm/v3/objects/{objectType}/batch/archive",
    Standard,
    true
);
endpoint!(
    OBJECTS_SEARCH,
    "search",
    POST,
    "/crm/v3/objects/{objectType}/search",
    Search,
    true
);
endpoint!(
    ASSOCIATION_DEFAULT,
    "associate_default",
    PUT,
    "/crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}",
    Standard,
    true
);
endpoint!(
    ASSOCIATION_BATCH_DEFAULT,
    "associate_default_batch",
    POST,
    "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/associate/default",
    Standard,
    true
);

endpoint!(
    ASSOCIATIONS_BATCH_READ,
    "associations_batch_read",
    POST,
    "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read",
    Standard,
    true
);

/// All endpoints, for documentation and dashboards.
pub static ALL: &[&Endpoint] = &[
    &OAUTH_TOKEN,
    &OAUTH_INTROSPECT,
    &OAUTH_REVOKE,
    &ACCOUNT_DETAILS,
    &USERS_LIST,
    &OWNERS_LIST,
    &OWNERS_GET,
    &PROPERTIES_LIST,
    &PROPERTIES_GET,
    &PIPELINES_LIST,
    &OBJECTS_LIST,
    &OBJECTS_GET,
    &OBJECTS_CREATE,
    &OBJECTS_BATCH_READ,
    &OBJECTS_BATCH_CREATE,
    &OBJECTS_BATCH_UPDATE,
    &OBJECTS_BATCH_ARCHIVE,
    &OBJECTS_SEARCH,
    &ASSOCIATION_DEFAULT,
    &ASSOCIATION_BATCH_DEFAULT,
    &ASSOCIATIONS_BATCH_READ,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_unique_and_templates_absolute() {
        let mut ops: Vec<&str> = ALL.iter().map(|e| e.operation).collect();
        ops.sort_unstable();
        let before = ops.len();
        ops.dedup();
        assert_eq!(before, ops.len(), "duplicate operation names");
        assert!(ALL.iter().all(|e| e.template.starts_with('/')));
        assert_eq!(OBJECTS_SEARCH.kind, CallKind::Search);
        assert!(!OBJECTS_BATCH_CREATE.idempotent);
    }
}
