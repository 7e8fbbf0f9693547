//! Retention: what the hub no longer needs is deleted, so the database grows only by what it
//! keeps (conversations, tickets, messages).

use super::{Db, StoreError};

/// Rows deleted per statement: each batch is a short write transaction of its own, so webhooks
/// are not held up behind one long delete.
const BATCH: i64 = 2_000;

/// What [`Db::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub outbox_rows: u64,
    pub job_runs: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.events + self.outbox_rows + self.job_runs
    }
}

impl Db {
    /// Deletes what is older than `before` (ms since the epoch) and no longer needed:
    /// - processed inbound events: the deduplication memory, so `before` must leave at least
    ///   as long as any service retries a delivery. Events still waiting (for a link) or set
    ///   aside (quarantined) are kept until someone acts on them;
    /// - delivered outbox rows (dead letters stay);
    /// - finished job runs.
    pub async fn prune(&self, before: i64) -> Result<Pruned, StoreError> {
        Ok(Pruned {
            events: self
                .delete_in_batches(
                    "DELETE FROM inbound_events WHERE id IN (SELECT id FROM inbound_events \
                     WHERE received_at < ? AND processed_at IS NOT NULL \
                     AND outcome NOT IN ('unlinked', 'quarantined', 'processing') LIMIT ?)",
                    before,
                )
                .await?,
            outbox_rows: self
                .delete_in_batches(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
                     WHERE status = 'done' AND done_at < ? LIMIT ?)",
                    before,
                )
                .await?,
            job_runs: self
                .delete_in_batches(
                    "DELETE FROM job_runs WHERE id IN (SELECT id FROM job_runs \
                     WHERE started_at < ? AND finished_at IS NOT NULL LIMIT ?)",
                    before,
                )
                .await?,
        })
    }

    /// Runs `delete` (binding `before`, then the batch size) until it deletes nothing.
    async fn delete_in_batches(&self, delete: &str, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let _turn = self.write_turn().await;
            let deleted = sqlx::query(delete)
                .bind(before)
                .bind(BATCH)
                .execute(&self.writes)
                .await?
                .rows_affected();
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
