//! Salesforce-shaped error answers: the REST API's JSON array of `{message, errorCode, fields?}`,
//! and the OAuth endpoints' `{error, error_description}` object.

use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::kit::faults::{with_headers, Answers, Refusals};

/// A REST API error answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(HeaderName, &'static str)>,
}

impl ApiError {
    /// `[{"message", "errorCode"}]`, as request-level errors come.
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!([{"message": message.into(), "errorCode": code}]),
            headers: Vec::new(),
        }
    }

    /// `[{"message", "errorCode", "fields"}]`, as record-level (DML) errors come.
    pub(crate) fn fields(code: &str, message: impl Into<String>, fields: &[&str]) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!([{"message": message.into(), "errorCode": code, "fields": fields}]),
            headers: Vec::new(),
        }
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn invalid_session() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        );
        e.headers
            .push((axum::http::header::WWW_AUTHENTICATE, "Token"));
        e
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    /// The daily allocation is spent. Salesforce sends no Retry-After.
    pub(crate) fn request_limit() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub(crate) fn method_not_allowed(method: &str, allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
        )
    }

    pub(crate) fn json_parser(message: impl Into<String>) -> Self {
        Self::bad_request("JSON_PARSER_ERROR", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        with_headers((self.status, Json(self.body)).into_response(), self.headers)
    }
}

/// An OAuth endpoint error: `{"error": ..., "error_description": ...}`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub(crate) fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    pub(crate) fn invalid_grant(description: &str) -> Self {
        Self::new("invalid_grant", description)
    }

    pub(crate) fn invalid_client_id() -> Self {
        Self::new("invalid_client_id", "client identifier invalid")
    }

    pub(crate) fn invalid_client() -> Self {
        Self::new("invalid_client", "invalid client credentials")
    }

    pub(crate) fn expired_token() -> Self {
        Self::invalid_grant("expired access/refresh token")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}

/// How the REST API refuses, for the kit's fault layer. Salesforce has no 429: an exhausted
/// allocation is 403 `REQUEST_LIMIT_EXCEEDED` without Retry-After, whatever the wait.
pub(crate) const REST: Answers<ApiError> = Answers::new();

impl Refusals for ApiError {
    fn rate_limited(_retry_after_secs: u64) -> Self {
        Self::request_limit()
    }

    /// An injected fault with this status, in the body Salesforce sends for it.
    fn injected(status: u16) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match status {
            401 => Self::invalid_session(),
            403 => Self::new(
                code,
                "INSUFFICIENT_ACCESS_OR_READONLY",
                "insufficient access rights on object id",
            ),
            404 => Self::not_found(),
            503 => Self::new(
                code,
                "SERVER_UNAVAILABLE",
                "Server is temporarily unavailable. Please try again later.",
            ),
            500..=599 => Self::new(
                code,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if you contact \
                 support: 1234567890-12345 (-1234567890)",
            ),
            _ => Self::new(code, "BAD_REQUEST", format!("injected fault {status}")),
        }
    }
}

/// How the OAuth endpoints refuse: their `{"error","error_description"}` shape; too many
/// logins are 400 `invalid_grant` "login rate exceeded".
pub(crate) const OAUTH: Answers<OAuthError> = Answers::new();

impl Refusals for OAuthError {
    fn rate_limited(_retry_after_secs: u64) -> Self {
        Self::invalid_grant("login rate exceeded")
    }

    fn injected(status: u16) -> Self {
        let error = if status >= 500 {
            "server_error"
        } else {
            "invalid_request"
        };
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error,
            description: format!("injected fault {status}"),
        }
    }
}
