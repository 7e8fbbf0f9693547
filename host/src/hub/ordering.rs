//! Ordering: which stored events may be processed now, and in what order.
//!
//! Networks and helpdesks may deliver webhooks concurrently, so a customer's second message
//! (or an agent's second reply) can be stored before the first. An event therefore waits (up
//! to `MAX_HOLD_MS`) while webhook requests of its installation that started before it was
//! stored are still running, and while its thread's intake has not settled (`SETTLE_MS`);
//! the ready events are then taken in the order the service made them, not the order they
//! arrived in. Order matters only within a thread (a conversation, or a ticket), so a busy
//! installation's other threads go on meanwhile.

use std::collections::HashMap;

use super::Hub;
use crate::runtime::latest::{ChangeKind, SocialEvent, TicketChange};
use crate::store::InboundEvent;

/// The longest an event that came by webhook waits for other webhooks of its installation
/// that are still being handled (see [`ready`]).
pub(super) const MAX_HOLD_MS: i64 = 2_000;

/// How long a thread's webhook intake must be quiet before its events are processed.
/// Senders deliver concurrently, so an earlier message can be stored a few milliseconds after
/// a later one, even after the later one's request finished; waiting for a short lull lets
/// both be sorted by the service's own order. [`MAX_HOLD_MS`] still bounds the wait under a
/// steady stream.
pub(super) const SETTLE_MS: i64 = 150;

/// The events of `events` (pending, oldest first) that may be processed at `now`, in the
/// order to process them, and, when some were held back, when to look again.
pub(super) fn ready<'a>(
    hub: &Hub,
    events: &'a [InboundEvent],
    now: i64,
) -> (Vec<&'a InboundEvent>, Option<i64>) {
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
    (ready, held_until)
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

#[cfg(test)]
mod tests {
    use super::*;

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
