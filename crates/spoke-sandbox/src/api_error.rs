//! HubSpot's error bodies: `status`, `message`, `correlationId`, `category`, `errors[]`, `context`.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// One entry of `errors[]` in a HubSpot error body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    /// Human readable message.
    pub message: String,
    /// Machine code such as `INVALID_OPTION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Extra context, e.g. `{"propertyName": ["industry"]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

/// A HubSpot API error answer: an HTTP status plus the JSON body HubSpot sends.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// `category`, e.g. `VALIDATION_ERROR`.
    pub category: String,
    /// `message`.
    pub message: String,
    /// `errors[]`.
    pub errors: Vec<ErrorDetail>,
    /// `context`, when HubSpot sends one.
    pub context: Option<Value>,
    /// Fields outside the common set (e.g. `errorType`, `policyName` of 429s).
    pub extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A generic error with a status, category and message.
    pub fn new(status: u16, category: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            category: category.to_owned(),
            message: message.into(),
            errors: Vec::new(),
            context: None,
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// 400 `VALIDATION_ERROR`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "VALIDATION_ERROR", message)
    }

    /// 404 `OBJECT_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "OBJECT_NOT_FOUND", message)
    }

    /// 409 `CONFLICT` for a duplicate unique value, carrying `Existing ID: N` as HubSpot does.
    pub fn contact_exists(existing_id: u64) -> Self {
        Self::new(
            409,
            "CONFLICT",
            format!("Contact already exists. Existing ID: {existing_id}"),
        )
    }

    /// 401 with HubSpot's authentication categories.
    pub fn unauthorized(category: &str, message: impl Into<String>) -> Self {
        Self::new(401, category, message)
    }

    /// 429 of a rate-limit policy (`TEN_SECONDLY_ROLLING`, `SECONDLY`, `DAILY`).
    pub fn rate_limited(policy: &str) -> Self {
        let mut e = Self::new(
            429,
            "RATE_LIMITS",
            format!(
                "You have reached your {} limit.",
                policy.to_ascii_lowercase()
            ),
        );
        e.extra.insert("errorType".into(), json!("RATE_LIMIT"));
        e.extra.insert("policyName".into(), json!(policy));
        e
    }

    /// Adds an entry to `errors[]`.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.errors.push(detail);
        self
    }

    /// Sets `context`.
    pub fn with_context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// The JSON body, with a fresh correlation id.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!("error"));
        m.insert("message".into(), json!(self.message));
        m.insert(
            "correlationId".into(),
            json!(uuid::Uuid::new_v4().to_string()),
        );
        // 429 bodies carry no category in HubSpot's answers; every other error does.
        if self.status != 429 {
            m.insert("category".into(), json!(self.category));
        }
        if !self.errors.is_empty() {
            m.insert("errors".into(), json!(self.errors));
        }
        if let Some(ctx) = &self.context {
            m.insert("context".into(), ctx.clone());
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// Result of a HubSpot API operation.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
