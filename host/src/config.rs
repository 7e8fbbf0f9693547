//! The hub's configuration: a TOML file, overridden by `SWITCHBOARD_*` environment variables,
//! overridden in turn by command-line flags.
//!
//! Resolution is a pure function of its three inputs ([`Overrides`] from the CLI, an environment
//! lookup, and the file text), so precedence and error messages are unit-tested without touching
//! the process environment. Only [`Config::admin_token`] and [`Config::secret_key`] touch the
//! disk, to generate and keep credentials that were not configured.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/switchboard"
//! database_url = "sqlite:///var/lib/switchboard/switchboard.db"
//! admin_token = "..."           # or SWITCHBOARD_ADMIN_TOKEN; generated into <data-dir>/admin.token
//! secret_key = "base64 32 bytes" # or SWITCHBOARD_SECRET_KEY; generated into <data-dir>/secret.key
//! log_format = "human"          # or "json"
//!
//! [server]
//! webhook_body_limit = 1048576  # bytes
//! request_timeout_secs = 30     # admin API
//! header_read_timeout_secs = 10 # to send a request head; also the idle keep-alive limit
//! body_read_timeout_secs = 30   # to send a webhook's body (408 after)
//! max_connections = 1024        # further connections are closed at once
//! shutdown_timeout_secs = 10    # for requests in flight and workers, then the process exits
//! metrics_token = "..."         # or SWITCHBOARD_METRICS_TOKEN; /metrics takes it or the admin token
//!
//! [plugins]
//! instances = 256               # plugin instances alive at once (the pool)
//! calls_per_installation = 32   # calls one installation may run at once
//! reserved_for_background = 32  # instances webhooks cannot take (outbox, scheduler)
//! queue_timeout_ms = 10000      # wait for a free instance; then 503 + Retry-After
//!
//! [outbox]
//! max_attempts = 8
//! base_backoff_ms = 500
//! max_backoff_ms = 300000
//! workers = 32                # rows delivered at once (different conversations)
//! lease_ms = 120000           # a claimed row's reservation, renewed while it is delivered
//!
//! [scheduler]
//! tick_ms = 1000
//!
//! [store]
//! durable_commits = true      # synchronous=FULL: a commit survives a power cut
//! wal_limit_mb = 64           # the write-ahead log stays under this size
//! cache_mb = 64               # SQLite's page cache of the write connection
//! retention_days = 30         # processed events, delivered outbox rows, job runs (at least 7)
//!
//! [runtime]
//! # Let plugins and OAuth2 token requests reach loopback, private and link-local addresses and
//! # plain http (SWITCHBOARD_ALLOW_PRIVATE_NETWORK). Tests and local simulators only.
//! allow_private_network = false
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::hub::{AdmissionConfig, HubConfig, OutboxConfig};
use crate::runtime::NetworkAccess;
use crate::store::StoreOptions;

/// Where the data dir is when nothing says otherwise (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "switchboard-data";
/// The config file looked for in the data dir when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "switchboard.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PLUGIN_INSTANCES: u32 = 256;
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Processed events are the deduplication memory: WhatsApp retries a webhook for 7 days.
pub const MIN_RETENTION_DAYS: u64 = 7;
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
pub const SECRET_KEY_FILE: &str = "secret.key";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(format!("`{s}` is not a log format (human, json)")),
        }
    }
}

/// Why the configuration could not be resolved. Every message names the source (file and key,
/// or environment variable, or flag) so the admin knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Includes unknown keys: the TOML error names the key, line and column.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{source_name}: {message}")]
    Value {
        source_name: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Values given as command-line flags; they win over the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// The resolved configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The file the values came from, if one was read.
    pub file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// The configured admin token; see [`Config::admin_token`] for the generated fallback.
    pub admin_token: Option<String>,
    /// The configured secret key; see [`Config::secret_key`] for the generated fallback.
    pub secret_key: Option<[u8; 32]>,
    pub log_format: LogFormat,
    /// Largest webhook body accepted, in bytes.
    pub webhook_body_limit: usize,
    /// Deadline of one admin API request.
    pub request_timeout: Duration,
    /// Connection limits and timeouts of the HTTP server.
    pub server: ServerLimits,
    /// The token that may read `/metrics` (the admin token may too).
    pub metrics_token: Option<String>,
    pub outbox: OutboxConfig,
    pub scheduler_tick: Duration,
    pub store: StoreOptions,
    /// How long processed events, delivered outbox rows and job runs are kept.
    pub retention: Duration,
    /// `[runtime] allow_private_network`.
    pub network: NetworkAccess,
    /// Plugin instances alive at once.
    pub plugin_instances: u32,
    /// How plugin calls queue for instances.
    pub admission: AdmissionConfig,
}

/// The `[server]` settings that protect the HTTP server from slow and idle clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

// Credentials never appear in Debug output (and so never in logs).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "********"),
            )
            .field("secret_key", &self.secret_key.as_ref().map(|_| "********"))
            .field("log_format", &self.log_format)
            .field("webhook_body_limit", &self.webhook_body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("server", &self.server)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "********"),
            )
            .field("outbox", &self.outbox)
            .field("scheduler_tick", &self.scheduler_tick)
            .field("network", &self.network)
            .field("plugin_instances", &self.plugin_instances)
            .field("admission", &self.admission)
            .finish()
    }
}

/// The file's shape. Every field is optional; unknown keys are an error (a typo must not be
/// silently ignored, e.g. `admin_tokn` leaving the API on a generated token).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    secret_key: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    outbox: FileOutbox,
    #[serde(default)]
    scheduler: FileScheduler,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    runtime: FileRuntime,
    #[serde(default)]
    plugins: FilePlugins,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRuntime {
    allow_private_network: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    webhook_body_limit: Option<usize>,
    request_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
    metrics_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlugins {
    instances: Option<u32>,
    calls_per_installation: Option<u32>,
    reserved_for_background: Option<u32>,
    queue_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutbox {
    max_attempts: Option<u32>,
    base_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    workers: Option<usize>,
    lease_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScheduler {
    tick_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    durable_commits: Option<bool>,
    wal_limit_mb: Option<u64>,
    cache_mb: Option<u64>,
    retention_days: Option<u64>,
}

/// One setting's candidate value and where it came from, for error messages.
struct Found<T> {
    value: T,
    source: String,
}

impl Config {
    /// Resolves the configuration from the flags, the process environment and the file.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::resolve(overrides, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment as a lookup function.
    pub fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // The data dir locates the default config file, so it is resolved from flags and the
        // environment first; the file may still set it when neither does.
        let pre_data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env("SWITCHBOARD_DATA_DIR").map(PathBuf::from));
        let explicit_file = overrides
            .config
            .clone()
            .or_else(|| env("SWITCHBOARD_CONFIG").map(PathBuf::from));
        let (file_path, file) = match explicit_file {
            // An explicitly named file must exist.
            Some(path) => {
                let file = read_file(&path)?;
                (Some(path), file)
            }
            None => {
                let dir = pre_data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let path = dir.join(DEFAULT_CONFIG_FILE);
                if path.is_file() {
                    let file = read_file(&path)?;
                    (Some(path), file)
                } else {
                    (None, FileConfig::default())
                }
            }
        };
        let file_source = |key: &str| match &file_path {
            Some(path) => format!("config file {} key `{key}`", path.display()),
            None => format!("config key `{key}`"),
        };

        let data_dir = pre_data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let pick = |flag: Option<String>,
                    flag_name: &str,
                    var: &str,
                    from_file: Option<String>,
                    key: &str| {
            if let Some(value) = flag {
                return Some(Found {
                    value,
                    source: format!("flag {flag_name}"),
                });
            }
            if let Some(value) = env(var) {
                return Some(Found {
                    value,
                    source: format!("environment variable {var}"),
                });
            }
            from_file.map(|value| Found {
                value,
                source: file_source(key),
            })
        };
        // Numbers in the file are typed by TOML already; as strings they parse like env values.
        let pick_num =
            |var: &str, from_file: Option<String>, key: &str| pick(None, "", var, from_file, key);

        let listen = match pick(
            overrides.listen.clone(),
            "--listen",
            "SWITCHBOARD_LISTEN",
            file.listen,
            "listen",
        ) {
            Some(found) => parse(found, "an address like 127.0.0.1:8080")?,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| value_error("default listen address", "invalid"))?,
        };

        let database_url = match pick(
            overrides.database_url.clone(),
            "--database-url",
            "SWITCHBOARD_DATABASE_URL",
            file.database_url,
            "database_url",
        ) {
            Some(found) if found.value.trim().is_empty() => {
                return Err(value_error(&found.source, "the database URL is empty"));
            }
            Some(found) => found.value,
            None => default_database_url(&data_dir),
        };

        let admin_token = match pick(
            None,
            "",
            "SWITCHBOARD_ADMIN_TOKEN",
            file.admin_token,
            "admin_token",
        ) {
            Some(found) => Some(validate_token(found)?),
            None => None,
        };

        let secret_key = match pick(
            None,
            "",
            "SWITCHBOARD_SECRET_KEY",
            file.secret_key,
            "secret_key",
        ) {
            Some(found) => {
                Some(decode_key(&found.value).map_err(|m| value_error(&found.source, &m))?)
            }
            None => None,
        };

        let log_format = match overrides.log_format {
            Some(format) => format,
            None => match env("SWITCHBOARD_LOG_FORMAT") {
                Some(value) => value.parse().map_err(|m: String| {
                    value_error("environment variable SWITCHBOARD_LOG_FORMAT", &m)
                })?,
                None => file.log_format.unwrap_or_default(),
            },
        };

        let webhook_body_limit = match pick_num(
            "SWITCHBOARD_WEBHOOK_BODY_LIMIT",
            file.server.webhook_body_limit.map(|n| n.to_string()),
            "server.webhook_body_limit",
        ) {
            Some(found) => positive(
                parse::<usize>(found, "a size in bytes")?,
                "server.webhook_body_limit",
            )?,
            None => DEFAULT_WEBHOOK_BODY_LIMIT,
        };

        let request_timeout = match pick_num(
            "SWITCHBOARD_REQUEST_TIMEOUT_SECS",
            file.server.request_timeout_secs.map(|n| n.to_string()),
            "server.request_timeout_secs",
        ) {
            Some(found) => Duration::from_secs(positive(
                parse(found, "a number of seconds")?,
                "request timeout",
            )?),
            None => Duration::from_secs(30),
        };

        let seconds =
            |var: &str, from_file: Option<u64>, key: &str, default: Duration| match pick_num(
                var,
                from_file.map(|n| n.to_string()),
                key,
            ) {
                Some(found) => Ok(Duration::from_secs(positive(
                    parse(found, "a number of seconds")?,
                    key,
                )?)),
                None => Ok::<_, ConfigError>(default),
            };
        let server = ServerLimits {
            header_read_timeout: seconds(
                "SWITCHBOARD_HEADER_READ_TIMEOUT_SECS",
                file.server.header_read_timeout_secs,
                "server.header_read_timeout_secs",
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            body_read_timeout: seconds(
                "SWITCHBOARD_BODY_READ_TIMEOUT_SECS",
                file.server.body_read_timeout_secs,
                "server.body_read_timeout_secs",
                DEFAULT_BODY_READ_TIMEOUT,
            )?,
            max_connections: match pick_num(
                "SWITCHBOARD_MAX_CONNECTIONS",
                file.server.max_connections.map(|n| n.to_string()),
                "server.max_connections",
            ) {
                Some(found) => positive(
                    parse(found, "a number of connections")?,
                    "server.max_connections",
                )?,
                None => DEFAULT_MAX_CONNECTIONS,
            },
            shutdown_timeout: seconds(
                "SWITCHBOARD_SHUTDOWN_TIMEOUT_SECS",
                file.server.shutdown_timeout_secs,
                "server.shutdown_timeout_secs",
                DEFAULT_SHUTDOWN_TIMEOUT,
            )?,
        };
        let metrics_token = match pick(
            None,
            "",
            "SWITCHBOARD_METRICS_TOKEN",
            file.server.metrics_token,
            "server.metrics_token",
        ) {
            Some(found) => Some(validate_token(found)?),
            None => None,
        };

        let plugin_instances = match pick_num(
            "SWITCHBOARD_PLUGIN_INSTANCES",
            file.plugins.instances.map(|n| n.to_string()),
            "plugins.instances",
        ) {
            Some(found) => positive(parse(found, "a number of instances")?, "plugins.instances")?,
            None => DEFAULT_PLUGIN_INSTANCES,
        };
        let admission_defaults = AdmissionConfig::default();
        let admission = AdmissionConfig {
            per_installation: match pick_num(
                "SWITCHBOARD_PLUGIN_CALLS_PER_INSTALLATION",
                file.plugins.calls_per_installation.map(|n| n.to_string()),
                "plugins.calls_per_installation",
            ) {
                Some(found) => positive(
                    parse(found, "a number of calls")?,
                    "plugins.calls_per_installation",
                )?,
                None => admission_defaults.per_installation,
            },
            reserved_for_background: match pick_num(
                "SWITCHBOARD_PLUGIN_RESERVED_INSTANCES",
                file.plugins.reserved_for_background.map(|n| n.to_string()),
                "plugins.reserved_for_background",
            ) {
                Some(found) => parse(found, "a number of instances")?,
                None => admission_defaults
                    .reserved_for_background
                    .min(plugin_instances / 2),
            },
            queue_timeout: match pick_num(
                "SWITCHBOARD_PLUGIN_QUEUE_TIMEOUT_MS",
                file.plugins.queue_timeout_ms.map(|n| n.to_string()),
                "plugins.queue_timeout_ms",
            ) {
                Some(found) => Duration::from_millis(positive(
                    parse(found, "milliseconds")?,
                    "plugins.queue_timeout_ms",
                )?),
                None => admission_defaults.queue_timeout,
            },
        };
        if admission.reserved_for_background >= plugin_instances {
            return Err(value_error(
                "plugins",
                &format!(
                    "reserved_for_background ({}) must be less than instances ({plugin_instances}): \
                     webhooks need at least one instance",
                    admission.reserved_for_background
                ),
            ));
        }

        let defaults = OutboxConfig::default();
        let outbox = OutboxConfig {
            max_attempts: match pick_num(
                "SWITCHBOARD_OUTBOX_MAX_ATTEMPTS",
                file.outbox.max_attempts.map(|n| n.to_string()),
                "outbox.max_attempts",
            ) {
                Some(found) => {
                    positive(parse(found, "a number of attempts")?, "outbox.max_attempts")?
                }
                None => defaults.max_attempts,
            },
            base_backoff: match pick_num(
                "SWITCHBOARD_OUTBOX_BASE_BACKOFF_MS",
                file.outbox.base_backoff_ms.map(|n| n.to_string()),
                "outbox.base_backoff_ms",
            ) {
                Some(found) => Duration::from_millis(parse(found, "milliseconds")?),
                None => defaults.base_backoff,
            },
            max_backoff: match pick_num(
                "SWITCHBOARD_OUTBOX_MAX_BACKOFF_MS",
                file.outbox.max_backoff_ms.map(|n| n.to_string()),
                "outbox.max_backoff_ms",
            ) {
                Some(found) => Duration::from_millis(parse(found, "milliseconds")?),
                None => defaults.max_backoff,
            },
            workers: match pick_num(
                "SWITCHBOARD_OUTBOX_WORKERS",
                file.outbox.workers.map(|n| n.to_string()),
                "outbox.workers",
            ) {
                Some(found) => positive(parse(found, "a number of workers")?, "outbox.workers")?,
                None => defaults.workers,
            },
            lease: match pick_num(
                "SWITCHBOARD_OUTBOX_LEASE_MS",
                file.outbox.lease_ms.map(|n| n.to_string()),
                "outbox.lease_ms",
            ) {
                Some(found) => {
                    let ms: u64 = parse(found, "milliseconds")?;
                    if ms < 300 {
                        return Err(value_error(
                            "outbox.lease_ms",
                            &format!("{ms} ms is too short: a lease is renewed every third of it, at least every 100 ms"),
                        ));
                    }
                    Duration::from_millis(ms)
                }
                None => defaults.lease,
            },
        };
        if outbox.base_backoff > outbox.max_backoff {
            return Err(value_error(
                "outbox",
                &format!(
                    "base_backoff_ms ({} ms) is larger than max_backoff_ms ({} ms)",
                    outbox.base_backoff.as_millis(),
                    outbox.max_backoff.as_millis()
                ),
            ));
        }

        let scheduler_tick = match pick_num(
            "SWITCHBOARD_SCHEDULER_TICK_MS",
            file.scheduler.tick_ms.map(|n| n.to_string()),
            "scheduler.tick_ms",
        ) {
            Some(found) => Duration::from_millis(positive(
                parse(found, "milliseconds")?,
                "scheduler.tick_ms",
            )?),
            None => Duration::from_secs(1),
        };

        let store_defaults = StoreOptions::default();
        let store = StoreOptions {
            durable_commits: match pick_num(
                "SWITCHBOARD_STORE_DURABLE_COMMITS",
                file.store.durable_commits.map(|b| b.to_string()),
                "store.durable_commits",
            ) {
                Some(found) => parse_bool(found)?,
                None => store_defaults.durable_commits,
            },
            wal_limit_bytes: match pick_num(
                "SWITCHBOARD_STORE_WAL_LIMIT_MB",
                file.store.wal_limit_mb.map(|n| n.to_string()),
                "store.wal_limit_mb",
            ) {
                Some(found) => {
                    positive::<u64>(parse(found, "megabytes")?, "store.wal_limit_mb")? << 20
                }
                None => store_defaults.wal_limit_bytes,
            },
            cache_bytes: match pick_num(
                "SWITCHBOARD_STORE_CACHE_MB",
                file.store.cache_mb.map(|n| n.to_string()),
                "store.cache_mb",
            ) {
                Some(found) => positive::<u64>(parse(found, "megabytes")?, "store.cache_mb")? << 20,
                None => store_defaults.cache_bytes,
            },
        };
        let retention = match pick_num(
            "SWITCHBOARD_STORE_RETENTION_DAYS",
            file.store.retention_days.map(|n| n.to_string()),
            "store.retention_days",
        ) {
            Some(found) => {
                let days: u64 = parse(found, "days")?;
                if days < MIN_RETENTION_DAYS {
                    return Err(value_error(
                        "store.retention_days",
                        &format!("{days} days is too short: deduplication must remember an event for {MIN_RETENTION_DAYS} days, as long as WhatsApp retries a webhook"),
                    ));
                }
                Duration::from_secs(days * 86_400)
            }
            None => Duration::from_secs(DEFAULT_RETENTION_DAYS * 86_400),
        };
        let allow_private_network = match pick_num(
            "SWITCHBOARD_ALLOW_PRIVATE_NETWORK",
            file.runtime.allow_private_network.map(|b| b.to_string()),
            "runtime.allow_private_network",
        ) {
            Some(found) => parse_bool(found)?,
            None => false,
        };

        Ok(Self {
            file: file_path,
            listen,
            data_dir,
            database_url,
            admin_token,
            secret_key,
            log_format,
            webhook_body_limit,
            request_timeout,
            server,
            metrics_token,
            outbox,
            scheduler_tick,
            store,
            retention,
            network: NetworkAccess {
                allow_private_network,
            },
            plugin_instances,
            admission,
        })
    }

    /// The log format from the flags, the environment or the file, without failing: logging is
    /// set up before the configuration is fully loaded (and its errors reported).
    pub fn log_format_hint(overrides: &Overrides) -> LogFormat {
        Self::load(overrides)
            .map(|c| c.log_format)
            .unwrap_or_else(|_| overrides.log_format.unwrap_or_default())
    }

    /// The admin token: the configured one, else the one in `<data-dir>/admin.token`, else a new
    /// random one written there (mode 0600). The flag tells whether it was generated now.
    pub fn admin_token(&self) -> Result<(String, TokenSource), ConfigError> {
        if let Some(token) = &self.admin_token {
            return Ok((token.clone(), TokenSource::Configured));
        }
        let path = self.admin_token_path();
        if let Some(text) = read_optional(&path)? {
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(value_error(
                    &path.display().to_string(),
                    "the admin token is shorter than 16 characters; delete the file to generate a new one",
                ));
            }
            return Ok((token, TokenSource::File(path)));
        }
        let token = hex::encode(random_bytes::<32>()?);
        write_private(&path, &format!("{token}\n"))?;
        Ok((token, TokenSource::Generated(path)))
    }

    /// The key for secrets at rest: the configured one, else the one in `<data-dir>/secret.key`,
    /// else a new random one written there (mode 0600) once, and kept: losing it makes the stored
    /// secrets unreadable.
    pub fn secret_key(&self) -> Result<[u8; 32], ConfigError> {
        if let Some(key) = self.secret_key {
            return Ok(key);
        }
        let path = self.data_dir.join(SECRET_KEY_FILE);
        if let Some(text) = read_optional(&path)? {
            return decode_key(text.trim())
                .map_err(|m| value_error(&path.display().to_string(), &m));
        }
        let key = random_bytes::<32>()?;
        write_private(
            &path,
            &format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(key)
            ),
        )?;
        tracing::info!(path = %path.display(), "generated the key for secrets at rest; back it up with the database");
        Ok(key)
    }

    /// What the hub needs, with the secret key resolved (generated on first use).
    pub fn hub_config(&self) -> Result<HubConfig, ConfigError> {
        Ok(HubConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            secret_key: self.secret_key()?,
            outbox: self.outbox.clone(),
            scheduler_tick: self.scheduler_tick,
            store: self.store.clone(),
            retention: self.retention,
            network: self.network,
            plugin_instances: self.plugin_instances,
            admission: self.admission.clone(),
        })
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join(ADMIN_TOKEN_FILE)
    }
}

/// Where the admin token came from; logged (the path, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Configured,
    File(PathBuf),
    Generated(PathBuf),
}

/// The default database: a SQLite file in the data dir.
pub fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("switchboard.db").display())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // toml's message names the unknown key (or the bad value), its line and column, and the
    // expected keys.
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn parse<T: FromStr>(found: Found<String>, expected: &str) -> Result<T, ConfigError> {
    found.value.trim().parse().map_err(|_| {
        value_error(
            &found.source,
            &format!("`{}` is not {expected}", found.value),
        )
    })
}

fn parse_bool(found: Found<String>) -> Result<bool, ConfigError> {
    match found.value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(value_error(
            &found.source,
            &format!("`{}` is not true or false", found.value),
        )),
    }
}

fn positive<T: PartialEq + Default>(value: T, what: &str) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(value_error(what, "must be greater than 0"));
    }
    Ok(value)
}

fn validate_token(found: Found<String>) -> Result<String, ConfigError> {
    let token = found.value.trim().to_string();
    // A short token is guessable; the generated one is 64 hex characters.
    if token.len() < 16 {
        return Err(value_error(
            &found.source,
            "the admin token must be at least 16 characters",
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(value_error(
            &found.source,
            "the admin token must be printable ASCII without spaces",
        ));
    }
    Ok(token)
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("the secret key is not valid base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "the secret key must be 32 bytes of base64, got {} bytes",
            b.len()
        )
    })
}

fn value_error(source: &str, message: &str) -> ConfigError {
    ConfigError::Value {
        source_name: source.to_string(),
        message: message.to_string(),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates the data dir (and its parents) accessible to its owner only (mode 0700), or
/// tightens an existing one: it holds the database, the secret key and the admin token.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder.create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "data dir was open to others; now 0700");
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Writes a credential readable by its owner only. The file is created with mode 0600 rather
/// than chmod-ed after, so it is never readable by others, even briefly; `create_new` keeps two
/// processes starting at once from overwriting each other's key.
fn write_private(path: &Path, contents: &str) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_data_dir(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ConfigError> {
    use rand::RngCore as _;
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        value_error(
            "random number generator",
            &format!("could not generate a credential: {e}"),
        )
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn private_network_is_refused_unless_the_file_or_env_allows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");
        assert!(!config.network.allow_private_network, "production default");
        assert!(
            !config
                .hub_config()
                .expect("hub")
                .network
                .allow_private_network
        );
        write_config(dir.path(), "[runtime]\nallow_private_network = true\n");
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");
        assert!(config.network.allow_private_network);
        let env = env_of(&[("SWITCHBOARD_ALLOW_PRIVATE_NETWORK", "false")]);
        let config = Config::resolve(&overrides, &env).expect("config");
        assert!(!config.network.allow_private_network, "env beats file");
        let env = env_of(&[("SWITCHBOARD_ALLOW_PRIVATE_NETWORK", "maybe")]);
        let error = Config::resolve(&overrides, &env).expect_err("not a bool");
        assert!(
            error
                .to_string()
                .contains("SWITCHBOARD_ALLOW_PRIVATE_NETWORK"),
            "{error}"
        );
    }

    #[test]
    fn defaults_without_file_or_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");
        assert_eq!(config.file, None);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.database_url, default_database_url(dir.path()));
        assert_eq!(config.webhook_body_limit, 1024 * 1024);
        assert_eq!(config.log_format, LogFormat::Human);
        assert_eq!(config.outbox, OutboxConfig::default());
        assert_eq!(config.admin_token, None);
        assert_eq!(config.secret_key, None);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(
            dir.path(),
            r#"
listen = "127.0.0.1:1111"
database_url = "sqlite://file.db"
log_format = "json"
admin_token = "file-token-0123456789"
[server]
webhook_body_limit = 100
[outbox]
workers = 2
max_attempts = 3
"#,
        );
        let data_dir = dir.path().to_str().expect("utf-8 path");
        let env = env_of(&[
            ("SWITCHBOARD_DATA_DIR", data_dir),
            ("SWITCHBOARD_LISTEN", "127.0.0.1:2222"),
            ("SWITCHBOARD_DATABASE_URL", "sqlite://env.db"),
            ("SWITCHBOARD_ADMIN_TOKEN", "env-token-0123456789"),
            ("SWITCHBOARD_OUTBOX_WORKERS", "7"),
        ]);

        // The file is found in the data dir named by the environment.
        let config = Config::resolve(&Overrides::default(), &env).expect("config");
        assert_eq!(config.file, Some(dir.path().join("switchboard.toml")));
        assert_eq!(config.listen.port(), 2222, "env beats file");
        assert_eq!(config.database_url, "sqlite://env.db");
        assert_eq!(config.admin_token.as_deref(), Some("env-token-0123456789"));
        assert_eq!(config.log_format, LogFormat::Json, "file beats default");
        assert_eq!(config.webhook_body_limit, 100);
        assert_eq!(config.outbox.workers, 7);
        assert_eq!(config.outbox.max_attempts, 3);

        let flags = Overrides {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some("sqlite://flag.db".into()),
            log_format: Some(LogFormat::Human),
            ..Overrides::default()
        };
        let config = Config::resolve(&flags, &env).expect("config");
        assert_eq!(config.listen.port(), 0, "flag beats env");
        assert_eq!(config.database_url, "sqlite://flag.db");
        assert_eq!(config.log_format, LogFormat::Human);
    }

    #[test]
    fn file_may_set_the_data_dir_and_the_default_database_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        let path = dir.path().join("custom.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\nsecret_key = {KEY_B64:?}\n",
                elsewhere.display().to_string()
            ),
        )
        .expect("write");
        let overrides = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");
        assert_eq!(config.data_dir, elsewhere);
        assert_eq!(config.database_url, default_database_url(&elsewhere));
        let key = config.secret_key.expect("key");
        assert_eq!(key[31], 31);
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_config(dir.path(), "listen = \"127.0.0.1:1\"\nadmin_tokn = \"x\"\n");
        let overrides = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        let error = Config::resolve(&overrides, &env_of(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("admin_tokn"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");

        let path = write_config(dir.path(), "[outbox]\nretries = 3\n");
        let overrides = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let error = Config::resolve(&overrides, &env_of(&[]))
            .expect_err("unknown nested key")
            .to_string();
        assert!(error.contains("retries"), "{error}");
    }

    #[test]
    fn server_limits_and_plugin_admission_from_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(
            dir.path(),
            r#"
[server]
header_read_timeout_secs = 3
body_read_timeout_secs = 4
max_connections = 50
shutdown_timeout_secs = 5
metrics_token = "file-metrics-token-0123"
[plugins]
instances = 64
calls_per_installation = 8
reserved_for_background = 16
queue_timeout_ms = 2500
"#,
        );
        let overrides = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let env = env_of(&[("SWITCHBOARD_MAX_CONNECTIONS", "70")]);
        let config = Config::resolve(&overrides, &env).expect("config");
        assert_eq!(
            config.server,
            ServerLimits {
                header_read_timeout: Duration::from_secs(3),
                body_read_timeout: Duration::from_secs(4),
                max_connections: 70,
                shutdown_timeout: Duration::from_secs(5),
            }
        );
        assert_eq!(
            config.metrics_token.as_deref(),
            Some("file-metrics-token-0123")
        );
        assert!(!format!("{config:?}").contains("file-metrics-token"));
        assert_eq!(config.plugin_instances, 64);
        assert_eq!(
            config.admission,
            AdmissionConfig {
                per_installation: 8,
                reserved_for_background: 16,
                queue_timeout: Duration::from_millis(2500),
            }
        );

        // Defaults, and a reservation that would leave webhooks nothing.
        let empty = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            data_dir: Some(empty.path().to_path_buf()),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");
        assert_eq!(config.server, ServerLimits::default());
        assert_eq!(config.plugin_instances, 256);
        assert_eq!(config.admission, AdmissionConfig::default());
        let error = Config::resolve(
            &overrides,
            &env_of(&[
                ("SWITCHBOARD_PLUGIN_INSTANCES", "8"),
                ("SWITCHBOARD_PLUGIN_RESERVED_INSTANCES", "8"),
            ]),
        )
        .expect_err("nothing left for webhooks");
        assert!(
            error.to_string().contains("reserved_for_background"),
            "{error}"
        );
        let error = Config::resolve(
            &overrides,
            &env_of(&[("SWITCHBOARD_HEADER_READ_TIMEOUT_SECS", "0")]),
        )
        .expect_err("zero timeout");
        assert!(
            error.to_string().contains("header_read_timeout_secs"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };

        let error = Config::resolve(&base, &env_of(&[("SWITCHBOARD_LISTEN", "nowhere")]))
            .expect_err("bad addr");
        assert!(error.to_string().contains("SWITCHBOARD_LISTEN"), "{error}");

        let error = Config::resolve(&base, &env_of(&[("SWITCHBOARD_SECRET_KEY", "c2hvcnQ=")]))
            .expect_err("short key");
        assert!(error.to_string().contains("32 bytes"), "{error}");

        let error = Config::resolve(&base, &env_of(&[("SWITCHBOARD_ADMIN_TOKEN", "short")]))
            .expect_err("short token");
        assert!(error.to_string().contains("at least 16"), "{error}");

        let error = Config::resolve(&base, &env_of(&[("SWITCHBOARD_LOG_FORMAT", "xml")]))
            .expect_err("bad log format");
        assert!(error.to_string().contains("xml"), "{error}");

        write_config(dir.path(), "[server]\nwebhook_body_limit = 0\n");
        let error = Config::resolve(&base, &env_of(&[])).expect_err("zero limit");
        assert!(error.to_string().contains("webhook_body_limit"), "{error}");

        write_config(dir.path(), "listen = 8080\n");
        let error = Config::resolve(&base, &env_of(&[]))
            .expect_err("wrong type")
            .to_string();
        assert!(
            error.contains("switchboard.toml") && error.contains("listen"),
            "{error}"
        );

        let missing = Overrides {
            config: Some(dir.path().join("missing.toml")),
            ..Overrides::default()
        };
        let error = Config::resolve(&missing, &env_of(&[])).expect_err("missing file");
        assert!(error.to_string().contains("missing.toml"), "{error}");
    }

    #[test]
    fn credentials_are_generated_once_into_private_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &env_of(&[])).expect("config");

        let (token, source) = config.admin_token().expect("token");
        assert_eq!(source, TokenSource::Generated(config.admin_token_path()));
        assert_eq!(token.len(), 64);
        let (again, source) = config.admin_token().expect("token again");
        assert_eq!(again, token);
        assert_eq!(source, TokenSource::File(config.admin_token_path()));

        let key = config.secret_key().expect("key");
        assert_eq!(config.secret_key().expect("key again"), key);

        #[cfg(unix)]
        for name in [ADMIN_TOKEN_FILE, SECRET_KEY_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(config.data_dir.join(name))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }

        // A configured credential wins and nothing is written.
        let env = env_of(&[
            ("SWITCHBOARD_ADMIN_TOKEN", "configured-token-123"),
            ("SWITCHBOARD_SECRET_KEY", KEY_B64),
        ]);
        let config = Config::resolve(&overrides, &env).expect("config");
        assert_eq!(
            config.admin_token().expect("token").1,
            TokenSource::Configured
        );
        assert_eq!(config.secret_key().expect("key")[1], 1);
    }

    #[test]
    fn debug_hides_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let env = env_of(&[("SWITCHBOARD_ADMIN_TOKEN", "very-secret-token-123")]);
        let config = Config::resolve(&overrides, &env).expect("config");
        assert!(!format!("{config:?}").contains("very-secret-token-123"));
    }
}
