//! The sync hub: the one facade the server, the CLI and the tests use.
//!
//! [`Hub`] owns the database, the plugin runtime, the secret box and the metrics. Its methods
//! are the admin operations (plugins, installations, links, jobs, conversations, dead letters)
//! and the webhook intake; [`Hub::start_workers`] runs the background parts:
//! - the inbound processor ([`engine`]): turns stored events into conversations, tickets,
//!   messages and outbox rows, one event per transaction;
//! - the outbox workers ([`outbox`]): deliver side effects through the plugins, in order per
//!   conversation, with retries and dead letters;
//! - the scheduler ([`scheduler`]): polls each installation's streams on cron schedules.

pub mod care;
pub mod engine;
mod intake;
pub mod metrics;
mod oauth;
pub mod outbox;
pub mod scheduler;
pub mod split;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::manifest::{PluginKind, PluginManifest};
use crate::runtime::bindings::types::ConnectorError;
use crate::runtime::{
    CallError, CallLimits, HelpdeskConnector, Installation, Plugin, Runtime, RuntimeConfig,
    SocialConnector,
};
use crate::schedule::Schedule;
use crate::secrets::{SecretBox, SecretError};
use crate::store::{
    Db, InstallOutcome, InstallationRow, LinkRow, NewJob, NewPlugin, StoreError, StoreOptions,
};

pub use self::metrics::Metrics;
pub use self::oauth::{BrowserStart, OAuthCallback, CALLBACK_PATH as OAUTH_CALLBACK_PATH};
pub use self::views::*;
pub use crate::runtime::admission::AdmissionConfig;
pub use crate::runtime::bindings::types::{WebhookRequest, WebhookResponse};
use crate::runtime::engine::EngineLimits;
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
    bindings: Bindings,
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
    /// Webhook requests being handled, per installation (see `engine::process_ready`).
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

/// A plugin bound to one installation, with what the hub knows about both.
pub(crate) struct Bound {
    pub(crate) installation: InstallationRow,
    pub(crate) plugin: Plugin,
    pub(crate) runtime_installation: Installation,
    /// The connector, prepared on first use (settings checked, HTTP policy built).
    social: std::sync::OnceLock<Result<Arc<SocialConnector>, String>>,
    helpdesk: std::sync::OnceLock<Result<Arc<HelpdeskConnector>, String>>,
}

impl Bound {
    pub(crate) fn manifest(&self) -> &PluginManifest {
        self.plugin.manifest()
    }
}

/// How long a binding is reused. Changes made through the hub drop bindings at once; this
/// bounds how long a change made elsewhere (the `plugin` CLI on the same database) goes
/// unseen.
const BINDING_TTL: Duration = Duration::from_secs(5);

/// Bound installations, so that a webhook or a delivery does not read the installation and
/// plugin rows, decrypt the secrets and rebuild the HTTP policy on every call.
#[derive(Default)]
struct Bindings {
    entries: Mutex<HashMap<String, (std::time::Instant, Arc<Bound>)>>,
}

impl Bindings {
    fn get(&self, installation_id: &str) -> Option<Arc<Bound>> {
        let entries = self.entries.lock().ok()?;
        let (at, bound) = entries.get(installation_id)?;
        (at.elapsed() < BINDING_TTL).then(|| bound.clone())
    }

    fn put(&self, bound: Arc<Bound>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                bound.installation.id.clone(),
                (std::time::Instant::now(), bound),
            );
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
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
                bindings: Bindings::default(),
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
        set.spawn(engine::run_processor(self.clone(), shutdown.clone()));
        set.spawn(scheduler::run_scheduler(self.clone(), shutdown.clone()));
        set.spawn(outbox::run_dispatcher(self.clone(), shutdown.clone()));
        set.spawn(run_maintenance(
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

    /// Counts a webhook request of `installation` as in flight until the guard is dropped.
    pub(crate) fn webhook_started(&self, installation: &str) -> InFlight {
        let started_at = now_ms();
        if let Ok(mut map) = self.inner.webhooks_in_flight.lock() {
            *map.entry(installation.to_string())
                .or_default()
                .entry(started_at)
                .or_default() += 1;
        }
        InFlight {
            hub: self.clone(),
            installation: installation.to_string(),
            started_at,
        }
    }

    /// When the oldest webhook request of `installation` still being handled started.
    pub(crate) fn oldest_webhook_in_flight(&self, installation: &str) -> Option<i64> {
        self.inner
            .webhooks_in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(installation)?.keys().next().copied())
    }

    // ----- plugins ---------------------------------------------------------------------------

    /// Installs a component. With `approve_all` false it is stored with no approved hosts,
    /// and makes no HTTP request until an admin approves them.
    pub async fn install_plugin(
        &self,
        wasm: &[u8],
        approve_all: bool,
    ) -> Result<PluginRecord, HubError> {
        let (plugin, _) = self
            .inner
            .runtime
            .load(wasm)
            .await
            .map_err(|e| HubError::Invalid(e.to_string()))?;
        let manifest = plugin.manifest();
        let approved = if approve_all {
            manifest.requested_origins()
        } else {
            Vec::new()
        };
        let outcome = self
            .inner
            .db
            .install_plugin(NewPlugin {
                manifest,
                contract: plugin.contract().package(),
                sha256: plugin.sha256(),
                approved_hosts: &approved,
                wasm,
            })
            .await?;
        if outcome == InstallOutcome::AlreadyInstalled && approve_all {
            // Approving again also approves the manifest the component describes now.
            self.inner
                .db
                .reapprove_plugin(manifest, plugin.sha256(), &approved)
                .await?;
        }
        self.forget_bindings();
        self.cache_plugin(plugin.clone());
        Ok(self
            .inner
            .db
            .plugin_record(&manifest.id, Some(&manifest.version))
            .await?)
    }

    pub async fn list_plugins(&self) -> Result<Vec<PluginRecord>, HubError> {
        Ok(self.inner.db.list_plugins().await?)
    }

    /// The active version of a plugin.
    pub async fn get_plugin(&self, plugin_id: &str) -> Result<PluginRecord, HubError> {
        Ok(self.inner.db.plugin_record(plugin_id, None).await?)
    }

    /// Approves `hosts` (which must be among the manifest's `http_hosts`) for one version,
    /// replacing the previous approval.
    pub async fn approve_plugin(
        &self,
        plugin_id: &str,
        version: &str,
        hosts: Vec<String>,
    ) -> Result<PluginRecord, HubError> {
        let record = self
            .inner
            .db
            .plugin_record(plugin_id, Some(version))
            .await?;
        let requested = &record.manifest.requested_origins();
        if let Some(unknown) = hosts.iter().find(|h| !requested.contains(h)) {
            return Err(HubError::Invalid(format!(
                "`{unknown}` is not among the hosts {plugin_id} {version} requests: {}",
                requested.join(", ")
            )));
        }
        self.inner
            .db
            .set_approved_hosts(plugin_id, version, &hosts)
            .await?;
        self.forget_bindings();
        Ok(self
            .inner
            .db
            .plugin_record(plugin_id, Some(version))
            .await?)
    }

    /// Removes one version, or all. Refused while installations use the plugin.
    pub async fn remove_plugin(
        &self,
        plugin_id: &str,
        version: Option<&str>,
    ) -> Result<u64, HubError> {
        let users = self
            .inner
            .db
            .count_installations_of_plugin(plugin_id)
            .await?;
        if version.is_none() && users > 0 {
            return Err(HubError::Conflict(format!(
                "{users} installation(s) use `{plugin_id}`; it cannot be removed while in use"
            )));
        }
        let removed = self.inner.db.remove_plugin(plugin_id, version).await?;
        self.forget_bindings();
        Ok(removed)
    }

    fn cache_plugin(&self, plugin: Plugin) {
        if let Ok(mut plugins) = self.inner.plugins.lock() {
            plugins.insert(plugin.sha256().to_string(), plugin);
        }
    }

    /// The loaded plugin for a stored record, from the cache or the database. It must
    /// describe exactly the manifest stored with the record, which is the one an admin
    /// approved: a component that now describes another (a clock-dependent `describe`, say)
    /// must not run with what nobody reviewed.
    async fn loaded_plugin(&self, record: &PluginRecord) -> Result<Plugin, HubError> {
        let cached = self
            .inner
            .plugins
            .lock()
            .ok()
            .and_then(|p| p.get(&record.sha256).cloned());
        let plugin = match cached {
            Some(plugin) => plugin,
            None => {
                let (_, wasm) = self
                    .inner
                    .db
                    .load_plugin(&record.plugin_id, Some(&record.version))
                    .await?;
                let (plugin, _) = self.inner.runtime.load(&wasm).await.map_err(|e| {
                    anyhow::anyhow!(
                        "installed plugin {} {} failed to load: {e}",
                        record.plugin_id,
                        record.version
                    )
                })?;
                self.cache_plugin(plugin.clone());
                plugin
            }
        };
        if let Some(changed) = crate::manifest::differences(&record.manifest, plugin.manifest()) {
            return Err(HubError::Invalid(format!(
                "installed plugin {} {} is refused: its component describes a manifest that \
                 differs from the one an admin approved ({changed}); review it with `switchboard \
                 plugin inspect` and approve it again with `switchboard plugin install --approve` \
                 (or POST /api/v1/plugins?approve=all)",
                record.plugin_id, record.version
            )));
        }
        Ok(plugin)
    }

    // ----- installations ---------------------------------------------------------------------

    /// Creates an installation of the plugin's active version. Settings are checked against
    /// the manifest (required keys, unknown keys, templates); secret ones are encrypted. One
    /// polling job per stream is created with the manifest's default schedule.
    pub async fn create_installation(
        &self,
        new: NewInstallation,
    ) -> Result<InstallationView, HubError> {
        check_slug("installation id", &new.id)?;
        if let Some(ms) = new.deadline_ms {
            if !(100..=60_000).contains(&ms) {
                return Err(HubError::Invalid(format!(
                    "deadline_ms {ms} is out of range: a plugin call's deadline is 100 to 60000 ms"
                )));
            }
        }
        let record = match self.inner.db.plugin_record(&new.plugin_id, None).await {
            Ok(record) => record,
            Err(StoreError::NotFound(m)) => return Err(HubError::Invalid(m)),
            Err(e) => return Err(e.into()),
        };
        let manifest = &record.manifest;
        let mut plain = BTreeMap::new();
        let mut secret = BTreeMap::new();
        for (key, value) in &new.settings {
            let spec = manifest.setting(key).ok_or_else(|| {
                HubError::Invalid(format!(
                    "setting `{key}` is not declared by {}; it takes: {}",
                    manifest.id,
                    manifest
                        .settings
                        .iter()
                        .map(|s| s.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if spec.secret {
                secret.insert(key.clone(), value.clone());
            } else {
                plain.insert(key.clone(), value.clone());
            }
        }
        for spec in &manifest.settings {
            let given = new.settings.get(&spec.key).is_some_and(|v| !v.is_empty());
            if spec.required && !given && spec.default.is_none() {
                return Err(HubError::Invalid(format!(
                    "setting `{}` ({}) is required",
                    spec.key, spec.label
                )));
            }
        }
        // Binding checks the templates (hosts, credentials) against these settings.
        let plugin = self.loaded_plugin(&record).await?;
        let probe = Installation {
            id: new.id.clone(),
            settings: new.settings.clone(),
            approved_hosts: record.approved_hosts.clone(),
            limits: None,
            ..Default::default()
        };
        let bound = match manifest.kind {
            PluginKind::Social => self.inner.runtime.social(&plugin, &probe).map(drop),
            PluginKind::Helpdesk => self.inner.runtime.helpdesk(&plugin, &probe).map(drop),
        };
        bound.map_err(|e| {
            HubError::Invalid(format!("settings do not fit {}: {e:#}", manifest.id))
        })?;

        let now = now_ms();
        let sealed = if secret.is_empty() {
            None
        } else {
            Some(self.inner.secrets.seal(&new.id, &secret)?)
        };
        let row = InstallationRow {
            id: new.id.clone(),
            plugin_id: record.plugin_id.clone(),
            plugin_version: None,
            kind: manifest.kind.as_str().to_string(),
            settings: plain,
            secrets: sealed,
            enabled: new.enabled.unwrap_or(true),
            deadline_ms: new.deadline_ms.map(|ms| ms as i64),
            memory_bytes: None,
            created_at: now,
            updated_at: now,
        };
        let mut jobs = Vec::new();
        for stream in &manifest.streams {
            let schedule = Schedule::parse(&stream.default_schedule, None)
                .map_err(|e| HubError::Invalid(format!("stream `{}`: {e}", stream.name)))?;
            jobs.push(NewJob {
                id: scheduler::job_id(&new.id, &stream.name),
                installation_id: new.id.clone(),
                stream: stream.name.clone(),
                schedule: stream.default_schedule.clone(),
                time_zone: "UTC".into(),
                next_run_at: schedule.next_after(now),
            });
        }
        self.inner.db.create_installation(&row, &jobs).await?;
        tracing::info!(installation = %row.id, plugin = %row.plugin_id, "installation created");
        self.installation_view(row).await
    }

    pub async fn list_installations(&self) -> Result<Vec<InstallationView>, HubError> {
        let mut views = Vec::new();
        for row in self.inner.db.list_installations().await? {
            views.push(self.installation_view(row).await?);
        }
        Ok(views)
    }

    pub async fn get_installation(&self, id: &str) -> Result<InstallationView, HubError> {
        let row = self.inner.db.get_installation(id).await?;
        self.installation_view(row).await
    }

    async fn installation_view(&self, row: InstallationRow) -> Result<InstallationView, HubError> {
        let version = match &row.plugin_version {
            Some(v) => v.clone(),
            None => match self.inner.db.plugin_record(&row.plugin_id, None).await {
                Ok(record) => record.version,
                Err(StoreError::NotFound(_)) => String::new(),
                Err(e) => return Err(e.into()),
            },
        };
        let mut settings = row.settings.clone();
        if let Some(sealed) = &row.secrets {
            // Only the keys are shown; opening the blob is not needed for that, but a blob that
            // no longer opens (wrong key) is worth saying.
            match self.inner.secrets.open(&row.id, sealed) {
                Ok(secrets) => {
                    settings.extend(secrets.into_keys().map(|k| (k, SECRET_MASK.to_string())))
                }
                Err(error) => {
                    tracing::warn!(installation = %row.id, %error, "secret settings do not open")
                }
            }
        }
        let oauth = self.oauth_view(&row).await?;
        Ok(InstallationView {
            needs_reauthorization: oauth.as_ref().is_some_and(|o| o.needs_reauthorization),
            oauth,
            webhook_path: format!("/webhooks/{}", row.id),
            deadline_ms: row.deadline_ms,
            pinned: row.plugin_version.is_some(),
            plugin_version: version,
            id: row.id,
            plugin_id: row.plugin_id,
            kind: row.kind,
            enabled: row.enabled,
            settings,
            created_at: iso(row.created_at),
        })
    }

    /// Polls the first stream from the saved cursor without saving anything: checks that the
    /// credentials and hosts work.
    pub async fn test_installation(&self, id: &str) -> Result<TestReport, HubError> {
        self.forget_bindings();
        let bound = self.bind(id).await?;
        let Some(stream) = bound.manifest().streams.first().map(|s| s.name.clone()) else {
            return Ok(TestReport {
                ok: true,
                detail: "the plugin has no stream to poll; settings are valid".into(),
            });
        };
        let cursor = self.inner.db.get_cursor(id, &stream).await?;
        let result = match bound.installation.kind.as_str() {
            "social" => self
                .social_connector(&bound)?
                .poll(&stream, cursor.as_deref())
                .await
                .map(|p| {
                    format!(
                        "polled `{stream}`: {} event(s), more: {}",
                        p.events.len(),
                        p.has_more
                    )
                }),
            _ => self
                .helpdesk_connector(&bound)?
                .poll_changes(&stream, cursor.as_deref())
                .await
                .map(|p| {
                    format!(
                        "polled `{stream}`: {} change(s), more: {}",
                        p.changes.len(),
                        p.has_more
                    )
                }),
        };
        Ok(match result {
            Ok(detail) => TestReport { ok: true, detail },
            Err(error) => TestReport {
                ok: false,
                detail: error.to_string(),
            },
        })
    }

    pub async fn set_installation_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<InstallationView, HubError> {
        self.inner
            .db
            .set_installation_enabled(id, enabled, now_ms())
            .await?;
        self.forget_bindings();
        if enabled {
            self.inner.outbox.notify_one();
        }
        self.get_installation(id).await
    }

    /// An installation with its decrypted settings and its plugin, ready to call; reused for
    /// a few seconds (see [`BINDING_TTL`]).
    pub(crate) async fn bind(&self, installation_id: &str) -> Result<Arc<Bound>, HubError> {
        if let Some(bound) = self.inner.bindings.get(installation_id) {
            return Ok(bound);
        }
        let bound = Arc::new(self.load_binding(installation_id).await?);
        self.inner.bindings.put(bound.clone());
        Ok(bound)
    }

    /// Drops every cached binding; called after any change to installations or plugins.
    pub(crate) fn forget_bindings(&self) {
        self.inner.bindings.clear();
    }

    /// Loads an installation with its decrypted settings and its plugin, from the database.
    async fn load_binding(&self, installation_id: &str) -> Result<Bound, HubError> {
        let installation = self.inner.db.get_installation(installation_id).await?;
        let record = self
            .inner
            .db
            .plugin_record(
                &installation.plugin_id,
                installation.plugin_version.as_deref(),
            )
            .await?;
        let plugin = self.loaded_plugin(&record).await?;
        let mut settings = installation.settings.clone();
        if let Some(sealed) = &installation.secrets {
            settings.extend(self.inner.secrets.open(&installation.id, sealed)?);
        }
        let defaults = self.inner.runtime.config().default_limits;
        let limits = match (installation.deadline_ms, installation.memory_bytes) {
            (None, None) => None,
            (deadline, memory) => Some(CallLimits {
                deadline: deadline.map_or(defaults.deadline, |ms| {
                    Duration::from_millis(ms.max(1) as u64)
                }),
                memory_bytes: memory.map_or(defaults.memory_bytes, |b| b.max(0) as usize),
            }),
        };
        let token_source = self
            .oauth_token_source(
                &installation.id,
                plugin.manifest(),
                &settings,
                &record.approved_hosts,
            )
            .await?;
        let runtime_installation = Installation {
            id: installation.id.clone(),
            settings,
            approved_hosts: record.approved_hosts,
            limits,
            token_source,
            meter: Some(care::HubMeter::sink(&self.inner)),
        };
        Ok(Bound {
            installation,
            plugin,
            runtime_installation,
            social: Default::default(),
            helpdesk: Default::default(),
        })
    }

    pub(crate) fn social_connector(&self, bound: &Bound) -> Result<Arc<SocialConnector>, HubError> {
        bound
            .social
            .get_or_init(|| {
                self.inner
                    .runtime
                    .social(&bound.plugin, &bound.runtime_installation)
                    .map(Arc::new)
                    .map_err(|e| format!("installation `{}`: {e:#}", bound.installation.id))
            })
            .clone()
            .map_err(HubError::Invalid)
    }

    pub(crate) fn helpdesk_connector(
        &self,
        bound: &Bound,
    ) -> Result<Arc<HelpdeskConnector>, HubError> {
        bound
            .helpdesk
            .get_or_init(|| {
                self.inner
                    .runtime
                    .helpdesk(&bound.plugin, &bound.runtime_installation)
                    .map(Arc::new)
                    .map_err(|e| format!("installation `{}`: {e:#}", bound.installation.id))
            })
            .clone()
            .map_err(HubError::Invalid)
    }

    // ----- links -----------------------------------------------------------------------------

    /// Links a social installation to the helpdesk its conversations are filed in.
    pub async fn create_link(&self, new: NewLink) -> Result<LinkView, HubError> {
        check_slug("link id", &new.id)?;
        let kind_of = |id: String| async move {
            match self.inner.db.get_installation(&id).await {
                Ok(row) => Ok(row.kind),
                Err(StoreError::NotFound(m)) => Err(HubError::Invalid(m)),
                Err(e) => Err(e.into()),
            }
        };
        if kind_of(new.social_installation.clone()).await? != "social" {
            return Err(HubError::Invalid(format!(
                "`{}` is not a social installation",
                new.social_installation
            )));
        }
        if kind_of(new.helpdesk_installation.clone()).await? != "helpdesk" {
            return Err(HubError::Invalid(format!(
                "`{}` is not a helpdesk installation",
                new.helpdesk_installation
            )));
        }
        if let Some(priority) = &new.settings.priority {
            if engine::priority(priority).is_none() {
                return Err(HubError::Invalid(format!(
                    "priority `{priority}` is not one of low, normal, high, urgent"
                )));
            }
        }
        let row = LinkRow {
            id: new.id,
            social_installation_id: new.social_installation,
            helpdesk_installation_id: new.helpdesk_installation,
            settings_json: serde_json::to_string(&new.settings).map_err(anyhow::Error::from)?,
            created_at: now_ms(),
        };
        let waiting = self.inner.db.create_link(&row).await?;
        if waiting > 0 {
            tracing::info!(link = %row.id, messages = waiting, "syncing messages that arrived before the link");
            self.inner.inbound.notify_one();
        }
        link_view(row)
    }

    pub async fn list_links(&self) -> Result<Vec<LinkView>, HubError> {
        self.inner
            .db
            .list_links()
            .await?
            .into_iter()
            .map(link_view)
            .collect()
    }

    pub async fn delete_link(&self, id: &str) -> Result<(), HubError> {
        Ok(self.inner.db.delete_link(id).await?)
    }

    // ----- jobs ------------------------------------------------------------------------------

    pub async fn list_jobs(&self) -> Result<Vec<JobView>, HubError> {
        let mut last: HashMap<String, JobRunView> = self
            .inner
            .db
            .last_job_runs()
            .await?
            .into_iter()
            .map(|r| (r.job_id.clone(), JobRunView::from(r)))
            .collect();
        Ok(self
            .inner
            .db
            .list_jobs()
            .await?
            .into_iter()
            .map(|job| {
                let run = last.remove(&job.id);
                JobView::new(job, run)
            })
            .collect())
    }

    /// Runs a job now and waits for the run. `Conflict` while it is already running.
    pub async fn run_job_now(&self, id: &str) -> Result<JobRunView, HubError> {
        scheduler::run_now(self, id).await
    }

    pub async fn set_job_paused(&self, id: &str, paused: bool) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        // Resuming starts from the next slot, not from the ones missed while paused.
        let next = if paused {
            None
        } else {
            Schedule::parse(&job.schedule, Some(&job.time_zone))
                .map_err(|e| HubError::Invalid(e.to_string()))?
                .next_after(now_ms())
        };
        self.inner.db.set_job_paused(id, paused, next).await?;
        self.job_view(id).await
    }

    /// Changes a job's cron expression and (optionally) time zone.
    pub async fn set_job_schedule(
        &self,
        id: &str,
        schedule: &str,
        time_zone: Option<&str>,
    ) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        let time_zone = time_zone.unwrap_or(&job.time_zone);
        let parsed = Schedule::parse(schedule, Some(time_zone))
            .map_err(|e| HubError::Invalid(e.to_string()))?;
        self.inner
            .db
            .set_job_schedule(id, schedule, time_zone, parsed.next_after(now_ms()))
            .await?;
        self.job_view(id).await
    }

    async fn job_view(&self, id: &str) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        let last = self
            .inner
            .db
            .job_runs(id, 1)
            .await?
            .into_iter()
            .next()
            .map(JobRunView::from);
        Ok(JobView::new(job, last))
    }

    // ----- conversations ---------------------------------------------------------------------

    /// The most recently active conversations (up to 1000), with their current ticket.
    pub async fn list_conversations(&self) -> Result<Vec<ConversationView>, HubError> {
        let conversations = self.inner.db.list_conversations(1000).await?;
        let ids: Vec<String> = conversations.iter().map(|c| c.id.clone()).collect();
        let mut current: HashMap<String, TicketView> = self
            .inner
            .db
            .current_tickets_of(&ids)
            .await?
            .into_iter()
            .map(|t| (t.conversation_id.clone(), TicketView::from(t)))
            .collect();
        Ok(conversations
            .into_iter()
            .map(|c| {
                let ticket = current.remove(&c.id);
                ConversationView::new(c, ticket)
            })
            .collect())
    }

    /// One conversation with all its tickets and messages.
    pub async fn get_conversation(&self, id: &str) -> Result<ConversationDetail, HubError> {
        let conversation = self.inner.db.get_conversation(id).await?;
        let tickets: Vec<TicketView> = self
            .inner
            .db
            .conversation_tickets(id)
            .await?
            .into_iter()
            .map(TicketView::from)
            .collect();
        let mut messages: Vec<MessageView> = self
            .inner
            .db
            .conversation_messages(id)
            .await?
            .into_iter()
            .map(MessageView::from)
            .collect();
        let (ownership, deliveries) = care::conversation_details(self, id, &mut messages).await?;
        let current = tickets.iter().find(|t| t.is_current).cloned();
        Ok(ConversationDetail {
            conversation: ConversationView::new(conversation, current),
            tickets,
            messages,
            ownership,
            deliveries,
        })
    }

    // ----- dead letters ----------------------------------------------------------------------

    pub async fn list_dead_letters(&self) -> Result<Vec<DeadLetterView>, HubError> {
        Ok(self
            .inner
            .db
            .list_dead_letters()
            .await?
            .into_iter()
            .map(DeadLetterView::from)
            .collect())
    }

    /// Puts a dead letter back in the queue with its attempts reset.
    pub async fn retry_dead_letter(&self, id: i64) -> Result<(), HubError> {
        self.inner.db.retry_dead_letter(id, now_ms()).await?;
        self.inner.outbox.notify_one();
        Ok(())
    }

    pub async fn discard_dead_letter(&self, id: i64) -> Result<(), HubError> {
        Ok(self.inner.db.discard_dead_letter(id).await?)
    }

    // ----- quarantined events ----------------------------------------------------------------

    /// Inbound events set aside after failing every try.
    pub async fn list_quarantined_events(&self) -> Result<Vec<QuarantinedEventView>, HubError> {
        Ok(self
            .inner
            .db
            .list_quarantined_events()
            .await?
            .into_iter()
            .map(QuarantinedEventView::from)
            .collect())
    }

    /// Hands a quarantined event back to the processor (once its cause is fixed).
    pub async fn retry_quarantined_event(&self, id: i64) -> Result<(), HubError> {
        self.inner.db.retry_quarantined_event(id).await?;
        self.inner.inbound.notify_one();
        Ok(())
    }

    // ----- webhooks --------------------------------------------------------------------------

    /// Verifies a webhook through the installation's plugin, stores the events it carries
    /// (deduplicated) durably, and returns the answer for the sender. Nothing is stored when
    /// the plugin refuses the request.
    pub async fn handle_webhook(
        &self,
        installation_id: &str,
        request: WebhookRequest,
    ) -> Result<WebhookResponse, HubError> {
        engine::handle_webhook(self, installation_id, request).await
    }

    // ----- health and metrics ----------------------------------------------------------------

    pub async fn health(&self) -> Health {
        let database = self.inner.db.ping().await.is_ok();
        let stats = self.inner.db.outbox_stats().await.unwrap_or_default();
        let inbound = self
            .inner
            .db
            .count_pending_inbound_events()
            .await
            .unwrap_or_default();
        let quarantined = self
            .inner
            .db
            .count_quarantined_events()
            .await
            .unwrap_or_default();
        Health {
            ok: database,
            database,
            inbound_pending: inbound.max(0) as u64,
            inbound_quarantined: quarantined.max(0) as u64,
            outbox_pending: stats.pending.max(0) as u64,
            dead_letters: stats.dead.max(0) as u64,
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }
}

/// How secret settings are shown back.
pub const SECRET_MASK: &str = "********";

fn check_slug(what: &str, value: &str) -> Result<(), HubError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(HubError::Invalid(format!(
            "{what} `{value}` must be 1-64 characters of a-z, 0-9 and `-`"
        )))
    }
}

fn link_view(row: LinkRow) -> Result<LinkView, HubError> {
    let settings: LinkSettings = serde_json::from_str(&row.settings_json)
        .map_err(|e| anyhow::anyhow!("link `{}` has corrupt settings: {e}", row.id))?;
    Ok(LinkView {
        id: row.id,
        social_installation: row.social_installation_id,
        helpdesk_installation: row.helpdesk_installation_id,
        settings,
        created_at: iso(row.created_at),
    })
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

/// How often the write-ahead log is checkpointed (see [`Db::checkpoint`]).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How often the write-ahead log's size is looked at between checkpoints.
const WAL_WATCH_EVERY: Duration = Duration::from_millis(50);
/// How often rows past the retention are pruned (see [`Db::prune`]); also once at start.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Keeps the database's size bounded until `shutdown`: checkpoints the write-ahead log every
/// [`CHECKPOINT_EVERY`], or as soon as its file reaches half its limit (truncating it then,
/// see [`Db::checkpoint`]), and prunes what is older than
/// `retention` every [`PRUNE_EVERY`]. On shutdown the log is truncated, so none is left
/// beside the database.
async fn run_maintenance(db: Db, retention: Duration, shutdown: CancellationToken) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            let before = now_ms() - retention.as_millis() as i64;
            match db.prune(before).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    events = pruned.events,
                    outbox_rows = pruned.outbox_rows,
                    job_runs = pruned.job_runs,
                    retention_days = retention.as_secs() / 86_400,
                    "pruned rows past the retention"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "pruning old rows failed"),
            }
        }
        // Checked often: under a heavy load the log grows by tens of MiB a second.
        let next_checkpoint = tokio::time::Instant::now() + CHECKPOINT_EVERY;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(WAL_WATCH_EVERY) => {}
            }
            if tokio::time::Instant::now() >= next_checkpoint || db.wal_needs_checkpoint() {
                break;
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        match db.checkpoint().await {
            Ok(done) if done.truncated => {
                tracing::info!(
                    wal_bytes = done.wal_bytes,
                    "write-ahead log over its limit; truncated"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "checkpointing the database failed"),
        }
    }
    if let Err(error) = db.truncate_wal().await {
        tracing::warn!(%error, "could not truncate the write-ahead log at shutdown");
    }
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

/// A webhook request being handled; see [`Hub::webhook_started`].
pub(crate) struct InFlight {
    hub: Hub,
    installation: String,
    started_at: i64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut map) = self.hub.inner.webhooks_in_flight.lock() {
            if let Some(starts) = map.get_mut(&self.installation) {
                if let Some(count) = starts.get_mut(&self.started_at) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        starts.remove(&self.started_at);
                    }
                }
                if starts.is_empty() {
                    map.remove(&self.installation);
                }
            }
        }
    }
}
