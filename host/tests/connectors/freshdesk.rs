//! The Freshdesk plugin, loaded in the real runtime, against the Freshdesk simulator: every
//! operation of the helpdesk world, the errors the hub acts on, pagination, echoes, webhooks
//! with a shared secret, and credentials that only the host handles.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::helpdesk::{
    comment, comment_changes, connector_error, now_ms, requester_request, retried, retried_ticket,
    update,
};
use base64::Engine as _;
use serde_json::{json, Value};
use switchboard::runtime::latest::{
    Attachment, ChangeKind, CommentAuthor, ConnectorError, NewTicket, RequesterRequest,
    SocialIdentity, TicketChange, TicketPriority, TicketStatus, Visibility,
};
use switchboard::runtime::{HelpdeskConnector, Installation, Plugin, Runtime};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::freshdesk::{AutomationWebhook, Config, Simulator};
use switchboard_testkit as kit;

const PLUGIN: &str = "plugins/freshdesk";
const STREAM: &str = "ticket-changes";
const EXTERNAL_FIELD: &str = "cf_switchboard_id";

/// One test's world: a simulated Freshdesk account, a runtime of its own with the plugin
/// loaded, and an installation pointed at the simulator.
struct World {
    sim: Simulator,
    /// `http://127.0.0.1:<port>`, the installation's `base_url`.
    base: String,
    runtime: Runtime,
    plugin: Plugin,
    conn: HelpdeskConnector,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn world(config: Config) -> World {
    let sim = Simulator::new(config);
    let (addr, _) = sim
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve simulator");
    let base = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, plugin) = kit::runtime_with_plugin(dir.path(), PLUGIN).await;
    let conn = runtime
        .helpdesk(&plugin, &installation(&sim, &base, &[]))
        .expect("bind");
    World {
        sim,
        base,
        runtime,
        plugin,
        conn,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// An account with a custom field for the hub's external id.
fn config() -> Config {
    Config::default().with_custom_field(EXTERNAL_FIELD)
}

/// Settings for the simulator's account and key, with `extra` settings on top.
fn installation(sim: &Simulator, base: &str, extra: &[(&str, &str)]) -> Installation {
    let config = sim.config();
    let mut settings: BTreeMap<String, String> = [
        ("domain", config.domain.as_str()),
        ("api_key", config.api_key.as_str()),
        ("base_url", base),
        ("external_id_field", EXTERNAL_FIELD),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in extra {
        settings.insert(key.to_string(), value.to_string());
    }
    settings.retain(|_, v| !v.is_empty());
    Installation {
        id: "freshdesk-test".into(),
        settings,
        // Only the `base_url` capability: the real account host stays unapproved.
        approved_hosts: vec!["{base_url}".into()],
        limits: None,
        ..Default::default()
    }
}

impl World {
    fn connector(&self, extra: &[(&str, &str)]) -> HelpdeskConnector {
        self.runtime
            .helpdesk(&self.plugin, &installation(&self.sim, &self.base, extra))
            .expect("bind")
    }

    /// Calls the simulator's API directly with the account's key: what happens in Freshdesk
    /// outside the plugin.
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(self.sim.config().api_key, Some("X"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("simulator API call");
        let status = response.status();
        let text = response.text().await.expect("response body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A ticket outside the hub (no `switchboard` tag), created in Freshdesk directly.
    async fn foreign_ticket(&self, n: usize) {
        let body = json!({"email": format!("customer{n}@example.com"), "subject": format!("Billing {n}"),
                          "description": "Hello"});
        self.api(reqwest::Method::POST, "/api/v2/tickets", Some(body))
            .await;
    }

    /// A requester and a hub ticket for them; returns (requester id, ticket id).
    async fn ticket(&self, body: &str) -> (String, String) {
        let requester = self
            .conn
            .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
            .await
            .expect("requester");
        let ticket = self
            .conn
            .create_ticket(&new_ticket(&requester.id, body))
            .await
            .expect("ticket");
        (requester.id, ticket.id)
    }

    fn ticket_json(&self, id: &str) -> Value {
        self.sim.ticket(num(id)).expect("ticket in the simulator")
    }

    fn contact(&self, id: &str) -> Value {
        self.sim
            .contacts()
            .into_iter()
            .find(|c| c["id"] == num(id))
            .expect("contact in the simulator")
    }
}

fn x_requester(user_id: &str, name: &str) -> RequesterRequest {
    RequesterRequest {
        identity: SocialIdentity {
            external_id: user_id.into(),
            network: "x".into(),
            handle: Some("brandfan".into()),
            display_name: Some(name.into()),
        },
        external_id: format!("x:{user_id}"),
    }
}

fn new_ticket(requester: &str, body: &str) -> NewTicket {
    NewTicket {
        idempotency_key: format!("ticket:{body}"),
        external_id: "conv-5001".into(),
        requester_id: requester.into(),
        subject: "Order late".into(),
        body: body.into(),
        visibility: Visibility::Public,
        attachments: vec![],
        tags: vec!["VIP customer".into()],
        priority: Some(TicketPriority::High),
        status: None,
        channel: "telegram".into(),
        unconfirmed: None,
        customer_context: None,
    }
}

fn num(id: &str) -> u64 {
    id.parse().expect("numeric id")
}

fn statuses(changes: &[TicketChange]) -> Vec<(&str, TicketStatus)> {
    changes
        .iter()
        .filter_map(|c| match c.kind {
            ChangeKind::Status(s) => Some((c.ticket_id.as_str(), s)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn requesters_are_found_or_created_by_external_id() {
    let w = world(config()).await;
    let manifest = w.plugin.manifest();
    assert_eq!(manifest.id, "freshdesk");
    assert!(manifest.streams.iter().any(|s| s.name == STREAM));

    let first = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("create");
    assert!(first.created);
    let contact = w.contact(&first.id);
    assert_eq!(contact["unique_external_id"], "telegram:5001");
    assert_eq!(contact["name"], "Aiko Sato");
    assert_eq!(contact["twitter_id"], Value::Null);

    // The same person again, under a new name: found, not duplicated.
    let again = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko S."))
        .await
        .expect("find");
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false)
    );
    assert_eq!(w.sim.contacts().len(), 1);

    // An X user gets their numeric id as twitter_id.
    let fan = w
        .conn
        .find_or_create_requester(&x_requester("99", "Brand Fan"))
        .await
        .expect("X user");
    assert!(fan.created);
    assert_eq!(w.contact(&fan.id)["twitter_id"], "99");

    // Someone already known from Freshdesk's own X channel: that contact, now with the hub's
    // external id so the next lookup finds it directly.
    let channel_contact = w.sim.add_social_contact("Channel Fan", Some("4242"), None);
    let adopted = w
        .conn
        .find_or_create_requester(&x_requester("4242", "Fan"))
        .await
        .expect("adopted");
    assert_eq!(
        (num(&adopted.id), adopted.created),
        (channel_contact, false)
    );
    assert_eq!(w.contact(&adopted.id)["unique_external_id"], "x:4242");
    assert_eq!(w.sim.contacts().len(), 3);

    // Two calls racing for one new person: both get the same contact, one creates it. The
    // lookups are held back so that neither sees the other's contact before creating.
    w.sim.faults().inject(FaultSpec {
        fault: Fault::Delay { ms: 300 },
        count: 2,
        path: Some("/api/v2/contacts".into()),
    });
    let request = requester_request("6001", "Ken");
    let (a, b) = tokio::join!(
        w.conn.find_or_create_requester(&request),
        w.conn.find_or_create_requester(&request)
    );
    let (a, b) = (a.expect("first racer"), b.expect("second racer"));
    assert_eq!(a.id, b.id);
    assert!(a.created ^ b.created, "exactly one created it: {a:?} {b:?}");
    assert_eq!(w.sim.contacts().len(), 4);
}

#[tokio::test]
async fn tickets_are_created_flat_with_source_tags_and_external_id() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let mut ticket = new_ticket(&requester.id, "My order is late\nOrder #12 <urgent>");
    ticket.attachments = vec![Attachment {
        url: "tg-file:photo-1".into(),
        content_type: Some("image/jpeg".into()),
        name: Some("receipt.jpg".into()),
        size_bytes: Some(1234),
    }];
    let created = w.conn.create_ticket(&ticket).await.expect("create");
    assert!(created.created);
    assert_eq!(
        created.url.as_deref(),
        Some(format!("{}/a/tickets/{}", w.base, created.id).as_str())
    );

    let stored = w.ticket_json(&created.id);
    assert_eq!(stored["requester_id"], num(&requester.id));
    assert_eq!(stored["subject"], "Order late");
    assert_eq!(
        (&stored["status"], &stored["priority"]),
        (&json!(2), &json!(3))
    );
    assert_eq!(stored["source"], 7, "Chat");
    assert_eq!(
        stored["tags"],
        json!(["switchboard", "telegram", "VIP customer"])
    );
    assert_eq!(
        stored["custom_fields"],
        json!({EXTERNAL_FIELD: "conv-5001"})
    );
    let text = stored["description_text"].as_str().expect("text");
    assert!(
        text.starts_with("My order is late\nOrder #12 <urgent>")
            && text.contains("receipt.jpg: tg-file:photo-1"),
        "{text}"
    );
    // The first message is the description, not a conversation.
    assert!(w.sim.conversations(num(&created.id)).is_empty());

    // Freshdesk has no idempotency key: the same create again is a second ticket.
    let again = w.conn.create_ticket(&ticket).await.expect("again");
    assert_ne!(again.id, created.id);
    assert_eq!(w.sim.tickets().len(), 2);

    // A private first message goes into a private note; the description only points at it.
    let mut private = new_ticket(&requester.id, "Sent privately");
    private.visibility = Visibility::Private;
    private.subject = String::new();
    private.status = Some(TicketStatus::Pending);
    let note = w.conn.create_ticket(&private).await.expect("private");
    let stored = w.ticket_json(&note.id);
    assert_eq!(stored["subject"], "Sent privately");
    assert_eq!(stored["status"], 3);
    assert!(!stored["description_text"]
        .as_str()
        .expect("text")
        .contains("Sent privately"));
    let notes = w.sim.conversations(num(&note.id));
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            &notes[0]["private"],
            &notes[0]["incoming"],
            &notes[0]["user_id"]
        ),
        (&json!(true), &json!(true), &json!(num(&requester.id)))
    );
    assert_eq!(notes[0]["body_text"], "Sent privately");
}

#[tokio::test]
async fn comments_notes_updates_and_reads_reach_the_ticket() {
    let w = world(config()).await;
    let (requester, ticket) = w.ticket("My order is late").await;
    let id = num(&ticket);

    let customer = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester.clone()),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("customer comment");
    let reply = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "We are looking into it",
            Visibility::Public,
        ))
        .await
        .expect("hub reply");
    let note = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Customer is VIP",
            Visibility::Private,
        ))
        .await
        .expect("hub note");
    let stored = w.sim.conversations(id);
    let shape: Vec<(Value, Value, Value, Value, Value, Value)> = stored
        .iter()
        .map(|c| {
            (
                c["id"].clone(),
                c["body_text"].clone(),
                c["source"].clone(),
                c["private"].clone(),
                c["incoming"].clone(),
                c["user_id"].clone(),
            )
        })
        .collect();
    let agent = json!(w.sim.agent_id());
    assert_eq!(
        shape,
        vec![
            (
                json!(num(&customer.id)),
                json!("Any news?"),
                json!(2),
                json!(false),
                json!(true),
                json!(num(&requester))
            ),
            (
                json!(num(&reply.id)),
                json!("We are looking into it"),
                json!(0),
                json!(false),
                json!(false),
                agent.clone()
            ),
            (
                json!(num(&note.id)),
                json!("Customer is VIP"),
                json!(2),
                json!(true),
                json!(false),
                agent
            ),
        ]
    );

    let mut change = update(&ticket);
    change.status = Some(TicketStatus::Pending);
    change.priority = Some(TicketPriority::Urgent);
    change.add_tags = vec!["Escalated".into()];
    change.remove_tags = vec!["TELEGRAM".into()];
    let state = w.conn.update_ticket(&change).await.expect("update");
    assert_eq!(
        (state.status, state.priority),
        (TicketStatus::Pending, Some(TicketPriority::Urgent))
    );
    let stored = w.ticket_json(&ticket);
    assert_eq!(
        (&stored["status"], &stored["priority"]),
        (&json!(3), &json!(4))
    );
    assert_eq!(
        stored["tags"],
        json!(["switchboard", "VIP customer", "Escalated"])
    );

    let read = w.conn.get_ticket(&ticket).await.expect("get");
    assert_eq!(read.id, ticket);
    assert_eq!(read.status, TicketStatus::Pending);
    assert_eq!(read.priority, Some(TicketPriority::Urgent));
    assert_eq!(read.external_id.as_deref(), Some("conv-5001"));
    assert!(read.updated_at > 1_600_000_000_000, "{}", read.updated_at);

    // Nothing to change: the ticket is read, not written.
    let before = w.ticket_json(&ticket)["updated_at"].clone();
    w.sim.advance_clock(Duration::from_secs(5));
    let mut same_tags = update(&ticket);
    same_tags.add_tags = vec!["escalated".into()];
    let unchanged = w.conn.update_ticket(&same_tags).await.expect("no-op");
    assert_eq!(unchanged.status, TicketStatus::Pending);
    assert_eq!(w.ticket_json(&ticket)["updated_at"], before);

    // On hold: Freshdesk has none by default, so it is written as Pending, or as the account's
    // custom status when one is configured.
    let mut hold = update(&ticket);
    hold.status = Some(TicketStatus::OnHold);
    w.conn.update_ticket(&hold).await.expect("hold");
    assert_eq!(w.ticket_json(&ticket)["status"], 3);
    w.sim
        .update_config(|c| c.custom_statuses = vec![(7, "Waiting on Third Party".into())]);
    let custom = w.connector(&[("on_hold_status", "7")]);
    let held = custom.update_ticket(&hold).await.expect("custom hold");
    assert_eq!(held.status, TicketStatus::OnHold);
    assert_eq!(w.ticket_json(&ticket)["status"], 7);

    // The customer writing again reopens a resolved ticket (the account's default behaviour).
    w.sim.set_status(id, "solved");
    assert_eq!(
        w.conn.get_ticket(&ticket).await.expect("get").status,
        TicketStatus::Solved
    );
    w.conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester),
            "Hello?",
            Visibility::Public,
        ))
        .await
        .expect("customer again");
    assert_eq!(
        w.conn.get_ticket(&ticket).await.expect("get").status,
        TicketStatus::Open
    );

    assert!(matches!(
        connector_error(w.conn.get_ticket("999999").await),
        ConnectorError::NotFound(_)
    ));
    assert!(matches!(
        connector_error(
            w.conn
                .add_comment(&comment(
                    "999999",
                    CommentAuthor::Integration,
                    "x",
                    Visibility::Public
                ))
                .await
        ),
        ConnectorError::NotFound(_)
    ));
}

#[tokio::test]
async fn a_retried_create_that_happened_answers_the_ticket() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let started = now_ms();
    let ticket = new_ticket(&requester.id, "My order is late\nOrder #12 <urgent>");
    let first = w.conn.create_ticket(&ticket).await.expect("first attempt");
    // Newer tickets of the same requester, and someone else's, come first in the list.
    let mut other = new_ticket(&requester.id, "Another matter");
    other.subject = "Refund".into();
    w.conn.create_ticket(&other).await.expect("another ticket");
    w.foreign_ticket(1).await;
    let count = w.sim.tickets().len();

    let again = w
        .conn
        .create_ticket(&retried_ticket(ticket.clone(), started, &[]))
        .await
        .expect("retry");
    assert_eq!(
        (again.id.as_str(), again.created, again.url.as_deref()),
        (first.id.as_str(), false, first.url.as_deref()),
        "the earlier attempt's ticket"
    );
    assert_eq!(w.sim.tickets().len(), count, "nothing created");

    // Without an external id field the subject and text decide.
    let plain = w.connector(&[("external_id_field", "")]);
    let again = plain
        .create_ticket(&retried_ticket(ticket, started, &[]))
        .await
        .expect("retry without the field");
    assert_eq!((again.id, again.created), (first.id, false));
    assert_eq!(w.sim.tickets().len(), count);
}

#[tokio::test]
async fn a_retried_private_create_makes_sure_the_note_exists() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let started = now_ms();
    let mut private = new_ticket(&requester.id, "Sent privately");
    private.visibility = Visibility::Private;

    // The first attempt filed the ticket, then failed on its note.
    w.sim.faults().inject(FaultSpec {
        fault: Fault::Status { status: 503 },
        count: 1,
        path: Some("/notes".into()),
    });
    let error = connector_error(w.conn.create_ticket(&private).await);
    assert!(matches!(error, ConnectorError::Transient(_)), "{error:?}");
    let tickets = w.sim.tickets();
    assert_eq!(tickets.len(), 1);
    let id = tickets[0]["id"].as_u64().expect("id");
    assert!(w.sim.conversations(id).is_empty());

    // The retry takes that ticket and adds the missing note.
    let again = w
        .conn
        .create_ticket(&retried_ticket(private.clone(), started, &[]))
        .await
        .expect("retry");
    assert_eq!((num(&again.id), again.created), (id, false));
    let notes = w.sim.conversations(id);
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            &notes[0]["body_text"],
            &notes[0]["private"],
            &notes[0]["incoming"],
            &notes[0]["user_id"]
        ),
        (
            &json!("Sent privately"),
            &json!(true),
            &json!(true),
            &json!(num(&requester.id))
        )
    );

    // Once more: ticket and note are both there, nothing is added.
    let again = w
        .conn
        .create_ticket(&retried_ticket(private, started, &[]))
        .await
        .expect("second retry");
    assert_eq!((num(&again.id), again.created), (id, false));
    assert_eq!(w.sim.tickets().len(), 1);
    assert_eq!(w.sim.conversations(id).len(), 1);
}

#[tokio::test]
async fn a_retried_comment_that_was_added_answers_it() {
    let w = world(config()).await;
    let (requester, ticket) = w.ticket("My order is late").await;
    let id = num(&ticket);
    let started = now_ms();
    let customer = comment(
        &ticket,
        CommentAuthor::Requester(requester.clone()),
        "Any news?\n\nThe parcel is 1Z999 & \"urgent\"",
        Visibility::Public,
    );
    let reply = comment(
        &ticket,
        CommentAuthor::Integration,
        "We are looking into it",
        Visibility::Public,
    );
    let note = comment(
        &ticket,
        CommentAuthor::Integration,
        "Customer is VIP",
        Visibility::Private,
    );
    let mut first = Vec::new();
    for c in [&customer, &reply, &note] {
        first.push(w.conn.add_comment(c).await.expect("first attempt").id);
    }
    // Newer conversations push them onto the first of two pages (100 per page).
    for n in 0..110 {
        w.sim
            .agent_reply(id, &format!("Looking into it ({n})"), n % 2 == 0);
    }
    let count = w.sim.conversations(id).len();

    for (c, first) in [customer, reply, note].into_iter().zip(&first) {
        let again = w
            .conn
            .add_comment(&retried(c.clone(), started, &[]))
            .await
            .expect("retry");
        assert_eq!(&again.id, first, "{}", c.body);
    }
    assert_eq!(w.sim.conversations(id).len(), count, "nothing added");

    // With `integration_agent_id` set, the hub's own are found without asking agents/me.
    let conn = w.connector(&[("integration_agent_id", &w.sim.agent_id().to_string())]);
    let again = conn
        .add_comment(&retried(
            comment(
                &ticket,
                CommentAuthor::Integration,
                "Customer is VIP",
                Visibility::Private,
            ),
            started,
            &[],
        ))
        .await
        .expect("retried note");
    assert_eq!(again.id, first[2]);
    assert_eq!(w.sim.conversations(id).len(), count);
}

#[tokio::test]
async fn a_retry_whose_attempt_changed_nothing_creates() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let started = now_ms();
    let created = w
        .conn
        .create_ticket(&retried_ticket(
            new_ticket(&requester.id, "My order is late"),
            started,
            &[],
        ))
        .await
        .expect("create");
    assert!(created.created);
    assert_eq!(w.sim.tickets().len(), 1);

    let mut private = new_ticket(&requester.id, "Sent privately");
    private.visibility = Visibility::Private;
    let created_private = w
        .conn
        .create_ticket(&retried_ticket(private, started, &[]))
        .await
        .expect("private create");
    assert!(created_private.created);
    assert_eq!(w.sim.conversations(num(&created_private.id)).len(), 1);

    let added = w
        .conn
        .add_comment(&retried(
            comment(
                &created.id,
                CommentAuthor::Requester(requester.id.clone()),
                "Any news?",
                Visibility::Public,
            ),
            started,
            &[],
        ))
        .await
        .expect("comment");
    let stored = w.sim.conversations(num(&created.id));
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (&stored[0]["id"], &stored[0]["body_text"]),
        (&json!(num(&added.id)), &json!("Any news?"))
    );
}

#[tokio::test]
async fn known_old_or_different_records_are_not_taken() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let started = now_ms();
    let ticket = new_ticket(&requester.id, "Hi");
    let first = w.conn.create_ticket(&ticket).await.expect("first").id;

    // The hub maps that ticket to something else (an earlier, solved ticket of the
    // conversation that said the same).
    let known = w
        .conn
        .create_ticket(&retried_ticket(ticket.clone(), started, &[&first]))
        .await
        .expect("known");
    assert!(known.created);
    assert_ne!(known.id, first);
    // Created before the attempt could have run.
    let late = w
        .conn
        .create_ticket(&retried_ticket(ticket.clone(), now_ms() + 120_000, &[]))
        .await
        .expect("late");
    assert!(late.created);
    // Same subject and text, another conversation's external id.
    let mut elsewhere = ticket.clone();
    elsewhere.external_id = "conv-6001".into();
    let elsewhere = w
        .conn
        .create_ticket(&retried_ticket(elsewhere, started, &[]))
        .await
        .expect("elsewhere");
    assert!(elsewhere.created);
    // Same subject, other text.
    let other_text = w
        .conn
        .create_ticket(&retried_ticket(
            new_ticket(&requester.id, "Hi there"),
            started,
            &[],
        ))
        .await
        .expect("other text");
    assert!(other_text.created);
    assert_eq!(w.sim.tickets().len(), 5);

    // Comments: the same text said twice, once already mapped.
    let said = |body: &str, visibility| {
        comment(
            &first,
            CommentAuthor::Requester(requester.id.clone()),
            body,
            visibility,
        )
    };
    let earlier = w
        .conn
        .add_comment(&said("ok", Visibility::Public))
        .await
        .expect("ok")
        .id;
    let again = w
        .conn
        .add_comment(&retried(
            said("ok", Visibility::Public),
            started,
            &[&earlier],
        ))
        .await
        .expect("second ok");
    assert_ne!(
        again.id, earlier,
        "a comment the hub knows is not the retry's"
    );
    // Same text, another visibility, another author, or too old.
    let private = w
        .conn
        .add_comment(&retried(said("ok", Visibility::Private), started, &[]))
        .await
        .expect("private");
    let by_hub = w
        .conn
        .add_comment(&retried(
            comment(&first, CommentAuthor::Integration, "ok", Visibility::Public),
            started,
            &[],
        ))
        .await
        .expect("hub reply");
    let late = w
        .conn
        .add_comment(&retried(
            said("ok", Visibility::Public),
            now_ms() + 120_000,
            &[],
        ))
        .await
        .expect("late");
    let ids: HashSet<&str> = [&earlier, &again.id, &private.id, &by_hub.id, &late.id]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(ids.len(), 5, "each one added");
    assert_eq!(w.sim.conversations(num(&first)).len(), 5);
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let w = world(config()).await;
    let (requester, ticket) = w.ticket("My order is late").await;

    // Caught by the plugin before anything is sent.
    for (result, field) in [
        (
            w.conn
                .create_ticket(&new_ticket("not-a-number", "hi"))
                .await
                .map(|_| ()),
            "requester-id",
        ),
        (w.conn.get_ticket("abc").await.map(|_| ()), "ticket-id"),
        (
            w.conn.poll_changes("tickets", None).await.map(|_| ()),
            "stream",
        ),
        (
            w.connector(&[("domain", "acme.freshdesk.com"), ("base_url", "")])
                .get_ticket(&ticket)
                .await
                .map(|_| ()),
            "domain",
        ),
    ] {
        let error = connector_error(result);
        assert!(
            matches!(&error, ConnectorError::InvalidInput(f) if f.field == field),
            "{field}: {error:?}"
        );
    }

    // Refused by Freshdesk with a 400 that names the field.
    let error = connector_error(w.conn.create_ticket(&new_ticket("424242", "hi")).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "requester_id"),
        "{error:?}"
    );
    // Twitter (5) is not a source the API takes.
    let twitter_source = w.connector(&[("source", "5")]);
    let error = connector_error(
        twitter_source
            .create_ticket(&new_ticket(&requester, "hi"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "source" && f.message.contains("1,2,3,7,9,10")),
        "{error:?}"
    );
    // A custom status the account does not have.
    let mut hold = update(&ticket);
    hold.status = Some(TicketStatus::OnHold);
    let error = connector_error(
        w.connector(&[("on_hold_status", "9")])
            .update_ticket(&hold)
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "status"),
        "{error:?}"
    );
    // A custom field the account does not have.
    let error = connector_error(
        w.connector(&[("external_id_field", "cf_nope")])
            .create_ticket(&new_ticket(&requester, "hi"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "cf_nope"),
        "{error:?}"
    );
    assert_eq!(w.sim.tickets().len(), 1, "nothing invalid was created");
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_never_echoed() {
    let w = world(config()).await;
    let (_, ticket) = w.ticket("My order is late").await;
    let contacts = w.sim.contacts().len();

    let bad_key = "definitely-not-the-key-7f3a";
    let conn = w.connector(&[("api_key", bad_key)]);
    for error in [
        connector_error(
            conn.find_or_create_requester(&requester_request("6001", "Ken"))
                .await,
        ),
        connector_error(conn.get_ticket(&ticket).await),
        connector_error(conn.poll_changes(STREAM, None).await),
        connector_error(
            conn.add_comment(&comment(
                &ticket,
                CommentAuthor::Integration,
                "x",
                Visibility::Public,
            ))
            .await,
        ),
    ] {
        match error {
            ConnectorError::Unauthorized(message) => {
                assert!(!message.contains(bad_key), "{message}")
            }
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    assert_eq!(w.sim.contacts().len(), contacts, "nothing was created");
    assert!(w.sim.conversations(num(&ticket)).is_empty());
}

#[tokio::test]
async fn rate_limits_carry_the_retry_after_delay() {
    let w = world(config()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let ticket = new_ticket(&requester.id, "My order is late");

    w.sim.faults().inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 7,
        },
        count: 1,
        path: Some("/api/v2/tickets".into()),
    });
    let error = connector_error(w.conn.create_ticket(&ticket).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 7_000),
        "{error:?}"
    );
    assert!(
        w.sim.tickets().is_empty(),
        "a refused request creates nothing"
    );
    let created = w
        .conn
        .create_ticket(&ticket)
        .await
        .expect("the retry goes through");

    // The account-wide budget: the second request of the window is refused until it resets.
    w.sim.faults().set_budget(Some(1), Duration::from_secs(30));
    w.conn
        .get_ticket(&created.id)
        .await
        .expect("within the budget");
    let error = connector_error(w.conn.get_ticket(&created.id).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if (1_000..=30_000).contains(&r.retry_after_ms)),
        "{error:?}"
    );
    w.sim.faults().clear();

    // The ticket list's own share of the budget.
    w.sim
        .update_config(|c| c.endpoint_limits.tickets_list = Some(1));
    w.conn.poll_changes(STREAM, None).await.expect("first list");
    let error = connector_error(w.conn.poll_changes(STREAM, None).await);
    assert!(matches!(error, ConnectorError::RateLimited(_)), "{error:?}");
}

#[tokio::test]
async fn server_errors_are_transient_and_polls_resume() {
    let w = world(config()).await;
    let (_, ticket) = w.ticket("My order is late").await;
    w.sim.agent_reply(num(&ticket), "On it", true);
    let faults = w.sim.faults();

    for status in [500, 502, 503] {
        faults.inject(FaultSpec {
            fault: Fault::Status { status },
            count: 1,
            path: None,
        });
        let error = connector_error(w.conn.get_ticket(&ticket).await);
        assert!(
            matches!(error, ConnectorError::Transient(_)),
            "{status}: {error:?}"
        );
    }

    // A failure half-way through a page (reading a ticket's conversations) fails the whole
    // page, and the same poll succeeds once the service recovers.
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 502 },
        count: 1,
        path: Some("/conversations".into()),
    });
    assert!(matches!(
        connector_error(w.conn.poll_changes(STREAM, None).await),
        ConnectorError::Transient(_)
    ));
    let page = w
        .conn
        .poll_changes(STREAM, None)
        .await
        .expect("poll after recovery");
    assert_eq!(comment_changes(&page.changes).len(), 1);

    // A ticket deleted between the listing and the conversations read is skipped, not retried
    // forever: its status still comes through.
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 404 },
        count: 1,
        path: Some("/conversations".into()),
    });
    let page = w.conn.poll_changes(STREAM, None).await.expect("poll");
    assert!(comment_changes(&page.changes).is_empty());
    assert_eq!(
        statuses(&page.changes),
        vec![(ticket.as_str(), TicketStatus::Open)]
    );
}

#[tokio::test]
async fn polling_pages_through_the_listing_and_long_conversations() {
    let w = world(config()).await;
    let human = w.sim.human_agent_id();
    // One second per ticket, so the listing's order is plain to see.
    let tick = || w.sim.advance_clock(Duration::from_secs(1));
    let (requester, first) = w.ticket("My order is late").await;
    tick();
    // Enough tickets outside the hub that the hub's tickets fall on two pages of the listing
    // (the plugin asks for 50 per page).
    for n in 0..55 {
        w.foreign_ticket(n).await;
        tick();
    }
    let second = w
        .conn
        .create_ticket(&new_ticket(&requester, "Second question"))
        .await
        .expect("second ticket")
        .id;
    // More conversations than one page holds (at most 100).
    let mut written = Vec::new();
    for n in 0..120 {
        let public = n % 3 != 0;
        written.push((
            w.sim
                .agent_reply(num(&second), &format!("Reply {n}"), public),
            public,
        ));
    }

    let page1 = w.conn.poll_changes(STREAM, None).await.expect("page 1");
    assert!(page1.has_more, "50 of 57 tickets: more to read");
    assert!(
        page1.changes.iter().all(|c| c.ticket_id == first),
        "only hub tickets: {:?}",
        page1.changes
    );
    assert!(
        comment_changes(&page1.changes).is_empty(),
        "the description is no change"
    );
    assert_eq!(
        statuses(&page1.changes),
        vec![(first.as_str(), TicketStatus::Open)]
    );
    assert!(page1
        .changes
        .iter()
        .all(|c| c.external_id.as_deref() == Some("conv-5001")));

    let cursor1 = page1.next_cursor.expect("a cursor to continue from");
    let page2 = w
        .conn
        .poll_changes(STREAM, Some(&cursor1))
        .await
        .expect("page 2");
    assert!(!page2.has_more);
    assert!(page2.changes.iter().all(|c| c.ticket_id == second));
    let comments = comment_changes(&page2.changes);
    let polled: Vec<u64> = comments.iter().map(|(_, id, _, _)| num(id)).collect();
    let stored: Vec<u64> = written.iter().map(|(id, _)| *id).collect();
    assert_eq!(polled, stored, "every conversation, in order, across pages");
    for ((change, id, body, visibility), (_, public)) in comments.iter().zip(&written) {
        assert!(body.starts_with("Reply "));
        let expected = if *public {
            Visibility::Public
        } else {
            Visibility::Private
        };
        assert_eq!(*visibility, expected);
        let author = change.author.as_ref().expect("author");
        assert_eq!(
            (author.id.as_str(), author.name.as_deref(), author.is_agent),
            (human.to_string().as_str(), Some("Sam Agent"), true)
        );
        assert!(!change.is_echo, "a human agent's reply is not an echo");
        assert_eq!(change.change_id, format!("conversation:{id}"));
    }

    // The boundary second is read again while Freshdesk's clock is still in it: nothing new,
    // only changes the hub has seen.
    let seen: HashSet<String> = page1
        .changes
        .iter()
        .chain(&page2.changes)
        .map(|c| c.change_id.clone())
        .collect();
    let cursor2 = page2.next_cursor.expect("cursor");
    let page3 = w
        .conn
        .poll_changes(STREAM, Some(&cursor2))
        .await
        .expect("page 3");
    assert!(!page3.has_more);
    assert!(
        page3.changes.iter().all(|c| seen.contains(&c.change_id)),
        "{:?}",
        page3.changes
    );
    let cursor3 = page3.next_cursor.expect("cursor");

    // A later reply on the first ticket shows up from the saved cursor.
    w.sim.advance_clock(Duration::from_secs(2));
    let late = w.sim.agent_reply(num(&first), "Found your parcel", true);
    w.sim.set_status(num(&first), "pending");
    let page4 = w
        .conn
        .poll_changes(STREAM, Some(&cursor3))
        .await
        .expect("page 4");
    assert!(comment_changes(&page4.changes)
        .iter()
        .any(|(c, id, body, _)| num(id) == late
            && *body == "Found your parcel"
            && c.ticket_id == first));
    assert!(statuses(&page4.changes).contains(&(first.as_str(), TicketStatus::Pending)));

    // Once Freshdesk's clock has left that second, the cursor moves past it: quiet polls.
    w.sim.advance_clock(Duration::from_secs(5));
    let cursor4 = page4.next_cursor.expect("cursor");
    let page5 = w
        .conn
        .poll_changes(STREAM, Some(&cursor4))
        .await
        .expect("page 5");
    let page6 = w
        .conn
        .poll_changes(STREAM, Some(&page5.next_cursor.expect("cursor")))
        .await
        .expect("page 6");
    assert!(page6.changes.is_empty() && !page6.has_more, "{page6:?}");
}

#[tokio::test]
async fn the_integration_agents_conversations_are_echoes() {
    let w = world(config()).await;
    let (requester, ticket) = w.ticket("My order is late").await;
    let note = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Filed by the hub",
            Visibility::Private,
        ))
        .await
        .expect("note")
        .id;
    let customer = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester.clone()),
            "Still waiting",
            Visibility::Public,
        ))
        .await
        .expect("customer")
        .id;
    let reply = w
        .sim
        .agent_reply(num(&ticket), "Hi Aiko, on it", true)
        .to_string();

    let page = w.conn.poll_changes(STREAM, None).await.expect("poll");
    let comments = comment_changes(&page.changes);
    let by_id = |id: &str| {
        comments
            .iter()
            .find(|(_, cid, _, _)| *cid == id)
            .unwrap_or_else(|| panic!("{id} polled"))
            .0
    };
    let mine = by_id(&note);
    assert!(mine.is_echo, "the hub's own note");
    assert_eq!(
        mine.author.as_ref().map(|a| a.id.clone()),
        Some(w.sim.agent_id().to_string())
    );
    let theirs = by_id(&customer);
    assert!(!theirs.is_echo);
    assert!(theirs
        .author
        .as_ref()
        .is_some_and(|a| !a.is_agent && a.id == requester));
    let human = by_id(&reply);
    assert!(!human.is_echo && human.author.as_ref().is_some_and(|a| a.is_agent));

    // `integration_agent_id` names the hub's agent instead of asking agents/me.
    let conn = w.connector(&[("integration_agent_id", &w.sim.human_agent_id().to_string())]);
    let page = conn.poll_changes(STREAM, None).await.expect("poll");
    let echoes: Vec<&str> = comment_changes(&page.changes)
        .iter()
        .filter(|(c, _, _, _)| c.is_echo)
        .map(|(_, id, _, _)| *id)
        .collect();
    assert_eq!(echoes, vec![reply.as_str()]);
}

#[tokio::test]
async fn automation_webhooks_are_checked_and_read_back_from_the_api() {
    let w = world(config()).await;
    let receiver = switchboard_testkit::recorder::Recorder::start(200, json!({})).await;
    let endpoint = format!("{}/webhooks/freshdesk-test", receiver.url);
    w.sim.add_automation(
        AutomationWebhook::new(endpoint.clone())
            .header("X-Switchboard-Secret", "s3cret")
            .events(&["reply_sent", "note_added", "status_changed"])
            .performer("agent"),
    );
    let conn = w.connector(&[("webhook_secret", "s3cret")]);

    let (_, ticket) = w.ticket("My order is late").await;
    let reply = w.sim.agent_reply(num(&ticket), "We shipped it", true);
    let deliveries = receiver.wait_for(1).await;
    let outcome = conn
        .handle_webhook(deliveries[0].webhook_request())
        .await
        .expect("a genuine call");
    assert_eq!(outcome.response.status, 200);
    let comments = comment_changes(&outcome.changes);
    let (change, _, body, visibility) = comments
        .iter()
        .find(|(_, id, _, _)| num(id) == reply)
        .expect("the reply");
    assert_eq!((*body, *visibility), ("We shipped it", Visibility::Public));
    assert!(!change.is_echo && change.author.as_ref().is_some_and(|a| a.is_agent));
    assert_eq!(change.external_id.as_deref(), Some("conv-5001"));

    // Webhook and poll name a change the same way, so the hub files it once.
    let polled = conn.poll_changes(STREAM, None).await.expect("poll");
    for change in &outcome.changes {
        assert!(
            polled
                .changes
                .iter()
                .any(|p| p.change_id == change.change_id),
            "{} not polled",
            change.change_id
        );
    }

    // A status change is read back the same way.
    w.sim.set_status(num(&ticket), "pending");
    let deliveries = receiver.wait_for(2).await;
    let outcome = conn
        .handle_webhook(deliveries[1].webhook_request())
        .await
        .expect("status call");
    assert!(statuses(&outcome.changes).contains(&(ticket.as_str(), TicketStatus::Pending)));

    // Forgeries and misconfiguration are refused.
    let genuine = deliveries[0].webhook_request();
    let mut wrong = genuine.clone();
    for (name, value) in &mut wrong.headers {
        if name == "x-switchboard-secret" {
            *value = "guess".into();
        }
    }
    let mut missing = genuine.clone();
    missing
        .headers
        .retain(|(name, _)| name != "x-switchboard-secret");
    for (what, request) in [("wrong secret", wrong), ("no secret", missing)] {
        let error = connector_error(conn.handle_webhook(request).await);
        assert!(
            matches!(error, ConnectorError::Unauthorized(_)),
            "{what}: {error:?}"
        );
    }
    let error = connector_error(w.conn.handle_webhook(genuine.clone()).await);
    assert!(
        matches!(&error, ConnectorError::Unauthorized(m) if m.contains("webhook_secret")),
        "{error:?}"
    );

    // A rule that authenticates with basic auth instead of a header.
    let mut basic = genuine.clone();
    basic
        .headers
        .retain(|(name, _)| name != "x-switchboard-secret");
    let credentials = base64::engine::general_purpose::STANDARD.encode("freshdesk:s3cret");
    basic
        .headers
        .push(("authorization".into(), format!("Basic {credentials}")));
    assert!(conn.handle_webhook(basic).await.is_ok());

    // Bodies without a ticket id, or about tickets the hub does not have.
    let mut no_ticket = genuine.clone();
    no_ticket.body = br#"{"freshdesk_webhook": {"ticket_subject": "x"}}"#.to_vec();
    assert!(matches!(
        connector_error(conn.handle_webhook(no_ticket).await),
        ConnectorError::InvalidInput(f) if f.field == "body"
    ));
    let mut unknown = genuine.clone();
    unknown.body = br#"{"ticket_id": "424242"}"#.to_vec();
    assert!(conn
        .handle_webhook(unknown)
        .await
        .expect("unknown ticket")
        .changes
        .is_empty());
    w.foreign_ticket(1).await;
    let foreign = w.sim.tickets().last().expect("foreign")["id"].clone();
    let mut other = genuine.clone();
    other.body = json!({"freshdesk_webhook": {"ticket_id": foreign}})
        .to_string()
        .into_bytes();
    assert!(conn
        .handle_webhook(other)
        .await
        .expect("foreign")
        .changes
        .is_empty());
}

#[tokio::test]
async fn credentials_are_added_by_the_host_not_the_plugin() {
    // A stand-in for Freshdesk that records exactly what arrives.
    let fake = switchboard_testkit::recorder::Recorder::start(
        200,
        json!({"id": 7, "status": 2, "priority": 1, "tags": ["switchboard"],
               "updated_at": "2024-05-01T10:00:00Z", "custom_fields": {}}),
    )
    .await;
    let w = world(config()).await;
    let key = "fd-secret-key-1f2e";
    let installation = installation(&w.sim, &fake.url, &[("api_key", key)]);
    let conn = w.runtime.helpdesk(&w.plugin, &installation).expect("bind");

    let state = conn.get_ticket("7").await.expect("get");
    assert_eq!(state.status, TicketStatus::Open);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/api/v2/tickets/7")
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{key}:X"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert!(!request.query.contains(key) && !request.path.contains(key));

    // The host adds them only for the approved origin: with nothing approved, nothing is sent.
    let mut unapproved = installation.clone();
    unapproved.approved_hosts.clear();
    let conn = w.runtime.helpdesk(&w.plugin, &unapproved).expect("bind");
    let error = connector_error(conn.get_ticket("7").await);
    assert!(!format!("{error:?}").contains(key), "{error:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "the denied request never left the host"
    );

    // A dead endpoint is worth retrying, and the failure does not leak the key either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut dead_installation = installation.clone();
    dead_installation.settings.insert("base_url".into(), dead);
    let conn = w
        .runtime
        .helpdesk(&w.plugin, &dead_installation)
        .expect("bind");
    match connector_error(conn.get_ticket("7").await) {
        ConnectorError::Transient(message) => assert!(!message.contains(key), "{message}"),
        other => panic!("expected transient, got {other:?}"),
    }
}
