//! The accept loop: HTTP/1.1 connections served by hyper, with the limits `axum::serve` lacks.
//!
//! - A header-read timeout: a client that does not finish its request head in time (or that
//!   keeps an idle keep-alive connection) is disconnected; hyper starts this timer whenever it
//!   waits for a request head.
//! - A connection limit: beyond it, a new connection is closed as soon as it is accepted, so
//!   slow clients can never use up the process's file descriptors.
//! - A deadline on graceful shutdown: in-flight requests get that long to finish, then the
//!   remaining connections are abandoned.
//!
//! HTTP/1.1 only: the senders of webhooks and admin tools use it, and a proxy in front
//! terminates HTTP/2. hyper-util's version-sniffing builder is avoided on purpose: it reads the
//! connection preface with no timeout, which an idle client would hold forever.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::ServerOptions;

/// How often a refused connection is logged at most: a flood must not flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets requests
/// in flight finish for at most `options.shutdown_timeout`, and returns.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before it was
                // accepted: the listener itself is fine. Pause briefly so a full descriptor
                // table does not turn this loop into a busy one.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once: its descriptor is freed, and the client sees a reset rather
            // than a hang.
            drop(stream);
            refusals.note(options.max_connections);
            continue;
        };
        // Small answers go out at once (webhook senders wait for them).
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Header timeouts, resets and malformed requests: the client's problem.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = options.max_connections.max(1) - slots.available_permits();
    tracing::info!(
        open,
        deadline = ?options.shutdown_timeout,
        "stopped accepting connections; finishing requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_timeout) => {
            let open = options.max_connections.max(1) - slots.available_permits();
            tracing::warn!(
                open,
                deadline = ?options.shutdown_timeout,
                "connections still open at the shutdown deadline; abandoning them"
            );
        }
    }
    Ok(())
}

/// Counts connections refused for the limit, and logs them now and then.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, limit: usize) {
        self.since_log += 1;
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                refused = self.since_log,
                limit,
                "connection limit reached: closing new connections (see `[server] max_connections`)"
            );
            self.since_log = 0;
            self.logged = Some(Instant::now());
        }
    }
}
