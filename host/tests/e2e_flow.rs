//! End to end, with the real `switchboard serve` binary, a real SQLite file and the simulators:
//! customers write to the Telegram bot, tickets appear in Zendesk, agents answer, answers reach
//! the customers; by webhook, by poll, and by both at once.

mod common;

use common::hub::*;
use serde_json::{json, Value};

const AIKO: i64 = 1001;
const BRUNO: i64 = 1002;
const CHEN: i64 = 1003;

const AIKO_FIRST: &str = "My order never arrived\nOrder #1234, placed last Monday.";
const AIKO_FOLLOW_UP: &str = "It was supposed to come on Friday.";
const BRUNO_FIRST: &str = "Can I change my delivery address?";
const CHEN_FIRST: &str = "Refund request\nThe blender broke after two days.";
const AIKO_AFTER_SOLVED: &str = "Thanks, it came! One more thing: is there a warranty?";

/// A Zendesk ticket's id.
fn id(ticket: &Value) -> u64 {
    ticket["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("ticket without id: {ticket}"))
}

/// The ticket whose subject is `subject`.
fn ticket_with_subject<'t>(tickets: &'t [Value], subject: &str) -> &'t Value {
    tickets
        .iter()
        .find(|t| t["subject"] == subject)
        .unwrap_or_else(|| panic!("no ticket with subject {subject:?} in {tickets:#?}"))
}

/// The display name of a ticket's requester.
fn requester_name(sims: &Sims, ticket: &Value) -> String {
    let requester = ticket["requester_id"].as_u64();
    sims.zendesk
        .users()
        .into_iter()
        .find(|u| u["id"].as_u64() == requester)
        .and_then(|u| u["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no requester for {ticket}"))
}

/// The whole scripted conversation, checking every effect as it goes and the exact end state.
async fn conversation_flows_both_ways(inbound: Inbound) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = Sims::start().await;
    let hub = HubProcess::start(dir.path()).await;
    connect(&hub, &sims, inbound).await;
    let mut customers = Customers::new(&hub, &sims, inbound).await;

    // Three customers write: three tickets, each with the message as its first comment.
    customers
        .say_all(&[
            (AIKO, "Aiko", AIKO_FIRST),
            (BRUNO, "Bruno", BRUNO_FIRST),
            (CHEN, "Chen", CHEN_FIRST),
        ])
        .await;
    let tickets = wait_tickets(&sims, 3).await;
    let aiko = ticket_with_subject(&tickets, "My order never arrived").clone();
    let bruno = ticket_with_subject(&tickets, BRUNO_FIRST).clone();
    let chen = ticket_with_subject(&tickets, "Refund request").clone();
    for (ticket, name, first) in [
        (&aiko, "Aiko", AIKO_FIRST),
        (&bruno, "Bruno", BRUNO_FIRST),
        (&chen, "Chen", CHEN_FIRST),
    ] {
        wait_comments(&sims, id(ticket), &[first]).await;
        assert_eq!(requester_name(&sims, ticket), name);
        let tags: Vec<&str> = ticket["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tags.contains(&"telegram"),
            "the channel is tagged: {tags:?}"
        );
        assert!(
            ticket["external_id"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "external_id links back: {ticket}"
        );
        assert!(
            sims.comments(id(ticket))[0].1,
            "a customer message is a public comment"
        );
    }

    // A follow-up lands on the same open ticket.
    customers.say(AIKO, "Aiko", AIKO_FOLLOW_UP).await;
    wait_comments(&sims, id(&aiko), &[AIKO_FIRST, AIKO_FOLLOW_UP]).await;

    // An agent's public reply reaches the customer.
    let reply = "Sorry about that, Aiko! A replacement ships today.";
    sims.zendesk.agent_reply(id(&aiko), reply, true);
    wait_sent(&sims, AIKO, &[reply]).await;

    // An internal note is never sent; the public reply after it is (in order, so once the
    // reply arrived the note was handled too).
    sims.zendesk.agent_reply(
        id(&bruno),
        "Internal: check the address-change policy first.",
        false,
    );
    let bruno_reply = "Yes: just send us the new address here.";
    sims.zendesk.agent_reply(id(&bruno), bruno_reply, true);
    wait_sent(&sims, BRUNO, &[bruno_reply]).await;

    // A reply longer than Telegram's 4096 characters arrives split, nothing lost.
    let long_reply: String = (1..=700).map(|n| format!("step {n:03}. ")).collect();
    assert!(long_reply.len() > 4096 + 2000);
    sims.zendesk.agent_reply(id(&chen), &long_reply, true);
    let parts = wait_until("the long reply in parts", EFFECT_TIMEOUT, || async {
        let sent = sims.sent_to(CHEN);
        let joined: String = sent.concat();
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        check(squash(&joined) == squash(&long_reply), || {
            format!("{} parts, {} chars", sent.len(), joined.len())
        })?;
        Ok(sent)
    })
    .await;
    assert!(parts.len() >= 2, "split into several messages");
    assert!(
        parts.iter().all(|p| p.encode_utf16().count() <= 4096),
        "each part fits Telegram's limit"
    );

    // Solved: the next message from that chat opens a new ticket.
    sims.zendesk.set_status(id(&aiko), "solved");
    wait_hub_sees_ticket_status(&hub, id(&aiko), "solved").await;
    customers.say(AIKO, "Aiko", AIKO_AFTER_SOLVED).await;
    let tickets = wait_tickets(&sims, 4).await;
    let newest = tickets.last().expect("four tickets");
    assert_ne!(id(newest), id(&aiko));
    assert_eq!(requester_name(&sims, newest), "Aiko");
    assert_eq!(
        newest["requester_id"], aiko["requester_id"],
        "the same requester is found again"
    );
    wait_comments(&sims, id(newest), &[AIKO_AFTER_SOLVED]).await;

    // Nothing more happens: polls that see the hub's own comments and replies again find no
    // news (no loops), and nothing was created or sent twice.
    if inbound != Inbound::Webhook {
        hub.api.run_job(TELEGRAM, TELEGRAM_STREAM).await;
    }
    hub.api.run_job(ZENDESK, ZENDESK_STREAM).await;
    wait_idle(&hub).await;
    assert_eq!(sims.tickets().len(), 4);
    let bodies = |ticket: &Value| {
        sims.comments(id(ticket))
            .into_iter()
            .map(|(b, _)| b)
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(&aiko), [AIKO_FIRST, AIKO_FOLLOW_UP, reply]);
    assert_eq!(
        bodies(&bruno),
        [
            BRUNO_FIRST,
            "Internal: check the address-change policy first.",
            bruno_reply
        ]
    );
    assert_eq!(bodies(&chen), [CHEN_FIRST.to_string(), long_reply.clone()]);
    assert_eq!(sims.sent_to(AIKO), [reply]);
    assert_eq!(sims.sent_to(BRUNO), [bruno_reply]);
    assert_eq!(sims.sent_to(CHEN), parts);
    assert!(hub.api.dead_letters().await.is_empty());
    let conversations = hub.api.conversations().await;
    assert_eq!(
        conversations.len(),
        3,
        "one conversation per chat: {conversations:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_by_webhook() {
    conversation_flows_both_ways(Inbound::Webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_by_poll() {
    conversation_flows_both_ways(Inbound::Poll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_by_webhook_and_poll_at_once() {
    conversation_flows_both_ways(Inbound::Both).await;
}

/// With the link's `reopen_solved` setting, a message after solving reopens the last ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_setting_reopens_the_solved_ticket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = Sims::start().await;
    let hub = HubProcess::start(dir.path()).await;
    connect_with(&hub, &sims, Inbound::Poll, json!({"reopen_solved": true})).await;
    let mut customers = Customers::new(&hub, &sims, Inbound::Poll).await;

    customers.say(AIKO, "Aiko", AIKO_FIRST).await;
    let ticket = wait_tickets(&sims, 1).await.remove(0);
    sims.zendesk.set_status(id(&ticket), "solved");
    wait_hub_sees_ticket_status(&hub, id(&ticket), "solved").await;

    customers.say(AIKO, "Aiko", AIKO_AFTER_SOLVED).await;
    wait_comments(&sims, id(&ticket), &[AIKO_FIRST, AIKO_AFTER_SOLVED]).await;
    let tickets = sims.tickets();
    assert_eq!(tickets.len(), 1, "no new ticket");
    assert_eq!(
        tickets[0]["status"], "open",
        "the solved ticket is open again"
    );
}
