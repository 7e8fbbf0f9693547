//! `/webhooks/{installation}` through the real HTTP server, the real Telegram plugin and a real
//! SQLite file: bad deliveries get a clear 4xx and leave nothing behind; good ones are stored
//! once, however often they arrive.

use crate::support::{send, Reply, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use switchboard_testkit as kit;
use switchboard_testkit::hub::{telegram_update, BOT_TOKEN, TELEGRAM_SECRET};

const INSTALLATION: &str = "telegram-main";
/// Small, so tests can exceed it cheaply.
const LIMIT: usize = 4096;

/// A server with the Telegram plugin and one installation of it (no workers: what a webhook
/// stores stays visible as a row).
async fn telegram_server() -> TestServer {
    let server = TestServer::start(&[("SWITCHBOARD_WEBHOOK_BODY_LIMIT", "4096")]).await;
    server
        .install_plugin(&kit::component_once("plugins/telegram"))
        .await;
    server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": INSTALLATION, "plugin_id": "telegram", "settings": {
                "bot_token": BOT_TOKEN,
                // Never called: webhooks need no outbound request.
                "api_base": "http://127.0.0.1:9",
                "webhook_secret": TELEGRAM_SECRET,
            }}),
        )
        .await
        .expect(StatusCode::CREATED);
    server
}

async fn post(
    server: &TestServer,
    installation: &str,
    secret: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = server
        .request(Method::POST, &format!("/webhooks/{installation}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_update_is_stored_once_however_often_it_arrives() {
    let server = telegram_server().await;
    let update = telegram_update(7001, 5001, "Ada", "Hello, where is my parcel?").to_string();

    let reply = post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(server.count("inbound_events").await, 1);

    // Telegram redelivers when unsure; the second copy is acknowledged and deduplicated.
    let reply = post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(server.count("inbound_events").await, 1);
}

/// Many deliveries at once share the intake's transactions: each is answered 200 only once
/// stored, and every update is stored exactly once, redeliveries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_each_stored_once() {
    let server = telegram_server().await;
    let updates: Vec<String> = (0..40)
        .map(|n| telegram_update(8000 + n, 6000 + n, "Ada", &format!("message {n}")).to_string())
        .collect();
    // Every update twice, all in flight together.
    let replies = futures::future::join_all(
        updates
            .iter()
            .chain(&updates)
            .map(|update| post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update.clone())),
    )
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(server.count("inbound_events").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_secret_is_401_and_nothing_is_stored() {
    let server = telegram_server().await;
    let update = telegram_update(7002, 5002, "Eve", "let me in").to_string();

    let message = post(
        &server,
        INSTALLATION,
        Some("not-the-secret"),
        update.clone(),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(message.to_lowercase().contains("secret"), "{message}");
    post(&server, INSTALLATION, None, update.clone())
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // GET reaches the plugin too (for handshakes); Telegram's refuses it without the secret.
    send(server.request(Method::GET, &format!("/webhooks/{INSTALLATION}")))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(server.count("inbound_events").await, 0);

    // The hub is unaffected: the genuine delivery still goes through.
    post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update)
        .await
        .expect(StatusCode::OK);
    assert_eq!(server.count("inbound_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_clear_400_and_nothing_is_stored() {
    let server = telegram_server().await;
    let message = post(
        &server,
        INSTALLATION,
        Some(TELEGRAM_SECRET),
        r#"{"update_id": 1, "message": {"#,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("line 1 column"), "says where: {message}");

    let message = post(
        &server,
        INSTALLATION,
        Some(TELEGRAM_SECRET),
        r#"{"message": 3}"#,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        message.contains("invalid type") && message.contains("line 1 column"),
        "says what and where: {message}"
    );
    assert_eq!(server.count("inbound_events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_and_nothing_is_stored() {
    let server = telegram_server().await;
    let text = "x".repeat(LIMIT);
    let update = telegram_update(7003, 5003, "Big", &text).to_string();
    assert!(update.len() > LIMIT);

    // With a Content-Length: refused before the body is read.
    post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update.clone())
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Chunked, without a length: cut off once it grows past the limit.
    let (status, body) = post_chunked(
        &server,
        &format!("/webhooks/{INSTALLATION}"),
        update.as_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    assert_eq!(server.count("inbound_events").await, 0);

    // Just under the limit is fine.
    let fits = telegram_update(7004, 5003, "Big", "small enough").to_string();
    post(&server, INSTALLATION, Some(TELEGRAM_SECRET), fits)
        .await
        .expect(StatusCode::OK);
    assert_eq!(server.count("inbound_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_disabled_installations_are_404() {
    let server = telegram_server().await;
    let update = telegram_update(7005, 5005, "Zed", "anyone there?").to_string();

    post(
        &server,
        "no-such-installation",
        Some(TELEGRAM_SECRET),
        update.clone(),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    server
        .admin_call(
            Method::POST,
            &format!("/installations/{INSTALLATION}/disable"),
        )
        .await
        .expect(StatusCode::OK);
    post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update.clone())
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(server.count("inbound_events").await, 0);

    server
        .admin_call(
            Method::POST,
            &format!("/installations/{INSTALLATION}/enable"),
        )
        .await
        .expect(StatusCode::OK);
    post(&server, INSTALLATION, Some(TELEGRAM_SECRET), update)
        .await
        .expect(StatusCode::OK);
    assert_eq!(server.count("inbound_events").await, 1);
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw connection,
/// as a sender streaming a body of unannounced size would; returns the status and the body.
async fn post_chunked(server: &TestServer, path: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-telegram-bot-api-secret-token: {TELEGRAM_SECRET}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; that is the point.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server did not answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

/// Sends `raw` on a new connection to the server; returns everything it answers, and whether
/// it closed the connection within `wait`.
async fn raw_exchange(
    server: &TestServer,
    raw: &[u8],
    wait: std::time::Duration,
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(raw).await.expect("write");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(wait, socket.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_408_and_a_head_that_never_ends_is_cut_off() {
    let server = TestServer::start(&[
        ("SWITCHBOARD_BODY_READ_TIMEOUT_SECS", "1"),
        ("SWITCHBOARD_HEADER_READ_TIMEOUT_SECS", "1"),
    ])
    .await;
    // A whole head, then 10 of the 100 bytes it announced, then nothing.
    let head = format!(
        "POST /webhooks/{INSTALLATION} HTTP/1.1\r\nHost: localhost\r\n\
         content-type: application/json\r\nContent-Length: 100\r\n\r\n{{\"update_"
    );
    let (answer, closed) =
        raw_exchange(&server, head.as_bytes(), std::time::Duration::from_secs(10)).await;
    assert!(closed, "the connection is closed after the answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    assert_eq!(server.count("inbound_events").await, 0);

    // Half a head: the connection is closed without an answer (and without a request).
    let (answer, closed) = raw_exchange(
        &server,
        b"POST /webhooks/x HTTP/1.1\r\nHost: local",
        std::time::Duration::from_secs(10),
    )
    .await;
    assert!(closed, "a head that never ends is cut off: {answer}");
    assert!(!answer.contains("200"), "{answer}");
}
