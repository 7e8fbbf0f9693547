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
use switchboard_simulators::kit::control::set;
use switchboard_simulators::kit::Served;
use switchboard_simulators::{freshdesk, meta, salesforce, telegram, zendesk};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "In-memory simulators of the Telegram Bot API, the Zendesk Support API and the Freshdesk API",
    group(ArgGroup::new("simulators").required(true).multiple(true).args(["telegram_addr", "zendesk_addr", "freshdesk_addr", "salesforce_addr", "meta_addr"]))
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

    /// Serve the Freshdesk API simulator here (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_SIM_FRESHDESK_ADDR")]
    freshdesk_addr: Option<SocketAddr>,

    /// The Freshdesk domain (`<domain>.freshdesk.com` in real URLs).
    #[arg(long, env = "SWITCHBOARD_SIM_FRESHDESK_DOMAIN")]
    freshdesk_domain: Option<String>,

    /// The API key of the integration's agent (Basic auth `<api key>:X`).
    #[arg(long, env = "SWITCHBOARD_SIM_FRESHDESK_API_KEY")]
    freshdesk_api_key: Option<String>,

    /// Serve the Salesforce Service Cloud simulator (OAuth + REST) here (port 0 picks a free
    /// port).
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_ADDR")]
    salesforce_addr: Option<SocketAddr>,

    /// The connected app's consumer key (`client_id`).
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_CONSUMER_KEY")]
    salesforce_consumer_key: Option<String>,

    /// The connected app's consumer secret.
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_CONSUMER_SECRET")]
    salesforce_consumer_secret: Option<String>,

    /// Username of the integration user (the JWT bearer flow's `sub`).
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_USERNAME")]
    salesforce_username: Option<String>,

    /// Access token lifetime in seconds (Salesforce: the 2 h session timeout).
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_TOKEN_LIFETIME_SECS")]
    salesforce_token_lifetime_secs: Option<u64>,

    /// Rotate refresh tokens on every refresh.
    #[arg(long, env = "SWITCHBOARD_SIM_SALESFORCE_ROTATE_REFRESH_TOKENS")]
    salesforce_rotate_refresh_tokens: bool,

    /// Serve the Meta Graph API simulator (Messenger, Page comments, Instagram, WhatsApp) here
    /// (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_SIM_META_ADDR")]
    meta_addr: Option<SocketAddr>,

    /// The Meta app secret webhooks are signed with (`X-Hub-Signature-256`).
    #[arg(long, env = "SWITCHBOARD_SIM_META_APP_SECRET")]
    meta_app_secret: Option<String>,

    /// The Page access token Graph clients must present.
    #[arg(long, env = "SWITCHBOARD_SIM_META_PAGE_TOKEN")]
    meta_page_token: Option<String>,
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

    let mut servers: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
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
        let served = telegram::Simulator::new(config).serve(addr).await;
        started(&mut servers, "telegram", "Telegram", served)?;
        tracing::info!(bot_token = %token, "telegram simulator ready");
    }
    if let Some(addr) = args.zendesk_addr {
        let mut config = zendesk::Config::default();
        if args.zendesk_relaxed {
            config = config.relaxed();
        }
        set(&mut config.subdomain, args.zendesk_subdomain);
        set(&mut config.agent_email, args.zendesk_email);
        set(&mut config.api_token, args.zendesk_api_token);
        tracing::info!(subdomain = %config.subdomain, agent_email = %config.agent_email, "zendesk simulator ready");
        let served = zendesk::Simulator::new(config).serve(addr).await;
        started(&mut servers, "zendesk", "Zendesk", served)?;
    }

    if let Some(addr) = args.freshdesk_addr {
        let mut config = freshdesk::Config::default();
        set(&mut config.domain, args.freshdesk_domain);
        set(&mut config.api_key, args.freshdesk_api_key);
        tracing::info!(domain = %config.domain, "freshdesk simulator ready");
        let served = freshdesk::Simulator::new(config).serve(addr).await;
        started(&mut servers, "freshdesk", "Freshdesk", served)?;
    }

    if let Some(addr) = args.salesforce_addr {
        let mut config = salesforce::Config::default();
        set(&mut config.consumer_key, args.salesforce_consumer_key);
        set(&mut config.consumer_secret, args.salesforce_consumer_secret);
        set(&mut config.integration_username, args.salesforce_username);
        if let Some(secs) = args.salesforce_token_lifetime_secs {
            config.access_token_lifetime = std::time::Duration::from_secs(secs);
        }
        config.rotate_refresh_tokens = args.salesforce_rotate_refresh_tokens;
        tracing::info!(consumer_key = %config.consumer_key, username = %config.integration_username, "salesforce simulator ready");
        let served = salesforce::Simulator::new(config).serve(addr).await;
        started(&mut servers, "salesforce", "Salesforce", served)?;
    }

    if let Some(addr) = args.meta_addr {
        let mut config = meta::Config::default();
        set(&mut config.app_secret, args.meta_app_secret);
        set(&mut config.page_access_token, args.meta_page_token);
        tracing::info!(page_id = %config.page_id, app_id = %config.app_id, "meta simulator ready");
        let served = meta::Simulator::new(config).serve(addr).await;
        started(&mut servers, "meta", "Meta", served)?;
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

/// Notes a simulator that started (its address on stdout, for scripts), or says which one
/// failed to.
fn started(
    servers: &mut Vec<(&'static str, JoinHandle<()>)>,
    name: &'static str,
    vendor: &str,
    served: anyhow::Result<Served>,
) -> anyhow::Result<()> {
    let (bound, handle) = served.with_context(|| format!("starting the {vendor} simulator"))?;
    println!("{name} simulator listening on http://{bound}");
    servers.push((name, handle));
    Ok(())
}
