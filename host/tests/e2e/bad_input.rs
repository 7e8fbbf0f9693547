//! End to end: webhook requests the hub must refuse. Each gets a clear 4xx, leaves no row
//! behind in the database, and the hub keeps working for the real traffic after it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard_testkit::hub::*;

/// A well-formed private-chat update from a customer the simulator never saw: a hub that
/// wrongly accepted it would have something to store.
fn update(chat_id: i64, text: &str) -> Value {
    telegram_update(900_000 + chat_id, chat_id, "Mallory", text)
}

/// A hub linked to the simulators with push delivery only (no polls that could store things
/// behind the test's back), and the simulator's webhook not set, so only the test posts.
async fn quiet_hub(dir: &std::path::Path, sims: &World) -> HubProcess {
    let hub = HubProcess::start(dir).await;
    connect(&hub, sims, Inbound::Webhook).await;
    // The simulator holds back updates until the test is done: its webhook goes elsewhere.
    let response = http()
        .post(format!(
            "{}/bot{BOT_TOKEN}/deleteWebhook",
            sims.telegram_url
        ))
        .send()
        .await
        .expect("deleteWebhook");
    assert!(response.status().is_success());
    hub
}

/// Posts `body` with `headers`, expects `status`, and checks the database did not change and no
/// conversation appeared.
async fn refused(
    hub: &HubProcess,
    installation: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    status: StatusCode,
) -> String {
    let before = row_counts(&hub.database_path()).await;
    let (got, text) = hub.post_webhook(installation, headers, body).await;
    assert_eq!(got, status, "answer body: {text}");
    assert!(!text.trim().is_empty(), "a {status} says why");
    assert_eq!(
        row_counts(&hub.database_path()).await,
        before,
        "nothing stored"
    );
    assert!(hub.api.conversations().await.is_empty());
    let health = hub.api.health().await;
    assert_eq!(health["outbox_pending"], 0, "{health}");
    text
}

/// After the refusals the real path works: the simulator delivers for real and a ticket appears.
async fn still_works(hub: &HubProcess, sims: &World) {
    sims.set_telegram_webhook(&format!("{}/webhooks/{TELEGRAM}", hub.url))
        .await;
    sims.customer_says(2002, "Grace", "Hello, is anyone there?");
    wait_until("the customer's ticket", EFFECT_TIMEOUT, || async {
        let subjects: Vec<String> = sims
            .tickets()
            .await
            .into_iter()
            .map(|t| t.subject)
            .collect();
        check(
            subjects.iter().any(|s| s == "Hello, is anyone there?"),
            || format!("{subjects:?}"),
        )
    })
    .await;
    let health = hub.api.health().await;
    assert_eq!(health["ok"], true, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_secret_is_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let hub = quiet_hub(dir.path(), &sims).await;
    let body = update(666, "Please refund me, I am definitely the customer")
        .to_string()
        .into_bytes();

    let wrong = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", "guessed-secret"),
    ];
    refused(
        &hub,
        TELEGRAM,
        &wrong,
        body.clone(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let missing = [("content-type", "application/json")];
    refused(&hub, TELEGRAM, &missing, body, StatusCode::UNAUTHORIZED).await;

    still_works(&hub, &sims).await;
    assert!(sims
        .tickets()
        .await
        .iter()
        .all(|t| !t.subject.contains("refund")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let hub = quiet_hub(dir.path(), &sims).await;
    let headers = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
    ];

    // Cut off mid-object, then not JSON at all: the plugin cannot read either.
    let whole = update(667, "half a message").to_string();
    let cut = whole.as_bytes()[..whole.len() / 2].to_vec();
    let why = refused(&hub, TELEGRAM, &headers, cut, StatusCode::BAD_REQUEST).await;
    assert!(
        why.to_lowercase().contains("update") || why.to_lowercase().contains("json"),
        "says what is wrong: {why}"
    );
    refused(
        &hub,
        TELEGRAM,
        &headers,
        b"<xml>nope</xml>".to_vec(),
        StatusCode::BAD_REQUEST,
    )
    .await;

    still_works(&hub, &sims).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let hub = quiet_hub(dir.path(), &sims).await;
    let headers = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
    ];

    // A well-formed, correctly authenticated update, just over the default 1 MiB limit.
    let mut big = update(668, "big");
    big["message"]["text"] = json!("x".repeat(1024 * 1024));
    refused(
        &hub,
        TELEGRAM,
        &headers,
        big.to_string().into_bytes(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    still_works(&hub, &sims).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_installation_is_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let hub = quiet_hub(dir.path(), &sims).await;
    let headers = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
    ];
    let body = update(669, "anyone home?").to_string().into_bytes();

    refused(
        &hub,
        "no-such-installation",
        &headers,
        body.clone(),
        StatusCode::NOT_FOUND,
    )
    .await;
    // An installation id that could never exist (not a slug) is just as unknown.
    refused(&hub, "..%2F..%2Fetc", &headers, body, StatusCode::NOT_FOUND).await;

    still_works(&hub, &sims).await;
}
