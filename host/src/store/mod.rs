//! Durable state, through sqlx. SQLite is the embedded default; the schema sticks to SQL that
//! PostgreSQL also accepts so a second backend needs no redesign.
//!
//! Functions here only read and write rows: no HTTP, no plugin calls.

mod care;
mod files;
mod group_commit;
mod installations;
mod jobs;
mod oauth;
mod outbox;
mod plugins;
mod retention;
mod sync;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use care::{DeliveryRow, Ownership, OwnershipChange};
pub use group_commit::GroupCommit;
pub use installations::{InstallationRow, LinkRow};
pub use jobs::{JobRow, JobRunRow, NewJob};
pub use oauth::{OAuthGrantRow, OAuthStateRow, OAuthTokensUpdate};
pub use outbox::{NewOutbox, OutboxRow, OutboxStats};
pub use plugins::{HistoryEntry, InstallOutcome, NewPlugin, PluginRecord};
pub use retention::Pruned;
pub use sync::{
    ConversationRow, EventOutcome, IdentityInput, InboundEvent, MessageRow, NewInboundEvent,
    TicketRow,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH (PostgreSQL support is planned)")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(String),
}

/// How the database is kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Whether a commit waits until the write-ahead log is on disk (`synchronous=FULL`). With
    /// `false` (`NORMAL`), a power cut can lose the last commits, a webhook the hub already
    /// answered 200 among them; a crash of the process alone cannot.
    pub durable_commits: bool,
    /// The write-ahead log stays under this many bytes: it is truncated once it reaches half
    /// of it (see [`Db::checkpoint`]).
    pub wal_limit_bytes: u64,
    /// SQLite's page cache of the write connection. With SQLite's default (2 MiB), writes to
    /// a database of a few hundred MiB read their pages from the kernel again and again. The
    /// read connections keep the default: SQLite drops a reader's cache after every write of
    /// another connection, and dropping a large cache cost more than it saved.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durable_commits: true,
            wal_limit_bytes: 64 << 20,
            cache_bytes: 64 << 20,
        }
    }
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Bytes in the write-ahead log before the checkpoint.
    pub wal_bytes: u64,
    /// Whether the log was over its limit and was truncated.
    pub truncated: bool,
}

/// Read connections (SQLite reads in parallel; writes go through one connection).
const READERS: u32 = 4;

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// For reads.
    pool: SqlitePool,
    /// The one connection this process writes through (see [`Db::connect`]).
    writes: SqlitePool,
    /// Writers of this process take turns here before SQLite's own write lock. SQLite lets a
    /// blocked writer poll with sleeps of up to 100 ms (its busy handler), which made the
    /// webhook's durable insert wait tens of milliseconds behind the processor and the outbox
    /// workers; a fair async queue hands the lock over as soon as it is free. Other processes
    /// on the same file still meet the busy timeout.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Taken before `writer` by every writer but the urgent ones ([`Db::begin_urgent`]), so
    /// that at most one background writer is ever queued on `writer` ahead of an urgent one:
    /// a webhook waits for the transaction in progress, not for a queue of them.
    background: Arc<tokio::sync::Mutex<()>>,
    /// Webhook intakes waiting for their turn ([`Db::begin_intake`]): the inbound processor,
    /// whose transactions take many events, ends its transaction early when one waits.
    intakes_waiting: Arc<AtomicUsize>,
    options: StoreOptions,
    /// The write-ahead log's file, watched by [`Db::wal_needs_checkpoint`] (none in memory).
    wal_file: Option<std::path::PathBuf>,
    /// The database's page size, to turn the log's frames into bytes.
    page_size: u64,
}

impl Db {
    /// Opens (creating if needed) the database at `url` with the default [`StoreOptions`]
    /// and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Opens (creating if needed) the database at `url` and applies pending migrations. A
    /// database file is made readable by its owner only: it holds every customer message.
    pub async fn connect_with(url: &str, store: StoreOptions) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?;
        let file = database_file(&options);
        if let Some(path) = &file {
            files::make_private(path)?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Once the log has been copied back in full, the next writer truncates it to this
            // size instead of reusing all of it.
            .pragma("journal_size_limit", store.wal_limit_bytes.to_string())
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // No checkpoints inside commits: one that copies the WAL back stalls that commit
            // (a webhook's, as often as not) for milliseconds. `Db::checkpoint` runs them
            // beside the writers instead; SQLite still checkpoints when the last connection
            // closes.
            .pragma("wal_autocheckpoint", "0");
        // SQLite drops a connection's page cache whenever another connection has written
        // since its last transaction. This process's writes take turns anyway (see `writer`),
        // so they all go through one connection, whose cache then stays warm; reads have a
        // small pool of their own.
        // Only the writer's setting decides what a commit waits for.
        let synchronous = if store.durable_commits {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .synchronous(synchronous)
                    .pragma("cache_size", format!("-{}", store.cache_bytes >> 10)),
            )
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writes).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            pool,
            writes,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            background: Arc::new(tokio::sync::Mutex::new(())),
            intakes_waiting: Arc::new(AtomicUsize::new(0)),
            options: store,
            wal_file: file.map(|path| {
                let mut name = path.into_os_string();
                name.push("-wal");
                name.into()
            }),
            page_size: page_size.max(0) as u64,
        })
    }

    /// This process's turn to write, for single-statement writes outside a [`Tx`].
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        let background = Some(self.background.clone().lock_owned().await);
        WriteTurn {
            _writer: self.writer.clone().lock_owned().await,
            _background: background,
        }
    }

    /// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads and then writes can fail at once with "database is
    /// locked" when another writer got in between, instead of waiting its turn.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let turn = self.write_turn().await;
        Ok(Tx {
            inner: self.writes.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }

    /// Like [`Db::begin`], ahead of the background writers (outbox, scheduler): for the
    /// webhook intake, whose sender waits for the commit, and the inbound processor, whose
    /// short batches everything downstream waits for. (Queued behind a few dozen outbox
    /// deliveries, the processor fell behind the intake.)
    pub async fn begin_urgent(&self) -> Result<Tx, StoreError> {
        let turn = WriteTurn {
            _writer: self.writer.clone().lock_owned().await,
            _background: None,
        };
        Ok(Tx {
            inner: self.writes.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }

    /// Like [`Db::begin_urgent`], for a webhook's durable insert: its sender is waiting, so
    /// while it waits for its turn [`Db::intake_waiting`] tells long writers to finish up.
    pub async fn begin_intake(&self) -> Result<Tx, StoreError> {
        self.intakes_waiting.fetch_add(1, Ordering::SeqCst);
        // Counted down however the wait ends, a dropped request included.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(&self.intakes_waiting);
        self.begin_urgent().await
    }

    /// Whether a webhook's insert waits for the write lock (see [`Db::begin_intake`]).
    pub fn intake_waiting(&self) -> bool {
        self.intakes_waiting.load(Ordering::SeqCst) > 0
    }

    /// Copies the write-ahead log back into the database as far as no reader still needs it,
    /// without blocking writers (a passive checkpoint). Call it regularly: see `Db::connect`.
    ///
    /// Under a steady load some reader always needs the log's tail, so a passive checkpoint
    /// never lets the log start over, and it grew to gigabytes. Past half of
    /// [`StoreOptions::wal_limit_bytes`] the checkpoint therefore waits for the readers in its
    /// turn as a writer, copies everything and truncates the log: with the other half as room
    /// for what is written until the next check, the log stays under its limit.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let (_busy, frames, _copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.pool)
                .await?;
        let wal_bytes = (frames.max(0) as u64).saturating_mul(self.page_size);
        if wal_bytes < self.wal_watermark() {
            return Ok(Checkpoint {
                wal_bytes,
                truncated: false,
            });
        }
        self.truncate_wal().await?;
        Ok(Checkpoint {
            wal_bytes,
            truncated: true,
        })
    }

    /// Whether the log's file has reached the size at which [`Db::checkpoint`] truncates it:
    /// a file-size check, cheap enough to make many times a second under a heavy load.
    pub fn wal_needs_checkpoint(&self) -> bool {
        self.wal_file.as_ref().is_some_and(|wal| {
            std::fs::metadata(wal).is_ok_and(|m| m.len() >= self.wal_watermark())
        })
    }

    fn wal_watermark(&self) -> u64 {
        self.options.wal_limit_bytes / 2
    }

    /// Copies the whole write-ahead log back and truncates it, waiting for readers (up to the
    /// busy timeout) and keeping this process's writers out meanwhile. Also for a clean
    /// shutdown, so no log is left beside the database.
    pub async fn truncate_wal(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A write transaction: everything done through it commits or rolls back together. Dropped
/// without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Sqlite>,
    /// Released after `inner` (fields drop in order), so a dropped transaction's rollback is
    /// queued on its connection before the next writer goes.
    _turn: WriteTurn,
}

/// A writer's turn (see [`Db::write_turn`]); released on drop.
pub(crate) struct WriteTurn {
    _writer: tokio::sync::OwnedMutexGuard<()>,
    _background: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await?;
        Ok(())
    }
}

/// The file a SQLite URL names, when it is a file (not `:memory:`).
fn database_file(options: &SqliteConnectOptions) -> Option<std::path::PathBuf> {
    let path = options.get_filename();
    let name = path.to_string_lossy();
    (!name.is_empty() && name != ":memory:" && !name.starts_with("file:"))
        .then(|| path.to_path_buf())
}

/// Longest error text kept in a row (`job_runs.error`, `inbound_events.last_error`): errors
/// can carry what a plugin or a service said, and must not fill the disk.
const MAX_STORED_ERROR_BYTES: usize = 4 << 10;

/// An error as it is stored: cut to [`MAX_STORED_ERROR_BYTES`], saying how much was cut.
fn stored_error(error: &str) -> String {
    crate::runtime::bounds::truncate(error, MAX_STORED_ERROR_BYTES)
}

fn json_corrupt(what: &str, error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}
