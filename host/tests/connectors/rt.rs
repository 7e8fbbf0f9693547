//! The Request Tracker plugin, loaded in the real runtime, against a real Request Tracker 5
//! (Debian's packages, started on loopback by `scripts/rt.sh`; see `rt_server`): every
//! operation of the helpdesk world, changes made by a human agent through RT's own REST API,
//! echoes of the hub's own writes, and the errors the hub acts on.
//!
//! Each test works in a queue of its own, so tests share the one RT instance safely.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::runtime::latest::{
    Attachment, ChangeKind, CommentAuthor, ConnectorError, NewTicket, TicketChange, TicketPriority,
    TicketStatus, TicketUpdate, Visibility, WebhookRequest,
};
use switchboard::runtime::{HelpdeskConnector, Installation, Plugin, Runtime};
use switchboard_testkit as kit;

use crate::helpdesk::{
    comment, connector_error, now_ms, requester_request, retried, retried_ticket,
};
use crate::rt_or_skip;
use crate::rt_server::Rt;

const PLUGIN: &str = "plugins/rt";
const STREAM: &str = "ticket-changes";

/// How the installation authenticates.
#[derive(Clone, Copy)]
enum Auth {
    Password,
    Token,
}

/// One test's world: its own queue in the shared RT, a runtime with the plugin loaded, and an
/// installation working in that queue as `root`.
struct World {
    rt: &'static Rt,
    queue: String,
    runtime: Runtime,
    plugin: Plugin,
    conn: HelpdeskConnector,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn world(rt: &'static Rt) -> World {
    static QUEUES: AtomicUsize = AtomicUsize::new(0);
    let queue = format!(
        "Social {} {}",
        std::process::id(),
        QUEUES.fetch_add(1, Ordering::SeqCst)
    );
    let http = reqwest::Client::new();
    let created = rest(
        &http,
        rt,
        As::Root,
        reqwest::Method::POST,
        "/queue",
        Some(json!({"Name": queue})),
    )
    .await;
    assert!(created["id"].is_string(), "queue created: {created}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, plugin) = kit::runtime_with_plugin(dir.path(), PLUGIN).await;
    let conn = runtime
        .helpdesk(&plugin, &installation(rt, &queue, Auth::Password, &[]))
        .expect("bind");
    World {
        rt,
        queue,
        runtime,
        plugin,
        conn,
        http,
        _dir: dir,
    }
}

fn installation(rt: &Rt, queue: &str, auth: Auth, extra: &[(&str, &str)]) -> Installation {
    let mut settings: BTreeMap<String, String> = [
        ("base_url", rt.url.as_str()),
        ("username", "root"),
        ("queue", queue),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    match auth {
        Auth::Password => settings.insert("password".into(), rt.root_password.clone()),
        Auth::Token => settings.insert("auth_token".into(), rt.root_token.clone()),
    };
    for (key, value) in extra {
        settings.insert(key.to_string(), value.to_string());
    }
    Installation {
        id: "rt-test".into(),
        settings,
        approved_hosts: vec!["{base_url}".into()],
        limits: None,
        token_source: None,
        meter: None,
    }
}

/// Who calls RT's REST API directly.
#[derive(Clone, Copy)]
enum As {
    Root,
    Agent,
}

/// Calls RT's REST 2.0 directly (as the agent's browser or a script would) and returns the
/// JSON answer; anything but success fails the test.
async fn rest(
    http: &reqwest::Client,
    rt: &Rt,
    who: As,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (user, password) = match who {
        As::Root => ("root", rt.root_password.as_str()),
        As::Agent => (rt.agent_user.as_str(), rt.agent_password.as_str()),
    };
    let mut request = http
        .request(method, format!("{}/REST/2.0{path}", rt.url))
        .basic_auth(user, Some(password));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("RT REST call");
    let status = response.status();
    let text = response.text().await.expect("RT answer");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

impl World {
    fn connector(&self, auth: Auth, extra: &[(&str, &str)]) -> HelpdeskConnector {
        self.runtime
            .helpdesk(
                &self.plugin,
                &installation(self.rt, &self.queue, auth, extra),
            )
            .expect("bind")
    }

    async fn root(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        rest(&self.http, self.rt, As::Root, method, path, body).await
    }

    async fn agent(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        rest(&self.http, self.rt, As::Agent, method, path, body).await
    }

    /// What the agent writes on a ticket in RT: a reply or a comment, plain text or HTML.
    async fn agent_writes(&self, ticket: &str, endpoint: &str, content: &str, content_type: &str) {
        self.agent(
            reqwest::Method::POST,
            &format!("/ticket/{ticket}/{endpoint}"),
            Some(json!({"Content": content, "ContentType": content_type})),
        )
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

    /// The ticket's transactions of the given types, oldest first, with their creators.
    async fn history(&self, ticket: &str, types: &[&str]) -> Vec<Value> {
        let page = self
            .root(
                reqwest::Method::GET,
                &format!(
                    "/ticket/{ticket}/history?per_page=100&fields=Type,Creator,Field,NewValue"
                ),
                None,
            )
            .await;
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|t| types.contains(&t["Type"].as_str().unwrap_or_default()))
            .cloned()
            .collect()
    }

    /// The text of a transaction's message, as RT keeps it.
    async fn message(&self, transaction: &str) -> String {
        let page = self
            .root(
                reqwest::Method::GET,
                &format!(
                    "/transaction/{transaction}/attachments?fields=Content,ContentType,Filename"
                ),
                None,
            )
            .await;
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|part| part["ContentType"] == "text/plain" && part["Filename"] == "")
            .and_then(|part| part["Content"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Polls (following `has_more`) until `done` holds for everything read since `cursor`,
    /// for up to 20 s: RT reports a transaction once it is a couple of seconds old.
    async fn poll_until(
        &self,
        conn: &HelpdeskConnector,
        cursor: Option<String>,
        done: impl Fn(&[TicketChange]) -> bool,
    ) -> (Vec<TicketChange>, Option<String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut cursor = cursor;
        let mut changes: Vec<TicketChange> = Vec::new();
        loop {
            let page = conn
                .poll_changes(STREAM, cursor.as_deref())
                .await
                .expect("poll");
            changes.extend(page.changes);
            assert!(page.next_cursor.is_some(), "a poll always gives a cursor");
            cursor = page.next_cursor;
            if page.has_more {
                continue;
            }
            if done(&changes) {
                return (changes, cursor);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expected changes did not arrive; got {changes:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
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
        tags: vec!["vip".into()],
        priority: Some(TicketPriority::High),
        status: None,
        channel: "telegram".into(),
        unconfirmed: None,
        customer_context: None,
    }
}

fn update(
    ticket: &str,
    status: Option<TicketStatus>,
    priority: Option<TicketPriority>,
) -> TicketUpdate {
    TicketUpdate {
        ticket_id: ticket.into(),
        status,
        priority,
        add_tags: vec![],
        remove_tags: vec![],
    }
}

/// The comment change with this comment id, if polled.
fn comment_change<'a>(changes: &'a [TicketChange], id: &str) -> Option<&'a TicketChange> {
    changes
        .iter()
        .find(|c| matches!(&c.kind, ChangeKind::Comment(comment) if comment.comment_id == id))
}

/// The comment changes whose body is `body`.
fn comments_with_body<'a>(changes: &'a [TicketChange], body: &str) -> Vec<&'a TicketChange> {
    changes
        .iter()
        .filter(|c| matches!(&c.kind, ChangeKind::Comment(comment) if comment.body == body))
        .collect()
}

fn visibility(change: &TicketChange) -> Option<Visibility> {
    match &change.kind {
        ChangeKind::Comment(comment) => Some(comment.visibility),
        _ => None,
    }
}

#[tokio::test]
async fn requesters_are_found_or_created_once() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let manifest = w.plugin.manifest();
    assert_eq!(manifest.id, "rt");
    assert!(!manifest.accepts_webhooks);
    assert!(manifest.streams.iter().any(|s| s.name == STREAM));

    // A person of this test alone: the RT instance is shared.
    let person = format!("{}{}", std::process::id(), line!());
    let first = w
        .conn
        .find_or_create_requester(&requester_request(&person, "Aiko Sato"))
        .await
        .expect("create");
    assert!(first.created);
    let user = w
        .root(reqwest::Method::GET, &format!("/user/{}", first.id), None)
        .await;
    let login = format!("telegram-{person}@social.invalid");
    assert_eq!(user["Name"], login.as_str());
    assert_eq!(user["EmailAddress"], login.as_str());
    assert_eq!(user["RealName"], "Aiko Sato");
    assert_eq!(user["NickName"], "aiko");
    assert_eq!(user["Privileged"], 0, "an end user, not staff");
    assert!(
        user["Comments"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("telegram:{person}"))),
        "{user}"
    );

    // The same person again, under a new display name: found, not duplicated.
    let again = w
        .conn
        .find_or_create_requester(&requester_request(&person, "Aiko S."))
        .await
        .expect("find");
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false)
    );

    let other = w
        .conn
        .find_or_create_requester(&requester_request(&format!("{person}9"), "Ben"))
        .await
        .expect("another person");
    assert!(other.created);
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn tickets_are_created_once_per_idempotency_key() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
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
        Some(format!("{}/Ticket/Display.html?id={}", rt.url, created.id).as_str())
    );

    let stored = w
        .root(
            reqwest::Method::GET,
            &format!("/ticket/{}", created.id),
            None,
        )
        .await;
    assert_eq!(stored["Subject"], "Order late");
    assert_eq!(stored["Status"], "new");
    assert_eq!(stored["Priority"], "80", "high, as a number");
    let queue = w
        .root(
            reqwest::Method::GET,
            &format!(
                "/queue/{}",
                stored["Queue"]["id"].as_str().expect("queue id")
            ),
            None,
        )
        .await;
    assert_eq!(queue["Name"], w.queue.as_str());
    let requestors = stored["Requestor"].as_array().expect("requestors");
    assert_eq!(requestors.len(), 1);
    assert_eq!(requestors[0]["id"], "telegram-5001@social.invalid");
    let field = |name: &str| {
        stored["CustomFields"]
            .as_array()
            .expect("custom fields")
            .iter()
            .find(|cf| cf["name"] == name)
            .map(|cf| cf["values"].clone())
    };
    assert_eq!(
        field("Switchboard External ID"),
        Some(json!(["telegram:5001"]))
    );
    assert_eq!(
        field("Switchboard Idempotency Key"),
        Some(json!(["telegram:5001:1"]))
    );
    let create = w.history(&created.id, &["Create"]).await;
    let content = w.message(create[0]["id"].as_str().expect("txn id")).await;
    assert!(
        content.starts_with("My order is late") && content.contains("receipt.jpg: tg-file:photo-1"),
        "{content}"
    );

    // A retry with the same key gets the same ticket back, not a second one.
    let retried = w.conn.create_ticket(&ticket).await.expect("retry");
    assert_eq!(
        (retried.id.as_str(), retried.created),
        (created.id.as_str(), false)
    );
    let search = w
        .root(
            reqwest::Method::GET,
            &format!(
                "/tickets?query={}",
                urlencode(&format!("Queue = '{}'", w.queue))
            ),
            None,
        )
        .await;
    assert_eq!(search["total"], 1);

    // A private first message is filed as a comment naming the customer, not as content.
    let mut private = new_ticket("telegram:5001:2", &requester.id, "Sent privately");
    private.visibility = Visibility::Private;
    private.subject = String::new();
    private.status = Some(TicketStatus::Open);
    let note = w
        .conn
        .create_ticket(&private)
        .await
        .expect("private ticket");
    assert!(note.created);
    let stored = w
        .root(reqwest::Method::GET, &format!("/ticket/{}", note.id), None)
        .await;
    assert_eq!(stored["Subject"], "Sent privately");
    assert_eq!(stored["Status"], "open");
    assert!(w.history(&note.id, &["Correspond"]).await.is_empty());
    let comments = w.history(&note.id, &["Comment"]).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(
        w.message(comments[0]["id"].as_str().expect("txn id")).await,
        "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nSent privately"
    );
}

#[tokio::test]
async fn comments_are_replies_or_comments_and_name_the_customer() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;

    let customer = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester.clone()),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("customer message");
    let reply = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Forwarded to the warehouse",
            Visibility::Public,
        ))
        .await
        .expect("integration reply");
    let note = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Customer is a VIP",
            Visibility::Private,
        ))
        .await
        .expect("note");

    // The returned ids are RT's transaction ids, of the right types, by the integration user.
    let corresponds = w.history(&ticket, &["Correspond"]).await;
    let ids: Vec<&str> = corresponds
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [customer.id.as_str(), reply.id.as_str()]);
    assert!(corresponds.iter().all(|t| t["Creator"]["id"] == "root"));
    let comments = w.history(&ticket, &["Comment"]).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["id"], note.id.as_str());

    assert_eq!(
        w.message(&customer.id).await,
        "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nAny news?"
    );
    assert_eq!(w.message(&reply.id).await, "Forwarded to the warehouse");
    assert_eq!(w.message(&note.id).await, "Customer is a VIP");

    // Nothing to say is refused before RT sees it.
    let empty = connector_error(
        w.conn
            .add_comment(&comment(
                &ticket,
                CommentAuthor::Integration,
                " ",
                Visibility::Public,
            ))
            .await,
    );
    assert!(matches!(empty, ConnectorError::InvalidInput(f) if f.field == "body"));
    let unknown_author = connector_error(
        w.conn
            .add_comment(&comment(
                &ticket,
                CommentAuthor::Requester("99999999".into()),
                "Hello",
                Visibility::Public,
            ))
            .await,
    );
    assert!(matches!(unknown_author, ConnectorError::InvalidInput(f) if f.field == "author"));
}

impl World {
    /// The ids of the ticket's transactions of `kind` whose message is `text`, oldest first.
    async fn messages_with_text(&self, ticket: &str, kind: &str, text: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for txn in self.history(ticket, &[kind]).await {
            let id = txn["id"].as_str().expect("txn id").to_string();
            if self.message(&id).await == text {
                ids.push(id);
            }
        }
        ids
    }
}

#[tokio::test]
async fn a_retried_comment_that_was_added_answers_with_it() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let customer_text = "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nAny news?";

    let started = now_ms();
    let message = comment(
        &ticket,
        CommentAuthor::Requester(requester.clone()),
        "Any news?",
        Visibility::Public,
    );
    let first = w.conn.add_comment(&message).await.expect("first attempt");
    let note = comment(
        &ticket,
        CommentAuthor::Integration,
        "Customer is a VIP",
        Visibility::Private,
    );
    let first_note = w.conn.add_comment(&note).await.expect("first note");
    // Later messages, the agent's and the hub's, are not the earlier attempt's.
    w.agent_writes(&ticket, "correspond", "Any news?", "text/plain")
        .await;
    w.conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Forwarded to the warehouse",
            Visibility::Public,
        ))
        .await
        .expect("later reply");

    // The answer was lost: the retry finds the reply RT recorded, by its transaction id.
    let again = w
        .conn
        .add_comment(&retried(message.clone(), started, &[]))
        .await
        .expect("retry");
    assert_eq!(again.id, first.id, "the earlier attempt's transaction");
    assert_eq!(
        w.messages_with_text(&ticket, "Correspond", customer_text)
            .await,
        [first.id.as_str()],
        "RT holds the customer's message once"
    );

    let again = w
        .conn
        .add_comment(&retried(note, started, &[first.id.as_str()]))
        .await
        .expect("retried note");
    assert_eq!(again.id, first_note.id);
    assert_eq!(
        w.messages_with_text(&ticket, "Comment", "Customer is a VIP")
            .await,
        [first_note.id.as_str()]
    );

    // A token-authenticated installation finds it too.
    let token = w.connector(Auth::Token, &[]);
    let again = token
        .add_comment(&retried(message, started, &[]))
        .await
        .expect("retry with a token");
    assert_eq!(again.id, first.id);
    assert_eq!(w.history(&ticket, &["Correspond"]).await.len(), 3);
}

#[tokio::test]
async fn a_retried_comment_that_was_not_added_is_added() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let started = now_ms();
    // The same text, but not what the retry would post: a note rather than a reply, a reply
    // without the customer's name, and the agent's own reply.
    w.conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Any news?",
            Visibility::Private,
        ))
        .await
        .expect("note");
    w.conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Integration,
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("integration reply");
    w.agent_writes(&ticket, "correspond", "Any news?", "text/plain")
        .await;

    let message = comment(
        &ticket,
        CommentAuthor::Requester(requester),
        "Any news?",
        Visibility::Public,
    );
    let added = w
        .conn
        .add_comment(&retried(message.clone(), started, &[]))
        .await
        .expect("retry");
    let customer_text = "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nAny news?";
    assert_eq!(
        w.messages_with_text(&ticket, "Correspond", customer_text)
            .await,
        [added.id.as_str()],
        "the earlier attempt had added nothing: the retry did"
    );

    // Retried once more, it finds what the last retry added.
    let again = w
        .conn
        .add_comment(&retried(message, started, &[]))
        .await
        .expect("second retry");
    assert_eq!(again.id, added.id);
}

#[tokio::test]
async fn a_message_the_hub_already_knows_is_not_the_earlier_attempts() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (_, ticket) = w.ticket("telegram:5001:1").await;
    let started = now_ms();
    let message = comment(
        &ticket,
        CommentAuthor::Integration,
        "Thanks!",
        Visibility::Public,
    );
    let known = w.conn.add_comment(&message).await.expect("first");

    // The hub maps that reply to an earlier message with the same text.
    let added = w
        .conn
        .add_comment(&retried(message.clone(), started, &[known.id.as_str()]))
        .await
        .expect("retry");
    assert_ne!(added.id, known.id);
    assert_eq!(
        w.messages_with_text(&ticket, "Correspond", "Thanks!").await,
        [known.id.as_str(), added.id.as_str()]
    );

    // Messages from before the attempt started (less a minute) are not it either.
    let later = now_ms() + 120_000;
    let again = w
        .conn
        .add_comment(&retried(message, later, &[]))
        .await
        .expect("attempt started later");
    assert!(again.id != known.id && again.id != added.id);
    assert_eq!(
        w.messages_with_text(&ticket, "Correspond", "Thanks!")
            .await
            .len(),
        3
    );
}

/// An idempotency custom field that applies to no queue: tickets go without a key.
const NO_SUCH_FIELD: &str = "Switchboard No Such Field";

impl World {
    /// The ids of the tickets in the test's queue, oldest first.
    async fn queue_tickets(&self) -> Vec<String> {
        let search = self
            .root(
                reqwest::Method::GET,
                &format!(
                    "/tickets?orderby=id&per_page=100&query={}",
                    urlencode(&format!("Queue = '{}'", self.queue))
                ),
                None,
            )
            .await;
        search["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["id"].as_str().expect("ticket id").to_string())
            .collect()
    }

    /// What the plugin's create sends for `ticket` when the first message is private, as root
    /// (the integration user): the ticket without its comment, as an attempt that stopped
    /// between the two left it. `key` goes in the idempotency field when given.
    async fn ticket_without_its_comment(&self, ticket: &NewTicket, key: Option<&str>) -> String {
        let mut fields = json!({"Switchboard External ID": ticket.external_id});
        if let Some(key) = key {
            fields["Switchboard Idempotency Key"] = json!(key);
        }
        let filed = self
            .root(
                reqwest::Method::POST,
                "/ticket",
                Some(json!({
                    "Queue": self.queue,
                    "Subject": ticket.subject,
                    "Requestor": ticket.requester_id,
                    "CustomFields": fields,
                })),
            )
            .await;
        let id = filed["id"].as_str().expect("ticket id").to_string();
        assert!(self
            .history(&id, &["Comment", "Correspond"])
            .await
            .is_empty());
        id
    }
}

#[tokio::test]
async fn a_retried_private_create_posts_the_comment_the_first_attempt_lost() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let mut private = new_ticket("telegram:5001:1", &requester.id, "Sent privately");
    private.visibility = Visibility::Private;
    let text = "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nSent privately";

    // The first attempt created the ticket, with its key, and stopped before the comment.
    let started = now_ms();
    let filed = w
        .ticket_without_its_comment(&private, Some("telegram:5001:1"))
        .await;
    let retry = retried_ticket(private.clone(), started, &[]);
    let found = w.conn.create_ticket(&retry).await.expect("retry");
    assert_eq!((found.id.as_str(), found.created), (filed.as_str(), false));
    let comments = w.messages_with_text(&filed, "Comment", text).await;
    assert_eq!(comments.len(), 1, "the customer's message, once");
    assert!(w.history(&filed, &["Correspond"]).await.is_empty());

    // Retried once more, it finds the comment as well and adds nothing.
    let again = w.conn.create_ticket(&retry).await.expect("second retry");
    assert_eq!((again.id.as_str(), again.created), (filed.as_str(), false));
    assert_eq!(
        w.messages_with_text(&filed, "Comment", text).await,
        comments
    );
    assert_eq!(w.history(&filed, &["Comment"]).await.len(), 1);

    // Without an idempotency field, the look-back finds the ticket and completes it too.
    let no_key = w.connector(Auth::Password, &[("idempotency_field", NO_SUCH_FIELD)]);
    let mut second = new_ticket("telegram:5001:2", &requester.id, "Second note");
    second.visibility = Visibility::Private;
    second.subject = "Still waiting".into();
    let text = "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nSecond note";
    let started = now_ms();
    let filed_second = w.ticket_without_its_comment(&second, None).await;
    let retry = retried_ticket(second, started, &[filed.as_str()]);
    for attempt in ["retry", "second retry"] {
        let found = no_key.create_ticket(&retry).await.expect(attempt);
        assert_eq!(
            (found.id.as_str(), found.created),
            (filed_second.as_str(), false),
            "{attempt}"
        );
        assert_eq!(
            w.messages_with_text(&filed_second, "Comment", text)
                .await
                .len(),
            1,
            "{attempt}"
        );
    }
    assert_eq!(w.queue_tickets().await, [filed, filed_second]);
}

#[tokio::test]
async fn without_an_idempotency_field_a_retried_create_looks_for_the_earlier_ticket() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let conn = w.connector(Auth::Password, &[("idempotency_field", NO_SUCH_FIELD)]);
    let requester = conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let ticket = new_ticket("telegram:5001:1", &requester.id, "My order is late");

    // The first attempt filed the ticket, without a key; its answer was lost.
    let started = now_ms();
    let first = conn.create_ticket(&ticket).await.expect("first attempt");
    assert!(first.created);
    let stored = w
        .root(reqwest::Method::GET, &format!("/ticket/{}", first.id), None)
        .await;
    assert!(
        stored["CustomFields"]
            .as_array()
            .expect("custom fields")
            .iter()
            .all(|cf| cf["name"] != "Switchboard Idempotency Key" || cf["values"] == json!([])),
        "no key: {stored}"
    );
    let found = conn
        .create_ticket(&retried_ticket(ticket.clone(), started, &[]))
        .await
        .expect("retry");
    assert_eq!(
        (found.id.as_str(), found.created),
        (first.id.as_str(), false)
    );
    assert_eq!(w.queue_tickets().await, [first.id.as_str()]);

    // An attempt that filed nothing: the retry creates the ticket, and a retry of that finds it.
    let mut refund = new_ticket("telegram:5001:2", &requester.id, "Where is my refund?");
    refund.subject = "Refund".into();
    let retry = retried_ticket(refund, now_ms(), &[first.id.as_str()]);
    let refund = conn.create_ticket(&retry).await.expect("refund");
    assert!(refund.created);
    let again = conn.create_ticket(&retry).await.expect("refund again");
    assert_eq!(
        (again.id.as_str(), again.created),
        (refund.id.as_str(), false)
    );

    // Same subject, another conversation: not it.
    let mut elsewhere = ticket.clone();
    elsewhere.external_id = "telegram:5002".into();
    let elsewhere = conn
        .create_ticket(&retried_ticket(elsewhere, started, &[]))
        .await
        .expect("another conversation");
    assert!(elsewhere.created);

    // A ticket the hub already maps to something else is not it.
    let known = conn
        .create_ticket(&retried_ticket(
            ticket.clone(),
            started,
            &[first.id.as_str()],
        ))
        .await
        .expect("known ticket");
    assert!(known.created);
    assert_ne!(known.id, first.id);

    // Nor is one created before the attempt started (less a minute).
    let later = conn
        .create_ticket(&retried_ticket(ticket, now_ms() + 120_000, &[]))
        .await
        .expect("attempt started later");
    assert!(later.created);
    assert_eq!(
        w.queue_tickets().await,
        [first.id, refund.id, elsewhere.id, known.id, later.id]
    );
}

#[tokio::test]
async fn statuses_and_priorities_are_set_and_read_back() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (_, ticket) = w.ticket("telegram:5001:1").await;

    let state = w.conn.get_ticket(&ticket).await.expect("get");
    assert_eq!(state.id, ticket);
    assert_eq!(state.status, TicketStatus::New);
    assert_eq!(state.priority, Some(TicketPriority::High));
    assert_eq!(state.external_id.as_deref(), Some("telegram:5001"));
    assert!(state.updated_at > 1_600_000_000_000, "{}", state.updated_at);

    let state = w
        .conn
        .update_ticket(&update(
            &ticket,
            Some(TicketStatus::Pending),
            Some(TicketPriority::Urgent),
        ))
        .await
        .expect("pending");
    assert_eq!(state.status, TicketStatus::Pending);
    assert_eq!(state.priority, Some(TicketPriority::Urgent));
    let stored = w
        .root(reqwest::Method::GET, &format!("/ticket/{ticket}"), None)
        .await;
    assert_eq!(stored["Status"], "stalled");
    assert_eq!(stored["Priority"], "100");

    for (status, rt_status, read_back) in [
        (TicketStatus::Open, "open", TicketStatus::Open),
        (TicketStatus::OnHold, "stalled", TicketStatus::Pending),
        (TicketStatus::Solved, "resolved", TicketStatus::Solved),
        (TicketStatus::Closed, "resolved", TicketStatus::Solved),
    ] {
        let state = w
            .conn
            .update_ticket(&update(&ticket, Some(status), None))
            .await
            .unwrap_or_else(|e| panic!("{status:?}: {e}"));
        assert_eq!(state.status, read_back, "{status:?}");
        let stored = w
            .root(reqwest::Method::GET, &format!("/ticket/{ticket}"), None)
            .await;
        assert_eq!(stored["Status"], rt_status, "{status:?}");
    }

    // An agent rejects the ticket in RT: the hub reads it as closed.
    w.agent(
        reqwest::Method::PUT,
        &format!("/ticket/{ticket}"),
        Some(json!({"Status": "rejected"})),
    )
    .await;
    assert_eq!(
        w.conn.get_ticket(&ticket).await.expect("get").status,
        TicketStatus::Closed
    );

    // Tags alone change nothing in RT (it has none) and read the ticket back.
    let mut tags_only = update(&ticket, None, None);
    tags_only.add_tags = vec!["vip".into()];
    let state = w.conn.update_ticket(&tags_only).await.expect("tags");
    assert_eq!(state.status, TicketStatus::Closed);
}

#[tokio::test]
async fn polling_reports_what_agents_do_and_marks_the_hubs_own_writes() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;

    // The hub's own writes.
    let customer = w
        .conn
        .add_comment(&comment(
            &ticket,
            CommentAuthor::Requester(requester),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("customer message")
        .id;
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
    // A human agent at work in RT, as another user.
    w.agent_writes(
        &ticket,
        "correspond",
        "Hi Aiko, it ships today.",
        "text/plain",
    )
    .await;
    w.agent_writes(
        &ticket,
        "comment",
        "Checked with the warehouse",
        "text/plain",
    )
    .await;
    w.agent_writes(
        &ticket,
        "correspond",
        "<p>Tracking: <b>JP123</b><br>Arrives &amp; is signed for tomorrow.</p>",
        "text/html",
    )
    .await;
    w.agent(
        reqwest::Method::PUT,
        &format!("/ticket/{ticket}"),
        Some(json!({"Status": "stalled"})),
    )
    .await;
    // A ticket an agent opened in RT directly is not the hub's: none of its changes come.
    let foreign = w
        .agent(
            reqwest::Method::POST,
            "/ticket",
            Some(json!({"Queue": w.queue, "Subject": "Internal", "Content": "Printer jam"})),
        )
        .await;
    let foreign = foreign["id"]
        .as_str()
        .expect("foreign ticket id")
        .to_string();
    w.agent_writes(&foreign, "correspond", "Fixed the printer", "text/plain")
        .await;

    let has_stalled = |changes: &[TicketChange]| {
        changes
            .iter()
            .any(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::Pending)))
    };
    let (changes, cursor) = w.poll_until(&w.conn, None, has_stalled).await;
    assert!(
        changes.iter().all(|c| c.ticket_id == ticket),
        "only the hub's ticket: {changes:#?}"
    );
    assert!(changes
        .iter()
        .all(|c| c.external_id.as_deref() == Some("telegram:5001")));
    let ids: Vec<&str> = changes.iter().map(|c| c.change_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no change twice: {ids:?}");

    // The agent's reply: public, not an echo, by a staff member with a name.
    let reply = comments_with_body(&changes, "Hi Aiko, it ships today.");
    assert_eq!(reply.len(), 1, "{changes:#?}");
    let reply = reply[0];
    assert_eq!(visibility(reply), Some(Visibility::Public));
    assert!(!reply.is_echo);
    let author = reply.author.as_ref().expect("author");
    assert!(author.is_agent);
    assert_eq!(author.name.as_deref(), Some("Hana Agent"));
    assert!(reply.change_id.starts_with("comment:"));
    assert!(reply.at > 1_600_000_000_000);

    let agent_note = comments_with_body(&changes, "Checked with the warehouse");
    assert_eq!(agent_note.len(), 1);
    assert_eq!(visibility(agent_note[0]), Some(Visibility::Private));
    assert!(!agent_note[0].is_echo);

    let html = comments_with_body(
        &changes,
        "Tracking: JP123\nArrives & is signed for tomorrow.",
    );
    assert_eq!(html.len(), 1, "HTML flattened to text: {changes:#?}");
    assert_eq!(visibility(html[0]), Some(Visibility::Public));

    // The hub's own writes come back as echoes, under the ids add-comment returned.
    let own_customer = comment_change(&changes, &customer).expect("customer message polled");
    assert!(own_customer.is_echo);
    assert_eq!(visibility(own_customer), Some(Visibility::Public));
    let own_note = comment_change(&changes, &note).expect("note polled");
    assert!(own_note.is_echo);
    assert_eq!(visibility(own_note), Some(Visibility::Private));
    assert!(matches!(&own_note.kind, ChangeKind::Comment(c) if c.body == "Filed by the hub"));

    let stalled: Vec<&TicketChange> = changes
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Status(TicketStatus::Pending)))
        .collect();
    assert_eq!(stalled.len(), 1);
    assert!(!stalled[0].is_echo);
    assert!(stalled[0].author.as_ref().is_some_and(|a| a.is_agent));

    // From the cursor on, only what is new.
    w.agent_writes(&ticket, "correspond", "Delivered!", "text/plain")
        .await;
    let (next, _) = w
        .poll_until(&w.conn, cursor, |changes| {
            !comments_with_body(changes, "Delivered!").is_empty()
        })
        .await;
    assert!(
        next.iter().all(|c| !ids.contains(&c.change_id.as_str())),
        "already reported: {next:#?}"
    );

    // A token-authenticated installation sees the same, and the same echoes.
    let token = w.connector(Auth::Token, &[]);
    let (again, _) = w
        .poll_until(&token, None, |changes| {
            !comments_with_body(changes, "Delivered!").is_empty()
        })
        .await;
    assert!(comment_change(&again, &note).is_some_and(|c| c.is_echo));
    assert!(comments_with_body(&again, "Hi Aiko, it ships today.")
        .iter()
        .all(|c| !c.is_echo));
}

#[tokio::test]
async fn credentials_are_checked_by_rt() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (_, ticket) = w.ticket("telegram:5001:1").await;

    let token = w.connector(Auth::Token, &[]);
    assert_eq!(
        token.get_ticket(&ticket).await.expect("token auth").id,
        ticket
    );

    let wrong_password = w.connector(Auth::Password, &[("password", "not-the-password")]);
    let error = connector_error(wrong_password.get_ticket(&ticket).await);
    assert!(
        matches!(&error, ConnectorError::Unauthorized(m) if m.contains("401")),
        "{error:?}"
    );
    let error = connector_error(wrong_password.poll_changes(STREAM, None).await);
    assert!(
        matches!(error, ConnectorError::Unauthorized(_)),
        "{error:?}"
    );

    let wrong_token = w.connector(
        Auth::Token,
        &[("auth_token", "1-14-00000000000000000000000000000000")],
    );
    let error = connector_error(
        wrong_token
            .find_or_create_requester(&requester_request("5001", "Aiko"))
            .await,
    );
    assert!(
        matches!(error, ConnectorError::Unauthorized(_)),
        "{error:?}"
    );

    let both = w.connector(Auth::Password, &[("auth_token", rt.root_token.as_str())]);
    let error = connector_error(both.get_ticket(&ticket).await);
    // The plugin cannot see which secrets are set; the host refuses to add two Authorization
    // headers and says why.
    assert!(
        matches!(&error, ConnectorError::Fatal(m) if m.contains("set only one")),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_records_are_not_found_and_bad_input_names_the_field() {
    let rt = rt_or_skip!();
    let w = world(rt).await;
    let (requester, ticket) = w.ticket("telegram:5001:1").await;
    let missing = "99999999";

    let error = connector_error(w.conn.get_ticket(missing).await);
    assert!(
        matches!(&error, ConnectorError::NotFound(m) if m.contains("404")),
        "{error:?}"
    );
    let error = connector_error(
        w.conn
            .add_comment(&comment(
                missing,
                CommentAuthor::Integration,
                "Hello",
                Visibility::Public,
            ))
            .await,
    );
    assert!(matches!(error, ConnectorError::NotFound(_)), "{error:?}");
    let error = connector_error(
        w.conn
            .add_comment(&comment(
                missing,
                CommentAuthor::Integration,
                "Hello",
                Visibility::Private,
            ))
            .await,
    );
    assert!(matches!(error, ConnectorError::NotFound(_)), "{error:?}");
    let error = connector_error(
        w.conn
            .update_ticket(&update(missing, Some(TicketStatus::Open), None))
            .await,
    );
    assert!(matches!(error, ConnectorError::NotFound(_)), "{error:?}");

    // A deleted ticket is gone for the hub too.
    w.root(reqwest::Method::DELETE, &format!("/ticket/{ticket}"), None)
        .await;
    let error = connector_error(w.conn.get_ticket(&ticket).await);
    assert!(matches!(error, ConnectorError::NotFound(_)), "{error:?}");

    let error = connector_error(
        w.conn
            .create_ticket(&new_ticket("telegram:5001:9", missing, "Hello"))
            .await,
    );
    assert!(matches!(error, ConnectorError::InvalidInput(f) if f.field == "requester-id"));
    let error = connector_error(w.conn.get_ticket("12/../1").await);
    assert!(matches!(error, ConnectorError::InvalidInput(f) if f.field == "ticket-id"));

    let no_queue = w.connector(Auth::Password, &[("queue", "No Such Queue")]);
    let error = connector_error(
        no_queue
            .create_ticket(&new_ticket("telegram:5001:9", &requester, "Hello"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "queue"),
        "{error:?}"
    );

    let error = connector_error(w.conn.poll_changes("updates", None).await);
    assert!(matches!(error, ConnectorError::InvalidInput(f) if f.field == "stream"));

    // RT has no outbound webhooks in core.
    let error = connector_error(
        w.conn
            .handle_webhook(WebhookRequest {
                method: "POST".into(),
                path: String::new(),
                query: String::new(),
                headers: vec![],
                body: b"{}".to_vec(),
            })
            .await,
    );
    assert!(matches!(error, ConnectorError::Fatal(m) if m.contains("no outbound webhooks")));
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
