//! A plugin's HTTP exchanges seen from outside the plugin, for developers: printed
//! (`plugin exec --trace-http`), recorded as fixtures (`plugin exec --record DIR`), replayed
//! from fixtures and answered with scripted faults (`plugin test`).
//!
//! # The fixture format (version 1)
//!
//! A fixture set is a directory of JSON files, one per exchange, named `NNNN.json` in the order
//! the requests were made (`0001.json`, `0002.json`, ...). Each file holds one object:
//!
//! ```json
//! {
//!   "version": 1,
//!   "request": {
//!     "method": "GET",
//!     "url": "https://api.example.com/messages?after=0",
//!     "headers": [["accept", "application/json"]],
//!     "body": "text, when the body is UTF-8 (absent when empty)",
//!     "body_base64": "the body in base64, when it is not UTF-8"
//!   },
//!   "response": { "status": 200, "headers": [["content-type", "application/json"]], "body": "..." }
//! }
//! ```
//!
//! or, when the request got no response, `"error": {"kind": "timeout", "message": "..."}` in
//! place of `"response"`; `kind` is one of `denied`, `timeout`, `transport`,
//! `response-too-large`, `invalid-request`.
//!
//! The request is the one the plugin wrote: the credentials the host adds are never in it.
//! Secret setting values are replaced by `[masked]` wherever they appear, and the values of the
//! headers in [`CREDENTIAL_HEADERS`] are always masked. Replaying answers each request with the
//! first unused exchange of the same method and URL, then with the last one of them again.
//! The SDK's test kit (`switchboard_plugin_sdk::testkit`, feature `testkit`) reads the same
//! format.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::runtime::bindings::http::{HttpError, Request, Response};
use crate::runtime::http::{HttpTap, TappedExchange};

/// The fixture format version this host writes and reads.
pub const FIXTURE_VERSION: u32 = 1;

/// Headers whose values are credentials: masked in traces and fixtures whatever they hold.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// What replaces a secret in traces and fixtures.
pub const MASK: &str = "[masked]";

/// One recorded request and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub version: u32,
    pub request: RecordedRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RecordedResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub body: RecordedBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub body: RecordedBody,
}

/// A body as text when it is UTF-8, else as base64; both absent for an empty body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedError {
    pub kind: String,
    pub message: String,
}

impl RecordedBody {
    fn of(bytes: &[u8], secrets: &[String]) -> Self {
        if bytes.is_empty() {
            return Self::default();
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                body: Some(mask(text, secrets)),
                body_base64: None,
            },
            Err(_) => Self {
                body: None,
                body_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    pub fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .context("`body_base64` is not valid base64"),
            (None, None) => Ok(Vec::new()),
        }
    }

    pub fn text(&self) -> String {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => text.clone(),
            (None, Some(encoded)) => format!("(binary, base64) {encoded}"),
            (None, None) => String::new(),
        }
    }
}

/// `text` with every secret value replaced by [`MASK`].
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    text
}

fn mask_headers(headers: &[(String, String)], secrets: &[String]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                MASK.to_string()
            } else {
                mask(value, secrets)
            };
            (name.clone(), value)
        })
        .collect()
}

fn error_kind(error: &HttpError) -> (&'static str, &str) {
    match error {
        HttpError::Denied(m) => ("denied", m),
        HttpError::Timeout(m) => ("timeout", m),
        HttpError::Transport(m) => ("transport", m),
        HttpError::ResponseTooLarge(_) => ("response-too-large", ""),
        HttpError::InvalidRequest(m) => ("invalid-request", m),
    }
}

impl Exchange {
    /// The exchange as it may be stored or shown: secrets masked.
    pub fn from_tapped(exchange: &TappedExchange<'_>) -> Self {
        let secrets = exchange.secrets;
        let request = RecordedRequest {
            method: exchange.request.method.clone(),
            url: mask(&exchange.request.url, secrets),
            headers: mask_headers(&exchange.request.headers, secrets),
            body: RecordedBody::of(&exchange.request.body, secrets),
        };
        let (response, error) = match exchange.result {
            Ok(response) => (
                Some(RecordedResponse {
                    status: response.status,
                    headers: mask_headers(&response.headers, secrets),
                    body: RecordedBody::of(&response.body, secrets),
                }),
                None,
            ),
            Err(error) => {
                let (kind, message) = error_kind(error);
                let message = match error {
                    HttpError::ResponseTooLarge(cap) => format!("over {cap} bytes"),
                    _ => mask(message, secrets),
                };
                (
                    None,
                    Some(RecordedError {
                        kind: kind.to_string(),
                        message,
                    }),
                )
            }
        };
        Self {
            version: FIXTURE_VERSION,
            request,
            response,
            error,
        }
    }

    /// What the plugin gets when this exchange is replayed.
    pub fn outcome(&self) -> anyhow::Result<Result<Response, HttpError>> {
        if let Some(response) = &self.response {
            return Ok(Ok(Response {
                status: response.status,
                headers: response.headers.clone(),
                body: response.body.bytes()?,
            }));
        }
        let Some(error) = &self.error else {
            bail!("the exchange has neither `response` nor `error`");
        };
        let message = error.message.clone();
        Ok(Err(match error.kind.as_str() {
            "denied" => HttpError::Denied(message),
            "timeout" => HttpError::Timeout(message),
            "transport" => HttpError::Transport(message),
            "response-too-large" => HttpError::ResponseTooLarge(0),
            "invalid-request" => HttpError::InvalidRequest(message),
            other => bail!(
                "unknown error kind `{other}` (denied, timeout, transport, response-too-large, \
                 invalid-request)"
            ),
        }))
    }
}

/// The fixture files of `dir`, in order.
fn fixture_files(dir: &Path) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "json"))
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(number) = number {
            files.push((number, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a fixture set written by `plugin exec --record`.
pub fn read_fixtures(dir: &Path) -> anyhow::Result<Vec<Exchange>> {
    let mut exchanges = Vec::new();
    for (_, path) in fixture_files(dir)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let exchange: Exchange = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a fixture of format version {FIXTURE_VERSION} (see `plugin exec --record`)",
                path.display()
            )
        })?;
        if exchange.version != FIXTURE_VERSION {
            bail!(
                "{} has fixture format version {}; this host reads version {FIXTURE_VERSION}",
                path.display(),
                exchange.version
            );
        }
        let _replayable = exchange
            .outcome()
            .with_context(|| format!("in {}", path.display()))?;
        exchanges.push(exchange);
    }
    if exchanges.is_empty() {
        bail!(
            "{} holds no fixtures (files named like 0001.json); record some with \
             `switchboard plugin exec --record {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(exchanges)
}

/// Answers requests from a fixture set: the first unused exchange with the same method and
/// URL, then the last of them again.
#[derive(Debug)]
pub struct Replay {
    exchanges: Vec<Exchange>,
    used: Vec<bool>,
}

impl Replay {
    pub fn new(exchanges: Vec<Exchange>) -> Self {
        let used = vec![false; exchanges.len()];
        Self { exchanges, used }
    }

    pub fn answer(&mut self, request: &Request, secrets: &[String]) -> Result<Response, HttpError> {
        let url = mask(&request.url, secrets);
        let same = |e: &Exchange| {
            e.request.method.eq_ignore_ascii_case(&request.method) && e.request.url == url
        };
        let unused = (0..self.exchanges.len()).find(|&i| !self.used[i] && same(&self.exchanges[i]));
        let chosen = unused.or_else(|| {
            (0..self.exchanges.len())
                .rev()
                .find(|&i| same(&self.exchanges[i]))
        });
        let Some(index) = chosen else {
            return Err(HttpError::Transport(format!(
                "no recorded exchange for {} {url}; record one with `plugin exec --record`",
                request.method
            )));
        };
        self.used[index] = true;
        match self.exchanges[index].outcome() {
            Ok(outcome) => outcome,
            Err(error) => Err(HttpError::Transport(format!("{error:#}"))),
        }
    }
}

/// The developer tools' [`HttpTap`]: prints, records, replays, injects faults and keeps the
/// exchanges of the current check for inspection.
#[derive(Default)]
pub struct DevTap {
    trace: bool,
    record: Option<Mutex<Recorder>>,
    replay: Option<Mutex<Replay>>,
    /// Answered to every request while set (`plugin test`'s error mapping checks).
    fault: Mutex<Option<Result<Response, HttpError>>>,
    seen: Mutex<Vec<Exchange>>,
}

#[derive(Debug)]
struct Recorder {
    dir: PathBuf,
    next: u32,
    failed: Option<String>,
}

impl DevTap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints every exchange to standard error, credentials masked.
    pub fn with_trace(mut self) -> Self {
        self.trace = true;
        self
    }

    /// Writes every exchange into `dir` as a fixture, numbered after the ones already there.
    pub fn with_recording(mut self, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let next = fixture_files(dir)?.last().map_or(1, |(n, _)| n + 1);
        self.record = Some(Mutex::new(Recorder {
            dir: dir.to_path_buf(),
            next,
            failed: None,
        }));
        Ok(self)
    }

    /// Answers requests from a fixture set instead of the network.
    pub fn with_replay(mut self, exchanges: Vec<Exchange>) -> Self {
        self.replay = Some(Mutex::new(Replay::new(exchanges)));
        self
    }

    /// Answers every request with `fault` until [`clear_fault`](Self::clear_fault).
    pub fn set_fault(&self, fault: Result<Response, HttpError>) {
        *lock(&self.fault) = Some(fault);
    }

    pub fn clear_fault(&self) {
        *lock(&self.fault) = None;
    }

    /// The exchanges since the last call, masked.
    pub fn take_seen(&self) -> Vec<Exchange> {
        std::mem::take(&mut *lock(&self.seen))
    }

    /// Why recording failed, if it did (a full disk must not pass unnoticed).
    pub fn recording_error(&self) -> Option<String> {
        self.record.as_ref().and_then(|r| lock(r).failed.clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpTap for DevTap {
    fn answer(&self, request: &Request, secrets: &[String]) -> Option<Result<Response, HttpError>> {
        if let Some(fault) = lock(&self.fault).as_ref() {
            return Some(fault.clone());
        }
        self.replay
            .as_ref()
            .map(|replay| lock(replay).answer(request, secrets))
    }

    fn observe(&self, tapped: &TappedExchange<'_>) {
        let exchange = Exchange::from_tapped(tapped);
        if self.trace {
            eprint!("{}", trace_text(&exchange, tapped));
        }
        if let Some(recorder) = &self.record {
            let mut recorder = lock(recorder);
            if recorder.failed.is_none() {
                let path = recorder.dir.join(format!("{:04}.json", recorder.next));
                let written = serde_json::to_vec_pretty(&exchange)
                    .map_err(anyhow::Error::from)
                    .and_then(|json| {
                        let mut file = std::fs::File::create(&path)?;
                        file.write_all(&json)?;
                        file.write_all(b"\n")?;
                        Ok(())
                    });
                match written {
                    Ok(()) => recorder.next += 1,
                    Err(error) => {
                        recorder.failed = Some(format!("writing {}: {error:#}", path.display()))
                    }
                }
            }
        }
        lock(&self.seen).push(exchange);
    }
}

/// Longest body shown in a trace, in characters.
const TRACE_BODY_CHARS: usize = 2_000;

fn shorten(text: &str) -> String {
    match text.char_indices().nth(TRACE_BODY_CHARS) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_string(),
    }
}

/// An exchange as `--trace-http` prints it.
pub fn trace_text(exchange: &Exchange, tapped: &TappedExchange<'_>) -> String {
    let mut out = String::new();
    let request = &exchange.request;
    out.push_str(&format!("> {} {}\n", request.method, request.url));
    for (name, value) in &request.headers {
        out.push_str(&format!(">   {name}: {value}\n"));
    }
    if !tapped.credentials.is_empty() {
        out.push_str(&format!(
            ">   (the host adds credentials: {})\n",
            tapped.credentials.join(", ")
        ));
    }
    let body = request.body.text();
    if !body.is_empty() {
        out.push_str(&format!(">   {}\n", shorten(&body)));
    }
    let source = if tapped.scripted { ", scripted" } else { "" };
    let ms = tapped.elapsed.as_millis();
    match (&exchange.response, &exchange.error) {
        (Some(response), _) => {
            out.push_str(&format!("< {} ({ms} ms{source})\n", response.status));
            for (name, value) in &response.headers {
                out.push_str(&format!("<   {name}: {value}\n"));
            }
            let body = response.body.text();
            if !body.is_empty() {
                out.push_str(&format!("<   {}\n", shorten(&body)));
            }
        }
        (None, Some(error)) => out.push_str(&format!(
            "< no response: {} {} ({ms} ms{source})\n",
            error.kind, error.message
        )),
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tapped<'a>(
        request: &'a Request,
        result: &'a Result<Response, HttpError>,
        secrets: &'a [String],
    ) -> TappedExchange<'a> {
        TappedExchange {
            request,
            result,
            elapsed: Duration::from_millis(3),
            credentials: vec!["header `authorization`".into()],
            secrets,
            scripted: false,
        }
    }

    #[test]
    fn recorded_exchanges_mask_secrets_and_replay_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let tap = DevTap::new().with_recording(dir.path()).expect("recorder");
        let secrets = vec!["s3cr3t".to_string()];
        let request = Request {
            method: "GET".into(),
            url: "https://api.example.com/items?key=s3cr3t".into(),
            headers: vec![
                ("Authorization".into(), "Bearer mine".into()),
                ("x-note".into(), "has s3cr3t inside".into()),
            ],
            body: vec![],
            timeout_ms: None,
        };
        for page in ["one", "two"] {
            let result = Ok(Response {
                status: 200,
                headers: vec![("set-cookie".into(), "sid=1".into())],
                body: page.as_bytes().to_vec(),
            });
            tap.observe(&tapped(&request, &result, &secrets));
        }
        let timeout = Err(HttpError::Timeout("slow s3cr3t".into()));
        tap.observe(&tapped(&request, &timeout, &secrets));
        assert_eq!(tap.recording_error(), None);
        let raw = std::fs::read_to_string(dir.path().join("0001.json")).expect("written");
        assert!(
            !raw.contains("s3cr3t") && !raw.contains("Bearer mine"),
            "{raw}"
        );
        assert!(raw.contains(MASK), "{raw}");

        let fixtures = read_fixtures(dir.path()).expect("read");
        assert_eq!(fixtures.len(), 3);
        let mut replay = Replay::new(fixtures);
        let masked = Request {
            url: "https://api.example.com/items?key=[masked]".into(),
            ..request
        };
        let body = |r: Result<Response, HttpError>| r.ok().map(|r| r.body);
        assert_eq!(body(replay.answer(&masked, &[])), Some(b"one".to_vec()));
        assert_eq!(body(replay.answer(&masked, &[])), Some(b"two".to_vec()));
        assert!(matches!(
            replay.answer(&masked, &[]),
            Err(HttpError::Timeout(_))
        ));
        // Used up: the last one again.
        assert!(matches!(
            replay.answer(&masked, &[]),
            Err(HttpError::Timeout(_))
        ));
        let other = Request {
            url: "https://api.example.com/other".into(),
            ..masked
        };
        let Err(HttpError::Transport(message)) = replay.answer(&other, &[]) else {
            panic!("an unrecorded request must fail")
        };
        assert!(message.contains("/other"), "{message}");
    }

    #[test]
    fn a_bad_fixture_is_refused_with_its_file_name() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("0001.json"), "{\"version\": 1}").expect("write");
        let error = format!("{:#}", read_fixtures(dir.path()).expect_err("refused"));
        assert!(error.contains("0001.json"), "{error}");
        let empty = tempfile::tempdir().expect("dir");
        let error = format!("{:#}", read_fixtures(empty.path()).expect_err("refused"));
        assert!(error.contains("no fixtures"), "{error}");
    }
}
