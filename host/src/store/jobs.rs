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
