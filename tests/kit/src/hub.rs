//! End-to-end fixtures: the real `switchboard` binary serving on a temp SQLite file, the Telegram
//! simulator and one helpdesk in this process, an admin API client, and wait-until helpers.
//!
//! A test starts a [`World`] for a [`Helpdesk`] (Zendesk, Freshdesk or Salesforce simulator, or
//! a queue of a real Request Tracker 5 behind a logging proxy), then a [`HubProcess`]
//! (`switchboard serve` as a child process), and [`connect`]s them the way an admin would:
//! upload both plugins, create the installations pointed at the services (connecting
//! Salesforce with OAuth2's JWT bearer flow), link them, and choose how messages travel
//! ([`Inbound`]). [`helpdesk_tests!`] runs one test body per helpdesk. [`Sims`] is the older
//! Telegram-and-Zendesk pair the server tests use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
pub use switchboard::cli::demo::desk::{self, Desk, Helpdesk, RtQueue, RtServer, Ticket};
use switchboard_simulators::faults::Fault;
use switchboard_simulators::{telegram, zendesk};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The bearer token of the hub's admin API in every test.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
/// The simulated bot's token (the bot id is the part before the colon).
pub const BOT_TOKEN: &str = "4242424242:AAE2eTestBotToken_abcdefghijklmnop";
/// `secret_token` of the Telegram webhook, and the `webhook_secret` of the installation.
pub const TELEGRAM_SECRET: &str = "e2e-telegram-secret_01";
/// Key for secrets at rest: 32 zero-to-31 bytes, base64.
pub const SECRET_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Installation and link ids the fixtures create.
pub const TELEGRAM: &str = "telegram-e2e";
pub const ZENDESK: &str = "zendesk-e2e";
pub const LINK: &str = "telegram-to-helpdesk";

/// Outbox retries in tests start after 100 ms and back off to at most 2 s, so a burst of
/// failures costs seconds, not minutes; a Retry-After from the service still wins.
pub const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHBOARD_OUTBOX_BASE_BACKOFF_MS", "100"),
    ("SWITCHBOARD_OUTBOX_MAX_BACKOFF_MS", "2000"),
];

/// Lines of the hub's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// How long a wait for an effect may take before the test fails. Generous: polls run every
/// second and the machine is shared (the e2e binary runs some sixty hubs at once on two cores;
/// a rate-limited test needed more than 30 s there once), but a correct hub needs a small
/// fraction of it. Passing tests never wait for it.
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(60);

// ----- waiting ------------------------------------------------------------------------------

/// Calls `probe` until it returns `Some`, and returns that value; panics with `what` and the
/// last probe's description after `timeout`. Probes every 50 ms: cheap reads of in-memory
/// simulators or of the admin API.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    wait_until_every(what, timeout, Duration::from_millis(50), probe).await
}

/// [`wait_until`], probing every `interval`.
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// `Ok(())` when `condition` holds, else `Err(seen)`, for [`wait_until`] probes.
pub fn check(condition: bool, seen: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(seen())
    }
}

// ----- simulators ---------------------------------------------------------------------------

/// One API request a simulator received, recorded by the [`RequestLog`] layer.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub started: Instant,
    /// When the simulator answered, or gave up because the client went away; `None` while it
    /// is still handling the request.
    pub finished: Option<Instant>,
    /// The answer's status; `None` while in flight, and for a request abandoned by its client
    /// (the server drops the handler when the connection closes).
    pub status: Option<u16>,
}

/// Every request a simulator received, in arrival order, with its outcome once answered: shows
/// what the hub did (how often it retried, when, what is in flight right now).
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<LoggedRequest>>>);

/// Marks a logged request finished when the handler completes or is dropped.
struct Finish {
    log: RequestLog,
    index: usize,
    status: Option<u16>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut entries = self.log.0.lock().unwrap_or_else(|e| e.into_inner());
        entries[self.index].status = self.status;
        entries[self.index].finished = Some(Instant::now());
    }
}

type LayerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>;

impl RequestLog {
    pub fn all(&self) -> Vec<LoggedRequest> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests whose method is `method` and whose path contains `path_part`.
    pub fn matching(&self, method: &str, path_part: &str) -> Vec<LoggedRequest> {
        self.all()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .collect()
    }

    /// How many requests for which `matches(method, path)` holds the service is still
    /// handling.
    pub fn in_flight_where(&self, matches: impl Fn(&str, &str) -> bool) -> usize {
        self.all()
            .iter()
            .filter(|r| r.finished.is_none() && matches(&r.method, &r.path))
            .count()
    }

    /// How many `method` requests whose path satisfies `path_matches` were answered with a 2xx,
    /// and when the last of them finished. Counts under the lock without copying the log, for
    /// benches that poll a log of hundreds of thousands of requests.
    pub fn count_ok(
        &self,
        method: &str,
        path_matches: impl Fn(&str) -> bool,
    ) -> (usize, Option<Instant>) {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .filter(|r| r.method == method && path_matches(&r.path))
            .fold((0, None), |(count, last), r| {
                (count + 1, last.max(r.finished))
            })
    }

    /// How many such requests the simulator is still handling.
    pub fn in_flight(&self, method: &str, path_part: &str) -> usize {
        self.matching(method, path_part)
            .iter()
            .filter(|r| r.finished.is_none())
            .count()
    }

    fn layer(self) -> impl Fn(Request, Next) -> LayerFuture + Clone + Send + Sync + 'static {
        move |request: Request, next: Next| {
            let log = self.clone();
            Box::pin(async move {
                let index = {
                    let mut entries = log.0.lock().unwrap_or_else(|e| e.into_inner());
                    entries.push(LoggedRequest {
                        method: request.method().to_string(),
                        path: request.uri().path().to_string(),
                        started: Instant::now(),
                        finished: None,
                        status: None,
                    });
                    entries.len() - 1
                };
                let mut finish = Finish {
                    log,
                    index,
                    status: None,
                };
                let response = next.run(request).await;
                finish.status = Some(response.status().as_u16());
                response
            })
        }
    }
}

/// The Telegram and Zendesk simulators, served on free local ports for one test (the server
/// tests' fixture; end-to-end tests use [`World`]).
pub struct Sims {
    pub telegram: telegram::Simulator,
    pub zendesk: zendesk::Simulator,
    /// Base URLs (`http://127.0.0.1:PORT`).
    pub telegram_url: String,
    pub zendesk_url: String,
    pub telegram_log: RequestLog,
    pub zendesk_log: RequestLog,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Sims {
    /// Fresh simulators: the bot [`BOT_TOKEN`] with fixed update ids, and a Zendesk account with
    /// the relaxed test settings (no export window, fast webhook retries).
    pub async fn start() -> Self {
        let mut config = telegram::Config::for_token(BOT_TOKEN);
        config.first_update_id = Some(700_000_000);
        // A refused webhook delivery (the hub is down in restart tests) is retried soon.
        config.webhook_retry_max = Duration::from_millis(500);
        let telegram = telegram::Simulator::new(config);
        let zendesk = zendesk::Simulator::new(zendesk::Config::default().relaxed());
        let (telegram_log, zendesk_log) = (RequestLog::default(), RequestLog::default());
        let (telegram_addr, telegram_server) = serve(
            telegram
                .router()
                .layer(axum::middleware::from_fn(telegram_log.clone().layer())),
        )
        .await;
        let (zendesk_addr, zendesk_server) = serve(
            zendesk
                .router()
                .layer(axum::middleware::from_fn(zendesk_log.clone().layer())),
        )
        .await;
        Self {
            telegram,
            zendesk,
            telegram_url: format!("http://{telegram_addr}"),
            zendesk_url: format!("http://{zendesk_addr}"),
            telegram_log,
            zendesk_log,
            servers: vec![telegram_server, zendesk_server],
        }
    }

    /// Every Zendesk ticket, oldest first.
    pub fn tickets(&self) -> Vec<Value> {
        let mut tickets = self.zendesk.tickets();
        tickets.sort_by_key(|t| t["id"].as_u64());
        tickets
    }

    /// The tickets whose requester has the external id the hub gives the Telegram user
    /// Registers a Zendesk webhook to `url` for comment and status events; returns its signing
    /// Injects `count` faults into the Zendesk simulator, for requests whose path contains
    /// `path` (all when `None`).
    pub fn zendesk_fault(
        &self,
        fault: switchboard_simulators::faults::Fault,
        count: u32,
        path: Option<&str>,
    ) {
        self.zendesk
            .faults()
            .inject(switchboard_simulators::faults::FaultSpec {
                fault,
                count,
                path: path.map(str::to_string),
            });
    }
}

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind simulator");
    let addr = listener.local_addr().expect("simulator address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, server)
}

/// A client for local servers: never through a proxy from the environment.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

// ----- the hub process ------------------------------------------------------------------------

/// `switchboard serve` running as a child process on a data dir and SQLite file of its own.
///
/// Dropping it kills the process. On a failing test its log is printed, so a failure in CI
/// shows what the hub was doing.
pub struct HubProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`; the same across [`HubProcess::restart`].
    pub url: String,
    pub addr: SocketAddr,
    pub api: Admin,
    dir: PathBuf,
    starts: u32,
    env: Vec<(String, String)>,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            // The tail is what explains a failure (the whole log goes with the temp dir).
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = strip_ansi(&lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n"));
            eprintln!(
                "----- last {LOG_TAIL_LINES} lines of the hub log ({}) -----\n{tail}",
                self.log_path().display()
            );
        }
    }
}

impl HubProcess {
    /// Starts the hub with its data and database under `dir` on a free port, retrying failed
    /// deliveries quickly ([`FAST_RETRIES`]).
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, FAST_RETRIES).await
    }

    /// [`HubProcess::start`] with these `SWITCHBOARD_*` environment variables.
    pub async fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut hub = Self {
            child: None,
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api: Admin::new(""),
            dir: dir.to_path_buf(),
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        hub.spawn().await;
        hub
    }

    /// The SQLite file the hub keeps its state in.
    pub fn database_path(&self) -> PathBuf {
        self.dir.join("hub.db")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("hub.log")
    }

    /// Everything the hub wrote to stdout and stderr, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let data_dir = self.dir.join("data");
        share_component_cache(&data_dir);
        let log_path = self.log_path();
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
            .expect("open hub log");
        log.write_all(format!("===== start #{} =====\n", self.starts).as_bytes())
            .await
            .expect("write hub log");
        let stderr = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .expect("open hub log for stderr");
        let mut child = Command::new(crate::hub_binary())
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--database-url")
            .arg(format!("sqlite://{}", self.database_path().display()))
            .arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SWITCHBOARD_SECRET_KEY", SECRET_KEY_B64)
            // The simulators listen on loopback over plain http.
            .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORK", "true")
            .env(
                "RUST_LOG",
                std::env::var("SWITCHBOARD_E2E_LOG")
                    .unwrap_or_else(|_| "info,switchboard=debug".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchboard serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let listening = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    log.write_all(format!("{line}\n").as_bytes())
                        .await
                        .expect("write hub log");
                    if let Some(url) = line.strip_prefix("switchboard listening on ") {
                        break url.trim().to_string();
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await;
                    panic!(
                        "the hub exited before listening ({status:?}):\n{}",
                        self.log()
                    );
                }
                Err(_) => panic!(
                    "the hub did not listen within {:?}:\n{}",
                    started.elapsed(),
                    self.log()
                ),
            }
        };
        // Keep draining stdout into the log, so the hub never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if log.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        self.addr = listening
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected listening line: {listening}"));
        self.url = listening;
        self.api = Admin::new(&self.url);
        self.child = Some(child);
    }

    /// The hub's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILLs the hub (no shutdown hooks run) and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL the hub");
        }
    }

    /// SIGKILLs the hub if it runs, and starts it again on the same port, data dir and database.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// POSTs `body` to the hub's webhook endpoint of `installation`, with `headers`.
    pub async fn post_webhook(
        &self,
        installation: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
        let mut request = http()
            .post(format!("{}/webhooks/{installation}", self.url))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("POST webhook");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// Delivers a Telegram update to the hub as Telegram would (JSON, the secret header).
    pub async fn post_telegram_update(&self, update: &Value) -> (StatusCode, String) {
        self.post_webhook(
            TELEGRAM,
            &[
                ("content-type", "application/json"),
                ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
            ],
            update.to_string(),
        )
        .await
    }
}

/// `text` without terminal colour codes (the hub colours its log even into a file).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter: `ESC [ 2 m`.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes `data_dir/cache` a link to one directory shared by every hub of every e2e test, so a
/// plugin is compiled to native code once rather than once per test. The hub's cache writes
/// are atomic and keyed by the engine's compatibility hash, so sharing is safe.
fn share_component_cache(data_dir: &Path) {
    let shared = crate::target_tmpdir().join("e2e-component-cache");
    std::fs::create_dir_all(&shared).expect("create shared component cache");
    std::fs::create_dir_all(data_dir).expect("create data dir");
    let link = data_dir.join("cache");
    if !link.exists() {
        #[cfg(unix)]
        std::os::unix::fs::symlink(&shared, &link).expect("link the component cache");
    }
}

// ----- admin API ------------------------------------------------------------------------------

/// A failed admin API call: the status and the body the hub answered with.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

/// The hub's admin JSON API under `/api/v1`, with the bearer token.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new(hub_url: &str) -> Self {
        Self {
            base: format!("{hub_url}/api/v1"),
            http: http(),
        }
    }

    /// One call; `Err` for a non-2xx answer.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        read(response).await
    }

    /// One call that must succeed.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} /api/v1{path} answered {}: {}", e.status, e.body))
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Uploads a plugin component and approves every host its manifest asks for.
    pub async fn install_plugin(&self, wasm: &[u8]) -> Value {
        let response = self
            .http
            .post(format!("{}/plugins?approve=all", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/wasm")
            .body(wasm.to_vec())
            .send()
            .await
            .expect("upload plugin");
        read(response)
            .await
            .unwrap_or_else(|e| panic!("plugin upload answered {}: {}", e.status, e.body))
    }

    pub async fn conversations(&self) -> Vec<Value> {
        list(self.get("/conversations").await)
    }

    pub async fn conversation(&self, id: &str) -> Value {
        self.get(&format!("/conversations/{id}")).await
    }

    pub async fn dead_letters(&self) -> Vec<Value> {
        list(self.get("/dead-letters").await)
    }

    pub async fn retry_dead_letter(&self, id: i64) {
        self.call(Method::POST, &format!("/dead-letters/{id}/retry"), None)
            .await;
    }

    pub async fn jobs(&self) -> Vec<Value> {
        list(self.get("/jobs").await)
    }

    /// The job polling `stream` of `installation`.
    pub async fn job(&self, installation: &str, stream: &str) -> Value {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j["installation_id"] == installation && j["stream"] == stream)
            .unwrap_or_else(|| panic!("no job for {installation}/{stream}"))
    }

    /// Runs a poll job now and returns the run's record. A scheduled run of the job may be
    /// under way (409): the run asked for then starts once that one is over, so that it sees
    /// everything that happened before this call.
    pub async fn run_job(&self, installation: &str, stream: &str) -> Value {
        let job = self.job(installation, stream).await;
        let path = format!("/jobs/{}/run", id_of(&job));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_call(Method::POST, &path, Some(json!({}))).await {
                Ok(run) => return run,
                Err(e) if e.status == StatusCode::CONFLICT && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("POST /api/v1{path} answered {}: {}", e.status, e.body),
            }
        }
    }

    pub async fn set_job_paused(&self, installation: &str, stream: &str, paused: bool) {
        let job = self.job(installation, stream).await;
        let action = if paused { "pause" } else { "resume" };
        self.post(&format!("/jobs/{}/{action}", id_of(&job)), json!({}))
            .await;
    }

    pub async fn set_job_schedule(&self, installation: &str, stream: &str, schedule: &str) {
        let job = self.job(installation, stream).await;
        self.call(
            Method::PATCH,
            &format!("/jobs/{}", id_of(&job)),
            Some(json!({"schedule": schedule})),
        )
        .await;
    }

    pub async fn health(&self) -> Value {
        self.get("/health").await
    }

    /// `GET /metrics` (outside `/api/v1`), as Prometheus text.
    pub async fn metrics(&self) -> String {
        let url = self.base.trim_end_matches("/api/v1").to_string() + "/metrics";
        self.http
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

async fn read(response: reqwest::Response) -> Result<Value, ApiError> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() {
        Ok(body)
    } else {
        Err(ApiError { status, body })
    }
}

/// A list answer: a bare array, or the array inside an object's only list field.
pub fn list(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Object(map) => map
            .into_iter()
            .find_map(|(_, v)| v.as_array().cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A record's `id` as text, whether the API gives it as a string or a number.
pub fn id_of(record: &Value) -> String {
    match &record["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("no id in {record} ({other})"),
    }
}

// ----- one helpdesk's world -----------------------------------------------------------------------

/// Holds back the answers to chosen requests of a service: the service handles the request in
/// full (in a task of its own, so its effect happens even if the client goes away), then the
/// answer waits until [`Hold::release`]. What a crash between "the service did it" and "the hub
/// recorded it" needs, deterministically.
#[derive(Clone)]
pub struct Hold {
    state: Arc<Mutex<HoldState>>,
    released: tokio::sync::watch::Sender<u64>,
}

type RequestMatcher = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

#[derive(Default)]
struct HoldState {
    matcher: Option<RequestMatcher>,
    /// Requests handled whose answers are held now.
    held: usize,
    /// Bumped by every release; a held answer goes once it changes.
    generation: u64,
}

impl Default for Hold {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            released: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Hold {
    /// From now on, answers to requests for which `matches(method, path)` holds are held
    /// (`path` with its query, if any).
    pub fn arm(&self, matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static) {
        self.lock().matcher = Some(Arc::new(matches));
    }

    /// How many handled requests wait for their answers to go out.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Disarms, and lets every held answer go (to a client that may be gone).
    pub fn release(&self) {
        let generation = {
            let mut state = self.lock();
            state.matcher = None;
            state.generation += 1;
            state.generation
        };
        self.released.send_replace(generation);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HoldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layer(self) -> impl Fn(Request, Next) -> LayerFuture + Clone + Send + Sync + 'static {
        move |request: Request, next: Next| {
            let hold = self.clone();
            Box::pin(async move {
                let (matcher, generation) = {
                    let state = hold.lock();
                    (state.matcher.clone(), state.generation)
                };
                let method = request.method().to_string();
                // With the query: some helpdesks read different things from one path.
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or_else(|| request.uri().path().to_string(), |p| p.to_string());
                if !matcher.is_some_and(|m| m(&method, &path)) {
                    return next.run(request).await;
                }
                let response = tokio::spawn(next.run(request))
                    .await
                    .expect("the simulator's handler panicked");
                hold.lock().held += 1;
                let mut released = hold.released.subscribe();
                let _ = released.wait_for(|g| *g > generation).await;
                hold.lock().held -= 1;
                response
            })
        }
    }
}

/// Where the RT plugin's requests for a test go: a proxy in front of the one RT instance of
/// the test binary, so they are logged, can be held ([`Hold`]) and delayed or failed
/// ([`World::fault`]) like the simulators' requests.
async fn rt_proxy(
    target: String,
    faults: Arc<switchboard_simulators::faults::Faults>,
) -> axum::Router {
    use axum::body::Body;
    use axum::response::IntoResponse;
    let client = http();
    axum::Router::new().fallback(move |request: Request| {
        let (client, target, faults) = (client.clone(), target.clone(), faults.clone());
        async move {
            let path_and_query = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            match faults.next_fault(request.uri().path()) {
                Some(Fault::Status { status }) => {
                    let status = StatusCode::from_u16(status).expect("fault status");
                    return (status, axum::Json(json!({"message": "injected fault"})))
                        .into_response();
                }
                Some(Fault::RateLimited { retry_after_secs }) => {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", retry_after_secs.to_string())],
                        axum::Json(json!({"message": "Too many requests"})),
                    )
                        .into_response();
                }
                Some(Fault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Some(Fault::Drop) => return switchboard_simulators::faults::dropped_connection(),
                None => {}
            }
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("request body");
            let mut forwarded = client.request(parts.method, format!("{target}{path_and_query}"));
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                    forwarded = forwarded.header(name, value);
                }
            }
            let answer = match forwarded.body(body).send().await {
                Ok(answer) => answer,
                Err(e) => {
                    return (StatusCode::BAD_GATEWAY, format!("RT proxy: {e}")).into_response()
                }
            };
            let mut response = axum::response::Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).expect("proxied response")
        }
    })
}

/// The RT instance of this test binary: `scripts/rt.sh start` (installing RT first when it is
/// missing and this is root), once; stopped when the binary exits. `None` when
/// `SWITCHBOARD_SKIP_RT=1`; panics with the script's output when RT cannot start.
pub fn rt_server() -> Option<&'static RtServer> {
    static RT: std::sync::OnceLock<Result<Option<RtServer>, String>> = std::sync::OnceLock::new();
    let started = RT.get_or_init(|| {
        if rt_skipped() {
            return Ok(None);
        }
        let root = crate::workspace_root();
        let pid = std::process::id();
        let dir = crate::target_tmpdir().join(format!("e2e-rt-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        let output = std::process::Command::new(root.join("scripts/rt.sh"))
            .arg("start")
            .arg(&dir)
            .arg("--watch-pid")
            .arg(pid.to_string())
            .output()
            .map_err(|e| format!("could not run scripts/rt.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "could not start Request Tracker with scripts/rt.sh ({}):\n{}\nInstall it as root \
                 (scripts/rt.sh install) or set SWITCHBOARD_SKIP_RT=1 to skip the RT tests.",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ));
        }
        RtServer::from_credentials(&dir.join("credentials.env"))
            .map(Some)
            .map_err(|e| format!("{e:#}"))
    });
    match started {
        Ok(server) => server.as_ref(),
        Err(reason) => panic!("{reason}"),
    }
}

/// `SWITCHBOARD_SKIP_RT=1`: the RT tests return at once, loudly.
pub fn rt_skipped() -> bool {
    std::env::var("SWITCHBOARD_SKIP_RT").as_deref() == Ok("1")
}

/// Generates one `#[tokio::test]` per listed test function, in a module named after the
/// helpdesk, so a failure names both: `freshdesk::conversation_by_webhook`. Each function takes
/// the [`Helpdesk`]. RT tests skip (loudly) under `SWITCHBOARD_SKIP_RT=1`.
#[macro_export]
macro_rules! helpdesk_tests {
    ($module:ident => $($test:ident),+ $(,)?) => {
        mod $module {
            $( $crate::helpdesk_tests!(@one $module $test); )+
        }
    };
    (@one $module:ident $test:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let helpdesk = $crate::hub::helpdesk_named(stringify!($module));
            if helpdesk == $crate::hub::Helpdesk::Rt && $crate::hub::rt_skipped() {
                eprintln!("\n!!!!!! SKIPPED: SWITCHBOARD_SKIP_RT=1, so this Request Tracker test ran nothing !!!!!!\n");
                return;
            }
            super::$test(helpdesk).await
        }
    };
}

/// The longest comment an agent can write in `helpdesk`, in bytes (Salesforce: 4,000 per
/// CaseComment).
pub fn max_comment_bytes(helpdesk: Helpdesk) -> Option<usize> {
    match helpdesk {
        Helpdesk::Salesforce => Some(4000),
        _ => None,
    }
}

/// The helpdesk whose [`Helpdesk::name`] is `name`.
pub fn helpdesk_named(name: &str) -> Helpdesk {
    Helpdesk::ALL
        .into_iter()
        .find(|h| h.name() == name)
        .unwrap_or_else(|| panic!("no helpdesk named {name}"))
}

/// The Telegram simulator and one helpdesk (a simulator, or a queue of the binary's RT behind
/// a proxy), served on free local ports for one test, with their request logs.
pub struct World {
    pub helpdesk: Helpdesk,
    pub telegram: telegram::Simulator,
    pub telegram_url: String,
    pub telegram_log: RequestLog,
    pub desk: Desk,
    /// Every request the hub made to the helpdesk.
    pub desk_log: RequestLog,
    /// Holds back chosen answers of the helpdesk.
    pub hold: Hold,
    faults: Arc<switchboard_simulators::faults::Faults>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl World {
    pub async fn start(helpdesk: Helpdesk) -> Self {
        let mut config = telegram::Config::for_token(BOT_TOKEN);
        config.first_update_id = Some(700_000_000);
        // A refused webhook delivery (the hub is down in restart tests) is retried soon.
        config.webhook_retry_max = Duration::from_millis(500);
        let telegram = telegram::Simulator::new(config);
        let telegram_log = RequestLog::default();
        let (telegram_addr, telegram_server) = serve(
            telegram
                .router()
                .layer(axum::middleware::from_fn(telegram_log.clone().layer())),
        )
        .await;
        let (desk_log, hold) = (RequestLog::default(), Hold::default());
        let layered = |router: axum::Router| {
            router
                .layer(axum::middleware::from_fn(hold.clone().layer()))
                .layer(axum::middleware::from_fn(desk_log.clone().layer()))
        };
        let (desk, faults, desk_server) = match helpdesk {
            Helpdesk::Zendesk => {
                let sim = desk::zendesk_simulator();
                let (addr, server) = serve(layered(sim.router())).await;
                let faults = sim.faults();
                (
                    Desk::zendesk(sim, &format!("http://{addr}")),
                    faults,
                    server,
                )
            }
            Helpdesk::Freshdesk => {
                let sim = desk::freshdesk_simulator();
                let (addr, server) = serve(layered(sim.router())).await;
                let faults = sim.faults();
                (
                    Desk::freshdesk(sim, &format!("http://{addr}")),
                    faults,
                    server,
                )
            }
            Helpdesk::Salesforce => {
                let sim = desk::salesforce_simulator();
                let (addr, server) = serve(layered(sim.router())).await;
                let faults = sim.faults();
                (
                    Desk::salesforce(sim, &format!("http://{addr}")),
                    faults,
                    server,
                )
            }
            Helpdesk::Rt => {
                static QUEUES: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let server = rt_server().expect("RT tests are skipped");
                let queue = format!(
                    "E2E {} {}",
                    std::process::id(),
                    QUEUES.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                );
                let queue = RtQueue::create(server.clone(), &queue)
                    .await
                    .unwrap_or_else(|e| panic!("{e:#}"));
                let faults = Arc::new(switchboard_simulators::faults::Faults::default());
                let proxy = rt_proxy(server.url.clone(), faults.clone()).await;
                let (addr, server) = serve(layered(proxy)).await;
                (Desk::rt(queue, &format!("http://{addr}")), faults, server)
            }
        };
        Self {
            helpdesk,
            telegram,
            telegram_url: format!("http://{telegram_addr}"),
            telegram_log,
            desk,
            desk_log,
            hold,
            faults,
            servers: vec![telegram_server, desk_server],
        }
    }

    /// The helpdesk installation's id.
    pub fn installation(&self) -> String {
        format!("{}-e2e", self.helpdesk.name())
    }

    /// How long an effect in this helpdesk may take to show. RT reports a change once it is
    /// two seconds old, and it shares the two cores with the hub and the tests.
    pub fn timeout(&self) -> Duration {
        match self.helpdesk {
            Helpdesk::Rt => EFFECT_TIMEOUT * 2,
            _ => EFFECT_TIMEOUT,
        }
    }

    /// How often a wait looks at the helpdesk: reading RT costs real requests.
    fn interval(&self) -> Duration {
        match self.helpdesk {
            Helpdesk::Rt => Duration::from_millis(500),
            _ => Duration::from_millis(50),
        }
    }

    /// The customer `chat_id` (named `name`) writes `text` to the bot; returns the update id.
    pub fn customer_says(&self, chat_id: i64, name: &str, text: &str) -> i64 {
        self.telegram
            .customer_message(telegram::CustomerMessage::new(chat_id, name, text))
    }

    /// Every ticket, oldest first.
    pub async fn tickets(&self) -> Vec<Ticket> {
        self.desk
            .tickets()
            .await
            .unwrap_or_else(|e| panic!("reading {} tickets: {e:#}", self.helpdesk))
    }

    /// The one ticket whose subject is `subject`.
    pub async fn ticket_with_subject(&self, subject: &str) -> Ticket {
        let tickets = self.tickets().await;
        let matching: Vec<&Ticket> = tickets.iter().filter(|t| t.subject == subject).collect();
        assert_eq!(
            matching.len(),
            1,
            "one ticket titled {subject:?}: {tickets:#?}"
        );
        matching[0].clone()
    }

    /// A ticket's messages (the first one, then every comment) as (body, public).
    pub async fn comments(&self, ticket: &str) -> Vec<(String, bool)> {
        self.desk
            .comments(ticket)
            .await
            .unwrap_or_else(|e| panic!("reading the comments of {ticket}: {e:#}"))
            .into_iter()
            .map(|c| (c.body, c.public))
            .collect()
    }

    /// A ticket's message bodies, oldest first.
    pub async fn bodies(&self, ticket: &str) -> Vec<String> {
        self.comments(ticket)
            .await
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    pub async fn requester_name(&self, ticket: &Ticket) -> String {
        self.desk
            .requester_name(ticket)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A human agent answers on `ticket`: publicly, or as an internal note.
    pub async fn agent_reply(&self, ticket: &str, body: &str, public: bool) {
        self.desk
            .agent_reply(ticket, body, public)
            .await
            .unwrap_or_else(|e| panic!("agent reply on {ticket}: {e:#}"))
    }

    /// A human agent sets the status of `ticket` (`solved`, `open`, ...).
    pub async fn set_status(&self, ticket: &str, status: &str) {
        self.desk
            .set_status(ticket, status)
            .await
            .unwrap_or_else(|e| panic!("status of {ticket}: {e:#}"))
    }

    /// Injects `count` faults into the helpdesk for requests whose path contains `path` (all
    /// when `None`).
    pub fn fault(&self, fault: Fault, count: u32, path: Option<&str>) {
        self.faults
            .inject(switchboard_simulators::faults::FaultSpec {
                fault,
                count,
                path: path.map(str::to_string),
            });
    }

    /// The helpdesk simulator's fault queue and rate budget; `None` for RT, whose proxy takes
    /// injected faults ([`World::fault`]) but has no budget.
    pub fn simulator_faults(&self) -> Option<&Arc<switchboard_simulators::faults::Faults>> {
        (self.helpdesk != Helpdesk::Rt).then_some(&self.faults)
    }

    /// Removes injected faults and rate limits of the helpdesk.
    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// Injects `count` faults into the Telegram simulator.
    pub fn telegram_fault(&self, fault: Fault, count: u32, path: Option<&str>) {
        self.telegram
            .faults()
            .inject(switchboard_simulators::faults::FaultSpec {
                fault,
                count,
                path: path.map(str::to_string),
            });
    }

    /// A path fragment only the helpdesk's ticket creations have (for [`World::fault`]).
    pub fn create_path(&self) -> &'static str {
        match self.helpdesk {
            Helpdesk::Zendesk | Helpdesk::Freshdesk => "/api/v2/tickets",
            Helpdesk::Salesforce => "/sobjects/Case/",
            Helpdesk::Rt => "/REST/2.0/ticket",
        }
    }

    /// Whether a request to the helpdesk creates a ticket.
    pub fn is_create(helpdesk: Helpdesk, method: &str, path: &str) -> bool {
        match helpdesk {
            Helpdesk::Zendesk | Helpdesk::Freshdesk => {
                method == "POST" && path == "/api/v2/tickets"
            }
            Helpdesk::Salesforce => {
                method == "PATCH" && path.contains("/sobjects/Case/Switchboard_External_Id__c/")
            }
            Helpdesk::Rt => method == "POST" && path == "/REST/2.0/ticket",
        }
    }

    /// Whether a request to the helpdesk is a retried ticket creation of the hub's: the look
    /// for a ticket an earlier attempt may have filed, or the create itself.
    pub fn is_create_retry(helpdesk: Helpdesk, method: &str, path: &str) -> bool {
        let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
        Self::is_create(helpdesk, method, path_only)
            || method == "GET"
                && match helpdesk {
                    Helpdesk::Zendesk => path_only == "/api/v2/tickets",
                    Helpdesk::Freshdesk => {
                        path_only == "/api/v2/tickets" && query.contains("requester_id=")
                    }
                    // The Case upsert is the look-back itself.
                    Helpdesk::Salesforce => false,
                    // The poll reads its tickets' fields from the same search.
                    Helpdesk::Rt => path_only == "/REST/2.0/tickets" && !query.contains("fields="),
                }
    }

    /// Whether a request to the helpdesk adds a customer's comment to a ticket.
    pub fn is_comment(helpdesk: Helpdesk, method: &str, path: &str) -> bool {
        match helpdesk {
            Helpdesk::Zendesk => method == "PUT" && path.starts_with("/api/v2/tickets/"),
            Helpdesk::Freshdesk => method == "POST" && path.ends_with("/notes"),
            Helpdesk::Salesforce => method == "POST" && path.ends_with("/sobjects/CaseComment"),
            Helpdesk::Rt => method == "POST" && path.ends_with("/correspond"),
        }
    }

    /// The texts the bot sent to `chat_id`, oldest first.
    pub fn sent_to(&self, chat_id: i64) -> Vec<String> {
        self.telegram
            .sent_messages(Some(chat_id))
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    /// Telegram's `setWebhook`: from now on the simulator POSTs updates to `url`.
    pub async fn set_telegram_webhook(&self, url: &str) {
        let response = http()
            .post(format!("{}/bot{BOT_TOKEN}/setWebhook", self.telegram_url))
            .json(&json!({"url": url, "secret_token": TELEGRAM_SECRET}))
            .send()
            .await
            .expect("setWebhook");
        let body: Value = response.json().await.expect("setWebhook answer");
        assert_eq!(body["ok"], json!(true), "setWebhook failed: {body}");
    }
}

// ----- wiring it all up -------------------------------------------------------------------------

/// How messages reach the hub, on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Telegram and the helpdesk POST to the hub's webhooks and the poll jobs are paused; a
    /// helpdesk without webhooks (Salesforce, RT) is polled every second.
    Webhook,
    /// Nothing is pushed; both poll jobs run every second.
    Poll,
    /// Both: the poll jobs run every second, the helpdesk also POSTs its events (where it
    /// can), and the test may POST Telegram updates itself (Telegram refuses `getUpdates`
    /// while a webhook is set, so the simulator cannot do both for one bot).
    Both,
}

/// The Telegram installation's poll stream.
pub const TELEGRAM_STREAM: &str = "updates";

/// Installs both plugins, creates the two installations (connecting OAuth2 where the plugin
/// needs it), links them, and sets up `inbound`, as an admin would through the API.
pub async fn connect(hub: &HubProcess, world: &World, inbound: Inbound) {
    connect_with(hub, world, inbound, json!({})).await
}

/// [`connect`] with these link settings.
pub async fn connect_with(hub: &HubProcess, world: &World, inbound: Inbound, link_settings: Value) {
    let api = &hub.api;
    let helpdesk = world.helpdesk;
    let installation = world.installation();
    api.install_plugin(&crate::component_once("plugins/telegram"))
        .await;
    api.install_plugin(&crate::component_once(helpdesk.plugin_dir()))
        .await;

    api.post(
        "/installations",
        json!({"id": TELEGRAM, "plugin_id": "telegram", "settings": {
            "bot_token": BOT_TOKEN,
            "api_base": world.telegram_url,
            "webhook_secret": TELEGRAM_SECRET,
        }}),
    )
    .await;
    let mut pushed = false;
    let mut settings = world.desk.installation_settings();
    if inbound != Inbound::Poll {
        let hook = world
            .desk
            .add_webhook(&format!("{}/webhooks/{installation}", hub.url))
            .await
            .unwrap_or_else(|e| panic!("webhook for {helpdesk}: {e:#}"));
        pushed = hook.is_some();
        settings = desk::merged(settings, hook);
    }
    api.post(
        "/installations",
        json!({"id": installation, "plugin_id": helpdesk.plugin_id(), "settings": settings,
            "deadline_ms": helpdesk.deadline_ms()}),
    )
    .await;
    if let Some(flow) = helpdesk.oauth_flow() {
        let connected = api
            .post(
                &format!("/installations/{installation}/oauth/connect"),
                json!({ "flow": flow }),
            )
            .await;
        assert_eq!(connected["oauth"]["flow"], flow, "{connected}");
    }
    api.post(
        "/links",
        json!({"id": LINK, "social_installation": TELEGRAM, "helpdesk_installation": installation, "settings": link_settings}),
    )
    .await;

    let stream = helpdesk.stream();
    match inbound {
        Inbound::Webhook => {
            api.set_job_paused(TELEGRAM, TELEGRAM_STREAM, true).await;
            if pushed {
                api.set_job_paused(&installation, stream, true).await;
            } else {
                api.set_job_schedule(&installation, stream, "* * * * * *")
                    .await;
            }
            world
                .set_telegram_webhook(&format!("{}/webhooks/{TELEGRAM}", hub.url))
                .await;
        }
        Inbound::Poll | Inbound::Both => {
            api.set_job_schedule(TELEGRAM, TELEGRAM_STREAM, "* * * * * *")
                .await;
            api.set_job_schedule(&installation, stream, "* * * * * *")
                .await;
        }
    }
}

/// Waits until the hub has nothing left to deliver: no pending outbox rows.
pub async fn wait_idle(hub: &HubProcess) {
    wait_until("an empty outbox", EFFECT_TIMEOUT, || async {
        let health = hub.api.health().await;
        check(health["outbox_pending"] == 0, || health.to_string())
    })
    .await
}

/// Waits until the helpdesk has exactly `count` tickets, and returns them oldest first.
pub async fn wait_tickets(world: &World, count: usize) -> Vec<Ticket> {
    wait_until_every(
        &format!("{count} {} tickets", world.helpdesk),
        world.timeout(),
        world.interval(),
        || async {
            let tickets = world.tickets().await;
            if tickets.len() == count {
                Ok(tickets)
            } else {
                Err(format!("{} tickets: {tickets:#?}", tickets.len()))
            }
        },
    )
    .await
}

/// Waits until the ticket's message bodies are exactly `expected` (oldest first).
pub async fn wait_comments(world: &World, ticket: &str, expected: &[&str]) {
    wait_until_every(
        &format!(
            "comments {expected:?} on {} ticket {ticket}",
            world.helpdesk
        ),
        world.timeout(),
        world.interval(),
        || async {
            let bodies = world.bodies(ticket).await;
            check(bodies == expected, || format!("{bodies:?}"))
        },
    )
    .await
}

/// Waits until the bot sent exactly `expected` to `chat_id` (oldest first).
pub async fn wait_sent(world: &World, chat_id: i64, expected: &[&str]) {
    wait_until(
        &format!("messages {expected:?} to chat {chat_id}"),
        world.timeout(),
        || async {
            let sent = world.sent_to(chat_id);
            check(sent == expected, || format!("{sent:?}"))
        },
    )
    .await
}

/// Waits until the simulator delivered every pending Telegram update to the hub's webhook.
pub async fn wait_telegram_drained(world: &World) {
    wait_until(
        "Telegram's webhook queue to drain",
        EFFECT_TIMEOUT,
        || async {
            let summary = world.telegram.summary();
            check(summary.pending_update_count == 0, || format!("{summary:?}"))
        },
    )
    .await
}

/// Plays the customers' side for one test. With [`Inbound::Both`] it delivers every customer
/// message to the hub twice, once as a webhook and once through a poll, alternating which comes
/// first; otherwise the simulator delivers it (webhook) or the hub fetches it (poll).
pub struct Customers<'a> {
    hub: &'a HubProcess,
    world: &'a World,
    inbound: Inbound,
    /// Updates already handed to the hub by this driver, so none is posted twice by it.
    posted: std::collections::HashSet<i64>,
    poll_first: bool,
}

impl<'a> Customers<'a> {
    /// With [`Inbound::Both`] this pauses the Telegram poll job: the driver runs it itself.
    pub async fn new(hub: &'a HubProcess, world: &'a World, inbound: Inbound) -> Self {
        if inbound == Inbound::Both {
            hub.api
                .set_job_paused(TELEGRAM, TELEGRAM_STREAM, true)
                .await;
        }
        Self {
            hub,
            world,
            inbound,
            posted: Default::default(),
            poll_first: false,
        }
    }

    /// The customer `chat_id` writes `text`.
    pub async fn say(&mut self, chat_id: i64, name: &str, text: &str) {
        self.say_all(&[(chat_id, name, text)]).await
    }

    /// Several customers write, in this order.
    pub async fn say_all(&mut self, messages: &[(i64, &str, &str)]) {
        for (chat_id, name, text) in messages {
            self.world.customer_says(*chat_id, name, text);
        }
        if self.inbound != Inbound::Both {
            return;
        }
        let updates: Vec<Value> = self
            .world
            .telegram
            .pending_updates()
            .into_iter()
            .filter(|u| {
                u["update_id"]
                    .as_i64()
                    .is_some_and(|id| !self.posted.contains(&id))
            })
            .collect();
        if self.poll_first {
            self.hub.api.run_job(TELEGRAM, TELEGRAM_STREAM).await;
        }
        for update in &updates {
            let (status, body) = self.hub.post_telegram_update(update).await;
            assert!(status.is_success(), "webhook answered {status}: {body}");
            self.posted
                .insert(update["update_id"].as_i64().expect("update_id"));
        }
        if !self.poll_first {
            self.hub.api.run_job(TELEGRAM, TELEGRAM_STREAM).await;
        }
        self.poll_first = !self.poll_first;
    }
}

/// Rows per table of the hub's SQLite file, read through a separate read-only connection: what
/// "nothing was stored" is checked against.
pub async fn row_counts(database: &Path) -> std::collections::BTreeMap<String, i64> {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", database.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut counts = std::collections::BTreeMap::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("count {table}: {e}"));
        counts.insert(table, count);
    }
    counts
}

/// The one number `sql` (a `SELECT COUNT(*) ...`) reads from the hub's database, opened read-only
/// beside the running hub.
pub async fn count_in_database(database: &Path, sql: &str) -> i64 {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", database.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A Telegram `message` update from the customer `chat_id` in their private chat, shaped like
/// the ones the Bot API delivers.
pub fn telegram_update(update_id: i64, chat_id: i64, first_name: &str, text: &str) -> Value {
    let date = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": chat_id, "is_bot": false, "first_name": first_name},
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "date": date,
            "text": text,
        },
    })
}

/// Waits until the hub has learned (by poll or webhook) that the helpdesk ticket `ticket` has
/// `status`, as its conversation detail in the admin API shows.
pub async fn wait_hub_sees_ticket_status(
    hub: &HubProcess,
    world: &World,
    ticket: &str,
    status: &str,
) {
    wait_until(
        &format!("the hub to see ticket {ticket} {status}"),
        world.timeout(),
        || async {
            let mut seen = Vec::new();
            for conversation in hub.api.conversations().await {
                let detail = hub.api.conversation(&id_of(&conversation)).await;
                for known in detail["tickets"].as_array().into_iter().flatten() {
                    if known["external_id"] == ticket {
                        if known["status"] == status {
                            return Ok(());
                        }
                        seen.push(known.clone());
                    }
                }
            }
            Err(format!("{seen:?}"))
        },
    )
    .await
}
