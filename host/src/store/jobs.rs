//! Polling jobs and their runs.

use super::{Db, StoreError, Tx};

/// A job to create with its installation.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub installation_id: String,
    pub stream: String,
    pub schedule: String,
    pub time_zone: String,
    pub next_run_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub installation_id: String,
    pub stream: String,
    pub schedule: String,
    pub time_zone: String,
    pub paused: bool,
    pub next_run_at: Option<i64>,
    pub running_since: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRunRow {
    pub id: i64,
    pub job_id: String,
    pub trigger: String,
    pub scheduled_for: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: String,
    pub pages: i64,
    pub events_stored: i64,
    pub error: Option<String>,
}

const JOB_COLUMNS: &str =
    "id, installation_id, stream, schedule, time_zone, paused, next_run_at, running_since, lease_owner, lease_until";

impl Tx {
    /// Creates a job unless one exists for the same (installation, stream).
    pub async fn insert_job(&mut self, job: &NewJob) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (id, installation_id, stream, schedule, time_zone, paused, next_run_at) \
             VALUES (?, ?, ?, ?, ?, FALSE, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&job.id)
        .bind(&job.installation_id)
        .bind(&job.stream)
        .bind(&job.schedule)
        .bind(&job.time_zone)
        .bind(job.next_run_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }
}

impl Db {
    pub async fn list_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn get_job(&self, id: &str) -> Result<JobRow, StoreError> {
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job `{id}` does not exist")))
    }

    /// The latest run of every job that has one.
    pub async fn last_job_runs(&self) -> Result<Vec<JobRunRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT r.* FROM jobs j JOIN job_runs r \
             ON r.id = (SELECT MAX(l.id) FROM job_runs l WHERE l.job_id = j.id)",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_job_run(&self, id: i64) -> Result<JobRunRow, StoreError> {
        sqlx::query_as("SELECT * FROM job_runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job run {id} does not exist")))
    }

    /// The runs of a job, newest first.
    pub async fn job_runs(&self, job_id: &str, limit: i64) -> Result<Vec<JobRunRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM job_runs WHERE job_id = ? ORDER BY id DESC LIMIT ?")
                .bind(job_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Jobs whose slot has come, that are not paused, not running (or whose runner's lease
    /// expired), of active installations (enabled, not waiting for OAuth2 reauthorization).
    pub async fn due_jobs(&self, now: i64) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE NOT paused AND next_run_at IS NOT NULL AND next_run_at <= ? \
             AND (running_since IS NULL OR lease_until < ?) \
             AND installation_id IN (SELECT id FROM active_installations) ORDER BY next_run_at"
        ))
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims a job for a run: sets the running marker unless another runner holds it, moves
    /// `next_run_at` on (when given) and records the run. `due_at`, when given, also requires
    /// the job to still be due at that slot, so two hosts cannot both take one slot.
    /// Returns the run id, or `None` when the job is running elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_job(
        &self,
        job_id: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        next_run_at: Option<i64>,
        due_at: Option<i64>,
        trigger: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "UPDATE jobs SET running_since = ?, lease_owner = ?, lease_until = ?, \
             next_run_at = CASE WHEN ? THEN ? ELSE next_run_at END \
             WHERE id = ? AND (running_since IS NULL OR lease_until < ?) \
             AND (? IS NULL OR next_run_at = ?)",
        )
        .bind(now)
        .bind(owner)
        .bind(lease_until)
        .bind(next_run_at.is_some())
        .bind(next_run_at)
        .bind(job_id)
        .bind(now)
        .bind(due_at)
        .bind(due_at)
        .execute(&mut *tx.inner)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO job_runs (job_id, trigger, scheduled_for, started_at, outcome) \
             VALUES (?, ?, ?, ?, 'running') RETURNING id",
        )
        .bind(job_id)
        .bind(trigger)
        .bind(due_at)
        .bind(now)
        .fetch_one(&mut *tx.inner)
        .await?;
        tx.commit().await?;
        Ok(Some(run_id))
    }

    /// Extends a running job's lease; false when the lease was lost.
    pub async fn renew_job_lease(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let renewed =
            sqlx::query("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?")
                .bind(lease_until)
                .bind(job_id)
                .bind(owner)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(renewed > 0)
    }

    /// Records the end of a run and clears the running marker (if still ours).
    #[allow(clippy::too_many_arguments)]
    /// Records a run's end and frees its job. `not_before`: the service asked to wait, so the
    /// next run is not before then (a later slot stays; a job without one stays stopped).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_job_run(
        &self,
        job_id: &str,
        owner: &str,
        run_id: i64,
        now: i64,
        outcome: &str,
        pages: i64,
        events_stored: i64,
        error: Option<&str>,
        not_before: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE job_runs SET finished_at = ?, outcome = ?, pages = ?, events_stored = ?, error = ? WHERE id = ?",
        )
        .bind(now)
        .bind(outcome)
        .bind(pages)
        .bind(events_stored)
        // Errors quote plugins; the runtime already bounds those parts, this bounds the row.
        .bind(error.map(super::stored_error))
        .bind(run_id)
        .execute(&mut *tx.inner)
        .await?;
        sqlx::query(
            "UPDATE jobs SET running_since = NULL, lease_owner = NULL, lease_until = NULL, \
             next_run_at = MAX(next_run_at, COALESCE(?, next_run_at)) WHERE id = ? AND lease_owner = ?",
        )
        .bind(not_before)
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx.inner)
        .await?;
        tx.commit().await
    }

    /// Clears running markers left by runners that died: those whose lease expired, or all of
    /// them when `all` (a SQLite database has one host, so at start nothing can be running).
    /// Their unfinished runs are recorded as interrupted. Returns how many were cleared.
    pub async fn clear_stale_job_markers(&self, now: i64, all: bool) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE job_runs SET finished_at = ?, outcome = 'error', error = 'interrupted: the runner stopped' \
             WHERE outcome = 'running' AND job_id IN \
             (SELECT id FROM jobs WHERE running_since IS NOT NULL AND (? OR lease_until < ?))",
        )
        .bind(now)
        .bind(all)
        .bind(now)
        .execute(&mut *tx.inner)
        .await?;
        let cleared = sqlx::query(
            "UPDATE jobs SET running_since = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE running_since IS NOT NULL AND (? OR lease_until < ?)",
        )
        .bind(all)
        .bind(now)
        .execute(&mut *tx.inner)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(cleared)
    }

    pub async fn set_job_paused(
        &self,
        id: &str,
        paused: bool,
        next_run_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE jobs SET paused = ?, next_run_at = COALESCE(?, next_run_at) WHERE id = ?",
        )
        .bind(paused)
        .bind(next_run_at)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("job `{id}` does not exist")));
        }
        Ok(())
    }

    pub async fn set_job_schedule(
        &self,
        id: &str,
        schedule: &str,
        time_zone: &str,
        next_run_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE jobs SET schedule = ?, time_zone = ?, next_run_at = ? WHERE id = ?",
        )
        .bind(schedule)
        .bind(time_zone)
        .bind(next_run_at)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("job `{id}` does not exist")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// A database as an installation from before migration 0007 left it: Zendesk and
    /// Salesforce polled a stream named `ticket-events`, with a changed schedule, a paused
    /// job, a run history and a cursor; a Freshdesk and a third-party plugin's stream of the
    /// same name must stay as they are.
    async fn database_before_the_rename(url: &str) {
        let options = SqliteConnectOptions::from_str(url)
            .expect("url")
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("open");
        let mut migrator = sqlx::migrate!("../migrations/sqlite");
        migrator.migrations = Cow::Owned(
            migrator
                .migrations
                .iter()
                .filter(|m| m.version < 7)
                .cloned()
                .collect(),
        );
        migrator.run(&pool).await.expect("migrations 1 to 6");
        for sql in [
            "INSERT INTO installations (id, plugin_id, kind, settings_json, created_at, updated_at) VALUES \
             ('zd', 'zendesk', 'helpdesk', '{}', 0, 0), ('sf', 'salesforce', 'helpdesk', '{}', 0, 0), \
             ('fd', 'freshdesk', 'helpdesk', '{}', 0, 0), ('other', 'acme-desk', 'helpdesk', '{}', 0, 0)",
            "INSERT INTO jobs (id, installation_id, stream, schedule, time_zone, paused, next_run_at) VALUES \
             ('zd:ticket-events', 'zd', 'ticket-events', '0 */5 * * * *', 'Asia/Tokyo', FALSE, 1234), \
             ('sf:ticket-events', 'sf', 'ticket-events', '*/30 * * * * *', 'UTC', TRUE, 99), \
             ('fd:ticket-changes', 'fd', 'ticket-changes', '*/30 * * * * *', 'UTC', FALSE, 5), \
             ('other:ticket-events', 'other', 'ticket-events', '*/30 * * * * *', 'UTC', FALSE, 7)",
            "INSERT INTO job_runs (job_id, trigger, started_at, finished_at, outcome, pages, events_stored) VALUES \
             ('zd:ticket-events', 'schedule', 10, 11, 'ok', 2, 5), \
             ('zd:ticket-events', 'manual', 20, 21, 'error', 0, 0), \
             ('other:ticket-events', 'schedule', 10, 11, 'ok', 1, 1)",
            "INSERT INTO cursors (installation_id, stream, cursor, updated_at) VALUES \
             ('zd', 'ticket-events', 'zd-cursor', 11), ('sf', 'ticket-events', 'sf-cursor', 12), \
             ('fd', 'ticket-changes', 'fd-cursor', 13), ('other', 'ticket-events', 'other-cursor', 14)",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
    }

    #[tokio::test]
    async fn zendesk_and_salesforce_streams_keep_schedule_runs_and_cursor_under_the_new_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        database_before_the_rename(&url).await;

        let db = Db::connect(&url).await.expect("migrate to the latest");

        let jobs: Vec<(String, String, String, String, bool, Option<i64>)> = db
            .list_jobs()
            .await
            .expect("jobs")
            .into_iter()
            .map(|j| {
                (
                    j.id,
                    j.stream,
                    j.schedule,
                    j.time_zone,
                    j.paused,
                    j.next_run_at,
                )
            })
            .collect();
        let job = |id: &str, stream: &str, schedule: &str, zone: &str, paused, next| {
            (
                id.to_string(),
                stream.to_string(),
                schedule.to_string(),
                zone.to_string(),
                paused,
                Some(next),
            )
        };
        assert_eq!(
            jobs,
            vec![
                job(
                    "fd:ticket-changes",
                    "ticket-changes",
                    "*/30 * * * * *",
                    "UTC",
                    false,
                    5
                ),
                job(
                    "other:ticket-events",
                    "ticket-events",
                    "*/30 * * * * *",
                    "UTC",
                    false,
                    7
                ),
                job(
                    "sf:ticket-changes",
                    "ticket-changes",
                    "*/30 * * * * *",
                    "UTC",
                    true,
                    99
                ),
                job(
                    "zd:ticket-changes",
                    "ticket-changes",
                    "0 */5 * * * *",
                    "Asia/Tokyo",
                    false,
                    1234
                ),
            ]
        );

        let runs: Vec<(String, String)> = db
            .job_runs("zd:ticket-changes", 10)
            .await
            .expect("runs")
            .into_iter()
            .map(|r| (r.job_id, r.outcome))
            .collect();
        assert_eq!(
            runs,
            vec![
                ("zd:ticket-changes".to_string(), "error".to_string()),
                ("zd:ticket-changes".to_string(), "ok".to_string())
            ]
        );
        assert_eq!(
            db.job_runs("other:ticket-events", 10)
                .await
                .expect("runs")
                .len(),
            1
        );
        assert!(db
            .job_runs("zd:ticket-events", 10)
            .await
            .expect("runs")
            .is_empty());

        for (installation, stream, cursor) in [
            ("zd", "ticket-changes", Some("zd-cursor")),
            ("sf", "ticket-changes", Some("sf-cursor")),
            ("fd", "ticket-changes", Some("fd-cursor")),
            ("other", "ticket-events", Some("other-cursor")),
            ("zd", "ticket-events", None),
        ] {
            assert_eq!(
                db.get_cursor(installation, stream)
                    .await
                    .expect("cursor")
                    .as_deref(),
                cursor,
                "{installation} {stream}"
            );
        }
    }
}
