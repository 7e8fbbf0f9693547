//! A fake host for a plugin's native tests (feature `testkit`).
//!
//! Outside the Switchboard runtime the SDK's [`http`](crate::http) import has no host to send
//! through. A [`FakeHost`] takes its place on the current thread: it answers the plugin's
//! requests from scripted exchanges or from fixtures recorded by
//! `switchboard plugin exec --record DIR`, and keeps every request for assertions.
//!
//! ```toml
//! [dev-dependencies]
//! switchboard-plugin-sdk = { path = "...", features = ["social", "testkit"] }
//! ```
//!
//! ```
//! use switchboard_plugin_sdk::prelude::*;
//! use switchboard_plugin_sdk::testkit::{FakeHost, Reply};
//!
//! let host = FakeHost::new();
//! host.expect("GET", "https://api.example.com/messages")
//!     .reply(Reply::json(200, &serde_json::json!({"messages": []})));
//!
//! // The plugin's code, e.g. `MyConnector::poll(&ctx, "messages", None)`:
//! let response = http::get("https://api.example.com/messages?after=0")
//!     .header("accept", "application/json")
//!     .send()
//!     .unwrap();
//! assert_eq!(response.status, 200);
//!
//! let sent = host.single_request();
//! assert_eq!(sent.path(), "/messages");
//! assert_eq!(sent.query("after").as_deref(), Some("0"));
//! assert_eq!(sent.header("accept"), Some("application/json"));
//! host.verify(); // every expectation was used
//! ```
//!
//! A request no expectation matches panics with the request and the expectations left, so
//! the test fails at the line that made it. The host is installed for the thread that created
//! it and removed when it is dropped; tests running in parallel each have their own.
//!
//! # Replaying fixtures
//!
//! [`FakeHost::replay`] reads a fixture directory (format version 1, see
//! `switchboard plugin exec --help` and the SDK guide): each request is answered with the
//! first unused recorded exchange of the same method and URL, then with the last of them
//! again. Recorded requests never hold the credentials the host adds, and secret values in
//! them are `[masked]`.

use std::cell::RefCell;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::bindings::host::switchboard::connector::http as host;

/// What the fake host answers: a response, or a failure to get one.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An HTTP response, whatever its status.
    Response {
        /// The status code.
        status: u16,
        /// Response headers; give names in lower case, as the host does.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// The request timed out (the SDK maps it to `Transient`).
    Timeout,
    /// The connection failed (the SDK maps it to `Transient`).
    Transport,
    /// The host refused the origin (the SDK maps it to `Fatal`).
    Denied,
}

impl Reply {
    /// A response with a JSON body and `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, body: &T) -> Self {
        Reply::Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A response with a text body.
    pub fn text(status: u16, body: &str) -> Self {
        Reply::Response {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// An empty response with this status.
    pub fn status(status: u16) -> Self {
        Reply::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a response header (no effect on the failure replies).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Response { headers, .. } = &mut self {
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
        self
    }

    fn into_host(self, request: &host::Request) -> Result<host::Response, host::HttpError> {
        let what = format!("{} {}", request.method, request.url);
        match self {
            Reply::Response {
                status,
                headers,
                body,
            } => Ok(host::Response {
                status,
                headers,
                body,
            }),
            Reply::Timeout => Err(host::HttpError::Timeout(format!(
                "no response from {what} (test kit)"
            ))),
            Reply::Transport => Err(host::HttpError::Transport(format!(
                "could not connect for {what} (test kit)"
            ))),
            Reply::Denied => Err(host::HttpError::Denied(format!(
                "{what} is not among the approved hosts (test kit)"
            ))),
        }
    }
}

/// A request the plugin sent through the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// The method, as the plugin wrote it.
    pub method: String,
    /// The full URL, query included.
    pub url: String,
    /// The headers the plugin set, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Header names that carry credentials: the host adds these, a plugin should not.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

impl SentRequest {
    /// The URL's path, without the query.
    pub fn path(&self) -> &str {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let path_and_query = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
        path_and_query.split(['?', '#']).next().unwrap_or("/")
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?')?.1.split('#').next()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not JSON ({e}): {}",
                self.method,
                self.url,
                self.text()
            )
        })
    }

    /// The headers the plugin set that carry credentials ([`CREDENTIAL_HEADERS`]). The host
    /// adds credentials from the manifest's rules: a plugin that sets them itself leaks what
    /// the admin never approved it to see.
    pub fn credential_headers(&self) -> Vec<&str> {
        self.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| CREDENTIAL_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
            .collect()
    }
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// One scripted exchange: a request to expect and the reply to give.
#[derive(Debug, Clone)]
struct Expectation {
    method: String,
    /// Matched against the URL without its query, unless it has a query itself.
    url: String,
    headers: Vec<(String, String)>,
    body_contains: Vec<String>,
    reply: Option<Reply>,
    times: Option<usize>,
    used: usize,
}

impl Expectation {
    fn matches(&self, request: &host::Request) -> bool {
        if !self.method.eq_ignore_ascii_case(&request.method) {
            return false;
        }
        let url_ok = if self.url.contains('?') {
            request.url == self.url
        } else {
            request.url.split(['?', '#']).next() == Some(self.url.as_str())
        };
        let header_ok = self.headers.iter().all(|(name, value)| {
            request
                .headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
        });
        let body = String::from_utf8_lossy(&request.body);
        url_ok && header_ok && self.body_contains.iter().all(|part| body.contains(part))
    }

    fn available(&self) -> bool {
        self.times.is_none_or(|times| self.used < times)
    }

    fn describe(&self) -> String {
        let times = match self.times {
            Some(times) => format!("used {} of {times} times", self.used),
            None => format!("used {} times, unlimited", self.used),
        };
        format!("{} {} ({times})", self.method, self.url)
    }
}

#[derive(Debug, Default)]
struct State {
    expectations: Vec<Expectation>,
    replay: Vec<(Fixture, bool)>,
    sent: Vec<SentRequest>,
    now_ms: Option<u64>,
}

thread_local! {
    static HOST: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    HOST.with(|host| {
        let mut host = host.borrow_mut();
        let state = host
            .as_mut()
            .expect("the FakeHost of this thread was dropped while in use");
        f(state)
    })
}

/// A fake Switchboard host for the current thread. See the [module docs](self).
#[derive(Debug)]
pub struct FakeHost {
    // Not Send: the host belongs to the thread that installed it.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    /// Installs an empty fake host on this thread (replacing one installed before).
    pub fn new() -> Self {
        HOST.with(|host| *host.borrow_mut() = Some(State::default()));
        FakeHost {
            _thread: std::marker::PhantomData,
        }
    }

    /// Installs a fake host that answers from the fixtures in `dir`, recorded by
    /// `switchboard plugin exec --record DIR`. Scripted expectations added later are tried
    /// first.
    ///
    /// Panics with the file and the reason when a fixture cannot be read.
    pub fn replay(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let fixtures = read_fixtures(dir).unwrap_or_else(|e| panic!("{e}"));
        let host = Self::new();
        with_state(|state| state.replay = fixtures.into_iter().map(|f| (f, false)).collect());
        host
    }

    /// Expects a request: `url` is compared without its query string, unless it has one.
    /// Answer it with [`ExpectBuilder::reply`]; by default it may be used once.
    pub fn expect(&self, method: &str, url: &str) -> ExpectBuilder<'_> {
        ExpectBuilder {
            _host: self,
            expectation: Expectation {
                method: method.to_string(),
                url: url.to_string(),
                headers: Vec::new(),
                body_contains: Vec::new(),
                reply: None,
                times: Some(1),
                used: 0,
            },
        }
    }

    /// Freezes [`now_ms`](crate::now_ms) at `ms` for this thread (for `Retry-After` dates,
    /// reply windows and timestamps).
    pub fn set_now_ms(&self, ms: u64) {
        with_state(|state| state.now_ms = Some(ms));
    }

    /// Every request the plugin sent so far, in order.
    pub fn requests(&self) -> Vec<SentRequest> {
        with_state(|state| state.sent.clone())
    }

    /// The only request the plugin sent; panics when it sent none or several.
    pub fn single_request(&self) -> SentRequest {
        let sent = self.requests();
        match sent.as_slice() {
            [one] => one.clone(),
            _ => panic!(
                "expected exactly one request, the plugin sent {}: {:?}",
                sent.len(),
                sent.iter()
                    .map(|r| format!("{} {}", r.method, r.url))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Forgets the requests sent so far.
    pub fn clear_requests(&self) {
        with_state(|state| state.sent.clear());
    }

    /// Panics when an expectation limited to a number of uses was not used that often, or
    /// when the plugin set credential headers itself.
    pub fn verify(&self) {
        let (unmet, credentials) = with_state(|state| {
            let unmet: Vec<String> = state
                .expectations
                .iter()
                .filter(|e| e.times.is_some_and(|times| e.used < times))
                .map(Expectation::describe)
                .collect();
            let credentials: Vec<String> = state
                .sent
                .iter()
                .filter(|r| !r.credential_headers().is_empty())
                .map(|r| format!("{} {}: {:?}", r.method, r.url, r.credential_headers()))
                .collect();
            (unmet, credentials)
        });
        assert!(
            unmet.is_empty(),
            "expected requests the plugin did not make: {unmet:?}"
        );
        assert!(
            credentials.is_empty(),
            "the plugin set credential headers itself (the host adds them from the manifest's \
             `credentials`): {credentials:?}"
        );
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        HOST.with(|host| *host.borrow_mut() = None);
    }
}

/// Builds one expectation; finish it with [`reply`](Self::reply).
#[derive(Debug)]
#[must_use = "an expectation is added by `reply`"]
pub struct ExpectBuilder<'a> {
    _host: &'a FakeHost,
    expectation: Expectation,
}

impl ExpectBuilder<'_> {
    /// Matches only requests that carry this header with this value.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.expectation
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Matches only requests whose body contains `part`.
    pub fn body_contains(mut self, part: &str) -> Self {
        self.expectation.body_contains.push(part.to_string());
        self
    }

    /// May be used `n` times (default once); [`FakeHost::verify`] checks it was.
    pub fn times(mut self, n: usize) -> Self {
        self.expectation.times = Some(n);
        self
    }

    /// May be used any number of times, none included.
    pub fn any_times(mut self) -> Self {
        self.expectation.times = None;
        self
    }

    /// Adds the expectation, answered with `reply`.
    pub fn reply(mut self, reply: Reply) {
        self.expectation.reply = Some(reply);
        let expectation = self.expectation;
        with_state(|state| state.expectations.push(expectation));
    }
}

/// The fake host's answer to a request, when one is installed on this thread.
pub(crate) fn dispatch(request: &host::Request) -> Option<Result<host::Response, host::HttpError>> {
    let installed = HOST.with(|host| host.borrow().is_some());
    if !installed {
        return None;
    }
    let reply = with_state(|state| {
        state.sent.push(SentRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        if let Some(expectation) = state
            .expectations
            .iter_mut()
            .find(|e| e.available() && e.matches(request))
        {
            expectation.used += 1;
            return Ok(expectation.reply.clone().unwrap_or(Reply::status(200)));
        }
        if let Some(reply) = replay(&mut state.replay, request) {
            return Ok(reply);
        }
        Err(format!(
            "unexpected request {} {}; expectations: {:?}; fixtures: {:?}",
            request.method,
            request.url,
            state
                .expectations
                .iter()
                .map(Expectation::describe)
                .collect::<Vec<_>>(),
            state
                .replay
                .iter()
                .map(|(f, _)| format!("{} {}", f.request.method, f.request.url))
                .collect::<Vec<_>>()
        ))
    });
    match reply {
        Ok(reply) => Some(reply.into_host(request)),
        Err(message) => panic!("{message}"),
    }
}

/// The frozen clock of this thread's fake host, if any.
pub(crate) fn frozen_now_ms() -> Option<u64> {
    HOST.with(|host| host.borrow().as_ref().and_then(|state| state.now_ms))
}

// ----- fixtures ------------------------------------------------------------------------------

/// The fixture format version this test kit reads.
pub const FIXTURE_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
struct Fixture {
    version: u32,
    request: FixtureRequest,
    response: Option<FixtureResponse>,
    error: Option<FixtureError>,
}

#[derive(Debug, Clone, Deserialize)]
struct FixtureRequest {
    method: String,
    url: String,
}

#[derive(Debug, Clone, Deserialize)]
struct FixtureResponse {
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
    body_base64: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct FixtureError {
    kind: String,
}

fn read_fixtures(dir: &Path) -> Result<Vec<Fixture>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("reading fixtures in {}: {e}", dir.display()))?;
    let mut files: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter_map(|path| {
            let number = path.file_stem()?.to_str()?.parse::<u32>().ok()?;
            Some((number, path))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} holds no fixtures (files named like 0001.json); record some with \
             `switchboard plugin exec --record {}`",
            dir.display(),
            dir.display()
        ));
    }
    files
        .into_iter()
        .map(|(_, path)| {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let fixture: Fixture = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a fixture: {e}", path.display()))?;
            if fixture.version != FIXTURE_VERSION {
                return Err(format!(
                    "{} has fixture format version {}; this test kit reads {FIXTURE_VERSION}",
                    path.display(),
                    fixture.version
                ));
            }
            if fixture.response.is_none() && fixture.error.is_none() {
                return Err(format!(
                    "{} has neither `response` nor `error`",
                    path.display()
                ));
            }
            Ok(fixture)
        })
        .collect()
}

fn replay(fixtures: &mut [(Fixture, bool)], request: &host::Request) -> Option<Reply> {
    let same = |f: &Fixture| {
        f.request.method.eq_ignore_ascii_case(&request.method) && f.request.url == request.url
    };
    let index = fixtures
        .iter()
        .position(|(f, used)| !used && same(f))
        .or_else(|| fixtures.iter().rposition(|(f, _)| same(f)))?;
    fixtures[index].1 = true;
    let fixture = &fixtures[index].0;
    Some(match (&fixture.response, &fixture.error) {
        (Some(response), _) => Reply::Response {
            status: response.status,
            headers: response.headers.clone(),
            body: match (&response.body, &response.body_base64) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_else(|e| {
                        panic!("a fixture for {} has invalid body_base64: {e}", request.url)
                    }),
                (None, None) => Vec::new(),
            },
        },
        (None, Some(error)) => match error.kind.as_str() {
            "timeout" => Reply::Timeout,
            "denied" => Reply::Denied,
            _ => Reply::Transport,
        },
        (None, None) => Reply::Transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http, ConnectorError};

    #[test]
    fn scripted_replies_and_assertions() {
        let host = FakeHost::new();
        host.expect("POST", "https://api.example.com/send")
            .header("idempotency-key", "k1")
            .reply(Reply::json(201, &serde_json::json!({"id": "m1"})));
        host.expect("GET", "https://api.example.com/items")
            .times(2)
            .reply(Reply::status(429).header("Retry-After", "7"));
        let sent = http::post("https://api.example.com/send")
            .header("idempotency-key", "k1")
            .json(&serde_json::json!({"text": "hi"}))
            .send()
            .expect("sent");
        assert_eq!(sent.status, 201);
        for _ in 0..2 {
            let error = http::get("https://api.example.com/items?page=2")
                .send()
                .expect("answered")
                .error_for_status()
                .expect_err("429");
            assert!(
                matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 7_000),
                "{error:?}"
            );
        }
        let requests = host.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].json()["text"], "hi");
        assert_eq!(requests[1].query("page").as_deref(), Some("2"));
        assert_eq!(requests[1].path(), "/items");
        host.verify();
    }

    #[test]
    #[should_panic(expected = "unexpected request GET https://elsewhere.example.com/")]
    fn an_unexpected_request_fails_the_test() {
        let _host = FakeHost::new();
        let _ = http::get("https://elsewhere.example.com/").send();
    }

    #[test]
    #[should_panic(expected = "did not make")]
    fn verify_reports_unused_expectations() {
        let host = FakeHost::new();
        host.expect("GET", "https://api.example.com/never")
            .reply(Reply::status(200));
        host.verify();
    }

    #[test]
    #[should_panic(expected = "credential headers")]
    fn verify_reports_credentials_the_plugin_set() {
        let host = FakeHost::new();
        host.expect("GET", "https://api.example.com/me")
            .reply(Reply::status(200));
        let _ = http::get("https://api.example.com/me")
            .header("Authorization", "Bearer leaked")
            .send();
        host.verify();
    }

    #[test]
    fn failures_map_like_the_host_s() {
        let host = FakeHost::new();
        host.expect("GET", "https://api.example.com/slow")
            .reply(Reply::Timeout);
        let error = http::get("https://api.example.com/slow")
            .send()
            .expect_err("timeout");
        assert!(matches!(error, ConnectorError::Transient(_)), "{error:?}");
        host.set_now_ms(1_000);
        assert_eq!(crate::now_ms(), 1_000);
    }

    #[test]
    fn fixtures_replay_in_order_then_repeat_the_last() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-testkit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let fixture = |body: &str| {
            serde_json::json!({
                "version": 1,
                "request": {"method": "GET", "url": "https://api.example.com/page", "headers": []},
                "response": {"status": 200, "headers": [], "body": body}
            })
            .to_string()
        };
        std::fs::write(dir.join("0001.json"), fixture("one")).expect("write");
        std::fs::write(dir.join("0002.json"), fixture("two")).expect("write");
        std::fs::write(dir.join("notes.txt"), "ignored").expect("write");
        let host = FakeHost::replay(&dir);
        let body = || {
            http::get("https://api.example.com/page")
                .send()
                .expect("replayed")
                .text()
        };
        assert_eq!(body(), "one");
        assert_eq!(body(), "two");
        assert_eq!(body(), "two");
        assert_eq!(host.requests().len(), 3);
        drop(host);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
