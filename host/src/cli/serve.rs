//! `switchboard serve`: the hub's long-running process.
//!
//! Opens the hub on the configured database, starts its workers (scheduler, inbound processing,
//! outbox delivery), and serves HTTP until SIGINT or SIGTERM. On the first signal it stops
//! accepting connections, lets in-flight requests finish and the workers wind down; a second
//! signal exits at once.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::{Config, Overrides, TokenSource};
use crate::hub::Hub;
use crate::server::{self, AppState, ServerOptions};

/// How long the workers get to finish their current step after shutdown was asked for.
const WORKER_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT; port 0 picks a free one
    /// [env: SWITCHBOARD_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub async fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&Overrides {
        listen: args.listen,
        ..ctx.overrides.clone()
    })?;
    match &config.file {
        Some(path) => tracing::info!(file = %path.display(), "configuration loaded"),
        None => tracing::info!("no config file; using the environment and defaults"),
    }
    crate::config::create_data_dir(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;

    let (admin_token, source) = config.admin_token()?;
    // Where the token is, never the token itself: logs are often shipped elsewhere.
    match source {
        TokenSource::Configured => tracing::info!("admin API token from the configuration"),
        TokenSource::File(path) => {
            tracing::info!(file = %path.display(), "admin API token read from file")
        }
        TokenSource::Generated(path) => {
            tracing::warn!(file = %path.display(), "no admin token configured: generated one into this file (mode 0600)")
        }
    }

    let hub = Hub::open(config.hub_config()?)
        .await
        .context("opening the hub")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;

    let shutdown = CancellationToken::new();
    let mut workers = hub.start_workers(shutdown.clone());
    tokio::spawn(watch_signals(shutdown.clone()));

    let options = ServerOptions {
        webhook_body_limit: config.webhook_body_limit,
        request_timeout: config.request_timeout,
    };
    let app = server::router(AppState::new(hub, &admin_token), &options);

    // Scripts and tests wait for this exact line on stdout.
    println!("switchboard listening on http://{addr}");
    std::io::stdout().flush().context("writing to stdout")?;
    tracing::info!(%addr, "serving");

    let served = server::serve(listener, app, shutdown.clone().cancelled_owned()).await;
    // The server may also stop on its own (an accept error): the workers stop with it.
    shutdown.cancel();
    let drained = tokio::time::timeout(WORKER_GRACE, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?WORKER_GRACE, "workers did not stop in time; abandoning them");
        workers.abort_all();
    }
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits on the second.
#[cfg(unix)]
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered once, before the first wait, so no signal falls between two waits.
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot listen for shutdown signals");
            return;
        }
    };
    let mut next = async || {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    next().await;
    tracing::info!("shutting down: finishing in-flight requests (signal again to exit at once)");
    shutdown.cancel();
    next().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

#[cfg(not(unix))]
async fn watch_signals(shutdown: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_ok() {
        shutdown.cancel();
    }
}
