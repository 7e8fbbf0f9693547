//! `switchboard serve`: the hub's long-running process.
//!
//! Opens the hub on the configured database, starts its workers (scheduler, inbound processing,
//! outbox delivery), and serves HTTP until SIGINT or SIGTERM. On the first signal it stops
//! accepting connections, lets in-flight requests finish and the workers wind down, for at most
//! `[server] shutdown_timeout_secs`, then exits anyway; a second signal exits at once.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::{Config, Overrides, TokenSource};
use crate::hub::Hub;
use crate::server::{self, AppState, ServerOptions};

/// Descriptors kept out of the connection limit's reach: the database, the log, outbound HTTP
/// and the listener itself need some too.
const DESCRIPTORS_KEPT_FOR_THE_HUB: u64 = 256;
/// Past the shutdown deadline, how long tearing down the runtime may take before the process
/// exits without it.
const EXIT_GRACE: Duration = Duration::from_secs(2);

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
    let mut options = ServerOptions::from(&config);
    options.max_connections = fit_to_open_file_limit(options.max_connections);

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

    if config.metrics_token.is_some() {
        tracing::info!("/metrics takes the metrics token or the admin token");
    }
    let state =
        AppState::new(hub, &admin_token).with_metrics_token(config.metrics_token.as_deref());
    let app = server::router(state, &options);

    // Scripts and tests wait for this exact line on stdout.
    println!("switchboard listening on http://{addr}");
    std::io::stdout().flush().context("writing to stdout")?;
    tracing::info!(%addr, "serving");

    // Requests in flight and the workers wind down side by side, both within the deadline.
    let deadline = options.shutdown_timeout;
    let drain_workers = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            exit_after(deadline + EXIT_GRACE);
            let stop_by = tokio::time::Instant::now() + deadline;
            let drained = tokio::time::timeout_at(stop_by, async {
                while workers.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(?deadline, "workers did not stop in time; abandoning them");
                workers.abort_all();
            }
        }
    };
    let serving = server::serve_with(listener, app, &options, shutdown.clone().cancelled_owned());
    let (served, ()) = tokio::join!(
        async {
            let served = serving.await;
            // The server may also stop on its own (an accept error): the workers stop with it.
            shutdown.cancel();
            served
        },
        drain_workers
    );
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Raises the open-file soft limit to the hard limit (sockets are files: the default soft
/// limit of 1024 is easily reached), logs it, and lowers `max_connections` when the limit
/// cannot hold that many connections besides what the hub itself needs.
fn fit_to_open_file_limit(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(open_files = limit, "open-file limit");
            limit
        }
        Err(error) => {
            let current = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            tracing::warn!(%error, open_files = current, "could not raise the open-file limit");
            current
        }
    };
    let room = limit.saturating_sub(DESCRIPTORS_KEPT_FOR_THE_HUB).max(1);
    if max_connections as u64 > room {
        tracing::warn!(
            configured = max_connections,
            open_files = limit,
            max_connections = room,
            "max_connections does not fit in the open-file limit; lowered"
        );
        return room as usize;
    }
    max_connections
}

/// Exits the process after `grace` unless it has ended by then: the shutdown deadline bounds
/// the server and the workers, but dropping the async runtime waits for blocking tasks, and
/// nothing may keep a stopped hub alive.
fn exit_after(grace: Duration) {
    let spawned = std::thread::Builder::new()
        .name("switchboard-exit".into())
        .spawn(move || {
            std::thread::sleep(grace);
            tracing::warn!(
                ?grace,
                "the process did not end after shutdown; exiting now"
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the exit watchdog");
    }
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
