//! Inbound: webhook and poll events into the durable intake, and the processor that turns
//! them into conversations, tickets, messages and outbox rows.
//!
//! Every event is processed in one transaction together with the outbox rows it causes, so
//! a crash leaves either nothing or everything of it. Events are deduplicated on arrival by
//! (installation, external id); the hub's own messages coming back are recognized by their
//! echo flag or by the ids the outbox recorded when it posted them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::intake::IntakeWriter;
use super::outbox::{AddCommentPayload, CreateTicketPayload, SendMessagePayload};
use super::split::{split, LengthUnit};
use super::{new_id, now_ms, Hub, HubError, LinkSettings, WebhookRequest, WebhookResponse};
use crate::runtime::bindings::helpdesk::exports::switchboard::connector::helpdesk_connector::{
    ChangeKind, TicketChange, TicketPriority, TicketStatus,
};
use crate::runtime::bindings::social::exports::switchboard::connector::social_connector::{
    MessageKind, SocialEvent,
};
use crate::runtime::bindings::types::{ConnectorError, Visibility};
use crate::runtime::bounds::MAX_REPLY_PARTS;
use crate::runtime::CallError;
use crate::store::{
    ConversationRow, EventOutcome, IdentityInput, InboundEvent, LinkRow, MessageRow,
    NewInboundEvent, NewOutbox, StoreError, TicketRow, Tx,
};

/// Events read per sweep of the intake.
const BATCH: i64 = 200;
/// How often the intake is swept even without a wake-up (events from another host).
const SWEEP: Duration = Duration::from_secs(1);

// ----- intake ---------------------------------------------------------------------------------

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
        // `process_ready`) so that concurrent deliveries are taken in order.
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

// ----- processor ------------------------------------------------------------------------------

/// Processes stored events until `shutdown`: woken when events arrive, and every second.
pub(crate) async fn run_processor(hub: Hub, shutdown: CancellationToken) {
    hub.recover().await;
    loop {
        let (processed, held_until) = match process_ready(&hub).await {
            Ok(pass) => pass,
            Err(error) => {
                tracing::warn!(%error, "processing inbound events failed; retrying");
                (0, None)
            }
        };
        if processed as i64 >= BATCH {
            // More may be waiting; go on without sleeping, but let shutdown through.
            if shutdown.is_cancelled() {
                break;
            }
            continue;
        }
        if let Some(at) = held_until {
            // New events would only extend the hold; wake when it may have ended. (Events of
            // other installations wait at most SETTLE_MS for this.)
            let wait = Duration::from_millis((at - now_ms()).clamp(1, SETTLE_MS) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hub.inner.inbound.notified() => {}
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

/// Processes everything waiting in the intake, waiting out holds (see [`process_ready`]).
/// Returns how many events were handled.
pub async fn process_pending(hub: &Hub) -> Result<usize, StoreError> {
    let mut handled = 0;
    loop {
        let (count, held_until) = process_ready(hub).await?;
        handled += count;
        // Held events become ready within MAX_HOLD_MS, so this ends.
        match held_until {
            Some(at) => {
                tokio::time::sleep(Duration::from_millis((at - now_ms()).max(1) as u64)).await
            }
            None => return Ok(handled),
        }
    }
}

/// The longest an event that came by webhook waits for other webhooks of its installation
/// that are still being handled (see [`process_ready`]).
const MAX_HOLD_MS: i64 = 2_000;

/// How long a thread's webhook intake must be quiet before its events are processed.
/// Senders deliver concurrently, so an earlier message can be stored a few milliseconds after
/// a later one, even after the later one's request finished; waiting for a short lull lets
/// both be sorted by the service's own order. [`MAX_HOLD_MS`] still bounds the wait under a
/// steady stream.
const SETTLE_MS: i64 = 150;

/// One pass over the intake. Returns how many events were handled and, when some were held
/// back, when to look again.
///
/// Networks and helpdesks may deliver webhooks concurrently, so a customer's second message
/// (or an agent's second reply) can be stored before the first. An event therefore waits (up
/// to [`MAX_HOLD_MS`]) while webhook requests of its installation that started before it was
/// stored are still running, and while its thread's intake has not settled ([`SETTLE_MS`]);
/// the ready events are then taken in the order the service made them, not the order they
/// arrived in. Order matters only within a thread (a conversation, or a ticket), so a busy
/// installation's other threads go on meanwhile.
async fn process_ready(hub: &Hub) -> Result<(usize, Option<i64>), StoreError> {
    let now = now_ms();
    let events = hub.inner.db.pending_inbound_events(BATCH).await?;
    let scopes: Vec<(&str, String)> = events
        .iter()
        .map(|e| (e.installation_id.as_str(), order_scope(e)))
        .collect();
    let mut ready = Vec::with_capacity(events.len());
    // When the earliest held event may be ready.
    let mut held_until: Option<i64> = None;
    let mut blocked: Vec<&(&str, String)> = Vec::new();
    // The newest webhook event of each thread, and how many it has waiting: a burst's intake
    // is settled once its newest event is older than SETTLE_MS.
    let mut newest_webhook: HashMap<&(&str, String), (i64, usize)> = HashMap::new();
    for (event, scope) in events.iter().zip(&scopes) {
        if event.source == "webhook" {
            let (newest, count) = newest_webhook
                .entry(scope)
                .or_insert((event.received_at, 0));
            *newest = (*newest).max(event.received_at);
            *count += 1;
        }
    }
    for (event, scope) in events.iter().zip(&scopes) {
        let (newest, waiting) = match newest_webhook.get(scope) {
            Some(&(newest, count)) => (Some(newest), count),
            None => (None, 0),
        };
        // A lone message of its thread has nothing to be sorted with: it goes at once, so a
        // quiet conversation pays nothing for the ordering of busy ones.
        let settling = waiting > 1 && newest.is_some_and(|newest| newest > now - SETTLE_MS);
        // Only requests that started before this event was stored overlapped its delivery
        // and may carry an earlier message; later ones are not waited for, or a steady
        // stream of webhooks would hold every event for the whole MAX_HOLD_MS.
        let waits = event.source == "webhook"
            && event.received_at > now - MAX_HOLD_MS
            && (settling
                || hub
                    .oldest_webhook_in_flight(&event.installation_id)
                    .is_some_and(|started| started <= event.received_at));
        if waits || blocked.contains(&scope) {
            // Everything after a held event of the same thread waits with it.
            if !blocked.contains(&scope) {
                blocked.push(scope);
                let settled = newest.map_or(now, |newest| newest + SETTLE_MS);
                let until = settled.max(now + 10).min(event.received_at + MAX_HOLD_MS);
                held_until = Some(held_until.map_or(until, |t| t.min(until)));
            }
            continue;
        }
        ready.push(event);
    }
    order_by_service_time(&mut ready, "social");
    order_by_service_time(&mut ready, "helpdesk");
    let queued = process_events(hub, &ready).await?;
    if queued {
        hub.inner.outbox.notify_one();
    }
    Ok((ready.len(), held_until))
}

/// Reorders the events of `kind` among `events` by when the service made them (ties broken
/// by the numbers in their ids, which services hand out in order), leaving the positions of
/// the other kind's events alone.
fn order_by_service_time(events: &mut [&InboundEvent], kind: &str) {
    let positions: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].kind == kind)
        .collect();
    if positions.len() < 2 {
        return;
    }
    let mut sorted: Vec<&InboundEvent> = positions.iter().map(|&i| events[i]).collect();
    sorted.sort_by_cached_key(|event| service_order(event));
    for (position, event) in positions.into_iter().zip(sorted) {
        events[position] = event;
    }
}

/// What an event must stay in order with: its thread (a conversation) for a customer's
/// message, its ticket for a helpdesk change. Empty when the payload does not say, which
/// puts such events in one scope of their installation.
fn order_scope(event: &InboundEvent) -> String {
    // Only the two fields, from the stored `SocialEvent` or `TicketChange`.
    #[derive(serde::Deserialize)]
    struct Scope {
        thread_id: Option<String>,
        ticket_id: Option<String>,
    }
    let scope = serde_json::from_str::<Scope>(&event.payload).ok();
    let id = match event.kind.as_str() {
        "social" => scope.and_then(|s| s.thread_id),
        _ => scope.and_then(|s| s.ticket_id),
    };
    id.unwrap_or_default()
}

/// (service time, rank of the change kind, numbers in the id, arrival)
type OrderKey = (u64, u8, Vec<u64>, i64);

fn service_order(event: &InboundEvent) -> OrderKey {
    if event.kind == "social" {
        return match serde_json::from_str::<SocialEvent>(&event.payload) {
            Ok(e) => (e.created_at, 0, numbers(&e.message_id), event.id),
            Err(_) => (u64::MAX, 0, Vec::new(), event.id),
        };
    }
    match serde_json::from_str::<TicketChange>(&event.payload) {
        Ok(change) => {
            let (rank, id) = match &change.kind {
                ChangeKind::Comment(c) => (0, numbers(&c.comment_id)),
                ChangeKind::Status(_) => (1, Vec::new()),
                ChangeKind::Priority(_) => (2, Vec::new()),
            };
            (change.at, rank, id, event.id)
        }
        Err(_) => (u64::MAX, 3, Vec::new(), event.id),
    }
}

/// The runs of digits in an id, as numbers: `4001:12` is `[4001, 12]`.
fn numbers(id: &str) -> Vec<u64> {
    id.split(|c: char| !c.is_ascii_digit())
        .filter_map(|run| run.parse().ok())
        .collect()
}

/// Most events one transaction takes, and how long it goes on taking more. Sharing a
/// transaction saves each event a commit and a turn at the write lock, which is what bounded
/// the processor. A webhook waiting for the lock ends the transaction at once (see
/// [`crate::store::Db::intake_waiting`]), so the time cap only bounds how long the outbox and
/// scheduler wait.
const TX_EVENTS: usize = 64;
const TX_TIME: Duration = Duration::from_millis(20);
/// Events claimed per statement.
const CLAIM_CHUNK: usize = 8;

/// Processes `events` in order, several per transaction: each event's rows and the outbox
/// rows it causes still commit together (a crash leaves either nothing or everything of it,
/// and of the events before it in the same transaction). Returns whether outbox rows were
/// queued.
async fn process_events(hub: &Hub, events: &[&InboundEvent]) -> Result<bool, StoreError> {
    let mut queued = false;
    let mut pending = events.to_vec();
    // Events before this index are committed.
    let mut done = 0;
    'transactions: while done < pending.len() {
        let rest = &pending[done..];
        let started = Instant::now();
        let mut tx = hub.inner.db.begin_urgent().await?;
        let mut lookups = Lookups::default();
        let mut taken = 0;
        // What each event came to, written in one statement before the commit.
        let mut outcomes = Vec::new();
        // Claimed a few at a time: one statement for several events, and few to hand back
        // when the time is up.
        'chunks: for chunk in rest[..rest.len().min(TX_EVENTS)].chunks(CLAIM_CHUNK) {
            let ids: Vec<i64> = chunk.iter().map(|e| e.id).collect();
            let claimed = tx.claim_inbound_events(&ids, now_ms()).await?;
            for (index, event) in chunk.iter().enumerate() {
                // Events another processor claimed first are its to handle.
                if claimed.contains(&event.id) {
                    let outcome = match process_event(&mut tx, &mut lookups, event).await {
                        Ok(outcome) => outcome,
                        Err(error) => {
                            // Rolls back this transaction's events; they are handed back.
                            drop(tx);
                            let failed = event.id;
                            poisoned(hub, event, error).await?;
                            // Set aside: the transaction's other events go again without it.
                            pending.retain(|e| e.id != failed);
                            continue 'transactions;
                        }
                    };
                    queued |= outcome.queued;
                    outcomes.push(EventOutcome {
                        id: event.id,
                        label: outcome.label,
                        conversation: outcome.conversation,
                        held_for: outcome.held_for,
                    });
                }
                taken += 1;
                if started.elapsed() >= TX_TIME || hub.inner.db.intake_waiting() {
                    // Claimed events this transaction has no time for go back to the intake.
                    tx.release_inbound_events(&ids[index + 1..]).await?;
                    break 'chunks;
                }
            }
        }
        tx.set_inbound_outcomes(&outcomes).await?;
        tx.commit().await?;
        lookups.log_unlinked();
        done += taken;
    }
    Ok(queued)
}

/// Tries an event gets before it is set aside (quarantined). A few, since a passing database
/// fault fails whole transactions too; an admin can hand a quarantined event back.
const EVENT_ATTEMPTS: i64 = 5;

/// Counts a failed try at `event`. Returns the error while the event has tries left, so the
/// pass ends and is run again (the events behind it wait, in order); once it has none, it is
/// quarantined and the pass goes on without it.
async fn poisoned(hub: &Hub, event: &InboundEvent, error: StoreError) -> Result<(), StoreError> {
    let span = tracing::error_span!(
        "inbound",
        installation = %event.installation_id,
        event = %event.external_id,
        conversation = tracing::field::Empty,
    );
    let message = error.to_string();
    let quarantined = hub
        .inner
        .db
        .record_inbound_failure(event.id, &message, EVENT_ATTEMPTS, now_ms())
        .await?;
    let _entered = span.enter();
    if quarantined {
        tracing::error!(error = %message, attempts = EVENT_ATTEMPTS, "event failed every try; quarantined (admin API: /api/v1/quarantined-events)");
        Ok(())
    } else {
        tracing::warn!(error = %message, "processing the event failed; it is tried again");
        Err(error)
    }
}

/// Configuration read while processing, kept for the length of one transaction: the events
/// of a batch mostly share an installation, and links and manifests change rarely.
#[derive(Default)]
struct Lookups {
    links: HashMap<String, Option<LinkRow>>,
    text_limits: HashMap<(String, String), Option<(usize, LengthUnit)>>,
    /// Messages that wait for a link, per installation: (count, a sample message id).
    unlinked: HashMap<String, (usize, String)>,
}

impl Lookups {
    /// One line per installation for the messages this transaction left waiting for a link.
    fn log_unlinked(&self) {
        for (installation, (count, sample)) in &self.unlinked {
            tracing::warn!(
                %installation,
                messages = count,
                sample = %crate::runtime::bounds::truncate(sample, 128),
                "no link from this installation to a helpdesk yet; the messages wait for one"
            );
        }
    }

    async fn link_for_social(
        &mut self,
        tx: &mut Tx,
        installation_id: &str,
    ) -> Result<Option<LinkRow>, StoreError> {
        if let Some(link) = self.links.get(installation_id) {
            return Ok(link.clone());
        }
        let link = tx.link_for_social(installation_id).await?;
        self.links.insert(installation_id.to_string(), link.clone());
        Ok(link)
    }

    /// The text limit of a social installation for a visibility, from its plugin's manifest.
    async fn text_limit(
        &mut self,
        tx: &mut Tx,
        installation_id: &str,
        visibility: &str,
    ) -> Result<Option<(usize, LengthUnit)>, StoreError> {
        let key = (installation_id.to_string(), visibility.to_string());
        if let Some(limit) = self.text_limits.get(&key) {
            return Ok(*limit);
        }
        let limit = tx
            .manifest_of_installation(installation_id)
            .await?
            .and_then(|manifest| {
                manifest
                    .text_limits
                    .iter()
                    .find(|l| l.visibility == visibility)
                    .map(|l| {
                        let unit = LengthUnit::parse(&l.unit).unwrap_or_else(|| {
                            tracing::warn!(unit = %l.unit, "unknown text-limit unit; counting UTF-8 bytes, which never undercounts");
                            LengthUnit::FALLBACK
                        });
                        // The plugin's reserve per part stays free in every part.
                        (l.part_length() as usize, unit)
                    })
            });
        self.text_limits.insert(key, limit);
        Ok(limit)
    }
}

/// Processes one event, claimed by `tx`. Returns whether outbox rows were queued.
async fn process_event(
    tx: &mut Tx,
    lookups: &mut Lookups,
    event: &InboundEvent,
) -> Result<Outcome, StoreError> {
    let span = tracing::debug_span!(
        "inbound",
        installation = %event.installation_id,
        event = %event.external_id,
        conversation = tracing::field::Empty,
    );
    async {
        let now = now_ms();
        let context = match prepare(event) {
            Ok(context) => context,
            Err(error) => {
                tracing::warn!(%error, "event cannot be processed; it is skipped");
                return Ok(Outcome::skip(&format!("error: {error}")));
            }
        };
        let outcome = match context {
            Prepared::Social(ev) => social_event(tx, lookups, event, &ev, now).await?,
            Prepared::Helpdesk(change) => helpdesk_change(tx, lookups, event, &change, now).await?,
        };
        if let Some(conversation) = &outcome.conversation {
            tracing::Span::current().record("conversation", conversation.as_str());
        }
        // Per message: debug, not info (formatting and writing it cost at this rate).
        tracing::debug!(outcome = %outcome.label, "event processed");
        Ok(outcome)
    }
    .instrument(span)
    .await
}

/// What processing an event did.
struct Outcome {
    label: String,
    conversation: Option<String>,
    queued: bool,
    /// The helpdesk ticket id the event waits for (see [`Outcome::held_for_ticket`]).
    held_for: Option<String>,
}

impl Outcome {
    fn skip(label: &str) -> Self {
        Self {
            label: label.to_string(),
            conversation: None,
            queued: false,
            held_for: None,
        }
    }

    fn in_conversation(label: impl Into<String>, conversation: &str, queued: bool) -> Self {
        Self {
            label: label.into(),
            conversation: Some(conversation.to_string()),
            queued,
            held_for: None,
        }
    }

    /// A change about a ticket the hub has not recorded: it waits until the hub records the
    /// helpdesk's ticket id `ticket`, which hands it back to the processor.
    fn held_for_ticket(ticket: &str) -> Self {
        Self {
            held_for: Some(ticket.to_string()),
            ..Self::skip(UNKNOWN_TICKET)
        }
    }
}

/// The outcome of a change held for its ticket (see [`Outcome::held_for_ticket`]).
const UNKNOWN_TICKET: &str = "unknown-ticket";

enum Prepared {
    Social(SocialEvent),
    Helpdesk(TicketChange),
}

fn prepare(event: &InboundEvent) -> Result<Prepared, String> {
    match event.kind.as_str() {
        "social" => serde_json::from_str(&event.payload)
            .or_else(|e| super::care::stored_v0_2_event(&event.payload).ok_or(e))
            .map(Prepared::Social)
            .map_err(|e| format!("corrupt event: {e}")),
        _ => serde_json::from_str(&event.payload)
            .map(Prepared::Helpdesk)
            .map_err(|e| format!("corrupt change: {e}")),
    }
}

/// A customer's message: into the conversation's current ticket, or a new one.
async fn social_event(
    tx: &mut Tx,
    lookups: &mut Lookups,
    event: &InboundEvent,
    ev: &SocialEvent,
    now: i64,
) -> Result<Outcome, StoreError> {
    let installation = &event.installation_id;
    if ev.is_echo {
        return Ok(Outcome::skip("echo"));
    }
    if tx.is_known_id(installation, &ev.message_id).await? {
        return Ok(Outcome::skip("echo-or-duplicate"));
    }
    let Some(link) = lookups.link_for_social(tx, installation).await? else {
        // Logged once per transaction with a count (see `Lookups::log_unlinked`): a page of
        // thousands of events must not write thousands of lines.
        lookups
            .unlinked
            .entry(installation.clone())
            .or_insert_with(|| (0, ev.message_id.clone()))
            .0 += 1;
        return Ok(Outcome::skip("unlinked"));
    };
    let settings = LinkSettings::of(&link);
    let helpdesk = &link.helpdesk_installation_id;

    let author = &ev.author;
    let contact_id = tx
        .upsert_identity(
            &IdentityInput {
                network: &author.network,
                external_id: &author.external_id,
                handle: author.handle.as_deref(),
                display_name: author.display_name.as_deref(),
            },
            &new_id(),
            now,
        )
        .await?;
    let existing = tx.find_conversation(installation, &ev.thread_id).await?;
    let is_new = existing.is_none();
    let conversation = match existing {
        Some(conversation) => conversation,
        None => {
            let row = ConversationRow {
                id: new_id(),
                social_installation_id: installation.clone(),
                thread_id: ev.thread_id.clone(),
                contact_id: contact_id.clone(),
                channel: author.network.clone(),
                message_kind: kind_name(ev.kind).to_string(),
                visibility: visibility_name(ev.visibility).to_string(),
                reply_handle: ev.reply_handle.clone(),
                last_inbound_at: Some(ev.created_at as i64),
                created_at: now,
                updated_at: now,
            };
            tx.insert_conversation(&row).await?;
            row
        }
    };
    tracing::Span::current().record("conversation", conversation.id.as_str());
    // A new conversation was just written with this message's time and handle, and has no
    // ticket yet.
    let mut ticket = None;
    if !is_new {
        tx.touch_conversation(
            &conversation.id,
            ev.created_at as i64,
            ev.reply_handle.as_deref(),
            now,
        )
        .await?;
        // Which ticket: the current open one; else the last solved one when the link
        // reopens; else a new one.
        ticket = tx.current_ticket(&conversation.id).await?;
    }
    if let Some(current) = &ticket {
        if current.helpdesk_installation_id != *helpdesk || is_ended(&current.status) {
            // Linked to another helpdesk since, or ended without the flag being cleared.
            tx.update_ticket_state(&current.id, &current.status, current.status_at, false, now)
                .await?;
            ticket = None;
        }
    }
    if !is_new && ticket.is_none() && settings.reopen_solved {
        if let Some(last) = tx.latest_ticket(&conversation.id).await? {
            if last.status == "solved" && last.helpdesk_installation_id == *helpdesk {
                // The helpdesk reopens a solved ticket when the requester comments.
                tx.update_ticket_state(&last.id, "open", last.status_at, true, now)
                    .await?;
                ticket = Some(last);
            }
        }
    }
    let creating = ticket.is_none();
    let ticket = match ticket {
        Some(ticket) => ticket,
        None => {
            let row = new_ticket_row(&conversation.id, helpdesk, now);
            tx.insert_ticket(&row).await?;
            row
        }
    };

    let message = MessageRow {
        id: new_id(),
        conversation_id: conversation.id.clone(),
        ticket_id: Some(ticket.id.clone()),
        direction: "inbound".into(),
        visibility: visibility_name(ev.visibility).into(),
        author_name: author
            .display_name
            .clone()
            .or_else(|| author.handle.clone()),
        text: ev.text.clone(),
        attachments_json: serde_json::to_string(&ev.attachments).unwrap_or_else(|_| "[]".into()),
        social_installation_id: installation.clone(),
        social_message_id: Some(ev.message_id.clone()),
        helpdesk_installation_id: helpdesk.clone(),
        helpdesk_comment_id: None,
        state: "pending".into(),
        parts: 1,
        created_at: now,
        delivered_at: None,
    };
    if !tx.insert_message(&message).await? {
        return Ok(Outcome::in_conversation(
            "duplicate",
            &conversation.id,
            false,
        ));
    }
    super::care::apply_event_ownership(tx, installation, ev).await?;
    let context = super::care::MessageContext::of(ev);
    if let Some(context) = &context {
        tx.set_message_context(&message.id, &to_json(context))
            .await?;
    }

    let (kind, key, payload) = if creating {
        let mut payload = CreateTicketPayload::first_message(
            &conversation,
            &settings,
            &ev.text,
            author.display_name.as_deref().or(author.handle.as_deref()),
            ev.attachments.clone(),
            &contact_id,
        );
        payload.context = context;
        (
            "create-ticket",
            format!("ticket:{}", ticket.id),
            to_json(&payload),
        )
    } else {
        let payload = AddCommentPayload {
            body: ev.text.clone(),
            public: true,
            attachments: ev.attachments.clone(),
            contact_id: contact_id.clone(),
            channel: conversation.channel.clone(),
        };
        (
            "add-comment",
            format!("comment:{}", message.id),
            to_json(&payload),
        )
    };
    tx.insert_outbox(&NewOutbox {
        kind,
        installation_id: helpdesk.clone(),
        conversation_id: conversation.id.clone(),
        ticket_id: Some(ticket.id.clone()),
        message_id: Some(message.id.clone()),
        idempotency_key: key,
        payload,
        now,
    })
    .await?;
    let label = if creating {
        format!("new-ticket {}", ticket.id)
    } else {
        format!("comment {}", ticket.id)
    };
    Ok(Outcome::in_conversation(label, &conversation.id, true))
}

/// A change on a ticket: agents' public replies go to the customer, notes are only recorded,
/// status changes move the ticket on.
async fn helpdesk_change(
    tx: &mut Tx,
    lookups: &mut Lookups,
    event: &InboundEvent,
    change: &TicketChange,
    now: i64,
) -> Result<Outcome, StoreError> {
    let helpdesk = &event.installation_id;
    let Some(ticket) = tx
        .ticket_by_external_id(helpdesk, &change.ticket_id)
        .await?
    else {
        // Either a ticket the hub did not make, or one whose create the hub has not recorded
        // yet (its answer was lost in a crash and the retry is still waiting). Dropping the
        // change would lose an agent's reply for good, since the change id is deduplicated;
        // it waits for the ticket instead.
        tracing::debug!(ticket = %change.ticket_id, "change about a ticket the hub has not recorded; held for it");
        return Ok(Outcome::held_for_ticket(&change.ticket_id));
    };
    let Some(conversation) = tx.get_conversation_tx(&ticket.conversation_id).await? else {
        return Ok(Outcome::skip("unknown-conversation"));
    };
    tracing::Span::current().record("conversation", conversation.id.as_str());
    match &change.kind {
        ChangeKind::Comment(comment) => {
            if change.is_echo || tx.is_known_id(helpdesk, &comment.comment_id).await? {
                return Ok(Outcome::in_conversation("echo", &conversation.id, false));
            }
            // Comments by end users are the customer's own messages, filed by the hub.
            if !change.author.as_ref().is_some_and(|a| a.is_agent) {
                return Ok(Outcome::in_conversation(
                    "customer-comment",
                    &conversation.id,
                    false,
                ));
            }
            let author_name = change.author.as_ref().and_then(|a| a.name.clone());
            let mut message = MessageRow {
                id: new_id(),
                conversation_id: conversation.id.clone(),
                ticket_id: Some(ticket.id.clone()),
                direction: "outbound".into(),
                visibility: visibility_name(comment.visibility).into(),
                author_name,
                text: comment.body.clone(),
                attachments_json: serde_json::to_string(&comment.attachments)
                    .unwrap_or_else(|_| "[]".into()),
                social_installation_id: conversation.social_installation_id.clone(),
                social_message_id: None,
                helpdesk_installation_id: helpdesk.clone(),
                helpdesk_comment_id: Some(comment.comment_id.clone()),
                state: "pending".into(),
                parts: 1,
                created_at: now,
                delivered_at: None,
            };
            if comment.visibility == Visibility::Private {
                // Internal notes are kept for the record and never leave the helpdesk.
                message.direction = "note".into();
                message.state = "recorded".into();
                tx.insert_message(&message).await?;
                return Ok(Outcome::in_conversation("note", &conversation.id, false));
            }
            let text = comment.body.trim();
            if text.is_empty() {
                message.state = "skipped".into();
                tx.insert_message(&message).await?;
                return Ok(Outcome::in_conversation(
                    "empty-reply",
                    &conversation.id,
                    false,
                ));
            }
            let private_replies = lookups
                .link_for_social(tx, &conversation.social_installation_id)
                .await?
                .is_some_and(|link| LinkSettings::of(&link).private_replies);
            let answer = super::care::answer_visibility(&conversation.visibility, private_replies)
                .to_string();
            let limit = lookups
                .text_limit(tx, &conversation.social_installation_id, &answer)
                .await?;
            let split = match limit {
                Some((max, unit)) => split(text, max, unit, MAX_REPLY_PARTS),
                None => Ok(vec![text.to_string()]),
            };
            let parts = match split {
                Ok(parts) => parts,
                Err(refused) => {
                    // Kept whole, marked dead, and logged: never cut short or sent in part.
                    tracing::warn!(comment = %comment.comment_id, error = %refused, "reply not sent");
                    message.state = "dead".into();
                    tx.insert_message(&message).await?;
                    return Ok(Outcome::in_conversation(
                        format!("reply-too-long: {refused}"),
                        &conversation.id,
                        false,
                    ));
                }
            };
            message.parts = parts.len() as i64;
            if let Err(refused) = super::care::check_reply_in(
                tx,
                &conversation,
                &answer,
                comment.attachments.len(),
                parts.len(),
                now,
            )
            .await?
            {
                // Decided here, from the manifest, rather than learned from the network's
                // refusal: kept as a dead letter that says why, never sent in part.
                tracing::warn!(comment = %comment.comment_id, error = %refused, "reply refused before sending");
                message.state = "dead".into();
                if !tx.insert_message(&message).await? {
                    return Ok(Outcome::in_conversation(
                        "duplicate",
                        &conversation.id,
                        false,
                    ));
                }
                let payload = SendMessagePayload {
                    part: 1,
                    parts: 1,
                    text: text.to_string(),
                    attachments: comment.attachments.clone(),
                    visibility: Some(answer.clone()),
                };
                tx.insert_dead_outbox(
                    &NewOutbox {
                        kind: "send-message",
                        installation_id: conversation.social_installation_id.clone(),
                        conversation_id: conversation.id.clone(),
                        ticket_id: Some(ticket.id.clone()),
                        message_id: Some(message.id.clone()),
                        idempotency_key: format!("send:{}:1", message.id),
                        payload: to_json(&payload),
                        now,
                    },
                    &format!("refused before sending: {refused}"),
                )
                .await?;
                return Ok(Outcome::in_conversation(
                    format!("reply-refused: {refused}"),
                    &conversation.id,
                    false,
                ));
            }
            if !tx.insert_message(&message).await? {
                return Ok(Outcome::in_conversation(
                    "duplicate",
                    &conversation.id,
                    false,
                ));
            }
            let count = parts.len() as u32;
            for (index, part) in parts.into_iter().enumerate() {
                let payload = SendMessagePayload {
                    part: index as u32 + 1,
                    parts: count,
                    text: part,
                    // Files travel with the first part only.
                    attachments: if index == 0 {
                        comment.attachments.clone()
                    } else {
                        Vec::new()
                    },
                    visibility: Some(answer.clone()),
                };
                tx.insert_outbox(&NewOutbox {
                    kind: "send-message",
                    installation_id: conversation.social_installation_id.clone(),
                    conversation_id: conversation.id.clone(),
                    ticket_id: Some(ticket.id.clone()),
                    message_id: Some(message.id.clone()),
                    idempotency_key: format!("send:{}:{}", message.id, index + 1),
                    payload: to_json(&payload),
                    now,
                })
                .await?;
            }
            Ok(Outcome::in_conversation(
                format!("reply in {count} part(s)"),
                &conversation.id,
                true,
            ))
        }
        ChangeKind::Status(status) => {
            let status = status_name(*status);
            let at = change.at as i64;
            if at < ticket.status_at {
                return Ok(Outcome::in_conversation(
                    "stale-status",
                    &conversation.id,
                    false,
                ));
            }
            let is_current = if is_ended(status) {
                false
            } else if ticket.is_current {
                true
            } else {
                // Reopened by an agent: current again if it is the newest and no other is.
                tx.current_ticket(&conversation.id).await?.is_none()
                    && tx
                        .latest_ticket(&conversation.id)
                        .await?
                        .is_some_and(|t| t.id == ticket.id)
            };
            tx.update_ticket_state(&ticket.id, status, at, is_current, now)
                .await?;
            Ok(Outcome::in_conversation(
                format!("status {status}"),
                &conversation.id,
                false,
            ))
        }
        ChangeKind::Priority(_) => Ok(Outcome::in_conversation(
            "priority-ignored",
            &conversation.id,
            false,
        )),
    }
}

/// A conversation's new ticket, not yet filed in the helpdesk.
pub(crate) fn new_ticket_row(conversation_id: &str, helpdesk: &str, now: i64) -> TicketRow {
    TicketRow {
        id: new_id(),
        conversation_id: conversation_id.to_string(),
        helpdesk_installation_id: helpdesk.to_string(),
        external_id: None,
        url: None,
        status: "new".into(),
        // Only the helpdesk's own times order status changes; 0 = none seen yet.
        status_at: 0,
        is_current: true,
        created_at: now,
        updated_at: now,
    }
}

impl CreateTicketPayload {
    /// The ticket a customer's message opens.
    pub(crate) fn first_message(
        conversation: &ConversationRow,
        settings: &LinkSettings,
        text: &str,
        author: Option<&str>,
        attachments: Vec<crate::runtime::bindings::types::Attachment>,
        contact_id: &str,
    ) -> Self {
        let mut tags = vec![conversation.channel.clone()];
        tags.extend(settings.tags.iter().cloned());
        CreateTicketPayload {
            subject: subject_of(text, author),
            body: text.to_string(),
            // A customer's message is a public comment on the ticket, whatever the network.
            public: true,
            attachments,
            tags,
            priority: settings.priority.clone(),
            channel: conversation.channel.clone(),
            external_id: conversation.id.clone(),
            contact_id: contact_id.to_string(),
            context: None,
        }
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and lists: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Solved and closed tickets no longer take the conversation's new messages.
pub(crate) fn is_ended(status: &str) -> bool {
    matches!(status, "solved" | "closed")
}

/// The ticket subject: the message's first non-empty line, shortened to 80 characters.
pub(crate) fn subject_of(text: &str, author: Option<&str>) -> String {
    const MAX: usize = 80;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        return match author {
            Some(name) => format!("Message from {name}"),
            None => "New message".to_string(),
        };
    }
    if line.chars().count() <= MAX {
        return line.to_string();
    }
    let cut: String = line.chars().take(MAX - 1).collect();
    format!("{}…", cut.trim_end())
}

pub(crate) fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::DirectMessage => "direct-message",
        MessageKind::Post => "post",
        MessageKind::Comment => "comment",
    }
}

pub(crate) fn kind_from_name(name: &str) -> MessageKind {
    match name {
        "post" => MessageKind::Post,
        "comment" => MessageKind::Comment,
        _ => MessageKind::DirectMessage,
    }
}

pub(crate) fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

pub(crate) fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::OnHold => "on-hold",
        TicketStatus::Solved => "solved",
        TicketStatus::Closed => "closed",
    }
}

/// A link's priority setting as the contract's enum.
pub(crate) fn priority(name: &str) -> Option<TicketPriority> {
    match name {
        "low" => Some(TicketPriority::Low),
        "normal" => Some(TicketPriority::Normal),
        "high" => Some(TicketPriority::High),
        "urgent" => Some(TicketPriority::Urgent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(subject_of("\n  Order late \nmore", None), "Order late");
        assert_eq!(subject_of("", Some("Aiko")), "Message from Aiko");
        let long = "x".repeat(200);
        let subject = subject_of(&long, None);
        assert_eq!(subject.chars().count(), 80);
        assert!(subject.ends_with('…'));
    }

    #[test]
    fn order_scope_is_the_thread_or_the_ticket() {
        let event = |kind: &str, payload: &str| InboundEvent {
            id: 1,
            installation_id: "i".into(),
            external_id: "e".into(),
            kind: kind.into(),
            source: "webhook".into(),
            payload: payload.into(),
            received_at: 0,
            processed_at: None,
            outcome: None,
            conversation_id: None,
            attempts: 0,
            last_error: None,
        };
        assert_eq!(
            order_scope(&event(
                "social",
                r#"{"thread_id":"chat:7","ticket_id":"x"}"#
            )),
            "chat:7"
        );
        assert_eq!(
            order_scope(&event("helpdesk", r#"{"change_id":"c","ticket_id":"42"}"#)),
            "42"
        );
        assert_eq!(order_scope(&event("social", "not json")), "");
    }
}
