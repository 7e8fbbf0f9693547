//! Freshdesk-shaped error responses.
//!
//! Freshdesk answers in two shapes: request errors `{"code","message"}` (401, 403, 406, 415,
//! invalid JSON) and validation errors `{"description":"Validation failed","errors":[...]}`
//! (400, 409). A 404 has an empty body. Message texts follow Freshdesk's own.

use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::kit::faults::{with_headers, Answers, Refusals};

/// An error answer: status, body (none for 404), and extra headers (Retry-After).
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    fn new(status: StatusCode, body: Option<Value>) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// `{"code","message"}`, Freshdesk's shape for errors about the request as a whole.
    pub(crate) fn request(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::new(
            status,
            Some(json!({"code": code, "message": message.into()})),
        )
    }

    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.headers
            .push((axum::http::header::RETRY_AFTER, secs.to_string()));
        self
    }

    pub(crate) fn unauthorized() -> Self {
        Self::request(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "You have to be logged in to perform this action.",
        )
    }

    pub(crate) fn access_denied() -> Self {
        Self::request(
            StatusCode::FORBIDDEN,
            "access_denied",
            "You are not authorized to perform this action.",
        )
    }

    pub(crate) fn ssl_required() -> Self {
        Self::request(
            StatusCode::FORBIDDEN,
            "ssl_required",
            "SSL certificate verification failed.",
        )
    }

    /// Freshdesk answers an unknown id with a bare 404.
    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None)
    }

    pub(crate) fn invalid_json() -> Self {
        Self::request(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "Request body has invalid json format",
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            format!(
                "Content-Type header is set to {content_type}. It should be set to application/json"
            ),
        )
    }

    pub(crate) fn not_acceptable(accept: &str) -> Self {
        Self::request(
            StatusCode::NOT_ACCEPTABLE,
            "invalid_accept_header",
            format!("Accept header is set to {accept}. It should have application/json or */*"),
        )
    }

    /// A single-field validation failure (400).
    pub(crate) fn invalid(field: &str, message: impl Into<String>, code: &str) -> Self {
        let mut errors = Errors::default();
        errors.add(field, message, code);
        errors.into_error()
    }

    fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The message of the body, for panics in direct accessors.
    pub(crate) fn summary(&self) -> String {
        match &self.body {
            Some(body) => format!("{} {body}", self.status),
            None => self.status.to_string(),
        }
    }
}

/// How Freshdesk refuses, for the kit's fault layer: 429 with `Retry-After` and its
/// `rate_limited` body, and its bodies for injected statuses.
pub(crate) const FRESHDESK: Answers<ApiError> = Answers::new();

impl Refusals for ApiError {
    /// The account (or an endpoint's share of it) is out of calls for this minute. Freshdesk
    /// documents only the status and `Retry-After`; the body here is the simulator's own.
    fn rate_limited(retry_after_secs: u64) -> Self {
        Self::request(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "You have exceeded the limit of requests per minute",
        )
        .with_retry_after(retry_after_secs)
    }

    /// The answer for an injected fault with this status code.
    fn injected(status: u16) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match code.as_u16() {
            400 => Self::invalid("", "Injected validation failure", "invalid_value"),
            401 => Self::unauthorized(),
            403 => Self::access_denied(),
            404 => Self::not_found(),
            409 => Self::invalid("", "Injected conflict", "inconsistent_state")
                .with_status(StatusCode::CONFLICT),
            429 => Self::rate_limited(1),
            500 => Self::request(
                code,
                "internal_error",
                "We're sorry, but something went wrong.",
            ),
            _ => Self::new(code, None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        with_headers(response, self.headers)
    }
}

/// Field errors collected while validating a request, rendered as Freshdesk's
/// `{"description":"Validation failed","errors":[{"field","message","code"}]}`.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<Value>);

impl Errors {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>, code: &str) {
        self.0
            .push(json!({"field": field, "message": message.into(), "code": code}));
    }

    /// A uniqueness clash (409), naming the user that holds the value as Freshdesk does.
    pub(crate) fn duplicate(&mut self, field: &str, user_id: u64) {
        self.0.push(json!({
            "field": field,
            "additional_info": {"user_id": user_id},
            "message": "It should be a unique value",
            "code": "duplicate_value",
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// 409 when every problem is a duplicate value, else 400.
    pub(crate) fn into_error(self) -> ApiError {
        let conflict = !self.0.is_empty() && self.0.iter().all(|e| e["code"] == "duplicate_value");
        let status = if conflict {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            Some(json!({"description": "Validation failed", "errors": self.0})),
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
