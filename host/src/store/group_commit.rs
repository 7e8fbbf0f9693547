//! Group commit for background writes whose callers wait for the outcome: the outbox records
//! each delivery's result through it. With durable commits every transaction waits for an
//! fsync of the log, and one delivery's result per transaction made the deliveries queue up
//! behind each other's fsyncs. The writer task runs every write that queued up meanwhile in
//! one transaction, each inside a savepoint, so a write that fails is undone alone while the
//! others commit. A caller hears its outcome only after the commit.
//!
//! Hand-written rather than a crate's: sqlx has no group commit, and it is a loop over a
//! channel.

use std::any::Any;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{Db, StoreError, Tx};

/// Most writes one transaction takes.
const MAX_BATCH: usize = 64;

type Output = Box<dyn Any + Send>;
type Work = Box<dyn for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<Output, StoreError>> + Send>;

struct Job {
    work: Work,
    done: oneshot::Sender<Result<Output, StoreError>>,
}

/// The sending side of the group-commit writer; cheap to share. The writer task ends when
/// this is dropped.
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the writer task on `db` (it writes with the background writers' priority).
    pub fn start(db: Db) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(db, jobs));
        Self { queue }
    }

    /// Runs `work` in the next shared transaction and returns its result once that committed.
    /// When `work` fails, its writes are rolled back and its error returned; the others' stay.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let work: Work = Box::new(move |tx| {
            Box::pin(async move { work(tx).await.map(|value| Box::new(value) as Output) })
        });
        self.queue
            .send(Job { work, done })
            .map_err(|_| StoreError::Io("the group-commit writer has stopped".into()))?;
        let output = answer.await.map_err(|_| {
            StoreError::Io("the group-commit writer stopped before the write committed".into())
        })??;
        output
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|_| StoreError::Corrupt("a grouped write answered with another type".into()))
    }
}

async fn run(db: Db, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::new();
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(batch.len());
        let committed = async {
            let mut tx = db.begin().await?;
            for job in batch.drain(..) {
                let outcome = tx.within_savepoint(job.work).await?;
                answers.push((job.done, outcome));
            }
            tx.commit().await
        }
        .await;
        match committed {
            Ok(()) => {
                for (done, outcome) in answers {
                    // The caller may have gone away; its write stands.
                    let _ = done.send(outcome);
                }
            }
            Err(error) => {
                // Nothing of the batch is stored: each caller retries as after a failed
                // transaction of its own. Jobs not reached yet were dropped with `batch`,
                // which their callers see as the writer stopping before the commit.
                let message = format!("the shared transaction failed: {error}");
                tracing::warn!(%message);
                for (done, _) in answers {
                    let _ = done.send(Err(StoreError::Io(message.clone())));
                }
                batch.clear();
            }
        }
    }
}

impl Tx {
    /// Runs `work` inside a savepoint: rolled back to it when `work` fails. The outer `Err` is
    /// a failure of the transaction itself (the savepoint statements), which ends the batch.
    async fn within_savepoint(
        &mut self,
        work: Work,
    ) -> Result<Result<Output, StoreError>, StoreError> {
        sqlx::query("SAVEPOINT grouped_write")
            .execute(&mut *self.inner)
            .await?;
        let outcome = work(self).await;
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO grouped_write")
                .execute(&mut *self.inner)
                .await?;
        }
        sqlx::query("RELEASE grouped_write")
            .execute(&mut *self.inner)
            .await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("hub.db").display());
        let db = Db::connect(&url).await.expect("connect");
        (dir, db)
    }

    async fn settings(db: &Db) -> Vec<(String, String)> {
        sqlx::query_as("SELECT key, value FROM kv_test ORDER BY key")
            .fetch_all(&db.writes)
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn a_failed_write_is_undone_alone_and_the_others_commit() {
        let (_dir, db) = db().await;
        sqlx::query("CREATE TABLE kv_test (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .execute(&db.writes)
            .await
            .expect("table");
        let group = std::sync::Arc::new(GroupCommit::start(db.clone()));
        let writes = (0..20).map(|n| {
            let group = group.clone();
            async move {
                group
                    .write(move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO kv_test VALUES (?, 'x')")
                                .bind(format!("k{n:02}"))
                                .execute(&mut *tx.inner)
                                .await?;
                            if n % 5 == 0 {
                                // Its row must not stay: a duplicate key fails the write.
                                sqlx::query("INSERT INTO kv_test VALUES (?, 'y')")
                                    .bind(format!("k{n:02}"))
                                    .execute(&mut *tx.inner)
                                    .await?;
                            }
                            Ok(n)
                        })
                    })
                    .await
            }
        });
        let outcomes = futures::future::join_all(writes).await;
        for (n, outcome) in outcomes.iter().enumerate() {
            assert_eq!(outcome.is_ok(), n % 5 != 0, "write {n}: {outcome:?}");
            if let Ok(value) = outcome {
                assert_eq!(*value, n);
            }
        }
        let stored = settings(&db).await;
        let keys: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
        let expected: Vec<String> = (0..20)
            .filter(|n| n % 5 != 0)
            .map(|n| format!("k{n:02}"))
            .collect();
        assert_eq!(keys, expected);
        assert!(stored.iter().all(|(_, v)| v == "x"));
    }
}
