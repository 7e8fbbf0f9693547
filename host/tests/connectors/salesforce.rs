//! The Salesforce plugin, loaded in the real runtime, against the Salesforce simulator: every
//! operation of the helpdesk world, upsert idempotency, SOQL paging, echoes, the errors the
//! hub acts on, and OAuth tokens that only the host handles (refreshed once on a 401).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::helpdesk::{
    comment, comment_changes, connector_error, now_ms, requester_request, retried, update,
};
use serde_json::{json, Value};
use switchboard::runtime::latest::{
    Attachment, ChangeKind, CommentAuthor, ConnectorError, HelpdeskPollPage, NewTicket,
    TicketChange, TicketPriority, TicketStatus, Visibility, WebhookRequest,
};
use switchboard::runtime::{HelpdeskConnector, Installation, Plugin, Runtime, StaticToken};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::salesforce::{Config, ExternalIdField, Simulator};
use switchboard_testkit as kit;

const PLUGIN: &str = "plugins/salesforce";
const STREAM: &str = "ticket-changes";
const EXT: &str = "Switchboard_External_Id__c";
const V: &str = "/services/data/v60.0";

/// One test's world: a simulated org, a runtime with the plugin loaded, and an installation
/// pointed at the simulator with a token the simulator issued.
struct World {
    sim: Simulator,
    /// `http://127.0.0.1:<port>`, the installation's `instance_url`.
    base: String,
    runtime: Runtime,
    plugin: Plugin,
    conn: HelpdeskConnector,
    token: String,
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
    let token = sim.issue_access_token();
    let conn = runtime
        .helpdesk(
            &plugin,
            &installation(&base, Arc::new(StaticToken::new(&token)), &[]),
        )
        .expect("bind");
    World {
        sim,
        base,
        runtime,
        plugin,
        conn,
        token,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

fn installation(base: &str, token: Arc<StaticToken>, extra: &[(&str, &str)]) -> Installation {
    let mut settings: BTreeMap<String, String> = [("instance_url", base), ("login_url", base)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in extra {
        settings.insert(key.to_string(), value.to_string());
    }
    Installation {
        id: "salesforce-test".into(),
        settings,
        approved_hosts: vec!["{instance_url}".into()],
        token_source: Some(token),
        ..Default::default()
    }
}

impl World {
    fn connector(&self, extra: &[(&str, &str)]) -> HelpdeskConnector {
        let token = Arc::new(StaticToken::new(&self.token));
        self.runtime
            .helpdesk(&self.plugin, &installation(&self.base, token, extra))
            .expect("bind")
    }

    /// Calls the simulator's REST API directly, as someone working in the org outside the hub.
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.sim.issue_access_token());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("simulator API call");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A requester and a hub ticket for them; returns (contact id, case id).
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

    fn case(&self, id: &str) -> Value {
        self.sim
            .tickets()
            .into_iter()
            .find(|t| t["Id"] == id)
            .expect("case in the simulator")
    }

    /// Polls from `cursor` until the stream says there is no more; returns every change and
    /// the last cursor.
    async fn poll_all(
        &self,
        conn: &HelpdeskConnector,
        cursor: Option<String>,
    ) -> (Vec<TicketChange>, Option<String>, usize) {
        let mut cursor = cursor;
        let mut changes = Vec::new();
        let mut polls = 0;
        loop {
            let page: HelpdeskPollPage = conn
                .poll_changes(STREAM, cursor.as_deref())
                .await
                .expect("poll");
            polls += 1;
            changes.extend(page.changes);
            if page.next_cursor.is_some() {
                cursor = page.next_cursor;
            }
            if !page.has_more {
                return (changes, cursor, polls);
            }
            assert!(polls < 100, "the stream never ends");
        }
    }
}

fn new_ticket(key: &str, requester: &str, body: &str) -> NewTicket {
    NewTicket {
        idempotency_key: key.into(),
        external_id: "conversation-1".into(),
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

/// The bodies of a case's CaseComments, oldest first.
fn bodies(w: &World, case: &str) -> Vec<String> {
    w.sim
        .comments(case)
        .iter()
        .map(|c| c["CommentBody"].as_str().expect("body").to_string())
        .collect()
}

fn statuses_of(changes: &[TicketChange]) -> Vec<(&str, TicketStatus, bool)> {
    changes
        .iter()
        .filter_map(|c| match c.kind {
            ChangeKind::Status(s) => Some((c.ticket_id.as_str(), s, c.is_echo)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn requesters_are_contacts_upserted_by_external_id() {
    let w = world(Config::default()).await;
    let manifest = w.plugin.manifest();
    assert_eq!(manifest.id, "salesforce");
    assert!(manifest.streams.iter().any(|s| s.name == STREAM));
    assert!(!manifest.accepts_webhooks);
    let oauth = manifest.oauth2.as_ref().expect("oauth2");
    assert_eq!(oauth.token_url, "{login_url}/services/oauth2/token");
    assert_eq!(
        oauth.flows,
        vec!["authorization-code-pkce", "refresh-token", "jwt-bearer"]
    );

    let first = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("create");
    assert!(first.created);
    assert!(first.id.starts_with("003"));
    let contacts = w.sim.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["Id"], first.id);
    assert_eq!(contacts[0][EXT], "telegram:5001");
    assert_eq!(contacts[0]["LastName"], "Aiko Sato");
    assert_eq!(contacts[0]["CreatedById"], w.sim.integration_user_id());

    // The same person under a new name: found and renamed, not duplicated.
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
    assert_eq!(w.sim.contacts()[0]["LastName"], "Aiko S.");

    // No display name: the handle, else the external id, is the LastName Salesforce requires.
    let mut anonymous = requester_request("77", "");
    anonymous.identity.display_name = None;
    anonymous.identity.handle = None;
    let created = w
        .conn
        .find_or_create_requester(&anonymous)
        .await
        .expect("anonymous");
    assert!(created.created);
    let contact = w
        .sim
        .contacts()
        .into_iter()
        .find(|c| c["Id"] == created.id)
        .expect("contact");
    assert_eq!(contact["LastName"], "telegram:77");

    // Older API versions answer an update with 204 and no id; the plugin reads it back.
    let old = w.connector(&[("api_version", "v45.0")]);
    let found = old
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("v45 upsert");
    assert_eq!(
        (found.id.as_str(), found.created),
        (first.id.as_str(), false)
    );
}

#[tokio::test]
async fn tickets_are_cases_upserted_once_per_idempotency_key() {
    let w = world(Config::default()).await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    let mut ticket = new_ticket("ticket:01JAAA", &requester.id, "My order is late");
    ticket.attachments = vec![Attachment {
        url: "tg-file:photo-1".into(),
        content_type: Some("image/jpeg".into()),
        name: Some("receipt.jpg".into()),
        size_bytes: Some(1234),
    }];
    let created = w.conn.create_ticket(&ticket).await.expect("create");
    assert!(created.created);
    assert!(created.id.starts_with("500"));
    assert_eq!(
        created.url.as_deref(),
        Some(format!("{}/lightning/r/Case/{}/view", w.base, created.id).as_str())
    );
    let case = w.case(&created.id);
    assert_eq!(case[EXT], "ticket:01JAAA");
    assert_eq!(case["ContactId"], requester.id);
    assert_eq!(case["Subject"], "Order late");
    assert_eq!(
        (
            case["Status"].clone(),
            case["Priority"].clone(),
            case["Origin"].clone()
        ),
        (json!("New"), json!("High"), json!("Web"))
    );
    let description = case["Description"].as_str().expect("description");
    assert!(
        description.starts_with("My order is late")
            && description.contains("receipt.jpg: tg-file:photo-1"),
        "{description}"
    );
    assert_eq!(case["CreatedById"], w.sim.integration_user_id());

    // A retry after a lost answer finds the same case.
    let retried = w.conn.create_ticket(&ticket).await.expect("retry");
    assert_eq!(
        (retried.id.as_str(), retried.created),
        (created.id.as_str(), false)
    );
    assert_eq!(w.sim.tickets().len(), 1);

    // A new ticket of the same conversation is a new case: the key, not the conversation, is
    // the external id.
    let second = w
        .conn
        .create_ticket(&new_ticket(
            "ticket:01JBBB",
            &requester.id,
            "Another question",
        ))
        .await
        .expect("second");
    assert!(second.created && second.id != created.id);
    assert_eq!(w.sim.tickets().len(), 2);

    // Channels map to Origin values; urgent falls back to High.
    let conn = w.connector(&[("origin_map", "telegram=Phone,*=Web")]);
    let mut urgent = new_ticket("ticket:01JCCC", &requester.id, "Urgent");
    urgent.priority = Some(TicketPriority::Urgent);
    urgent.status = Some(TicketStatus::Pending);
    let third = conn.create_ticket(&urgent).await.expect("third");
    let case = w.case(&third.id);
    assert_eq!(
        (
            case["Origin"].clone(),
            case["Priority"].clone(),
            case["Status"].clone()
        ),
        (json!("Phone"), json!("High"), json!("Escalated"))
    );
}

#[tokio::test]
async fn several_cases_with_one_external_id_are_a_clear_error() {
    let w = world(Config {
        external_id_fields: vec![
            ExternalIdField::new("Contact", EXT, true),
            ExternalIdField::new("Case", EXT, false),
        ],
        ..Config::default()
    })
    .await;
    let requester = w
        .conn
        .find_or_create_requester(&requester_request("5001", "Aiko Sato"))
        .await
        .expect("requester");
    for _ in 0..2 {
        let (status, body) = w
            .api(
                reqwest::Method::POST,
                &format!("{V}/sobjects/Case"),
                Some(json!({EXT: "ticket:dup", "Subject": "copy"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let error = connector_error(
        w.conn
            .create_ticket(&new_ticket("ticket:dup", &requester.id, "hi"))
            .await,
    );
    match error {
        ConnectorError::Fatal(message) => {
            assert!(
                message.contains(EXT)
                    && message.contains("ticket:dup")
                    && message.contains("/sobjects/Case/500"),
                "{message}"
            )
        }
        other => panic!("expected fatal, got {other:?}"),
    }
    assert!(
        w.sim.tickets().iter().all(|t| t["Subject"] == "copy"),
        "neither was touched"
    );
}

#[tokio::test]
async fn comments_updates_and_reads_reach_the_case() {
    let w = world(Config::default()).await;
    let (requester, case) = w.ticket("ticket:1").await;

    let reply = w
        .conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Requester(requester),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("customer comment");
    let note = w
        .conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Integration,
            "Customer is VIP",
            Visibility::Private,
        ))
        .await
        .expect("internal note");
    let stored = w.sim.comments(&case);
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (
            stored[0]["Id"].clone(),
            stored[0]["IsPublished"].clone(),
            stored[0]["CommentBody"].clone()
        ),
        (json!(reply.id), json!(true), json!("Any news?"))
    );
    assert_eq!(
        (stored[1]["Id"].clone(), stored[1]["IsPublished"].clone()),
        (json!(note.id), json!(false))
    );
    assert!(stored
        .iter()
        .all(|c| c["CreatedById"] == json!(w.sim.integration_user_id())));
    // Writes name the hub's client.
    let events = w.sim.change_events();
    assert!(events
        .iter()
        .filter(|e| e["ChangeEventHeader"]["entityName"] == "CaseComment")
        .all(|e| e["ChangeEventHeader"]["changeOrigin"]
            == "com/salesforce/api/rest/60.0;client=switchboard"));

    // A body over CaseComment's 4,000 bytes goes in as several comments.
    let long = "パッケージ ".repeat(800); // 12,800 bytes
    let first = w
        .conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Integration,
            &long,
            Visibility::Public,
        ))
        .await
        .expect("long comment");
    let stored = w.sim.comments(&case);
    assert_eq!(stored.len(), 6, "split in four");
    assert_eq!(stored[2]["Id"], first.id);
    let joined: Vec<&str> = stored[2..]
        .iter()
        .map(|c| c["CommentBody"].as_str().expect("body"))
        .collect();
    assert!(joined.iter().all(|b| b.len() <= 4000));
    assert_eq!(joined.join(" "), long.trim());

    let mut change = update(&case);
    change.status = Some(TicketStatus::Pending);
    change.priority = Some(TicketPriority::Low);
    change.add_tags = vec!["ignored".into()];
    let state = w.conn.update_ticket(&change).await.expect("update");
    assert_eq!(
        (state.status, state.priority),
        (TicketStatus::Pending, Some(TicketPriority::Low))
    );
    let stored = w.case(&case);
    assert_eq!(
        (stored["Status"].clone(), stored["Priority"].clone()),
        (json!("Escalated"), json!("Low"))
    );

    let read = w.conn.get_ticket(&case).await.expect("get");
    assert_eq!(read.id, case);
    assert_eq!(read.external_id.as_deref(), Some("ticket:1"));
    assert!(read.updated_at > 1_600_000_000_000, "{}", read.updated_at);
    // The 15-character form of the id works as well.
    assert_eq!(
        w.conn.get_ticket(&case[..15]).await.expect("get 15").id,
        case
    );

    // An empty update reads the case.
    let unchanged = w
        .conn
        .update_ticket(&update(&case))
        .await
        .expect("empty update");
    assert_eq!(
        (unchanged.status, unchanged.updated_at),
        (read.status, read.updated_at)
    );

    // Solved is Closed in Salesforce, which reads back as closed; an org's own values too.
    let mut solve = update(&case);
    solve.status = Some(TicketStatus::Solved);
    assert_eq!(
        w.conn.update_ticket(&solve).await.expect("solve").status,
        TicketStatus::Closed
    );
    assert_eq!(w.case(&case)["IsClosed"], true);
    let custom = w.connector(&[(
        "status_map",
        "New=new,Working=open,Escalated=on-hold,Closed=solved",
    )]);
    assert_eq!(
        custom.get_ticket(&case).await.expect("get").status,
        TicketStatus::Solved
    );

    assert!(matches!(
        connector_error(w.conn.get_ticket("5005g0000000zzzAAA").await),
        ConnectorError::NotFound(_)
    ));
    assert!(matches!(
        connector_error(
            w.conn
                .add_comment(&comment(
                    "5005g0000000zzzAAA",
                    CommentAuthor::Integration,
                    "x",
                    Visibility::Private
                ))
                .await
        ),
        ConnectorError::NotFound(_)
    ));
}

#[tokio::test]
async fn an_unconfirmed_retry_of_a_comment_that_was_added_answers_with_it() {
    let w = world(Config::default()).await;
    let (requester, case) = w.ticket("ticket:1").await;
    let started_at = now_ms();
    let message = comment(
        &case,
        CommentAuthor::Requester(requester),
        "Any news?",
        Visibility::Public,
    );
    // The first attempt went through, but the hub never learned it did.
    let first = w.conn.add_comment(&message).await.expect("first attempt");
    // An agent writing the same words, after it, is not the attempt's comment.
    w.sim.agent_reply(&case, "Any news?", true);

    let retry = w
        .conn
        .add_comment(&retried(message.clone(), started_at, &[]))
        .await
        .expect("retry");
    assert_eq!(retry.id, first.id);
    assert_eq!(bodies(&w, &case), ["Any news?", "Any news?"]);
    // Again, as if the service's clock ran half a minute behind the hub's.
    let retry = w
        .conn
        .add_comment(&retried(message, started_at + 30_000, &[]))
        .await
        .expect("second retry");
    assert_eq!(retry.id, first.id);
    assert_eq!(w.sim.comments(&case).len(), 2, "nothing added twice");
}

#[tokio::test]
async fn an_unconfirmed_retry_of_a_comment_that_was_not_added_adds_it() {
    let w = world(Config::default()).await;
    let (requester, case) = w.ticket("ticket:1").await;
    // What does not match: an agent's comment with the same text, the same text as an
    // internal note, and the same text from before the attempt (less a minute).
    w.sim.agent_reply(&case, "Any news?", true);
    w.conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Integration,
            "Any news?",
            Visibility::Private,
        ))
        .await
        .expect("note");
    let old = w
        .conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Requester(requester.clone()),
            "Any news?",
            Visibility::Public,
        ))
        .await
        .expect("earlier message");
    let later = now_ms() + 61_000;
    w.sim.advance_clock(Duration::from_secs(61));

    let message = comment(
        &case,
        CommentAuthor::Requester(requester),
        "Any news?",
        Visibility::Public,
    );
    let added = w
        .conn
        .add_comment(&retried(message, later, &[]))
        .await
        .expect("retry");
    let stored = w.sim.comments(&case);
    assert_eq!(stored.len(), 4, "{stored:#?}");
    assert_eq!(stored[3]["Id"], json!(added.id));
    assert_ne!(added.id, old.id);
    assert_eq!(
        (
            stored[3]["CommentBody"].clone(),
            stored[3]["IsPublished"].clone()
        ),
        (json!("Any news?"), json!(true))
    );
}

#[tokio::test]
async fn an_unconfirmed_retry_never_answers_with_a_comment_the_hub_knows() {
    let w = world(Config::default()).await;
    let (requester, case) = w.ticket("ticket:1").await;
    let started_at = now_ms();
    let message = comment(
        &case,
        CommentAuthor::Requester(requester),
        "ok",
        Visibility::Public,
    );
    // The customer said "ok" before; the hub maps that comment to that message.
    let known = w.conn.add_comment(&message).await.expect("first ok");
    let second = w
        .conn
        .add_comment(&retried(message, started_at, &[&known.id]))
        .await
        .expect("second ok");
    assert_ne!(second.id, known.id);
    assert_eq!(bodies(&w, &case), ["ok", "ok"]);
}

#[tokio::test]
async fn an_unconfirmed_long_comment_gets_only_its_missing_parts() {
    let w = world(Config::default()).await;
    let (_, case) = w.ticket("ticket:1").await;
    // Three CaseComments: each run of letters is one part (3,500 bytes, split at the spaces).
    let part = |c: &str| c.repeat(3500);
    let long = [part("a"), part("b"), part("c")].join(" ");
    let started_at = now_ms();
    // The first attempt saved the first part, then the hub crashed.
    let (status, saved) = w
        .api(
            reqwest::Method::POST,
            &format!("{V}/sobjects/CaseComment"),
            Some(json!({"ParentId": case, "CommentBody": part("a"), "IsPublished": true})),
        )
        .await;
    assert_eq!(status, 201, "{saved}");
    // An agent replied in between.
    w.sim.agent_reply(&case, &part("b"), true);

    let message = retried(
        comment(&case, CommentAuthor::Integration, &long, Visibility::Public),
        started_at,
        &[],
    );
    let retry = w.conn.add_comment(&message).await.expect("retry");
    assert_eq!(json!(retry.id), saved["id"], "the first part's id");
    assert_eq!(
        bodies(&w, &case),
        [part("a"), part("b"), part("b"), part("c")]
    );
    let stored = w.sim.comments(&case);
    assert_eq!(stored[1]["CreatedById"], json!(w.sim.human_agent_id()));
    assert!(stored[2..]
        .iter()
        .all(|c| c["CreatedById"] == json!(w.sim.integration_user_id())));

    // Everything is there now: another retry adds nothing.
    let again = w.conn.add_comment(&message).await.expect("retry again");
    assert_eq!(again.id, retry.id);
    assert_eq!(w.sim.comments(&case).len(), 4);
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let w = world(Config::default()).await;
    let (requester, case) = w.ticket("ticket:1").await;
    let cases = w.sim.tickets().len();

    // Caught by the plugin before anything is sent.
    for (error, field) in [
        (
            connector_error(w.conn.create_ticket(&new_ticket("k2", "5001", "hi")).await),
            "requester-id",
        ),
        (connector_error(w.conn.get_ticket("abc").await), "ticket-id"),
        (
            connector_error(w.conn.get_ticket(&requester).await),
            "ticket-id",
        ),
        (
            connector_error(w.conn.poll_changes("tickets", None).await),
            "stream",
        ),
        (
            connector_error(
                w.connector(&[("status_map", "Closed")])
                    .get_ticket(&case)
                    .await,
            ),
            "status_map",
        ),
        (
            connector_error(
                w.connector(&[("case_external_id_field", "Bad Field")])
                    .get_ticket(&case)
                    .await,
            ),
            "case_external_id_field",
        ),
    ] {
        assert!(
            matches!(&error, ConnectorError::InvalidInput(f) if f.field == field),
            "{field}: {error:?}"
        );
    }

    // Refused by Salesforce: the error array names the field.
    let telegram_origin = w.connector(&[("origin_map", "telegram=Telegram")]);
    let error = connector_error(
        telegram_origin
            .create_ticket(&new_ticket("k3", &requester, "hi"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "Origin" && f.message.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")),
        "{error:?}"
    );
    let missing_field = w.connector(&[("contact_external_id_field", "Social_Id__c")]);
    let error = connector_error(
        missing_field
            .find_or_create_requester(&requester_request("9", "Ken"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "contact_external_id_field"),
        "{error:?}"
    );
    let gone_contact = "0035g0000000zzzAAA";
    let error = connector_error(
        w.conn
            .create_ticket(&new_ticket("k4", gone_contact, "hi"))
            .await,
    );
    assert!(
        matches!(&error, ConnectorError::NotFound(m) if m.contains("INVALID_CROSS_REFERENCE_KEY")),
        "{error:?}"
    );
    assert_eq!(w.sim.tickets().len(), cases, "nothing invalid was created");
}

#[tokio::test]
async fn polling_reads_comments_and_statuses_batch_by_batch() {
    // Batches of two, so every query spans several nextRecordsUrl pages.
    let w = world(Config {
        min_batch_size: 1,
        max_batch_size: 2,
        ..Config::default()
    })
    .await;
    let (requester, case) = w.ticket("ticket:1").await;
    let mine = w
        .conn
        .add_comment(&comment(
            &case,
            CommentAuthor::Requester(requester.clone()),
            "Where is my parcel?",
            Visibility::Public,
        ))
        .await
        .expect("customer comment")
        .id;
    let mut agent = Vec::new();
    for n in 0..3 {
        agent.push(w.sim.agent_reply(&case, &format!("Reply {n}"), true));
    }
    let note = w
        .sim
        .agent_reply(&case, "internal: warehouse says Tuesday", false);
    // A case outside the hub (no external id) and its comment stay out.
    let (status, foreign) = w
        .api(
            reqwest::Method::POST,
            &format!("{V}/sobjects/Case"),
            Some(json!({"Subject": "Billing"})),
        )
        .await;
    assert_eq!(status, 201);
    w.sim
        .agent_reply(foreign["id"].as_str().expect("id"), "not for the hub", true);

    let (changes, cursor, polls) = w.poll_all(&w.conn, None).await;
    assert!(polls >= 3, "batches of two: {polls} polls");
    assert!(changes.iter().all(|c| c.ticket_id == case), "{changes:#?}");
    let comments = comment_changes(&changes);
    let ids: Vec<&str> = comments.iter().map(|(_, id, _, _)| *id).collect();
    let mut expected = vec![mine.as_str()];
    expected.extend(agent.iter().map(String::as_str));
    expected.push(note.as_str());
    assert_eq!(ids, expected, "every comment once, in order");
    let (echo, _, body, visibility) = comments[0];
    assert!(echo.is_echo, "the hub filed it: {echo:?}");
    assert_eq!(
        (body, visibility),
        ("Where is my parcel?", Visibility::Public)
    );
    for (change, _, body, visibility) in &comments[1..] {
        assert!(!change.is_echo);
        let author = change.author.as_ref().expect("author");
        assert_eq!(
            (author.id.as_str(), author.name.as_deref(), author.is_agent),
            (w.sim.human_agent_id().as_str(), Some("Hana Agent"), true)
        );
        assert_eq!(change.external_id.as_deref(), Some("ticket:1"));
        assert_eq!(
            change.change_id,
            format!(
                "comment:{}",
                comments.iter().find(|c| c.2 == *body).expect("c").1
            )
        );
        let expected = if body.starts_with("internal") {
            Visibility::Private
        } else {
            Visibility::Public
        };
        assert_eq!(*visibility, expected);
    }
    // The case as the hub left it: its own write, an echo.
    assert_eq!(
        statuses_of(&changes),
        vec![(case.as_str(), TicketStatus::New, true)]
    );

    // Nothing new: the records of the last second are read again but skipped.
    let (idle, cursor, _) = w.poll_all(&w.conn, cursor).await;
    assert!(idle.is_empty(), "{idle:#?}");

    // The agent solves the case and answers: both come from the saved cursor, once.
    w.sim.set_status(&case, "solved");
    let late = w.sim.agent_reply(&case, "Delivered!", true);
    let (changes, cursor, _) = w.poll_all(&w.conn, cursor).await;
    assert_eq!(
        comment_changes(&changes)
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        vec![late.as_str()]
    );
    assert_eq!(
        statuses_of(&changes),
        vec![(case.as_str(), TicketStatus::Closed, false)]
    );
    let status = changes
        .iter()
        .find(|c| matches!(c.kind, ChangeKind::Status(_)))
        .expect("status");
    assert!(status
        .change_id
        .starts_with(&format!("status:{case}:Closed:")));
    assert_eq!(
        status.author.as_ref().map(|a| a.id.clone()),
        Some(w.sim.human_agent_id())
    );
    let (again, _, _) = w.poll_all(&w.conn, cursor).await;
    assert!(again.is_empty(), "{again:#?}");

    // Naming the integration user makes that user's writes the echoes instead.
    let conn = w.connector(&[("integration_user_id", &w.sim.human_agent_id())]);
    let (changes, _, _) = w.poll_all(&conn, None).await;
    let comments = comment_changes(&changes);
    assert!(comments.iter().filter(|c| c.1 != mine).all(|c| c.0.is_echo));
    assert!(comments.iter().any(|c| c.1 == mine && !c.0.is_echo));
}

#[tokio::test]
async fn many_writes_in_one_second_are_read_once() {
    let w = world(Config {
        min_batch_size: 1,
        max_batch_size: 2,
        ..Config::default()
    })
    .await;
    let (_, case) = w.ticket("ticket:1").await;
    let (_, cursor, _) = w.poll_all(&w.conn, None).await;
    // Every following write gets the same SystemModstamp.
    w.sim.freeze_clock();
    let ids: Vec<String> = (0..5)
        .map(|n| w.sim.agent_reply(&case, &format!("tick {n}"), true))
        .collect();
    let (first, cursor, _) = w.poll_all(&w.conn, cursor).await;
    let read: Vec<&str> = comment_changes(&first).iter().map(|c| c.1).collect();
    assert_eq!(read, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // The next query starts at the same second again, and skips what it has read.
    let (again, cursor, _) = w.poll_all(&w.conn, cursor).await;
    assert!(again.is_empty(), "{again:#?}");
    let more = w.sim.agent_reply(&case, "tick 5", true);
    let (later, _, _) = w.poll_all(&w.conn, cursor).await;
    assert_eq!(
        comment_changes(&later)
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        vec![more.as_str()]
    );
}

#[tokio::test]
async fn an_expired_query_locator_restarts_the_query() {
    let w = world(Config {
        min_batch_size: 1,
        max_batch_size: 2,
        ..Config::default()
    })
    .await;
    let (_, case) = w.ticket("ticket:1").await;
    let ids: Vec<String> = (0..5)
        .map(|n| w.sim.agent_reply(&case, &format!("Reply {n}"), true))
        .collect();
    let page = w
        .conn
        .poll_changes(STREAM, None)
        .await
        .expect("first batch");
    assert!(page.has_more);
    let mut read: Vec<String> = comment_changes(&page.changes)
        .iter()
        .map(|c| c.1.to_string())
        .collect();
    // Idle for longer than a locator lives.
    w.sim.advance_clock(Duration::from_secs(16 * 60));
    let (rest, _, _) = w.poll_all(&w.conn, page.next_cursor).await;
    read.extend(comment_changes(&rest).iter().map(|c| c.1.to_string()));
    assert_eq!(read, ids, "all of them, none twice");
}

#[tokio::test]
async fn expired_sessions_are_refreshed_by_the_host_once() {
    let w = world(Config::default()).await;
    let (_, case) = w.ticket("ticket:1").await;

    // The token dies; the host's source has a fresh one and the call goes through.
    let fresh = w.sim.issue_access_token();
    let source = Arc::new(StaticToken::new(&w.token).then(&[&fresh]));
    let conn = w
        .runtime
        .helpdesk(&w.plugin, &installation(&w.base, source.clone(), &[]))
        .expect("bind");
    assert!(w.sim.revoke_token(&w.token));
    let state = conn
        .get_ticket(&case)
        .await
        .expect("retried with the refreshed token");
    assert_eq!(state.id, case);
    assert_eq!(source.refreshes(), 1);

    // When the refreshed token is refused too, the plugin reports unauthorized, token-free.
    w.sim.revoke_access_tokens();
    for error in [
        connector_error(conn.get_ticket(&case).await),
        connector_error(conn.poll_changes(STREAM, None).await),
        connector_error(
            conn.find_or_create_requester(&requester_request("6001", "Ken"))
                .await,
        ),
    ] {
        match error {
            ConnectorError::Unauthorized(message) => {
                assert!(message.contains("INVALID_SESSION_ID"), "{message}");
                assert!(
                    !message.contains(&w.token) && !message.contains(&fresh),
                    "{message}"
                );
            }
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    // Also when the session expires on its own.
    let w = world(Config {
        access_token_lifetime: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    let (_, case) = w.ticket("ticket:1").await;
    w.sim.advance_clock(Duration::from_secs(61));
    assert!(matches!(
        connector_error(w.conn.get_ticket(&case).await),
        ConnectorError::Unauthorized(_)
    ));
}

#[tokio::test]
async fn the_daily_limit_is_rate_limited_with_a_policy_delay() {
    let w = world(Config::default()).await;
    let (_, case) = w.ticket("ticket:1").await;

    w.sim
        .faults()
        .set_budget(Some(1), Duration::from_secs(24 * 60 * 60));
    w.conn
        .get_ticket(&case)
        .await
        .expect("within the allocation");
    let error = connector_error(w.conn.get_ticket(&case).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 60_000 && r.message.contains("REQUEST_LIMIT_EXCEEDED")),
        "{error:?}"
    );
    let error = connector_error(
        w.conn
            .add_comment(&comment(
                &case,
                CommentAuthor::Integration,
                "x",
                Visibility::Private,
            ))
            .await,
    );
    assert!(matches!(error, ConnectorError::RateLimited(_)), "{error:?}");
    assert!(
        w.sim.comments(&case).is_empty(),
        "a refused write wrote nothing"
    );

    w.sim.faults().clear();
    w.sim.faults().inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 5,
        },
        count: 1,
        path: Some("/query".into()),
    });
    let error = connector_error(w.conn.poll_changes(STREAM, None).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 60_000),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_polls_resume() {
    let w = world(Config::default()).await;
    let (_, case) = w.ticket("ticket:1").await;
    let reply = w.sim.agent_reply(&case, "On it", true);
    let faults = w.sim.faults();
    for status in [500, 503] {
        faults.inject(FaultSpec {
            fault: Fault::Status { status },
            count: 1,
            path: None,
        });
        let error = connector_error(w.conn.get_ticket(&case).await);
        assert!(
            matches!(error, ConnectorError::Transient(_)),
            "{status}: {error:?}"
        );
    }
    // The second query of a poll fails: the whole poll fails, and the same poll succeeds later.
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 503 },
        count: 1,
        path: Some("/query".into()),
    });
    assert!(matches!(
        connector_error(w.conn.poll_changes(STREAM, None).await),
        ConnectorError::Transient(_)
    ));
    let (changes, _, _) = w.poll_all(&w.conn, None).await;
    assert_eq!(
        comment_changes(&changes)
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        vec![reply.as_str()]
    );
}

#[tokio::test]
async fn webhooks_are_not_accepted() {
    let w = world(Config::default()).await;
    let outcome = w
        .conn
        .handle_webhook(WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: vec![("content-type".into(), "text/xml".into())],
            body: b"<soapenv:Envelope/>".to_vec(),
        })
        .await
        .expect("an answer");
    assert_eq!(outcome.response.status, 404);
    assert!(outcome.changes.is_empty());
}

#[tokio::test]
async fn the_host_adds_the_bearer_token_only_for_the_instance() {
    // A stand-in for Salesforce that records exactly what arrives.
    let fake = switchboard_testkit::recorder::Recorder::start(
        200,
        json!({"attributes": {"type": "Case"}, "Id": "5005g0000000001AAA", "Status": "Working",
               "IsClosed": false, "Priority": "Medium", "SystemModstamp": "2024-05-01T09:14:57.000+0000",
               EXT: "ticket:1"}),
    )
    .await;
    let w = world(Config::default()).await;
    let token = "00D5g000004SIMx!AQsecret-token-7f3a";
    let installation = installation(&fake.url, Arc::new(StaticToken::new(token)), &[]);
    let conn = w.runtime.helpdesk(&w.plugin, &installation).expect("bind");

    let state = conn.get_ticket("5005g0000000001AAA").await.expect("get");
    assert_eq!(
        (state.status, state.priority),
        (TicketStatus::Open, Some(TicketPriority::Normal))
    );
    assert_eq!(state.updated_at, 1_714_554_897_000);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        (
            "GET",
            "/services/data/v60.0/sobjects/Case/5005g0000000001AAA"
        )
    );
    assert!(
        request.query.starts_with("fields=Id,Status"),
        "{}",
        request.query
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        request.header("sforce-call-options"),
        Some("client=switchboard")
    );
    assert!(!request.query.contains(token) && !request.path.contains(token));

    // Nothing is sent to an origin nobody approved.
    let mut unapproved = installation.clone();
    unapproved.approved_hosts.clear();
    let conn = w.runtime.helpdesk(&w.plugin, &unapproved).expect("bind");
    let error = connector_error(conn.get_ticket("5005g0000000001AAA").await);
    assert!(!format!("{error:?}").contains(token), "{error:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "the denied request never left the host"
    );
}
