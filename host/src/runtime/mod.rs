//! The sandboxed plugin runtime.
//!
//! [`Runtime`] owns the wasmtime engine, the linker with the host interfaces, and the compile
//! cache. [`Runtime::load`] turns wasm bytes into a [`Plugin`]: compiled (or taken from the
//! cache), checked against a world of the contract, pre-instantiated, and described.
//! [`Runtime::social`] / [`Runtime::helpdesk`] bind a plugin to one installation's settings and
//! grants; every call on the result runs in a fresh instance with its own memory cap, deadline,
//! HTTP policy and log budget, and a trap in one call never affects another.

pub mod admission;
pub mod bindings;
pub mod bounds;
pub mod cache;
mod connector;
pub mod contract;
pub mod engine;
pub mod http;
pub mod latest;
pub mod log;
pub mod oauth;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use self::admission::{Admission, AdmissionConfig};

pub use self::cache::CacheOutcome;
use self::cache::ComponentCache;
pub(crate) use self::connector::describe_error;
pub use self::connector::{HelpdeskConnector, SocialConnector};
pub use self::contract::ContractVersion;
use self::engine::EngineLimits;
use self::http::{Credential, HttpPolicy, HttpSender, OriginPattern};
pub use self::http::{NetworkAccess, NetworkRefused};
use self::log::{LogLimits, LogSink};
pub use self::oauth::{StaticToken, TokenError, TokenSource};
use self::oauth::{ACCESS_TOKEN_MARKER, ACCESS_TOKEN_PLACEHOLDER};
use self::state::{MemoryLimiter, PluginState};
use crate::manifest::{expand, CredentialPlacement, ManifestError, PluginKind, PluginManifest};

/// Limits applied to every call of one installation.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// CPU deadline of one call, enforced by epoch interruption; host calls (HTTP) count too.
    pub deadline: Duration,
    /// Cap on the instance's linear memory.
    pub memory_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            memory_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    pub engine: EngineLimits,
    /// Limits for installations that do not set their own.
    pub default_limits: CallLimits,
    /// Timeout of one outbound HTTP request.
    pub http_timeout: Duration,
    pub max_response_bytes: usize,
    pub log: LogLimits,
    /// Which addresses outbound requests may reach (`[runtime] allow_private_network`).
    pub network: NetworkAccess,
    /// How calls share the engine's pool of instances.
    pub admission: AdmissionConfig,
}

impl RuntimeConfig {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            engine: EngineLimits::default(),
            default_limits: CallLimits::default(),
            http_timeout: Duration::from_secs(30),
            max_response_bytes: 8 << 20,
            log: LogLimits::default(),
            network: NetworkAccess::default(),
            admission: AdmissionConfig::default(),
        }
    }
}

/// Why a component could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid wasm component: {0}")]
    NotAComponent(String),
    #[error(
        "the component does not match the contract ({}): {reason}",
        contract::ContractVersion::ALL.map(|v| v.package()).join(" or ")
    )]
    ContractMismatch { reason: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the plugin's `describe` failed: {0}")]
    Describe(CallError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Why a call to a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin ran and returned its typed error.
    #[error("{}", connector::describe_error(.0))]
    Connector(bindings::types::ConnectorError),
    #[error("the call exceeded its deadline of {} ms and was stopped", .0.as_millis())]
    Deadline(Duration),
    #[error("the plugin exceeded its memory cap of {} MiB and was stopped", .0 >> 20)]
    MemoryCap(usize),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// The call never ran: no instance became free for it in time (see [`admission`]).
    #[error("the call was not run: {0}")]
    Busy(#[from] admission::Busy),
    /// The plugin's result is over one of the host's bounds (see [`bounds`]).
    #[error("the plugin's answer was refused: {0}")]
    OutputLimit(bounds::OutputLimit),
    /// The call tried to copy more than the copy budget between the plugin and the host.
    #[error(
        "the call tried to copy more than {} MiB between the plugin and the host \
         (MAX_CALL_COPY_BYTES) and was stopped",
        .0 >> 20
    )]
    CopyLimit(usize),
    /// The host had no free instance slot: its capacity, not the plugin, failed the call.
    #[error("the host is at capacity and did not run the call: {0}")]
    Capacity(String),
    #[error("the plugin implements the {actual} world, not {expected}")]
    WrongWorld {
        expected: &'static str,
        actual: &'static str,
    },
}

/// Why a plugin could not be bound to an installation.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("setting `{0}` is required by the plugin but missing")]
    MissingSetting(String),
    #[error("setting `{0}` is not declared by the plugin")]
    UnknownSetting(String),
    #[error("in `{template}`: {reason}")]
    Template { template: String, reason: String },
}

/// A component ready to instantiate, by world and by the contract version it was built for.
enum WorldPre {
    Social(bindings::social::SocialPre<PluginState>),
    Helpdesk(bindings::helpdesk::HelpdeskPre<PluginState>),
    SocialV0_2(contract::v0_2::social::SocialPre<PluginState>),
    HelpdeskV0_2(contract::v0_2::helpdesk::HelpdeskPre<PluginState>),
}

impl WorldPre {
    fn kind(&self) -> PluginKind {
        match self {
            WorldPre::Social(_) | WorldPre::SocialV0_2(_) => PluginKind::Social,
            WorldPre::Helpdesk(_) | WorldPre::HelpdeskV0_2(_) => PluginKind::Helpdesk,
        }
    }

    fn version(&self) -> ContractVersion {
        match self {
            WorldPre::Social(_) | WorldPre::Helpdesk(_) => ContractVersion::V0_3,
            WorldPre::SocialV0_2(_) | WorldPre::HelpdeskV0_2(_) => ContractVersion::V0_2,
        }
    }
}

/// Where the billable calls plugins report go (contract 0.3 `metering`): the hub counts them
/// per installation.
pub trait MeterSink: Send + Sync {
    fn billable(&self, installation_id: &str, kind: &str, count: u64);
}

struct PluginInner {
    manifest: PluginManifest,
    sha256: String,
    pre: WorldPre,
}

/// A loaded plugin: compiled, checked against the contract, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl Plugin {
    pub fn manifest(&self) -> &PluginManifest {
        &self.inner.manifest
    }

    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    pub fn kind(&self) -> PluginKind {
        self.inner.pre.kind()
    }

    /// The contract version the component was built for.
    pub fn contract(&self) -> ContractVersion {
        self.inner.pre.version()
    }
}

/// One installation as the runtime needs it. Build it with `..Default::default()` for the
/// fields a caller does not need.
#[derive(Clone, Default)]
pub struct Installation {
    pub id: String,
    /// All settings, secrets included (decrypted); which are secret comes from the manifest.
    pub settings: BTreeMap<String, String>,
    /// The manifest's `http-hosts` entries that an admin approved, as templates.
    pub approved_hosts: Vec<String>,
    pub limits: Option<CallLimits>,
    /// The OAuth2 access token for credentials that say `{oauth.access-token}`, fetched per
    /// request; `None` when the installation has no OAuth2 connection.
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// Where the billable calls the plugin reports are counted; `None` drops them (tools).
    pub meter: Option<Arc<dyn MeterSink>>,
}

// Settings hold secrets: show their keys only.
impl std::fmt::Debug for Installation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installation")
            .field("id", &self.id)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("approved_hosts", &self.approved_hosts)
            .field("limits", &self.limits)
            .field(
                "token_source",
                &self.token_source.as_ref().map(|_| "[redacted]"),
            )
            .field("meter", &self.meter.is_some())
            .finish()
    }
}

/// A plugin bound to one installation: the call context, HTTP policy and limits, computed once.
pub(crate) struct Prepared {
    plugin: Plugin,
    engine: Engine,
    sender: HttpSender,
    log_limits: LogLimits,
    context: bindings::types::CallContext,
    policy: Arc<HttpPolicy>,
    secrets: Arc<[String]>,
    limits: CallLimits,
    admission: Arc<Admission>,
    /// The installation's share of the pool (shared by every binding of the installation).
    installation_permits: Arc<Semaphore>,
    meter: Option<Arc<dyn MeterSink>>,
    billable_kinds: Arc<[String]>,
}

/// The wasm engine, host interfaces and compile cache. Create one per process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: ComponentCache,
    sender: HttpSender,
    config: RuntimeConfig,
    pooling: bool,
    admission: Arc<Admission>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let (engine, pooling) = engine::build_engine(&config.engine)?;
        engine::spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        // Only the contract's host interfaces are linked: no WASI, so a plugin that imports the
        // filesystem, sockets or the environment fails to load rather than being handed them.
        // Every contract version's interfaces are linked side by side (their names carry the
        // version); the 0.2 ones are served by the 0.3 implementations.
        bindings::social::Social::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking host interfaces: {e:#}"))?;
        contract::v0_2::social::Social::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking the 0.2 host interfaces: {e:#}"))?;
        let cache = ComponentCache::new(&engine, &config.cache_dir)?;
        let admission = Arc::new(Admission::new(
            config.engine.max_instances,
            config.admission.clone(),
        ));
        Ok(Self {
            engine,
            linker,
            cache,
            sender: HttpSender::new(config.network)?,
            config,
            pooling,
            admission,
        })
    }

    /// Shows every plugin request to `tap`, which may answer in place of the network (the
    /// developer tools: `plugin exec --trace-http`/`--record`, `plugin test`). Never in `serve`.
    pub fn set_http_tap(&mut self, tap: Arc<dyn http::HttpTap>) {
        self.sender.set_tap(tap);
    }

    /// Whether the pooling allocator is in use (it may be unavailable in constrained sandboxes).
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles (or loads from the cache), checks and describes a plugin.
    pub async fn load(&self, wasm: &[u8]) -> Result<(Plugin, CacheOutcome), LoadError> {
        check_is_component(wasm)?;
        let sha256 = cache::sha256_hex(wasm);
        let (component, outcome) = self.cache.load(&self.engine, &sha256, wasm).map_err(|e| {
            // Compilation failures of valid components are our problem; report them as such.
            LoadError::NotAComponent(format!("{e:#}"))
        })?;
        let (kind, version) = self.check_world(&component)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::ContractMismatch {
                    reason: format!("{e:#}"),
                })?;
        let mismatch = |world: &'static str| {
            move |e: wasmtime::Error| LoadError::ContractMismatch {
                reason: format!("world `{world}` of {version}: {e:#}"),
            }
        };
        let pre = match (kind, version) {
            (PluginKind::Social, ContractVersion::V0_3) => WorldPre::Social(
                bindings::social::SocialPre::new(instance_pre).map_err(mismatch("social"))?,
            ),
            (PluginKind::Helpdesk, ContractVersion::V0_3) => WorldPre::Helpdesk(
                bindings::helpdesk::HelpdeskPre::new(instance_pre).map_err(mismatch("helpdesk"))?,
            ),
            (PluginKind::Social, ContractVersion::V0_2) => WorldPre::SocialV0_2(
                contract::v0_2::social::SocialPre::new(instance_pre).map_err(mismatch("social"))?,
            ),
            (PluginKind::Helpdesk, ContractVersion::V0_2) => WorldPre::HelpdeskV0_2(
                contract::v0_2::helpdesk::HelpdeskPre::new(instance_pre)
                    .map_err(mismatch("helpdesk"))?,
            ),
        };
        let placeholder = PluginManifest {
            id: "(loading)".into(),
            name: String::new(),
            version: String::new(),
            kind,
            description: String::new(),
            settings: vec![],
            capabilities: crate::manifest::Capabilities {
                http_hosts: vec![],
                credentials: vec![],
            },
            streams: vec![],
            accepts_webhooks: false,
            text_limits: vec![],
            reply_windows: vec![],
            oauth2: None,
            channel: None,
            billable_kinds: vec![],
        };
        let plugin = Plugin {
            inner: Arc::new(PluginInner {
                manifest: placeholder,
                sha256: sha256.clone(),
                pre,
            }),
        };
        let prepared = self
            .prepare(
                &plugin,
                &Installation {
                    id: "describe".into(),
                    ..Default::default()
                },
            )
            .map_err(|e| LoadError::Other(e.into()))?;
        let manifest: PluginManifest = connector::describe(&prepared)
            .await
            .map_err(LoadError::Describe)?
            .into();
        drop(prepared);
        manifest.validate(kind)?;
        let inner = Arc::into_inner(plugin.inner)
            .ok_or_else(|| anyhow::anyhow!("plugin still referenced"))?;
        let plugin = Plugin {
            inner: Arc::new(PluginInner { manifest, ..inner }),
        };
        Ok((plugin, outcome))
    }

    /// Tells the world and the contract version from the component's exports, with a message
    /// that says what is missing.
    fn check_world(
        &self,
        component: &Component,
    ) -> Result<(PluginKind, ContractVersion), LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let foreign: Vec<&String> = imports
            .iter()
            .filter(|name| !name.starts_with("switchboard:connector/"))
            .collect();
        if !foreign.is_empty() {
            return Err(LoadError::ContractMismatch {
                reason: format!(
                    "it imports {}, which this host does not provide; plugins may import only the \
                     contract's `types`, `http`, `log` and `clock` interfaces (no WASI)",
                    foreign
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let mut found = Vec::new();
        for version in ContractVersion::ALL {
            let (social, helpdesk) = version.exports();
            if exports.iter().any(|e| e == social) {
                found.push((PluginKind::Social, version));
            }
            if exports.iter().any(|e| e == helpdesk) {
                found.push((PluginKind::Helpdesk, version));
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => {
                let other_version = exports
                    .iter()
                    .find(|e| e.starts_with("switchboard:connector/"))
                    .map(|e| format!(" It exports `{e}`, built for a contract version this host does not know."))
                    .unwrap_or_default();
                let expected = ContractVersion::ALL
                    .iter()
                    .map(|v| {
                        let (social, helpdesk) = v.exports();
                        format!("`{social}` or `{helpdesk}`")
                    })
                    .collect::<Vec<_>>()
                    .join(", or ");
                Err(LoadError::ContractMismatch {
                    reason: format!(
                        "it exports none of {expected}; exports found: [{}].{other_version}",
                        exports.join(", ")
                    ),
                })
            }
            _ => Err(LoadError::ContractMismatch {
                reason: format!(
                    "it exports several connector interfaces ({}); a plugin implements one world of one contract version",
                    found
                        .iter()
                        .map(|(kind, version)| format!("{} of {version}", kind.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Binds a plugin to an installation, checking required settings and expanding grants.
    pub(crate) fn prepare(
        &self,
        plugin: &Plugin,
        installation: &Installation,
    ) -> Result<Prepared, PrepareError> {
        let manifest = plugin.manifest();
        let mut values = BTreeMap::new();
        for spec in &manifest.settings {
            let value = installation
                .settings
                .get(&spec.key)
                .filter(|v| !v.is_empty())
                .or(spec.default.as_ref());
            match value {
                Some(value) => {
                    values.insert(spec.key.clone(), value.clone());
                }
                None if spec.required => {
                    return Err(PrepareError::MissingSetting(spec.key.clone()))
                }
                None => {}
            }
        }
        if let Some(unknown) = installation
            .settings
            .keys()
            .find(|k| manifest.setting(k).is_none())
        {
            if !manifest.settings.is_empty() {
                return Err(PrepareError::UnknownSetting(unknown.clone()));
            }
        }
        // Fields of the token response (e.g. Salesforce's `instance_url`) are `{oauth.<name>}`
        // to templates and to the plugin; the token itself only ever reaches credentials.
        if let Some(source) = &installation.token_source {
            for (key, value) in source.extras() {
                if !key.contains("token") {
                    values.insert(format!("oauth.{key}"), value);
                }
            }
        }
        let mut template_values = values.clone();
        template_values.insert(
            ACCESS_TOKEN_PLACEHOLDER.to_string(),
            ACCESS_TOKEN_MARKER.to_string(),
        );
        let template_error =
            |template: &str, e: crate::manifest::TemplateError| PrepareError::Template {
                template: template.to_string(),
                reason: e.to_string(),
            };
        let origin =
            |template: &str| -> Result<Option<OriginPattern>, PrepareError> {
                match expand(template, &template_values).map_err(|e| template_error(template, e))? {
                    Some(expanded) => OriginPattern::parse(&expanded).map(Some).map_err(|e| {
                        PrepareError::Template {
                            template: template.to_string(),
                            reason: e.to_string(),
                        }
                    }),
                    None => Ok(None),
                }
            };
        let mut allowed = Vec::new();
        let mut unapproved = Vec::new();
        for template in &manifest.capabilities.http_hosts {
            if installation.approved_hosts.contains(template) {
                allowed.extend(origin(template)?);
            } else {
                unapproved.push(template.clone());
            }
        }
        let mut credentials = Vec::new();
        for rule in &manifest.capabilities.credentials {
            if !installation.approved_hosts.contains(&rule.host_pattern) {
                continue;
            }
            let Some(pattern) = origin(&rule.host_pattern)? else {
                continue;
            };
            let fill = |t: &String| expand(t, &template_values).map_err(|e| template_error(t, e));
            let credential = match &rule.placement {
                CredentialPlacement::Basic { username, password } => {
                    match (fill(username)?, fill(password)?) {
                        // The token is filled in per request, after encoding would have hidden it.
                        (Some(u), Some(p))
                            if u.contains(ACCESS_TOKEN_MARKER)
                                || p.contains(ACCESS_TOKEN_MARKER) =>
                        {
                            return Err(PrepareError::Template {
                                template: format!("{username}:{password}"),
                                reason: format!(
                                    "`{{{ACCESS_TOKEN_PLACEHOLDER}}}` goes in a bearer, header, \
                                     query or path-prefix credential, not in basic"
                                ),
                            });
                        }
                        (Some(u), Some(p)) => Some(Credential::basic(&u, &p)),
                        _ => None,
                    }
                }
                CredentialPlacement::Bearer { token } => {
                    fill(token)?.map(|t| Credential::bearer(&t))
                }
                CredentialPlacement::Header { name, value } => {
                    fill(value)?.map(|v| Credential::Header {
                        name: name.to_ascii_lowercase(),
                        value: v,
                    })
                }
                CredentialPlacement::Query { name, value } => {
                    fill(value)?.map(|v| Credential::Query {
                        name: name.clone(),
                        value: v,
                    })
                }
                CredentialPlacement::PathPrefix { prefix } => {
                    fill(prefix)?.map(Credential::PathPrefix)
                }
            };
            credentials.extend(credential.map(|c| (pattern, c)));
        }
        let secrets: Arc<[String]> = manifest
            .settings
            .iter()
            .filter(|s| s.secret)
            .filter_map(|s| values.get(&s.key).cloned())
            .collect::<Vec<_>>()
            .into();
        let policy = HttpPolicy {
            plugin_id: manifest.id.clone(),
            allowed,
            unapproved,
            credentials,
            timeout: self.config.http_timeout,
            max_response_bytes: self.config.max_response_bytes,
            token_source: installation.token_source.clone(),
            secrets: Arc::clone(&secrets),
        };
        let mut limits = installation.limits.unwrap_or(self.config.default_limits);
        limits.memory_bytes = limits.memory_bytes.min(self.config.engine.max_memory_bytes);
        Ok(Prepared {
            plugin: plugin.clone(),
            engine: self.engine.clone(),
            sender: self.sender.clone(),
            log_limits: self.config.log,
            context: bindings::types::CallContext {
                installation_id: installation.id.clone(),
                // Secrets go to credentials and OAuth2 only, unless the manifest says the
                // plugin itself needs one (to check webhook signatures).
                settings: values
                    .into_iter()
                    .filter(|(key, _)| manifest.plugin_sees(key))
                    .map(|(key, value)| bindings::types::Setting { key, value })
                    .collect(),
            },
            policy: Arc::new(policy),
            secrets,
            limits,
            admission: Arc::clone(&self.admission),
            installation_permits: self.admission.installation(&installation.id),
            meter: installation.meter.clone(),
            billable_kinds: manifest
                .billable_kinds
                .iter()
                .map(|k| k.name.clone())
                .collect::<Vec<_>>()
                .into(),
        })
    }

    /// A social plugin bound to an installation.
    pub fn social(
        &self,
        plugin: &Plugin,
        installation: &Installation,
    ) -> Result<SocialConnector, anyhow::Error> {
        SocialConnector::new(self.prepare(plugin, installation)?)
    }

    /// A helpdesk plugin bound to an installation.
    pub fn helpdesk(
        &self,
        plugin: &Plugin,
        installation: &Installation,
    ) -> Result<HelpdeskConnector, anyhow::Error> {
        HelpdeskConnector::new(self.prepare(plugin, installation)?)
    }
}

/// Wasmtime reports core modules and garbage with a generic message; say plainly what is wrong.
fn check_is_component(wasm: &[u8]) -> Result<(), LoadError> {
    let mut parser = wasmparser::Parser::new(0);
    match parser.parse(wasm, true) {
        Ok(wasmparser::Chunk::Parsed { payload: wasmparser::Payload::Version { encoding, .. }, .. }) => match encoding {
            wasmparser::Encoding::Component => Ok(()),
            wasmparser::Encoding::Module => Err(LoadError::NotAComponent(
                "this is a core wasm module, not a component; build it with `switchboard plugin build`, which \
                 wraps the module into a component"
                    .into(),
            )),
        },
        Ok(_) => Err(LoadError::NotAComponent("truncated file".into())),
        Err(e) => Err(LoadError::NotAComponent(format!("not a wasm file ({e})"))),
    }
}

impl Prepared {
    /// Waits for this call's turn in the pool; hold the result until the call's store is gone.
    async fn admit(&self) -> Result<admission::Admitted, CallError> {
        self.admission
            .admit(&self.context.installation_id, &self.installation_permits)
            .await
    }

    fn new_store(&self, capture_logs: bool) -> Store<PluginState> {
        let state = PluginState {
            limiter: MemoryLimiter {
                max_bytes: self.limits.memory_bytes,
                exceeded: false,
            },
            http_policy: Arc::clone(&self.policy),
            http: self.sender.clone(),
            log: LogSink::new(
                Arc::from(self.plugin.manifest().id.as_str()),
                self.log_limits,
                Arc::clone(&self.secrets),
                capture_logs,
            ),
            started: Instant::now(),
            deadline: self.limits.deadline,
            timed_out: false,
            billable: state::BillableCalls::new(Arc::clone(&self.billable_kinds)),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Check the deadline at every epoch tick, yielding to tokio in between so a busy plugin
        // cannot starve other tasks on the same worker.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.started.elapsed() >= state.deadline {
                state.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}
