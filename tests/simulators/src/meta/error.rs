//! Graph API errors: the `{"error":{…}}` object every Graph surface answers with, the codes the
//! simulator uses, and the usage headers (`X-App-Usage`, `X-Business-Use-Case-Usage`) that
//! stand in for the `Retry-After` Meta never sends.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::kit::VendorErrors;

/// A Graph API error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: u32,
    pub subcode: Option<u32>,
    /// `OAuthException` for nearly everything, as on Graph.
    pub kind: &'static str,
    pub message: String,
    /// Throttling errors say `"is_transient": true`.
    pub transient: bool,
    /// Extra headers (usage headers on throttling, `WWW-Authenticate` on token errors).
    pub headers: Vec<(&'static str, String)>,
    /// WhatsApp's `error_data` (`messaging_product`, `details`).
    pub error_data: Option<Value>,
}

static TRACE: AtomicU64 = AtomicU64::new(0x5EED_F00D);

/// A short opaque id like Graph's `fbtrace_id` (`AbC1dEf2GhI`).
pub fn fbtrace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut n = TRACE
        .fetch_add(0x9E37_79B9, Ordering::Relaxed)
        .wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut out = String::with_capacity(11);
    for _ in 0..11 {
        out.push(char::from(ALPHABET[(n % 62) as usize]));
        n /= 62;
    }
    out
}

impl GraphError {
    /// An `OAuthException` with HTTP 400, as most Graph errors are.
    pub fn new(code: u32, subcode: Option<u32>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            subcode,
            kind: "OAuthException",
            message: message.into(),
            transient: false,
            headers: Vec::new(),
            error_data: None,
        }
    }

    /// `(#100) …`: a parameter is missing or wrong.
    pub fn invalid_parameter(message: impl std::fmt::Display) -> Self {
        Self::new(100, None, format!("(#100) {message}"))
    }

    /// Code 104: no access token at all.
    pub fn token_required() -> Self {
        Self::new(104, None, "An access token is required to request this resource.")
            .with_header(
                "www-authenticate",
                "OAuth \"Facebook Platform\" \"invalid_request\" \"An access token is required to request this resource.\"",
            )
    }

    /// Code 190: the token cannot be used; a connector must ask for reauthorization.
    pub fn invalid_token(subcode: Option<u32>, message: &str) -> Self {
        Self::new(190, subcode, message).with_header(
            "www-authenticate",
            format!("OAuth \"Facebook Platform\" \"invalid_token\" \"{message}\""),
        )
    }

    /// Code 803 / 100: the path names nothing the token can see.
    pub fn unknown_object(id: &str) -> Self {
        Self::new(
            100,
            Some(33),
            format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
            ),
        )
    }

    /// Unknown path or method.
    pub fn unknown_path() -> Self {
        Self::new(
            2500,
            None,
            "Unknown path components: the simulator does not serve this Graph path",
        )
    }

    /// Messenger's answer to a send outside the allowed window (code 10, subcode 2018278).
    pub fn outside_window() -> Self {
        Self::new(
            10,
            Some(2_018_278),
            "(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
        )
    }

    /// A throttling error (4, 17, 32, 613 or a BUC code) with the usage headers.
    pub fn throttled(code: u32, headers: Vec<(&'static str, String)>) -> Self {
        let message = match code {
            4 => "(#4) Application request limit reached",
            17 => "(#17) User request limit reached",
            32 => "(#32) Page request limit reached",
            613 => "(#613) Calls to this api have exceeded the rate limit.",
            80001 => "(#80001) There have been too many calls to this Page account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
            80006 => "(#80006) There have been too many messenger api calls to this Page account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
            130_429 => "(#130429) Rate limit hit",
            _ => "Calls to this api have exceeded the rate limit.",
        };
        let mut error = Self::new(code, None, message);
        error.transient = true;
        error.headers = headers;
        error
    }

    /// Code 1 / 2: a server-side failure, for injected 5xx statuses.
    pub fn server(status: StatusCode) -> Self {
        let mut error = Self::new(
            2,
            None,
            "An unexpected error has occurred. Please retry your request later.",
        );
        error.status = status;
        error.transient = true;
        error
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The body: `{"error":{"message","type","code","error_subcode"?,"is_transient"?,"fbtrace_id"}}`.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if self.transient {
            error["is_transient"] = json!(true);
        }
        if let Some(data) = &self.error_data {
            error["error_data"] = data.clone();
        }
        error["fbtrace_id"] = json!(fbtrace_id());
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// The usage headers for one answer: `X-App-Usage` and, for Page tokens,
/// `X-Business-Use-Case-Usage` keyed by the Page id. Percentages of the budget used;
/// `minutes_to_regain` is 0 unless throttled.
pub fn usage_headers(
    page_id: &str,
    percent: u32,
    minutes_to_regain: u64,
) -> Vec<(&'static str, String)> {
    let app =
        json!({"call_count": percent, "total_cputime": percent / 4, "total_time": percent / 4});
    let buc = json!({ page_id: [{
        "type": "pages",
        "call_count": percent,
        "total_cputime": percent / 4,
        "total_time": percent / 4,
        "estimated_time_to_regain_access": minutes_to_regain,
    }]});
    vec![
        ("x-app-usage", app.to_string()),
        ("x-business-use-case-usage", buc.to_string()),
    ]
}

/// How injected faults read on Graph. Meta sends no `Retry-After`: an injected rate limit is
/// the throttling error with `estimated_time_to_regain_access` in whole minutes.
pub struct Graph {
    pub page_id: String,
    /// The throttling code injected rate limits answer with (32 for Page tokens by default).
    pub throttle_code: u32,
}

impl VendorErrors for Graph {
    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let minutes = retry_after_secs.div_ceil(60).max(1);
        GraphError::throttled(
            self.throttle_code,
            usage_headers(&self.page_id, 100, minutes),
        )
        .into_response()
    }

    fn status(&self, status: u16) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            return GraphError::server(status).into_response();
        }
        let mut error = GraphError::new(1, None, "An unknown error occurred");
        error.status = status;
        error.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_graph_shape() {
        let body = GraphError::outside_window().body();
        let error = &body["error"];
        assert_eq!(error["code"], 10);
        assert_eq!(error["error_subcode"], 2_018_278);
        assert_eq!(error["type"], "OAuthException");
        assert!(error["fbtrace_id"].as_str().is_some_and(|s| s.len() == 11));
        assert!(error.get("is_transient").is_none());
    }

    #[test]
    fn throttling_carries_usage_headers_and_no_retry_after() {
        let response = Graph {
            page_id: "42".into(),
            throttle_code: 32,
        }
        .rate_limited(61);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("retry-after").is_none());
        let buc: Value = serde_json::from_str(
            response.headers()["x-business-use-case-usage"]
                .to_str()
                .expect("ascii"),
        )
        .expect("json");
        assert_eq!(buc["42"][0]["estimated_time_to_regain_access"], 2);
        assert_eq!(buc["42"][0]["type"], "pages");
    }

    #[test]
    fn trace_ids_differ() {
        assert_ne!(fbtrace_id(), fbtrace_id());
    }
}
