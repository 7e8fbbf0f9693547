//! The Telegram plugin, loaded in the real runtime, against the Telegram Bot API simulator:
//! polling with cursor confirmation and pagination, sending threaded replies, the errors the
//! hub acts on, webhook secret checks, and the bot token kept out of the plugin's URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::runtime::latest::{
    Attachment, ConnectorError, MessageKind, OutboundMessage, SocialEvent, Visibility,
};
use switchboard::runtime::{CallError, Installation, Plugin, Runtime, SocialConnector};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::telegram::{Config, Customer, CustomerMessage, Simulator};
use switchboard_testkit as kit;

const PLUGIN: &str = "plugins/telegram";
const STREAM: &str = "updates";
const TOKEN: &str = "123456789:AAHsimulatedTelegramBotToken-0123456";
const FIRST_UPDATE: i64 = 500_000;
/// A fixed message date (Unix seconds), so timestamps can be checked exactly.
const DATE: i64 = 1_717_000_000;

/// One test's world: a simulated bot, a runtime of its own with the plugin loaded, and an
/// installation whose `api_base` is the simulator (without any token in it).
struct World {
    sim: Simulator,
    base: String,
    runtime: Runtime,
    plugin: Plugin,
    conn: SocialConnector,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let sim = Simulator::new(Config {
        first_update_id: Some(FIRST_UPDATE),
        ..Config::for_token(TOKEN)
    });
    let (addr, _) = sim
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve simulator");
    let base = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, plugin) = kit::runtime_with_plugin(dir.path(), PLUGIN).await;
    let conn = runtime
        .social(&plugin, &installation(&base, &[]))
        .expect("bind");
    World {
        sim,
        base,
        runtime,
        plugin,
        conn,
        _dir: dir,
    }
}

fn installation(api_base: &str, extra: &[(&str, &str)]) -> Installation {
    let mut settings: BTreeMap<String, String> = [("bot_token", TOKEN), ("api_base", api_base)]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    for (key, value) in extra {
        settings.insert(key.to_string(), value.to_string());
    }
    Installation {
        id: "telegram-test".into(),
        settings,
        approved_hosts: vec!["{api_base}".into()],
        limits: None,
        ..Default::default()
    }
}

impl World {
    fn connector(&self, extra: &[(&str, &str)]) -> SocialConnector {
        self.runtime
            .social(&self.plugin, &installation(&self.base, extra))
            .expect("bind")
    }

    /// Calls a Bot API method directly, as the bot's admin would (setWebhook, ...).
    async fn bot_api(&self, method: &str, params: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/bot{TOKEN}/{method}", self.base))
            .json(&params)
            .send()
            .await
            .expect("Bot API call");
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(answer["ok"], true, "{method}: {answer}");
        answer
    }

    /// `text` from the customer `chat_id` at [`DATE`]; returns its message id.
    fn customer_says(&self, chat_id: i64, text: &str) -> i64 {
        self.sim
            .inject_customer_message(CustomerMessage {
                date: Some(DATE),
                ..aiko(chat_id, text)
            })
            .message_id
    }
}

fn aiko(chat_id: i64, text: &str) -> CustomerMessage {
    CustomerMessage {
        from: Customer {
            id: chat_id,
            first_name: "Aiko".into(),
            last_name: Some("Sato".into()),
            username: Some("aiko".into()),
            language_code: Some("ja".into()),
        },
        ..CustomerMessage::new(chat_id, "Aiko", text)
    }
}

fn outbound(thread_id: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        idempotency_key: format!("reply:{thread_id}:{text}"),
        thread_id: thread_id.into(),
        reply_to: None,
        kind: MessageKind::DirectMessage,
        recipient: None,
        text: text.into(),
        attachments: vec![],
        last_inbound_at: None,
        reply_handle: None,
        visibility: switchboard::runtime::latest::Visibility::Private,
        part: switchboard::runtime::latest::MessagePart { index: 1, count: 1 },
    }
}

/// The connector error of a failed call; anything else fails the test.
fn connector_error<T: std::fmt::Debug>(result: Result<T, CallError>) -> ConnectorError {
    match result {
        Err(CallError::Connector(error)) => error,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

fn ids(events: &[SocialEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message_id.as_str()).collect()
}

#[tokio::test]
async fn polled_messages_become_events_and_the_cursor_confirms_them() {
    let w = world().await;
    let manifest = w.plugin.manifest();
    assert_eq!(manifest.id, "telegram");
    assert!(manifest.streams.iter().any(|s| s.name == STREAM));

    let first = w.customer_says(5001, "My order is late");
    let reply = w.sim.inject_customer_message(CustomerMessage {
        reply_to_message_id: Some(first),
        date: Some(DATE + 5),
        ..aiko(5001, "Order 42")
    });
    w.sim
        .edit_customer_message(5001, first, "My order #42 is late")
        .expect("edit");
    // The customer blocks the bot: an update with no message in it.
    w.sim.block(5001).expect("block");
    // A Telegram Business chat: the customer, then the business owner answering in person.
    w.sim.inject_customer_message(CustomerMessage {
        business_connection_id: Some("bc-1".into()),
        date: Some(DATE),
        ..aiko(6001, "Do you ship abroad?")
    });
    w.sim.inject_customer_message(CustomerMessage {
        from: Customer::new(9_999, "Shop owner"),
        business_connection_id: Some("bc-1".into()),
        date: Some(DATE + 60),
        ..CustomerMessage::new(6001, "Shop owner", "Yes we do")
    });
    assert_eq!(w.sim.pending_updates().len(), 6);

    let page = w.conn.poll(STREAM, None).await.expect("poll");
    assert!(!page.has_more);
    let events = &page.events;
    assert_eq!(
        events.len(),
        5,
        "the block update carries no message: {events:#?}"
    );

    let message = &events[0];
    assert_eq!(message.message_id, format!("5001:{first}"));
    assert_eq!(message.thread_id, "5001");
    assert_eq!(message.parent_id, None);
    assert_eq!(
        (message.kind, message.visibility),
        (MessageKind::DirectMessage, Visibility::Private)
    );
    assert_eq!(message.author.external_id, "5001");
    assert_eq!(message.author.network, "telegram");
    assert_eq!(message.author.handle.as_deref(), Some("aiko"));
    assert_eq!(message.author.display_name.as_deref(), Some("Aiko Sato"));
    assert!(!message.is_echo);
    assert_eq!(message.created_at, DATE as u64 * 1000);
    assert_eq!(message.text, "My order is late");
    assert_eq!(message.reply_handle, None);

    let threaded = &events[1];
    assert_eq!(threaded.message_id, format!("5001:{}", reply.message_id));
    assert_eq!(
        threaded.parent_id.as_deref(),
        Some(format!("5001:{first}").as_str())
    );

    let edit = &events[2];
    assert!(
        edit.message_id.starts_with(&format!("5001:{first}:edit:")),
        "{}",
        edit.message_id
    );
    assert_eq!(edit.text, "[edited] My order #42 is late");

    let business = &events[3];
    assert_eq!(business.reply_handle.as_deref(), Some("business:bc-1"));
    assert!(!business.is_echo);
    let owner = &events[4];
    assert!(
        owner.is_echo,
        "the business owner writing is the brand itself"
    );
    assert_eq!(owner.thread_id, "6001");

    // Nothing is confirmed until the next poll sends the cursor: a crash before the hub stored
    // the events gets them again.
    let cursor = page.next_cursor.expect("cursor");
    assert_eq!(
        cursor,
        (FIRST_UPDATE + 6).to_string(),
        "past the last update, the block included"
    );
    assert_eq!(w.sim.pending_updates().len(), 6);
    let again = w.conn.poll(STREAM, None).await.expect("poll again");
    assert_eq!(ids(&again.events), ids(events));

    let next = w
        .conn
        .poll(STREAM, Some(&cursor))
        .await
        .expect("poll from the cursor");
    assert!(next.events.is_empty() && !next.has_more);
    assert_eq!(next.next_cursor, None, "no updates: keep the saved cursor");
    assert!(
        w.sim.pending_updates().is_empty(),
        "the cursor confirmed everything"
    );
}

#[tokio::test]
async fn polling_pages_through_more_updates_than_one_call_returns() {
    let w = world().await;
    let mut expected = Vec::new();
    for n in 0..150 {
        let chat = 7000 + n % 3;
        let id = w.customer_says(chat, &format!("message {n}"));
        expected.push(format!("{chat}:{id}"));
    }

    let page1 = w.conn.poll(STREAM, None).await.expect("page 1");
    assert_eq!(
        page1.events.len(),
        100,
        "Telegram returns at most 100 updates per call"
    );
    assert!(page1.has_more);
    assert_eq!(
        ids(&page1.events),
        expected[..100]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let cursor1 = page1.next_cursor.expect("cursor");

    let page2 = w.conn.poll(STREAM, Some(&cursor1)).await.expect("page 2");
    assert!(!page2.has_more);
    assert_eq!(
        ids(&page2.events),
        expected[100..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        w.sim.pending_updates().len(),
        50,
        "the first page is confirmed, the second not yet"
    );
    // Polling from the same cursor again (the hub lost page 2) gets page 2 again.
    let replay = w.conn.poll(STREAM, Some(&cursor1)).await.expect("replay");
    assert_eq!(ids(&replay.events), ids(&page2.events));

    let cursor2 = page2.next_cursor.expect("cursor");
    let page3 = w.conn.poll(STREAM, Some(&cursor2)).await.expect("page 3");
    assert!(page3.events.is_empty() && !page3.has_more);
    assert!(w.sim.pending_updates().is_empty());

    // New messages continue from the saved cursor.
    let late = w.customer_says(7000, "one more thing");
    let page4 = w.conn.poll(STREAM, Some(&cursor2)).await.expect("page 4");
    assert_eq!(ids(&page4.events), vec![format!("7000:{late}").as_str()]);
}

#[tokio::test]
async fn replies_are_sent_threaded_to_the_right_chat() {
    let w = world().await;
    let question = w.customer_says(5001, "Where is my order?");
    let event = w
        .conn
        .poll(STREAM, None)
        .await
        .expect("poll")
        .events
        .remove(0);

    let mut reply = outbound(&event.thread_id, "It ships today 📦");
    reply.reply_to = Some(event.message_id.clone());
    let sent = w.conn.send(&reply).await.expect("send");
    let on_telegram = w.sim.sent_messages(Some(5001));
    assert_eq!(on_telegram.len(), 1);
    let message = &on_telegram[0];
    assert_eq!(message.text, "It ships today 📦");
    assert_eq!(
        message.reply_to_message_id,
        Some(question),
        "threaded under the customer's message"
    );
    assert_eq!(message.business_connection_id, None);
    assert_eq!(
        sent.message_ids,
        vec![format!("5001:{}", message.message_id)],
        "the id its echo would have"
    );

    // Without a message to answer, and answering one that no longer exists: still delivered.
    w.conn
        .send(&outbound("5001", "Anything else?"))
        .await
        .expect("plain send");
    let mut gone = outbound("5001", "About your earlier message");
    gone.reply_to = Some("5001:9999".into());
    w.conn
        .send(&gone)
        .await
        .expect("send without the replied message");
    let on_telegram = w.sim.sent_messages(Some(5001));
    assert_eq!(on_telegram.len(), 3);
    assert!(on_telegram[1..]
        .iter()
        .all(|m| m.reply_to_message_id.is_none()));

    // The longest text Telegram takes, counted in UTF-16 units (an emoji is two).
    let longest = "😀".repeat(2048);
    w.conn
        .send(&outbound("5001", &longest))
        .await
        .expect("4096 units");
    assert_eq!(w.sim.sent_messages(Some(5001))[3].text, longest);

    // Business chats are answered through the connection the message came in on.
    w.sim.inject_customer_message(CustomerMessage {
        business_connection_id: Some("bc-7".into()),
        ..aiko(6001, "Hi shop")
    });
    let business = w
        .conn
        .poll(STREAM, None)
        .await
        .expect("poll")
        .events
        .pop()
        .expect("business message");
    let mut answer = outbound(&business.thread_id, "Hello from the shop");
    answer.reply_to = Some(business.message_id.clone());
    answer.reply_handle = business.reply_handle.clone();
    w.conn.send(&answer).await.expect("business reply");
    let sent = w.sim.sent_messages(Some(6001));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].business_connection_id.as_deref(), Some("bc-7"));

    // Attachments cannot be forwarded: the text goes, and the plugin says so in its log.
    let conn = w.connector(&[]).capture_logs();
    let mut with_file = outbound("5001", "See attached");
    with_file.attachments = vec![Attachment {
        url: "https://files.example/a.pdf".into(),
        content_type: None,
        name: None,
        size_bytes: None,
    }];
    conn.send(&with_file).await.expect("send with attachment");
    assert_eq!(
        w.sim
            .sent_messages(Some(5001))
            .last()
            .map(|m| m.text.as_str()),
        Some("See attached")
    );
    assert!(conn
        .take_logs()
        .iter()
        .any(|l| l.level == "warn" && l.message.contains("attachments")));
}

#[tokio::test]
async fn invalid_messages_are_refused_with_the_field_at_fault() {
    let w = world().await;
    w.customer_says(5001, "hello");

    let too_long = "a".repeat(4097);
    let cases = [
        (outbound("5001", &too_long), "text"),
        (outbound("5001", &"😀".repeat(2049)), "text"),
        (outbound("5001", "   "), "text"),
        (outbound("general", "hi"), "thread-id"),
        (
            OutboundMessage {
                reply_to: Some("42".into()),
                ..outbound("5001", "hi")
            },
            "reply-to",
        ),
    ];
    for (message, field) in cases {
        let error = connector_error(w.conn.send(&message).await);
        assert!(
            matches!(&error, ConnectorError::InvalidInput(f) if f.field == field),
            "{field}: {error:?}"
        );
    }
    assert!(
        w.sim.sent_messages(None).is_empty(),
        "nothing invalid reached Telegram"
    );

    // Refused by Telegram itself.
    let error = connector_error(w.conn.send(&outbound("8888", "hi")).await);
    assert!(
        matches!(error, ConnectorError::NotFound(_)),
        "a chat the bot never talked to: {error:?}"
    );
    w.sim.block(5001).expect("block");
    let error = connector_error(w.conn.send(&outbound("5001", "hi")).await);
    assert!(
        matches!(&error, ConnectorError::Policy(p) if p.code == "recipient-blocked"),
        "{error:?}"
    );
    assert!(w.sim.sent_messages(None).is_empty());

    let error = connector_error(w.conn.poll("messages", None).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "stream"),
        "{error:?}"
    );
    let error = connector_error(w.conn.poll(STREAM, Some("yesterday")).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "cursor"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_bot_token_is_unauthorized() {
    let w = world().await;
    w.customer_says(5001, "hello");
    let wrong = "123456789:AAHwrongTokenForThisBot-9876543";
    let conn = w.connector(&[("bot_token", wrong)]);

    for error in [
        connector_error(conn.poll(STREAM, None).await),
        connector_error(conn.send(&outbound("5001", "hi")).await),
    ] {
        match error {
            ConnectorError::Unauthorized(message) => {
                assert!(
                    message.contains("bot_token"),
                    "tells the admin what to fix: {message}"
                );
                assert!(
                    !message.contains(wrong) && !message.contains("AAH"),
                    "{message}"
                );
            }
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }
    assert!(w.sim.sent_messages(None).is_empty());
    assert_eq!(w.sim.pending_updates().len(), 1, "nothing was confirmed");
}

#[tokio::test]
async fn flood_control_carries_the_retry_after_delay() {
    let w = world().await;
    w.customer_says(5001, "hello");
    let faults = w.sim.faults();

    faults.inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 3,
        },
        count: 1,
        path: Some("sendMessage".into()),
    });
    let error = connector_error(w.conn.send(&outbound("5001", "first")).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 3_000),
        "{error:?}"
    );
    assert!(w.sim.sent_messages(None).is_empty());
    w.conn
        .send(&outbound("5001", "first"))
        .await
        .expect("the retry goes through");

    faults.inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 11,
        },
        count: 1,
        path: Some("getUpdates".into()),
    });
    let error = connector_error(w.conn.poll(STREAM, None).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if r.retry_after_ms == 11_000),
        "{error:?}"
    );

    // Telegram's own per-chat limit, as the simulator models it.
    w.sim.set_per_chat_interval(Some(Duration::from_secs(5)));
    let error = connector_error(w.conn.send(&outbound("5001", "second")).await);
    assert!(
        matches!(&error, ConnectorError::RateLimited(r) if (1_000..=5_000).contains(&r.retry_after_ms)),
        "{error:?}"
    );
    assert_eq!(w.sim.sent_messages(None).len(), 1);
}

#[tokio::test]
async fn server_errors_are_transient() {
    let w = world().await;
    w.customer_says(5001, "hello");
    let faults = w.sim.faults();

    // 409 without a webhook: another getUpdates call of the same bot is running.
    for status in [500, 502, 409] {
        faults.inject(FaultSpec {
            fault: Fault::Status { status },
            count: 1,
            path: Some("getUpdates".into()),
        });
        let error = connector_error(w.conn.poll(STREAM, None).await);
        assert!(
            matches!(error, ConnectorError::Transient(_)),
            "{status}: {error:?}"
        );
    }
    faults.inject(FaultSpec {
        fault: Fault::Status { status: 503 },
        count: 1,
        path: Some("sendMessage".into()),
    });
    let error = connector_error(w.conn.send(&outbound("5001", "hi")).await);
    assert!(matches!(error, ConnectorError::Transient(_)), "{error:?}");
    assert!(w.sim.sent_messages(None).is_empty());

    // Once the service is back, nothing was lost.
    assert_eq!(
        w.conn.poll(STREAM, None).await.expect("poll").events.len(),
        1
    );
    w.conn.send(&outbound("5001", "hi")).await.expect("send");
}

#[tokio::test]
async fn webhook_deliveries_need_the_secret_token() {
    let w = world().await;
    let receiver = switchboard_testkit::recorder::Recorder::start(200, json!({})).await;
    let secret = "s3cret-Token_1";
    w.bot_api(
        "setWebhook",
        json!({"url": format!("{}/webhooks/telegram-test", receiver.url), "secret_token": secret}),
    )
    .await;
    let conn = w.connector(&[("webhook_secret", secret)]);

    // While the webhook is set, Telegram refuses getUpdates: the admin is told what to change.
    let error = connector_error(conn.poll(STREAM, None).await);
    assert!(
        matches!(&error, ConnectorError::Policy(p) if p.code == "webhook-active"),
        "{error:?}"
    );

    let first = w.customer_says(5001, "Hello via webhook");
    let delivery = receiver.wait_for(1).await.remove(0);
    assert_eq!(
        delivery.header("x-telegram-bot-api-secret-token"),
        Some(secret)
    );
    let outcome = conn
        .handle_webhook(delivery.webhook_request())
        .await
        .expect("genuine delivery");
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.events.len(), 1);
    let event = &outcome.events[0];
    assert_eq!(
        event.message_id,
        format!("5001:{first}"),
        "the same id polling gives"
    );
    assert_eq!(
        (event.text.as_str(), event.is_echo),
        ("Hello via webhook", false)
    );
    assert_eq!(event.created_at, DATE as u64 * 1000);

    let mut wrong = delivery.webhook_request();
    for (name, value) in &mut wrong.headers {
        if name == "x-telegram-bot-api-secret-token" {
            *value = "s3cret-Token_2".into();
        }
    }
    let mut missing = delivery.webhook_request();
    missing
        .headers
        .retain(|(name, _)| name != "x-telegram-bot-api-secret-token");
    for (what, request) in [("wrong secret", wrong), ("no secret", missing)] {
        let error = connector_error(conn.handle_webhook(request).await);
        assert!(
            matches!(error, ConnectorError::Unauthorized(_)),
            "{what}: {error:?}"
        );
    }
    let error = connector_error(w.conn.handle_webhook(delivery.webhook_request()).await);
    assert!(
        matches!(&error, ConnectorError::Unauthorized(m) if m.contains("webhook_secret")),
        "no secret configured: {error:?}"
    );

    // The bot's own message, were Telegram to deliver it, is an echo; garbage is invalid.
    let mut own = delivery.webhook_request();
    own.body = json!({"update_id": 1, "message": {"message_id": 77, "date": DATE,
        "chat": {"id": 5001, "type": "private", "first_name": "Aiko"},
        "from": {"id": 123_456_789, "is_bot": true, "first_name": "Switchboard Simulator"}, "text": "Hi"}})
    .to_string()
    .into_bytes();
    let outcome = conn.handle_webhook(own).await.expect("own message");
    assert!(outcome.events[0].is_echo);
    let mut garbage = delivery.webhook_request();
    garbage.body = b"<html>".to_vec();
    let error = connector_error(conn.handle_webhook(garbage).await);
    assert!(
        matches!(&error, ConnectorError::InvalidInput(f) if f.field == "body"),
        "{error:?}"
    );

    // Back to polling once the webhook is gone.
    w.bot_api("deleteWebhook", json!({})).await;
    w.customer_says(5001, "And via polling");
    let page = conn.poll(STREAM, None).await.expect("poll");
    assert_eq!(
        page.events.last().map(|e| e.text.as_str()),
        Some("And via polling")
    );
}

#[tokio::test]
async fn the_bot_token_is_added_by_the_host_and_never_shown() {
    // A stand-in Bot API that records the path the request really arrived on.
    let fake = switchboard_testkit::recorder::Recorder::start(
        200,
        json!({"ok": true, "result": {"message_id": 5, "date": DATE, "chat": {"id": 42, "type": "private"}, "text": "hi"}}),
    )
    .await;
    let w = world().await;
    let conn = w
        .runtime
        .social(&w.plugin, &installation(&fake.url, &[]))
        .expect("bind")
        .capture_logs();
    let sent = conn.send(&outbound("42", "hi")).await.expect("send");
    assert_eq!(sent.message_ids, vec!["42:5".to_string()]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        format!("/bot{TOKEN}/sendMessage"),
        "the host put the token in the path"
    );
    assert!(
        !fake.url.contains("bot"),
        "the plugin was only given {}",
        fake.url
    );
    let body = String::from_utf8(requests[0].body.clone()).expect("utf-8");
    assert!(!body.contains(TOKEN) && requests[0].header("authorization").is_none());

    // Against the simulator, which only serves /bot<token>/..., the same configuration works.
    w.customer_says(5001, "hello");
    let logged = w.connector(&[]).capture_logs();
    assert_eq!(
        logged.poll(STREAM, None).await.expect("poll").events.len(),
        1
    );
    let mut logs = conn.take_logs();
    logs.extend(logged.take_logs());
    assert!(
        logs.iter()
            .all(|l| !format!("{l:?}").contains("AAHsimulated")),
        "{logs:?}"
    );

    // An unreachable API is worth retrying, and the failure does not show the token either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let conn = w
        .runtime
        .social(&w.plugin, &installation(&dead, &[]))
        .expect("bind");
    match connector_error(conn.send(&outbound("42", "hi")).await) {
        ConnectorError::Transient(message) => {
            assert!(!message.contains("AAHsimulated"), "{message}")
        }
        other => panic!("expected transient, got {other:?}"),
    }
}
