//! End to end: the services misbehave. Rate limits are waited out (honouring Retry-After), bursts
//! of server errors are retried, and in the end everything is delivered exactly once. A
//! permanent refusal becomes a dead letter the admin sees, and retrying it once the cause is
//! gone delivers it.

mod common;

use std::time::Duration;

use common::hub::*;
use serde_json::Value;
use switchboard_simulators::faults::Fault;

/// A hub linked to fresh simulators, messages pushed by webhook both ways.
async fn linked(dir: &std::path::Path, env: &[(&str, &str)]) -> (Sims, HubProcess) {
    let sims = Sims::start().await;
    let hub = HubProcess::start_with(dir, env).await;
    connect(&hub, &sims, Inbound::Webhook).await;
    (sims, hub)
}

fn ticket_id(ticket: &Value) -> u64 {
    ticket["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("ticket without id: {ticket}"))
}

/// Every customer has exactly one ticket, and its only comment is what they wrote.
fn assert_one_ticket_each(sims: &Sims, messages: &[(i64, String)]) {
    let tickets = sims.tickets();
    assert_eq!(tickets.len(), messages.len(), "{tickets:#?}");
    for (_, text) in messages {
        let matching: Vec<&Value> = tickets
            .iter()
            .filter(|t| t["subject"] == text.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "one ticket for {text:?}: {tickets:#?}");
        let comments: Vec<String> = sims
            .comments(ticket_id(matching[0]))
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(
            comments,
            std::slice::from_ref(text),
            "one comment, no duplicate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_429_retry_after_is_waited_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sims, hub) = linked(dir.path(), FAST_RETRIES).await;
    sims.zendesk_fault(
        Fault::RateLimited {
            retry_after_secs: 2,
        },
        1,
        Some("/api/v2/tickets"),
    );

    let text = "Where is my parcel?".to_string();
    sims.customer_says(3001, "Ines", &text);
    wait_tickets(&sims, 1).await;
    wait_idle(&hub).await;
    assert_one_ticket_each(&sims, &[(3001, text)]);

    let creates = sims.zendesk_log.matching("POST", "/api/v2/tickets");
    assert_eq!(
        creates.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(429), Some(201)],
        "{creates:#?}"
    );
    let waited = creates[1].started.duration_since(creates[0].started);
    // The backoff alone (100 ms base) would retry far sooner: only Retry-After explains 2 s.
    assert!(
        waited >= Duration::from_millis(1950),
        "retried after {waited:?}, before Retry-After: 2"
    );
}

/// An account-wide budget: several conversations hit it at once, all are delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_account_rate_limit_delivers_everything_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sims, hub) = linked(dir.path(), FAST_RETRIES).await;
    // Each new conversation costs a requester and a ticket request: 6 conversations need 12.
    sims.zendesk
        .faults()
        .set_budget(Some(5), Duration::from_secs(2));

    let messages: Vec<(i64, String)> = (0..6)
        .map(|n| (3100 + n, format!("Question number {n}")))
        .collect();
    for (chat, text) in &messages {
        sims.customer_says(*chat, "Customer", text);
    }
    wait_tickets(&sims, messages.len()).await;
    wait_idle(&hub).await;
    sims.zendesk.faults().clear();
    assert_one_ticket_each(&sims, &messages);
    let limited = sims
        .zendesk_log
        .all()
        .iter()
        .filter(|r| r.status == Some(429))
        .count();
    assert!(
        limited > 0,
        "the budget was hit (else this test proves nothing)"
    );
    assert!(hub.api.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_5xx_burst_is_retried_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sims, hub) = linked(dir.path(), FAST_RETRIES).await;
    sims.zendesk_fault(Fault::Status { status: 503 }, 4, None);
    sims.zendesk_fault(Fault::Status { status: 500 }, 2, None);
    sims.zendesk_fault(Fault::Status { status: 502 }, 2, None);

    let messages: Vec<(i64, String)> = (0..3)
        .map(|n| (3200 + n, format!("Broken item {n}")))
        .collect();
    for (chat, text) in &messages {
        sims.customer_says(*chat, "Customer", text);
    }
    wait_tickets(&sims, messages.len()).await;
    wait_idle(&hub).await;
    assert_one_ticket_each(&sims, &messages);
    let failed = sims
        .zendesk_log
        .all()
        .iter()
        .filter(|r| r.status.is_some_and(|s| s >= 500))
        .count();
    assert_eq!(failed, 8, "every injected failure was hit and retried");
    assert!(hub.api.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_flood_control_is_waited_out_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sims, hub) = linked(dir.path(), FAST_RETRIES).await;
    sims.customer_says(3300, "Jonas", "My invoice is wrong");
    let ticket = wait_tickets(&sims, 1).await.remove(0);

    // Flood control on the first two sends, and Telegram's real per-chat pace after that.
    sims.telegram_fault(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        2,
        Some("sendMessage"),
    );
    sims.telegram
        .set_per_chat_interval(Some(Duration::from_millis(300)));
    let replies = [
        "Let me check that for you.",
        "Found it: a typo in the VAT number.",
        "A corrected invoice is on its way.",
    ];
    for reply in replies {
        sims.zendesk.agent_reply(ticket_id(&ticket), reply, true);
    }
    wait_sent(&sims, 3300, &replies).await;
    wait_idle(&hub).await;
    assert_eq!(sims.sent_to(3300), replies, "each reply once, in order");

    let sends = sims.telegram_log.matching("POST", "sendMessage");
    let first_limited = sends
        .iter()
        .position(|r| r.status == Some(429))
        .expect("flood control was hit");
    let first_sent = sends
        .iter()
        .position(|r| r.status == Some(200))
        .expect("a send went through");
    let waited = sends[first_sent]
        .started
        .duration_since(sends[first_limited].started);
    assert!(
        waited >= Duration::from_millis(950),
        "sent {waited:?} after a `retry after 1`"
    );
    assert!(hub.api.dead_letters().await.is_empty());
}

/// The customer blocked the bot: Telegram answers 403 for good. The reply becomes a dead letter;
/// once unblocked, a retry through the API delivers it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_recipient_is_a_dead_letter_until_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sims, hub) = linked(dir.path(), FAST_RETRIES).await;
    sims.customer_says(3400, "Kim", "Cancel my subscription");
    let ticket = wait_tickets(&sims, 1).await.remove(0);
    sims.telegram.block(3400).expect("block");

    let reply = "Done: your subscription is cancelled.";
    sims.zendesk.agent_reply(ticket_id(&ticket), reply, true);
    let dead = wait_until("a dead letter", EFFECT_TIMEOUT, || async {
        let dead = hub.api.dead_letters().await;
        check(dead.len() == 1, || format!("{dead:#?}"))?;
        Ok(dead[0].clone())
    })
    .await;
    let error = dead["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("blocked"),
        "the dead letter says why: {dead}"
    );
    assert!(sims.sent_to(3400).is_empty());

    sims.telegram.unblock(3400).expect("unblock");
    hub.api
        .retry_dead_letter(dead["id"].as_i64().expect("numeric dead letter id"))
        .await;
    wait_sent(&sims, 3400, &[reply]).await;
    wait_idle(&hub).await;
    assert!(
        hub.api.dead_letters().await.is_empty(),
        "retried: no longer dead"
    );
    assert_eq!(sims.sent_to(3400), [reply], "delivered once");
}

/// Zendesk refuses ticket creation with a 4xx on every attempt: the ticket becomes a dead
/// letter; after the fault is cleared, a retry creates it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_4xx_is_a_dead_letter_until_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = FAST_RETRIES.to_vec();
    env.push(("SWITCHBOARD_OUTBOX_MAX_ATTEMPTS", "3"));
    let (sims, hub) = linked(dir.path(), &env).await;
    sims.zendesk_fault(Fault::Status { status: 422 }, 1000, Some("/api/v2/tickets"));

    let text = "Please delete my account".to_string();
    sims.customer_says(3500, "Lena", &text);
    let dead = wait_until("a dead letter", EFFECT_TIMEOUT, || async {
        let dead = hub.api.dead_letters().await;
        check(dead.len() == 1, || format!("{dead:#?}"))?;
        Ok(dead[0].clone())
    })
    .await;
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("422")),
        "the dead letter says why: {dead}"
    );
    let attempts = sims.zendesk_log.matching("POST", "/api/v2/tickets").len();
    assert!(
        (1..=3).contains(&attempts),
        "at most max_attempts tries, got {attempts}"
    );
    assert!(sims.tickets().is_empty());

    sims.zendesk.faults().clear();
    hub.api
        .retry_dead_letter(dead["id"].as_i64().expect("numeric dead letter id"))
        .await;
    wait_tickets(&sims, 1).await;
    wait_idle(&hub).await;
    assert_one_ticket_each(&sims, &[(3500, text)]);
    assert!(hub.api.dead_letters().await.is_empty());
}
