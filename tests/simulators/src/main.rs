//! `switchboard-simulators`: serves the vendor simulators over HTTP for the demo and for
//! manual testing.
//!
//! ```text
//! switchboard-simulators --telegram-addr 127.0.0.1:8081 --zendesk-addr 127.0.0.1:8082
//! ```
//!
//! Each simulator that is given an address prints one line with its base URL once it is
//! listening (`telegram simulator listening on http://127.0.0.1:8081`), so scripts can wait
//! for it. The process runs until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use clap::{ArgGroup, Parser};
use switchboard_simulators::{telegram, zendesk};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "In-memory simulators of the Telegram Bot API and the Zendesk Support API",
    group(ArgGroup::new("simulators").required(true).multiple(true).args(["telegram_addr", "zendesk_addr"]))
)]
struct Args {
    /// Serve the Telegram Bot API simulator here (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_SIM_TELEGRAM_ADDR")]
    telegram_addr: Option<SocketAddr>,

    /// The bot token Telegram clients must put in the path (`/bot<token>/getMe`); the bot id
    /// is taken from its `<id>:` prefix.
    #[arg(long, env = "SWITCHBOARD_SIM_TELEGRAM_TOKEN")]
    telegram_token: Option<String>,

    /// The simulated bot's username, without `@`.
    #[arg(long, env = "SWITCHBOARD_SIM_TELEGRAM_BOT_USERNAME")]
    telegram_bot_username: Option<String>,

    /// Refuse a second message to one chat within this many milliseconds (429), like
    /// Telegram's ~1 message/second per chat. Off by default.
    #[arg(long, env = "SWITCHBOARD_SIM_TELEGRAM_PER_CHAT_INTERVAL_MS")]
    telegram_per_chat_interval_ms: Option<u64>,

    /// Serve the Zendesk Support API simulator here (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_SIM_ZENDESK_ADDR")]
    zendesk_addr: Option<SocketAddr>,

    /// The Zendesk subdomain (`<subdomain>.zendesk.com` in real URLs).
    #[arg(long, env = "SWITCHBOARD_SIM_ZENDESK_SUBDOMAIN")]
    zendesk_subdomain: Option<String>,

    /// The agent email of the API-token credentials (`<email>/token:<api token>`).
    #[arg(long, env = "SWITCHBOARD_SIM_ZENDESK_EMAIL")]
    zendesk_email: Option<String>,

    /// The Zendesk API token.
    #[arg(long, env = "SWITCHBOARD_SIM_ZENDESK_API_TOKEN")]
    zendesk_api_token: Option<String>,

    /// Drop Zendesk's 60 s export window and export rate limit (demo and scripted runs).
    #[arg(long, env = "SWITCHBOARD_SIM_ZENDESK_RELAXED")]
    zendesk_relaxed: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut servers: Vec<(&str, JoinHandle<()>)> = Vec::new();
    if let Some(addr) = args.telegram_addr {
        let mut config = match &args.telegram_token {
            Some(token) => telegram::Config::for_token(token.clone()),
            None => telegram::Config::default(),
        };
        if let Some(username) = &args.telegram_bot_username {
            config.bot_username = username.trim_start_matches('@').to_string();
        }
        config.per_chat_interval = args
            .telegram_per_chat_interval_ms
            .map(std::time::Duration::from_millis);
        let token = config.bot_token.clone();
        let (bound, handle) = telegram::Simulator::new(config)
            .serve(addr)
            .await
            .context("starting the Telegram simulator")?;
        tracing::info!(bot_token = %token, "telegram simulator ready");
        println!("telegram simulator listening on http://{bound}");
        servers.push(("telegram", handle));
    }
    if let Some(addr) = args.zendesk_addr {
        let mut config = zendesk::Config::default();
        if args.zendesk_relaxed {
            config = config.relaxed();
        }
        if let Some(subdomain) = args.zendesk_subdomain {
            config.subdomain = subdomain;
        }
        if let Some(email) = args.zendesk_email {
            config.agent_email = email;
        }
        if let Some(api_token) = args.zendesk_api_token {
            config.api_token = api_token;
        }
        tracing::info!(subdomain = %config.subdomain, agent_email = %config.agent_email, "zendesk simulator ready");
        let (bound, handle) = zendesk::Simulator::new(config)
            .serve(addr)
            .await
            .context("starting the Zendesk simulator")?;
        println!("zendesk simulator listening on http://{bound}");
        servers.push(("zendesk", handle));
    }

    // Run until Ctrl-C, or until a server dies (it logged why).
    let mut running = JoinSet::new();
    for (name, handle) in servers {
        running.spawn(async move {
            let _ = handle.await;
            name
        });
    }
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        Some(stopped) = running.join_next() => {
            let name = stopped.unwrap_or("a");
            bail!("the {name} simulator stopped unexpectedly");
        }
    }
    Ok(())
}
