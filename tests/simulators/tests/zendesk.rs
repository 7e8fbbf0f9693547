//! The Zendesk simulator over real HTTP: each test serves a fresh account on a free port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use sha2::Sha256;
use switchboard_simulators::zendesk::{Config, OAuthToken, Simulator};

struct Harness {
    sim: Simulator,
    base: String,
    http: Client,
    config: Config,
}

impl Harness {
    async fn start(config: Config) -> Self {
        let sim = Simulator::new(config.clone());
        let (addr, _server) = sim
            .clone()
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("serve");
        Self {
            sim,
            base: format!("http://{addr}"),
            http: Client::new(),
            config,
        }
    }

    async fn relaxed() -> Self {
        Self::start(Config::default().relaxed()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth(
            format!("{}/token", self.config.agent_email),
            Some(&self.config.api_token),
        )
    }

    async fn get(&self, path: &str) -> Response {
        self.authed(self.http.get(self.url(path)))
            .send()
            .await
            .expect("GET")
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.authed(self.http.post(self.url(path)))
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    async fn put(&self, path: &str, body: Value) -> Response {
        self.authed(self.http.put(self.url(path)))
            .json(&body)
            .send()
            .await
            .expect("PUT")
    }

    /// Creates a ticket for an inline requester and returns its id.
    async fn ticket(&self, subject: &str) -> u64 {
        let response = self
            .post(
                "/api/v2/tickets",
                json!({"ticket": {"subject": subject, "comment": {"body": format!("{subject} body")},
                    "requester": {"name": "Casey", "email": "casey@example.com"}}}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["ticket"]["id"].as_u64().expect("ticket id")
    }
}

async fn json_of(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn auth_failures_and_scopes() {
    let config = Config {
        oauth_tokens: vec![
            OAuthToken::new("read-only", &["read"]),
            OAuthToken::new("rw", &["read", "write"]),
        ],
        ..Config::default().relaxed()
    };
    let h = Harness::start(config).await;
    let unauthenticated = json!({"error": "Couldn't authenticate you"});

    let (status, headers, body) = json_of(
        h.http
            .get(h.url("/api/v2/tickets"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, &body),
        (StatusCode::UNAUTHORIZED, &unauthenticated)
    );
    assert!(
        headers.contains_key("x-rate-limit-remaining"),
        "every response carries rate-limit headers"
    );

    let wrong = h
        .http
        .get(h.url("/api/v2/tickets"))
        .basic_auth("agent@switchboard.example/token", Some("nope"));
    let (status, _, body) = json_of(wrong.send().await.expect("send")).await;
    assert_eq!(
        (status, &body),
        (StatusCode::UNAUTHORIZED, &unauthenticated)
    );

    // A password (not `/token`) login is refused too.
    let password = h
        .http
        .get(h.url("/api/v2/tickets"))
        .basic_auth("agent@switchboard.example", Some("zendesk-sim-token"));
    assert_eq!(
        password.send().await.expect("send").status(),
        StatusCode::UNAUTHORIZED
    );

    let read = h
        .http
        .get(h.url("/api/v2/users/me.json"))
        .bearer_auth("read-only")
        .send()
        .await
        .expect("send");
    let (status, _, body) = json_of(read).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["role"], "admin");

    let write = h
        .http
        .post(h.url("/api/v2/tickets"))
        .bearer_auth("read-only")
        .json(&json!({"ticket": {}}));
    let (status, _, body) = json_of(write.send().await.expect("send")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Forbidden");

    let write = h
        .http
        .post(h.url("/api/v2/tickets"))
        .bearer_auth("rw")
        .json(&json!({"ticket": {"comment": {"body": "hi"}}}));
    assert_eq!(
        write.send().await.expect("send").status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn create_ticket_returns_201_with_location_and_api_fields() {
    let h = Harness::relaxed().await;
    let response = h
        .post(
            "/api/v2/tickets.json",
            json!({"ticket": {
                "subject": "Order late",
                "comment": {"body": "Where is my order?"},
                "requester": {"name": "Casey Customer", "email": "casey@example.com"},
                "external_id": "telegram:42:7",
                "priority": "high",
                "type": "question",
                "tags": ["telegram", "VIP customer"],
            }}),
        )
        .await;
    let (status, headers, body) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED);
    let t = &body["ticket"];
    let id = t["id"].as_u64().expect("id");
    assert_eq!(
        headers["location"].to_str().ok(),
        Some(format!("{}/api/v2/tickets/{id}.json", h.base).as_str())
    );
    assert_eq!(
        headers.get("ratelimit-limit").and_then(|v| v.to_str().ok()),
        Some("700")
    );
    assert_eq!(t["status"], "new");
    assert_eq!(t["description"], "Where is my order?");
    assert_eq!(t["via"]["channel"], "api");
    assert_eq!(t["external_id"], "telegram:42:7");
    assert_eq!(t["tags"], json!(["telegram", "vip", "customer"]));
    let created_at = t["created_at"].as_str().expect("created_at");
    assert_eq!(
        (created_at.len(), &created_at[10..11], &created_at[19..]),
        (20, "T", "Z")
    );
    assert!(t["generated_timestamp"].as_i64().is_some());

    // The inline requester became an end user, and submitted (authored) the first comment.
    let requester = t["requester_id"].as_u64().expect("requester");
    let (_, _, user) = json_of(h.get(&format!("/api/v2/users/{requester}")).await).await;
    assert_eq!(
        (
            user["user"]["email"].as_str(),
            user["user"]["role"].as_str()
        ),
        (Some("casey@example.com"), Some("end-user"))
    );
    let comments = h.sim.comments(id);
    assert_eq!(comments[0]["author_id"].as_u64(), Some(requester));
    assert_eq!(comments[0]["public"], true);

    // Listing by external id finds it; a second ticket with the same external id is allowed.
    h.post(
        "/api/v2/tickets",
        json!({"ticket": {"external_id": "telegram:42:7", "comment": {"body": "again"}}}),
    )
    .await;
    let (_, _, list) = json_of(h.get("/api/v2/tickets?external_id=telegram:42:7").await).await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["next_page"], Value::Null);

    let (status, _, body) = json_of(h.get("/api/v2/tickets/999").await).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "RecordNotFound", "description": "Not found"})
        )
    );
}

#[tokio::test]
async fn idempotency_key_miss_hit_mismatch_and_expiry() {
    let h = Harness::relaxed().await;
    let body = json!({"ticket": {"subject": "s", "comment": {"body": "b"}}});
    let send = |b: Value| {
        h.authed(h.http.post(h.url("/api/v2/tickets")))
            .header("Idempotency-Key", "msg-1")
            .json(&b)
            .send()
    };

    let (status, headers, first) = json_of(send(body.clone()).await.expect("send")).await;
    assert_eq!(
        (status, headers["x-idempotency-lookup"].to_str().ok()),
        (StatusCode::CREATED, Some("miss"))
    );

    let (status, headers, replay) = json_of(send(body.clone()).await.expect("send")).await;
    assert_eq!(
        (status, headers["x-idempotency-lookup"].to_str().ok()),
        (StatusCode::CREATED, Some("hit"))
    );
    assert_eq!(replay, first);
    assert_eq!(h.sim.tickets().len(), 1);

    let other = json!({"ticket": {"subject": "different", "comment": {"body": "b"}}});
    let (status, _, err) = json_of(send(other).await.expect("send")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "IdempotentRequestError");

    // After the 2 h TTL the key is forgotten.
    h.sim.advance_clock(Duration::from_secs(2 * 60 * 60 + 1));
    let (_, headers, _) = json_of(send(body).await.expect("send")).await;
    assert_eq!(headers["x-idempotency-lookup"].to_str().ok(), Some("miss"));
    assert_eq!(h.sim.tickets().len(), 2);
}

#[tokio::test]
async fn validation_errors_are_record_invalid_with_details() {
    let h = Harness::relaxed().await;
    let (status, _, body) = json_of(
        h.post(
            "/api/v2/tickets",
            json!({"ticket": {"comment": {"body": "x"}, "priority": "super"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "RecordInvalid");
    assert_eq!(body["description"], "Record validation errors");
    assert_eq!(body["details"]["priority"][0]["error"], "InvalidValue");

    let (status, _, body) = json_of(
        h.post(
            "/api/v2/tickets",
            json!({"ticket": {"subject": "no comment"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["details"]["base"][0]["description"],
        "Description: cannot be blank"
    );

    let (status, _, body) = json_of(
        h.post(
            "/api/v2/tickets",
            json!({"ticket": {"comment": {"body": "x"}, "status": "closed", "type": "bug"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["details"]["status"].is_array() && body["details"]["type"].is_array());

    let (status, _, body) = json_of(
        h.post("/api/v2/tickets", json!({"subject": "no root"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ParameterMissing"))
    );

    let text = h
        .authed(h.http.post(h.url("/api/v2/tickets")))
        .header("content-type", "text/plain")
        .body("{}");
    assert_eq!(
        text.send().await.expect("send").status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(
        h.sim.tickets().is_empty(),
        "nothing is created by a refused request"
    );
}

#[tokio::test]
async fn create_or_update_matches_external_id_case_insensitively() {
    let h = Harness::relaxed().await;
    let user = json!({"user": {"name": "Tg User", "external_id": "telegram:ABC", "skip_verify_email": true,
        "identities": [{"type": "twitter", "value": "tg_user"}]}});
    let (status, headers, created) =
        json_of(h.post("/api/v2/users/create_or_update", user).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key("location"));
    let id = created["user"]["id"].as_u64().expect("id");
    assert_eq!(
        (
            created["user"]["role"].as_str(),
            created["user"]["email"].as_str()
        ),
        (Some("end-user"), None)
    );

    let again = json!({"user": {"name": "Renamed", "external_id": "TELEGRAM:abc"}});
    let (status, _, updated) = json_of(h.post("/api/v2/users/create_or_update", again).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            updated["user"]["id"].as_u64(),
            updated["user"]["name"].as_str()
        ),
        (Some(id), Some("Renamed"))
    );

    let (_, _, found) = json_of(
        h.get("/api/v2/users/search.json?external_id=telegram%3Aabc")
            .await,
    )
    .await;
    assert_eq!(
        (found["count"].as_u64(), found["users"][0]["id"].as_u64()),
        (Some(1), Some(id))
    );
    let (_, _, many) = json_of(
        h.get("/api/v2/users/show_many?external_ids=telegram:abc,nobody")
            .await,
    )
    .await;
    assert_eq!(many["users"].as_array().map(Vec::len), Some(1));

    let (status, _, identity) = json_of(
        h.post(
            &format!("/api/v2/users/{id}/identities"),
            json!({"identity": {"type": "phone_number", "value": "+15550100"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, identity["identity"]["type"].as_str()),
        (StatusCode::CREATED, Some("phone_number"))
    );
    let (status, _, _) = json_of(
        h.post(
            &format!("/api/v2/users/{id}/identities"),
            json!({"identity": {"type": "pager", "value": "1"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, _, list) = json_of(h.get(&format!("/api/v2/users/{id}/identities")).await).await;
    assert_eq!(list["count"], 2);
}

#[tokio::test]
async fn comments_paginate_by_cursor_and_offset() {
    let h = Harness::relaxed().await;
    let id = h.ticket("many comments").await;
    for n in 0..4 {
        h.sim.agent_reply(id, &format!("reply {n}"), n % 2 == 0);
    }
    // 5 comments in pages of 2: 2 + 2 + 1.
    let mut bodies = Vec::new();
    let mut url = h.url(&format!("/api/v2/tickets/{id}/comments?page[size]=2"));
    for page in 0.. {
        assert!(page < 5, "pagination must end");
        let (status, _, body) =
            json_of(h.authed(h.http.get(&url)).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK);
        for c in body["comments"].as_array().expect("comments") {
            assert_eq!(c["type"], "Comment");
            bodies.push(c["body"].as_str().unwrap_or_default().to_owned());
        }
        if body["meta"]["has_more"] != true {
            break;
        }
        url = body["links"]["next"]
            .as_str()
            .expect("next link")
            .to_owned();
        assert!(
            url.starts_with(&h.base),
            "links are absolute and point back here: {url}"
        );
    }
    assert_eq!(
        bodies,
        [
            "many comments body",
            "reply 0",
            "reply 1",
            "reply 2",
            "reply 3"
        ]
    );
    assert_eq!(
        h.sim.comments(id)[2]["public"],
        false,
        "odd replies are internal notes"
    );

    let (_, _, page2) = json_of(
        h.get(&format!(
            "/api/v2/tickets/{id}/comments.json?page=2&per_page=2"
        ))
        .await,
    )
    .await;
    assert_eq!(page2["count"], 5);
    assert_eq!(page2["comments"][0]["body"], "reply 1");
    assert!(page2["next_page"]
        .as_str()
        .is_some_and(|u| u.contains("page=3")));
    assert!(page2["previous_page"].as_str().is_some());

    let (status, _, _) = json_of(
        h.get(&format!("/api/v2/tickets/{id}/comments?page=101"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = json_of(
        h.get(&format!("/api/v2/tickets/{id}/comments?page[size]=101"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn incremental_cursor_export_pages_to_end_of_stream_and_resumes() {
    let h = Harness::start(Config {
        export_page_size: 2,
        ..Config::default().relaxed()
    })
    .await;
    let ids = [
        h.ticket("a").await,
        h.ticket("b").await,
        h.ticket("c").await,
    ];

    let mut seen = Vec::new();
    let mut url = h.url("/api/v2/incremental/tickets/cursor.json?start_time=0");
    let cursor = loop {
        let (status, _, body) =
            json_of(h.authed(h.http.get(&url)).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(
            body["tickets"]
                .as_array()
                .expect("tickets")
                .iter()
                .filter_map(|t| t["id"].as_u64()),
        );
        if body["end_of_stream"] == true {
            break body["after_cursor"]
                .as_str()
                .expect("after_cursor")
                .to_owned();
        }
        assert_eq!(body["tickets"].as_array().map(Vec::len), Some(2));
        url = body["after_url"].as_str().expect("after_url").to_owned();
    };
    assert_eq!(seen, ids);

    // Nothing new: an empty page that keeps the cursor. Then an update shows up once.
    let (_, _, empty) = json_of(
        h.get(&format!(
            "/api/v2/incremental/tickets/cursor?cursor={cursor}"
        ))
        .await,
    )
    .await;
    assert_eq!(
        (
            empty["tickets"].as_array().map(Vec::len),
            &empty["end_of_stream"]
        ),
        (Some(0), &json!(true))
    );
    assert_eq!(empty["after_cursor"].as_str(), Some(cursor.as_str()));
    h.sim.set_status(ids[0], "pending");
    let (_, _, next) = json_of(
        h.get(&format!(
            "/api/v2/incremental/tickets/cursor?cursor={cursor}"
        ))
        .await,
    )
    .await;
    assert_eq!(next["tickets"][0]["id"].as_u64(), Some(ids[0]));
    assert_eq!(next["tickets"][0]["status"], "pending");
}

#[tokio::test]
async fn incremental_exports_enforce_window_admin_and_rate_limit() {
    // Zendesk's defaults: a 60 s window and 10 calls a minute.
    let h = Harness::start(Config::default()).await;
    h.ticket("fresh").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (status, _, body) = json_of(
        h.get(&format!(
            "/api/v2/incremental/tickets/cursor?start_time={now}"
        ))
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"error": "InvalidValue", "description": "Too recent start_time. Use a start_time older than 1 minute"})
    );

    // The new ticket stays hidden until it is a minute old.
    let path = format!(
        "/api/v2/incremental/tickets/cursor?start_time={}",
        now - 120
    );
    let (_, _, body) = json_of(h.get(&path).await).await;
    assert_eq!(body["tickets"].as_array().map(Vec::len), Some(0));
    h.sim.advance_clock(Duration::from_secs(61));
    let (_, _, body) = json_of(h.get(&path).await).await;
    assert_eq!(body["tickets"].as_array().map(Vec::len), Some(1));

    // The clock moved past the first calls, so this window holds one call so far.
    for _ in 1..10 {
        assert_eq!(h.get(&path).await.status(), StatusCode::OK);
    }
    let (status, headers, _) = json_of(h.get(&path).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|s| s > 0));

    let agent_only = Harness::start(Config {
        admin: false,
        ..Config::default().relaxed()
    })
    .await;
    let (status, _, _) = json_of(
        agent_only
            .get("/api/v2/incremental/ticket_events?start_time=0")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ticket_events_carry_comment_and_change_children() {
    let h = Harness::relaxed().await;
    let id = h.ticket("events").await;
    let reply = h.sim.agent_reply(id, "We are on it", true);
    h.sim.set_status(id, "solved");

    let (status, _, body) = json_of(
        h.get("/api/v2/incremental/ticket_events.json?start_time=0&include=comment_events")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = body["ticket_events"].as_array().expect("events");
    assert_eq!(
        (events.len(), &body["count"], &body["end_of_stream"]),
        (3, &json!(3), &json!(true))
    );
    assert!(body["end_time"].as_i64().is_some() && body["next_page"].as_str().is_some());
    assert!(events
        .iter()
        .all(|e| e["event_type"] == "Audit" && e["ticket_id"] == id));

    let reply_event = &events[1];
    assert_eq!(
        reply_event["updater_id"].as_u64(),
        Some(h.sim.human_agent_id())
    );
    let children = reply_event["child_events"].as_array().expect("children");
    let comment = children
        .iter()
        .find(|c| c["event_type"] == "Comment")
        .expect("comment child");
    assert_eq!(
        (
            comment["id"].as_u64(),
            comment["body"].as_str(),
            &comment["public"]
        ),
        (Some(reply), Some("We are on it"), &json!(true))
    );
    let opened = children
        .iter()
        .find(|c| c["event_type"] == "Change")
        .expect("status change");
    assert_eq!(
        (
            opened["field_name"].as_str(),
            opened["value"].as_str(),
            opened["previous_value"].as_str()
        ),
        (Some("status"), Some("open"), Some("new"))
    );

    let solved = &events[2]["child_events"][0];
    assert_eq!(
        (solved["status"].as_str(), solved["previous_value"].as_str()),
        (Some("solved"), Some("open"))
    );

    // Without comment_events, comments reduce to flags.
    let (_, _, plain) = json_of(
        h.get("/api/v2/incremental/ticket_events?start_time=0")
            .await,
    )
    .await;
    assert_eq!(plain["ticket_events"][1]["comment_present"], true);
    assert!(plain["ticket_events"][1]["child_events"]
        .as_array()
        .is_some_and(|c| c.iter().all(|e| e["event_type"] != "Comment")));
}

#[tokio::test]
async fn updates_respect_closed_safe_update_and_the_per_ticket_limit() {
    let h = Harness::start(Config {
        ticket_update_limit: Some(3),
        ..Config::default().relaxed()
    })
    .await;
    let id = h.ticket("updates").await;
    let path = format!("/api/v2/tickets/{id}.json");

    let (status, _, body) = json_of(
        h.put(&path, json!({"ticket": {"comment": {"body": "internal", "public": false}, "status": "pending", "additional_tags": ["x"]}}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["ticket"]["status"].as_str(), &body["ticket"]["tags"]),
        (Some("pending"), &json!(["x"]))
    );
    let stamp = body["ticket"]["updated_at"]
        .as_str()
        .expect("updated_at")
        .to_owned();
    assert_eq!(
        h.sim.comments(id).last().map(|c| c["public"].clone()),
        Some(json!(false))
    );

    // A stale stamp conflicts once the ticket has moved on.
    h.sim.advance_clock(Duration::from_secs(2));
    let (status, _, _) = json_of(
        h.put(
            &path,
            json!({"ticket": {"priority": "low", "safe_update": true, "updated_stamp": stamp}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = json_of(
        h.put(
            &path,
            json!({"ticket": {"priority": "high", "safe_update": true, "updated_stamp": stamp}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("UpdateConflict"))
    );

    h.put(&path, json!({"ticket": {"remove_tags": ["x"]}}))
        .await;
    let (status, headers, _) = json_of(
        h.put(&path, json!({"ticket": {"priority": "urgent"}}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));

    h.sim.set_status(id, "closed");
    h.sim.advance_clock(Duration::from_secs(601));
    let (status, _, body) = json_of(
        h.put(&path, json!({"ticket": {"comment": {"body": "too late"}}}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["details"]["status"][0]["description"],
        "closed prevents ticket update"
    );
}

#[tokio::test]
async fn budget_and_injected_faults_use_zendesk_errors() {
    let h = Harness::start(Config {
        rate_limit_per_minute: Some(2),
        ..Config::default().relaxed()
    })
    .await;
    let (_, headers, _) = json_of(h.get("/api/v2/users/me").await).await;
    assert_eq!(
        (
            headers["x-rate-limit"].to_str().ok(),
            headers["x-rate-limit-remaining"].to_str().ok()
        ),
        (Some("2"), Some("1"))
    );
    h.get("/api/v2/users/me").await;
    let (status, headers, body) = json_of(h.get("/api/v2/users/me").await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({"error": "RateLimited", "description": "Number of allowed API requests per minute exceeded"})
    );
    let retry: u64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry));

    // Faults via the control API, which needs no auth and is not budgeted.
    let control = |path: &str, body: Value| h.http.post(h.url(path)).json(&body).send();
    control("/_control/rate-limit", json!({"limit": null}))
        .await
        .expect("send");
    control(
        "/_control/faults",
        json!({"kind": "status", "status": 409, "path": "/tickets"}),
    )
    .await
    .expect("send");
    let (status, _, body) = json_of(
        h.post(
            "/api/v2/tickets",
            json!({"ticket": {"comment": {"body": "x"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CONFLICT,
            json!({"error": "DatabaseConflict", "description": "Database collision"})
        )
    );
    assert_eq!(
        h.post(
            "/api/v2/tickets",
            json!({"ticket": {"comment": {"body": "x"}}})
        )
        .await
        .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn control_api_plays_the_agent() {
    let h = Harness::relaxed().await;
    let id = h.ticket("control").await;
    let reply = h
        .http
        .post(h.url(&format!("/_control/tickets/{id}/agent_reply")))
        .json(&json!({"body": "Hello!", "public": true}));
    let (status, _, body) = json_of(reply.send().await.expect("send")).await;
    assert_eq!(status, StatusCode::OK);
    let comment_id = body["comment_id"].as_u64().expect("comment id");

    let solve = h
        .http
        .post(h.url(&format!("/_control/tickets/{id}/status")))
        .json(&json!({"status": "solved"}));
    assert_eq!(solve.send().await.expect("send").status(), StatusCode::OK);

    let (_, _, all) = json_of(
        h.http
            .get(h.url("/_control/tickets"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    let ticket = &all["tickets"][0];
    assert_eq!(
        (
            ticket["status"].as_str(),
            ticket["comments"][1]["id"].as_u64()
        ),
        (Some("solved"), Some(comment_id))
    );
    assert_eq!(
        ticket["comments"][1]["author_id"].as_u64(),
        Some(h.sim.human_agent_id())
    );
    assert_eq!(ticket["comments"][1]["via"]["channel"], "web");

    // Solved tickets reopen when the requester writes again.
    let requester = ticket["requester_id"].as_u64().expect("requester");
    let path = format!("/api/v2/tickets/{id}");
    let (_, _, body) = json_of(
        h.put(
            &path,
            json!({"ticket": {"comment": {"body": "Still broken", "author_id": requester}}}),
        )
        .await,
    )
    .await;
    assert_eq!(body["ticket"]["status"], "open");
}

/// What a webhook receiver saw.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A local webhook endpoint that fails the first `failures` requests with 503.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push(Received {
                    headers,
                    body: body.to_vec(),
                });
                if log.len() <= failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

async fn wait_for(seen: &Arc<Mutex<Vec<Received>>>, count: usize) -> Vec<Received> {
    for _ in 0..200 {
        let got = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {count} webhook requests");
}

#[tokio::test]
async fn webhooks_deliver_signed_event_payloads() {
    let h = Harness::relaxed().await;
    let (endpoint, seen) = receiver(0).await;
    let create = json!({"webhook": {"name": "hub", "endpoint": endpoint, "status": "active", "http_method": "POST",
        "request_format": "json", "subscriptions": ["zen:event-type:ticket.comment_added", "zen:event-type:ticket.status_changed"]}});
    let (status, _, hook) = json_of(h.post("/api/v2/webhooks", create).await).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let hook_id = hook["webhook"]["id"]
        .as_str()
        .expect("webhook id")
        .to_owned();
    let (_, _, secret) = json_of(
        h.get(&format!("/api/v2/webhooks/{hook_id}/signing_secret"))
            .await,
    )
    .await;
    assert_eq!(secret["signing_secret"]["algorithm"], "SHA256");
    let secret = secret["signing_secret"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let id = h.ticket("hooked").await;
    let comment_id = h.sim.agent_reply(id, "Reply from agent", true);
    let got = wait_for(&seen, 2).await;

    let mut types = Vec::new();
    for r in &got {
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let timestamp = header("x-zendesk-webhook-signature-timestamp");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
        mac.update(timestamp.as_bytes());
        mac.update(&r.body);
        assert_eq!(
            header("x-zendesk-webhook-signature"),
            STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(header("x-zendesk-webhook-id"), hook_id);
        assert_eq!(header("x-zendesk-account-id"), "10000001");
        assert!(!header("x-zendesk-webhook-invocation-id").is_empty());
        assert!(timestamp.ends_with('Z') && timestamp.len() == 20);

        let payload: Value = serde_json::from_slice(&r.body).expect("payload json");
        assert_eq!(payload["subject"], format!("zen:ticket:{id}"));
        assert_eq!(payload["detail"]["id"], id.to_string());
        match payload["type"].as_str() {
            Some("zen:event-type:ticket.comment_added") => {
                let c = &payload["event"]["comment"];
                assert_eq!(
                    (c["id"].as_str(), c["body"].as_str(), &c["is_public"]),
                    (
                        Some(comment_id.to_string().as_str()),
                        Some("Reply from agent"),
                        &json!(true)
                    )
                );
                assert_eq!(c["author"]["is_staff"], true);
            }
            Some("zen:event-type:ticket.status_changed") => {
                assert_eq!(
                    payload["event"],
                    json!({"current": "OPEN", "previous": "NEW"})
                );
            }
            other => panic!("unexpected event {other:?}"),
        }
        types.push(payload["type"].as_str().unwrap_or_default().to_owned());
    }
    types.sort();
    assert_eq!(
        types,
        [
            "zen:event-type:ticket.comment_added",
            "zen:event-type:ticket.status_changed"
        ]
    );
}

#[tokio::test]
async fn webhook_delivery_retries_server_errors_with_the_same_invocation() {
    let h = Harness::relaxed().await;
    let (endpoint, seen) = receiver(2).await;
    let create = json!({"webhook": {"name": "flaky", "endpoint": endpoint, "subscriptions": ["zen:event-type:ticket.status_changed"]}});
    assert_eq!(
        h.post("/api/v2/webhooks", create).await.status(),
        StatusCode::CREATED
    );
    let id = h.ticket("retry").await;
    h.sim.set_status(id, "solved");

    let got = wait_for(&seen, 3).await;
    let invocations: Vec<_> = got
        .iter()
        .filter_map(|r| r.headers.get("x-zendesk-webhook-invocation-id").cloned())
        .collect();
    assert!(
        invocations.windows(2).all(|w| w[0] == w[1]),
        "retries keep the invocation id"
    );
    for _ in 0..100 {
        if h.sim
            .webhook_deliveries()
            .first()
            .is_some_and(|d| d.delivered)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivery = h
        .sim
        .webhook_deliveries()
        .first()
        .cloned()
        .expect("delivery logged");
    assert_eq!(
        (delivery.attempts, delivery.last_status, delivery.delivered),
        (3, Some(200), true)
    );
}

#[tokio::test]
async fn ticket_events_page_on_whole_seconds() {
    let h = Harness::start(Config {
        export_page_size: 1,
        ..Config::default().relaxed()
    })
    .await;
    // Two audits in one second, then one a second later.
    h.sim.freeze_clock();
    let first = h.ticket("same second").await;
    h.sim.set_status(first, "open");
    h.sim.advance_clock(Duration::from_secs(1));
    let second = h.ticket("next second").await;

    let (_, _, page) = json_of(
        h.get("/api/v2/incremental/ticket_events?start_time=0")
            .await,
    )
    .await;
    // A page never splits a second, even past per_page.
    let ids: Vec<_> = page["ticket_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["ticket_id"].as_u64())
        .collect();
    assert_eq!(
        (ids, &page["end_of_stream"]),
        (vec![first, first], &json!(false))
    );
    let next = page["next_page"].as_str().expect("next_page").to_owned();
    let (_, _, page) = json_of(h.authed(h.http.get(&next)).send().await.expect("send")).await;
    assert_eq!(
        (
            page["ticket_events"][0]["ticket_id"].as_u64(),
            &page["end_of_stream"]
        ),
        (Some(second), &json!(true))
    );
}

#[tokio::test]
async fn chunked_request_bodies_are_accepted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::relaxed().await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let body = r#"{"ticket":{"comment":{"body":"chunked"}}}"#;
    let (a, b) = body.split_at(10);
    let auth = STANDARD.encode(format!(
        "{}/token:{}",
        h.config.agent_email, h.config.api_token
    ));
    let request = format!(
        "POST /api/v2/tickets HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(h.sim.tickets()[0]["description"], "chunked");
}

/// The time-based ticket export node-zendesk's `tickets.incremental` reads: both spellings,
/// `count`/`end_time`/`next_page`/`end_of_stream`, pages of `per_page` (default 1,000) that
/// end on a whole second, and the same start-time and rate rules as the cursor export.
#[tokio::test]
async fn time_based_ticket_export_pages_by_end_time() {
    let h = Harness::start(Config {
        export_page_size: 2,
        ..Config::default().relaxed()
    })
    .await;
    h.sim.freeze_clock();
    let first = h.ticket("one").await;
    let second = h.ticket("two").await;
    h.sim.advance_clock(Duration::from_secs(5));
    let third = h.ticket("three").await;
    h.sim.advance_clock(Duration::from_secs(5));

    let (status, _, page) =
        json_of(h.get("/api/v2/incremental/tickets.json?start_time=0").await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = |page: &Value| -> Vec<u64> {
        page["tickets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_u64())
            .collect()
    };
    assert_eq!(ids(&page), vec![first, second]);
    assert_eq!(page["count"], json!(2));
    assert_eq!(page["end_of_stream"], json!(false));
    let end_time = page["end_time"].as_i64().expect("end_time");
    assert_eq!(
        Some(end_time),
        page["tickets"][1]["generated_timestamp"].as_i64()
    );
    let next = page["next_page"].as_str().expect("next_page").to_owned();
    assert!(
        next.starts_with(&h.base)
            && next.contains("/api/v2/incremental/tickets.json?")
            && next.contains(&format!("start_time={}", end_time + 1)),
        "{next}"
    );
    let (_, _, page) = json_of(h.authed(h.http.get(&next)).send().await.expect("send")).await;
    assert_eq!(ids(&page), vec![third]);
    assert_eq!(page["end_of_stream"], json!(true));

    // Without `.json`, from the last page's end_time: that second again, as Zendesk does.
    let path = format!(
        "/api/v2/incremental/tickets?start_time={}",
        page["end_time"]
    );
    let (status, _, page) = json_of(h.get(&path).await).await;
    assert_eq!((status, ids(&page)), (StatusCode::OK, vec![third]));

    let (status, _, body) = json_of(h.get("/api/v2/incremental/tickets.json").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, _) = json_of(
        h.get("/api/v2/incremental/tickets.json?start_time=0&per_page=1001")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The real window and the shared 10-a-minute limit apply here too.
    let strict = Harness::start(Config::default()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (status, _, body) = json_of(
        strict
            .get(&format!(
                "/api/v2/incremental/tickets.json?start_time={now}"
            ))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["description"],
        json!("Too recent start_time. Use a start_time older than 1 minute")
    );
    let old = format!("/api/v2/incremental/tickets.json?start_time={}", now - 3600);
    for _ in 1..10 {
        assert_eq!(strict.get(&old).await.status(), StatusCode::OK);
    }
    assert_eq!(
        strict.get(&old).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A path Zendesk does not have answers its JSON 404, which clients parse.
#[tokio::test]
async fn unknown_endpoints_answer_zendesk_s_json_404() {
    let h = Harness::relaxed().await;
    for path in [
        "/api/v2/no_such_thing.json",
        "/api/v2/tickets/1/nothing",
        "/nowhere",
    ] {
        let (status, headers, body) = json_of(h.get(path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json")),
            "{path}: {headers:?}"
        );
        assert_eq!(
            body,
            json!({"error": "InvalidEndpoint", "description": "Not found"}),
            "{path}"
        );
    }
}

/// The user and ticket indexes stay in step with every change: external ids moved or
/// cleared, addresses added as identities, tickets re-keyed by external id.
#[tokio::test]
async fn lookups_follow_changed_external_ids_and_identities() {
    let harness = Harness::relaxed().await;
    let h = &harness;
    let upsert = |body: Value| h.post("/api/v2/users/create_or_update", json!({"user": body}));
    let (_, _, created) = json_of(
        upsert(json!({"name": "Ana", "email": "Ana@Example.com", "external_id": "tg-1"})).await,
    )
    .await;
    let ana = created["user"]["id"].as_u64().expect("id");
    // Matched by address (any case), the external id moves to tg-2.
    let (_, _, moved) =
        json_of(upsert(json!({"email": "ana@example.COM", "external_id": "tg-2"})).await).await;
    assert_eq!(moved["user"]["id"].as_u64(), Some(ana));
    let search = |e: &'static str| async move {
        let (_, _, body) = json_of(
            h.get(&format!("/api/v2/users/search.json?external_id={e}"))
                .await,
        )
        .await;
        body["users"].as_array().map(|u| {
            u.iter()
                .filter_map(|u| u["id"].as_u64())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(search("tg-1").await, Some(vec![]));
    assert_eq!(search("TG-2").await, Some(vec![ana]));
    // The old external id is free again: a new user takes it.
    let (status, _, other) =
        json_of(upsert(json!({"name": "Ben", "external_id": "tg-1"})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(other["user"]["id"].as_u64(), Some(ana));
    // An identity added later is found by create_or_update.
    let identity = h
        .post(
            &format!("/api/v2/users/{ana}/identities.json"),
            json!({"identity": {"type": "email", "value": "ana.two@example.com"}}),
        )
        .await;
    assert_eq!(identity.status(), StatusCode::CREATED);
    let (_, _, again) = json_of(upsert(json!({"email": "ANA.TWO@example.com"})).await).await;
    assert_eq!(again["user"]["id"].as_u64(), Some(ana));

    // Tickets listed by external id follow an update of it.
    let ticket = h.ticket("keyed").await;
    let set = h
        .put(
            &format!("/api/v2/tickets/{ticket}.json"),
            json!({"ticket": {"external_id": "conv-9"}}),
        )
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    let listed = |e: &'static str| async move {
        let (_, _, body) = json_of(
            h.get(&format!("/api/v2/tickets.json?external_id={e}"))
                .await,
        )
        .await;
        body["tickets"].as_array().map(|t| {
            t.iter()
                .filter_map(|t| t["id"].as_u64())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(listed("conv-9").await, Some(vec![ticket]));
    let reset = h
        .put(
            &format!("/api/v2/tickets/{ticket}.json"),
            json!({"ticket": {"external_id": "conv-10"}}),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(listed("conv-9").await, Some(vec![]));
    assert_eq!(listed("conv-10").await, Some(vec![ticket]));
}
