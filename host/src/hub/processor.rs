//! The inbound processor: turns stored events into conversations, tickets, messages and
//! outbox rows.
//!
//! Events are taken in the order `ordering.rs` decides, several per transaction; each
//! event's rows commit together with the outbox rows it causes, so a crash leaves either
//! nothing or everything of it. The hub's own messages coming back are recognized by their
//! echo flag or by the ids the outbox recorded when it posted them. What an event means is
//! decided by its side's mapper: `social_events.rs` or `helpdesk_changes.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::helpdesk_changes::helpdesk_change;
use super::ordering::{self, SETTLE_MS};
use super::social_events::social_event;
use super::split::LengthUnit;
use super::{now_ms, Hub};
use crate::runtime::latest::{SocialEvent, TicketChange, Visibility};
use crate::store::{EventOutcome, InboundEvent, LinkRow, StoreError, Tx};

/// Events read per sweep of the intake.
const BATCH: i64 = 200;
/// How often the intake is swept even without a wake-up (events from another host).
const SWEEP: Duration = Duration::from_secs(1);

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

/// Processes everything waiting in the intake, waiting out holds (see `ordering::ready`):
/// for tests and tools that drive the hub without its workers.
/// Returns how many events were handled.
pub async fn process_pending(hub: &Hub) -> Result<usize, StoreError> {
    let mut handled = 0;
    loop {
        let (count, held_until) = process_ready(hub).await?;
        handled += count;
        // Held events become ready within ordering::MAX_HOLD_MS, so this ends.
        match held_until {
            Some(at) => {
                tokio::time::sleep(Duration::from_millis((at - now_ms()).max(1) as u64)).await
            }
            None => return Ok(handled),
        }
    }
}

/// One pass over the intake: processes the events that are ready (see [`ordering::ready`]).
/// Returns how many events were handled and, when some were held back, when to look again.
async fn process_ready(hub: &Hub) -> Result<(usize, Option<i64>), StoreError> {
    let events = hub.inner.db.pending_inbound_events(BATCH).await?;
    let (ready, held_until) = ordering::ready(hub, &events, now_ms());
    let queued = process_events(hub, &ready).await?;
    if queued {
        hub.inner.outbox.notify_one();
    }
    Ok((ready.len(), held_until))
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
pub(super) struct Lookups {
    links: HashMap<String, Option<LinkRow>>,
    text_limits: HashMap<(String, String), Option<(usize, LengthUnit)>>,
    /// Messages that wait for a link, per installation: (count, a sample message id).
    pub(super) unlinked: HashMap<String, (usize, String)>,
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

    pub(super) async fn link_for_social(
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
    pub(super) async fn text_limit(
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
pub(super) struct Outcome {
    label: String,
    conversation: Option<String>,
    queued: bool,
    /// The helpdesk ticket id the event waits for (see [`Outcome::held_for_ticket`]).
    held_for: Option<String>,
}

impl Outcome {
    pub(super) fn skip(label: &str) -> Self {
        Self {
            label: label.to_string(),
            conversation: None,
            queued: false,
            held_for: None,
        }
    }

    pub(super) fn in_conversation(
        label: impl Into<String>,
        conversation: &str,
        queued: bool,
    ) -> Self {
        Self {
            label: label.into(),
            conversation: Some(conversation.to_string()),
            queued,
            held_for: None,
        }
    }

    /// A change about a ticket the hub has not recorded: it waits until the hub records the
    /// helpdesk's ticket id `ticket`, which hands it back to the processor.
    pub(super) fn held_for_ticket(ticket: &str) -> Self {
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

/// How a visibility is stored.
pub(super) fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}
