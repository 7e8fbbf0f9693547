//! The sync hub: the one facade the server, the CLI and the tests use.
//!
//! [`Hub`] owns the database, the plugin runtime, the secret box and the metrics. Its methods
//! are the admin operations (`admin.rs`) and the webhook intake (`intake.rs`);
//! [`Hub::start_workers`] runs the background parts. A message goes through these stages,
//! one file each:
//! - `intake.rs`: webhooks and polled pages into the durable inbound queue, deduplicated;
//! - `ordering.rs`: which stored events are ready, in the order their service made them;
//! - [`processor`]: turns events into conversations, tickets, messages and outbox rows,
//!   several events per transaction (each event's rows and outbox rows commit together),
//!   deciding what each means with the two mappers, `social_events.rs` and
//!   `helpdesk_changes.rs`;
//! - [`outbox`]: delivers side effects through the plugins, in order per conversation, with
//!   retries and dead letters;
//! - [`scheduler`]: polls each installation's streams on cron schedules, into the intake.
//!
//! Beside them: `binding.rs` (installations bound to their plugins, cached), `maintenance.rs`
//! (checkpoints and pruning), [`metrics`], OAuth2 connections and the admin API's views.

mod admin;
mod binding;
pub mod care;
mod helpdesk_changes;
mod intake;
mod maintenance;
pub mod metrics;
mod oauth;
mod ordering;
pub mod outbox;
pub mod processor;
pub mod scheduler;
mod social_events;
pub mod split;
mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::runtime::latest::ConnectorError;
use crate::runtime::{CallError, Plugin, Runtime, RuntimeConfig};
use crate::secrets::{SecretBox, SecretError};
use crate::store::{Db, StoreError, StoreOptions};

pub use self::admin::SECRET_MASK;
pub use self::metrics::Metrics;
pub use self::oauth::{BrowserStart, OAuthCallback, CALLBACK_PATH as OAUTH_CALLBACK_PATH};
pub use self::views::*;
pub use crate::runtime::admission::AdmissionConfig;
use crate::runtime::engine::EngineLimits;
pub use crate::runtime::latest::{WebhookRequest, WebhookResponse};
pub use crate::store::PluginRecord;

/// Settings of the outbox workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Attempts before a row becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with full jitter).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Rows delivered at once (of different conversations).
    pub workers: usize,
    /// How long a claimed row stays reserved without a renewal. Deliveries renew it while
    /// they run, so this only bounds how long the rows of a host that died wait.
    pub lease: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            workers: 32,
            lease: Duration::from_secs(120),
        }
    }
}

/// What the hub needs to run. The secret key never appears in `Debug` output.
#[derive(Clone)]
pub struct HubConfig {
    pub database_url: String,
    /// Where the compiled-plugin cache lives (`<data_dir>/cache/components`).
    pub data_dir: PathBuf,
    /// 32-byte key (base64 in config/env `SWITCHBOARD_SECRET_KEY`) for secrets at rest.
    pub secret_key: [u8; 32],
    pub outbox: OutboxConfig,
    /// How often due jobs are checked.
    pub scheduler_tick: Duration,
    pub store: StoreOptions,
    /// How long processed events, delivered outbox rows and job runs are kept (see
    /// [`Db::prune`]).
    pub retention: Duration,
    /// Which addresses plugins and OAuth2 token requests may reach.
    pub network: crate::runtime::NetworkAccess,
    /// Plugin instances alive at once (the engine's pool).
    pub plugin_instances: u32,
    /// How calls queue for the pool's instances.
    pub admission: AdmissionConfig,
}

impl HubConfig {
    /// A config with default outbox and scheduler settings.
    pub fn new(
        database_url: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        secret_key: [u8; 32],
    ) -> Self {
        Self {
            database_url: database_url.into(),
            data_dir: data_dir.into(),
            secret_key,
            outbox: OutboxConfig::default(),
            scheduler_tick: Duration::from_secs(1),
            store: StoreOptions::default(),
            retention: Duration::from_secs(30 * 86_400),
            network: Default::default(),
            plugin_instances: EngineLimits::default().max_instances,
            admission: AdmissionConfig::default(),
        }
    }
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("database_url", &self.database_url)
            .field("data_dir", &self.data_dir)
            .field("secret_key", &"********")
            .field("outbox", &self.outbox)
            .field("scheduler_tick", &self.scheduler_tick)
            .field("network", &self.network)
            .field("plugin_instances", &self.plugin_instances)
            .field("admission", &self.admission)
            .finish()
    }
}

/// Why a hub operation failed; each variant maps onto one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 422
    #[error("{0}")]
    Invalid(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 401
    #[error("{0}")]
    Unauthorized(String),
    /// 503 with `Retry-After`: the call waited for a free plugin instance too long.
    #[error("{0}")]
    Busy(crate::runtime::admission::Busy),
    /// 500
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for HubError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(m) => HubError::NotFound(m),
            StoreError::Conflict(m) => HubError::Conflict(m),
            other => HubError::Internal(other.into()),
        }
    }
}

impl From<SecretError> for HubError {
    fn from(error: SecretError) -> Self {
        HubError::Internal(error.into())
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new time-ordered id for a row.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) db: Db,
    pub(crate) runtime: Arc<Runtime>,
    /// Loaded plugins by digest: loading compiles (or reads the compile cache), so do it once.
    plugins: Mutex<HashMap<String, Plugin>>,
    bindings: binding::Bindings,
    secrets: SecretBox,
    pub(crate) metrics: Metrics,
    /// Wakes the inbound processor when events were stored.
    pub(crate) inbound: Notify,
    /// Wakes an outbox worker when rows were queued.
    pub(crate) outbox: Notify,
    /// Stores webhooks' events, many per transaction; started on the first webhook.
    pub(crate) intake: tokio::sync::OnceCell<intake::IntakeWriter>,
    /// Records deliveries' outcomes, many per transaction; started on the first delivery.
    pub(crate) completions: tokio::sync::OnceCell<crate::store::GroupCommit>,
    /// Names this process in leases.
    pub(crate) host_id: String,
    /// Start-up recovery (stale leases and job markers), run once by the first worker.
    recovered: OnceCell<()>,
    /// Start times (ms) of the webhook requests being handled, per installation, with counts.
    webhooks_in_flight: Mutex<HashMap<String, std::collections::BTreeMap<i64, usize>>>,
    /// OAuth2 token sources, one per installation (see `oauth`).
    oauth: crate::oauth::Registry,
}

/// The sync hub. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl Hub {
    /// Opens the database (applying migrations) and creates the plugin runtime.
    pub async fn open(config: HubConfig) -> anyhow::Result<Hub> {
        let mut runtime_config =
            RuntimeConfig::new(config.data_dir.join("cache").join("components"));
        runtime_config.network = config.network;
        runtime_config.engine.max_instances = config.plugin_instances;
        runtime_config.admission = config.admission.clone();
        let runtime = Runtime::new(runtime_config)?;
        Self::open_with_runtime(config, Arc::new(runtime)).await
    }

    /// Like [`Hub::open`], with a runtime made by the caller (tests share compile caches).
    /// The runtime's network rule applies to OAuth2 token requests too.
    pub async fn open_with_runtime(
        config: HubConfig,
        runtime: Arc<Runtime>,
    ) -> anyhow::Result<Hub> {
        let db = Db::connect_with(&config.database_url, config.store.clone()).await?;
        let secrets = SecretBox::new(&config.secret_key);
        let oauth_http = crate::oauth::http_client(runtime.config().network)?;
        Ok(Hub {
            inner: Arc::new_cyclic(|hub| Inner {
                oauth: crate::oauth::Registry::new(
                    db.clone(),
                    secrets.clone(),
                    oauth_http,
                    Some(crate::oauth::weak_listener(
                        hub.clone(),
                        |inner: &Inner, id, needs| inner.metrics.set_needs_reauth(id, needs),
                    )),
                ),
                config,
                db,
                runtime,
                plugins: Mutex::default(),
                bindings: binding::Bindings::default(),
                secrets,
                metrics: Metrics::new(),
                inbound: Notify::new(),
                outbox: Notify::new(),
                intake: tokio::sync::OnceCell::new(),
                completions: tokio::sync::OnceCell::new(),
                host_id: format!("host-{}", new_id()),
                recovered: OnceCell::new(),
                webhooks_in_flight: Mutex::default(),
            }),
        })
    }

    /// The database, for read-only inspection in tests and tools.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Starts the scheduler, the inbound processor and the outbox workers; they stop when
    /// `shutdown` is cancelled (a delivery or poll in progress finishes first).
    pub fn start_workers(&self, shutdown: CancellationToken) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(processor::run_processor(self.clone(), shutdown.clone()));
        set.spawn(scheduler::run_scheduler(self.clone(), shutdown.clone()));
        set.spawn(outbox::run_dispatcher(self.clone(), shutdown.clone()));
        set.spawn(maintenance::run_maintenance(
            self.inner.db.clone(),
            self.inner.config.retention,
            shutdown.clone(),
        ));
        set.spawn(metrics::run_gauges(self.clone(), shutdown));
        set
    }

    /// Clears what a previous process left behind, once per process: outbox leases and
    /// running markers of jobs. A SQLite database has a single host, so everything still
    /// marked as running belongs to a process that is gone.
    pub(crate) async fn recover(&self) {
        self.inner
            .recovered
            .get_or_init(|| async {
                let now = now_ms();
                match self.inner.db.release_outbox_leases(now, true).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(rows = n, "released outbox leases of a previous run")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "could not release stale outbox leases"),
                }
                match self.inner.db.clear_stale_job_markers(now, true).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(jobs = n, "cleared running markers of a previous run")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "could not clear stale job markers"),
                }
            })
            .await;
    }
}

/// A time for views: RFC 3339 in UTC with milliseconds.
pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// What the outbox does with a failed call: wait as told, retry with backoff, or give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Retry {
    After(Duration),
    Backoff,
    Never,
}

/// Classifies a plugin call failure.
pub(crate) fn retry_of(error: &CallError) -> Retry {
    match error {
        CallError::Connector(ConnectorError::RateLimited(limit)) => {
            // A little past the asked wait: services round it, and a retry right on the edge
            // of their window is refused again.
            let wait = limit.retry_after_ms;
            Retry::After(Duration::from_millis(wait + (wait / 20).min(250)))
        }
        CallError::Connector(ConnectorError::Transient(_)) => Retry::Backoff,
        CallError::Connector(_) => Retry::Never,
        CallError::Deadline(_) | CallError::MemoryCap(_) | CallError::Trap(_) => Retry::Backoff,
        // The plugin never ran: no instance was free in time.
        CallError::Busy(_) => Retry::Backoff,
        // The same input gets the same oversized answer again.
        CallError::OutputLimit(_) | CallError::CopyLimit(_) => Retry::Never,
        CallError::Capacity(_) => Retry::Backoff,
        CallError::WrongWorld { .. } => Retry::Never,
    }
}
