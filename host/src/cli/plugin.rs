//! `switchboard plugin ...`: the plugin lifecycle for authors and admins.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::settings::SettingsArgs;
use super::Context;
use crate::acceptance::{self, WebhookSample};
use crate::exchange::DevTap;
use crate::manifest::{CredentialPlacement, PluginKind, PluginManifest, PLUGIN_ITSELF};
use crate::plugin_build::{build_plugin, BuildOptions};
use crate::runtime::latest::{WebhookRequest, WebhookResponse};
use crate::runtime::{CallError, Installation, Plugin, Runtime};
use crate::scaffold;
use crate::store::{InstallOutcome, NewPlugin};

// Parsed once per process: the size of the `exec` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Build a plugin crate into a wasm component; prints the component's path last.
    ///
    /// This runs the crate's own build code with your privileges: its `build.rs`, its
    /// dependencies' proc macros and build scripts, and its `.cargo/config.toml`. It may also
    /// run `apt-get install` for a missing wasm tool, as root when run as root. Build only
    /// crates you trust, or build in a throwaway container.
    Build {
        crate_dir: PathBuf,
        /// Cargo target dir for the wasm build (shared by plugins so std is built once).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Write a new plugin crate to start from: a manifest with example settings and
    /// credentials, operations against a placeholder API, fixtures and a native test.
    ///
    /// The crate builds with `plugin build`, passes `cargo test`, and passes `plugin test
    /// <component> --fixtures <dir>/fixtures -s api_token=test-token` as written.
    New {
        /// The plugin id: a-z, 0-9 and `-`, starting with a letter.
        name: String,
        /// `social` (a network or messenger) or `helpdesk`.
        #[arg(long)]
        kind: String,
        /// Where to write the crate (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The `plugin-sdk` directory the crate depends on (default: the SDK of the checkout
        /// this binary was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run the acceptance suite on a built component: manifest rules, error mapping (scripted
    /// faults, no service needed), polling, webhooks, sending or helpdesk operations.
    ///
    /// The round trips run against the service the settings point at (a simulator or a test
    /// account), or against fixtures recorded with `plugin exec --record DIR` (`--fixtures`).
    /// Exits 1 when a check fails; each failure names the rule and how to fix it.
    Test {
        component: PathBuf,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Answer the plugin's requests from these recorded exchanges instead of the network.
        #[arg(long, value_name = "DIR")]
        fixtures: Option<PathBuf>,
        /// A genuine signed webhook delivery, as JSON {method, path, query, headers, body}.
        #[arg(long, value_name = "FILE")]
        webhook_delivery: Option<PathBuf>,
        /// A webhook handshake request, as JSON {method, path, query, headers, body}.
        #[arg(long, value_name = "FILE")]
        webhook_handshake: Option<PathBuf>,
        /// The conversation to send test messages to (default: the first one polled).
        #[arg(long)]
        thread: Option<String>,
        /// Makes the run's ids and keys unique (default: `fixture` with --fixtures, else the
        /// time).
        #[arg(long)]
        run_id: Option<String>,
        /// Most pages read from one stream.
        #[arg(long, default_value_t = 20)]
        max_pages: usize,
        /// Skip the checks that write to the service.
        #[arg(long)]
        read_only: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Print each HTTP exchange to standard error, credentials masked.
        #[arg(long)]
        trace_http: bool,
        /// An OAuth2 access token for credentials that say `{oauth.access-token}`.
        #[arg(long, env = "SWITCHBOARD_OAUTH_TOKEN", hide_env_values = true)]
        oauth_token: Option<String>,
        /// A field of the token response for `{oauth.<name>}` templates; repeatable.
        #[arg(long = "oauth-extra", value_name = "NAME=VALUE")]
        oauth_extras: Vec<String>,
    },
    /// Check a component against the contract and print its manifest as JSON.
    Inspect { file: PathBuf },
    /// Install a component into the database after the admin approves its capabilities.
    Install {
        file: PathBuf,
        /// Approve every capability the plugin requests, without asking (for scripts).
        #[arg(long)]
        approve: bool,
        /// Swap the component of an installed version for this rebuilt one, keeping the
        /// version. Development only: refused without --dev, and recorded in the plugin's
        /// history (`plugin history`). In production, bump the version instead.
        #[arg(long)]
        replace: bool,
        /// Says this database is a development one, where --replace is allowed.
        #[arg(long)]
        dev: bool,
    },
    /// Show what happened to an installed plugin: installs and development replacements.
    History {
        plugin_id: String,
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make an installed version the active one.
    Activate { plugin_id: String, version: String },
    /// Remove an installed plugin (all versions, or one).
    Remove {
        plugin_id: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Run one operation of a plugin and print its result as JSON.
    ///
    /// PLUGIN is a .wasm file or an installed plugin id (optionally `id@version`). A file's
    /// requested hosts are approved for this run; an installed plugin uses its approved hosts.
    ///
    /// Operations: describe; social: poll, send, handle-webhook; helpdesk:
    /// find-or-create-requester, create-ticket, add-comment, update-ticket, get-ticket,
    /// poll-changes, handle-webhook. Structured inputs are JSON in the contract's shape, e.g.
    /// `--input '{"ticket_id":"42","status":"Solved","priority":null,"add_tags":[],"remove_tags":[]}'`;
    /// `--input @file.json` reads a file.
    Exec {
        plugin: String,
        operation: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// JSON input of the operation, or @FILE.
        #[arg(long)]
        input: Option<String>,
        /// Stream to poll (default: the manifest's first stream).
        #[arg(long)]
        stream: Option<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        ticket_id: Option<String>,
        /// CPU deadline of the call, in milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// An OAuth2 access token for credentials that say `{oauth.access-token}`.
        #[arg(long, env = "SWITCHBOARD_OAUTH_TOKEN", hide_env_values = true)]
        oauth_token: Option<String>,
        /// A field of the token response for `{oauth.<name>}` templates, such as
        /// `instance_url=https://acme.my.salesforce.com`; repeatable.
        #[arg(long = "oauth-extra", value_name = "NAME=VALUE")]
        oauth_extras: Vec<String>,
        /// Print each HTTP request the plugin makes and its response to standard error,
        /// credentials and secret values masked.
        #[arg(long)]
        trace_http: bool,
        /// Write each HTTP exchange into DIR as a fixture (`0001.json`, ...; numbering goes
        /// on after files already there), for `plugin test --fixtures` and the SDK test kit.
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Context, command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Build {
            crate_dir,
            target_dir,
        } => {
            let options = BuildOptions {
                target_dir,
                ..BuildOptions::default()
            };
            let built = build_plugin(&crate_dir, &options, &mut |line| eprintln!("{line}"))?;
            eprintln!("built {} bytes via {:?}", built.size_bytes, built.route);
            println!("{}", built.component_path.display());
        }
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk_path,
        } => {
            let kind = match kind.as_str() {
                "social" => PluginKind::Social,
                "helpdesk" => PluginKind::Helpdesk,
                other => bail!("--kind `{other}`: expected `social` or `helpdesk`"),
            };
            let sdk_path = match sdk_path {
                Some(path) => path,
                None => scaffold::default_sdk_path().context(
                    "the plugin SDK of the checkout this binary was built from is gone; pass                      --sdk-path with a `plugin-sdk` directory",
                )?,
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold::write(&scaffold::NewPlugin {
                name: name.clone(),
                kind,
                dir: dir.clone(),
                sdk_path,
            })?;
            println!(
                "wrote the {} plugin `{name}` in {}\nnext: switchboard plugin build {}; cargo test; \
                 switchboard plugin test <component> --fixtures {}/fixtures -s api_token=test-token",
                kind.as_str(),
                dir.display(),
                dir.display(),
                dir.display()
            );
        }
        PluginCommand::Test {
            component,
            settings,
            fixtures,
            webhook_delivery,
            webhook_handshake,
            thread,
            run_id,
            max_pages,
            read_only,
            json,
            trace_http,
            oauth_token,
            oauth_extras,
        } => {
            let read_sample = |path: &Option<PathBuf>| -> anyhow::Result<Option<WebhookSample>> {
                path.as_ref()
                    .map(|path| {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        serde_json::from_str(&text).with_context(|| {
                            format!(
                                "{}: expected a webhook request as JSON {{method, path, query, \
                                 headers: [[name, value]], body}}",
                                path.display()
                            )
                        })
                    })
                    .transpose()
            };
            let options = acceptance::Options {
                webhook_delivery: read_sample(&webhook_delivery)?,
                webhook_handshake: read_sample(&webhook_handshake)?,
                thread_id: thread,
                run_id: run_id.unwrap_or_else(|| match &fixtures {
                    Some(_) => "fixture".into(),
                    None => crate::acceptance::run_id(),
                }),
                max_pages,
                read_only,
            };
            let mut tap = DevTap::new();
            if trace_http {
                tap = tap.with_trace();
            }
            if let Some(dir) = &fixtures {
                tap = tap.with_replay(crate::exchange::read_fixtures(dir)?);
            }
            let tap = std::sync::Arc::new(tap);
            let mut runtime = ctx.runtime()?;
            runtime.set_http_tap(tap.clone());
            let plugin = load_file(&runtime, &component).await?;
            let mut installation = Installation {
                id: "plugin-test".into(),
                settings: settings.read()?,
                approved_hosts: plugin.manifest().requested_origins(),
                limits: None,
                token_source: None,
                meter: None,
            };
            installation.token_source = token_source(oauth_token, &oauth_extras)?;
            let report = acceptance::run(&runtime, &plugin, &installation, tap, &options).await;
            if json {
                print_json(&report)?;
            } else {
                println!("{report}");
            }
            return Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        PluginCommand::Inspect { file } => {
            let runtime = ctx.runtime()?;
            let plugin = load_file(&runtime, &file).await?;
            print_json(&PluginInfo::of(&plugin))?;
        }
        PluginCommand::Install {
            file,
            approve,
            replace,
            dev,
        } => {
            if replace && !dev {
                bail!(
                    "--replace swaps the component of an installed version without a version \
                     bump, which is for development only: add --dev to confirm this is a \
                     development hub, or give the build a new version"
                );
            }
            install(ctx, &file, approve, replace).await?
        }
        PluginCommand::History { plugin_id, json } => {
            let history = ctx.db().await?.plugin_history(&plugin_id).await?;
            if json {
                print_json(&history)?;
            } else if history.is_empty() {
                println!("no history for {plugin_id}: it was never installed here");
            } else {
                for entry in history {
                    let from = entry
                        .old_sha256
                        .as_deref()
                        .map(|old| format!("{} -> ", &old[..old.len().min(12)]))
                        .unwrap_or_default();
                    println!(
                        "{}  {:<10} {:<13} {from}{}",
                        entry.at,
                        entry.version,
                        entry.event,
                        &entry.new_sha256[..entry.new_sha256.len().min(12)]
                    );
                }
            }
        }
        PluginCommand::List { json } => {
            let plugins = ctx.db().await?.list_plugins().await?;
            if json {
                print_json(&plugins)?;
            } else if plugins.is_empty() {
                println!("no plugins installed");
            } else {
                for p in plugins {
                    let marker = if p.active { "*" } else { " " };
                    println!(
                        "{marker} {:<20} {:<10} {:<8} {}",
                        p.plugin_id,
                        p.version,
                        p.kind,
                        &p.sha256[..12]
                    );
                }
            }
        }
        PluginCommand::Activate { plugin_id, version } => {
            ctx.db()
                .await?
                .activate_plugin(&plugin_id, &version)
                .await?;
            println!("{plugin_id} {version} is now active");
        }
        PluginCommand::Remove { plugin_id, version } => {
            let removed = ctx
                .db()
                .await?
                .remove_plugin(&plugin_id, version.as_deref())
                .await?;
            println!("removed {removed} version(s) of {plugin_id}");
        }
        PluginCommand::Exec {
            plugin,
            operation,
            settings,
            input,
            stream,
            cursor,
            ticket_id,
            deadline_ms,
            oauth_token,
            oauth_extras,
            trace_http,
            record,
        } => {
            let values = settings.read()?;
            let mut runtime = ctx.runtime()?;
            let mut tap = DevTap::new();
            if trace_http {
                tap = tap.with_trace();
            }
            if let Some(dir) = &record {
                tap = tap.with_recording(dir)?;
            }
            let tap = std::sync::Arc::new(tap);
            if trace_http || record.is_some() {
                runtime.set_http_tap(tap.clone());
            }
            let (loaded, approved_hosts) = resolve_plugin(ctx, &runtime, &plugin).await?;
            let mut installation = Installation {
                id: "exec".into(),
                settings: values,
                approved_hosts,
                limits: None,
                token_source: None,
                meter: None,
            };
            installation.token_source = token_source(oauth_token, &oauth_extras)?;
            if let Some(ms) = deadline_ms {
                let mut limits = runtime.config().default_limits;
                limits.deadline = std::time::Duration::from_millis(ms);
                installation.limits = Some(limits);
            }
            let request = ExecRequest {
                operation: &operation,
                input: input.as_deref(),
                stream,
                cursor,
                ticket_id,
            };
            let body_limit = ctx.config()?.webhook_body_limit;
            let code = exec(&runtime, &loaded, &installation, request, body_limit).await?;
            if let Some(error) = tap.recording_error() {
                bail!("recording the exchanges failed: {error}");
            }
            if let Some(dir) = &record {
                eprintln!("recorded the HTTP exchanges in {}", dir.display());
            }
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A fixed OAuth2 token (and token-response fields) for `exec` and `test`.
fn token_source(
    token: Option<String>,
    extras: &[String],
) -> anyhow::Result<Option<std::sync::Arc<dyn crate::runtime::TokenSource>>> {
    let Some(token) = token else {
        return Ok(None);
    };
    let mut source = crate::runtime::StaticToken::new(token);
    for pair in extras {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--oauth-extra `{pair}`: expected NAME=VALUE"))?;
        source = source.with_extra(name, value);
    }
    Ok(Some(std::sync::Arc::new(source)))
}

/// What `inspect` prints: the manifest plus what the host knows about the component.
#[derive(Debug, Serialize)]
struct PluginInfo<'a> {
    #[serde(flatten)]
    manifest: &'a PluginManifest,
    contract: &'static str,
    sha256: &'a str,
}

impl<'a> PluginInfo<'a> {
    fn of(plugin: &'a Plugin) -> Self {
        Self {
            manifest: plugin.manifest(),
            contract: plugin.contract().package(),
            sha256: plugin.sha256(),
        }
    }
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn load_file(runtime: &Runtime, file: &Path) -> anyhow::Result<Plugin> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (plugin, _) = runtime
        .load(&wasm)
        .await
        .with_context(|| format!("{} was refused", file.display()))?;
    Ok(plugin)
}

async fn install(ctx: &Context, file: &Path, approve: bool, replace: bool) -> anyhow::Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = ctx.runtime()?;
    let (plugin, _) = runtime
        .load(&wasm)
        .await
        .with_context(|| format!("{} was refused", file.display()))?;
    let manifest = plugin.manifest();
    println!(
        "{} {} ({} plugin, {})",
        manifest.id,
        manifest.version,
        manifest.kind.as_str(),
        plugin.contract().package()
    );
    println!("sha256 {}", plugin.sha256());
    for line in capability_lines(manifest) {
        println!("{line}");
    }
    if !approve {
        if !std::io::stdin().is_terminal() {
            bail!("capabilities not approved: pass --approve to approve them non-interactively");
        }
        print!("Approve these capabilities and install? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not installed: capabilities were not approved");
        }
    }
    let approved = manifest.requested_origins();
    let db = ctx.db().await?;
    if replace {
        let replaced = db
            .replace_plugin_dev(NewPlugin {
                manifest,
                contract: plugin.contract().package(),
                sha256: plugin.sha256(),
                approved_hosts: &approved,
                wasm: &wasm,
            })
            .await?;
        match replaced {
            Some(old) => println!(
                "replaced {} {} (development): {} -> {}; recorded in `switchboard plugin history {}`",
                manifest.id,
                manifest.version,
                &old[..old.len().min(12)],
                &plugin.sha256()[..12],
                manifest.id
            ),
            None => println!(
                "{} {} is already this build; nothing replaced",
                manifest.id, manifest.version
            ),
        }
        return Ok(());
    }
    let outcome = db
        .install_plugin(NewPlugin {
            manifest,
            contract: plugin.contract().package(),
            sha256: plugin.sha256(),
            approved_hosts: &approved,
            wasm: &wasm,
        })
        .await?;
    if outcome == InstallOutcome::AlreadyInstalled {
        // What was just shown and approved replaces the earlier approval.
        db.reapprove_plugin(manifest, plugin.sha256(), &approved)
            .await?;
    }
    match outcome {
        InstallOutcome::InstalledActive => println!("installed {} {} (active)", manifest.id, manifest.version),
        InstallOutcome::InstalledInactive => println!(
            "installed {id} {v}; the active version is unchanged: run `switchboard plugin activate {id} {v}` to switch",
            id = manifest.id,
            v = manifest.version
        ),
        InstallOutcome::AlreadyInstalled => println!(
            "{} {} is already installed; its manifest and hosts are approved again",
            manifest.id, manifest.version
        ),
    }
    Ok(())
}

/// What a plugin asks for, in plain words, for the admin to approve at install.
fn capability_lines(manifest: &PluginManifest) -> Vec<String> {
    let mut lines = vec!["It requests outbound HTTP to:".to_string()];
    if manifest.capabilities.http_hosts.is_empty() {
        lines.push("  (nothing)".into());
    }
    for host in &manifest.capabilities.http_hosts {
        lines.push(format!("  {host}"));
    }
    if let Some(spec) = &manifest.oauth2 {
        lines.push(
            "It runs OAuth2 through the host, which sends the client secret and tokens to:".into(),
        );
        lines.push(format!("  token URL      {}", spec.token_url));
        if !spec.authorize_url.trim().is_empty() {
            lines.push(format!(
                "  authorize URL  {} (the admin's browser goes there)",
                spec.authorize_url
            ));
        }
        lines.push(format!(
            "  so these origins are approved too: {}",
            manifest.oauth_origins().join(", ")
        ));
    }
    let rules = &manifest.capabilities.credentials;
    if !rules.is_empty() {
        lines.push("The host adds credentials from the installation's settings:".into());
    }
    for rule in rules.iter().filter(|r| r.host_pattern != PLUGIN_ITSELF) {
        let what = match &rule.placement {
            CredentialPlacement::Basic { username, password } => {
                format!("HTTP Basic auth, user {username}, password {password}")
            }
            CredentialPlacement::Bearer { token } => format!("a bearer token {token}"),
            CredentialPlacement::Header { name, value } => format!("the header {name}: {value}"),
            CredentialPlacement::Query { name, value } => {
                format!("the query parameter {name}={value}")
            }
            CredentialPlacement::PathPrefix { prefix } => format!("the path prefix {prefix}"),
        };
        lines.push(format!("  to requests to {}: {what}", rule.host_pattern));
    }
    let visible = manifest.plugin_visible_secrets();
    if !visible.is_empty() {
        lines.push(format!(
            "The plugin itself sees these secret settings (to check webhook signatures): {}",
            visible.join(", ")
        ));
    }
    lines
}

/// A `.wasm` path is loaded from disk with its requested hosts approved for the run; anything
/// else names an installed plugin, which keeps the admin's approvals.
async fn resolve_plugin(
    ctx: &Context,
    runtime: &Runtime,
    spec: &str,
) -> anyhow::Result<(Plugin, Vec<String>)> {
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "wasm") || path.is_file() {
        let plugin = load_file(runtime, path).await?;
        let hosts = plugin.manifest().requested_origins();
        return Ok((plugin, hosts));
    }
    let (id, version) = match spec.split_once('@') {
        Some((id, version)) => (id, Some(version)),
        None => (spec, None),
    };
    let (record, wasm) = ctx.db().await?.load_plugin(id, version).await?;
    let (plugin, _) = runtime
        .load(&wasm)
        .await
        .with_context(|| format!("installed plugin {id} failed to load"))?;
    if let Some(changed) = crate::manifest::differences(&record.manifest, plugin.manifest()) {
        bail!(
            "installed plugin {id} {} is refused: its component now describes a manifest that \
             differs from the one an admin approved ({changed}); approve it again with \
             `switchboard plugin install --approve`",
            record.version
        );
    }
    Ok((plugin, record.approved_hosts))
}

/// Most bytes of `--input` for operations other than `handle-webhook`.
const MAX_INPUT_BYTES: usize = 16 << 20;

/// Most bytes of a `handle-webhook` `--input`: the body may be escaped in the JSON
/// (`\u00e9` is 6 bytes for 2), plus room for the headers.
fn input_limit(body_limit: usize) -> usize {
    body_limit.saturating_mul(6).saturating_add(1 << 20)
}

struct ExecRequest<'a> {
    operation: &'a str,
    input: Option<&'a str>,
    stream: Option<String>,
    cursor: Option<String>,
    ticket_id: Option<String>,
}

impl ExecRequest<'_> {
    fn input<T: for<'de> Deserialize<'de>>(&self) -> anyhow::Result<T> {
        self.input_within(MAX_INPUT_BYTES)
    }

    /// `--input`, refused when longer than `max` bytes.
    fn input_within<T: for<'de> Deserialize<'de>>(&self, max: usize) -> anyhow::Result<T> {
        let raw = self
            .input
            .with_context(|| format!("`{}` needs --input JSON (or @FILE)", self.operation))?;
        let text = match raw.strip_prefix('@') {
            Some(path) => {
                let size = std::fs::metadata(path)
                    .with_context(|| format!("reading {path}"))?
                    .len();
                if size > max as u64 {
                    bail!(
                        "--input {path} is {size} bytes, over the limit of {max} for `{}`",
                        self.operation
                    );
                }
                std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
            }
            None if raw.len() > max => bail!(
                "--input is {} bytes, over the limit of {max} for `{}`",
                raw.len(),
                self.operation
            ),
            None => raw.to_string(),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "--input for `{}` does not match the contract",
                self.operation
            )
        })
    }

    fn stream(&self, manifest: &PluginManifest) -> anyhow::Result<String> {
        match (&self.stream, manifest.streams.first()) {
            (Some(stream), _) => Ok(stream.clone()),
            (None, Some(first)) => Ok(first.name.clone()),
            (None, None) => bail!("the plugin declares no streams; pass --stream"),
        }
    }

    /// The webhook request from `--input`, refused over the hub's webhook body limit as the
    /// server would refuse it.
    fn webhook(&self, body_limit: usize) -> anyhow::Result<WebhookRequest> {
        let input: WebhookInput = self.input_within(input_limit(body_limit))?;
        if input.body.len() > body_limit {
            bail!(
                "the webhook body is {} bytes, over the hub's webhook body limit of {body_limit} \
                 (`webhook_body_limit`); the hub would answer 413",
                input.body.len()
            );
        }
        Ok(WebhookRequest {
            method: input.method,
            path: input.path,
            query: input.query,
            headers: input
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body: input.body.into_bytes(),
        })
    }
}

/// A webhook request for `exec`, with the body as text for convenience.
#[derive(Debug, Deserialize)]
struct WebhookInput {
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

fn post() -> String {
    "POST".into()
}

async fn exec(
    runtime: &Runtime,
    plugin: &Plugin,
    installation: &Installation,
    req: ExecRequest<'_>,
    body_limit: usize,
) -> anyhow::Result<ExitCode> {
    let manifest = plugin.manifest();
    if req.operation == "describe" {
        print_json(&PluginInfo::of(plugin))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (result, logs): (Result<serde_json::Value, CallError>, _) = match plugin.kind() {
        PluginKind::Social => {
            let conn = runtime.social(plugin, installation)?.capture_logs();
            let result = match req.operation {
                "poll" => to_json(conn.poll(&req.stream(manifest)?, req.cursor.as_deref()).await),
                "send" => to_json(conn.send(&req.input()?).await),
                "handle-webhook" => webhook_json(
                    conn.handle_webhook(req.webhook(body_limit)?).await,
                    |o| &mut o.response,
                ),
                other => bail!("unknown operation `{other}` for a social plugin (describe, poll, send, handle-webhook)"),
            };
            (result?, conn.take_logs())
        }
        PluginKind::Helpdesk => {
            let conn = runtime.helpdesk(plugin, installation)?.capture_logs();
            let result = match req.operation {
                "find-or-create-requester" => to_json(conn.find_or_create_requester(&req.input()?).await),
                "create-ticket" => to_json(conn.create_ticket(&req.input()?).await),
                "add-comment" => to_json(conn.add_comment(&req.input()?).await),
                "update-ticket" => to_json(conn.update_ticket(&req.input()?).await),
                "get-ticket" => {
                    let id = req.ticket_id.as_deref().context("`get-ticket` needs --ticket-id")?;
                    to_json(conn.get_ticket(id).await)
                }
                "poll-changes" => to_json(conn.poll_changes(&req.stream(manifest)?, req.cursor.as_deref()).await),
                "handle-webhook" => webhook_json(
                    conn.handle_webhook(req.webhook(body_limit)?).await,
                    |o| &mut o.response,
                ),
                other => bail!(
                    "unknown operation `{other}` for a helpdesk plugin (describe, find-or-create-requester, \
                     create-ticket, add-comment, update-ticket, get-ticket, poll-changes, handle-webhook)"
                ),
            };
            (result?, conn.take_logs())
        }
    };
    for line in logs {
        let fields: String = line
            .fields
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect();
        eprintln!("[plugin {}] {}{}", line.level, line.message, fields);
    }
    match result {
        Ok(value) => {
            print_json(&value)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if let CallError::Connector(typed) = &error {
                print_json(&serde_json::json!({ "error": typed }))?;
            }
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
    }
}

/// A webhook outcome as JSON, with the answer's body as text (or base64 when it is not
/// UTF-8) rather than as an array of numbers, which took gigabytes for a large body.
fn webhook_json<T: Serialize>(
    result: Result<T, CallError>,
    response: impl FnOnce(&mut T) -> &mut WebhookResponse,
) -> anyhow::Result<Result<serde_json::Value, CallError>> {
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => return Ok(Err(error)),
    };
    let body = std::mem::take(&mut response(&mut outcome).body);
    let mut value = serde_json::to_value(&outcome)?;
    let (key, text) = match String::from_utf8(body) {
        Ok(text) => ("body", text),
        Err(raw) => {
            use base64::Engine as _;
            (
                "body_base64",
                base64::engine::general_purpose::STANDARD.encode(raw.into_bytes()),
            )
        }
    };
    if let Some(answer) = value.get_mut("response").and_then(|r| r.as_object_mut()) {
        answer.remove("body");
        answer.insert(key.to_string(), serde_json::Value::String(text));
    }
    Ok(Ok(value))
}

fn to_json<T: Serialize>(
    result: Result<T, CallError>,
) -> anyhow::Result<Result<serde_json::Value, CallError>> {
    Ok(match result {
        Ok(value) => Ok(serde_json::to_value(value)?),
        Err(error) => Err(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Capabilities, CredentialRule, OAuth2Spec, SettingSpec};

    #[test]
    fn install_shows_capabilities_in_plain_words() {
        let secret = |key: &str| SettingSpec {
            key: key.into(),
            label: key.into(),
            description: String::new(),
            secret: true,
            required: false,
            default: None,
        };
        let manifest = PluginManifest {
            id: "acme".into(),
            name: "Acme".into(),
            version: "1.0.0".into(),
            kind: PluginKind::Helpdesk,
            description: String::new(),
            settings: vec![secret("api_key"), secret("webhook_secret")],
            capabilities: Capabilities {
                http_hosts: vec!["https://{domain}.acme.com".into()],
                credentials: vec![
                    CredentialRule {
                        host_pattern: "https://{domain}.acme.com".into(),
                        placement: CredentialPlacement::Basic {
                            username: "{api_key}".into(),
                            password: "X".into(),
                        },
                    },
                    CredentialRule {
                        host_pattern: PLUGIN_ITSELF.into(),
                        placement: CredentialPlacement::Header {
                            name: "webhook_secret".into(),
                            value: "{webhook_secret}".into(),
                        },
                    },
                ],
            },
            streams: vec![],
            accepts_webhooks: true,
            text_limits: vec![],
            reply_windows: vec![],
            oauth2: Some(OAuth2Spec {
                authorize_url: "{login_url}/authorize".into(),
                token_url: "{login_url}/token".into(),
                scopes: vec![],
                flows: vec!["authorization-code-pkce".into()],
            }),
            channel: None,
            billable_kinds: vec![],
        };
        let shown = capability_lines(&manifest).join("\n");
        assert!(
            shown.contains(
                "to requests to https://{domain}.acme.com: HTTP Basic auth, user {api_key}, password X"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("token URL      {login_url}/token"),
            "{shown}"
        );
        assert!(shown.contains("approved too: {login_url}"), "{shown}");
        assert!(shown.contains("secret settings (to check webhook signatures): webhook_secret"));
        // No Rust debug output: `Basic { username: .. }`.
        assert!(
            !shown.contains("Basic {") && !shown.contains("username:"),
            "{shown}"
        );
    }
}
