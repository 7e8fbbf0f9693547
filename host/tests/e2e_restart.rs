//! End to end: the hub is SIGKILLed between receiving and delivering, then started again on the
//! same SQLite file. Whatever was acknowledged is delivered, and nothing twice: exactly one
//! ticket per conversation, one comment per message, one Telegram message per reply.

mod common;

use common::hub::*;
use serde_json::Value;
use switchboard_simulators::faults::Fault;

fn ticket_id(ticket: &Value) -> u64 {
    ticket["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("ticket without id: {ticket}"))
}

/// Waits until every conversation has its one ticket carrying exactly its messages, in order,
/// then checks that nothing else exists.
async fn assert_exactly(sims: &Sims, conversations: &[Vec<String>]) {
    wait_tickets(sims, conversations.len()).await;
    for messages in conversations {
        let ticket = sims
            .tickets()
            .into_iter()
            .find(|t| t["subject"] == messages[0].as_str())
            .unwrap_or_else(|| panic!("no ticket for {:?}", messages[0]));
        let expected: Vec<&str> = messages.iter().map(String::as_str).collect();
        wait_comments(sims, ticket_id(&ticket), &expected).await;
    }
    assert_eq!(
        sims.tickets().len(),
        conversations.len(),
        "one ticket per conversation"
    );
}

/// Killed the moment the last webhook was acknowledged: the acknowledged messages were durable,
/// and the same updates arriving again by poll after the restart change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_webhooks_are_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = Sims::start().await;
    let mut hub = HubProcess::start(dir.path()).await;
    connect(&hub, &sims, Inbound::Poll).await;
    hub.api
        .set_job_paused(TELEGRAM, TELEGRAM_STREAM, true)
        .await;
    // Slow Zendesk down so the kill lands before the deliveries are done.
    sims.zendesk_fault(Fault::Delay { ms: 300 }, 1000, None);

    let conversations: Vec<Vec<String>> = (0..5)
        .map(|n| {
            vec![
                format!("Customer {n} needs help"),
                format!("Customer {n} says: still waiting"),
            ]
        })
        .collect();
    for (n, messages) in conversations.iter().enumerate() {
        for text in messages {
            sims.customer_says(4000 + n as i64, "Customer", text);
        }
    }
    // As Telegram delivers: one update at a time per chat, chats in parallel.
    let updates = sims.telegram.pending_updates();
    assert_eq!(updates.len(), 10);
    let hub_ref = &hub;
    let per_chat = (0..conversations.len() as i64).map(|n| {
        let chat_updates: Vec<&serde_json::Value> = updates
            .iter()
            .filter(|u| u["message"]["chat"]["id"] == 4000 + n)
            .collect();
        async move {
            for update in chat_updates {
                let (status, body) = hub_ref.post_telegram_update(update).await;
                assert!(status.is_success(), "webhook answered {status}: {body}");
            }
        }
    });
    futures::future::join_all(per_chat).await;
    hub.kill().await;
    assert!(
        sims.tickets().len() < conversations.len(),
        "killed before everything was delivered"
    );

    sims.zendesk.faults().clear();
    hub.restart().await;
    assert_exactly(&sims, &conversations).await;

    // The same ten updates, now fetched by the poll job: all known already.
    hub.api
        .set_job_paused(TELEGRAM, TELEGRAM_STREAM, false)
        .await;
    hub.api.run_job(TELEGRAM, TELEGRAM_STREAM).await;
    wait_idle(&hub).await;
    assert_exactly(&sims, &conversations).await;
    assert!(hub.api.dead_letters().await.is_empty());
}

/// Killed while ticket creations hang in a slow Zendesk: after the restart they are sent again
/// with the same idempotency keys, and each conversation still gets one ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_ticket_creations_are_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = Sims::start().await;
    let mut hub = HubProcess::start(dir.path()).await;
    connect(&hub, &sims, Inbound::Webhook).await;
    sims.zendesk_fault(Fault::Delay { ms: 1500 }, 1000, Some("/api/v2/tickets"));

    let conversations: Vec<Vec<String>> = (0..4)
        .map(|n| vec![format!("Order {n} arrived broken")])
        .collect();
    for (n, messages) in conversations.iter().enumerate() {
        sims.customer_says(4100 + n as i64, "Customer", &messages[0]);
    }
    wait_until("ticket creations in flight", EFFECT_TIMEOUT, || async {
        let in_flight = sims.zendesk_log.in_flight("POST", "/api/v2/tickets");
        check(in_flight >= 2, || format!("{in_flight} in flight"))
    })
    .await;
    hub.kill().await;

    // The simulator finishes what it was handling, as a real service would.
    wait_until(
        "the simulator to finish the abandoned requests",
        EFFECT_TIMEOUT,
        || async {
            let in_flight = sims.zendesk_log.in_flight("POST", "/api/v2/tickets");
            check(in_flight == 0, || format!("{in_flight} in flight"))
        },
    )
    .await;
    sims.zendesk.faults().clear();
    hub.restart().await;
    assert_exactly(&sims, &conversations).await;
    wait_idle(&hub).await;
    assert_exactly(&sims, &conversations).await;
    assert!(hub.api.dead_letters().await.is_empty());
}

/// Killed twice on the way back: once right after the agents answered (before the hub can have
/// fetched the answers), once while Telegram holds the sends back with flood control. Each
/// customer gets each answer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_tickets_exist_before_replies_are_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = Sims::start().await;
    let mut hub = HubProcess::start(dir.path()).await;
    connect(&hub, &sims, Inbound::Poll).await;

    let chats = [4200_i64, 4201, 4202];
    let conversations: Vec<Vec<String>> = chats
        .iter()
        .map(|c| vec![format!("Chat {c}: my login fails")])
        .collect();
    for (chat, messages) in chats.iter().zip(&conversations) {
        sims.customer_says(*chat, "Customer", &messages[0]);
    }
    assert_exactly(&sims, &conversations).await;
    let ticket_of = |chat: i64| {
        let subject = format!("Chat {chat}: my login fails");
        sims.tickets()
            .into_iter()
            .find(|t| t["subject"] == subject.as_str())
            .map(|t| ticket_id(&t))
            .expect("ticket")
    };

    // First kill: the answers exist only in Zendesk.
    for chat in chats {
        sims.zendesk
            .agent_reply(ticket_of(chat), &format!("First answer for {chat}"), true);
    }
    hub.kill().await;
    // Second kill: the hub has the answers but Telegram refuses every send for now (the
    // hub will wait out the last Retry-After after the restart too: keep it short).
    sims.telegram_fault(
        Fault::RateLimited {
            retry_after_secs: 3,
        },
        1000,
        Some("sendMessage"),
    );
    hub.restart().await;
    wait_until(
        "every first answer tried and held back",
        EFFECT_TIMEOUT,
        || async {
            let limited = sims.telegram_log.matching("POST", "sendMessage").len();
            check(limited >= chats.len(), || format!("{limited} sends tried"))
        },
    )
    .await;
    for chat in chats {
        sims.zendesk
            .agent_reply(ticket_of(chat), &format!("Second answer for {chat}"), true);
    }
    hub.kill().await;
    assert!(
        chats.iter().all(|c| sims.sent_to(*c).is_empty()),
        "nothing got through the flood control"
    );

    sims.telegram.faults().clear();
    hub.restart().await;
    for chat in chats {
        let first = format!("First answer for {chat}");
        let second = format!("Second answer for {chat}");
        wait_sent(&sims, chat, &[&first, &second]).await;
    }
    hub.api.run_job(ZENDESK, ZENDESK_STREAM).await;
    wait_idle(&hub).await;
    assert_eq!(
        sims.tickets().len(),
        chats.len(),
        "one ticket per conversation"
    );
    for (chat, messages) in chats.iter().zip(&conversations) {
        let first = format!("First answer for {chat}");
        let second = format!("Second answer for {chat}");
        assert_eq!(
            sims.sent_to(*chat),
            [first.clone(), second.clone()],
            "one delivery per reply"
        );
        let comments: Vec<String> = sims
            .comments(ticket_of(*chat))
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(comments, [messages[0].clone(), first, second]);
    }
    assert!(hub.api.dead_letters().await.is_empty());
    assert_eq!(
        hub.log().matches("===== start #").count(),
        3,
        "two restarts happened"
    );
}
