//! The `switchboard` command line. Commands parse arguments, call into the library, and print;
//! they hold no logic of their own.

mod plugin;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::Db;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Sync social conversations with helpdesk tickets"
)]
pub struct Cli {
    /// Where the database, compiled plugins and other state live.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_DATA_DIR",
        default_value = "switchboard-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL; defaults to a SQLite file in the data dir.
    #[arg(long, global = true, env = "SWITCHBOARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SWITCHBOARD_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect, install and try connector plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Logs go to stderr so command output on stdout stays machine-readable. `RUST_LOG` filters.
pub fn init_tracing(cli: &Cli) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,switchboard=info,plugin=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugin(command) => {
            plugin::run(
                &Context {
                    data_dir: cli.data_dir,
                    database_url: cli.database_url,
                },
                command,
            )
            .await
        }
    }
}

/// What every command may need, opened lazily.
pub(crate) struct Context {
    data_dir: PathBuf,
    database_url: Option<String>,
}

impl Context {
    pub(crate) async fn db(&self) -> anyhow::Result<Db> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir)?;
                format!(
                    "sqlite://{}",
                    self.data_dir.join("switchboard.db").display()
                )
            }
        };
        Ok(Db::connect(&url).await?)
    }

    pub(crate) fn runtime(&self) -> anyhow::Result<Runtime> {
        Runtime::new(RuntimeConfig::new(
            self.data_dir.join("cache").join("components"),
        ))
    }
}
