//! The Meta Graph simulator driven over real HTTP, the way a Messenger or Facebook Pages
//! connector talks to it, with a webhook receiver standing in for the connector's callback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use reqwest::Response;
use serde_json::{json, Value};
use switchboard_simulators::meta::{self, Config, Simulator};

const DAY: u64 = 24 * 60 * 60;

/// What the callback received: raw body and signature of each POST.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(String, String)>>>,
    /// Answer 500 to this many POSTs first.
    fail_first: Arc<AtomicU32>,
    verify_token: Arc<Mutex<String>>,
}

async fn handshake(
    State(r): State<Receiver>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, String) {
    let expected = r.verify_token.lock().expect("lock").clone();
    if q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && q.get("hub.verify_token") == Some(&expected)
    {
        (
            StatusCode::OK,
            q.get("hub.challenge").cloned().unwrap_or_default(),
        )
    } else {
        (StatusCode::FORBIDDEN, "wrong verify token".into())
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8(body.to_vec()).expect("utf-8 body");
    r.posts.lock().expect("lock").push((body, signature));
    StatusCode::OK
}

struct Harness {
    sim: Simulator,
    base: String,
    http: reqwest::Client,
    receiver: Receiver,
    callback: String,
    config: Config,
}

impl Harness {
    async fn start(config: Config) -> Self {
        let sim = Simulator::new(config.clone());
        sim.freeze_clock();
        let (addr, _) = sim
            .clone()
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("serve");
        let receiver = Receiver::default();
        *receiver.verify_token.lock().expect("lock") = "verify-me".into();
        let app = Router::new()
            .route("/webhook", get(handshake).post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let callback = format!("http://{}/webhook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            receiver,
            callback,
            config,
        }
    }

    async fn new() -> Self {
        Self::start(Config::default()).await
    }

    /// Starts with the callback verified.
    async fn subscribed() -> Self {
        let h = Self::new().await;
        let (status, body) = h
            .control(
                "webhook",
                json!({"callback_url": h.callback, "verify_token": "verify-me"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        h
    }

    fn token(&self) -> &str {
        &self.config.page_access_token
    }

    async fn graph_get(&self, path_and_query: &str) -> (StatusCode, HeaderMap, Value) {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}/v23.0/{path_and_query}{sep}access_token={}",
            self.base,
            self.token()
        );
        read(self.http.get(url).send().await.expect("request")).await
    }

    async fn graph_post(&self, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        let url = format!("{}/v23.0/{path}", self.base);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token())
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    async fn send(&self, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.graph_post("me/messages", body).await;
        (status, body)
    }

    async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/_control/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control request");
        let (status, _, body) = read(response).await;
        (status, body)
    }

    async fn customer(&self, psid: &str, text: &str) -> Value {
        let (status, body) = self
            .control(
                "messages",
                json!({"psid": psid, "name": "Mina", "text": text}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    fn advance(&self, secs: u64) {
        self.sim.advance_clock(Duration::from_secs(secs));
    }

    /// Waits until the callback has `n` POSTs and returns them parsed, with raw bodies.
    async fn posts(&self, n: usize) -> Vec<(String, String, Value)> {
        for _ in 0..200 {
            let posts = self.receiver.posts.lock().expect("lock").clone();
            if posts.len() >= n {
                return posts
                    .into_iter()
                    .map(|(body, sig)| {
                        let value = serde_json::from_str(&body).expect("json body");
                        (body, sig, value)
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = self.receiver.posts.lock().expect("lock").len();
        panic!(
            "expected {n} webhook POSTs, got {got}: {:#?}",
            self.sim.webhook_deliveries()
        );
    }
}

async fn read(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, value)
}

fn error_code(body: &Value) -> (u64, Option<u64>) {
    (
        body["error"]["code"].as_u64().unwrap_or_default(),
        body["error"]["error_subcode"].as_u64(),
    )
}

fn text_reply(psid: &str, text: &str) -> Value {
    json!({"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": text}})
}

// ----- step 1: auth, errors, Send API, Conversations API ------------------------------------

#[tokio::test]
async fn tokens_are_checked_in_query_and_header_and_errors_have_the_graph_shape() {
    let h = Harness::new().await;
    let (status, _, body) = read(
        h.http
            .get(format!("{}/v23.0/me", h.base))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 104);

    let (status, headers, body) = read(
        h.http
            .get(format!("{}/v23.0/me?access_token=nope", h.base))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 190);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert!(body["error"]["fbtrace_id"].is_string());
    assert!(headers.contains_key("www-authenticate"));

    let (status, headers, body) = h.graph_get("me").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], h.config.page_id);
    assert!(headers.contains_key("x-app-usage"));
    assert!(headers.contains_key("x-business-use-case-usage"));

    // Bearer works too, and the version prefix is optional.
    let response = h
        .http
        .get(format!("{}/me", h.base))
        .header("authorization", format!("OAuth {}", h.token()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    let (status, _) = h.control("token/invalidate", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, body) = h.graph_get("me").await;
    assert_eq!(error_code(&body), (190, Some(460)));
}

#[tokio::test]
async fn throttling_answers_graph_codes_with_usage_headers_and_no_retry_after() {
    let h = Harness::new().await;
    let (status, _) = h.control("rate-limit", json!({"limit": 2})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, headers, _) = h.graph_get("me").await;
    let usage: Value = serde_json::from_str(
        headers["x-business-use-case-usage"]
            .to_str()
            .expect("ascii"),
    )
    .expect("json");
    assert_eq!(usage[&h.config.page_id][0]["call_count"], 50);
    h.graph_get("me").await;
    let (status, headers, body) = h.graph_get("me").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 32);
    assert_eq!(body["error"]["is_transient"], true);
    assert!(!headers.contains_key("retry-after"));
    let usage: Value = serde_json::from_str(
        headers["x-business-use-case-usage"]
            .to_str()
            .expect("ascii"),
    )
    .expect("json");
    let regain = usage[&h.config.page_id][0]["estimated_time_to_regain_access"]
        .as_u64()
        .expect("minutes");
    assert!(regain >= 1);
    let app: Value =
        serde_json::from_str(headers["x-app-usage"].to_str().expect("ascii")).expect("json");
    assert_eq!(app["call_count"], 100);

    // The code follows the setting; an injected limit reads the same way.
    h.control("rate-limit", json!({"limit": null})).await;
    h.control("config", json!({"throttle_code": 613})).await;
    h.control(
        "faults",
        json!({"kind": "rate_limited", "retry_after_secs": 300}),
    )
    .await;
    let (_, headers, body) = h.graph_get("me").await;
    assert_eq!(error_code(&body).0, 613);
    assert!(headers["x-business-use-case-usage"]
        .to_str()
        .expect("ascii")
        .contains("\"estimated_time_to_regain_access\":5"));
    h.control("faults", json!({"kind": "status", "status": 503}))
        .await;
    let (status, _, body) = h.graph_get("me").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body).0, 2);
}

#[tokio::test]
async fn send_api_enforces_the_24_hour_window_then_human_agent_for_7_days() {
    let h = Harness::new().await;
    h.customer("5001", "주문이 안 와요").await;
    let (status, body) = h.send(text_reply("5001", "Checking now")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recipient_id"], "5001");
    assert!(body["message_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("m_")));

    // /{page-id}/messages is the same endpoint.
    let (status, _, _) = h
        .graph_post(
            &format!("{}/messages", h.config.page_id),
            text_reply("5001", "again"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    h.advance(DAY + 1);
    let (status, body) = h.send(text_reply("5001", "late")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), (10, Some(2_018_278)));

    let human = json!({"recipient": {"id": "5001"}, "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT", "message": {"text": "A person here"}});
    let (status, body) = h.send(human.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    h.advance(6 * DAY);
    let (status, body) = h.send(human.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), (10, Some(2_018_278)));

    // A new message from the person opens the window again.
    h.customer("5001", "hello?").await;
    let (status, _) = h.send(text_reply("5001", "Back")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, body) = h.send(text_reply("nobody", "hi")).await;
    assert_eq!(error_code(&body), (100, Some(2_018_001)));
    let long = "가".repeat(2001);
    let (_, body) = h.send(text_reply("5001", &long)).await;
    assert_eq!(error_code(&body).0, 100);
    let sent = h.sim.sent_messages();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[2].tag.as_deref(), Some("HUMAN_AGENT"));
}

#[tokio::test]
async fn sends_accept_form_bodies_with_json_values() {
    let h = Harness::new().await;
    h.customer("5002", "hi").await;
    let response = h
        .http
        .post(format!("{}/v23.0/me/messages", h.base))
        .form(&[
            ("recipient", r#"{"id":"5002"}"#),
            ("messaging_type", "RESPONSE"),
            ("message", r#"{"text":"form reply"}"#),
            ("access_token", h.token()),
        ])
        .send()
        .await
        .expect("request");
    let (status, _, body) = read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.sim.sent_messages()[0].text.as_deref(), Some("form reply"));
}

#[tokio::test]
async fn conversations_page_by_cursor_and_show_messages() {
    let h = Harness::new().await;
    for n in 0..5 {
        h.customer(&format!("60{n}"), &format!("message {n}")).await;
        h.advance(1);
    }
    h.send(text_reply("600", "answer")).await;

    let (status, _, first) = h
        .graph_get(&format!(
            "{}/conversations?platform=messenger&limit=2&fields=participants,updated_time",
            h.config.page_id
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let data = first["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    // 600 was updated last (by the answer), then 604.
    assert_eq!(data[0]["participants"]["data"][0]["id"], "600");
    assert_eq!(data[1]["participants"]["data"][0]["id"], "604");
    assert!(first["paging"]["cursors"]["before"].is_string());
    let next = first["paging"]["next"].as_str().expect("next").to_owned();
    let (_, _, second) = read(h.http.get(&next).send().await.expect("next")).await;
    assert_eq!(second["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(second["data"][0]["participants"]["data"][0]["id"], "603");
    let after = second["paging"]["cursors"]["after"]
        .as_str()
        .expect("after");
    let (_, _, third) = h
        .graph_get(&format!(
            "{}/conversations?platform=messenger&limit=2&after={after}",
            h.config.page_id
        ))
        .await;
    assert_eq!(third["data"].as_array().map(Vec::len), Some(1));
    assert!(third["paging"].get("next").is_none());
    assert!(third["paging"]["previous"].is_string());

    let conversation = data[0]["id"].as_str().expect("id");
    let (_, _, messages) = h
        .graph_get(&format!(
            "{conversation}/messages?fields=message,from,created_time"
        ))
        .await;
    let list = messages["data"].as_array().expect("messages");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["message"], "answer", "newest first");
    assert_eq!(list[0]["from"]["id"], h.config.page_id);
    assert_eq!(list[1]["from"]["id"], "600");
    let (_, _, nested) = h
        .graph_get(&format!(
            "{conversation}?fields=messages.limit(1){{message,from}}"
        ))
        .await;
    assert_eq!(nested["messages"]["data"][0]["message"], "answer");
    let next = nested["messages"]["paging"]["next"].as_str().expect("next");
    let (_, _, older) = read(h.http.get(next).send().await.expect("next")).await;
    assert_eq!(older["data"][0]["message"], "message 0");
    let mid = older["data"][0]["id"].as_str().expect("mid");
    let (_, _, one) = h.graph_get(&format!("{mid}?fields=message")).await;
    assert_eq!(one["message"], "message 0");
    let (_, _, filtered) = h
        .graph_get(&format!(
            "{}/conversations?platform=messenger&user_id=602",
            h.config.page_id
        ))
        .await;
    assert_eq!(filtered["data"].as_array().map(Vec::len), Some(1));
}

// ----- step 2: webhooks -----------------------------------------------------------------------

#[tokio::test]
async fn the_handshake_needs_the_verify_token_and_the_raw_challenge() {
    let h = Harness::new().await;
    let (status, body) = h
        .control(
            "webhook",
            json!({"callback_url": h.callback, "verify_token": "wrong"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("403")),
        "{body}"
    );
    let (status, _) = h
        .control(
            "webhook",
            json!({"callback_url": h.callback, "verify_token": "verify-me"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn deliveries_are_signed_over_metas_escaped_bytes() {
    let h = Harness::subscribed().await;
    let text = "안녕하세요 こんにちは 😀 https://example.com/x";
    h.customer("7001", text).await;
    let posts = h.posts(1).await;
    let (raw, signature, value) = &posts[0];
    assert!(raw.is_ascii(), "non-ASCII is escaped: {raw}");
    assert!(raw.contains(r"\uc548\ub155"), "lowercase hex: {raw}");
    assert!(raw.contains(r"\ud83d\ude00"), "surrogate pairs: {raw}");
    assert!(raw.contains(r"https:\/\/example.com\/x"), "slashes: {raw}");
    assert_eq!(signature, &meta::sign(&h.config.app_secret, raw.as_bytes()));
    assert_eq!(raw, &meta::meta_json(value), "the pub serializer is Meta's");
    // Re-serializing the parsed body gives other bytes, and another signature.
    let reserialized = value.to_string();
    assert_ne!(
        meta::sign(&h.config.app_secret, reserialized.as_bytes()),
        *signature
    );
    let event = &value["entry"][0]["messaging"][0];
    assert_eq!(value["object"], "page");
    assert_eq!(value["entry"][0]["id"], h.config.page_id);
    assert_eq!(event["sender"]["id"], "7001");
    assert_eq!(event["message"]["text"], text);
}

#[tokio::test]
async fn batches_carry_several_messaging_items_and_entries() {
    let h = Harness::subscribed().await;
    let (status, body) = h
        .control(
            "messages",
            json!([
                {"psid": "8001", "text": "one"},
                {"psid": "8002", "text": "two"},
                {"psid": "8001", "text": "three"}
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(3));
    let posts = h.posts(1).await;
    let messaging = posts[0].2["entry"][0]["messaging"]
        .as_array()
        .expect("messaging")
        .clone();
    assert_eq!(messaging.len(), 3);

    // A batch window gathers separate changes into one POST with several entries.
    h.control("config", json!({"batch_window_ms": 150})).await;
    h.customer("8001", "four").await;
    let (status, _) = h.control("handover/take", json!({"psid": "8002"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.customer("8002", "five").await;
    let posts = h.posts(2).await;
    let entries = posts[1].2["entry"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["messaging"].as_array().map(Vec::len), Some(2));
    assert!(entries[0]["messaging"][1]
        .get("take_thread_control")
        .is_some());
    assert_eq!(entries[1]["standby"][0]["message"]["text"], "five");
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_bytes_and_duplicates_happen() {
    let h = Harness::subscribed().await;
    h.receiver.fail_first.store(2, Ordering::SeqCst);
    h.customer("9001", "retry me").await;
    let posts = h.posts(1).await;
    let log = h.sim.webhook_deliveries();
    assert_eq!(log[0].attempts, 3);
    assert!(log[0].delivered);
    assert_eq!(log[0].body, posts[0].0);

    let (status, _) = h.control("webhook/duplicate", json!({"count": 1})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.customer("9001", "twice").await;
    let posts = h.posts(3).await;
    assert_eq!(posts[1].0, posts[2].0, "the same payload twice");
    assert!(h.sim.webhook_deliveries()[2].duplicate);
}

#[tokio::test]
async fn echoes_come_back_for_the_apps_sends_and_the_page_inbox() {
    let h = Harness::subscribed().await;
    h.customer("9100", "hi").await;
    h.posts(1).await;
    let body = json!({"recipient": {"id": "9100"}, "messaging_type": "RESPONSE",
        "message": {"text": "from the hub", "metadata": "switchboard:42"}});
    h.send(body).await;
    let posts = h.posts(2).await;
    let items = posts[1].2["entry"][0]["messaging"]
        .as_array()
        .expect("items")
        .clone();
    let echo = &items[0];
    assert_eq!(echo["sender"]["id"], h.config.page_id);
    assert_eq!(echo["recipient"]["id"], "9100");
    assert_eq!(echo["message"]["is_echo"], true);
    assert_eq!(echo["message"]["metadata"], "switchboard:42");
    let app_id: u64 = h.config.app_id.parse().expect("numeric");
    assert_eq!(echo["message"]["app_id"], app_id);
    let delivery = &items[1];
    assert_eq!(delivery["delivery"]["mids"][0], echo["message"]["mid"]);

    let (status, _) = h
        .control(
            "inbox/reply",
            json!({"psid": "9100", "text": "typed in the inbox"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let posts = h.posts(3).await;
    let echo = &posts[2].2["entry"][0]["messaging"][0];
    assert_eq!(echo["message"]["is_echo"], true);
    let inbox: u64 = meta::PAGE_INBOX_APP_ID.parse().expect("numeric");
    assert_eq!(echo["message"]["app_id"], inbox);
    assert!(echo["message"].get("metadata").is_none());

    h.control("reads", json!({"psid": "9100"})).await;
    let posts = h.posts(4).await;
    assert!(posts[3].2["entry"][0]["messaging"][0]["read"]["watermark"].is_number());
}

// ----- step 3: handover and standby ------------------------------------------------------------

#[tokio::test]
async fn another_app_taking_the_thread_sends_events_to_standby() {
    let h = Harness::subscribed().await;
    h.customer("9200", "hi").await;
    h.posts(1).await;
    h.control(
        "handover/take",
        json!({"psid": "9200", "metadata": "bot takes over"}),
    )
    .await;
    let posts = h.posts(2).await;
    let take = &posts[1].2["entry"][0]["messaging"][0]["take_thread_control"];
    assert_eq!(take["metadata"], "bot takes over");
    let other: u64 = h.config.other_app_id.parse().expect("numeric");
    assert_eq!(take["new_owner_app_id"], other);

    let (_, _, owner) = h
        .graph_get(&format!("{}/thread_owner?recipient=9200", h.config.page_id))
        .await;
    assert_eq!(
        owner["data"][0]["thread_owner"]["app_id"],
        h.config.other_app_id
    );

    h.customer("9200", "to the bot").await;
    h.control(
        "other_app/reply",
        json!({"psid": "9200", "text": "bot answer"}),
    )
    .await;
    let posts = h.posts(4).await;
    assert_eq!(
        posts[2].2["entry"][0]["standby"][0]["message"]["text"],
        "to the bot"
    );
    let echo = &posts[3].2["entry"][0]["standby"][0]["message"];
    assert_eq!(echo["app_id"], other);
    assert!(posts[3].2["entry"][0].get("messaging").is_none());

    // Sending on standby is recorded for the test to catch.
    h.send(text_reply("9200", "should not")).await;
    assert!(h.sim.sent_messages()[0].while_standby);

    h.control("handover/release", json!({"psid": "9200"})).await;
    let posts = h.posts(6).await;
    let pass = posts
        .iter()
        .find_map(|p| {
            p.2["entry"][0]["messaging"][0]
                .get("pass_thread_control")
                .cloned()
        })
        .expect("pass_thread_control");
    let ours: u64 = h.config.app_id.parse().expect("numeric");
    assert_eq!(pass["new_owner_app_id"], ours);
    h.customer("9200", "back to you").await;
    let posts = h.posts(7).await;
    assert_eq!(
        posts[6].2["entry"][0]["messaging"][0]["message"]["text"],
        "back to you"
    );

    // The app can take control itself through Graph.
    h.control("handover/take", json!({"psid": "9200"})).await;
    let (status, _, body) = h
        .graph_post(
            &format!("{}/take_thread_control", h.config.page_id),
            json!({"recipient": {"id": "9200"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, owner) = h.graph_get("me/thread_owner?recipient=9200").await;
    assert_eq!(owner["data"][0]["thread_owner"]["app_id"], h.config.app_id);
}

#[tokio::test]
async fn time_travel_through_the_control_clock_closes_windows() {
    let h = Harness::new().await;
    h.customer("9300", "hi").await;
    let (status, _) = h.control("clock/advance", json!({"secs": DAY + 60})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = h.send(text_reply("9300", "late")).await;
    assert_eq!(error_code(&body), (10, Some(2_018_278)));
    h.control("config", json!({"human_agent": false})).await;
    let (_, body) = h
        .send(
            json!({"recipient": {"id": "9300"}, "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT", "message": {"text": "x"}}),
        )
        .await;
    assert_eq!(error_code(&body), (10, Some(2_018_278)));
}

// ----- step 4: Page comments ------------------------------------------------------------------

#[tokio::test]
async fn feed_webhooks_cover_every_verb_and_comment_kind() {
    let h = Harness::subscribed().await;
    let (_, post) = h.control("posts", json!({"message": "New menu"})).await;
    let post_id = post["post_id"].as_str().expect("post").to_owned();
    let (status, comment) = h
        .control(
            "comments",
            json!({"parent_id": post_id, "psid": "9400", "name": "Ken", "message": "배송 언제?"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{comment}");
    let comment_id = comment["comment_id"].as_str().expect("id").to_owned();
    let posts = h.posts(1).await;
    let change = &posts[0].2["entry"][0]["changes"][0];
    assert_eq!(change["field"], "feed");
    let value = &change["value"];
    assert_eq!(value["item"], "comment");
    assert_eq!(value["verb"], "add");
    assert_eq!(value["post_id"], post_id);
    assert_eq!(value["parent_id"], post_id);
    assert_eq!(value["comment_id"], comment_id);
    assert_eq!(value["message"], "배송 언제?");
    assert_eq!(value["from"]["name"], "Ken");
    assert_ne!(value["from"]["id"], "9400", "comment authors are not PSIDs");

    let (_, sticker) = h
        .control(
            "comments",
            json!({"parent_id": comment_id, "psid": "9401", "sticker": "https://x.example/s.png"}),
        )
        .await;
    let posts = h.posts(2).await;
    let value = &posts[1].2["entry"][0]["changes"][0]["value"];
    assert!(value.get("message").is_none(), "sticker-only: no message");
    assert_eq!(value["sticker"], "https://x.example/s.png");
    assert_eq!(value["parent_id"], comment_id);

    for (action, verb) in [
        ("edit", "edited"),
        ("hide", "hide"),
        ("unhide", "unhide"),
        ("remove", "remove"),
    ] {
        let sticker_id = sticker["comment_id"].as_str().expect("id");
        let target = if action == "remove" {
            sticker_id
        } else {
            &comment_id
        };
        let n = h.receiver.posts.lock().expect("lock").len() + 1;
        let (status, body) = h
            .control(
                &format!("comments/{target}/{action}"),
                json!({"message": "edited text"}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let posts = h.posts(n).await;
        assert_eq!(
            posts[n - 1].2["entry"][0]["changes"][0]["value"]["verb"],
            verb
        );
    }

    // The Page's public reply comes back in feed, from the Page.
    let n = h.receiver.posts.lock().expect("lock").len() + 1;
    let (status, _, body) = h
        .graph_post(
            &format!("{comment_id}/comments"),
            json!({"message": "Tomorrow!"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply_id = body["id"].as_str().expect("id");
    let posts = h.posts(n).await;
    let value = &posts[n - 1].2["entry"][0]["changes"][0]["value"];
    assert_eq!(value["from"]["id"], h.config.page_id);
    assert_eq!(value["comment_id"], reply_id);
    assert_eq!(value["parent_id"], comment_id);
}

#[tokio::test]
async fn comments_list_with_cursors_and_order() {
    let h = Harness::new().await;
    let post_id = h.sim.page_post("Launch");
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, c) = h
            .control(
                "comments",
                json!({"parent_id": post_id, "psid": format!("95{n}"), "message": format!("c{n}")}),
            )
            .await;
        ids.push(c["comment_id"].as_str().expect("id").to_owned());
        h.advance(1);
    }
    h.control(
        "comments",
        json!({"parent_id": ids[0], "psid": "959", "message": "reply"}),
    )
    .await;
    let (status, _, page) = h
        .graph_get(&format!(
            "{post_id}/comments?limit=2&fields=id,message,from,created_time,parent"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"][0]["message"], "c0");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let next = page["paging"]["next"].as_str().expect("next");
    let (_, _, rest) = read(h.http.get(next).send().await.expect("next")).await;
    assert_eq!(rest["data"][0]["message"], "c2");
    assert!(rest["paging"].get("next").is_none());

    let (_, _, newest) = h
        .graph_get(&format!(
            "{post_id}/comments?order=reverse_chronological&filter=stream"
        ))
        .await;
    let list = newest["data"].as_array().expect("data");
    assert_eq!(list.len(), 4, "stream includes replies");
    assert_eq!(list[0]["message"], "reply");
    let (_, _, replies) = h.graph_get(&format!("{}/comments", ids[0])).await;
    assert_eq!(replies["data"][0]["message"], "reply");
    let (_, _, hidden) = h.graph_post(&ids[1], json!({"is_hidden": true})).await;
    assert_eq!(hidden["success"], true);
    let (_, _, one) = h
        .graph_get(&format!("{}?fields=is_hidden,can_reply_privately", ids[1]))
        .await;
    assert_eq!(one["is_hidden"], true);
    assert_eq!(one["can_reply_privately"], true);
}

#[tokio::test]
async fn private_replies_are_once_per_comment_within_7_days() {
    let h = Harness::subscribed().await;
    let post_id = h.sim.page_post("Sale");
    let (_, c) = h
        .control(
            "comments",
            json!({"parent_id": post_id, "psid": "9600", "message": "price?"}),
        )
        .await;
    let comment_id = c["comment_id"].as_str().expect("id").to_owned();
    let private = json!({"recipient": {"comment_id": comment_id}, "message": {"text": "DM'd you"}});
    let (status, body) = h.send(private.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recipient_id"], "9600");
    let (status, body) = h.send(private).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 10900);

    // No window until the person answers in Messenger.
    let (_, body) = h.send(text_reply("9600", "follow-up")).await;
    assert_eq!(error_code(&body), (10, Some(2_018_278)));
    h.customer("9600", "ok here").await;
    let (status, _) = h.send(text_reply("9600", "follow-up")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, old) = h
        .control(
            "comments",
            json!({"parent_id": post_id, "psid": "9601", "message": "old"}),
        )
        .await;
    h.advance(7 * DAY + 1);
    let (_, body) = h
        .send(json!({"recipient": {"comment_id": old["comment_id"]}, "message": {"text": "late"}}))
        .await;
    assert_eq!(error_code(&body).0, 10903);
    let (_, _, own) = h
        .graph_post(
            &format!("{post_id}/comments"),
            json!({"message": "by the Page"}),
        )
        .await;
    let (_, body) = h
        .send(json!({"recipient": {"comment_id": own["id"]}, "message": {"text": "self"}}))
        .await;
    assert_eq!(error_code(&body).0, 10903);
    let sent = h.sim.sent_messages();
    assert_eq!(sent[0].comment_id.as_deref(), Some(comment_id.as_str()));
}

// ----- step 5: WhatsApp Cloud API ---------------------------------------------------------------

async fn wa_send(h: &Harness, to: &str, body: &str) -> (StatusCode, Value) {
    let path = format!("{}/messages", h.config.phone_number_id);
    let url = format!("{}/v23.0/{path}", h.base);
    let response = h
        .http
        .post(url)
        .bearer_auth(&h.config.whatsapp_access_token)
        .json(
            &json!({"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": to, "type": "text", "text": {"body": body}}),
        )
        .send()
        .await
        .expect("request");
    let (status, _, body) = read(response).await;
    (status, body)
}

/// Every status callback received so far, in arrival order: (wamid, status, error code).
fn wa_statuses(posts: &[(String, String, Value)]) -> Vec<(String, String, Option<u64>)> {
    posts
        .iter()
        .filter(|p| p.2["object"] == "whatsapp_business_account")
        .flat_map(|p| {
            p.2["entry"][0]["changes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| {
            c["value"]["statuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
                s["errors"][0]["code"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn whatsapp_inbound_carries_contacts_with_wa_id_and_user_id_signed_like_the_rest() {
    let h = Harness::subscribed().await;
    let (status, body) = h
        .control(
            "whatsapp/messages",
            json!({"wa_id": "16505551234", "name": "Sheena", "text": "注文が届きません"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user_id = body["user_id"].as_str().expect("user_id").to_owned();
    assert!(user_id.starts_with("US."));
    let posts = h.posts(1).await;
    let (raw, signature, value) = &posts[0];
    assert_eq!(signature, &meta::sign(&h.config.app_secret, raw.as_bytes()));
    assert!(raw.is_ascii());
    assert_eq!(value["object"], "whatsapp_business_account");
    assert_eq!(value["entry"][0]["id"], h.config.waba_id);
    let change = &value["entry"][0]["changes"][0];
    assert_eq!(change["field"], "messages");
    let v = &change["value"];
    assert_eq!(v["metadata"]["phone_number_id"], h.config.phone_number_id);
    assert_eq!(v["contacts"][0]["wa_id"], "16505551234");
    assert_eq!(v["contacts"][0]["user_id"], user_id);
    let message = &v["messages"][0];
    assert_eq!(message["from"], "16505551234");
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "注文が届きません");
    assert!(message["timestamp"].is_string(), "timestamps are strings");
    assert!(message["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("wamid.")));

    // The same person without a phone number in a later webhook.
    h.control(
        "whatsapp/messages",
        json!({"user_id": user_id, "text": "again", "hide_phone": true}),
    )
    .await;
    let posts = h.posts(2).await;
    let v = &posts[1].2["entry"][0]["changes"][0]["value"];
    assert!(v["contacts"][0].get("wa_id").is_none());
    assert_eq!(v["contacts"][0]["user_id"], user_id);
}

#[tokio::test]
async fn whatsapp_sends_inside_the_window_report_statuses_and_131047_outside() {
    let h = Harness::subscribed().await;
    h.control(
        "whatsapp/messages",
        json!({"wa_id": "16505550001", "text": "hi"}),
    )
    .await;
    h.posts(1).await;
    let (status, body) = wa_send(&h, "16505550001", "hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["contacts"][0]["wa_id"], "16505550001");
    let wamid = body["messages"][0]["id"].as_str().expect("id").to_owned();
    let posts = h.posts(2).await;
    let statuses = wa_statuses(&posts);
    assert_eq!(
        statuses,
        vec![
            (wamid.clone(), "sent".into(), None),
            (wamid.clone(), "delivered".into(), None)
        ]
    );

    // Read arrives before a repeated delivered: out of order and duplicated, on request.
    let (status, _) = h
        .control(
            "whatsapp/statuses",
            json!({"id": wamid, "statuses": ["read", "delivered", "delivered"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let posts = h.posts(3).await;
    let tail: Vec<String> = wa_statuses(&posts)[2..]
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(tail, ["read", "delivered", "delivered"]);

    h.advance(DAY + 1);
    let (status, body) = wa_send(&h, "16505550001", "late").await;
    assert_eq!(status, StatusCode::OK, "accepted, then failed: {body}");
    let late = body["messages"][0]["id"].as_str().expect("id").to_owned();
    let posts = h.posts(4).await;
    assert_eq!(
        wa_statuses(&posts).last(),
        Some(&(late, "failed".into(), Some(131_047)))
    );

    // A template goes out anyway; an unknown one is refused.
    let template = |name: &str| {
        json!({"messaging_product": "whatsapp", "to": "16505550001", "type": "template",
            "template": {"name": name, "language": {"code": "en_US"}}})
    };
    let (status, _, _) = h
        .graph_post(
            &format!("{}/messages", h.config.phone_number_id),
            template("hello_world"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = h
        .graph_post(
            &format!("{}/messages", h.config.phone_number_id),
            template("nope"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 132_001);
    assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
    let sent = h.sim.whatsapp_sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].status, "failed");
}

#[tokio::test]
async fn whatsapp_throttling_is_130429_and_131056() {
    let h = Harness::new().await;
    let (_, body) = h.control("whatsapp/messages", json!({"text": "hi"})).await;
    let user_id = body["user_id"].as_str().expect("user").to_owned();
    h.control("config", json!({"whatsapp_pair_interval_ms": 6000}))
        .await;
    let (status, _) = wa_send(&h, &user_id, "one").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = wa_send(&h, &user_id, "two").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 131_056);
    h.advance(6);
    h.control("rate-limit", json!({"limit": 1})).await;
    let (status, _) = wa_send(&h, &user_id, "three").await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = wa_send(&h, &user_id, "four").await;
    assert_eq!(error_code(&body).0, 130_429);
}

// ----- step 5: Instagram ------------------------------------------------------------------------

impl Harness {
    async fn ig_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/v23.0/{path}", self.base))
            .bearer_auth(&self.config.instagram_access_token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let (status, _, body) = read(response).await;
        (status, body)
    }

    async fn ig_get(&self, path_and_query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v23.0/{path_and_query}", self.base))
            .bearer_auth(&self.config.instagram_access_token)
            .send()
            .await
            .expect("request");
        let (status, _, body) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test]
async fn instagram_dms_come_with_echoes_story_mentions_and_the_1000_byte_limit() {
    let h = Harness::subscribed().await;
    let (status, body) = h
        .control(
            "instagram/messages",
            json!({"igsid": "6001", "username": "mina.k", "text": "안녕하세요"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posts = h.posts(1).await;
    let (raw, signature, value) = &posts[0];
    assert_eq!(signature, &meta::sign(&h.config.app_secret, raw.as_bytes()));
    assert_eq!(value["object"], "instagram");
    assert_eq!(value["entry"][0]["id"], h.config.ig_user_id);
    let item = &value["entry"][0]["messaging"][0];
    assert_eq!(item["sender"]["id"], "6001");
    assert_eq!(item["recipient"]["id"], h.config.ig_user_id);
    assert_eq!(item["message"]["text"], "안녕하세요");

    // `me` with the Instagram token is the account.
    let (status, body) = h
        .ig_post(
            "me/messages",
            json!({"recipient": {"id": "6001"}, "message": {"text": "반가워요"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posts = h.posts(2).await;
    let echo = &posts[1].2["entry"][0]["messaging"][0];
    assert_eq!(echo["message"]["is_echo"], true);
    assert_eq!(echo["sender"]["id"], h.config.ig_user_id);

    // 334 Hangul syllables are 1002 bytes: under 1000 characters, over the limit.
    let long = "가".repeat(334);
    let (status, body) = h
        .ig_post(
            &format!("{}/messages", h.config.ig_user_id),
            json!({"recipient": {"id": "6001"}, "message": {"text": long}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 100);
    let fits = "가".repeat(333);
    let (status, _) = h
        .ig_post(
            "me/messages",
            json!({"recipient": {"id": "6001"}, "message": {"text": fits}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    h.advance(DAY + 1);
    let (_, body) = h
        .ig_post(
            "me/messages",
            json!({"recipient": {"id": "6001"}, "message": {"text": "late"}}),
        )
        .await;
    assert_eq!(error_code(&body), (10, Some(2_534_022)));

    h.control(
        "instagram/messages",
        json!({"igsid": "6001", "attachments": [{"type": "story_mention",
            "payload": {"url": "https://lookaside.example/story"}}]}),
    )
    .await;
    let posts = h.posts(4).await;
    let attachment = &posts[3].2["entry"][0]["messaging"][0]["message"]["attachments"][0];
    assert_eq!(attachment["type"], "story_mention");

    let conversations = h
        .ig_get("me/conversations?platform=instagram&fields=participants,messages{message}")
        .await;
    let first = &conversations["data"][0];
    assert_eq!(first["participants"]["data"][0]["username"], "mina.k");
    assert_eq!(first["messages"]["data"].as_array().map(Vec::len), Some(4));
    // Messenger's list does not show Instagram threads.
    let (_, _, messenger) = h
        .graph_get(&format!(
            "{}/conversations?platform=messenger",
            h.config.page_id
        ))
        .await;
    assert_eq!(messenger["data"], json!([]));
}

#[tokio::test]
async fn instagram_comments_mentions_replies_and_private_replies() {
    let h = Harness::subscribed().await;
    let (_, media) = h
        .control("instagram/media", json!({"caption": "New cup"}))
        .await;
    let media_id = media["media_id"].as_str().expect("media").to_owned();
    let (status, c) = h
        .control(
            "instagram/comments",
            json!({"parent_id": media_id, "igsid": "6100", "username": "ken", "text": "いくら？"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let comment_id = c["comment_id"].as_str().expect("id").to_owned();
    let posts = h.posts(1).await;
    let change = &posts[0].2["entry"][0]["changes"][0];
    assert_eq!(change["field"], "comments");
    assert_eq!(change["value"]["from"]["id"], "6100");
    assert_eq!(change["value"]["from"]["username"], "ken");
    assert_eq!(change["value"]["media"]["id"], media_id);
    assert_eq!(change["value"]["text"], "いくら？");
    assert!(change["value"].get("parent_id").is_none());

    // A reply to a reply attaches to the top-level comment.
    let (_, reply) = h
        .control(
            "instagram/comments",
            json!({"parent_id": comment_id, "igsid": "6101", "text": "me too"}),
        )
        .await;
    let posts = h.posts(2).await;
    assert_eq!(
        posts[1].2["entry"][0]["changes"][0]["value"]["parent_id"],
        comment_id
    );
    let (status, body) = h
        .ig_post(
            &format!("{}/replies", reply["comment_id"].as_str().expect("id")),
            json!({"message": "¥500"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replies = h
        .ig_get(&format!(
            "{comment_id}/replies?fields=text,username,timestamp"
        ))
        .await;
    let list = replies["data"].as_array().expect("replies");
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["text"], "¥500");
    assert_eq!(list[1]["username"], h.config.ig_username);
    let comments = h
        .ig_get(&format!("{media_id}/comments?fields=text,from"))
        .await;
    assert_eq!(comments["data"][0]["from"]["id"], "6100");

    // Mentions: the webhook names the media and comment; the reply goes to /mentions.
    let (_, mention) = h
        .control(
            "instagram/mentions",
            json!({"text": "@switchboard.coffee love it"}),
        )
        .await;
    let posts = h.posts(3).await;
    let change = &posts[2].2["entry"][0]["changes"][0];
    assert_eq!(change["field"], "mentions");
    assert_eq!(change["value"]["media_id"], mention["media_id"]);
    assert_eq!(change["value"]["comment_id"], mention["comment_id"]);
    let (status, body) = h
        .ig_post(
            &format!("{}/mentions", h.config.ig_user_id),
            json!({"media_id": mention["media_id"], "comment_id": mention["comment_id"],
                "message": "Thank you!"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Private replies: once per comment, and at most N per hour.
    let private = |id: &str| json!({"recipient": {"comment_id": id}, "message": {"text": "DM"}});
    let (status, body) = h.ig_post("me/messages", private(&comment_id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recipient_id"], "6100");
    let (_, body) = h.ig_post("me/messages", private(&comment_id)).await;
    assert_eq!(error_code(&body).0, 10900);
    h.sim
        .update_config(|c| c.instagram_private_replies_per_hour = 1);
    let (_, body) = h
        .ig_post(
            "me/messages",
            private(reply["comment_id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(error_code(&body).0, 613);
    h.advance(3601);
    let (status, _) = h
        .ig_post(
            "me/messages",
            private(reply["comment_id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A Facebook comment id is not an Instagram one.
    let (_, body) = h.ig_post("me/messages", private("1_2")).await;
    assert_eq!(error_code(&body).0, 100);
}

// ----- tokens ---------------------------------------------------------------------------------

#[tokio::test]
async fn facebook_login_gives_a_long_lived_user_token_and_the_page_token() {
    let h = Harness::new().await;
    let (status, code) = h.control("oauth/code", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let code = code["code"].as_str().expect("code");
    let url = format!(
        "{}/v23.0/oauth/access_token?client_id={}&redirect_uri=https%3A%2F%2Fhub.example%2Fcb&client_secret={}&code={code}",
        h.base, h.config.app_id, h.config.app_secret
    );
    let (status, _, short) = read(h.http.get(&url).send().await.expect("exchange")).await;
    assert_eq!(status, StatusCode::OK, "{short}");
    assert_eq!(short["token_type"], "bearer");
    let (_, _, again) = read(h.http.get(&url).send().await.expect("exchange")).await;
    assert_eq!(error_code(&again), (100, Some(36009)));

    let short_token = short["access_token"].as_str().expect("token");
    let url = format!(
        "{}/v23.0/oauth/access_token?grant_type=fb_exchange_token&client_id={}&client_secret={}&fb_exchange_token={short_token}",
        h.base, h.config.app_id, h.config.app_secret
    );
    let (status, _, long) = read(h.http.get(&url).send().await.expect("exchange")).await;
    assert_eq!(status, StatusCode::OK, "{long}");
    assert_eq!(long["expires_in"], 5_184_000);
    let long_token = long["access_token"].as_str().expect("token");

    let get = |path: &str, token: &str| {
        h.http
            .get(format!("{}/v23.0/{path}", h.base))
            .bearer_auth(token)
            .send()
    };
    let (_, _, accounts) = read(get("me/accounts", long_token).await.expect("accounts")).await;
    assert_eq!(accounts["data"][0]["id"], h.config.page_id);
    assert_eq!(
        accounts["data"][0]["access_token"],
        h.config.page_access_token
    );
    let (_, _, refused) = read(
        get(&format!("{}/conversations", h.config.page_id), long_token)
            .await
            .expect("conversations"),
    )
    .await;
    assert_eq!(error_code(&refused).0, 210);

    // A Page token from a short-lived user token dies with it.
    let (_, _, accounts) = read(get("me/accounts", short_token).await.expect("accounts")).await;
    let short_page = accounts["data"][0]["access_token"].as_str().expect("token");
    assert_ne!(short_page, h.config.page_access_token);
    let response = get("me", short_page).await.expect("me");
    assert_eq!(response.status(), StatusCode::OK);
    h.advance(2 * 60 * 60);
    let (_, _, body) = read(get("me", short_page).await.expect("me")).await;
    assert_eq!(error_code(&body), (190, Some(463)));
    let response = get("me", long_token).await.expect("me");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn instagram_tokens_last_60_days_and_refresh_after_24_hours() {
    let h = Harness::new().await;
    let (_, short) = h.control("oauth/instagram_token", json!({})).await;
    let short = short["access_token"].as_str().expect("token");
    let url = format!(
        "{}/access_token?grant_type=ig_exchange_token&client_secret={}&access_token={short}",
        h.base, h.config.app_secret
    );
    let (status, _, long) = read(h.http.get(&url).send().await.expect("exchange")).await;
    assert_eq!(status, StatusCode::OK, "{long}");
    let long = long["access_token"].as_str().expect("token").to_owned();
    let me = h
        .http
        .get(format!("{}/v23.0/me?fields=user_id,username", h.base))
        .bearer_auth(&long)
        .send()
        .await
        .expect("me");
    let (_, _, me) = read(me).await;
    assert_eq!(me["username"], h.config.ig_username);

    let refresh = format!(
        "{}/refresh_access_token?grant_type=ig_refresh_token&access_token={long}",
        h.base
    );
    let (status, _, _) = read(h.http.get(&refresh).send().await.expect("refresh")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too new to refresh");
    h.advance(DAY);
    let (status, _, fresh) = read(h.http.get(&refresh).send().await.expect("refresh")).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let fresh = fresh["access_token"].as_str().expect("token").to_owned();
    h.advance(59 * DAY);
    let (_, _, body) = read(h.http.get(&refresh).send().await.expect("refresh")).await;
    assert_eq!(error_code(&body), (190, Some(463)), "the old token ran out");
    let (_, _, ok) = read(
        h.http
            .get(format!("{}/v23.0/me", h.base))
            .bearer_auth(&fresh)
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(ok["id"], h.config.ig_user_id);
}

#[tokio::test]
async fn postbacks_open_the_window_and_the_conversations_api_allows_2_calls_a_second() {
    let h = Harness::subscribed().await;
    h.customer("9700", "hi").await;
    h.posts(1).await;
    h.advance(2 * DAY);
    let (status, body) = h
        .control(
            "postbacks",
            json!({"psid": "9700", "title": "Talk to us", "payload": "AGENT"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posts = h.posts(2).await;
    let postback = &posts[1].2["entry"][0]["messaging"][0]["postback"];
    assert_eq!(postback["payload"], "AGENT");
    let (status, _) = h.send(text_reply("9700", "Here")).await;
    assert_eq!(status, StatusCode::OK);

    h.control("config", json!({"conversations_per_second": 2}))
        .await;
    let path = format!("{}/conversations?platform=messenger", h.config.page_id);
    for _ in 0..2 {
        let (status, _, _) = h.graph_get(&path).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, body) = h.graph_get(&path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, 80006);
    assert!(headers.contains_key("x-business-use-case-usage"));
    h.advance(1);
    let (status, _, _) = h.graph_get(&path).await;
    assert_eq!(status, StatusCode::OK, "a new second");
}
