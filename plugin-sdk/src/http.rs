//! Outbound HTTP through the host, with a small builder and error mapping.
//!
//! ```ignore
//! use switchboard_plugin_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct Me { id: u64 }
//!
//! fn me(ctx: &Context) -> Result<Me> {
//!     let subdomain = ctx.require("subdomain")?;
//!     http::get(format!("https://{subdomain}.zendesk.com/api/v2/users/me.json"))
//!         .header("accept", "application/json")
//!         .send()?             // transport failures -> Transient, denied hosts -> Fatal
//!         .error_for_status()? // 401 -> Unauthorized, 429 -> RateLimited, 5xx -> Transient, ...
//!         .json()              // unparsable JSON -> Fatal
//! }
//! ```
//!
//! The host only lets requests through to origins in the manifest's `http-hosts` that the admin
//! approved, and adds credentials according to the manifest's `credentials` rules: a plugin
//! normally sends no `Authorization` header of its own. It also enforces a timeout and a cap on
//! the response size.
//!
//! [`send`](Request::send) returns `Ok` for every HTTP status; the status is the caller's to
//! judge, usually with [`Response::error_for_status`], or with [`status_error`] after reading a
//! service-specific error body.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{de::DeserializeOwned, Serialize};

use crate::bindings::host::switchboard::connector::http as host;
use crate::{ConnectorError, Result};

/// Everything but RFC 3986's unreserved characters gets encoded in query and form values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long [`status_error`] waits by default when a 429 names no delay.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1000;

/// Characters of a response body quoted in error messages.
const BODY_SNIPPET_CHARS: usize = 300;

/// An HTTP request under construction. Start one with [`get`], [`post`], [`put`], [`patch`] or
/// [`delete`], then [`send`](Request::send) it.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u32>,
    /// A failure while building (an unserializable JSON body), reported by `send`.
    build_error: Option<String>,
}

/// Starts a request with any method, such as `"HEAD"`.
pub fn request(method: impl Into<String>, url: impl Into<String>) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms: None,
        build_error: None,
    }
}

/// Starts a `GET` request.
pub fn get(url: impl Into<String>) -> Request {
    request("GET", url)
}

/// Starts a `POST` request.
pub fn post(url: impl Into<String>) -> Request {
    request("POST", url)
}

/// Starts a `PUT` request.
pub fn put(url: impl Into<String>) -> Request {
    request("PUT", url)
}

/// Starts a `PATCH` request.
pub fn patch(url: impl Into<String>) -> Request {
    request("PATCH", url)
}

/// Starts a `DELETE` request.
pub fn delete(url: impl Into<String>) -> Request {
    request("DELETE", url)
}

impl Request {
    /// Adds a header. Headers accumulate; setting one twice sends it twice.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends a query parameter to the URL; `name` and `value` are percent-encoded.
    pub fn query(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        self.url.push(separator);
        self.url
            .push_str(&encode_pair(name.as_ref(), value.as_ref()));
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    ///
    /// Serializing a value of a plain data type cannot fail; should a custom `Serialize`
    /// implementation fail anyway, [`send`](Request::send) reports it as `Fatal`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = bytes,
            Err(err) => self.build_error = Some(format!("could not serialize JSON body: {err}")),
        }
        self.set_content_type("application/json")
    }

    /// Sets an `application/x-www-form-urlencoded` body from name/value pairs.
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let encoded: Vec<String> = pairs.iter().map(|(k, v)| encode_pair(k, v)).collect();
        self.body = encoded.join("&").into_bytes();
        self.set_content_type("application/x-www-form-urlencoded")
    }

    /// Sets a raw body. Set a `content-type` header to go with it.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Asks for a timeout shorter than the host's own; a longer one has no effect.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The URL as it will be sent, query parameters included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The headers set so far, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body set so far.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Sends the request through the host and returns the response, whatever its status.
    ///
    /// Failures to get a response map to [`ConnectorError`]s:
    ///
    /// | host error           | becomes     | why                                                |
    /// |----------------------|-------------|----------------------------------------------------|
    /// | `denied`             | `Fatal`     | the origin isn't approved; the host's message, verbatim, names the pattern an admin would approve |
    /// | `timeout`            | `Transient` |                                                    |
    /// | `transport`          | `Transient` | connection refused or reset, DNS, TLS              |
    /// | `response-too-large` | `Fatal`     | the same request would be too large again          |
    /// | `invalid-request`    | `Fatal`     | a bad URL, method or header: a plugin bug          |
    pub fn send(self) -> Result<Response> {
        if let Some(reason) = self.build_error {
            return Err(ConnectorError::Fatal(reason));
        }
        let request = host::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        send_to_host(&request)
            .map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(map_http_error)
    }

    fn set_content_type(mut self, value: &str) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers.push(("content-type".into(), value.into()));
        self
    }
}

#[cfg(target_arch = "wasm32")]
fn send_to_host(request: &host::Request) -> core::result::Result<host::Response, host::HttpError> {
    host::send(request)
}

#[cfg(not(target_arch = "wasm32"))]
fn send_to_host(request: &host::Request) -> core::result::Result<host::Response, host::HttpError> {
    #[cfg(feature = "testkit")]
    if let Some(answer) = crate::testkit::dispatch(request) {
        return answer;
    }
    // Native unit tests of a plugin have no host to send through.
    Err(host::HttpError::InvalidRequest(format!(
        "{} {}: HTTP is only available inside the Switchboard runtime",
        request.method, request.url
    )))
}

fn map_http_error(err: host::HttpError) -> ConnectorError {
    match err {
        // Verbatim: it tells the admin exactly which pattern to approve.
        host::HttpError::Denied(message) => ConnectorError::Fatal(message),
        host::HttpError::Timeout(message) => {
            ConnectorError::transient(format!("HTTP request timed out: {message}"))
        }
        host::HttpError::Transport(message) => {
            ConnectorError::transient(format!("HTTP transport error: {message}"))
        }
        host::HttpError::ResponseTooLarge(cap) => ConnectorError::fatal(format!(
            "HTTP response exceeded the host's limit of {cap} bytes"
        )),
        host::HttpError::InvalidRequest(message) => {
            ConnectorError::fatal(format!("invalid HTTP request: {message}"))
        }
    }
}

fn encode_pair(name: &str, value: &str) -> String {
    format!(
        "{}={}",
        utf8_percent_encode(name, QUERY_VALUE),
        utf8_percent_encode(value, QUERY_VALUE)
    )
}

/// A response, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Headers as received; the host lower-cases their names.
    pub headers: Vec<(String, String)>,
    /// The body, as received (the host caps its size).
    pub body: Vec<u8>,
}

impl Response {
    /// A response built by hand, for a plugin's unit tests of its response handling.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::http::Response;
    /// let response = Response::new(429, &[("Retry-After", "3")], "slow down");
    /// assert_eq!(response.header("retry-after"), Some("3"));
    /// assert_eq!(response.text(), "slow down");
    /// ```
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses the body as JSON. Unparsable JSON is `Fatal` (see the `From` impl on
    /// [`ConnectorError`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// Passes a 2xx response through and turns any other into the error [`status_error`]
    /// picks for it.
    pub fn error_for_status(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.status_error())
        }
    }

    /// The error [`status_error`] picks for this response's status: what a service's own
    /// error mapping falls back to for the statuses it has nothing to add to.
    pub fn status_error(&self) -> ConnectorError {
        status_error(self.status, &self.headers, &self.body)
    }

    /// Checks the status and parses the JSON body in one step: a 2xx body parsed as `T`, or
    /// the error [`status_error`] picks, whose message quotes the start of the body the
    /// service sent. For a service with its own error bodies, use a [`Service`].
    pub fn json_ok<T: DeserializeOwned>(self) -> Result<T> {
        self.error_for_status()?.json()
    }

    /// How long a 429 (or a service's own flood error) asks to wait; see
    /// [`rate_limit_wait_ms`].
    pub fn rate_limit_wait_ms(&self) -> Option<u64> {
        rate_limit_wait_ms(&self.headers, &self.body)
    }

    /// The `RateLimited` error for this 429: after the delay its `Retry-After` header asks for
    /// ([`retry_after_ms`]), else after `default_wait_ms`, the service's usual window (a
    /// minute for per-minute limits). For a service whose 429s carry only `Retry-After`; where
    /// they may carry a body or reset header instead, [`status_error`] reads those too.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::{http::Response, ConnectorError};
    /// let slow = Response::new(429, &[("Retry-After", "3")], "");
    /// assert!(matches!(slow.rate_limited(60_000, "Acme 429"),
    ///     ConnectorError::RateLimited(r) if r.retry_after_ms == 3000));
    /// ```
    pub fn rate_limited(&self, default_wait_ms: u64, message: impl Into<String>) -> ConnectorError {
        ConnectorError::rate_limited(
            retry_after_ms(&self.headers).unwrap_or(default_wait_ms),
            message,
        )
    }

    /// The body as text; invalid UTF-8 is replaced with `U+FFFD`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The [`ConnectorError`] for an unsuccessful HTTP status.
///
/// | status               | error                                                        |
/// |----------------------|--------------------------------------------------------------|
/// | 429                  | `RateLimited`, delay from [`rate_limit_wait_ms`], else 1000 ms |
/// | 401, 403             | `Unauthorized`                                               |
/// | 404, 410             | `NotFound`                                                   |
/// | 400, 422             | `InvalidInput` with field `request`                          |
/// | 408, 409, 5xx        | `Transient`                                                  |
/// | anything else        | `Fatal`                                                      |
///
/// The message holds the status and the start of the body, which usually says what went wrong.
/// When a service signals errors differently (Telegram's `retry_after` in the body, Salesforce's
/// 403 for an exhausted quota), check for that first and fall back to this.
pub fn status_error(status: u16, headers: &[(String, String)], body: &[u8]) -> ConnectorError {
    let message = status_message(status, body);
    match status {
        429 => ConnectorError::rate_limited(
            rate_limit_wait_ms(headers, body).unwrap_or(DEFAULT_RETRY_AFTER_MS),
            message,
        ),
        401 | 403 => ConnectorError::Unauthorized(message),
        404 | 410 => ConnectorError::NotFound(message),
        400 | 422 => ConnectorError::invalid("request", message),
        408 | 409 | 500..=599 => ConnectorError::Transient(message),
        _ => ConnectorError::Fatal(message),
    }
}

/// How long a rate-limited answer asks the plugin to wait, in milliseconds, from the first of
/// these that it carries:
///
/// 1. a `retry_after` number of seconds in a JSON body, under `parameters` (Telegram's
///    `{"parameters": {"retry_after": 5}}`) or at the top (`{"retry_after": 1.5}`);
/// 2. a `Retry-After` header, seconds or an HTTP-date ([`retry_after_ms`]);
/// 3. an `X-RateLimit-Reset` or `X-Rate-Limit-Reset` header (any case): the Unix time, in
///    seconds, at which the limit resets ([`parse_rate_limit_reset`]).
///
/// `None` when it names no delay: pick the service's usual wait then.
///
/// ```
/// # use switchboard_plugin_sdk::http::rate_limit_wait_ms;
/// let headers = vec![("retry-after".to_string(), "3".to_string())];
/// assert_eq!(rate_limit_wait_ms(&headers, b""), Some(3000));
/// let body = br#"{"ok":false,"error_code":429,"parameters":{"retry_after":7}}"#;
/// assert_eq!(rate_limit_wait_ms(&headers, body), Some(7000));
/// ```
pub fn rate_limit_wait_ms(headers: &[(String, String)], body: &[u8]) -> Option<u64> {
    retry_after_in_body(body)
        .or_else(|| retry_after_ms(headers))
        .or_else(|| {
            ["x-ratelimit-reset", "x-rate-limit-reset"]
                .into_iter()
                .find_map(|name| find_header(headers, name))
                .and_then(|value| parse_rate_limit_reset(value, crate::now_ms()))
        })
}

/// The `retry_after` seconds of a JSON error body, under `parameters` or at the top, in
/// milliseconds. Fractions round up; a negative or non-numeric value counts as none.
pub fn retry_after_in_body(body: &[u8]) -> Option<u64> {
    // Only JSON objects can carry it; skip parsing anything else (an HTML error page).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let seconds = value
        .get("parameters")
        .and_then(|p| p.get("retry_after"))
        .or_else(|| value.get("retry_after"))?;
    seconds_to_ms(seconds.as_f64()?)
}

/// Parses an `X-RateLimit-Reset` value into the wait until then, in milliseconds, given the
/// current time. The value is the Unix time of the reset in seconds (X, GitHub, Zendesk's
/// per-endpoint limits); a value below 1,000,000,000 (before 2001) cannot be such a time and
/// is read as a number of seconds to wait instead, as some services send. A reset in the past
/// means no wait (`Some(0)`).
pub fn parse_rate_limit_reset(value: &str, now_ms: u64) -> Option<u64> {
    let seconds: u64 = value.trim().parse().ok()?;
    if seconds < 1_000_000_000 {
        return Some(seconds.saturating_mul(1000));
    }
    Some(seconds.saturating_mul(1000).saturating_sub(now_ms))
}

fn seconds_to_ms(seconds: f64) -> Option<u64> {
    // `parse` also accepts "inf" and "NaN"; only finite, non-negative delays count.
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).ceil() as u64)
}

/// The delay a `Retry-After` header asks for, in milliseconds, if it has a valid one.
///
/// Both forms of RFC 9110 are understood: a number of seconds (`Retry-After: 34`) and an
/// HTTP-date, which is compared with the host clock ([`now_ms`](crate::now_ms)). A date in
/// the past means no wait (`Some(0)`).
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    let value = find_header(headers, "retry-after")?;
    parse_retry_after(value, crate::now_ms())
}

/// Parses a `Retry-After` value into milliseconds, given the current time for the date form.
///
/// Fractional seconds (`1.5`), which some services send, are accepted as well.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_to_ms(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis()
        .try_into()
        .ok()?;
    Some(u64::saturating_sub(at_ms, now_ms))
}

/// One service's API as a plugin reads its answers: the name its messages use, and the
/// function that turns an unsuccessful answer into the [`ConnectorError`] the host acts on
/// (reading the service's error body, so its own words end up in the message).
///
/// Every connector checked each response and then parsed its JSON in two calls, with the same
/// two helpers written again in each; a `Service` constant does both:
///
/// ```
/// use switchboard_plugin_sdk::http::{status_error, Response, Service};
/// use switchboard_plugin_sdk::ConnectorError;
///
/// fn acme_error(response: &Response) -> ConnectorError {
///     status_error(response.status, &response.headers, &response.body)
/// }
/// const ACME: Service = Service::new("Acme", acme_error);
///
/// #[derive(serde::Deserialize)]
/// struct Ticket { id: u64 }
///
/// let ok = Response { status: 200, headers: vec![], body: br#"{"id":7}"#.to_vec() };
/// let ticket: Ticket = ACME.json(ok, "ticket").unwrap();
/// assert_eq!(ticket.id, 7);
///
/// let gone = Response { status: 404, headers: vec![], body: b"no such ticket".to_vec() };
/// let err = ACME.json::<Ticket>(gone, "ticket").err().unwrap();
/// assert_eq!(err, ConnectorError::NotFound("HTTP 404: no such ticket".into()));
/// ```
#[derive(Clone, Copy)]
pub struct Service {
    name: &'static str,
    error: fn(&Response) -> ConnectorError,
}

impl Service {
    /// A service called `name` in messages, whose unsuccessful answers `error` maps.
    pub const fn new(name: &'static str, error: fn(&Response) -> ConnectorError) -> Self {
        Service { name, error }
    }

    /// The service's name, as messages use it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The error for an unsuccessful `response`.
    pub fn error(&self, response: &Response) -> ConnectorError {
        (self.error)(response)
    }

    /// Passes a 2xx response through and turns any other into the service's error.
    pub fn check(&self, response: Response) -> Result<Response> {
        if response.is_success() {
            Ok(response)
        } else {
            Err(self.error(&response))
        }
    }

    /// Parses a response's JSON body as `T`. Unreadable JSON is `Fatal` (a contract break that
    /// retrying won't fix), saying which `what` from which service it was.
    pub fn parse<T: DeserializeOwned>(&self, response: &Response, what: &str) -> Result<T> {
        serde_json::from_slice(&response.body).map_err(|err| {
            ConnectorError::fatal(format!("unexpected {what} from {}: {err}", self.name))
        })
    }

    /// [`check`](Self::check), then [`parse`](Self::parse): the `what` of a 2xx answer.
    pub fn json<T: DeserializeOwned>(&self, response: Response, what: &str) -> Result<T> {
        let response = self.check(response)?;
        self.parse(&response, what)
    }

    /// Sends `request`, then [`check`](Self::check)s the answer.
    pub fn send(&self, request: Request) -> Result<Response> {
        self.check(request.send()?)
    }

    /// Sends `request`, then reads the `what` of the 2xx answer with [`json`](Self::json).
    pub fn fetch<T: DeserializeOwned>(&self, request: Request, what: &str) -> Result<T> {
        self.json(request.send()?, what)
    }
}

impl core::fmt::Debug for Service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Service").field("name", &self.name).finish()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn status_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {status}");
    }
    let mut snippet: String = text.chars().take(BODY_SNIPPET_CHARS).collect();
    if snippet.len() < text.len() {
        snippet.push('…');
    }
    format!("HTTP {status}: {snippet}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{now_ms, InvalidField, RateLimit};

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn status_mapping() {
        let none = headers(&[]);
        let kind = |status| match status_error(status, &none, b"") {
            ConnectorError::Unauthorized(_) => "unauthorized",
            ConnectorError::RateLimited(_) => "rate-limited",
            ConnectorError::NotFound(_) => "not-found",
            ConnectorError::InvalidInput(_) => "invalid-input",
            ConnectorError::Policy(_) => "policy",
            ConnectorError::Transient(_) => "transient",
            ConnectorError::Fatal(_) => "fatal",
        };
        assert_eq!(kind(429), "rate-limited");
        assert_eq!(kind(401), "unauthorized");
        assert_eq!(kind(403), "unauthorized");
        assert_eq!(kind(404), "not-found");
        assert_eq!(kind(410), "not-found");
        assert_eq!(kind(400), "invalid-input");
        assert_eq!(kind(422), "invalid-input");
        assert_eq!(kind(408), "transient");
        assert_eq!(kind(409), "transient");
        assert_eq!(kind(500), "transient");
        assert_eq!(kind(503), "transient");
        assert_eq!(kind(599), "transient");
        assert_eq!(kind(405), "fatal");
        assert_eq!(kind(302), "fatal");
    }

    #[test]
    fn rate_limit_uses_retry_after_or_default() {
        assert_eq!(
            status_error(429, &headers(&[("Retry-After", "34")]), b"slow down"),
            ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 34_000,
                message: "HTTP 429: slow down".into()
            })
        );
        match status_error(429, &headers(&[]), b"") {
            ConnectorError::RateLimited(r) => assert_eq!(r.retry_after_ms, DEFAULT_RETRY_AFTER_MS),
            other => panic!("unexpected {other:?}"),
        }
        match status_error(429, &headers(&[("retry-after", "soon")]), b"") {
            ConnectorError::RateLimited(r) => assert_eq!(r.retry_after_ms, DEFAULT_RETRY_AFTER_MS),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invalid_input_names_request_and_quotes_body() {
        assert_eq!(
            status_error(422, &[], br#"{"error":"RecordInvalid"}"#),
            ConnectorError::InvalidInput(InvalidField {
                field: "request".into(),
                message: r#"HTTP 422: {"error":"RecordInvalid"}"#.into()
            })
        );
    }

    #[test]
    fn long_bodies_are_truncated_on_char_boundaries() {
        let body = "é".repeat(1000);
        let ConnectorError::Transient(message) = status_error(502, &[], body.as_bytes()) else {
            panic!("expected transient");
        };
        assert!(message.starts_with("HTTP 502: éé"));
        assert!(message.ends_with('…'));
        assert_eq!(
            message.chars().count(),
            "HTTP 502: ".len() + BODY_SNIPPET_CHARS + 1
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(parse_retry_after("1.5", now), Some(1500));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        // The obsolete RFC 850 and asctime forms are still valid HTTP-dates.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(10_000)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("inf", now), None);
        assert_eq!(parse_retry_after("tomorrow", now), None);
        assert_eq!(
            retry_after_ms(&headers(&[("RETRY-AFTER", "7")])),
            Some(7000)
        );
        assert_eq!(retry_after_ms(&headers(&[("x-other", "7")])), None);
    }

    #[test]
    fn rate_limits_from_bodies_and_reset_headers() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_rate_limit_reset("1700000030", now), Some(30_000));
        assert_eq!(parse_rate_limit_reset(" 1699999990 ", now), Some(0));
        assert_eq!(parse_rate_limit_reset("45", now), Some(45_000));
        assert_eq!(parse_rate_limit_reset("soon", now), None);
        assert_eq!(parse_rate_limit_reset("-1", now), None);

        assert_eq!(
            retry_after_in_body(br#"{"ok":false,"parameters":{"retry_after":12}}"#),
            Some(12_000)
        );
        assert_eq!(retry_after_in_body(br#" {"retry_after": 0.25}"#), Some(250));
        assert_eq!(retry_after_in_body(br#"{"retry_after": -1}"#), None);
        assert_eq!(retry_after_in_body(br#"{"retry_after": "5"}"#), None);
        assert_eq!(retry_after_in_body(br#"{"error":"slow"}"#), None);
        assert_eq!(retry_after_in_body(b"<html>slow down</html>"), None);
        assert_eq!(retry_after_in_body(b""), None);

        // The body wins over the headers; Retry-After over the reset time.
        let far = (now_ms() / 1000 + 3600).to_string();
        let both = headers(&[("Retry-After", "2"), ("X-RateLimit-Reset", far.as_str())]);
        assert_eq!(
            rate_limit_wait_ms(&both, br#"{"retry_after":9}"#),
            Some(9000)
        );
        assert_eq!(rate_limit_wait_ms(&both, b""), Some(2000));
        for name in ["X-RateLimit-Reset", "x-rate-limit-reset"] {
            let wait =
                rate_limit_wait_ms(&headers(&[(name, far.as_str())]), b"").expect("a reset time");
            assert!((3_500_000..=3_600_000).contains(&wait), "{name}: {wait}");
        }
        assert_eq!(
            rate_limit_wait_ms(&headers(&[("x-other", "5")]), b"{}"),
            None
        );

        // status_error reads them all.
        match status_error(429, &headers(&[("x-rate-limit-reset", "4")]), b"") {
            ConnectorError::RateLimited(r) => assert_eq!(r.retry_after_ms, 4000),
            other => panic!("unexpected {other:?}"),
        }
        match status_error(429, &[], br#"{"parameters":{"retry_after":3}}"#) {
            ConnectorError::RateLimited(r) => assert_eq!(r.retry_after_ms, 3000),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn teapot_error(response: &Response) -> ConnectorError {
        ConnectorError::fatal(format!(
            "Teapot said {}: {}",
            response.status,
            response.text()
        ))
    }

    const TEAPOT: Service = Service::new("Teapot", teapot_error);

    #[test]
    fn services_check_and_parse_in_one_step() {
        let ok = |body: &str| Response {
            status: 201,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let value: serde_json::Value = TEAPOT.json(ok(r#"{"id":1}"#), "pot").expect("json");
        assert_eq!(value["id"], 1);
        assert_eq!(
            TEAPOT.json::<serde_json::Value>(
                Response {
                    status: 418,
                    headers: vec![],
                    body: b"{\"error\":\"short and stout\"}".to_vec()
                },
                "pot"
            ),
            Err(ConnectorError::Fatal(
                "Teapot said 418: {\"error\":\"short and stout\"}".into()
            ))
        );
        match TEAPOT.json::<u32>(ok("[1]"), "pot count") {
            Err(ConnectorError::Fatal(m)) => {
                assert!(m.starts_with("unexpected pot count from Teapot: "), "{m}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(TEAPOT.name(), "Teapot");
        assert!(TEAPOT.check(ok("")).is_ok());
        // Without a host, sending fails before the service is asked.
        assert!(matches!(
            TEAPOT.fetch::<u32>(get("https://example.com"), "x"),
            Err(ConnectorError::Fatal(m)) if m.contains("only available inside")
        ));
    }

    #[test]
    fn json_ok_keeps_the_body_of_an_error() {
        let resp = Response {
            status: 422,
            headers: vec![],
            body: br#"{"description":"Subject is blank"}"#.to_vec(),
        };
        assert_eq!(
            resp.json_ok::<serde_json::Value>(),
            Err(ConnectorError::invalid(
                "request",
                r#"HTTP 422: {"description":"Subject is blank"}"#
            ))
        );
        let resp = Response {
            status: 200,
            headers: vec![],
            body: b"[1,2]".to_vec(),
        };
        assert_eq!(resp.json_ok::<Vec<u8>>(), Ok(vec![1, 2]));
    }

    #[test]
    fn builder_encodes_query_and_form() {
        let req = get("https://api.example.com/search?x=1")
            .query("q", "a b&c=d/é")
            .query("empty", "");
        assert_eq!(
            req.url(),
            "https://api.example.com/search?x=1&q=a%20b%26c%3Dd%2F%C3%A9&empty="
        );
        let req = post("https://api.example.com/token")
            .header("Content-Type", "text/plain")
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "a+b/c")]);
        assert_eq!(
            req.body_bytes(),
            b"grant_type=refresh_token&refresh_token=a%2Bb%2Fc"
        );
        assert_eq!(
            req.headers(),
            &[(
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string()
            )]
        );
    }

    #[test]
    fn builder_sets_json() {
        let req = put("https://api.example.com/x")
            .json(&serde_json::json!({"a": 1}))
            .timeout_ms(500);
        assert_eq!(req.method(), "PUT");
        assert_eq!(req.body_bytes(), br#"{"a":1}"#);
        assert_eq!(req.headers()[0].1, "application/json");
        assert_eq!(req.timeout_ms, Some(500));
    }

    #[test]
    fn host_errors_map_to_connector_errors() {
        assert_eq!(
            map_http_error(host::HttpError::Denied("origin x not approved".into())),
            ConnectorError::Fatal("origin x not approved".into())
        );
        assert!(matches!(
            map_http_error(host::HttpError::Timeout("30 s".into())),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            map_http_error(host::HttpError::Transport("reset".into())),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            map_http_error(host::HttpError::ResponseTooLarge(10)),
            ConnectorError::Fatal(_)
        ));
        assert!(matches!(
            map_http_error(host::HttpError::InvalidRequest("bad".into())),
            ConnectorError::Fatal(_)
        ));
    }

    #[test]
    fn rate_limited_waits_as_asked_or_the_services_window() {
        let asked = Response::new(429, &[("retry-after", "41")], "");
        assert_eq!(
            asked.rate_limited(60_000, "Acme 429"),
            ConnectorError::rate_limited(41_000, "Acme 429")
        );
        // Only Retry-After counts: a body's retry_after is some other service's habit.
        let silent = Response::new(429, &[], r#"{"retry_after": 5}"#);
        assert_eq!(
            silent.rate_limited(60_000, "Acme 429"),
            ConnectorError::rate_limited(60_000, "Acme 429")
        );
    }

    #[test]
    fn response_helpers() {
        let resp = Response {
            status: 200,
            headers: headers(&[("content-type", "application/json")]),
            body: br#"{"id":7}"#.to_vec(),
        };
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert!(resp.is_success());
        let value: serde_json::Value = resp.json().unwrap();
        assert_eq!(value["id"], 7);
        assert_eq!(resp.text(), r#"{"id":7}"#);
        let resp = Response {
            status: 404,
            headers: vec![],
            body: b"gone".to_vec(),
        };
        assert_eq!(
            resp.status_error(),
            ConnectorError::NotFound("HTTP 404: gone".into())
        );
        assert_eq!(
            resp.error_for_status(),
            Err(ConnectorError::NotFound("HTTP 404: gone".into()))
        );
    }

    #[test]
    fn sending_outside_the_host_fails_cleanly() {
        assert!(matches!(
            get("https://example.com").send(),
            Err(ConnectorError::Fatal(_))
        ));
    }
}
