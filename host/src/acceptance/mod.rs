//! `switchboard plugin test`: one acceptance suite every connector must pass.
//!
//! The suite runs the built component in the real runtime. Error mapping needs no service: the
//! runtime's HTTP layer answers the plugin's requests with scripted faults (401, 429 in each
//! rate-limit style, 5xx, a timeout, a malformed body, ...). The round trips (polling,
//! sending, webhooks, helpdesk operations) run against a service: the one the settings point
//! at (a simulator, or a test account), or a fixture set recorded by
//! `plugin exec --record` (`--fixtures DIR`).
//!
//! Each check passes, fails (naming the rule and how to fix it), warns (legal but worth a
//! look) or is skipped (saying what it needs to run). One file per group of checks.

mod errors;
mod helpdesk;
pub mod manifest;
mod polling;
mod sending;
mod webhooks;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::exchange::DevTap;
use crate::manifest::PluginKind;
use crate::runtime::latest::{ConnectorError, WebhookRequest};
use crate::runtime::{HelpdeskConnector, Installation, Plugin, Runtime, SocialConnector};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    /// Legal, but worth a look; does not fail the suite.
    Warn {
        note: String,
    },
    Fail {
        rule: String,
        fix: String,
    },
    Skip {
        reason: String,
    },
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub group: &'static str,
    pub check: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl CheckResult {
    pub fn pass(group: &'static str, check: impl Into<String>) -> Self {
        Self {
            group,
            check: check.into(),
            outcome: Outcome::Pass,
        }
    }

    pub fn fail(
        group: &'static str,
        check: impl Into<String>,
        rule: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            group,
            check: check.into(),
            outcome: Outcome::Fail {
                rule: rule.into(),
                fix: fix.into(),
            },
        }
    }

    pub fn skip(group: &'static str, check: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            group,
            check: check.into(),
            outcome: Outcome::Skip {
                reason: reason.into(),
            },
        }
    }

    pub fn warn(group: &'static str, check: impl Into<String>, note: impl Into<String>) -> Self {
        Self {
            group,
            check: check.into(),
            outcome: Outcome::Warn { note: note.into() },
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. })
    }
}

/// Everything the suite found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub plugin: String,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.results.iter().any(CheckResult::failed)
    }

    pub fn failures(&self) -> Vec<&CheckResult> {
        self.results.iter().filter(|r| r.failed()).collect()
    }

    /// The result of `group/check`, for tests.
    pub fn result(&self, group: &str, check: &str) -> Option<&CheckResult> {
        self.results
            .iter()
            .find(|r| r.group == group && r.check == check)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for result in &self.results {
            let name = format!("{}/{}", result.group, result.check);
            match &result.outcome {
                Outcome::Pass => writeln!(f, "pass  {name}")?,
                Outcome::Warn { note } => writeln!(f, "warn  {name}\n      {note}")?,
                Outcome::Skip { reason } => writeln!(f, "skip  {name}\n      {reason}")?,
                Outcome::Fail { rule, fix } => {
                    writeln!(f, "FAIL  {name}\n      rule: {rule}\n      fix:  {fix}")?
                }
            }
        }
        let count = |wanted: fn(&Outcome) -> bool| {
            self.results.iter().filter(|r| wanted(&r.outcome)).count()
        };
        write!(
            f,
            "{}: {} passed, {} failed, {} warned, {} skipped",
            self.plugin,
            count(|o| matches!(o, Outcome::Pass)),
            count(|o| matches!(o, Outcome::Fail { .. })),
            count(|o| matches!(o, Outcome::Warn { .. })),
            count(|o| matches!(o, Outcome::Skip { .. })),
        )
    }
}

/// A webhook request as `plugin exec handle-webhook --input` takes it (the body as text).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WebhookSample {
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

fn post() -> String {
    "POST".into()
}

impl WebhookSample {
    pub fn to_request(&self) -> WebhookRequest {
        WebhookRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: self.body.clone().into_bytes(),
        }
    }
}

/// What the suite runs with, beyond the component and its settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A genuine, signed webhook delivery (forged, replayed and unsigned variants are made
    /// from it).
    pub webhook_delivery: Option<WebhookSample>,
    /// A webhook handshake request (such as a subscription challenge).
    pub webhook_handshake: Option<WebhookSample>,
    /// The conversation to send test messages to; else the first one polling saw.
    pub thread_id: Option<String>,
    /// Makes ids and keys of this run unique on a live service; fixed for fixtures so the
    /// recorded URLs match.
    pub run_id: String,
    /// Pages read at most per stream before the suite calls the stream endless.
    pub max_pages: usize,
    /// Skip the checks that write to the service (sending, helpdesk operations).
    pub read_only: bool,
}

/// The suite's view of the plugin under test.
pub(crate) struct Target<'a> {
    pub runtime: &'a Runtime,
    pub plugin: &'a Plugin,
    pub installation: &'a Installation,
    pub tap: Arc<DevTap>,
    pub options: &'a Options,
}

impl Target<'_> {
    pub fn social(&self) -> anyhow::Result<SocialConnector> {
        self.runtime.social(self.plugin, self.installation)
    }

    pub fn helpdesk(&self) -> anyhow::Result<HelpdeskConnector> {
        self.runtime.helpdesk(self.plugin, self.installation)
    }
}

/// The variant of a plugin's error, as the checks name it.
pub(crate) fn connector_variant(error: &ConnectorError) -> &'static str {
    match error {
        ConnectorError::Unauthorized(_) => "unauthorized",
        ConnectorError::RateLimited(_) => "rate-limited",
        ConnectorError::NotFound(_) => "not-found",
        ConnectorError::InvalidInput(_) => "invalid-input",
        ConnectorError::Policy(_) => "policy",
        ConnectorError::Transient(_) => "transient",
        ConnectorError::Fatal(_) => "fatal",
    }
}

/// A run id for a live service: the time, so keys and ids differ from earlier runs.
pub fn run_id() -> String {
    helpdesk::now_ms().to_string()
}

/// Runs every check. `runtime` must have `target.tap` installed as its HTTP tap.
pub async fn run(
    runtime: &Runtime,
    plugin: &Plugin,
    installation: &Installation,
    tap: Arc<DevTap>,
    options: &Options,
) -> Report {
    let manifest = plugin.manifest();
    let mut report = Report {
        plugin: format!("{} {}", manifest.id, manifest.version),
        results: manifest::check(manifest),
    };
    let target = Target {
        runtime,
        plugin,
        installation,
        tap,
        options,
    };
    report.results.extend(errors::check(&target).await);
    let seen = polling::check(&target, &mut report.results).await;
    report.results.extend(webhooks::check(&target).await);
    match plugin.kind() {
        PluginKind::Social => report.results.extend(sending::check(&target, &seen).await),
        PluginKind::Helpdesk => report.results.extend(helpdesk::check(&target, &seen).await),
    }
    target.tap.clear_fault();
    report
}
