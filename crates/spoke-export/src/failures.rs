//! Turning HubSpot's error answers into per-record messages a person can act on, and classifying
//! them into what the writer does next.

use spoke_hubspot::{ApiError, BatchError, Error, ErrorDetail};

/// What the writer does with a failed HubSpot batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// HubSpot rejected the whole batch because of some input: split it until the bad one is
    /// isolated (400 validation, 409 conflict).
    Split,
    /// A create may have been applied (timeout, lost connection, 500/502/504): look the records
    /// up by unique key before creating again.
    Ambiguous,
    /// Not applied; try again later (rate limits, 503, 423 after the client's own retries).
    RetryLater,
    /// The connection must be re-authorised: the job stops.
    Reauth,
    /// Every input of the call fails with this message.
    Fail(String),
}

/// Classifies an error of a batch create/update call.
pub fn classify(e: &Error) -> Disposition {
    if e.is_reauth_required() {
        return Disposition::Reauth;
    }
    if let Some(api) = e.api() {
        if matches!(api.status, 400 | 409) {
            return Disposition::Split;
        }
        if api.status == 401 {
            return Disposition::Reauth;
        }
    }
    if e.may_have_been_applied() {
        return Disposition::Ambiguous;
    }
    if e.is_retriable() {
        return Disposition::RetryLater;
    }
    Disposition::Fail(message(e))
}

/// A per-record message for an error about exactly one input.
pub fn message(e: &Error) -> String {
    match e.api() {
        Some(api) => api_message(api),
        None => format!("HubSpot could not be reached: {e}"),
    }
}

fn api_message(api: &ApiError) -> String {
    if !api.invalid_options.is_empty() {
        return api
            .invalid_options
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
    }
    if api.status == 409
        && let Some(id) = &api.existing_id
    {
        return format!("a HubSpot record with the same unique value already exists (id {id})");
    }
    let details: Vec<String> = api.errors.iter().filter_map(detail_message).collect();
    if !details.is_empty() {
        return details.join("; ");
    }
    if api.status == 403 {
        return format!(
            "HubSpot refused the write (403): {}; the connected user needs write access to this object",
            api.message
        );
    }
    format!(
        "HubSpot rejected the record ({}): {}",
        api.status, api.message
    )
}

fn detail_message(d: &ErrorDetail) -> Option<String> {
    let prop = d
        .context
        .get("propertyName")
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| d.location.clone().unwrap_or_default());
    let code = d.code.as_deref()?;
    Some(match code {
        "PROPERTY_DOESNT_EXIST" => format!(
            "property {prop} does not exist in HubSpot; an admin must fix the field mapping"
        ),
        "READ_ONLY_VALUE" => format!(
            "property {prop} is read-only in HubSpot; an admin must remove it from the field mapping"
        ),
        "INVALID_EMAIL" => format!("invalid email address for property {prop}: {}", d.message),
        "INVALID_INTEGER" | "INVALID_DATE" | "INVALID_LONG" | "INVALID_DOUBLE" => {
            format!("invalid value for property {prop}: {}", d.message)
        }
        _ => format!("{} ({prop})", d.message),
    })
}

/// A per-record message for one error of a 207 multi-status answer.
pub fn batch_error_message(e: &BatchError) -> String {
    let details: Vec<String> = e.errors.iter().filter_map(detail_message).collect();
    if !details.is_empty() {
        return details.join("; ");
    }
    match e.category.as_deref() {
        Some("OBJECT_NOT_FOUND") => {
            "the HubSpot record to update no longer exists (deleted or merged); export the profile again to create it".into()
        }
        _ => e.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn api(status: u16, body: &str) -> Error {
        Error::Api(Box::new(ApiError::from_response(
            "batch_create",
            status,
            None,
            body.as_bytes(),
        )))
    }

    #[test]
    fn classification() {
        let cases = [
            (
                api(
                    400,
                    r#"{"status":"error","message":"Property values were not valid","category":"VALIDATION_ERROR"}"#,
                ),
                Disposition::Split,
            ),
            (
                api(
                    409,
                    r#"{"status":"error","message":"Contact already exists. Existing ID: 12","category":"CONFLICT"}"#,
                ),
                Disposition::Split,
            ),
            (
                api(502, r#"{"status":"error","message":"bad gateway"}"#),
                Disposition::Ambiguous,
            ),
            (
                api(503, r#"{"status":"error","message":"unavailable"}"#),
                Disposition::RetryLater,
            ),
            (
                api(
                    429,
                    r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
                ),
                Disposition::RetryLater,
            ),
            (
                api(
                    401,
                    r#"{"status":"error","message":"expired","category":"EXPIRED_AUTHENTICATION"}"#,
                ),
                Disposition::Reauth,
            ),
            (
                Error::Timeout {
                    operation: "batch_create",
                    timeout: std::time::Duration::from_secs(1),
                },
                Disposition::Ambiguous,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e), want, "{e}");
        }
    }

    #[test]
    fn messages_name_the_property() {
        let e = api(
            400,
            r#"{"status":"error","message":"Property values were not valid: [...]","category":"VALIDATION_ERROR",
               "errors":[{"message":"Tech was not one of the allowed options: [COMPUTER_SOFTWARE, TECHNOLOGY]","code":"INVALID_OPTION","context":{"propertyName":["industry"]}}]}"#,
        );
        let m = message(&e);
        assert!(m.contains("industry") && m.contains("Tech"), "{m}");
        let e = api(
            400,
            r#"{"status":"error","message":"x","category":"VALIDATION_ERROR","errors":[{"message":"nope","code":"PROPERTY_DOESNT_EXIST","context":{"propertyName":["zi_score"]}}]}"#,
        );
        assert_eq!(
            message(&e),
            "property zi_score does not exist in HubSpot; an admin must fix the field mapping"
        );
        let e = api(
            409,
            r#"{"status":"error","message":"Contact already exists. Existing ID: 77","category":"CONFLICT"}"#,
        );
        assert!(message(&e).contains("77"));
        let be = BatchError {
            category: Some("OBJECT_NOT_FOUND".into()),
            message: "Could not get some CONTACT objects".into(),
            context: BTreeMap::from([("ids".to_string(), vec!["5".to_string()])]),
            ..BatchError::default()
        };
        assert!(batch_error_message(&be).contains("no longer exists"));
    }
}
