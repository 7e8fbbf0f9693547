//! Polling jobs: each installation's streams are polled on cron schedules kept in the
//! database.
//!
//! A run is claimed with a conditional UPDATE on the job's running marker, so a job that is
//! still running (here or on another host) is not started again. The claim also moves
//! `next_run_at` to the first slot after now: slots missed while the hub was down collapse
//! into the one run that finds the job overdue. A run polls page by page while the plugin
//! says there is more (bounded), saving each page's events and cursor in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::intake::{store_events, Events, Source};
use super::{now_ms, Hub, HubError, JobRunView};
use crate::runtime::latest::{HelpdeskPollPage, SocialPollPage};
use crate::runtime::{CallError, HelpdeskConnector, SocialConnector};
use crate::schedule::Schedule;
use crate::store::JobRow;

/// How long a run may hold its job before another runner may take over; renewed per page.
const LEASE: Duration = Duration::from_secs(120);
/// Pages one run polls at most, so one busy stream cannot hold its runner forever.
pub const MAX_PAGES: u32 = 50;

/// The id of the job polling `stream` of `installation`.
pub fn job_id(installation: &str, stream: &str) -> String {
    format!("{installation}:{stream}")
}

/// Starts due jobs every tick until `shutdown`. Runs go on in their own tasks.
pub(crate) async fn run_scheduler(hub: Hub, shutdown: CancellationToken) {
    hub.recover().await;
    let owner = format!("{}/scheduler", hub.inner.host_id);
    loop {
        if let Err(error) = tick(&hub, &owner, &shutdown).await {
            tracing::warn!(%error, "scheduler tick failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(hub.inner.config.scheduler_tick) => {}
        }
    }
}

async fn tick(hub: &Hub, owner: &str, shutdown: &CancellationToken) -> Result<(), HubError> {
    let now = now_ms();
    for job in hub.inner.db.due_jobs(now).await? {
        let Some(due_at) = job.next_run_at else {
            continue;
        };
        let next = match Schedule::parse(&job.schedule, Some(&job.time_zone)) {
            Ok(schedule) => schedule.next_after(now),
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "job has an invalid schedule; it is not run");
                continue;
            }
        };
        let lease_until = now + LEASE.as_millis() as i64;
        // `next` may be None (no future slot): the job then stops after this run.
        let Some(run_id) = hub
            .inner
            .db
            .claim_job(
                &job.id,
                owner,
                now,
                lease_until,
                Some(next.unwrap_or(i64::MAX)),
                Some(due_at),
                "schedule",
            )
            .await?
        else {
            continue; // taken by another runner
        };
        hub.inner
            .metrics
            .job_lag(&job.id, Duration::from_millis((now - due_at).max(0) as u64));
        let (hub, owner, shutdown) = (hub.clone(), owner.to_string(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                // Shutdown drops the run between pages; its marker is cleared at next start.
                _ = shutdown.cancelled() => {}
                _ = execute(&hub, &job, &owner, run_id) => {}
            }
        });
    }
    Ok(())
}

/// `Hub::run_job_now`.
pub(crate) async fn run_now(hub: &Hub, job_id: &str) -> Result<JobRunView, HubError> {
    let job = hub.inner.db.get_job(job_id).await?;
    let owner = format!("{}/manual", hub.inner.host_id);
    let now = now_ms();
    let Some(run_id) = hub
        .inner
        .db
        .claim_job(
            &job.id,
            &owner,
            now,
            now + LEASE.as_millis() as i64,
            None,
            None,
            "manual",
        )
        .await?
    else {
        return Err(HubError::Conflict(format!(
            "job `{job_id}` is already running"
        )));
    };
    // In a task of its own: an admin whose request goes away (a client timeout) must not
    // cut the run off between pages, leaving its job marked running until the lease ends.
    let run = {
        let hub = hub.clone();
        tokio::spawn(async move { execute(&hub, &job, &owner, run_id).await })
    };
    run.await
        .map_err(|e| HubError::Internal(anyhow::anyhow!("the job run failed: {e}")))?;
    Ok(hub.inner.db.get_job_run(run_id).await?.into())
}

/// Runs a claimed job and records the run.
async fn execute(hub: &Hub, job: &JobRow, owner: &str, run_id: i64) {
    let span = tracing::info_span!("job", job = %job.id, installation = %job.installation_id, run = run_id);
    async {
        let mut pages = 0i64;
        let mut stored = 0i64;
        let result = poll_pages(hub, job, owner, &mut pages, &mut stored).await;
        let (outcome, error) = match &result {
            Ok(()) => ("ok", None),
            Err(error) => ("error", Some(error.to_string())),
        };
        // A rate-limited poll waits as long as the service asked, like a delivery does,
        // instead of running again at its next slot and being refused again.
        let not_before = match &result {
            Err(PollError::Call(call)) => match super::retry_of(call) {
                super::Retry::After(wait) => Some(now_ms() + wait.as_millis() as i64),
                _ => None,
            },
            _ => None,
        };
        match (&error, not_before) {
            (None, _) => tracing::debug!(pages, stored, "job run finished"),
            (Some(error), Some(at)) => {
                tracing::warn!(pages, stored, %error, next_run_not_before = %super::iso(at), "job run rate limited")
            }
            (Some(error), None) => tracing::warn!(pages, stored, %error, "job run failed"),
        }
        if let Err(e) = hub
            .inner
            .db
            .finish_job_run(
                &job.id,
                owner,
                run_id,
                now_ms(),
                outcome,
                pages,
                stored,
                error.as_deref(),
                not_before,
            )
            .await
        {
            tracing::warn!(error = %e, "could not record the job run");
        }
    }
    .instrument(span)
    .await
}

/// A bound plugin that polls, whichever world it implements.
enum Poller {
    Social(Arc<SocialConnector>),
    Helpdesk(Arc<HelpdeskConnector>),
}

/// One page a [`Poller`] read.
enum Page {
    Social(SocialPollPage),
    Helpdesk(HelpdeskPollPage),
}

impl Poller {
    /// The plugin operation, for the call-time metric.
    fn operation(&self) -> &'static str {
        match self {
            Poller::Social(_) => "poll",
            Poller::Helpdesk(_) => "poll-changes",
        }
    }

    async fn poll(&self, stream: &str, cursor: Option<&str>) -> Result<Page, CallError> {
        Ok(match self {
            Poller::Social(conn) => Page::Social(conn.poll(stream, cursor).await?),
            Poller::Helpdesk(conn) => Page::Helpdesk(conn.poll_changes(stream, cursor).await?),
        })
    }
}

impl Page {
    fn events(&self) -> Events<'_> {
        match self {
            Page::Social(page) => Events::Social(&page.events),
            Page::Helpdesk(page) => Events::Helpdesk(&page.changes),
        }
    }

    fn next_cursor(&self) -> Option<&str> {
        match self {
            Page::Social(page) => page.next_cursor.as_deref(),
            Page::Helpdesk(page) => page.next_cursor.as_deref(),
        }
    }

    fn has_more(&self) -> bool {
        match self {
            Page::Social(page) => page.has_more,
            Page::Helpdesk(page) => page.has_more,
        }
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
enum PollError {
    /// The plugin's poll failed.
    #[error("poll failed: {0}")]
    Call(CallError),
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl From<crate::store::StoreError> for PollError {
    fn from(error: crate::store::StoreError) -> Self {
        PollError::Hub(error.into())
    }
}

async fn poll_pages(
    hub: &Hub,
    job: &JobRow,
    owner: &str,
    pages: &mut i64,
    stored: &mut i64,
) -> Result<(), PollError> {
    let bound = hub.bind(&job.installation_id).await?;
    let poller = if bound.installation.kind == "social" {
        Poller::Social(hub.social_connector(&bound)?)
    } else {
        Poller::Helpdesk(hub.helpdesk_connector(&bound)?)
    };
    for _ in 0..MAX_PAGES {
        let cursor = hub
            .inner
            .db
            .get_cursor(&job.installation_id, &job.stream)
            .await?;
        let started = Instant::now();
        let page = poller.poll(&job.stream, cursor.as_deref()).await;
        hub.inner
            .metrics
            .plugin_call(&job.installation_id, poller.operation(), started.elapsed());
        let page = page.map_err(PollError::Call)?;
        let position = page.next_cursor().map(|c| (job.stream.as_str(), c));
        let new = store_events(
            hub,
            &job.installation_id,
            Source::Poll,
            page.events(),
            position,
        )
        .await?;
        if let Page::Social(page) = &page {
            super::care::apply_reports(
                hub,
                &job.installation_id,
                &page.statuses,
                &page.ownership_changes,
            )
            .await?;
        }
        *pages += 1;
        *stored += new as i64;
        // Without a new cursor another call would read the same page again.
        if !page.has_more() || page.next_cursor().is_none() {
            return Ok(());
        }
        if !hub
            .inner
            .db
            .renew_job_lease(&job.id, owner, now_ms() + LEASE.as_millis() as i64)
            .await?
        {
            return Err(HubError::Conflict(
                "the job's lease was taken over by another runner".into(),
            )
            .into());
        }
    }
    Ok(())
}
