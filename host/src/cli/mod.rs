//! The `switchboard` command line. Commands parse arguments, call into the library, and print;
//! they hold no logic of their own.

mod admin;
pub mod demo;
mod plugin;
mod serve;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;
use crate::config::{Config, Overrides};
use crate::hub::Hub;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::Db;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Sync social conversations with helpdesk tickets"
)]
pub struct Cli {
    /// TOML config file [env: SWITCHBOARD_CONFIG] [default: <data-dir>/switchboard.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database, compiled plugins and other state live
    /// [env: SWITCHBOARD_DATA_DIR] [default: switchboard-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [env: SWITCHBOARD_DATABASE_URL] [default: a SQLite file in the data dir]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log output format [env: SWITCHBOARD_LOG_FORMAT] [default: human]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The flags that override the config file and the environment.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            listen: None,
            log_format: self.log_format,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect, install and try connector plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the hub: the HTTP server (webhooks, admin API, metrics), the scheduler and the
    /// outbox workers.
    Serve(serve::ServeArgs),
    /// Create, inspect, test, enable and disable installations.
    Installation(admin::InstallationArgs),
    /// Link a social installation to a helpdesk installation.
    Link(admin::LinkArgs),
    /// List, run, pause and reschedule poll jobs.
    Job(admin::JobArgs),
    /// List, retry and discard deliveries that failed for good.
    DeadLetter(admin::DeadLetterArgs),
    /// List conversations and show one with its tickets and messages.
    Conversation(admin::ConversationArgs),
    /// Play a scripted conversation through the hub and the Telegram and Zendesk simulators.
    Demo(demo::DemoArgs),
}

/// Logs go to stderr so command output on stdout stays machine-readable. `RUST_LOG` filters.
pub fn init_tracing(cli: &Cli) {
    // The demo prints its own transcript on stdout; the hub it runs logs only problems.
    let default = match cli.command {
        Command::Demo(_) => "warn",
        _ => "warn,switchboard=info,plugin=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match Config::log_format_hint(&cli.overrides()) {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context {
        overrides: cli.overrides(),
    };
    match cli.command {
        Command::Plugin(command) => plugin::run(&ctx, command).await,
        Command::Serve(args) => serve::run(&ctx, args).await,
        Command::Installation(args) => admin::installation(&ctx, args).await,
        Command::Link(args) => admin::link(&ctx, args).await,
        Command::Job(args) => admin::job(&ctx, args).await,
        Command::DeadLetter(args) => admin::dead_letter(&ctx, args).await,
        Command::Conversation(args) => admin::conversation(&ctx, args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}

/// What every command may need, opened lazily: the configuration (flags over the environment
/// over the config file), the database, the plugin runtime, the hub.
pub(crate) struct Context {
    overrides: Overrides,
}

impl Context {
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.overrides)?)
    }

    pub(crate) async fn db(&self) -> anyhow::Result<Db> {
        let config = self.config()?;
        crate::config::create_data_dir(&config.data_dir)?;
        Ok(Db::connect(&config.database_url).await?)
    }

    pub(crate) fn runtime(&self) -> anyhow::Result<Runtime> {
        let config = self.config()?;
        let mut runtime = RuntimeConfig::new(config.data_dir.join("cache").join("components"));
        runtime.network = config.network;
        Runtime::new(runtime)
    }

    /// The hub on the configured database, without its workers: what the admin commands use.
    pub(crate) async fn hub(&self) -> anyhow::Result<Hub> {
        let config = self.config()?;
        crate::config::create_data_dir(&config.data_dir)?;
        Hub::open(config.hub_config()?).await
    }
}
