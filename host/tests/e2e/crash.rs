//! End to end: the hub is SIGKILLed after the helpdesk carried out a create or a comment but
//! before the hub could record it (the helpdesk's answer is held back until the hub is dead,
//! [`Hold`]). After the restart the hub tries the operation again: only what makes that retry
//! safe on the helpdesk's side keeps a second ticket or comment from appearing.
//!
//! - Zendesk: `Idempotency-Key` on ticket creation; Salesforce: the Case upsert by the hub's
//!   idempotency key; RT: the plugin looks for a ticket holding the key before creating one.
//! - Freshdesk tickets, and comments on every helpdesk, have no key: the restarted hub marks
//!   the interrupted attempt unconfirmed, and the plugin looks for the ticket or comment it
//!   may have made before making one (`unconfirmed-attempt` in the contract).

use switchboard_testkit::helpdesk_tests;
use switchboard_testkit::hub::*;

const CHAT: i64 = 5001;
const FIRST: &str = "My parcel is lost";
const FOLLOW_UP: &str = "The tracking number is 1Z999";

/// Starts a hub on `helpdesk` with pushes both ways, so nothing but the retry after the restart
/// can write to the helpdesk again.
async fn start(helpdesk: Helpdesk, dir: &std::path::Path) -> (World, HubProcess) {
    let world = World::start(helpdesk).await;
    let hub = HubProcess::start(dir).await;
    connect(&hub, &world, Inbound::Webhook).await;
    (world, hub)
}

/// With the answer to the request the armed [`Hold`] picks held back, waits until the helpdesk carried it
/// out (`done`), SIGKILLs the hub, lets the answer go to the dead connection, and restarts the
/// hub, which then finds the operation still in its outbox.
async fn crash_after_the_helpdesk_acted<F, Fut>(world: &World, hub: &mut HubProcess, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    wait_until(
        "the helpdesk to act and its answer to be held",
        world.timeout(),
        || async {
            check(world.hold.held() == 1, || {
                format!("{} held", world.hold.held())
            })?;
            done().await
        },
    )
    .await;
    hub.kill().await;
    world.hold.release();
    hub.restart().await;
    wait_idle(hub).await;
}

/// The ticket creation's answer is lost: the retry must not file a second ticket.
async fn ticket_created_just_before_a_crash_is_not_created_twice(helpdesk: Helpdesk) {
    let tickets = create_lost_in_a_crash(helpdesk).await;
    assert_eq!(
        tickets.len(),
        1,
        "one ticket for one conversation, got {}: {tickets:#?}",
        tickets.len()
    );
}

/// A customer's comment's answer is lost: the retry must not add it twice.
async fn comment_added_just_before_a_crash_is_not_added_twice(helpdesk: Helpdesk) {
    let bodies = comment_lost_in_a_crash(helpdesk).await;
    assert_eq!(bodies, [FIRST, FOLLOW_UP], "one comment per message");
}

/// Crashes the hub between the helpdesk creating the ticket and the hub recording it; returns
/// the tickets the helpdesk holds in the end (each with the customer's one message).
async fn create_lost_in_a_crash(helpdesk: Helpdesk) -> Vec<Ticket> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (world, mut hub) = start(helpdesk, dir.path()).await;
    world.hold.arm(move |m, p| World::is_create(helpdesk, m, p));
    world.customer_says(CHAT, "Aiko", FIRST);
    crash_after_the_helpdesk_acted(&world, &mut hub, || async {
        let tickets = world.tickets().await;
        check(tickets.len() == 1, || format!("{tickets:#?}"))
    })
    .await;
    let tickets = world.tickets().await;
    for ticket in &tickets {
        assert_eq!(world.bodies(&ticket.id).await, [FIRST]);
    }
    assert!(hub.api.dead_letters().await.is_empty());
    assert_eq!(hub.api.conversations().await.len(), 1);
    tickets
}

/// Crashes the hub between the helpdesk adding the customer's follow-up and the hub recording
/// it; returns the ticket's message bodies in the end.
async fn comment_lost_in_a_crash(helpdesk: Helpdesk) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (world, mut hub) = start(helpdesk, dir.path()).await;
    world.customer_says(CHAT, "Aiko", FIRST);
    let ticket = wait_tickets(&world, 1).await.remove(0);
    wait_idle(&hub).await;

    world
        .hold
        .arm(move |m, p| World::is_comment(helpdesk, m, p));
    world.customer_says(CHAT, "Aiko", FOLLOW_UP);
    crash_after_the_helpdesk_acted(&world, &mut hub, || async {
        let bodies = world.bodies(&ticket.id).await;
        check(bodies.len() == 2, || format!("{bodies:?}"))
    })
    .await;
    assert_eq!(world.tickets().await.len(), 1);
    assert!(hub.api.dead_letters().await.is_empty());
    world.bodies(&ticket.id).await
}

/// The ticket creation's answer is lost, an agent replies and changes the status on the
/// ticket while the hub is down, and after the restart the hub reads those changes before
/// its retried create has recorded the ticket. In the field a 429 on the retry opens that
/// window; here the retry's answer is held until the hub has read the changes, so the order
/// is certain. The reply must still reach the customer, once, and the status the hub.
async fn reply_read_before_the_ticket_is_recorded_reaches_the_customer(helpdesk: Helpdesk) {
    const REPLY: &str = "Sorry about that, a new parcel is on its way";
    let dir = tempfile::tempdir().expect("tempdir");
    let world = World::start(helpdesk).await;
    let mut hub = HubProcess::start(dir.path()).await;
    // Polled both ways, so the hub reads the agent's changes after the restart by itself.
    connect(&hub, &world, Inbound::Poll).await;
    world.hold.arm(move |m, p| World::is_create(helpdesk, m, p));
    world.customer_says(CHAT, "Aiko", FIRST);
    wait_until(
        "the helpdesk to file the ticket",
        world.timeout(),
        || async {
            check(world.hold.held() == 1, || {
                format!("{} held", world.hold.held())
            })?;
            let tickets = world.tickets().await;
            check(tickets.len() == 1, || format!("{tickets:#?}"))
        },
    )
    .await;
    hub.kill().await;
    world.hold.release();
    let ticket = world.tickets().await.remove(0);
    world.agent_reply(&ticket.id, REPLY, true).await;
    world.set_status(&ticket.id, "solved").await;

    world
        .hold
        .arm(move |m, p| World::is_create_retry(helpdesk, m, p));
    hub.restart().await;
    let database = hub.database_path();
    wait_until(
        "the hub to read the changes of the ticket it has not recorded",
        world.timeout(),
        || async {
            let held = count_in_database(
                &database,
                "SELECT COUNT(*) FROM inbound_events WHERE kind = 'helpdesk' AND outcome = 'unknown-ticket'",
            )
            .await;
            check(held >= 2, || format!("{held} changes read"))
        },
    )
    .await;
    world.hold.release();

    wait_sent(&world, CHAT, &[REPLY]).await;
    wait_hub_sees_ticket_status(&hub, &world, &ticket.id, helpdesk.solved_reads_as()).await;
    wait_idle(&hub).await;
    assert_eq!(world.sent_to(CHAT), [REPLY], "the reply, once");
    assert_eq!(world.tickets().await.len(), 1, "one ticket");
    assert!(hub.api.dead_letters().await.is_empty());
}

helpdesk_tests!(zendesk => ticket_created_just_before_a_crash_is_not_created_twice,
    comment_added_just_before_a_crash_is_not_added_twice,
    reply_read_before_the_ticket_is_recorded_reaches_the_customer);
helpdesk_tests!(salesforce => ticket_created_just_before_a_crash_is_not_created_twice,
    comment_added_just_before_a_crash_is_not_added_twice,
    reply_read_before_the_ticket_is_recorded_reaches_the_customer);
helpdesk_tests!(rt => ticket_created_just_before_a_crash_is_not_created_twice,
    comment_added_just_before_a_crash_is_not_added_twice,
    reply_read_before_the_ticket_is_recorded_reaches_the_customer);
helpdesk_tests!(freshdesk => ticket_created_just_before_a_crash_is_not_created_twice,
    comment_added_just_before_a_crash_is_not_added_twice,
    reply_read_before_the_ticket_is_recorded_reaches_the_customer);
