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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    async fn db(dir: &std::path::Path, wal_limit_bytes: u64) -> Db {
        let url = format!("sqlite://{}", dir.join("t.db").display());
        Db::connect_with(
            &url,
            StoreOptions {
                wal_limit_bytes,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("open")
    }

    async fn exec(db: &Db, sql: &str) {
        sqlx::query(sql).execute(&db.writes).await.expect(sql);
    }

    async fn count(db: &Db, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&db.pool)
            .await
            .expect(sql)
    }

    #[tokio::test]
    async fn prune_deletes_what_is_old_and_done_and_keeps_what_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path(), 64 << 20).await;
        exec(&db, "INSERT INTO installations (id, plugin_id, kind, settings_json, created_at, updated_at) VALUES ('tg', 'telegram', 'social', '{}', 0, 0)").await;
        exec(&db, "INSERT INTO contacts (id, created_at) VALUES ('c', 0)").await;
        exec(&db, "INSERT INTO conversations (id, social_installation_id, thread_id, contact_id, channel, message_kind, visibility, created_at, updated_at) VALUES ('v', 'tg', 't', 'c', 'telegram', 'direct-message', 'private', 0, 0)").await;
        // Old (received at 10) and new (at 1000) events in every state.
        for (id, at, processed, outcome) in [
            ("old-done", 10, "10", "'comment'"),
            ("old-unlinked", 10, "10", "'unlinked'"),
            ("old-quarantined", 10, "10", "'quarantined'"),
            ("old-pending", 10, "NULL", "NULL"),
            ("new-done", 1000, "1000", "'comment'"),
        ] {
            exec(&db, &format!("INSERT INTO inbound_events (installation_id, external_id, kind, source, payload, received_at, processed_at, outcome) VALUES ('tg', '{id}', 'social', 'poll', '{{}}', {at}, {processed}, {outcome})")).await;
        }
        for (key, status, done_at) in [
            ("old-done", "done", "10"),
            ("old-dead", "dead", "NULL"),
            ("new-done", "done", "1000"),
        ] {
            exec(&db, &format!("INSERT INTO outbox (kind, installation_id, conversation_id, idempotency_key, payload, status, next_attempt_at, created_at, updated_at, done_at) VALUES ('send-message', 'tg', 'v', '{key}', '{{}}', '{status}', 0, 10, 10, {done_at})")).await;
        }
        exec(&db, "INSERT INTO jobs (id, installation_id, stream, schedule, time_zone) VALUES ('tg:updates', 'tg', 'updates', '* * * * *', 'UTC')").await;
        exec(&db, "INSERT INTO job_runs (job_id, trigger, started_at, finished_at, outcome) VALUES ('tg:updates', 'schedule', 10, 11, 'ok'), ('tg:updates', 'schedule', 1000, 1001, 'ok'), ('tg:updates', 'schedule', 10, NULL, 'running')").await;

        let pruned = db.prune(500).await.expect("prune");
        assert_eq!(
            pruned,
            Pruned {
                events: 1,
                outbox_rows: 1,
                job_runs: 1
            }
        );
        let events: Vec<String> =
            sqlx::query_scalar("SELECT external_id FROM inbound_events ORDER BY external_id")
                .fetch_all(&db.pool)
                .await
                .expect("events");
        assert_eq!(
            events,
            ["new-done", "old-pending", "old-quarantined", "old-unlinked"]
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM outbox WHERE status = 'dead'").await,
            1
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM job_runs").await, 2);
    }

    #[tokio::test]
    async fn a_checkpoint_truncates_a_log_over_its_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path(), 256 << 10).await;
        exec(&db, "INSERT INTO installations (id, plugin_id, kind, settings_json, created_at, updated_at) VALUES ('tg', 'telegram', 'social', '{}', 0, 0)").await;
        let payload = "x".repeat(4_000);
        for i in 0..500 {
            sqlx::query("INSERT INTO inbound_events (installation_id, external_id, kind, source, payload, received_at) VALUES ('tg', ?, 'social', 'poll', ?, 0)")
                .bind(i.to_string())
                .bind(&payload)
                .execute(&db.writes)
                .await
                .expect("insert");
        }
        let wal = dir.path().join("t.db-wal");
        let before = std::fs::metadata(&wal).expect("wal").len();
        assert!(before > 1 << 20, "the log holds the writes: {before} bytes");
        assert!(
            db.wal_needs_checkpoint(),
            "a {before}-byte log is past half its limit"
        );

        let done = db.checkpoint().await.expect("checkpoint");
        assert!(done.truncated, "{done:?}");
        assert!(done.wal_bytes > 256 << 10, "{done:?}");
        let after = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(after, 0, "truncated from {before} bytes");
        assert!(!db.wal_needs_checkpoint());
    }
}
