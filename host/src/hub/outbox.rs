//! Outbox delivery: workers claim due rows with a lease, perform the effect through the
//! target installation's plugin with the row's idempotency key, and record the result (the
//! ids the service gave, so their echoes are recognized) in one transaction.
//!
//! Failures are retried: after the service's Retry-After when it is rate limited, with
//! exponential backoff and full jitter when the failure is transient. Permanent failures, and
//! rows out of attempts, become dead letters that an admin can retry.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::helpdesk_changes::priority;
use super::social_events::{kind_from_name, new_ticket_row};
use super::{now_ms, retry_of, Hub, HubError, LinkSettings, Retry};
use crate::runtime::latest::{
    Attachment, CommentAuthor, ConnectorError, MessagePart, NewComment, NewTicket, OutboundMessage,
    RequesterRequest, SocialIdentity, UnconfirmedAttempt, Visibility,
};
use crate::runtime::{CallError, HelpdeskConnector};
use crate::store::{ConversationRow, GroupCommit, OutboxRow, StoreError, TicketRow, Tx};

/// How often a delivery in progress renews its row's lease, as a share of the lease: a
/// delivery can take several calls of up to a minute each, so no fixed lease outlasts every
/// one, and a row reclaimed mid-flight would be delivered twice. The lease itself then only
/// bounds how long the rows of a host that died wait for another.
const RENEWALS_PER_LEASE: u32 = 3;
/// Longest sleep of an idle worker: rows may come from another host, or become due.
const IDLE: Duration = Duration::from_millis(500);
/// Shortest sleep of a worker that found nothing to claim.
const MIN_IDLE: Duration = Duration::from_millis(20);

/// A payload as the outbox row stores it.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and lists: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A ticket to create, with the requester's first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTicketPayload {
    pub subject: String,
    pub body: String,
    pub public: bool,
    pub attachments: Vec<Attachment>,
    pub tags: Vec<String>,
    pub priority: Option<String>,
    pub channel: String,
    /// The hub conversation id, stored on the ticket to link back.
    pub external_id: String,
    pub contact_id: String,
    /// What the network said about the customer's first message (contract 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<super::care::MessageContext>,
}

/// A customer's follow-up message for an existing ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddCommentPayload {
    pub body: String,
    pub public: bool,
    pub attachments: Vec<Attachment>,
    pub contact_id: String,
    pub channel: String,
}

/// One part of an agent's reply for the customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMessagePayload {
    /// 1-based part number, of `parts`.
    pub part: u32,
    pub parts: u32,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// `public` or `private`: how the reply goes out. `None` (rows queued before contract
    /// 0.3): the conversation's own visibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// A call that prepares the effect (finding the requester).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The call that performs the effect (create, comment, send).
    #[error(transparent)]
    Effect(CallError),
    /// Will not succeed by retrying (missing data, a ticket that was never created).
    #[error("{0}")]
    Permanent(String),
    /// Might succeed later (configuration, database).
    #[error("{0}")]
    Temporary(String),
}

impl From<StoreError> for DeliveryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(m) | StoreError::Corrupt(m) => DeliveryError::Permanent(m),
            other => DeliveryError::Temporary(other.to_string()),
        }
    }
}

impl From<HubError> for DeliveryError {
    fn from(error: HubError) -> Self {
        match error {
            HubError::NotFound(m) => DeliveryError::Permanent(m),
            other => DeliveryError::Temporary(other.to_string()),
        }
    }
}

/// Claims due rows and delivers them, up to `workers` rows at a time (of different
/// conversations), until `shutdown`; deliveries in progress then finish.
///
/// One task claims for the whole process, in batches: a claim is a write transaction, and
/// claiming row by row from many workers made the claims, not the deliveries, the bottleneck.
pub(crate) async fn run_dispatcher(hub: Hub, shutdown: CancellationToken) {
    hub.recover().await;
    let owner = format!("{}/outbox", hub.inner.host_id);
    let slots = hub.inner.config.outbox.workers.max(1);
    let lease = hub.inner.config.outbox.lease;
    let mut deliveries = JoinSet::new();
    loop {
        while deliveries.try_join_next().is_some() {}
        if shutdown.is_cancelled() {
            break;
        }
        let free = slots.saturating_sub(deliveries.len());
        if free > 0 {
            let now = now_ms();
            match hub
                .inner
                .db
                .claim_outbox(&owner, now, now + lease.as_millis() as i64, free)
                .await
            {
                Ok(rows) if !rows.is_empty() => {
                    for row in rows {
                        let hub = hub.clone();
                        deliveries.spawn(async move { deliver(&hub, row).await });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "claiming outbox rows failed"),
            }
        }
        // Nothing claimable now, or no free slot (then only a finished delivery matters).
        // Rows that wait behind an earlier row of their conversation look due but are not; a
        // finished delivery or new rows wake this loop, and the floor keeps it from spinning
        // on rows another host is delivering.
        let wait = if free == 0 {
            IDLE
        } else {
            match hub.inner.db.next_outbox_due().await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - now_ms()).clamp(MIN_IDLE.as_millis() as i64, IDLE.as_millis() as i64)
                        as u64,
                ),
                _ => IDLE,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hub.inner.outbox.notified() => {}
            // A finished delivery frees a slot and may make its conversation's next row due.
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            _ = tokio::time::sleep(wait), if free > 0 => {}
        }
    }
    while deliveries.join_next().await.is_some() {}
}

/// Delivers every row that is due now, one at a time, then returns how many were handled.
/// For tests and tools that drive the hub without background workers.
pub async fn deliver_due(hub: &Hub) -> Result<usize, StoreError> {
    let owner = format!("{}/inline", hub.inner.host_id);
    let lease = hub.inner.config.outbox.lease;
    let mut handled = 0;
    loop {
        let now = now_ms();
        let rows = hub
            .inner
            .db
            .claim_outbox(&owner, now, now + lease.as_millis() as i64, 1)
            .await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(handled);
        };
        deliver(hub, row).await;
        handled += 1;
    }
}

/// One attempt at one row, with its outcome recorded.
async fn deliver(hub: &Hub, row: OutboxRow) {
    let span = tracing::info_span!(
        "outbox",
        installation = %row.installation_id,
        conversation = %row.conversation_id,
        kind = %row.kind,
        row = row.id,
        attempt = row.attempts,
    );
    async {
        let attempt = async {
            match row.kind.as_str() {
                "create-ticket" => create_ticket(hub, &row).await.map(|()| true),
                "add-comment" => add_comment(hub, &row).await,
                "send-message" => send_message(hub, &row).await,
                other => Err(DeliveryError::Permanent(format!("unknown outbox kind `{other}`"))),
            }
        };
        let result = tokio::select! {
            result = attempt => result,
            never = renew_lease(hub, &row) => match never {},
        };
        let error = match result {
            Ok(delivered) => {
                if delivered {
                    hub.inner.metrics.message_out(&row.installation_id);
                    tracing::debug!("delivered");
                }
                return;
            }
            Err(error) => error,
        };
        // OAuth2: while the installation needs reauthorization the row waits, uncounted.
        if super::oauth::park_if_needs_reauth(hub, &row, &error.to_string()).await {
            return;
        }
        let config = &hub.inner.config.outbox;
        if let DeliveryError::Call(CallError::Busy(_)) | DeliveryError::Effect(CallError::Busy(_)) =
            &error
        {
            // The plugin never ran: the hub had no instance for it in time. That is the
            // hub's load, not the row's fault, so the attempt is not counted (a long overload
            // would otherwise make dead letters of rows that never reached the service).
            let wait = backoff(row.attempts.max(1) as u32, config.base_backoff, config.max_backoff);
            let now = now_ms();
            let message = error.to_string();
            tracing::warn!(error = %message, retry_in_ms = wait.as_millis() as u64, "no plugin instance in time; will retry, uncounted");
            if let Err(e) = hub
                .inner
                .db
                .park_outbox_row(row.id, &message, now + wait.as_millis() as i64, now)
                .await
            {
                tracing::warn!(error = %e, "could not put the delivery back");
            }
            return;
        }
        let retry = match &error {
            DeliveryError::Call(call) | DeliveryError::Effect(call) => retry_of(call),
            DeliveryError::Permanent(_) => Retry::Never,
            DeliveryError::Temporary(_) => Retry::Backoff,
        };
        let attempts = row.attempts.max(1) as u32;
        let message = error.to_string();
        // Whether the service may have acted: the effect's own call failed in a way worth a
        // backoff (a timeout, a 5xx, a lost connection), or the hub could not record a result
        // (counted conservatively, even when that happened before the call).
        let unconfirmed = match &error {
            DeliveryError::Effect(_) => matches!(retry, Retry::Backoff),
            DeliveryError::Temporary(_) => true,
            DeliveryError::Call(_) | DeliveryError::Permanent(_) => false,
        };
        let now = now_ms();
        let outcome = match retry {
            Retry::Never => Err(message.clone()),
            _ if attempts >= config.max_attempts => Err(format!("gave up after {attempts} attempts: {message}")),
            Retry::After(wait) => Ok(wait),
            Retry::Backoff => Ok(backoff(attempts, config.base_backoff, config.max_backoff)),
        };
        let recorded = match outcome {
            Ok(wait) => {
                tracing::warn!(error = %message, retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
                hub.inner.metrics.retry(&row.installation_id, &row.kind);
                hub.inner.db.retry_outbox_later(row.id, now + wait.as_millis() as i64, &message, unconfirmed, now).await
            }
            Err(last_error) => {
                tracing::error!(error = %last_error, "delivery failed for good; dead letter");
                hub.inner.metrics.dead_lettered(&row.installation_id, &row.kind);
                hub.inner.db.dead_letter_outbox(row.id, &last_error, unconfirmed, now).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the row is tried again.
            tracing::warn!(%error, "could not record the delivery outcome");
        }
    }
    .instrument(span)
    .await
}

/// Records a delivery's outcome in the next shared transaction: several deliveries' outcomes
/// then share one commit and its fsync (see [`GroupCommit`]).
async fn record<T, F>(hub: &Hub, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
{
    hub.inner
        .completions
        .get_or_init(|| async { GroupCommit::start(hub.inner.db.clone()) })
        .await
        .write(work)
        .await
}

/// Keeps `row`'s lease alive while its delivery runs; never returns (the delivery ends it by
/// finishing first).
async fn renew_lease(hub: &Hub, row: &OutboxRow) -> std::convert::Infallible {
    let lease = hub.inner.config.outbox.lease;
    let mut every = tokio::time::interval(lease / RENEWALS_PER_LEASE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the lease was just taken.
    every.tick().await;
    loop {
        every.tick().await;
        let Some(owner) = row.lease_owner.as_deref() else {
            return std::future::pending().await;
        };
        let until = now_ms() + lease.as_millis() as i64;
        match hub.inner.db.renew_outbox_lease(row.id, owner, until).await {
            Ok(true) => {}
            // Reclaimed or finished meanwhile (a host paused past its lease); the delivery
            // goes on, as it would have without renewals.
            Ok(false) => tracing::warn!("the row's lease was lost during the delivery"),
            Err(error) => tracing::warn!(%error, "could not renew the row's lease"),
        }
    }
}

/// Exponential backoff with full jitter: a random wait up to `base * 2^(attempt-1)`, capped.
fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(max).as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
}

fn payload<T: for<'de> Deserialize<'de>>(row: &OutboxRow) -> Result<T, DeliveryError> {
    serde_json::from_str(&row.payload)
        .map_err(|e| DeliveryError::Permanent(format!("corrupt payload: {e}")))
}

/// Times a plugin call into the metrics.
async fn timed<T>(
    hub: &Hub,
    installation: &str,
    operation: &str,
    call: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    let started = Instant::now();
    let result = call.await;
    hub.inner
        .metrics
        .plugin_call(installation, operation, started.elapsed());
    result
}

/// The contact's identity on the conversation's network.
async fn identity(
    hub: &Hub,
    contact_id: &str,
    network: &str,
) -> Result<SocialIdentity, DeliveryError> {
    let row = hub
        .inner
        .db
        .identity_of_contact(contact_id, network)
        .await?
        .ok_or_else(|| {
            DeliveryError::Permanent(format!("contact {contact_id} has no {network} identity"))
        })?;
    Ok(SocialIdentity {
        external_id: row.external_id,
        network: row.network,
        handle: row.handle,
        display_name: row.display_name,
    })
}

/// The helpdesk requester of a contact: cached, or found or created through the plugin.
async fn requester(
    hub: &Hub,
    conn: &HelpdeskConnector,
    helpdesk: &str,
    contact_id: &str,
    network: &str,
) -> Result<String, DeliveryError> {
    if let Some(id) = hub.inner.db.get_requester(contact_id, helpdesk).await? {
        return Ok(id);
    }
    let identity = identity(hub, contact_id, network).await?;
    let request = RequesterRequest {
        external_id: format!("{}:{}", identity.network, identity.external_id),
        identity,
    };
    let found = timed(
        hub,
        helpdesk,
        "find-or-create-requester",
        conn.find_or_create_requester(&request),
    )
    .await?;
    tracing::debug!(requester = %found.id, created = found.created, "requester resolved");
    let (contact, desk, requester, now) = (
        contact_id.to_string(),
        helpdesk.to_string(),
        found.id.clone(),
        now_ms(),
    );
    record(hub, move |tx| {
        Box::pin(async move { tx.save_requester(&contact, &desk, &requester, now).await })
    })
    .await?;
    Ok(found.id)
}

fn visibility(public: bool) -> Visibility {
    if public {
        Visibility::Public
    } else {
        Visibility::Private
    }
}

async fn create_ticket(hub: &Hub, row: &OutboxRow) -> Result<(), DeliveryError> {
    let p: CreateTicketPayload = payload(row)?;
    let ticket_id = row
        .ticket_id
        .as_deref()
        .ok_or_else(|| DeliveryError::Permanent("row without ticket".into()))?;
    let ticket = hub.inner.db.get_ticket(ticket_id).await?;
    if ticket.external_id.is_none() {
        let bound = hub.bind(&row.installation_id).await?;
        let conn = hub.helpdesk_connector(&bound)?;
        let requester_id =
            requester(hub, &conn, &row.installation_id, &p.contact_id, &p.channel).await?;
        let new = NewTicket {
            idempotency_key: row.idempotency_key.clone(),
            external_id: p.external_id.clone(),
            requester_id,
            subject: p.subject.clone(),
            body: p.body.clone(),
            visibility: visibility(p.public),
            attachments: p.attachments.clone(),
            tags: p.tags.clone(),
            priority: p.priority.as_deref().and_then(priority),
            status: None,
            channel: p.channel.clone(),
            unconfirmed: unconfirmed(row, || {
                hub.inner.db.helpdesk_ids_of_tickets(&row.conversation_id)
            })
            .await?,
            customer_context: p.context.as_ref().map(|c| c.to_contract()),
        };
        let created = timed(
            hub,
            &row.installation_id,
            "create-ticket",
            conn.create_ticket(&new),
        )
        .await
        .map_err(DeliveryError::Effect)?;
        tracing::debug!(ticket = %created.id, created = created.created, "ticket filed");
        let (ticket, message, outbox_row, now) = (
            ticket_id.to_string(),
            row.message_id.clone(),
            row.id,
            now_ms(),
        );
        let requeued = record(hub, move |tx| {
            Box::pin(async move {
                let requeued = tx
                    .set_ticket_created(&ticket, &created.id, created.url.as_deref(), now)
                    .await?;
                if let Some(message) = &message {
                    tx.set_message_delivered(message, None, None, now).await?;
                }
                tx.complete_outbox(outbox_row, now).await?;
                Ok(requeued)
            })
        })
        .await?;
        if requeued > 0 {
            tracing::info!(
                ticket = %ticket_id,
                changes = requeued,
                "changes that arrived before the ticket was recorded go to the processor"
            );
            hub.inner.inbound.notify_one();
        }
    } else {
        // Created by an earlier attempt whose completion was recorded only halfway.
        let (outbox_row, now) = (row.id, now_ms());
        record(hub, move |tx| {
            Box::pin(async move { tx.complete_outbox(outbox_row, now).await })
        })
        .await?;
    }
    Ok(())
}

/// How many of a ticket's known comment ids a retried comment is told about: the newest are
/// the only ones a look-back from an attempt's start can meet.
const KNOWN_COMMENTS: i64 = 500;

/// What the plugin must know about an earlier attempt at `row` that may have taken effect,
/// with the ids the hub already maps to something else (`known_ids`).
async fn unconfirmed<F, Fut>(
    row: &OutboxRow,
    known_ids: F,
) -> Result<Option<UnconfirmedAttempt>, DeliveryError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, StoreError>>,
{
    let Some(since) = row.unconfirmed_since else {
        return Ok(None);
    };
    tracing::info!(
        since,
        "an earlier attempt may have taken effect; the plugin looks first"
    );
    Ok(Some(UnconfirmedAttempt {
        started_at: since.max(0) as u64,
        known_ids: known_ids().await?,
    }))
}

/// Files a customer's follow-up on its ticket. Returns false when the helpdesk had closed the
/// ticket meanwhile and the row now opens a new one instead.
async fn add_comment(hub: &Hub, row: &OutboxRow) -> Result<bool, DeliveryError> {
    let p: AddCommentPayload = payload(row)?;
    let ticket_id = row
        .ticket_id
        .as_deref()
        .ok_or_else(|| DeliveryError::Permanent("row without ticket".into()))?;
    let ticket = hub.inner.db.get_ticket(ticket_id).await?;
    let Some(external) = ticket.external_id.clone() else {
        return Err(DeliveryError::Permanent(
            "the ticket was never created in the helpdesk (its create-ticket is a dead letter); retry that first".into(),
        ));
    };
    let bound = hub.bind(&row.installation_id).await?;
    let conn = hub.helpdesk_connector(&bound)?;
    let requester_id =
        requester(hub, &conn, &row.installation_id, &p.contact_id, &p.channel).await?;
    let comment = NewComment {
        idempotency_key: row.idempotency_key.clone(),
        ticket_id: external,
        author: CommentAuthor::Requester(requester_id),
        body: p.body.clone(),
        visibility: visibility(p.public),
        attachments: p.attachments.clone(),
        unconfirmed: unconfirmed(row, || {
            hub.inner
                .db
                .helpdesk_ids_of_comments(ticket_id, KNOWN_COMMENTS)
        })
        .await?,
    };
    let added = match timed(
        hub,
        &row.installation_id,
        "add-comment",
        conn.add_comment(&comment),
    )
    .await
    {
        Err(CallError::Connector(ConnectorError::Policy(policy)))
            if policy.code == TICKET_CLOSED =>
        {
            refile_on_new_ticket(hub, row, &ticket, p).await?;
            return Ok(false);
        }
        result => result.map_err(DeliveryError::Effect)?,
    };
    tracing::debug!(comment = %added.id, "comment filed");
    let (installation, message, outbox_row, now) = (
        row.installation_id.clone(),
        row.message_id.clone(),
        row.id,
        now_ms(),
    );
    record(hub, move |tx| {
        Box::pin(async move {
            tx.insert_own_id(&installation, &added.id, message.as_deref(), now)
                .await?;
            if let Some(message) = &message {
                tx.set_message_delivered(message, Some(&added.id), None, now)
                    .await?;
            }
            tx.complete_outbox(outbox_row, now).await
        })
    })
    .await?;
    Ok(true)
}

/// The policy code of a comment refused because the helpdesk closed the ticket for good.
const TICKET_CLOSED: &str = "ticket-closed";

/// The helpdesk closed the ticket between two polls and refuses the customer's follow-up:
/// the follow-up opens a new ticket, as it would have had the hub seen the close in time.
async fn refile_on_new_ticket(
    hub: &Hub,
    row: &OutboxRow,
    closed: &TicketRow,
    comment: AddCommentPayload,
) -> Result<(), DeliveryError> {
    let now = now_ms();
    let mut tx = hub.inner.db.begin().await?;
    let conversation = tx
        .get_conversation_tx(&row.conversation_id)
        .await?
        .ok_or_else(|| DeliveryError::Permanent("the conversation is gone".into()))?;
    let settings = tx
        .link_for_social(&conversation.social_installation_id)
        .await?
        .map(|link| LinkSettings::of(&link))
        .unwrap_or_default();
    tx.update_ticket_state(&closed.id, "closed", closed.status_at, false, now)
        .await?;
    let ticket = new_ticket_row(&conversation.id, &row.installation_id, now);
    tx.insert_ticket(&ticket).await?;
    let payload = CreateTicketPayload::first_message(
        &conversation,
        &settings,
        &comment.body,
        None,
        comment.attachments,
        &comment.contact_id,
    );
    tx.refile_on_new_ticket(
        row.id,
        &closed.id,
        &ticket.id,
        &format!("ticket:{}", ticket.id),
        &to_json(&payload),
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(closed = %closed.id, ticket = %ticket.id, "the helpdesk closed the ticket; the follow-up opens a new one");
    hub.inner.outbox.notify_one();
    Ok(())
}

/// Sends one part of an agent's reply. Returns false when the row is held instead, because
/// another app owns the conversation.
async fn send_message(hub: &Hub, row: &OutboxRow) -> Result<bool, DeliveryError> {
    let p: SendMessagePayload = payload(row)?;
    let conversation: ConversationRow = hub.inner.db.get_conversation(&row.conversation_id).await?;
    let ownership = hub.inner.db.ownership(&conversation.id).await?;
    if !ownership.owned {
        let reason = super::care::not_owned_reason(ownership.owner.as_deref());
        tracing::info!(%reason, "reply held");
        hub.inner
            .db
            .hold_outbox_row(row.id, &reason, now_ms())
            .await?;
        return Ok(false);
    }
    let bound = hub.bind(&row.installation_id).await?;
    let answer = p
        .visibility
        .clone()
        .unwrap_or_else(|| conversation.visibility.clone());
    super::care::check_reply(
        &bound.manifest().channel(),
        &conversation.message_kind,
        &conversation.visibility,
        &answer,
        p.attachments.len(),
        p.parts as usize,
        conversation.last_inbound_at.map(|at| now_ms() - at),
    )
    .map_err(|refused| DeliveryError::Permanent(format!("refused before sending: {refused}")))?;
    let recipient = identity(hub, &conversation.contact_id, &conversation.channel)
        .await
        .ok();
    let conn = hub.social_connector(&bound)?;
    let message = OutboundMessage {
        idempotency_key: row.idempotency_key.clone(),
        thread_id: conversation.thread_id.clone(),
        reply_to: None,
        kind: kind_from_name(&conversation.message_kind),
        recipient,
        text: p.text.clone(),
        attachments: p.attachments.clone(),
        last_inbound_at: conversation.last_inbound_at.map(|t| t.max(0) as u64),
        reply_handle: conversation.reply_handle.clone(),
        visibility: if answer == "private" {
            Visibility::Private
        } else {
            Visibility::Public
        },
        part: MessagePart {
            index: p.part,
            count: p.parts,
        },
    };
    let sent = timed(hub, &row.installation_id, "send", conn.send(&message))
        .await
        .map_err(DeliveryError::Effect)?;
    tracing::debug!(part = p.part, parts = p.parts, ids = ?sent.message_ids, "message sent");
    let (installation, message, outbox_row, now) = (
        row.installation_id.clone(),
        row.message_id.clone(),
        row.id,
        now_ms(),
    );
    record(hub, move |tx| {
        Box::pin(async move {
            for id in &sent.message_ids {
                tx.insert_own_id(&installation, id, message.as_deref(), now)
                    .await?;
                tx.link_sent_id(&installation, id, outbox_row).await?;
            }
            tx.complete_outbox(outbox_row, now).await?;
            if let Some(message) = &message {
                if tx.message_fully_delivered(message).await? {
                    let first = sent.message_ids.first().map(String::as_str);
                    tx.set_message_delivered(message, None, first, now).await?;
                }
            }
            Ok(())
        })
    })
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(300);
        for attempt in 1..40 {
            let wait = backoff(attempt, base, max);
            assert!(wait <= max);
            assert!(wait <= base * 2u32.saturating_pow(attempt - 1).max(1));
        }
    }
}
