//! The Zendesk plugin, loaded in the real runtime, against the Zendesk simulator: every
//! operation of the helpdesk world, the errors the hub acts on, pagination, echoes, signed
//! webhooks, and credentials that only the host handles.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpdesk::{
    comment, comment_changes, connector_error, now_ms, requester_request, retried, retried_ticket,
    unconfirmed, update,
};
use base64::Engine as _;
use serde_json::{json, Value};
use switchboard::runtime::latest::{
    Attachment, ChangeKind, CommentAuthor, ConnectorError, NewTicket, TicketPriority, TicketStatus,
    Visibility,
};
use switchboard::runtime::{HelpdeskConnector, Installation, Plugin, Runtime};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::zendesk::{sign_webhook, Config, Simulator};
use switchboard_testkit as kit;

const PLUGIN: &str = "plugins/zendesk";
const STREAM: &str = "ticket-changes";

/// One test's world: a simulated Zendesk account, a runtime of its own with the plugin loaded,
/// and an installation pointed at the simulator.
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

/// Settings for the simulator's account and token, with `extra` settings on top.
fn installation(sim: &Simulator, base: &str, extra: &[(&str, &str)]) -> Installation {
    let config = sim.config();
    let mut settings: BTreeMap<String, String> = [
        ("subdomain", config.subdomain.as_str()),
        ("email", config.agent_email.as_str()),
        ("api_token", config.api_token.as_str()),
        ("base_url", base),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in extra {
        settings.insert(key.to_string(), value.to_string());
    }
    Installation {
        id: "zendesk-test".into(),
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

    /// Calls the simulator's API directly, as the token owner: what an agent or an admin does in
    /// Zendesk, outside the plugin.
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let config = self.sim.config();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(
                format!("{}/token", config.agent_email),
                Some(&config.api_token),
            );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("simulator API call");
        let status = response.status();
        let text = response.text().await.expect("response body");
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON answer")
        }
    }

    /// A second agent, a human one: their comments are not the hub's.
    async fn human_agent(&self) -> u64 {
        let body = json!({"user": {"name": "Hana Agent", "email": "hana@switchboard.example", "role": "agent"}});
        let user = self
            .api(
                reqwest::Method::POST,
                "/api/v2/users/create_or_update",
                Some(body),
            )
            .await;
        user["user"]["id"].as_u64().expect("agent id")
    }

    /// `author` comments on a ticket through the API (as the agent UI would).
    async fn comment_as(&self, ticket: u64, author: u64, body: &str, public: bool) -> u64 {
        let update =
            json!({"ticket": {"comment": {"body": body, "public": public, "author_id": author}}});
        self.api(
            reqwest::Method::PUT,
            &format!("/api/v2/tickets/{ticket}"),
            Some(update),
        )
        .await;
        last_comment(&self.sim, ticket)["id"]
            .as_u64()
            .expect("comment id")
    }

    /// A ticket outside the hub (no `switchboard` tag), created in Zendesk directly.
    async fn foreign_ticket(&self, n: usize) {
        let body = json!({"ticket": {"subject": format!("Billing question {n}"), "comment": {"body": "Hello"}}});
        self.api(reqwest::Method::POST, "/api/v2/tickets", Some(body))
            .await;
    }

    /// A requester and a hub ticket for them; returns (requester id, ticket id).
    async fn ticket(&self, key: &str) -> (String, String) {
        let requester = self
            .conn
            .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
            .await
            .expect("requester");
        let ticket = self
            .conn
            .create_ticket(&new_ticket(key, &requester.id, "My order is late"))
            .await
            .expect("ticket");
        (requester.id, ticket.id)
    }

    fn ticket_json(&self, id: &str) -> Value {
        let id: u64 = id.parse().expect("numeric id");
        self.sim
            .tickets()
            .into_iter()
            .find(|t| t["id"] == id)
            .expect("ticket in the simulator")
    }
}

fn last_comment(sim: &Simulator, ticket: u64) -> Value {
    sim.comments(ticket).pop().expect("a comment")
}

fn new_ticket(key: &str, requester: &str, body: &str) -> NewTicket {
    NewTicket {
        idempotency_key: key.into(),
        external_id: "telegram:5001".into(),
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

#[tokio::test]
async fn requesters_are_found_or_created_by_external_id() {
    let w = world(Config::default().relaxed()).await;
    let manifest = w.plugin.manifest();
    assert_eq!(manifest.id, "zendesk");
    assert!(manifest.streams.iter().any(|s| s.name == STREAM));

    let first = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("create");
    assert!(first.created);
    let users = w.sim.users();
    let user = users
        .iter()
        .find(|u| u["id"] == num(&first.id))
        .expect("user in Zendesk");
    assert_eq!(user["external_id"], "telegram:5001");
    assert_eq!(user["role"], "end-user");
    assert_eq!(user["name"], "Aiko Sato");

    // The same person again, under a new display name: found, not duplicated.
    let again = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko S."))
        .await
        .expect("find");
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false)
    );
    assert_eq!(w.sim.users().len(), users.len());

    // An X user also gets the matching Zendesk identity.
    let mut x_user = requester_request("99", "Brand Fan");
    x_user.identity.network = "x".into();
    x_user.identity.handle = Some("brandfan".into());
    x_user.external_id = "x:99".into();
    let created = w
        .conn
        .find_or_create_requester(&x_user)
        .await
        .expect("create X user");
    assert!(created.created);
    let identities = w
        .api(
            reqwest::Method::GET,
            &format!("/api/v2/users/{}/identities", created.id),
            None,
        )
        .await;
    let identities = identities["identities"].as_array().expect("identities");
    assert!(
        identities
            .iter()
            .any(|i| i["type"] == "twitter" && i["value"] == "brandfan"),
        "{identities:?}"
    );
}

#[tokio::test]
async fn tickets_are_created_once_per_idempotency_key() {
    let w = world(Config::default().relaxed()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let mut ticket = new_ticket("telegram:5001:1", &requester.id, "My order is late");
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
        Some(format!("{}/agent/tickets/{}", w.base, created.id).as_str())
    );

    let stored = w.ticket_json(&created.id);
    assert_eq!(stored["requester_id"], num(&requester.id));
    assert_eq!(stored["external_id"], "telegram:5001");
    assert_eq!(stored["subject"], "Order late");
    assert_eq!(stored["priority"], "high");
    assert_eq!(stored["status"], "new");
    assert_eq!(
        stored["tags"],
        json!(["switchboard", "telegram", "vip_customer"])
    );
    let comments = w.sim.comments(num(&created.id));
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["public"], true);
    assert_eq!(
        comments[0]["author_id"],
        num(&requester.id),
        "the customer wrote the first comment"
    );
    let body = comments[0]["body"].as_str().expect("body");
    assert!(
        body.starts_with("My order is late") && body.contains("receipt.jpg: tg-file:photo-1"),
        "{body}"
    );

    // A retry with the same key gets the same ticket back, not a second one.
    let retried = w.conn.create_ticket(&ticket).await.expect("retry");
    assert_eq!(
        (retried.id.as_str(), retried.created),
        (created.id.as_str(), false)
    );
    assert_eq!(w.sim.tickets().len(), 1);

    // The same key for a different request is a bug upstream: never retried.
    let mut other = ticket.clone();
    other.body = "Something else".into();
    assert!(matches!(
        connector_error(w.conn.create_ticket(&other).await),
        ConnectorError::Fatal(_)
    ));

    // A private first message is filed as an internal note.
    let mut private = new_ticket(
        "telegram:5001:2",
        &requester.id,
        "Sent from a private channel",
    );
    private.visibility = Visibility::Private;
    private.subject = String::new();
    let note = w
        .conn
        .create_ticket(&private)
        .await
        .expect("private ticket");
    assert_eq!(w.sim.comments(num(&note.id))[0]["public"], false);
    assert_eq!(
        w.ticket_json(&note.id)["subject"],
        "Sent from a private channel"
    );
    assert_eq!(w.sim.tickets().len(), 2);
}

#[tokio::test]
async fn a_retried_ticket_that_was_filed_is_not_filed_again() {
    let w = world(Config::default().relaxed()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let started = now_ms();
    let ticket = new_ticket("telegram:5001:1", &requester.id, "My order is late");
    let first = w.conn.create_ticket(&ticket).await.expect("first attempt");
    assert!(first.created);

    // Retried after Zendesk forgot the key (a new key stands in for an expired one).
    let mut later = retried_ticket(ticket, started, &[]);
    later.idempotency_key = "telegram:5001:1:expired".into();
    let again = w.conn.create_ticket(&later).await.expect("retry");
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false),
        "the earlier attempt's ticket"
    );
    assert_eq!(again.url, first.url);
    assert_eq!(w.sim.tickets().len(), 1, "nothing filed twice");
}

#[tokio::test]
async fn a_retried_ticket_that_was_never_filed_is_filed() {
    let w = world(Config::default().relaxed()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    // Nothing with this external id yet.
    let started = now_ms();
    let ticket = |key: &str| new_ticket(key, &requester.id, "My order is late");
    let first = w
        .conn
        .create_ticket(&retried_ticket(ticket("telegram:5001:1"), started, &[]))
        .await
        .expect("create");
    assert!(first.created);
    assert_eq!(w.sim.tickets().len(), 1);

    // The conversation's earlier ticket (solved, say) has the same external id, requester
    // and subject, but the hub maps it already.
    let second = w
        .conn
        .create_ticket(&retried_ticket(
            ticket("telegram:5001:2"),
            started,
            &[&first.id],
        ))
        .await
        .expect("create beside a known ticket");
    assert!(second.created);
    assert_ne!(second.id, first.id);
    assert_eq!(w.sim.tickets().len(), 2);

    // A different subject is a different ticket.
    let mut other = ticket("telegram:5001:3");
    other.subject = "Refund".into();
    other.unconfirmed = unconfirmed(started, &[&first.id]);
    let third = w
        .conn
        .create_ticket(&other)
        .await
        .expect("create another subject");
    assert!(third.created);
    assert_eq!(w.sim.tickets().len(), 3);

    // Tickets from before the attempt (less the look-back's minute of slack) are not its.
    let fourth = w
        .conn
        .create_ticket(&retried_ticket(
            ticket("telegram:5001:4"),
            now_ms() + 120_000,
            &[],
        ))
        .await
        .expect("create after older tickets");
    assert!(fourth.created);
    assert!(![&first.id, &second.id, &third.id].contains(&&fourth.id));
    assert_eq!(w.sim.tickets().len(), 4);
}

#[tokio::test]
async fn comments_notes_updates_and_reads_reach_the_ticket() {
    let w = world(Config::default().relaxed()).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;

    let reply = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester.clone()),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("customer comment");
    let stored = last_comment(&w.sim, num(&ticket));
    assert_eq!(
        stored["id"],
        num(&reply.id),
        "the returned id is the new comment's"
    );
    assert_eq!(
        (stored["public"].clone(), stored["author_id"].clone()),
        (json!(true), json!(num(&requester)))
    );
    assert_eq!(stored["body"], "Any news?");

    let note = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Customer is VIP",
            Visibility::Private,
        ))
        .await
        .expect("internal note");
    let stored = last_comment(&w.sim, num(&ticket));
    assert_eq!(stored["id"], num(&note.id));
    assert_eq!(stored["public"], false, "an internal note");
    assert_eq!(
        stored["author_id"],
        w.sim.agent_id(),
        "written by the token owner"
    );

    let mut change = update(&ticket);
    change.status = Some(TicketStatus::Pending);
    change.priority = Some(TicketPriority::Urgent);
    change.add_tags = vec!["Escalated".into()];
    change.remove_tags = vec!["telegram".into()];
    let state = w.conn.update_ticket(&change).await.expect("update");
    assert_eq!(
        (state.status, state.priority),
        (TicketStatus::Pending, Some(TicketPriority::Urgent))
    );
    let stored = w.ticket_json(&ticket);
    assert_eq!(
        (stored["status"].clone(), stored["priority"].clone()),
        (json!("pending"), json!("urgent"))
    );
    assert_eq!(
        stored["tags"],
        json!(["switchboard", "vip_customer", "escalated"])
    );

    let read = w.conn.get_ticket(&ticket).await.expect("get");
    assert_eq!(read.id, ticket);
    assert_eq!(read.status, TicketStatus::Pending);
    assert_eq!(read.priority, Some(TicketPriority::Urgent));
    assert_eq!(read.external_id.as_deref(), Some("telegram:5001"));
    assert!(
        read.updated_at > 1_600_000_000_000,
        "a real timestamp: {}",
        read.updated_at
    );

    // An update with nothing in it changes nothing and reads the ticket instead.
    let unchanged = w
        .conn
        .update_ticket(&update(&ticket))
        .await
        .expect("empty update");
    assert_eq!(
        (unchanged.status, unchanged.updated_at),
        (read.status, read.updated_at)
    );
    assert_eq!(w.sim.comments(num(&ticket)).len(), 3);

    // Zendesk's on-hold is `hold`.
    let mut hold = update(&ticket);
    hold.status = Some(TicketStatus::OnHold);
    assert_eq!(
        w.conn.update_ticket(&hold).await.expect("hold").status,
        TicketStatus::OnHold
    );
    assert_eq!(w.ticket_json(&ticket)["status"], "hold");

    assert!(matches!(
        connector_error(w.conn.get_ticket("999999").await),
        ConnectorError::NotFound(_)
    ));
}

#[tokio::test]
async fn a_retried_comment_that_was_added_is_not_added_again() {
    let w = world(Config::default().relaxed()).await;
    let agent = w.human_agent().await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let started = now_ms();
    let customer = comment(
        &ticket,
        CommentAuthor::Requester(requester.clone()),
        "Any news?\n\nThe parcel is 1Z999",
        Visibility::Public,
    );
    let first = w.conn.add_comment(&customer).await.expect("first attempt");
    let note = comment(
        &ticket,
        CommentAuthor::Integration,
        "Customer is VIP",
        Visibility::Private,
    );
    let first_note = w.conn.add_comment(&note).await.expect("first note");
    // Newer comments bury them past the first page of the newest ones.
    for n in 0..25 {
        w.comment_as(
            num(&ticket),
            agent,
            &format!("Looking into it ({n})"),
            n % 2 == 0,
        )
        .await;
    }
    let count = w.sim.comments(num(&ticket)).len();

    let again = w
        .conn
        .add_comment(&retried(customer.clone(), started, &[]))
        .await
        .expect("retry");
    assert_eq!(again.id, first.id, "the earlier attempt's comment");
    let again = w
        .conn
        .add_comment(&retried(note.clone(), started, &[]))
        .await
        .expect("retried note");
    assert_eq!(again.id, first_note.id, "the integration user's note");
    assert_eq!(w.sim.comments(num(&ticket)).len(), count, "nothing added");

    // With `integration_user_id` set, the note is found without asking users/me.
    let conn = w.connector(&[("integration_user_id", &w.sim.agent_id().to_string())]);
    let again = conn
        .add_comment(&retried(note, started, &[]))
        .await
        .expect("retried note");
    assert_eq!(again.id, first_note.id);
    assert_eq!(w.sim.comments(num(&ticket)).len(), count);
}

#[tokio::test]
async fn a_retried_comment_that_was_never_added_is_added() {
    let w = world(Config::default().relaxed()).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let started = now_ms();
    let said = |body: &str| {
        comment(
            &ticket,
            CommentAuthor::Requester(requester.clone()),
            body,
            Visibility::Public,
        )
    };
    let earlier = w.conn.add_comment(&said("ok")).await.expect("comment").id;
    let before = w.sim.comments(num(&ticket)).len();

    // Nothing like it on the ticket.
    let added = w
        .conn
        .add_comment(&retried(said("Where is it?"), started, &[]))
        .await
        .expect("added");
    let stored = last_comment(&w.sim, num(&ticket));
    assert_eq!(stored["id"], num(&added.id));
    assert_eq!(stored["body"], "Where is it?");

    // The same text said again: the first `ok` is mapped to its own message.
    let again = w
        .conn
        .add_comment(&retried(said("ok"), started, &[&earlier]))
        .await
        .expect("second ok");
    assert_ne!(
        again.id, earlier,
        "a comment the hub knows is not the retry's"
    );
    assert_eq!(last_comment(&w.sim, num(&ticket))["id"], num(&again.id));

    // Same text, but another author, another visibility, or too old.
    let note = comment(
        &ticket,
        CommentAuthor::Integration,
        "ok",
        Visibility::Private,
    );
    let note = w
        .conn
        .add_comment(&retried(note, started, &[]))
        .await
        .expect("note");
    assert!(![earlier.as_str(), again.id.as_str()].contains(&note.id.as_str()));
    let private = comment(
        &ticket,
        CommentAuthor::Requester(requester.clone()),
        "Where is it?",
        Visibility::Private,
    );
    let private = w
        .conn
        .add_comment(&retried(private, started, &[]))
        .await
        .expect("private");
    assert_ne!(private.id, added.id);
    let late = w
        .conn
        .add_comment(&retried(said("Where is it?"), now_ms() + 120_000, &[]))
        .await
        .expect("after a later start");
    assert_ne!(
        late.id, added.id,
        "created before the attempt could have run"
    );
    assert_eq!(w.sim.comments(num(&ticket)).len(), before + 5);
}

#[tokio::test]
async fn a_retried_comment_never_takes_the_description() {
    let w = world(Config::default().relaxed()).await;
    let started = now_ms();
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let description = w.sim.comments(num(&ticket))[0]["id"].clone();
    // The customer repeats their first message word for word.
    let repeat = comment(
        &ticket,
        CommentAuthor::Requester(requester),
        "My order is late",
        Visibility::Public,
    );
    let added = w
        .conn
        .add_comment(&retried(repeat.clone(), started, &[]))
        .await
        .expect("added");
    assert_ne!(json!(num(&added.id)), description);
    let comments = w.sim.comments(num(&ticket));
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[1]["body"], "My order is late");

    // Retried once more, the repeat is found: it is not the description.
    let again = w
        .conn
        .add_comment(&retried(repeat, started, &[]))
        .await
        .expect("found");
    assert_eq!(again.id, added.id);
    assert_eq!(w.sim.comments(num(&ticket)).len(), 2);
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let w = world(Config::default().relaxed()).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;

    // Caught by the plugin before anything is sent.
    let error = connector_error(
        w.conn
            .create_ticket(&new_ticket("k2", "not-a-number", "hi"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "requester-id"),
        "{error:?}"
    );
    let error = connector_error(w.conn.get_ticket("abc").await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "ticket-id"),
        "{error:?}"
    );
    let error = connector_error(w.conn.poll_changes("tickets", None).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "stream"),
        "{error:?}"
    );

    // Refused by Zendesk with a 422 that names the field.
    let error = connector_error(
        w.conn
            .create_ticket(&new_ticket("k3", "424242", "hi"))
            .await,
    );
    // Zendesk names the requester, and the first comment's author, which is the requester.
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "requester" || f.field == "author_id"),
        "{error:?}"
    );
    // A value Zendesk refuses, even one that mentions `closed`, is the caller's mistake, not a
    // closed ticket.
    let mut born_closed = new_ticket("k4", &requester, "hi");
    born_closed.status = Some(TicketStatus::Closed);
    let error = connector_error(w.conn.create_ticket(&born_closed).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "status"),
        "{error:?}"
    );
    let mut reopen_as_new = update(&ticket);
    reopen_as_new.status = Some(TicketStatus::Open);
    w.conn.update_ticket(&reopen_as_new).await.expect("open");
    reopen_as_new.status = Some(TicketStatus::New);
    let error = connector_error(w.conn.update_ticket(&reopen_as_new).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "status" && f.message.contains("open to new")),
        "{error:?}"
    );
    assert_eq!(w.sim.tickets().len(), 1, "nothing invalid was created");
    assert_eq!(w.ticket_json(&ticket)["status"], "open");
}

#[tokio::test]
async fn closed_tickets_refuse_changes_as_a_policy() {
    let w = world(Config::default().relaxed()).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    w.sim.set_status(num(&ticket), "closed");

    let error = connector_error(
        w.conn
            .add_comment(&comment(
                &ticket,
                CommentAuthor::Requester(requester),
                "Hello?",
                Visibility::Public,
            ))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::Policy(p) if p.code == "ticket-closed"),
        "{error:?}"
    );
    let mut change = update(&ticket);
    change.priority = Some(TicketPriority::Low);
    let error = connector_error(w.conn.update_ticket(&change).await);
    assert!(
        matches!(&error, ConnectorError::Policy(p) if p.code == "ticket-closed"),
        "{error:?}"
    );

    assert_eq!(w.sim.comments(num(&ticket)).len(), 1);
    assert_eq!(w.ticket_json(&ticket)["priority"], "high");
    assert_eq!(
        w.conn
            .get_ticket(&ticket)
            .await
            .expect("still readable")
            .status,
        TicketStatus::Closed
    );
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_never_echoed() {
    let w = world(Config::default().relaxed()).await;
    let (_, ticket) = w.ticket("telegram:5001:1").await;
    let users = w.sim.users().len();

    let bad_token = "definitely-not-the-token-7f3a";
    let conn = w.connector(&[("api_token", bad_token)]);
    for error in [
        connector_error(
            conn.find_or_create_requester(&requester_request("6001", "Ken"))
                .await,
        ),
        connector_error(conn.get_ticket(&ticket).await),
        connector_error(conn.poll_changes(STREAM, None).await),
    ] {
        match error {
            ConnectorError::Unauthorized(message) => {
                assert!(!message.contains(bad_token), "{message}")
            }
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    let conn = w.connector(&[("email", "someone-else@switchboard.example")]);
    assert!(matches!(
        connector_error(conn.get_ticket(&ticket).await),
        ConnectorError::Unauthorized(_)
    ));
    assert_eq!(
        w.sim.users().len(),
        users,
        "nothing was created with bad credentials"
    );

    // An agent token that is not an admin's cannot read the incremental export.
    w.sim.update_config(|c| c.admin = false);
    let error = connector_error(w.conn.poll_changes(STREAM, None).await);
    assert!(
        matches!(&error, ConnectorError::Unauthorized(m) if m.contains("admin")),
        "{error:?}"
    );
}

#[tokio::test]
async fn rate_limits_carry_the_retry_after_delay() {
    let w = world(Config::default().relaxed()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let ticket = new_ticket("telegram:5001:1", &requester.id, "My order is late");

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
    assert!(created.created);

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
}

#[tokio::test]
async fn server_errors_are_transient_and_polls_resume() {
    let w = world(Config::default().relaxed()).await;
    let (_, ticket) = w.ticket("telegram:5001:1").await;
    let faults = w.sim.faults();

    for status in [500, 503, 409] {
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

    // A failure half-way through a page (reading a ticket's comments) fails the whole page, and
    // the same poll succeeds once the service recovers.
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 502 },
        count: 1,
        path: Some("/comments".into()),
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

    // A ticket deleted between the export and the comments read is skipped, not retried
    // forever: its status still comes through.
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 404 },
        count: 1,
        path: Some("/comments".into()),
    });
    let page = w.conn.poll_changes(STREAM, None).await.expect("poll");
    assert!(comment_changes(&page.changes).is_empty());
    assert!(page
        .changes
        .iter()
        .any(|c| c.ticket_id == ticket && matches!(c.kind, ChangeKind::Status(TicketStatus::New))));
}

#[tokio::test]
async fn polling_pages_through_the_export_and_long_comment_threads() {
    let w = world(Config {
        ticket_update_limit: None,
        ..Config::default().relaxed()
    })
    .await;
    let agent = w.human_agent().await;
    let (requester, first) = w.ticket("telegram:5001:1").await;
    // Enough tickets outside the hub that the hub's tickets fall on two export pages (the
    // plugin asks for 100 per page).
    for n in 0..100 {
        w.foreign_ticket(n).await;
    }
    let second = w
        .conn
        .create_ticket(&new_ticket(
            "telegram:5001:2",
            &requester,
            "Second question",
        ))
        .await
        .expect("second ticket")
        .id;
    // More comments than one comments page holds (at most 100).
    let mut agent_comments = Vec::new();
    for n in 0..120 {
        let public = n % 3 != 0;
        agent_comments.push((
            w.comment_as(num(&second), agent, &format!("Reply {n}"), public)
                .await,
            public,
        ));
    }

    let page1 = w.conn.poll_changes(STREAM, None).await.expect("page 1");
    assert!(page1.has_more, "100 of 102 tickets: more to read");
    assert!(
        page1.changes.iter().all(|c| c.ticket_id == first),
        "only hub tickets: {:?}",
        page1.changes
    );
    let comments = comment_changes(&page1.changes);
    assert_eq!(comments.len(), 1);
    let (change, _, body, visibility) = comments[0];
    assert_eq!((body, visibility), ("My order is late", Visibility::Public));
    assert_eq!(change.external_id.as_deref(), Some("telegram:5001"));
    let author = change.author.as_ref().expect("author");
    assert_eq!(author.id, requester);
    assert!(!author.is_agent && !change.is_echo);
    assert!(page1
        .changes
        .iter()
        .any(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::New))));

    let cursor1 = page1.next_cursor.expect("a cursor to continue from");
    let page2 = w
        .conn
        .poll_changes(STREAM, Some(&cursor1))
        .await
        .expect("page 2");
    assert!(!page2.has_more);
    assert!(page2.changes.iter().all(|c| c.ticket_id == second));
    let comments = comment_changes(&page2.changes);
    let stored: Vec<u64> = w
        .sim
        .comments(num(&second))
        .iter()
        .map(|c| c["id"].as_u64().expect("id"))
        .collect();
    let polled: Vec<u64> = comments.iter().map(|(_, id, _, _)| num(id)).collect();
    assert_eq!(
        polled, stored,
        "every comment of the thread, in order, across comment pages"
    );
    for ((change, id, body, visibility), (expected_id, public)) in
        comments[1..].iter().zip(&agent_comments)
    {
        assert_eq!(num(id), *expected_id);
        assert!(body.starts_with("Reply "));
        assert_eq!(
            *visibility,
            if *public {
                Visibility::Public
            } else {
                Visibility::Private
            }
        );
        let author = change.author.as_ref().expect("author");
        assert_eq!(
            (author.id.as_str(), author.name.as_deref(), author.is_agent),
            (agent.to_string().as_str(), Some("Hana Agent"), true)
        );
        assert!(!change.is_echo, "a human agent's reply is not an echo");
        assert_eq!(change.change_id, format!("comment:{id}"));
    }

    // The end of the stream: nothing new, and the cursor still works.
    let cursor2 = page2.next_cursor.expect("cursor");
    let page3 = w
        .conn
        .poll_changes(STREAM, Some(&cursor2))
        .await
        .expect("page 3");
    assert!(page3.changes.is_empty() && !page3.has_more, "{page3:?}");
    let cursor3 = page3.next_cursor.unwrap_or(cursor2);

    // A later change to the first ticket shows up from the saved cursor, and only that ticket.
    let late = w
        .comment_as(num(&first), agent, "Found your parcel", true)
        .await;
    let page4 = w
        .conn
        .poll_changes(STREAM, Some(&cursor3))
        .await
        .expect("page 4");
    assert!(page4.changes.iter().all(|c| c.ticket_id == first));
    assert!(comment_changes(&page4.changes)
        .iter()
        .any(|(_, id, body, _)| num(id) == late && *body == "Found your parcel"));
    assert!(page4
        .changes
        .iter()
        .any(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::Open))));
}

#[tokio::test]
async fn the_integration_users_comments_are_echoes() {
    let w = world(Config::default().relaxed()).await;
    let agent = w.human_agent().await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
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
    let reply = w
        .comment_as(num(&ticket), agent, "Hi Aiko, on it", true)
        .await;

    let page = w.conn.poll_changes(STREAM, None).await.expect("poll");
    let comments = comment_changes(&page.changes);
    let by_id = |id: &str| {
        comments
            .iter()
            .find(|(_, cid, _, _)| *cid == id)
            .expect("comment polled")
            .0
    };
    let mine = by_id(&note);
    assert!(mine.is_echo, "the hub's own note");
    assert_eq!(
        mine.author.as_ref().map(|a| a.id.clone()),
        Some(w.sim.agent_id().to_string())
    );
    let human = by_id(&reply.to_string());
    assert!(!human.is_echo && human.author.as_ref().is_some_and(|a| a.is_agent));
    let customer = comments
        .iter()
        .find(|(c, _, _, _)| c.author.as_ref().is_some_and(|a| a.id == requester))
        .expect("first");
    assert!(!customer.0.is_echo);

    // `integration_user_id` names the hub's user instead of asking users/me.
    let conn = w.connector(&[("integration_user_id", &agent.to_string())]);
    let page = conn.poll_changes(STREAM, None).await.expect("poll");
    let comments = comment_changes(&page.changes);
    let echoes: Vec<&str> = comments
        .iter()
        .filter(|(c, _, _, _)| c.is_echo)
        .map(|(_, id, _, _)| *id)
        .collect();
    assert_eq!(echoes, vec![reply.to_string().as_str()]);
}

#[tokio::test]
async fn signed_webhooks_are_verified_and_normalized() {
    let w = world(Config::default().relaxed()).await;
    let agent = w.human_agent().await;
    let receiver = switchboard_testkit::recorder::Recorder::start(200, json!({})).await;
    let hook = json!({"webhook": {
        "name": "Switchboard", "endpoint": format!("{}/webhooks/zendesk-test", receiver.url),
        "http_method": "POST", "request_format": "json", "status": "active",
        "subscriptions": ["zen:event-type:ticket.comment_added", "zen:event-type:ticket.status_changed",
                          "zen:event-type:ticket.priority_changed"],
    }});
    let hook = w
        .api(reqwest::Method::POST, "/api/v2/webhooks", Some(hook))
        .await;
    let hook_id = hook["webhook"]["id"]
        .as_str()
        .expect("webhook id")
        .to_string();
    let secret = w
        .api(
            reqwest::Method::GET,
            &format!("/api/v2/webhooks/{hook_id}/signing_secret"),
            None,
        )
        .await;
    let secret = secret["signing_secret"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let conn = w.connector(&[("webhook_secret", &secret)]);

    let (_, ticket) = w.ticket("telegram:5001:1").await;
    let reply = w
        .comment_as(num(&ticket), agent, "We shipped it", true)
        .await;
    // The agent's reply also opens the new ticket: comment_added and status_changed.
    receiver.wait_for(2).await;
    w.sim.set_status(num(&ticket), "pending");
    receiver.wait_for(3).await;
    let note = conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Hub note",
            Visibility::Private,
        ))
        .await
        .expect("note")
        .id;
    receiver.wait_for(4).await;
    let mut change = update(&ticket);
    change.priority = Some(TicketPriority::Urgent);
    conn.update_ticket(&change).await.expect("priority");
    let deliveries = receiver.wait_for(5).await;
    // The simulator logs a delivery once our receiver's answer is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !w.sim.webhook_deliveries().iter().all(|d| d.delivered) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            w.sim.webhook_deliveries()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.sim.webhook_deliveries().len(), 5);

    let mut changes = Vec::new();
    for delivery in &deliveries {
        assert!(delivery.header("x-zendesk-webhook-signature").is_some());
        let outcome = conn
            .handle_webhook(delivery.webhook_request())
            .await
            .expect("a genuine delivery");
        assert_eq!(outcome.response.status, 200);
        assert_eq!(outcome.changes.len(), 1, "{outcome:?}");
        changes.extend(outcome.changes);
    }
    assert!(changes
        .iter()
        .all(|c| c.ticket_id == ticket && c.external_id.as_deref() == Some("telegram:5001")));
    let comments = comment_changes(&changes);
    let human = comments
        .iter()
        .find(|(_, id, _, _)| *id == reply.to_string())
        .expect("agent reply");
    assert_eq!((human.2, human.3), ("We shipped it", Visibility::Public));
    assert!(
        !human.0.is_echo
            && human
                .0
                .author
                .as_ref()
                .is_some_and(|a| a.is_agent && a.id == agent.to_string())
    );
    let mine = comments
        .iter()
        .find(|(_, id, _, _)| *id == note)
        .expect("hub note");
    assert!(mine.0.is_echo && mine.3 == Visibility::Private);
    assert!(changes
        .iter()
        .any(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::Open))));
    assert!(changes
        .iter()
        .any(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::Pending))));
    assert!(changes
        .iter()
        .any(|c| matches!(c.kind, ChangeKind::Priority(TicketPriority::Urgent))));

    // Webhook and poll name a comment the same way, so the hub files it once.
    let polled = w.conn.poll_changes(STREAM, None).await.expect("poll");
    for (change, _, _, _) in &comments {
        assert!(
            polled
                .changes
                .iter()
                .any(|p| p.change_id == change.change_id),
            "{} not polled",
            change.change_id
        );
    }

    // Forgeries and misconfiguration are refused.
    let genuine = deliveries[0].webhook_request();
    let mut tampered = genuine.clone();
    tampered.body = String::from_utf8(tampered.body)
        .expect("utf-8")
        .replace("Switchboard", "Forged")
        .into_bytes();
    tampered.body.extend_from_slice(b" ");
    let mut unsigned = genuine.clone();
    unsigned
        .headers
        .retain(|(name, _)| name != "x-zendesk-webhook-signature");
    let mut restamped = genuine.clone();
    for (name, value) in &mut restamped.headers {
        if name == "x-zendesk-webhook-signature-timestamp" {
            *value = "2020-01-01T00:00:00Z".into();
        }
    }
    for (what, request) in [
        ("tampered body", tampered),
        ("no signature", unsigned),
        ("other timestamp", restamped),
    ] {
        let error = connector_error(conn.handle_webhook(request).await);
        assert!(
            matches!(error, ConnectorError::Unauthorized(_)),
            "{what}: {error:?}"
        );
    }
    let other_secret = w.connector(&[("webhook_secret", "another-secret")]);
    assert!(matches!(
        connector_error(other_secret.handle_webhook(genuine.clone()).await),
        ConnectorError::Unauthorized(_)
    ));
    assert!(
        matches!(connector_error(w.conn.handle_webhook(genuine).await), ConnectorError::Unauthorized(m) if m.contains("webhook_secret"))
    );

    // A payload signed with the simulator's helper; an event type the hub ignores.
    let body = json!({"type": "zen:event-type:ticket.tags_changed", "subject": format!("zen:ticket:{ticket}"),
                      "detail": {"id": ticket}, "event": {}})
    .to_string();
    let timestamp = "2024-05-01T10:00:00Z";
    let request = switchboard_testkit::recorder::Recorded {
        method: "POST".into(),
        path: String::new(),
        query: String::new(),
        headers: vec![
            (
                "x-zendesk-webhook-signature".into(),
                sign_webhook(&secret, timestamp, body.as_bytes()),
            ),
            (
                "x-zendesk-webhook-signature-timestamp".into(),
                timestamp.into(),
            ),
        ],
        body: body.into_bytes(),
    };
    let outcome = conn
        .handle_webhook(request.webhook_request())
        .await
        .expect("signed");
    assert!(outcome.changes.is_empty());
}

#[tokio::test]
async fn credentials_are_added_by_the_host_not_the_plugin() {
    // A stand-in for Zendesk that records exactly what arrives.
    let fake = switchboard_testkit::recorder::Recorder::start(
        200,
        json!({"ticket": {"id": 7, "status": "open", "tags": ["switchboard"]}}),
    )
    .await;
    let w = world(Config::default().relaxed()).await;
    let token = "zd-secret-token-1f2e";
    let mut installation = installation(&w.sim, &fake.url, &[("api_token", token)]);
    installation
        .settings
        .insert("email".into(), "hub@acme.example".into());
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
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("hub@acme.example/token:{token}"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
    assert!(!request.query.contains(token) && !request.path.contains(token));

    // The host adds them only for the approved origin: with nothing approved, nothing is sent.
    let mut unapproved = installation.clone();
    unapproved.approved_hosts.clear();
    let conn = w.runtime.helpdesk(&w.plugin, &unapproved).expect("bind");
    let error = connector_error(conn.get_ticket("7").await);
    assert!(!format!("{error:?}").contains(token), "{error:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "the denied request never left the host"
    );

    // A dead endpoint is worth retrying, and the failure does not leak the token either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let conn = w
        .runtime
        .helpdesk(&w.plugin, &installation_with_base(&installation, &dead))
        .expect("bind");
    match connector_error(conn.get_ticket("7").await) {
        ConnectorError::Transient(message) => assert!(!message.contains(token), "{message}"),
        other => panic!("expected transient, got {other:?}"),
    }
}

fn installation_with_base(installation: &Installation, base: &str) -> Installation {
    let mut installation = installation.clone();
    installation.settings.insert("base_url".into(), base.into());
    installation
}
