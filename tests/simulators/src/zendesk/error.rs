//! Zendesk-shaped error responses.

use std::collections::BTreeMap;

use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::kit::faults::{with_headers, Answers, Refusals};

/// An error answer: status, Zendesk's JSON body, and any extra headers (Retry-After).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.headers
            .push((axum::http::header::RETRY_AFTER, secs.to_string()));
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Couldn't authenticate you"}),
        )
    }

    pub(crate) fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            json!({
                "error": "Forbidden",
                "description": "You do not have access to this page. Please contact the account \
                                owner of this help desk for further help."
            }),
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"error": "RecordNotFound", "description": "Not found"}),
        )
    }

    pub(crate) fn database_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            json!({"error": "DatabaseConflict", "description": "Database collision"}),
        )
    }

    pub(crate) fn bad_request(error: &str, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({"error": error, "description": description.into()}),
        )
    }

    /// 422 `InvalidValue` with a top-level description (incremental export parameters).
    pub(crate) fn invalid_value(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "InvalidValue", "description": description.into()}),
        )
    }

    /// An endpoint-specific limit (exports, per-ticket updates) is spent.
    pub(crate) fn endpoint_rate_limited(retry_after_secs: u64, description: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "TooManyRequests", "description": description}),
        )
        .with_retry_after(retry_after_secs)
    }
}

impl Refusals for ApiError {
    /// The account-wide per-minute budget is spent.
    fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "error": "RateLimited",
                "description": "Number of allowed API requests per minute exceeded"
            }),
        )
        .with_retry_after(retry_after_secs)
    }

    /// A body for an injected fault with this status code.
    fn injected(status: u16) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match code.as_u16() {
            400 => Self::bad_request("InvalidEndpoint", "Bad request"),
            401 => Self::unauthorized(),
            403 => Self::forbidden(),
            404 => Self::not_found(),
            409 => Self::database_conflict(),
            422 => {
                let mut d = Details::default();
                d.add("base", "InvalidValue", "Injected validation failure");
                d.into_error()
            }
            429 => Self::rate_limited(1),
            503 => Self::new(
                code,
                json!({"error": "ServiceUnavailable", "description": "Service temporarily unavailable"}),
            )
            .with_retry_after(1),
            _ => Self::new(
                code,
                json!({"error": "InternalServerError", "description": "An internal error occurred"}),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        with_headers((self.status, Json(self.body)).into_response(), self.headers)
    }
}

/// How Zendesk refuses, for the kit's fault layer: 429 with `Retry-After` and its
/// `RateLimited` body, and its bodies for injected statuses.
pub(crate) const ZENDESK: Answers<ApiError> = Answers::new();

/// Field-keyed validation problems, rendered as Zendesk's 422 `RecordInvalid`.
#[derive(Debug, Default)]
pub(crate) struct Details(BTreeMap<String, Vec<Value>>);

impl Details {
    pub(crate) fn add(&mut self, field: &str, error: &str, description: impl Into<String>) {
        self.0.entry(field.to_owned()).or_default().push(json!({
            "description": description.into(),
            "error": error,
            "field_key": field,
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_error(self) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": self.0,
            }),
        )
    }

    /// `Ok` when nothing was reported.
    pub(crate) fn check(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}
