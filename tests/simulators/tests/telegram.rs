//! The Telegram simulator driven over real HTTP, the way a connector talks to it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use switchboard_simulators::telegram::{Config, CustomerMessage, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "4242:test-token";
const CHAT: i64 = 777_000_111;

struct Harness {
    sim: Simulator,
    base: String,
    http: reqwest::Client,
}

impl Harness {
    async fn start(config: Config) -> Self {
        let sim = Simulator::new(config);
        let (addr, _handle) = sim
            .clone()
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("serve");
        Self {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn new() -> Self {
        Self::start(test_config()).await
    }

    fn url(&self, method: &str) -> String {
        format!("{}/bot{TOKEN}/{method}", self.base)
    }

    /// POSTs a JSON body and returns (status, envelope).
    async fn call(&self, method: &str, params: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(method))
            .json(&params)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    fn customer_writes(&self, text: &str) -> i64 {
        self.sim
            .customer_message(CustomerMessage::new(CHAT, "Aiko", text))
    }
}

fn test_config() -> Config {
    Config {
        first_update_id: Some(1000),
        webhook_retry_initial: Duration::from_millis(20),
        webhook_retry_max: Duration::from_millis(100),
        webhook_timeout: Duration::from_secs(2),
        ..Config::for_token(TOKEN)
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    let body = response.json().await.expect("JSON body");
    (status, body)
}

fn error_of(body: &Value) -> (i64, &str) {
    assert_eq!(body["ok"], json!(false), "{body}");
    (
        body["error_code"].as_i64().unwrap_or_default(),
        body["description"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn token_and_method_are_checked_like_telegram() {
    let h = Harness::new().await;
    let response = h
        .http
        .get(format!("{}/botWRONG/getMe", h.base))
        .send()
        .await
        .expect("request");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );

    let (status, body) = h.call("getNothing", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 404, "description": "Not Found"})
    );

    // Method names are case-insensitive.
    let (status, body) = h.call("GETME", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["id"], json!(4242));
    assert_eq!(body["result"]["is_bot"], json!(true));
}

#[tokio::test]
async fn parameters_arrive_in_every_encoding() {
    let h = Harness::new().await;
    h.customer_writes("hello");

    // Query string on a GET.
    let response = h
        .http
        .get(h.url("sendMessage"))
        .query(&[("chat_id", CHAT.to_string()), ("text", "via query".into())]);
    assert_eq!(
        read(response.send().await.expect("get")).await.0,
        StatusCode::OK
    );
    // Urlencoded form.
    let response = h
        .http
        .post(h.url("sendMessage"))
        .form(&[("chat_id", CHAT.to_string()), ("text", "via form".into())]);
    assert_eq!(
        read(response.send().await.expect("form")).await.0,
        StatusCode::OK
    );
    // JSON, with the chat id as a string as some clients send it.
    assert_eq!(
        h.call(
            "sendMessage",
            json!({"chat_id": CHAT.to_string(), "text": "via json"})
        )
        .await
        .0,
        StatusCode::OK
    );
    // Multipart.
    let body = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n{CHAT}\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nvia multipart\r\n--b0undary--\r\n"
    );
    let response = h
        .http
        .post(h.url("sendMessage"))
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(body);
    assert_eq!(
        read(response.send().await.expect("multipart")).await.0,
        StatusCode::OK
    );
    // A chunked JSON body, written by hand so the framing is certain.
    let addr = h.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let json = format!(r#"{{"chat_id":{CHAT},"text":"via chunks"}}"#);
    let (first, second) = json.split_at(10);
    let request = format!(
        "POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");

    let texts: Vec<String> = h
        .sim
        .sent_messages(Some(CHAT))
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        [
            "via query",
            "via form",
            "via json",
            "via multipart",
            "via chunks"
        ]
    );
}

#[tokio::test]
async fn python_client_shape_with_reply_parameters_as_json_text() {
    let h = Harness::new().await;
    h.customer_writes("My order #123 never arrived");
    let first_message_id = 1;
    // What python-telegram-bot & co. send: a form post where nested objects are JSON text.
    let form = [
        ("chat_id", CHAT.to_string()),
        ("text", "Sorry about that, *checking* now".to_string()),
        ("parse_mode", "Markdown".to_string()),
        ("disable_notification", "True".to_string()),
        (
            "reply_parameters",
            json!({"message_id": first_message_id, "quote": "order #123"}).to_string(),
        ),
    ];
    let response = h
        .http
        .post(h.url("sendMessage"))
        .form(&form)
        .send()
        .await
        .expect("send");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = &body["result"];
    assert_eq!(message["message_id"], json!(2));
    assert_eq!(message["from"]["id"], json!(4242));
    assert_eq!(message["text"], json!("Sorry about that, checking now"));
    assert_eq!(
        message["entities"][0],
        json!({"type": "bold", "offset": 18, "length": 8})
    );
    assert_eq!(
        message["reply_to_message"]["text"],
        json!("My order #123 never arrived")
    );
    assert_eq!(message["quote"]["position"], json!(3));

    let sent = h.sim.sent_messages(Some(CHAT));
    assert_eq!(sent[0].reply_to_message_id, Some(1));
    assert!(sent[0].disable_notification);
    // The bot's own message is not echoed back as an update.
    assert_eq!(h.sim.pending_updates().len(), 1);
}

#[tokio::test]
async fn get_updates_offset_confirms_and_negative_offset_reads_from_the_end() {
    let h = Harness::new().await;
    for text in ["one", "two", "three"] {
        h.customer_writes(text);
    }
    let (_, body) = h.call("getUpdates", json!({})).await;
    let updates = body["result"].as_array().expect("array").clone();
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0]["update_id"], json!(1000));
    assert_eq!(
        updates[0]["message"]["chat"],
        json!({"id": CHAT, "type": "private", "first_name": "Aiko"})
    );
    assert_eq!(updates[2]["message"]["text"], json!("three"));

    // Unconfirmed updates come again; `limit` trims the batch.
    let (_, body) = h.call("getUpdates", json!({"limit": 2})).await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(2));
    // offset = last + 1 confirms all three.
    let (_, body) = h.call("getUpdates", json!({"offset": 1003})).await;
    assert_eq!(body["result"], json!([]));
    assert_eq!(h.sim.summary().pending_update_count, 0);

    for text in ["four", "five", "six"] {
        h.customer_writes(text);
    }
    let (_, body) = h.call("getUpdates", json!({"offset": -1})).await;
    assert_eq!(body["result"][0]["message"]["text"], json!("six"));
    let (_, body) = h.call("getUpdates", json!({})).await;
    assert_eq!(
        body["result"].as_array().map(Vec::len),
        Some(1),
        "older updates were forgotten"
    );

    // Updates expire after 24 hours on the simulator's clock.
    h.customer_writes("seven");
    h.sim.advance_clock(Duration::from_secs(25 * 3600));
    let (_, body) = h.call("getUpdates", json!({})).await;
    assert_eq!(body["result"], json!([]));
}

#[tokio::test]
async fn long_poll_waits_for_an_update_and_a_newer_poll_ends_an_older_one() {
    let h = Arc::new(Harness::new().await);
    let poll = {
        let h = h.clone();
        tokio::spawn(async move { h.call("getUpdates", json!({"timeout": 10})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.customer_writes("are you there?");
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), poll)
        .await
        .expect("woke")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["result"][0]["message"]["text"],
        json!("are you there?")
    );

    // Two bot instances polling: the older request is terminated with 409.
    h.call("getUpdates", json!({"offset": 1001})).await;
    let older = {
        let h = h.clone();
        tokio::spawn(async move { h.call("getUpdates", json!({"timeout": 10})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = {
        let h = h.clone();
        tokio::spawn(async move { h.call("getUpdates", json!({"timeout": 1})).await })
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), older)
        .await
        .expect("ended")
        .expect("task");
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_of(&body)
        .1
        .starts_with("Conflict: terminated by other getUpdates request"));
    let (status, body) = newer.await.expect("task");
    assert_eq!(
        (status, body["result"].clone()),
        (StatusCode::OK, json!([]))
    );
}

/// A local webhook receiver that fails its first `failures` requests, and every update from
/// `broken_chat`, with 500.
#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(Option<String>, Value)>>,
    failures: Mutex<u32>,
    broken_chat: Option<i64>,
}

async fn start_receiver(failures: u32, broken_chat: Option<i64>) -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver {
        failures: Mutex::new(failures),
        broken_chat,
        ..Receiver::default()
    });
    let state = receiver.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(update): axum::Json<Value>| {
                let state = state.clone();
                async move {
                    let secret = headers
                        .get("x-telegram-bot-api-secret-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let chat = update["message"]["chat"]["id"].as_i64();
                    state.seen.lock().expect("lock").push((secret, update));
                    if chat.is_some() && chat == state.broken_chat {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let mut failures = state.failures.lock().expect("lock");
                    if *failures > 0 {
                        *failures -= 1;
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, format!("http://{addr}/hook"))
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn webhook_delivers_in_order_with_secret_and_retries_failures() {
    let h = Harness::new().await;
    let (receiver, url) = start_receiver(1, None).await;
    let (status, body) = h
        .call(
            "setWebhook",
            json!({"url": url, "secret_token": "s3cret_-Token"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"ok": true, "result": true, "description": "Webhook was set"})
    );

    // While the webhook is set, polling is refused.
    let (status, body) = h.call("getUpdates", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        error_of(&body).1,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );

    h.customer_writes("first");
    h.customer_writes("second");
    eventually("both updates acknowledged", || {
        h.sim.summary().pending_update_count == 0
    })
    .await;

    let seen = receiver.seen.lock().expect("lock").clone();
    let ids: Vec<i64> = seen
        .iter()
        .map(|(_, u)| u["update_id"].as_i64().unwrap_or_default())
        .collect();
    // The 500 on the first update holds back the second one of the same chat.
    assert_eq!(ids, [1000, 1000, 1001]);
    assert!(seen
        .iter()
        .all(|(secret, _)| secret.as_deref() == Some("s3cret_-Token")));

    let (_, info) = h.call("getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["url"], json!(url));
    assert_eq!(info["result"]["pending_update_count"], json!(0));
    assert_eq!(info["result"]["max_connections"], json!(40));
    assert_eq!(
        info["result"]["last_error_message"],
        json!("Wrong response from the webhook: 500 Internal Server Error")
    );
    assert!(info["result"]["last_error_date"].is_i64());

    let (_, body) = h.call("deleteWebhook", json!({})).await;
    assert_eq!(body["description"], json!("Webhook was deleted"));
    assert_eq!(h.call("getUpdates", json!({})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn webhook_failures_in_one_chat_do_not_hold_up_another() {
    let h = Harness::new().await;
    let stuck = CHAT + 1;
    let (receiver, url) = start_receiver(0, Some(stuck)).await;
    h.call("setWebhook", json!({"url": url})).await;
    h.sim
        .customer_message(CustomerMessage::new(stuck, "Ben", "first from Ben"));
    h.sim
        .customer_message(CustomerMessage::new(stuck, "Ben", "second from Ben"));
    h.customer_writes("from Aiko");
    eventually("Aiko's update delivered", || {
        h.sim.summary().pending_update_count == 2
    })
    .await;
    eventually("Ben's first update retried", || {
        receiver.seen.lock().expect("lock").len() >= 4
    })
    .await;

    // Ben's second update waits behind his first, however often that one fails.
    let seen = receiver.seen.lock().expect("lock").clone();
    let texts: Vec<&str> = seen
        .iter()
        .filter_map(|(_, u)| u["message"]["text"].as_str())
        .collect();
    assert!(texts.contains(&"from Aiko"));
    assert!(!texts.contains(&"second from Ben"), "{texts:?}");
    let pending: Vec<i64> = h
        .sim
        .pending_updates()
        .iter()
        .filter_map(|u| u["update_id"].as_i64())
        .collect();
    assert_eq!(pending, [1000, 1001]);
}

#[tokio::test]
async fn set_webhook_validates_its_parameters() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(
            "setWebhook",
            json!({"url": "http://127.0.0.1:9/x", "secret_token": "no spaces"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body).1,
        "Bad Request: secret token contains unallowed characters"
    );
    let (status, _) = h
        .call("setWebhook", json!({"url": "ftp://example.com/"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A dead receiver: the failure shows up in getWebhookInfo and the update stays queued.
    h.customer_writes("anyone?");
    let (status, _) = h
        .call(
            "setWebhook",
            json!({"url": "http://127.0.0.1:9/dead", "max_connections": 500}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("a recorded delivery error", || {
        h.sim.summary().webhook_last_error_message.is_some()
    })
    .await;
    let (_, info) = h.call("getWebhookInfo", json!({})).await;
    assert_eq!(info["result"]["pending_update_count"], json!(1));
    assert_eq!(info["result"]["max_connections"], json!(100));
    assert_eq!(
        info["result"]["last_error_message"],
        json!("Connection refused")
    );

    let (_, body) = h
        .call("deleteWebhook", json!({"drop_pending_updates": true}))
        .await;
    assert_eq!(body["result"], json!(true));
    assert_eq!(h.sim.summary().pending_update_count, 0);
}

#[tokio::test]
async fn send_message_validates_text_chat_and_reply() {
    let h = Harness::new().await;
    let send = |params: Value| h.call("sendMessage", params);

    let (status, body) = send(json!({"chat_id": CHAT, "text": "hi"})).await;
    assert_eq!(
        (status, error_of(&body)),
        (
            StatusCode::BAD_REQUEST,
            (400, "Bad Request: chat not found")
        )
    );
    h.customer_writes("hello");

    let (_, body) = send(json!({"chat_id": CHAT, "text": "  "})).await;
    assert_eq!(error_of(&body), (400, "Bad Request: message text is empty"));
    let (_, body) = send(json!({"chat_id": CHAT})).await;
    assert_eq!(error_of(&body), (400, "Bad Request: message text is empty"));
    let (_, body) = send(json!({"text": "hi"})).await;
    assert_eq!(error_of(&body), (400, "Bad Request: chat_id is empty"));

    // 4096 UTF-16 code units fit; an emoji counts twice.
    assert_eq!(
        send(json!({"chat_id": CHAT, "text": "a".repeat(4096)}))
            .await
            .0,
        StatusCode::OK
    );
    let (_, body) = send(json!({"chat_id": CHAT, "text": "a".repeat(4097)})).await;
    assert_eq!(error_of(&body), (400, "Bad Request: message is too long"));
    let (_, body) = send(json!({"chat_id": CHAT, "text": "👍".repeat(2049)})).await;
    assert_eq!(error_of(&body), (400, "Bad Request: message is too long"));
    // The limit applies after markup is parsed.
    let bold = format!("*{}*", "a".repeat(4096));
    assert_eq!(
        send(json!({"chat_id": CHAT, "text": bold, "parse_mode": "MarkdownV2"}))
            .await
            .0,
        StatusCode::OK
    );
    let (_, body) =
        send(json!({"chat_id": CHAT, "text": "Thanks.", "parse_mode": "MarkdownV2"})).await;
    assert_eq!(
        error_of(&body),
        (400, "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'")
    );

    let (_, body) =
        send(json!({"chat_id": CHAT, "text": "re", "reply_parameters": {"message_id": 99}})).await;
    assert_eq!(
        error_of(&body),
        (400, "Bad Request: message to be replied not found")
    );
    let lenient = json!({"chat_id": CHAT, "text": "re", "reply_parameters": {"message_id": 99, "allow_sending_without_reply": true}});
    let (status, body) = send(lenient).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["result"].get("reply_to_message").is_none());
    // The legacy top-level parameter still works.
    let (_, body) = send(json!({"chat_id": CHAT, "text": "re", "reply_to_message_id": 1})).await;
    assert_eq!(body["result"]["reply_to_message"]["message_id"], json!(1));

    h.sim.block(CHAT).expect("known chat");
    let (status, body) = send(json!({"chat_id": CHAT, "text": "still there?"})).await;
    assert_eq!(
        (status, error_of(&body)),
        (
            StatusCode::FORBIDDEN,
            (403, "Forbidden: bot was blocked by the user")
        )
    );
    let last = h
        .sim
        .pending_updates()
        .pop()
        .expect("my_chat_member update");
    assert_eq!(
        last["my_chat_member"]["new_chat_member"]["status"],
        json!("kicked")
    );
}

#[tokio::test]
async fn flood_control_answers_429_with_retry_after() {
    let h = Harness::start(Config {
        per_chat_interval: Some(Duration::from_secs(1)),
        ..test_config()
    })
    .await;
    h.customer_writes("hello");
    let msg = json!({"chat_id": CHAT, "text": "one"});

    // Per-chat: a second message within a second is refused.
    assert_eq!(h.call("sendMessage", msg.clone()).await.0, StatusCode::OK);
    let (status, body) = h.call("sendMessage", msg.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}})
    );
    h.sim.advance_clock(Duration::from_secs(1));
    assert_eq!(h.call("sendMessage", msg.clone()).await.0, StatusCode::OK);
    h.sim.set_per_chat_interval(None);

    // An injected rate limit, set up through the control API.
    let fault = json!({"kind": "rate_limited", "retry_after_secs": 7, "path": "sendMessage"});
    let response = h
        .http
        .post(format!("{}/_control/faults", h.base))
        .json(&fault)
        .send()
        .await
        .expect("inject");
    assert_eq!(response.status().as_u16(), 204);
    let (status, body) = h.call("sendmessage", msg.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["parameters"]["retry_after"], json!(7));
    assert_eq!(error_of(&body).1, "Too Many Requests: retry after 7");

    // The overall budget.
    let limit = json!({"limit": 1, "window_secs": 30});
    h.http
        .post(format!("{}/_control/rate-limit", h.base))
        .json(&limit)
        .send()
        .await
        .expect("limit");
    assert_eq!(h.call("sendMessage", msg.clone()).await.0, StatusCode::OK);
    let (status, body) = h.call("sendMessage", msg.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=30).contains(
        &body["parameters"]["retry_after"]
            .as_i64()
            .unwrap_or_default()
    ));
}

#[tokio::test]
async fn injected_status_faults_use_the_telegram_envelope() {
    let h = Harness::new().await;
    h.sim
        .faults()
        .inject(serde_json::from_value(json!({"kind": "status", "status": 502})).expect("spec"));
    let (status, body) = h.call("getMe", json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"})
    );
    assert_eq!(h.call("getMe", json!({})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn control_api_plays_the_customer_over_http() {
    let h = Harness::new().await;
    let message = json!({
        "chat_id": CHAT,
        "from": {"id": CHAT, "first_name": "Aiko", "username": "aiko", "language_code": "ja"},
        "text": "こんにちは",
    });
    let injected: Value = h
        .http
        .post(format!("{}/_control/messages", h.base))
        .json(&message)
        .send()
        .await
        .expect("inject")
        .json()
        .await
        .expect("json");
    assert_eq!(injected, json!({"update_id": 1000, "message_id": 1}));

    let reply = json!({"chat_id": CHAT, "text": "はい", "reply_parameters": {"message_id": 1}});
    assert_eq!(h.call("sendMessage", reply).await.0, StatusCode::OK);
    let sent: Value = h
        .http
        .get(format!("{}/_control/sent?chat_id={CHAT}", h.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(sent[0]["text"], json!("はい"));
    assert_eq!(sent[0]["reply_to_message_id"], json!(1));

    let edit = json!({"chat_id": CHAT, "message_id": 1, "text": "こんばんは"});
    let response = h
        .http
        .post(format!("{}/_control/edits", h.base))
        .json(&edit)
        .send()
        .await
        .expect("edit");
    assert_eq!(response.status().as_u16(), 200);
    let block = h
        .http
        .post(format!("{}/_control/block", h.base))
        .json(&json!({"chat_id": 1}))
        .send()
        .await;
    assert_eq!(block.expect("block").status().as_u16(), 404, "unknown chat");

    let state: Value = h
        .http
        .get(format!("{}/_control/state", h.base))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["pending_update_count"], json!(2));
    assert_eq!(state["sent_messages"], json!(1));
    let (_, body) = h.call("getUpdates", json!({"offset": 1001})).await;
    assert_eq!(
        body["result"][0]["edited_message"]["text"],
        json!("こんばんは")
    );
}

/// Every `ChatMember` in a `my_chat_member` update carries the fields the Bot API marks
/// required for its variant: a `kicked` member (`ChatMemberBanned`) always has `until_date`
/// (0: for good), also as the *old* member of an unblock, or python-telegram-bot cannot parse
/// the batch and a polling bot stops receiving messages.
#[tokio::test]
async fn member_updates_carry_every_required_field_on_block_and_unblock() {
    let h = Harness::new().await;
    h.customer_writes("hello");
    h.sim.block(CHAT).expect("known chat");
    h.sim.unblock(CHAT).expect("known chat");
    let (status, body) = h.call("getUpdates", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let members: Vec<&Value> = body["result"]
        .as_array()
        .expect("updates")
        .iter()
        .filter_map(|u| u.get("my_chat_member"))
        .collect();
    assert_eq!(members.len(), 2, "a block and an unblock: {body}");
    for (update, (old, new)) in members
        .iter()
        .zip([("member", "kicked"), ("kicked", "member")])
    {
        for key in ["chat", "from", "date", "old_chat_member", "new_chat_member"] {
            assert!(update.get(key).is_some(), "{key} missing in {update}");
        }
        for (side, expected) in [("old_chat_member", old), ("new_chat_member", new)] {
            let member = &update[side];
            assert_eq!(member["status"], json!(expected), "{side} of {update}");
            assert_eq!(member["user"]["is_bot"], json!(true), "{side} of {update}");
            assert!(member["user"]["id"].is_i64() && member["user"]["first_name"].is_string());
            if expected == "kicked" {
                assert_eq!(member["until_date"], json!(0), "{side} of {update}");
            }
        }
    }
}
