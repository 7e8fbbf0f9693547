//! What a store holds while one plugin call runs: the call's capabilities and limits.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::bindings::{clock, http, log, metering, types};
use super::http::{HttpPolicy, HttpSender};
use super::log::LogSink;

/// Per-store data. One store serves exactly one call and is then dropped, so nothing leaks from
/// one call (or one installation) into the next.
pub struct PluginState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) http_policy: Arc<HttpPolicy>,
    pub(crate) http: HttpSender,
    pub(crate) log: LogSink,
    pub(crate) started: Instant,
    pub(crate) deadline: Duration,
    /// Set when the epoch callback interrupted the call at its deadline.
    pub(crate) timed_out: bool,
    /// Billable calls the plugin reported during this call (contract 0.3 `metering`).
    pub(crate) billable: BillableCalls,
}

/// The billable calls one call reported, per declared kind.
#[derive(Debug, Default)]
pub struct BillableCalls {
    /// The manifest's `billable-kinds`.
    pub(crate) declared: Arc<[String]>,
    pub(crate) reported: Vec<(String, u64)>,
}

impl BillableCalls {
    pub(crate) fn new(declared: Arc<[String]>) -> Self {
        Self {
            declared,
            reported: Vec::new(),
        }
    }

    fn report(&mut self, kind: &str, count: u32) -> Result<(), String> {
        if !self.declared.iter().any(|k| k == kind) {
            return Err(format!(
                "billable kind `{}` is not declared in the manifest's billable-kinds [{}]",
                super::bounds::truncate(kind, 128),
                self.declared.join(", ")
            ));
        }
        match self.reported.iter_mut().find(|(k, _)| k == kind) {
            Some((_, total)) => *total = total.saturating_add(u64::from(count)),
            None => self.reported.push((kind.to_string(), u64::from(count))),
        }
        Ok(())
    }
}

impl PluginState {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }
}

/// Caps the linear memory of one instance, and remembers when it refused to grow so the error
/// can say so instead of reporting a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub(crate) max_bytes: usize,
    pub(crate) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} bytes exceeded (asked for {desired})",
                self.max_bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl types::Host for PluginState {}

impl http::Host for PluginState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let method = request.method.clone();
        let started = Instant::now();
        let remaining = self.remaining();
        let policy = Arc::clone(&self.http_policy);
        // The plugin wrote this URL: it may be huge or carry a secret, and this line is outside
        // the plugin's log budget.
        let display_url = policy.quoted(&request.url);
        let method = policy.quoted(&method);
        let result = self.http.send(&policy, request, remaining).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(response) => {
                tracing::debug!(%method, url = %display_url, status = response.status, elapsed_ms, "plugin http request")
            }
            Err(error) => {
                tracing::info!(%method, url = %display_url, ?error, elapsed_ms, "plugin http request failed")
            }
        }
        result
    }
}

impl metering::Host for PluginState {
    async fn report_billable(&mut self, kind: String, count: u32) -> Result<(), String> {
        let reported = self.billable.report(&kind, count);
        if let Err(error) = &reported {
            tracing::warn!(plugin = %self.log.plugin_id(), %error, "plugin reported an undeclared billable kind");
        }
        reported
    }
}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.log.emit(level, &message, &fields);
    }
}

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
