//! The admin API under `/api/v1` through the real HTTP server, on a real SQLite file with the
//! real plugins and the simulators: the token is required everywhere, and each endpoint has its
//! happy path and an error path, answered as `{"error": {"code", "message"}}`.

use crate::support::{send, TestServer, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard_simulators::faults::Fault;
use switchboard_testkit as kit;
use switchboard_testkit::hub::{
    check, telegram_update, wait_until, Sims, BOT_TOKEN, TELEGRAM_SECRET,
};

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every admin route, with a plausible path for each.
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/plugins"),
    ("POST", "/plugins?approve=true"),
    ("GET", "/plugins/telegram"),
    ("DELETE", "/plugins/telegram"),
    ("POST", "/plugins/telegram/versions/0.1.0/approve"),
    ("GET", "/installations"),
    ("POST", "/installations"),
    ("GET", "/installations/tg"),
    ("POST", "/installations/tg/test"),
    ("POST", "/installations/tg/enable"),
    ("POST", "/installations/tg/disable"),
    ("GET", "/links"),
    ("POST", "/links"),
    ("DELETE", "/links/l"),
    ("GET", "/jobs"),
    ("PATCH", "/jobs/j"),
    ("POST", "/jobs/j/run"),
    ("POST", "/jobs/j/pause"),
    ("POST", "/jobs/j/resume"),
    ("PUT", "/jobs/j/schedule"),
    ("GET", "/conversations"),
    ("GET", "/conversations/c"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/1/retry"),
    ("DELETE", "/dead-letters/1"),
    ("GET", "/health"),
];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

fn telegram_settings(api_base: &str) -> Value {
    json!({"bot_token": BOT_TOKEN, "api_base": api_base, "webhook_secret": TELEGRAM_SECRET})
}

fn zendesk_settings(sims: &Sims) -> Value {
    let config = sims.zendesk.config();
    json!({
        "subdomain": config.subdomain,
        "email": config.agent_email,
        "api_token": config.api_token,
        "base_url": sims.zendesk_url,
    })
}

/// The token a Prometheus scraper would use: it reads /metrics and nothing else.
const METRICS_TOKEN: &str = "metrics-scraper-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_requires_the_token() {
    let server = TestServer::start(&[("SWITCHBOARD_METRICS_TOKEN", METRICS_TOKEN)]).await;
    for (name, path) in ADMIN_ROUTES {
        let url = format!("/api/v1{path}");
        let missing = send(server.request(method(name), &url).json(&json!({}))).await;
        let message = missing.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(
            message.contains("Authorization"),
            "{name} {path}: {message}"
        );
        assert_eq!(
            missing
                .headers
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );

        let wrong = send(
            server
                .request(method(name), &url)
                .bearer_auth("wrong-token-wrong-token"),
        )
        .await;
        wrong.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        // The right token sent another way is refused too.
        let basic = send(
            server
                .request(method(name), &url)
                .basic_auth("admin", Some(TOKEN)),
        )
        .await;
        basic.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        // The metrics token opens /metrics only.
        let metrics_token = send(
            server
                .request(method(name), &url)
                .bearer_auth(METRICS_TOKEN),
        )
        .await;
        metrics_token.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // A refused request changed nothing.
    let reply = send(
        server
            .request(Method::POST, "/api/v1/installations")
            .bearer_auth("wrong-token-wrong-token")
            .json(&json!({"id": "x", "plugin_id": "telegram", "settings": {}})),
    )
    .await;
    reply.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(server.count("installations").await, 0);

    // Public: liveness, which reveals nothing.
    let health = send(server.request(Method::GET, "/health"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(health, json!({"ok": true}));

    // Metrics name every installation: they need the metrics token or the admin token.
    let anonymous = send(server.request(Method::GET, "/metrics")).await;
    let message = anonymous.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(message.contains("metrics_token"), "{message}");
    send(
        server
            .request(Method::GET, "/metrics")
            .bearer_auth("wrong-token-wrong-token"),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    for token in [METRICS_TOKEN, TOKEN] {
        let metrics = server
            .request(Method::GET, "/metrics")
            .bearer_auth(token)
            .send()
            .await
            .expect("metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_install_list_inspect_approve_remove() {
    let server = TestServer::start(&[]).await;
    let wasm = kit::component_once("plugins/zendesk");

    // Upload without approval: stored, with no host approved.
    let record = server
        .upload_plugin(&wasm, false)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(record["plugin_id"], "zendesk");
    assert_eq!(record["approved_hosts"], json!([]));
    let version = record["version"].as_str().expect("version").to_string();
    let requested: Vec<String> =
        serde_json::from_value(record["manifest"]["capabilities"]["http_hosts"].clone())
            .expect("requested hosts");
    assert!(!requested.is_empty());

    let list = server
        .admin_call(Method::GET, "/plugins")
        .await
        .expect(StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let inspected = server
        .admin_call(Method::GET, "/plugins/zendesk")
        .await
        .expect(StatusCode::OK);
    assert_eq!(inspected["sha256"], record["sha256"]);
    server
        .admin_call(Method::GET, "/plugins/nope")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Approve: only hosts the manifest requests.
    let approve = format!("/plugins/zendesk/versions/{version}/approve");
    let message = server
        .admin_json(
            Method::POST,
            &approve,
            json!({"hosts": ["evil.example.com"]}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(message.contains("evil.example.com"), "{message}");
    let approved = server
        .admin_json(Method::POST, &approve, json!({"hosts": requested}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(approved["approved_hosts"], json!(requested));
    server
        .admin_json(Method::POST, &approve, json!({"host": []}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");

    // Uploads that are not components.
    let message = send(
        server
            .admin(Method::POST, "/plugins")
            .header("content-type", "application/wasm")
            .body("hello"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("WebAssembly"), "{message}");
    send(
        server
            .admin(Method::POST, "/plugins")
            .header("content-type", "application/json")
            .body(wasm.to_vec()),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(
        server
            .admin(Method::POST, "/plugins?approve=maybe")
            .body(wasm.to_vec()),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");

    // Remove.
    server
        .admin_call(Method::DELETE, "/plugins/nope")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let removed = server
        .admin_call(Method::DELETE, "/plugins/zendesk")
        .await
        .expect(StatusCode::OK);
    assert_eq!(removed["removed_versions"], 1);
    let list = server
        .admin_call(Method::GET, "/plugins")
        .await
        .expect(StatusCode::OK);
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_links_and_jobs() {
    let sims = Sims::start().await;
    let server = TestServer::start(&[]).await;
    server
        .install_plugin(&kit::component_once("plugins/telegram"))
        .await;
    server
        .install_plugin(&kit::component_once("plugins/zendesk"))
        .await;

    // Installations.
    let created = server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": "tg", "plugin_id": "telegram", "settings": telegram_settings(&sims.telegram_url)}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["webhook_path"], "/webhooks/tg");
    assert_eq!(
        created["settings"]["bot_token"], "********",
        "secrets are masked: {created}"
    );
    server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": "zd", "plugin_id": "zendesk", "settings": zendesk_settings(&sims)}),
        )
        .await
        .expect(StatusCode::CREATED);

    let message = server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": "tg2", "plugin_id": "telegram", "settings": {}}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(
        message.contains("bot_token"),
        "names the missing setting: {message}"
    );
    server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": "tg", "plugin_id": "telegram", "settings": telegram_settings(&sims.telegram_url)}),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let message = server
        .admin_json(
            Method::POST,
            "/installations",
            json!({"id": "x", "plugin": "telegram"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        message.contains("plugin"),
        "names the unknown field: {message}"
    );

    let list = server
        .admin_call(Method::GET, "/installations")
        .await
        .expect(StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let one = server
        .admin_call(Method::GET, "/installations/tg")
        .await
        .expect(StatusCode::OK);
    assert_eq!(one["plugin_id"], "telegram");
    server
        .admin_call(Method::GET, "/installations/nope")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    let report = server
        .admin_call(Method::POST, "/installations/tg/test")
        .await
        .expect(StatusCode::OK);
    assert_eq!(report["ok"], true, "{report}");
    server
        .admin_call(Method::POST, "/installations/nope/test")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    let disabled = server
        .admin_call(Method::POST, "/installations/tg/disable")
        .await
        .expect(StatusCode::OK);
    assert_eq!(disabled["enabled"], false);
    let enabled = server
        .admin_call(Method::POST, "/installations/tg/enable")
        .await
        .expect(StatusCode::OK);
    assert_eq!(enabled["enabled"], true);
    server
        .admin_call(Method::POST, "/installations/nope/enable")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Links.
    let link = server
        .admin_json(
            Method::POST,
            "/links",
            json!({"id": "tg-zd", "social_installation": "tg", "helpdesk_installation": "zd",
                   "settings": {"reopen_solved": true, "tags": ["vip"]}}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(link["settings"]["reopen_solved"], true);
    server
        .admin_json(
            Method::POST,
            "/links",
            json!({"id": "backwards", "social_installation": "zd", "helpdesk_installation": "tg"}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let links = server
        .admin_call(Method::GET, "/links")
        .await
        .expect(StatusCode::OK);
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{links}");
    assert_eq!(
        server
            .admin_call(Method::DELETE, "/links/tg-zd")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    server
        .admin_call(Method::DELETE, "/links/tg-zd")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Jobs: one per stream of each installation.
    let jobs = server
        .admin_call(Method::GET, "/jobs")
        .await
        .expect(StatusCode::OK);
    let job = jobs
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["installation_id"] == "tg"))
        .unwrap_or_else(|| panic!("a job for tg in {jobs}"))
        .clone();
    let id = job["id"].as_str().expect("job id").to_string();

    let paused = server
        .admin_call(Method::POST, &format!("/jobs/{id}/pause"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(paused["paused"], true);
    let resumed = server
        .admin_call(Method::POST, &format!("/jobs/{id}/resume"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(resumed["paused"], false);
    let scheduled = server
        .admin_json(
            Method::PUT,
            &format!("/jobs/{id}/schedule"),
            json!({"schedule": "*/5 * * * *", "time_zone": "Europe/Paris"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(scheduled["schedule"], "*/5 * * * *");
    assert_eq!(scheduled["time_zone"], "Europe/Paris");
    server
        .admin_json(
            Method::PUT,
            &format!("/jobs/{id}/schedule"),
            json!({"schedule": "every tuesday"}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let patched = server
        .admin_json(
            Method::PATCH,
            &format!("/jobs/{id}"),
            json!({"paused": true}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched["paused"], true);
    server
        .admin_json(Method::PATCH, &format!("/jobs/{id}"), json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");

    let run = server
        .admin_call(Method::POST, &format!("/jobs/{id}/run"))
        .await
        .expect(StatusCode::OK);
    assert!(run.is_object(), "a run record: {run}");
    server
        .admin_call(Method::POST, "/jobs/nope/run")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    server
        .admin_call(Method::POST, "/jobs/nope/pause")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // A plugin in use is not removed.
    server
        .admin_call(Method::DELETE, "/plugins/telegram")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
}

/// A customer writes through the webhook; Zendesk refuses tickets for a while, so each new
/// conversation's ticket becomes a dead letter; one is retried once Zendesk works again, the
/// other discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_and_dead_letters() {
    let sims = Sims::start().await;
    let server = TestServer::start_with_workers(&[("SWITCHBOARD_OUTBOX_MAX_ATTEMPTS", "1")]).await;
    server
        .install_plugin(&kit::component_once("plugins/telegram"))
        .await;
    server
        .install_plugin(&kit::component_once("plugins/zendesk"))
        .await;
    for (id, plugin, settings) in [
        ("tg", "telegram", telegram_settings(&sims.telegram_url)),
        ("zd", "zendesk", zendesk_settings(&sims)),
    ] {
        server
            .admin_json(
                Method::POST,
                "/installations",
                json!({"id": id, "plugin_id": plugin, "settings": settings}),
            )
            .await
            .expect(StatusCode::CREATED);
    }
    server
        .admin_json(
            Method::POST,
            "/links",
            json!({"id": "tg-zd", "social_installation": "tg", "helpdesk_installation": "zd"}),
        )
        .await
        .expect(StatusCode::CREATED);
    // Only webhooks in this test: no polling.
    let jobs = server
        .admin_call(Method::GET, "/jobs")
        .await
        .expect(StatusCode::OK);
    for job in jobs.as_array().into_iter().flatten() {
        let id = job["id"].as_str().expect("job id");
        server
            .admin_call(Method::POST, &format!("/jobs/{id}/pause"))
            .await
            .expect(StatusCode::OK);
    }

    assert_eq!(
        server
            .admin_call(Method::GET, "/conversations")
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    assert_eq!(
        server
            .admin_call(Method::GET, "/dead-letters")
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    server
        .admin_call(Method::GET, "/conversations/nope")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    server
        .admin_call(Method::POST, "/dead-letters/999/retry")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    server
        .admin_call(Method::DELETE, "/dead-letters/999")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let message = server
        .admin_call(Method::POST, "/dead-letters/first/retry")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("URL path"), "{message}");

    sims.zendesk_fault(Fault::Status { status: 422 }, 1000, Some("/api/v2/tickets"));
    for (update_id, chat, name) in [(8001, 6001, "Ada"), (8002, 6002, "Bob")] {
        let update = telegram_update(update_id, chat, name, &format!("Hello from {name}"));
        let reply = send(
            server
                .request(Method::POST, "/webhooks/tg")
                .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
                .json(&update),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    let conversations = wait_until("two conversations", WAIT, || async {
        let list = server
            .admin_call(Method::GET, "/conversations")
            .await
            .expect(StatusCode::OK);
        check(list.as_array().map(Vec::len) == Some(2), || {
            list.to_string()
        })?;
        Ok(list)
    })
    .await;
    let id = conversations[0]["id"]
        .as_str()
        .expect("conversation id")
        .to_string();
    let detail = server
        .admin_call(Method::GET, &format!("/conversations/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(
        detail["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "messages: {detail}"
    );
    assert!(detail["tickets"].is_array(), "tickets: {detail}");

    let dead = wait_until("two dead letters", WAIT, || async {
        let list = server
            .admin_call(Method::GET, "/dead-letters")
            .await
            .expect(StatusCode::OK);
        check(list.as_array().map(Vec::len) == Some(2), || {
            list.to_string()
        })?;
        Ok(list)
    })
    .await;
    let health = server
        .admin_call(Method::GET, "/health")
        .await
        .expect(StatusCode::OK);
    assert_eq!(health["dead_letters"], 2, "{health}");

    sims.zendesk.faults().clear();
    let retry_id = dead[0]["id"].as_i64().expect("numeric dead letter id");
    let discard_id = dead[1]["id"].as_i64().expect("numeric dead letter id");
    assert_eq!(
        server
            .admin_call(Method::POST, &format!("/dead-letters/{retry_id}/retry"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        server
            .admin_call(Method::DELETE, &format!("/dead-letters/{discard_id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    wait_until("the retried ticket", WAIT, || async {
        let tickets = sims.tickets();
        check(tickets.len() == 1, || format!("{tickets:?}"))
    })
    .await;
    assert_eq!(
        server
            .admin_call(Method::GET, "/dead-letters")
            .await
            .expect(StatusCode::OK),
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_say_what_and_where() {
    let server = TestServer::start(&[]).await;

    let message = send(
        server
            .admin(Method::POST, "/installations")
            .header("content-type", "application/json")
            .body("{\n  \"id\": \"x\",\n  oops\n}"),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("line 3 column"), "says where: {message}");

    let message = server
        .admin_json(
            Method::POST,
            "/links",
            json!({"id": "l", "social_installation": 5, "helpdesk_installation": "zd"}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("invalid type"), "says what: {message}");

    send(
        server
            .admin(Method::POST, "/links")
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await
    .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let message = server
        .admin_call(Method::GET, "/nowhere")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert!(message.contains("/api/v1/nowhere"), "{message}");
    let reply = server.admin_call(Method::PATCH, "/plugins").await;
    reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(
        reply.headers.get("allow").is_some(),
        "405 says what is allowed"
    );

    let health = server
        .admin_call(Method::GET, "/health")
        .await
        .expect(StatusCode::OK);
    assert_eq!(health["ok"], true);
    assert_eq!(health["database"], true);
}
