//! Maintenance: keeps the database's size bounded (write-ahead log checkpoints, pruning past
//! the retention).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::store::Db;

/// How often the write-ahead log is checkpointed (see [`Db::checkpoint`]).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How often the write-ahead log's size is looked at between checkpoints.
const WAL_WATCH_EVERY: Duration = Duration::from_millis(50);
/// How often rows past the retention are pruned (see [`Db::prune`]); also once at start.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Keeps the database's size bounded until `shutdown`: checkpoints the write-ahead log every
/// [`CHECKPOINT_EVERY`], or as soon as its file reaches half its limit (truncating it then,
/// see [`Db::checkpoint`]), and prunes what is older than
/// `retention` every [`PRUNE_EVERY`]. On shutdown the log is truncated, so none is left
/// beside the database.
pub(super) async fn run_maintenance(db: Db, retention: Duration, shutdown: CancellationToken) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            let before = now_ms() - retention.as_millis() as i64;
            match db.prune(before).await {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    events = pruned.events,
                    outbox_rows = pruned.outbox_rows,
                    job_runs = pruned.job_runs,
                    retention_days = retention.as_secs() / 86_400,
                    "pruned rows past the retention"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "pruning old rows failed"),
            }
        }
        // Checked often: under a heavy load the log grows by tens of MiB a second.
        let next_checkpoint = tokio::time::Instant::now() + CHECKPOINT_EVERY;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(WAL_WATCH_EVERY) => {}
            }
            if tokio::time::Instant::now() >= next_checkpoint || db.wal_needs_checkpoint() {
                break;
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        match db.checkpoint().await {
            Ok(done) if done.truncated => {
                tracing::info!(
                    wal_bytes = done.wal_bytes,
                    "write-ahead log over its limit; truncated"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "checkpointing the database failed"),
        }
    }
    if let Err(error) = db.truncate_wal().await {
        tracing::warn!(%error, "could not truncate the write-ahead log at shutdown");
    }
}
