//! Errors of the HubSpot client, including HubSpot's own error bodies parsed into fields a caller can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong when talking to HubSpot.
///
/// No variant ever carries an access or refresh token: messages are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// HubSpot answered with an error status (4xx/5xx) and, usually, its JSON error body.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The request never produced an HTTP response (connection refused/reset, DNS, TLS, body read).
    #[error("network error calling HubSpot {operation}: {message}")]
    Network {
        /// Operation name such as `batch_create`.
        operation: &'static str,
        /// What failed, without the URL (which may contain e-mail addresses).
        message: String,
        /// Whether the request may have reached HubSpot (false for connect errors).
        maybe_sent: bool,
    },
    /// The request did not complete within the configured timeout.
    #[error("HubSpot {operation} timed out after {timeout:?}")]
    Timeout {
        /// Operation name.
        operation: &'static str,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// A batch call was given more inputs than HubSpot accepts; split it before calling.
    #[error(
        "{operation}: {got} inputs given but HubSpot accepts at most {max} per call; split the batch"
    )]
    BatchTooLarge {
        /// Operation name.
        operation: &'static str,
        /// HubSpot's maximum.
        max: usize,
        /// Number of inputs given.
        got: usize,
    },
    /// The caller built a request HubSpot would reject (checked before sending).
    #[error("invalid HubSpot request: {0}")]
    InvalidRequest(String),
    /// HubSpot answered 2xx with a body that does not match the expected shape.
    #[error("unexpected response body from HubSpot {operation}: {message}")]
    Decode {
        /// Operation name.
        operation: &'static str,
        /// The deserialization problem.
        message: String,
    },
    /// The token source could not provide or refresh an access token.
    #[error("no usable HubSpot access token: {message}")]
    Token {
        /// Why; never contains the token itself.
        message: String,
        /// True when only a new OAuth consent can fix it (refresh token revoked or invalid).
        reauth_required: bool,
    },
    /// The portal budget refused or failed to grant permits.
    #[error("portal budget unavailable: {0}")]
    Budget(String),
    /// A search matched more records than HubSpot lets one query page through (10,000).
    #[error(
        "search matches {total} records but HubSpot pages through at most {cap} per query; narrow the filters or use the keyset stream"
    )]
    SearchCapReached {
        /// Total reported by HubSpot.
        total: u64,
        /// The cap (10,000).
        cap: u64,
    },
}

impl Error {
    /// Whether repeating the same call later can succeed (429 except daily, 423, 477, 5xx, network, timeout).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Api(api) => api.is_retriable(),
            Error::Network { .. } | Error::Timeout { .. } => true,
            Error::Budget(_) => true,
            _ => false,
        }
    }

    /// Whether HubSpot may have applied the request although it failed: the connection broke after
    /// sending, the call timed out, or a 500/502/504 came back (often from a gateway while the
    /// backend went on). Non-idempotent writes are not retried automatically in these cases.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            Error::Network { maybe_sent, .. } => *maybe_sent,
            Error::Timeout { .. } => true,
            Error::Api(api) => matches!(api.status, 500 | 502 | 504),
            _ => false,
        }
    }

    /// HubSpot's status code when this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(api) => Some(api.status),
            _ => None,
        }
    }

    /// The parsed API error, if HubSpot answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            _ => None,
        }
    }

    /// The id of the existing record named by a 409 conflict (`Existing ID: 123`).
    pub fn existing_id(&self) -> Option<&str> {
        self.api().and_then(|a| a.existing_id.as_deref())
    }

    /// True when the refresh token was rejected and the user must connect again.
    pub fn is_reauth_required(&self) -> bool {
        match self {
            Error::Token {
                reauth_required, ..
            } => *reauth_required,
            Error::Api(api) => api.is_bad_refresh_token(),
            _ => false,
        }
    }
}

impl From<ApiError> for Error {
    fn from(value: ApiError) -> Self {
        Error::Api(Box::new(value))
    }
}

/// Which HubSpot rate-limit policy a 429 reports (`policyName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitPolicy {
    /// The per-app, per-portal rolling ten-second window (e.g. 110 / 10 s).
    TenSecondlyRolling,
    /// Per-second limits, notably search (5 / s).
    Secondly,
    /// The daily cap of private apps; retrying before midnight does not help.
    Daily,
    /// A policy name this client does not know.
    Other(String),
}

impl RateLimitPolicy {
    /// Parses HubSpot's `policyName` (case-insensitive).
    pub fn parse(name: &str) -> Self {
        match name.trim().to_ascii_uppercase().as_str() {
            "TEN_SECONDLY_ROLLING" => Self::TenSecondlyRolling,
            "SECONDLY" => Self::Secondly,
            "DAILY" => Self::Daily,
            _ => Self::Other(name.to_owned()),
        }
    }

    /// HubSpot's spelling of the policy.
    pub fn as_str(&self) -> &str {
        match self {
            Self::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Self::Secondly => "SECONDLY",
            Self::Daily => "DAILY",
            Self::Other(s) => s,
        }
    }

    /// Guesses the policy from a 429 message when `policyName` is missing.
    fn from_message(message: &str) -> Option<Self> {
        let m = message.to_ascii_lowercase();
        if m.contains("ten_secondly") {
            Some(Self::TenSecondlyRolling)
        } else if m.contains("secondly") {
            Some(Self::Secondly)
        } else if m.contains("daily") {
            Some(Self::Daily)
        } else {
            None
        }
    }
}

impl fmt::Display for RateLimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of HubSpot's `errors[]` array.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Machine code such as `INVALID_OPTION`, `PROPERTY_DOESNT_EXIST`, `READ_ONLY_VALUE`.
    pub code: Option<String>,
    /// Finer classification when HubSpot gives one.
    pub sub_category: Option<String>,
    /// Where in the request the problem is (`in`), e.g. a property name.
    #[serde(rename = "in")]
    pub location: Option<String>,
    /// Key → values context (e.g. `propertyName: ["industry"]`).
    #[serde(deserialize_with = "crate::de::string_lists")]
    pub context: BTreeMap<String, Vec<String>>,
}

/// An enumeration value HubSpot rejected, with the values it would have accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOption {
    /// Property internal name, e.g. `industry`.
    pub property: String,
    /// The rejected value, when HubSpot names it.
    pub value: Option<String>,
    /// Allowed internal option values, when HubSpot lists them.
    pub allowed: Vec<String>,
}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "invalid option \"{v}\" for property {}", self.property)?,
            None => write!(f, "invalid option for property {}", self.property)?,
        }
        if !self.allowed.is_empty() {
            write!(f, "; valid: {}", self.allowed.join(", "))?;
        }
        Ok(())
    }
}

/// HubSpot's error response, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Operation that failed, e.g. `batch_create`.
    pub operation: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// HubSpot's `category`, e.g. `VALIDATION_ERROR`, `CONFLICT`, `EXPIRED_AUTHENTICATION`, `RATE_LIMITS`.
    pub category: Option<String>,
    /// HubSpot's `subCategory`, when present.
    pub sub_category: Option<String>,
    /// HubSpot's `message` (or a status description when the body was not JSON).
    pub message: String,
    /// HubSpot's `correlationId`, to quote to HubSpot support.
    pub correlation_id: Option<String>,
    /// HubSpot's `errors[]`.
    pub errors: Vec<ErrorDetail>,
    /// HubSpot's top-level `context`.
    pub context: BTreeMap<String, Vec<String>>,
    /// For 429: the policy that was hit.
    pub policy: Option<RateLimitPolicy>,
    /// For 409 conflicts: the id after `Existing ID:`.
    pub existing_id: Option<String>,
    /// For validation errors: rejected enumeration values.
    pub invalid_options: Vec<InvalidOption>,
    /// `Retry-After` header in seconds, when sent.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HubSpot {} returned {}", self.operation, self.status)?;
        if let Some(c) = &self.category {
            write!(f, " {c}")?;
        }
        if let Some(p) = &self.policy {
            write!(f, " ({p})")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.invalid_options.is_empty() {
            let parts: Vec<String> = self
                .invalid_options
                .iter()
                .map(ToString::to_string)
                .collect();
            write!(f, " [{}]", parts.join("; "))?;
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " (correlationId {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The raw JSON error body; every field optional because HubSpot's shapes vary by endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawErrorBody {
    status: Option<String>,
    message: Option<String>,
    correlation_id: Option<String>,
    category: Option<String>,
    sub_category: Option<String>,
    errors: Vec<ErrorDetail>,
    #[serde(deserialize_with = "crate::de::string_lists")]
    context: BTreeMap<String, Vec<String>>,
    policy_name: Option<String>,
    error_type: Option<String>,
    // OAuth endpoints may answer in RFC 6749 style.
    error: Option<String>,
    #[serde(rename = "error_description")]
    error_description: Option<String>,
}

impl ApiError {
    /// Builds an error from a status, its `Retry-After` and the response body.
    pub fn from_response(
        operation: &'static str,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let raw: RawErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let message = raw
            .message
            .clone()
            .or_else(|| raw.error_description.clone())
            .or_else(|| {
                // Non-JSON bodies (proxies, HTML error pages) are summarised, not echoed in full.
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                (!text.is_empty() && !text.starts_with('{'))
                    .then(|| text.chars().take(200).collect::<String>())
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        // v1 OAuth answers carry the code in `status` (e.g. BAD_REFRESH_TOKEN); keep it as the category.
        let category = raw
            .category
            .clone()
            .or_else(|| raw.error_type.clone())
            .or_else(|| raw.error.clone())
            .or_else(|| raw.status.clone().filter(|s| s != "error"));
        let policy = if status == 429 {
            raw.policy_name
                .as_deref()
                .map(RateLimitPolicy::parse)
                .or_else(|| RateLimitPolicy::from_message(&message))
        } else {
            None
        };
        let existing_id = if status == 409 {
            parse_existing_id(&message).or_else(|| {
                raw.errors
                    .iter()
                    .find_map(|e| parse_existing_id(&e.message))
            })
        } else {
            None
        };
        let invalid_options = parse_invalid_options(&message, &raw.errors);
        ApiError {
            operation,
            status,
            category,
            sub_category: raw.sub_category,
            message,
            correlation_id: raw.correlation_id,
            errors: raw.errors,
            context: raw.context,
            policy,
            existing_id,
            invalid_options,
            retry_after,
        }
    }

    /// Whether the same call can succeed later.
    pub fn is_retriable(&self) -> bool {
        match self.status {
            429 => self.policy != Some(RateLimitPolicy::Daily),
            423 | 477 | 500 | 502 | 503 | 504 => true,
            _ => false,
        }
    }

    /// A 401 because the access token expired (refreshing helps).
    pub fn is_expired_authentication(&self) -> bool {
        self.status == 401 && self.category.as_deref() == Some("EXPIRED_AUTHENTICATION")
    }

    /// The token endpoint rejected the refresh token (revoked, unknown or from another app).
    pub fn is_bad_refresh_token(&self) -> bool {
        matches!(self.status, 400 | 401)
            && matches!(
                self.category.as_deref(),
                Some("BAD_REFRESH_TOKEN") | Some("invalid_grant")
            )
    }
}

/// Extracts `123` from messages such as `Contact already exists. Existing ID: 123`.
pub(crate) fn parse_existing_id(message: &str) -> Option<String> {
    let idx = message.find("Existing ID:")?;
    let rest = message[idx + "Existing ID:".len()..].trim_start();
    let id: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!id.is_empty()).then_some(id)
}

/// Finds rejected enumeration values in `errors[]` entries and in the JSON list HubSpot embeds in
/// `Property values were not valid: [...]` messages.
fn parse_invalid_options(message: &str, errors: &[ErrorDetail]) -> Vec<InvalidOption> {
    let mut found = Vec::new();
    for e in errors {
        if e.code.as_deref() != Some("INVALID_OPTION") {
            continue;
        }
        let property = ["propertyName", "property", "name"]
            .iter()
            .find_map(|k| e.context.get(*k).and_then(|v| v.first().cloned()))
            .or_else(|| e.location.clone())
            .unwrap_or_default();
        let mut allowed = ["allowedOptions", "allowedValues", "options"]
            .iter()
            .find_map(|k| e.context.get(*k).cloned())
            .unwrap_or_default();
        if allowed.is_empty() {
            allowed = allowed_values_from_message(&e.message);
        }
        let value = ["value", "invalidValue"]
            .iter()
            .find_map(|k| e.context.get(*k).and_then(|v| v.first().cloned()))
            .or_else(|| rejected_value_from_message(&e.message));
        found.push(InvalidOption {
            property,
            value,
            allowed,
        });
    }
    if let Some(idx) = message.find('[')
        && let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(&message[idx..])
    {
        for item in items {
            if item.get("error").and_then(|v| v.as_str()) != Some("INVALID_OPTION") {
                continue;
            }
            let property = item
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            if found.iter().any(|f: &InvalidOption| f.property == property) {
                continue;
            }
            let msg = item
                .get("message")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            found.push(InvalidOption {
                property,
                value: rejected_value_from_message(msg),
                allowed: allowed_values_from_message(msg),
            });
        }
    }
    found
}

/// `Tech was not one of the allowed options: ...` → `Tech`.
fn rejected_value_from_message(msg: &str) -> Option<String> {
    let idx = msg.find(" was not one of the allowed options")?;
    let v = msg[..idx].trim().trim_matches('"');
    (!v.is_empty()).then(|| v.to_owned())
}

/// Reads allowed values either from protobuf-text pairs (`value: "X"`) or from a plain `[A, B, C]` list.
fn allowed_values_from_message(msg: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = msg;
    while let Some(i) = rest.find("value: \"") {
        rest = &rest[i + "value: \"".len()..];
        let Some(end) = rest.find('"') else { break };
        values.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    if !values.is_empty() {
        return values;
    }
    let Some(i) = msg.find("allowed options: [") else {
        return values;
    };
    let list = &msg[i + "allowed options: [".len()..];
    let Some(end) = list.find(']') else {
        return values;
    };
    list[..end]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_parse() {
        let cases = [
            ("TEN_SECONDLY_ROLLING", RateLimitPolicy::TenSecondlyRolling),
            ("ten_secondly_rolling", RateLimitPolicy::TenSecondlyRolling),
            ("SECONDLY", RateLimitPolicy::Secondly),
            ("DAILY", RateLimitPolicy::Daily),
            ("BURST", RateLimitPolicy::Other("BURST".into())),
        ];
        for (input, want) in cases {
            assert_eq!(RateLimitPolicy::parse(input), want, "{input}");
        }
    }

    #[test]
    fn existing_id_is_extracted() {
        let cases = [
            ("Contact already exists. Existing ID: 123", Some("123")),
            (
                "Contact already exists. Existing ID:987654321 ",
                Some("987654321"),
            ),
            ("Contact already exists.", None),
            ("Existing ID: abc", None),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_existing_id(msg).as_deref(), want, "{msg}");
        }
    }

    #[test]
    fn rate_limit_body_parses_policy_and_retry_after() {
        let body = br#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c-1","policyName":"TEN_SECONDLY_ROLLING","groupName":"x"}"#;
        let e = ApiError::from_response("list", 429, Some(Duration::from_secs(1)), body);
        assert_eq!(e.policy, Some(RateLimitPolicy::TenSecondlyRolling));
        assert_eq!(e.category.as_deref(), Some("RATE_LIMIT"));
        assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
        assert!(e.is_retriable());
        let daily = br#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        let e = ApiError::from_response("list", 429, None, daily);
        assert_eq!(e.policy, Some(RateLimitPolicy::Daily));
        assert!(!e.is_retriable(), "daily limit must not be retried");
        let no_policy = br#"{"status":"error","message":"You have reached your secondly limit."}"#;
        let e = ApiError::from_response("search", 429, None, no_policy);
        assert_eq!(e.policy, Some(RateLimitPolicy::Secondly));
    }

    #[test]
    fn conflict_body_parses_existing_id() {
        let body = br#"{"status":"error","message":"Contact already exists. Existing ID: 5101","correlationId":"x","category":"CONFLICT"}"#;
        let err = Error::from(ApiError::from_response("batch_create", 409, None, body));
        assert_eq!(err.existing_id(), Some("5101"));
        assert_eq!(err.status(), Some(409));
        assert!(!err.is_retriable());
    }

    #[test]
    fn invalid_option_from_errors_array() {
        let body = br#"{"status":"error","message":"Property values were not valid","category":"VALIDATION_ERROR",
            "errors":[{"message":"Tech was not one of the allowed options: [ACCOUNTING, COMPUTER_SOFTWARE]","code":"INVALID_OPTION","context":{"propertyName":["industry"]}}]}"#;
        let e = ApiError::from_response("batch_create", 400, None, body);
        assert_eq!(
            e.invalid_options,
            vec![InvalidOption {
                property: "industry".into(),
                value: Some("Tech".into()),
                allowed: vec!["ACCOUNTING".into(), "COMPUTER_SOFTWARE".into()],
            }]
        );
        assert_eq!(
            e.invalid_options[0].to_string(),
            "invalid option \"Tech\" for property industry; valid: ACCOUNTING, COMPUTER_SOFTWARE"
        );
    }

    #[test]
    fn invalid_option_from_embedded_message_list() {
        let body = br#"{"status":"error","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Tech was not one of the allowed options: [label: \\\"Accounting\\\"\\nvalue: \\\"ACCOUNTING\\\"\\n, label: \\\"Software\\\"\\nvalue: \\\"COMPUTER_SOFTWARE\\\"\\n]\",\"error\":\"INVALID_OPTION\",\"name\":\"industry\"}]","correlationId":"abc","category":"VALIDATION_ERROR"}"#;
        let e = ApiError::from_response("create", 400, None, body);
        assert_eq!(e.invalid_options.len(), 1);
        assert_eq!(e.invalid_options[0].property, "industry");
        assert_eq!(e.invalid_options[0].value.as_deref(), Some("Tech"));
        assert_eq!(
            e.invalid_options[0].allowed,
            vec!["ACCOUNTING".to_string(), "COMPUTER_SOFTWARE".to_string()]
        );
    }

    #[test]
    fn retriable_statuses() {
        let cases = [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (409, false),
            (423, true),
            (429, true),
            (477, true),
            (500, true),
            (501, false),
            (502, true),
            (503, true),
            (504, true),
        ];
        for (status, want) in cases {
            let e = ApiError::from_response("x", status, None, b"{}");
            assert_eq!(e.is_retriable(), want, "status {status}");
        }
    }

    #[test]
    fn non_json_body_is_summarised_and_oauth_codes_kept() {
        let e = ApiError::from_response("x", 502, None, b"<html>Bad Gateway</html>");
        assert_eq!(e.message, "<html>Bad Gateway</html>");
        let e = ApiError::from_response(
            "refresh",
            400,
            None,
            br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#,
        );
        assert!(e.is_bad_refresh_token());
        let e = ApiError::from_response(
            "refresh",
            400,
            None,
            br#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
        );
        assert!(e.is_bad_refresh_token());
        assert_eq!(e.message, "refresh token revoked");
        let e = ApiError::from_response(
            "x",
            401,
            None,
            br#"{"status":"error","message":"expired","category":"EXPIRED_AUTHENTICATION"}"#,
        );
        assert!(e.is_expired_authentication());
    }
}
