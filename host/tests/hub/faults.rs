//! Delivery under faults: rate limits are waited out, transient errors retried with backoff,
//! permanent ones dead-lettered until an admin retries them. Nothing is delivered twice.

use std::time::{Duration, Instant};

use crate::support::{world, World};
use switchboard_simulators::faults::{Fault, FaultSpec};

const CHAT: i64 = 7001;

/// Delivers until the outbox is empty (or `secs` pass).
async fn drain(w: &World, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        w.settle().await;
        if w.hub.health().await.outbox_pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {:?}",
            w.hub.health().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn fault(fault: Fault, count: u32, path: &str) -> FaultSpec {
    FaultSpec {
        fault,
        count,
        path: Some(path.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_rate_limit_is_waited_out_and_delivered_once() {
    let w = world().await;
    w.zd.faults().inject(fault(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
        "/api/v2/tickets",
    ));
    w.customer(CHAT, "Aiko", "Hello");
    let started = Instant::now();
    w.inbound_cycle().await;
    assert!(w.tickets().is_empty(), "delivered despite the 429");
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.settle().await;
    assert!(w.tickets().is_empty(), "retried before Retry-After");
    drain(&w, 5).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(w.tickets().len(), 1);
    assert_eq!(w.zd.comments(w.ticket_id(0)).len(), 1);
    assert!(w.hub.render_metrics().contains(
        "switchboard_outbox_retries_total{installation=\"zd\",kind=\"create-ticket\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_5xx_are_retried_in_order() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "one");
    w.inbound_cycle().await;
    w.zd.faults()
        .inject(fault(Fault::Status { status: 503 }, 3, "/api/v2/tickets"));
    for text in ["two", "three", "four"] {
        w.customer(CHAT, "Aiko", text);
    }
    w.inbound_cycle().await;
    drain(&w, 10).await;
    let bodies: Vec<String> =
        w.zd.comments(w.ticket_id(0))
            .iter()
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(bodies, ["one", "two", "three", "four"]);
    assert!(w
        .hub
        .list_dead_letters()
        .await
        .expect("dead letters")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_flood_control_and_permanent_errors() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "Hello");
    w.inbound_cycle().await;
    let ticket = w.ticket_id(0);
    let agent = w.human_agent().await;

    // Flood control: sent after the wait, once.
    w.tg.faults().inject(fault(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
        "sendMessage",
    ));
    w.comment_as(ticket, agent, "first answer", true).await;
    w.helpdesk_cycle().await;
    assert!(w.tg.sent_messages(Some(CHAT)).is_empty());
    drain(&w, 5).await;
    assert_eq!(w.tg.sent_messages(Some(CHAT)).len(), 1);

    // A permanent 4xx is a dead letter at once, with the error; a retry after the fault is
    // gone delivers it, once.
    w.tg.faults()
        .inject(fault(Fault::Status { status: 400 }, 1, "sendMessage"));
    w.comment_as(ticket, agent, "second answer", true).await;
    w.helpdesk_cycle().await;
    let dead = w.hub.list_dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].kind, "send-message");
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(
        dead[0].unconfirmed_since, None,
        "a 400 says nothing was sent"
    );
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("400"),
        "{dead:?}"
    );
    assert_eq!(w.hub.health().await.dead_letters, 1);
    w.hub.retry_dead_letter(dead[0].id).await.expect("retry");
    drain(&w, 5).await;
    let sent: Vec<String> =
        w.tg.sent_messages(Some(CHAT))
            .into_iter()
            .map(|m| m.text)
            .collect();
    assert_eq!(sent, ["first answer", "second answer"]);
    assert!(w
        .hub
        .list_dead_letters()
        .await
        .expect("dead letters")
        .is_empty());
    assert!(
        w.hub.retry_dead_letter(dead[0].id).await.is_err(),
        "no longer a dead letter"
    );

    // Discarding drops it for good.
    w.tg.faults()
        .inject(fault(Fault::Status { status: 400 }, 1, "sendMessage"));
    w.comment_as(ticket, agent, "third answer", true).await;
    w.helpdesk_cycle().await;
    let dead = w.hub.list_dead_letters().await.expect("dead letters");
    w.hub
        .discard_dead_letter(dead[0].id)
        .await
        .expect("discard");
    drain(&w, 5).await;
    assert_eq!(w.tg.sent_messages(Some(CHAT)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_become_dead_letters_after_max_attempts() {
    let w = world().await;
    w.zd.faults()
        .inject(fault(Fault::Status { status: 500 }, 100, "/api/v2/users"));
    w.customer(CHAT, "Aiko", "Hello");
    w.inbound_cycle().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while w
        .hub
        .list_dead_letters()
        .await
        .expect("dead letters")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(25)).await;
        w.settle().await;
    }
    let dead = w.hub.list_dead_letters().await.expect("dead letters");
    assert_eq!(dead[0].attempts, 5);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("gave up after 5 attempts"),
        "{dead:?}"
    );
    assert_eq!(
        dead[0].unconfirmed_since, None,
        "the requester lookup failed; no ticket creation was attempted"
    );
    w.zd.faults().clear();
    w.hub.retry_dead_letter(dead[0].id).await.expect("retry");
    drain(&w, 5).await;
    assert_eq!(w.tickets().len(), 1);
}

/// A 5xx on the creation itself leaves its outcome unknown (the service may have acted): the
/// dead letter says so, and the admin's retry still files exactly one ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_on_the_effect_leaves_it_unconfirmed() {
    let w = world().await;
    w.zd.faults()
        .inject(fault(Fault::Status { status: 500 }, 100, "/api/v2/tickets"));
    w.customer(CHAT, "Aiko", "Hello");
    w.inbound_cycle().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = w.hub.list_dead_letters().await.expect("dead letters");
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(25)).await;
        w.settle().await;
    };
    assert_eq!(dead[0].kind, "create-ticket");
    assert!(dead[0].unconfirmed_since.is_some(), "{dead:?}");
    w.zd.faults().clear();
    w.hub.retry_dead_letter(dead[0].id).await.expect("retry");
    drain(&w, 5).await;
    assert_eq!(w.tickets().len(), 1);
}
