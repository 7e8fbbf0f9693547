//! Intake: webhook deliveries and poll pages into the durable inbound queue.
//!
//! A webhook is verified and normalized by its installation's plugin, and its events are
//! stored (deduplicated by installation and external id) before the sender gets its answer.
//! Polled pages are stored with the cursor that covers them in one transaction. Either way the
//! processor ([`super::processor`]) is woken to take them on.
//!
//! Webhooks' events go through one writer task (group commit): it stores what has queued up
//! meanwhile in a single transaction and answers each request after that commit. Under
//! concurrent deliveries a transaction then carries many webhooks, instead of each paying its
//! own turn at the write lock and its own commit (and cutting the processor's transaction
//! short, see [`crate::store::Db::intake_waiting`]). A webhook is still answered only once its
//! events are durable.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::{now_ms, Hub, HubError};
use crate::runtime::latest::{
    ConnectorError, SocialEvent, TicketChange, WebhookRequest, WebhookResponse,
};
use crate::runtime::CallError;
use crate::store::{Db, NewInboundEvent};

/// Where a stored event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Poll,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
        }
    }
}

/// Events of one installation, as a plugin normalized them.
pub(crate) enum Events<'a> {
    Social(&'a [SocialEvent]),
    Helpdesk(&'a [TicketChange]),
}

impl Events<'_> {
    fn len(&self) -> usize {
        match self {
            Events::Social(e) => e.len(),
            Events::Helpdesk(c) => c.len(),
        }
    }
}

/// Stores events durably, deduplicated, with the poll cursor that covers them (if any) in the
/// same transaction. Returns how many were new, and wakes the processor when there are any.
pub(crate) async fn store_events(
    hub: &Hub,
    installation_id: &str,
    source: Source,
    events: Events<'_>,
    cursor: Option<(&str, &str)>,
) -> Result<u64, HubError> {
    let now = now_ms();
    let rows = to_rows(installation_id, source, &events, now)?;
    let inserted = match (source, cursor) {
        // A webhook's sender waits for the commit: it joins the intake's group commit.
        (Source::Webhook, None) => {
            let writer = hub
                .inner
                .intake
                .get_or_init(|| async { IntakeWriter::start(hub.inner.db.clone()) })
                .await;
            writer
                .store(rows)
                .await
                .map_err(|e| HubError::Internal(anyhow::anyhow!(e)))?
        }
        (_, cursor) => {
            let mut tx = hub.inner.db.begin().await?;
            let inserted = tx.insert_inbound_events(&rows).await?;
            if let Some((stream, cursor)) = cursor {
                tx.save_cursor(installation_id, stream, cursor, now).await?;
            }
            tx.commit().await?;
            inserted
        }
    };
    if inserted > 0 {
        if matches!(events, Events::Social(_)) {
            hub.inner.metrics.message_in(installation_id, inserted);
        }
        hub.inner.inbound.notify_one();
    }
    tracing::debug!(installation = %installation_id, source = source.as_str(), received = events.len(), new = inserted, "events stored");
    Ok(inserted)
}

fn to_rows(
    installation_id: &str,
    source: Source,
    events: &Events<'_>,
    now: i64,
) -> Result<Vec<NewInboundEvent>, HubError> {
    let row = |kind, external_id: &str, payload: String| NewInboundEvent {
        installation_id: installation_id.to_string(),
        external_id: external_id.to_string(),
        kind,
        source: source.as_str(),
        payload,
        received_at: now,
    };
    let json =
        |e: serde_json::Error| HubError::Internal(anyhow::anyhow!("serializing an event: {e}"));
    Ok(match events {
        Events::Social(events) => events
            .iter()
            .map(|e| {
                Ok(row(
                    "social",
                    &e.message_id,
                    serde_json::to_string(e).map_err(json)?,
                ))
            })
            .collect::<Result<_, HubError>>()?,
        Events::Helpdesk(changes) => changes
            .iter()
            .map(|c| {
                Ok(row(
                    "helpdesk",
                    &c.change_id,
                    serde_json::to_string(c).map_err(json)?,
                ))
            })
            .collect::<Result<_, HubError>>()?,
    })
}

/// `Hub::handle_webhook`: the plugin verifies and normalizes, the hub stores, then answers.
pub(crate) async fn handle_webhook(
    hub: &Hub,
    installation_id: &str,
    request: WebhookRequest,
) -> Result<WebhookResponse, HubError> {
    let span = tracing::info_span!("webhook", installation = %installation_id);
    async move {
        // Counted until its events are stored: the processor waits for them (see
        // `ordering::ready`) so that concurrent deliveries are taken in order.
        let in_flight = hub.webhook_started(installation_id);
        let bound = match hub.bind(installation_id).await {
            Ok(bound) if bound.installation.enabled => bound,
            Ok(_) => {
                return Err(HubError::NotFound(format!(
                    "installation `{installation_id}` is disabled"
                )))
            }
            Err(HubError::NotFound(_)) => {
                return Err(HubError::NotFound(format!(
                    "installation `{installation_id}` does not exist"
                )))
            }
            Err(e) => return Err(e),
        };
        if !bound.manifest().accepts_webhooks {
            return Err(HubError::NotFound(format!(
                "installation `{installation_id}` does not take webhooks"
            )));
        }
        let started = Instant::now();
        let response = if bound.installation.kind == "social" {
            let outcome = hub.social_connector(&bound)?.handle_webhook(request).await;
            hub.inner
                .metrics
                .plugin_call(installation_id, "handle-webhook", started.elapsed());
            let outcome = outcome.map_err(webhook_error)?;
            store_events(
                hub,
                installation_id,
                Source::Webhook,
                Events::Social(&outcome.events),
                None,
            )
            .await?;
            super::care::apply_reports(
                hub,
                installation_id,
                &outcome.statuses,
                &outcome.ownership_changes,
            )
            .await?;
            outcome.response
        } else {
            let outcome = hub
                .helpdesk_connector(&bound)?
                .handle_webhook(request)
                .await;
            hub.inner
                .metrics
                .plugin_call(installation_id, "handle-webhook", started.elapsed());
            let outcome = outcome.map_err(webhook_error)?;
            store_events(
                hub,
                installation_id,
                Source::Webhook,
                Events::Helpdesk(&outcome.changes),
                None,
            )
            .await?;
            outcome.response
        };
        drop(in_flight);
        hub.inner.inbound.notify_one();
        Ok(response)
    }
    .instrument(span)
    .await
}

fn webhook_error(error: CallError) -> HubError {
    match error {
        CallError::Connector(ConnectorError::Unauthorized(m)) => HubError::Unauthorized(m),
        CallError::Connector(ConnectorError::InvalidInput(f)) => {
            HubError::Invalid(format!("invalid webhook `{}`: {}", f.field, f.message))
        }
        CallError::Busy(busy) => HubError::Busy(busy),
        other => HubError::Internal(anyhow::anyhow!(
            "the plugin could not handle the webhook: {other}"
        )),
    }
}

// ----- webhooks in flight -----------------------------------------------------------------------

impl Hub {
    /// Verifies a webhook through the installation's plugin, stores the events it carries
    /// (deduplicated) durably, and returns the answer for the sender. Nothing is stored when
    /// the plugin refuses the request.
    pub async fn handle_webhook(
        &self,
        installation_id: &str,
        request: WebhookRequest,
    ) -> Result<WebhookResponse, HubError> {
        handle_webhook(self, installation_id, request).await
    }

    /// Counts a webhook request of `installation` as in flight until the guard is dropped.
    pub(crate) fn webhook_started(&self, installation: &str) -> InFlight {
        let started_at = now_ms();
        if let Ok(mut map) = self.inner.webhooks_in_flight.lock() {
            *map.entry(installation.to_string())
                .or_default()
                .entry(started_at)
                .or_default() += 1;
        }
        InFlight {
            hub: self.clone(),
            installation: installation.to_string(),
            started_at,
        }
    }

    /// When the oldest webhook request of `installation` still being handled started.
    pub(crate) fn oldest_webhook_in_flight(&self, installation: &str) -> Option<i64> {
        self.inner
            .webhooks_in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(installation)?.keys().next().copied())
    }
}

/// A webhook request being handled; see [`Hub::webhook_started`].
pub(crate) struct InFlight {
    hub: Hub,
    installation: String,
    started_at: i64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut map) = self.hub.inner.webhooks_in_flight.lock() {
            if let Some(starts) = map.get_mut(&self.installation) {
                if let Some(count) = starts.get_mut(&self.started_at) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        starts.remove(&self.started_at);
                    }
                }
                if starts.is_empty() {
                    map.remove(&self.installation);
                }
            }
        }
    }
}

// ----- group commit -------------------------------------------------------------------------------

/// Most webhook requests one transaction takes.
const MAX_BATCH: usize = 128;

/// One webhook's rows, and where to say how many were new.
struct Request {
    rows: Vec<NewInboundEvent>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The sending side of the writer task; cheap to share.
pub(crate) struct IntakeWriter {
    queue: mpsc::UnboundedSender<Request>,
}

impl IntakeWriter {
    /// Starts the writer task on `db`. It ends when the writer is dropped.
    pub(crate) fn start(db: Db) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(db, requests));
        Self { queue }
    }

    /// Stores `rows` durably (deduplicated) and returns how many were new.
    pub(crate) async fn store(&self, rows: Vec<NewInboundEvent>) -> Result<u64, String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Request { rows, done })
            .map_err(|_| "the intake writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the intake writer stopped before storing the events".to_string())?
    }
}

async fn run(db: Db, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while let Some(first) = requests.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match write(&db, &batch).await {
            Ok(counts) => {
                for (request, new) in batch.drain(..).zip(counts) {
                    // The request may have gone away (a client timeout); its events are stored.
                    let _ = request.done.send(Ok(new));
                }
            }
            Err(error) => {
                // The whole batch rolled back: every sender gets a 500 and delivers again.
                let message = format!("storing the events failed: {error}");
                for request in batch.drain(..) {
                    let _ = request.done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// One transaction for the whole batch; the new rows of each request, in order.
async fn write(db: &Db, batch: &[Request]) -> Result<Vec<u64>, crate::store::StoreError> {
    let mut tx = db.begin_intake().await?;
    let mut counts = Vec::with_capacity(batch.len());
    for request in batch {
        counts.push(tx.insert_inbound_events(&request.rows).await?);
    }
    tx.commit().await?;
    Ok(counts)
}
