//! The sync engine end to end, in process: the real runtime and plugins, the simulators, and
//! a SQLite file. A customer's messages become a Zendesk ticket and its comments; an agent's
//! public reply reaches the customer (split when long); notes stay in Zendesk; a solved ticket
//! makes the next message open a new one.

use crate::support::{world, world_with, World, TG_JOB, ZD_JOB};
use switchboard::hub::LinkSettings;

const CHAT: i64 = 5001;

/// The conversation id the hub gave the only conversation.
async fn only_conversation(w: &World) -> String {
    let conversations = w.hub.list_conversations().await.expect("conversations");
    assert_eq!(conversations.len(), 1, "{conversations:#?}");
    conversations[0].id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_becomes_ticket_and_reply_goes_back() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "My order is late\nIt was due on Monday.");
    w.inbound_cycle().await;

    let tickets = w.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    let ticket = &tickets[0];
    let conversation = only_conversation(&w).await;
    assert_eq!(ticket["subject"], "My order is late");
    assert_eq!(ticket["external_id"], conversation.as_str());
    let tags: Vec<&str> = ticket["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tags.contains(&"telegram") && tags.contains(&"vip"),
        "{tags:?}"
    );
    let ticket_id = ticket["id"].as_u64().expect("id");
    let requester = ticket["requester_id"].as_u64().expect("requester");
    let user =
        w.zd.users()
            .into_iter()
            .find(|u| u["id"] == requester)
            .expect("requester user");
    assert_eq!(user["name"], "Aiko");
    assert_eq!(user["external_id"], format!("telegram:{CHAT}"));
    let comments = w.zd.comments(ticket_id);
    assert_eq!(comments.len(), 1);
    assert!(comments[0]["body"]
        .as_str()
        .unwrap_or_default()
        .contains("It was due on Monday."));
    assert_eq!(comments[0]["author_id"], requester);

    // A follow-up goes into the same ticket, by the same requester.
    w.customer(CHAT, "Aiko", "Any news?");
    w.inbound_cycle().await;
    assert_eq!(w.tickets().len(), 1);
    let comments = w.zd.comments(ticket_id);
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[1]["body"], "Any news?");
    assert_eq!(comments[1]["author_id"], requester);

    // An agent answers publicly (too long for one Telegram message) and files a note.
    let agent = w.human_agent().await;
    let long_reply = format!(
        "Sorry for the delay.\n{}",
        "Your parcel is on its way to you. ".repeat(150)
    );
    w.comment_as(ticket_id, agent, &long_reply, true).await;
    w.comment_as(ticket_id, agent, "internal: courier says Tuesday", false)
        .await;
    w.helpdesk_cycle().await;
    let sent = w.tg.sent_messages(Some(CHAT));
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(sent.iter().all(|m| m.text.encode_utf16().count() <= 4096));
    assert!(sent[0].text.starts_with("Sorry for the delay."));
    assert_eq!(
        sent.iter()
            .map(|m| m.text.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(" "),
        long_reply.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(
        !sent.iter().any(|m| m.text.contains("courier")),
        "a note was sent"
    );

    // Polling again sends nothing twice, and the hub's own comments do not come back.
    w.helpdesk_cycle().await;
    w.inbound_cycle().await;
    assert_eq!(w.tg.sent_messages(Some(CHAT)).len(), 2);
    assert_eq!(w.zd.comments(ticket_id).len(), 4);

    let detail = w.hub.get_conversation(&conversation).await.expect("detail");
    let directions: Vec<(&str, &str)> = detail
        .messages
        .iter()
        .map(|m| (m.direction.as_str(), m.state.as_str()))
        .collect();
    assert_eq!(
        directions,
        [
            ("inbound", "delivered"),
            ("inbound", "delivered"),
            ("outbound", "delivered"),
            ("note", "recorded")
        ]
    );
    assert_eq!(detail.messages[2].parts, 2);

    // Solved: the next message opens a new ticket.
    w.zd.set_status(ticket_id, "solved");
    w.helpdesk_cycle().await;
    let detail = w.hub.get_conversation(&conversation).await.expect("detail");
    assert_eq!(detail.tickets[0].status, "solved");
    assert!(detail.conversation.current_ticket.is_none());
    w.customer(CHAT, "Aiko", "It arrived broken");
    w.inbound_cycle().await;
    let tickets = w.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert_eq!(tickets[1]["subject"], "It arrived broken");
    assert_eq!(tickets[1]["requester_id"], requester);
    assert_eq!(w.zd.comments(ticket_id).len(), 4);

    let metrics = w.hub.render_metrics();
    assert!(
        metrics.contains("switchboard_messages_in_total{installation=\"tg\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_plugin_call_seconds"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_solved_adds_to_the_last_ticket() {
    let w = world_with(LinkSettings {
        reopen_solved: true,
        ..LinkSettings::default()
    })
    .await;
    w.customer(CHAT, "Aiko", "Hello");
    w.inbound_cycle().await;
    let ticket_id = w.ticket_id(0);
    w.zd.set_status(ticket_id, "solved");
    w.helpdesk_cycle().await;
    w.customer(CHAT, "Aiko", "One more thing");
    w.inbound_cycle().await;
    assert_eq!(w.tickets().len(), 1);
    assert_eq!(w.zd.comments(ticket_id).len(), 2);
    assert_eq!(w.tickets()[0]["status"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_to_a_ticket_closed_between_polls_opens_a_new_ticket() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "Hello");
    w.inbound_cycle().await;
    let first = w.ticket_id(0);
    // Closed in Zendesk, and the hub has not polled since: Zendesk refuses the follow-ups.
    w.zd.set_status(first, "closed");
    w.customer(CHAT, "Aiko", "Are you there?");
    w.customer(CHAT, "Aiko", "Hello again");
    w.inbound_cycle().await;

    let tickets = w.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert_eq!(w.zd.comments(first).len(), 1);
    let second = w.ticket_id(1);
    let bodies: Vec<String> =
        w.zd.comments(second)
            .iter()
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(bodies, ["Are you there?", "Hello again"]);
    assert_eq!(tickets[1]["subject"], "Are you there?");
    assert!(w.hub.list_dead_letters().await.expect("dead").is_empty());

    let detail = w
        .hub
        .get_conversation(&only_conversation(&w).await)
        .await
        .expect("conversation");
    let states: Vec<(Option<String>, &str, bool)> = detail
        .tickets
        .iter()
        .map(|t| (t.external_id.clone(), t.status.as_str(), t.is_current))
        .collect();
    assert!(
        states.contains(&(Some(first.to_string()), "closed", false))
            && states
                .iter()
                .any(|(id, _, current)| *id == Some(second.to_string()) && *current),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_before_the_link_are_synced_once_linked() {
    let w = world().await;
    w.hub.delete_link("tg-to-zd").await.expect("unlink");
    w.customer(CHAT, "Aiko", "Anyone there?");
    w.inbound_cycle().await;
    assert!(w.tickets().is_empty());

    w.hub
        .create_link(switchboard::hub::NewLink {
            id: "tg-to-zd".into(),
            social_installation: crate::support::TG.into(),
            helpdesk_installation: crate::support::ZD.into(),
            settings: LinkSettings::default(),
        })
        .await
        .expect("link");
    w.settle().await;
    let tickets = w.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    assert_eq!(tickets[0]["subject"], "Anyone there?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_message_by_webhook_and_poll_is_one_comment() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "First");
    w.inbound_cycle().await;
    w.customer(CHAT, "Aiko", "Second");
    // A forged delivery is refused and stores nothing.
    let error = w
        .hub
        .handle_webhook("tg", w.telegram_webhook("wrong"))
        .await
        .expect_err("refused");
    assert!(
        matches!(error, switchboard::hub::HubError::Unauthorized(_)),
        "{error:?}"
    );
    assert_eq!(
        w.hub
            .db()
            .count_pending_inbound_events()
            .await
            .expect("count"),
        0
    );
    // The same update by webhook twice, then by poll.
    let request = w.telegram_webhook(crate::support::TG_SECRET);
    let unknown = w.telegram_webhook("x");
    let response = w
        .hub
        .handle_webhook("tg", request.clone())
        .await
        .expect("webhook");
    assert_eq!(response.status, 200);
    w.hub
        .handle_webhook("tg", request)
        .await
        .expect("redelivery");
    w.inbound_cycle().await;
    w.inbound_cycle().await;
    let ticket_id = w.ticket_id(0);
    let bodies: Vec<String> =
        w.zd.comments(ticket_id)
            .iter()
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(bodies, ["First", "Second"]);
    assert!(matches!(
        w.hub.handle_webhook("nope", unknown).await,
        Err(switchboard::hub::HubError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_deliver_in_the_background() {
    let w = world().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    w.hub
        .set_job_schedule(TG_JOB, "* * * * * *", None)
        .await
        .expect("every second");
    w.hub
        .set_job_schedule(ZD_JOB, "* * * * * *", Some("Europe/Paris"))
        .await
        .expect("every second");
    let mut workers = w.hub.start_workers(shutdown.clone());
    w.customer(CHAT, "Aiko", "Hi from the background");
    w.customer(CHAT + 1, "Ben", "Me too");
    crate::support::eventually(15, "two tickets", || w.tickets().len() == 2).await;
    let ticket_id = w.ticket_id(0);
    let agent = w.human_agent().await;
    w.comment_as(ticket_id, agent, "On it!", true).await;
    crate::support::eventually(15, "the reply", || !w.tg.sent_messages(None).is_empty()).await;
    let jobs = w.hub.list_jobs().await.expect("jobs");
    assert!(
        jobs.iter().all(|j| j
            .last_run
            .as_ref()
            .is_some_and(|r| r.outcome == "ok" || r.outcome == "running")),
        "{jobs:#?}"
    );
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let health = w.hub.health().await;
    assert!(
        health.ok && health.outbox_pending == 0 && health.dead_letters == 0,
        "{health:?}"
    );
    assert_eq!(w.tg.sent_messages(None).len(), 1);
}

/// A chat's webhooks stored out of order (the second message first, as concurrent deliveries
/// can be) still reach the ticket in the customer's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_stored_out_of_order_are_filed_in_order() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "First");
    let first = w.telegram_webhook(crate::support::TG_SECRET);
    w.customer(CHAT, "Aiko", "Second");
    let second = w.telegram_webhook(crate::support::TG_SECRET);
    w.customer(CHAT + 1, "Ben", "Other chat");
    let other = w.telegram_webhook(crate::support::TG_SECRET);
    for request in [second, other, first] {
        w.hub.handle_webhook("tg", request).await.expect("webhook");
    }
    w.settle().await;
    let tickets = w.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    let bodies = |ticket: u64| -> Vec<String> {
        w.zd.comments(ticket)
            .iter()
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let mut all = [bodies(w.ticket_id(0)), bodies(w.ticket_id(1))];
    all.sort();
    assert_eq!(all, [vec!["First", "Second"], vec!["Other chat"]]);
}

/// An event whose processing fails every time (here a database trigger refuses its
/// conversation) is tried a few times, then set aside where the admin sees it; the events
/// behind it go on, and once the cause is gone the admin hands it back and it is filed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_always_fails_is_quarantined_and_the_rest_go_on() {
    use sqlx::Connection as _;
    const POISONED: i64 = 6006;
    let w = world().await;
    let url = format!("sqlite://{}", w.dir.path().join("hub.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the hub's database");
    sqlx::query(&format!(
        "CREATE TRIGGER poison BEFORE INSERT ON conversations \
         WHEN NEW.thread_id LIKE '%{POISONED}%' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
    ))
    .execute(&mut db)
    .await
    .expect("create the trigger");

    w.customer(POISONED, "Mallory", "This one cannot be stored");
    w.customer(CHAT, "Aiko", "My order is late");
    let run = w.hub.run_job_now(TG_JOB).await.expect("poll telegram");
    assert_eq!(run.outcome, "ok", "{run:?}");
    let mut failed_passes = 0;
    while switchboard::hub::processor::process_pending(&w.hub)
        .await
        .is_err()
    {
        failed_passes += 1;
        assert!(failed_passes < 10, "the failing event is never set aside");
    }
    assert_eq!(
        failed_passes, 4,
        "tried five times, the fifth sets it aside"
    );
    switchboard::hub::outbox::deliver_due(&w.hub)
        .await
        .expect("deliver");
    assert_eq!(w.tickets().len(), 1, "the message behind it is filed");

    let quarantined = w.hub.list_quarantined_events().await.expect("list");
    assert_eq!(quarantined.len(), 1, "{quarantined:#?}");
    let event = &quarantined[0];
    assert_eq!(event.attempts, 5);
    assert!(
        event
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("poisoned row")),
        "{event:?}"
    );
    assert_eq!(w.hub.health().await.inbound_quarantined, 1);

    sqlx::query("DROP TRIGGER poison")
        .execute(&mut db)
        .await
        .expect("drop the trigger");
    w.hub
        .retry_quarantined_event(event.id)
        .await
        .expect("hand it back");
    w.settle().await;
    assert_eq!(w.tickets().len(), 2, "filed once its cause is gone");
    assert_eq!(w.hub.health().await.inbound_quarantined, 0);
}

/// A poll that the service refuses with 429 waits out its Retry-After, as deliveries do:
/// the job's next run moves past it instead of coming at the next slot of its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_poll_waits_as_the_service_asks() {
    use switchboard_simulators::faults::{Fault, FaultSpec};
    let w = world().await;
    // Every second: without the wait, the next run would be at most a second away.
    w.hub
        .set_job_schedule(TG_JOB, "* * * * * *", None)
        .await
        .expect("schedule");
    w.tg.faults().inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 30,
        },
        count: 1,
        path: Some("getUpdates".into()),
    });
    let asked = chrono::Utc::now();
    let run = w.hub.run_job_now(TG_JOB).await.expect("run the job");
    assert_eq!(run.outcome, "error", "{run:?}");
    let job = w
        .hub
        .list_jobs()
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.id == TG_JOB)
        .expect("the telegram job");
    let next = job.next_run_at.as_deref().expect("a next run");
    let next = chrono::DateTime::parse_from_rfc3339(next).expect("an RFC 3339 time");
    assert!(
        next >= asked + chrono::Duration::seconds(30),
        "next run at {next}, before the 30 s the service asked for (asked at {asked})"
    );
}

// ----- query plans ----------------------------------------------------------------------------

/// Tables that grow with the traffic: a statement that scans one gets slower with every
/// message, which is how the hub's CPU per ticket once grew fivefold under a backlog.
const GROWING_TABLES: &[&str] = &[
    "inbound_events",
    "outbox",
    "messages",
    "conversations",
    "tickets",
    "identities",
    "contacts",
    "requesters",
    "own_ids",
    "job_runs",
];

/// Partial indexes whose rows are work in flight or waiting for an admin, not history: a
/// scan of one is bounded by the backlog, not by the size of the database.
const BOUNDED_INDEXES: &[&str] = &[
    "inbound_events_pending",
    "inbound_events_unlinked",
    "inbound_events_quarantined",
    "outbox_pending",
    "outbox_lane",
    "outbox_dead",
];

/// Columns with few distinct values: a search on these alone reads a large share of the table
/// (all identities of the network, all events of an installation).
const FEW_VALUES: &[&str] = &[
    "network",
    "status",
    "kind",
    "source",
    "outcome",
    "direction",
    "visibility",
    "state",
    "stream",
    "installation_id",
    "helpdesk_installation_id",
    "social_installation_id",
];

/// Why a step of a plan reads a growing table in full, or nearly: a `SCAN` other than one of
/// a bounded index or up to a LIMIT, or a `SEARCH` keyed only by columns with few values.
fn reads_a_growing_table(
    detail: &str,
    aliases: &std::collections::HashMap<String, String>,
    limited: bool,
) -> bool {
    let (scan, rest) = if let Some(rest) = detail.strip_prefix("SCAN ") {
        (true, rest)
    } else if let Some(rest) = detail.strip_prefix("SEARCH ") {
        (false, rest)
    } else {
        return false;
    };
    let name = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let table = aliases.get(&name).unwrap_or(&name);
    if !GROWING_TABLES.contains(&table.as_str()) {
        return false;
    }
    let index = rest
        .split_once("INDEX ")
        .map(|(_, after)| after.split_whitespace().next().unwrap_or_default());
    if index.is_some_and(|i| BOUNDED_INDEXES.contains(&i)) {
        return false;
    }
    if scan {
        return !(limited && index.is_some());
    }
    // `SEARCH t USING INDEX i (a=? AND b>?)`: the columns it is keyed by.
    let keys = rest
        .split_once('(')
        .and_then(|(_, after)| after.split_once(')'))
        .map_or("", |(inside, _)| inside);
    keys.split(" AND ").all(|key| {
        let column = key
            .split(|c: char| "=<>".contains(c) || c.is_whitespace())
            .next()
            .unwrap_or_default();
        FEW_VALUES.contains(&column)
    })
}

/// Every SQL statement sqlx ran in this test process, from its `sqlx::query` events.
fn statements_seen() -> &'static std::sync::Mutex<std::collections::BTreeSet<String>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        std::sync::OnceLock::new();
    SEEN.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(StatementLog);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        std::sync::Mutex::default()
    })
}

struct StatementLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            summary: String,
            statement: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_string(),
                    "db.statement" => self.statement = value.to_string(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // sqlx gives the whole statement only when its summary is shorter.
        let sql = if fields.statement.trim().is_empty() {
            fields.summary
        } else {
            fields.statement
        };
        statements_seen()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.trim().to_string());
    }
}

/// The tables that the names in `sql`'s FROM, JOIN, UPDATE and INTO clauses stand for
/// (`outbox o` makes `o` stand for `outbox`).
fn table_aliases(sql: &str) -> std::collections::HashMap<String, String> {
    const NOT_ALIASES: &[&str] = &[
        "where",
        "set",
        "on",
        "join",
        "left",
        "inner",
        "cross",
        "order",
        "group",
        "limit",
        "values",
        "select",
        "using",
        "and",
        "or",
        "returning",
        "when",
        "default",
        "union",
    ];
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut aliases = std::collections::HashMap::new();
    for (i, word) in words.iter().enumerate() {
        if !matches!(word.as_str(), "from" | "join" | "update" | "into") {
            continue;
        }
        let Some(table) = words.get(i + 1) else {
            continue;
        };
        aliases.insert(table.clone(), table.clone());
        let alias = match words.get(i + 2).map(String::as_str) {
            Some("as") => words.get(i + 3),
            Some(next) if !NOT_ALIASES.contains(&next) => words.get(i + 2),
            _ => None,
        };
        if let Some(alias) = alias {
            aliases.insert(alias.clone(), table.clone());
        }
    }
    aliases
}

/// The hub's statements, as a busy day runs them, each checked with `EXPLAIN QUERY PLAN`: none
/// may scan a growing table, except through an index of work in flight. The database has
/// no statistics (the hub never runs ANALYZE), so SQLite plans by the schema alone and these
/// plans are the ones it uses on a database of a million messages too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_scans_a_growing_table() {
    use sqlx::Connection as _;
    statements_seen();
    let w = world().await;
    // A conversation both ways, a note, a solved ticket and the new one after it.
    w.customer(CHAT, "Aiko", "My order is late");
    w.inbound_cycle().await;
    w.customer(CHAT, "Aiko", "Any news?");
    w.inbound_cycle().await;
    let ticket = w.ticket_id(0);
    let agent = w.human_agent().await;
    w.comment_as(ticket, agent, "On its way", true).await;
    w.comment_as(ticket, agent, "internal: courier", false)
        .await;
    w.helpdesk_cycle().await;
    w.zd_api(
        reqwest::Method::PUT,
        &format!("/api/v2/tickets/{ticket}"),
        Some(serde_json::json!({"ticket": {"status": "solved"}})),
    )
    .await;
    w.helpdesk_cycle().await;
    w.customer(CHAT, "Aiko", "One more thing");
    w.inbound_cycle().await;
    // A dead letter, retried.
    w.zd.faults()
        .inject(switchboard_simulators::faults::FaultSpec {
            fault: switchboard_simulators::faults::Fault::Status { status: 422 },
            count: 1,
            path: Some("/api/v2/tickets".into()),
        });
    w.customer(CHAT + 1, "Bruno", "Hello?");
    w.inbound_cycle().await;
    for dead in w.hub.list_dead_letters().await.expect("dead letters") {
        w.hub.retry_dead_letter(dead.id).await.expect("retry");
    }
    w.settle().await;
    // What the admin API reads, and the upkeep.
    for conversation in w.hub.list_conversations().await.expect("conversations") {
        w.hub
            .get_conversation(&conversation.id)
            .await
            .expect("conversation");
    }
    w.hub.list_jobs().await.expect("jobs");
    w.hub.health().await;
    w.hub.list_quarantined_events().await.expect("quarantined");
    w.hub.db().prune(i64::MAX).await.expect("prune");
    w.hub.db().checkpoint().await.expect("checkpoint");

    let statements = statements_seen()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let url = format!("sqlite://{}?mode=ro", w.dir.path().join("hub.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the hub's database");
    let mut checked = 0;
    let mut scans = Vec::new();
    for sql in &statements {
        let verb = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !matches!(
            verb.as_str(),
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"
        ) {
            continue;
        }
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&mut db)
                .await
                .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN {sql}: {e}"));
        checked += 1;
        let aliases = table_aliases(sql);
        // An index read in its own order up to a LIMIT stops after that many rows.
        let limited = sql.to_ascii_uppercase().contains(" LIMIT ")
            && !plan.iter().any(|(_, _, _, d)| d.contains("TEMP B-TREE"));
        for (_, _, _, detail) in plan {
            if reads_a_growing_table(&detail, &aliases, limited) {
                scans.push(format!("{detail}\n    in: {sql}"));
            }
        }
    }
    assert!(checked >= 40, "only {checked} statements were seen");
    assert!(
        scans.is_empty(),
        "{} statement(s) read a growing table in full:\n{}",
        scans.len(),
        scans.join("\n")
    );
}

/// Telegram counts UTF-16 units: a reply under 4096 characters but over 4096 units (emoji are
/// 2 units each) must be split, or Telegram refuses it and it ends as a dead letter. The unit
/// was once stored as `lengthunit::utf16units`, which the splitter read as characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emoji_reply_over_the_utf16_limit_is_split_and_delivered() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "Do you like emoji?");
    w.inbound_cycle().await;
    let ticket_id = w.ticket_id(0);
    let agent = w.human_agent().await;
    // 3,000 characters, 6,000 UTF-16 units.
    let reply = "😀".repeat(3_000);
    assert!(reply.chars().count() < 4096 && reply.encode_utf16().count() > 4096);
    w.comment_as(ticket_id, agent, &reply, true).await;
    w.helpdesk_cycle().await;

    let sent = w.tg.sent_messages(Some(CHAT));
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(sent.iter().all(|m| m.text.encode_utf16().count() <= 4096));
    assert_eq!(
        sent.iter().map(|m| m.text.as_str()).collect::<String>(),
        reply
    );
    let conversation = only_conversation(&w).await;
    let detail = w.hub.get_conversation(&conversation).await.expect("detail");
    let outbound = detail
        .messages
        .iter()
        .find(|m| m.direction == "outbound")
        .expect("the reply");
    assert_eq!((outbound.state.as_str(), outbound.parts), ("delivered", 2));
}

/// A reply that would take more parts than the hub sends is refused whole: nothing reaches the
/// customer, and the message is kept, marked dead, rather than cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_parts_cap_is_refused_not_cut() {
    let w = world().await;
    w.customer(CHAT, "Aiko", "Tell me everything");
    w.inbound_cycle().await;
    let ticket_id = w.ticket_id(0);
    let agent = w.human_agent().await;
    // 140,000 characters: at least 35 Telegram messages of 4096.
    let reply = "word ".repeat(28_000);
    w.comment_as(ticket_id, agent, &reply, true).await;
    w.helpdesk_cycle().await;

    assert!(w.tg.sent_messages(Some(CHAT)).is_empty());
    let conversation = only_conversation(&w).await;
    let detail = w.hub.get_conversation(&conversation).await.expect("detail");
    let outbound = detail
        .messages
        .iter()
        .find(|m| m.direction == "outbound")
        .expect("the reply is kept");
    assert_eq!(outbound.state, "dead");
    assert_eq!(outbound.text.trim(), reply.trim());
}
