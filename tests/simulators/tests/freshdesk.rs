//! The Freshdesk simulator over real HTTP: each test serves a fresh account on a free port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::freshdesk::{AutomationWebhook, Config, EndpointLimits, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Harness {
    sim: Simulator,
    addr: SocketAddr,
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
            addr,
            base: format!("http://{addr}"),
            http: Client::new(),
            config,
        }
    }

    async fn default() -> Self {
        Self::start(Config::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The API key as the Basic user name and `X` as the password, as Freshdesk documents.
    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth(&self.config.api_key, Some("X"))
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

    async fn control(&self, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("control call")
    }

    /// Creates a ticket for a requester known by `unique_external_id`; returns its id.
    async fn ticket(&self, external_id: &str, subject: &str) -> u64 {
        let response = self
            .post(
                "/api/v2/tickets",
                json!({"unique_external_id": external_id, "subject": subject,
                       "description": "Where is my order?", "source": 7}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await["id"].as_u64().expect("ticket id")
    }
}

async fn json_of(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(response: &Response) -> Option<String> {
    let link = header(response, "link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link[link.find('<')? + 1..link.find('>')?].to_owned())
}

/// Asserts Freshdesk's validation body and returns its errors.
async fn validation_errors(response: Response, status: StatusCode) -> Vec<Value> {
    assert_eq!(response.status(), status);
    let body = json_of(response).await;
    assert_eq!(body["description"], "Validation failed", "{body}");
    body["errors"].as_array().expect("errors").clone()
}

fn has_error(errors: &[Value], field: &str, code: &str) -> bool {
    errors
        .iter()
        .any(|e| e["field"] == field && e["code"] == code && e["message"].is_string())
}

#[tokio::test]
async fn basic_auth_with_the_api_key_and_freshdesk_error_bodies() {
    let h = Harness::default().await;
    let unauthorized = json!({"code": "invalid_credentials",
                              "message": "You have to be logged in to perform this action."});

    let anonymous = h
        .http
        .get(h.url("/api/v2/agents/me"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(anonymous).await, unauthorized);
    let wrong = h
        .http
        .get(h.url("/api/v2/agents/me"))
        .basic_auth("not-the-key", Some("X"))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(wrong).await, unauthorized);
    // The key without base64, the classic mistake.
    let raw = h
        .http
        .get(h.url("/api/v2/agents/me"))
        .header("authorization", format!("Basic {}:X", h.config.api_key))
        .send()
        .await
        .expect("GET");
    assert_eq!(raw.status(), StatusCode::UNAUTHORIZED);

    // Any password goes with the right key; the call acts as the key's agent.
    let me = h
        .http
        .get(h.url("/api/v2/agents/me"))
        .basic_auth(&h.config.api_key, Some("anything"))
        .send()
        .await
        .expect("GET");
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        header(&me, "x-freshdesk-api-version").as_deref(),
        Some("latest=v2; requested=v2")
    );
    assert!(header(&me, "date").is_some_and(|d| d.ends_with(" GMT")));
    let me = json_of(me).await;
    assert_eq!(me["id"], h.sim.agent_id());
    assert_eq!(me["contact"]["email"], h.config.agent_email);
    assert_ne!(h.sim.agent_id(), h.sim.human_agent_id());

    // HTTPS only.
    let plain = h
        .authed(h.http.get(h.url("/api/v2/agents/me")))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .expect("GET");
    assert_eq!(plain.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(plain).await["code"], "ssl_required");

    // JSON only, both ways.
    let form = h
        .authed(h.http.post(h.url("/api/v2/contacts")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Aiko")
        .send()
        .await
        .expect("POST");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_of(form).await["code"], "invalid_content_type");
    let xml = h
        .authed(h.http.get(h.url("/api/v2/agents/me")))
        .header("accept", "application/xml")
        .send()
        .await
        .expect("GET");
    assert_eq!(xml.status(), StatusCode::NOT_ACCEPTABLE);
    let broken = h
        .authed(h.http.post(h.url("/api/v2/contacts")))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("POST");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(broken).await["code"], "invalid_json");

    // An unknown id is a bare 404.
    let missing = h.get("/api/v2/tickets/999").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.expect("body").is_empty());
}

#[tokio::test]
async fn contacts_are_unique_by_external_id_twitter_id_and_email() {
    let h = Harness::default().await;
    let created = h
        .post(
            "/api/v2/contacts",
            json!({"name": "Aiko Sato", "unique_external_id": "telegram:5001"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = header(&created, "location").expect("Location");
    let contact = json_of(created).await;
    let id = contact["id"].as_u64().expect("id");
    assert!(id > u64::from(u32::MAX), "Freshdesk-sized ids: {id}");
    assert_eq!(location, h.url(&format!("/api/v2/contacts/{id}")));
    assert_eq!(contact["unique_external_id"], "telegram:5001");
    assert_eq!(contact["email"], Value::Null);

    // The same external id again, in another case: a 409 naming the holder.
    let errors = validation_errors(
        h.post(
            "/api/v2/contacts",
            json!({"name": "Someone", "unique_external_id": "TELEGRAM:5001"}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        errors,
        vec![
            json!({"field": "unique_external_id", "additional_info": {"user_id": id},
                    "message": "It should be a unique value", "code": "duplicate_value"})
        ]
    );
    let x = h
        .post(
            "/api/v2/contacts",
            json!({"name": "Fan", "twitter_id": "99"}),
        )
        .await;
    assert_eq!(x.status(), StatusCode::CREATED);
    let errors = validation_errors(
        h.post(
            "/api/v2/contacts",
            json!({"name": "Fan 2", "twitter_id": "99", "email": "fan@example.com"}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        has_error(&errors, "twitter_id", "duplicate_value"),
        "{errors:?}"
    );
    // An agent's email is taken too.
    let errors = validation_errors(
        h.post(
            "/api/v2/contacts",
            json!({"name": "Impostor", "email": h.config.agent_email}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(has_error(&errors, "email", "duplicate_value"));

    // Name plus one identifier, no unknown attributes.
    let errors = validation_errors(
        h.post(
            "/api/v2/contacts",
            json!({"unique_external_id": "x:1", "shoe_size": 42}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "name", "missing_field"), "{errors:?}");
    assert!(
        has_error(&errors, "shoe_size", "invalid_field"),
        "{errors:?}"
    );
    let errors = validation_errors(
        h.post("/api/v2/contacts", json!({"name": "Nobody"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(errors[0]["code"], "missing_field");

    // The list filters by unique_external_id (case-insensitively), not by twitter_id.
    let found = json_of(
        h.get("/api/v2/contacts?unique_external_id=Telegram%3A5001")
            .await,
    )
    .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["id"], id);
    let none = json_of(
        h.get("/api/v2/contacts?unique_external_id=telegram%3A9")
            .await,
    )
    .await;
    assert_eq!(none, json!([]));
    let errors = validation_errors(
        h.get("/api/v2/contacts?twitter_id=99").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "twitter_id", "invalid_field"));

    // Updating a contact.
    let updated = h
        .put(
            &format!("/api/v2/contacts/{id}"),
            json!({"name": "Aiko S.", "job_title": "Buyer"}),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(json_of(updated).await["name"], "Aiko S.");
}

#[tokio::test]
async fn contact_search_lags_behind_like_the_index() {
    let h = Harness::start(Config {
        search_index_delay: Duration::from_secs(120),
        ..Config::default()
    })
    .await;
    let id = h.sim.add_social_contact("Brand Fan", Some("4242"), None);
    let query = "/api/v2/search/contacts?query=%22twitter_id%3A%274242%27%22";
    let fresh = json_of(h.get(query).await).await;
    assert_eq!(fresh, json!({"results": [], "total": 0}));
    h.sim.advance_clock(Duration::from_secs(121));
    let indexed = json_of(h.get(query).await).await;
    assert_eq!(indexed["total"], 1);
    assert_eq!(indexed["results"][0]["id"], id);

    let errors = validation_errors(
        h.get("/api/v2/search/contacts?query=twitter_id%3A4242")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "query", "invalid_value"), "{errors:?}");
    let errors = validation_errors(
        h.get(&format!("{query}&page=11")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "page", "invalid_value"));
}

#[tokio::test]
async fn ticket_validation_uses_freshdesks_error_shape() {
    let h = Harness::default().await;
    let errors = validation_errors(
        h.post(
            "/api/v2/tickets",
            json!({"subject": "Hi", "description": "Hello", "status": 7, "priority": 9,
                   "source": 5, "tags": ["an-extremely-long-tag-over-32-chars"], "colour": "red"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        has_error(&errors, "requester_id", "missing_field"),
        "{errors:?}"
    );
    assert!(has_error(&errors, "colour", "invalid_field"), "{errors:?}");
    assert!(has_error(&errors, "tags", "invalid_value"), "{errors:?}");
    let message = |field: &str| {
        errors
            .iter()
            .find(|e| e["field"] == field)
            .map(|e| e["message"].clone())
    };
    assert_eq!(
        message("status"),
        Some(json!("It should be one of these values: '2,3,4,5'"))
    );
    assert_eq!(
        message("priority"),
        Some(json!("It should be one of these values: '1,2,3,4'"))
    );
    assert_eq!(
        message("source"),
        Some(json!("It should be one of these values: '1,2,3,7,9,10'"))
    );

    let errors = validation_errors(
        h.post(
            "/api/v2/tickets",
            json!({"email": "aiko@example.com", "status": "open"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "subject", "missing_field"));
    assert!(has_error(&errors, "description", "missing_field"));
    assert!(
        has_error(&errors, "status", "datatype_mismatch"),
        "{errors:?}"
    );
    // A facebook_id must belong to an existing contact; a requester_id too.
    let errors = validation_errors(
        h.post(
            "/api/v2/tickets",
            json!({"facebook_id": "1000", "subject": "s", "description": "d"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "facebook_id", "invalid_value"));
    let errors = validation_errors(
        h.post(
            "/api/v2/tickets",
            json!({"requester_id": 12, "subject": "s", "description": "d"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "requester_id", "invalid_value"));
    // Custom fields must exist in the account.
    let errors = validation_errors(
        h.post(
            "/api/v2/tickets",
            json!({"email": "a@example.com", "subject": "s", "description": "d",
                   "custom_fields": {"cf_missing": "x"}}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "cf_missing", "invalid_field"));
    assert!(h.sim.tickets().is_empty(), "nothing invalid was created");
}

#[tokio::test]
async fn tickets_are_created_updated_and_replied_to() {
    let h = Harness::start(Config::default().with_custom_field("cf_switchboard_id")).await;
    let facebook = h.sim.add_social_contact("FB Fan", None, Some("1000"));
    let created = h
        .post(
            "/api/v2/tickets",
            json!({"unique_external_id": "telegram:5001", "name": "Aiko", "subject": "Order late",
                   "description": "Where is my <b>order</b>?", "tags": ["telegram", "Telegram"],
                   "custom_fields": {"cf_switchboard_id": "conv-1"}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = header(&created, "location").expect("Location");
    let ticket = json_of(created).await;
    let id = ticket["id"].as_u64().expect("id");
    assert_eq!(location, h.url(&format!("/api/v2/tickets/{id}")));
    // Freshdesk's defaults: open, low, portal.
    assert_eq!(
        (&ticket["status"], &ticket["priority"], &ticket["source"]),
        (&json!(2), &json!(1), &json!(2))
    );
    assert_eq!(ticket["tags"], json!(["telegram"]));
    assert_eq!(
        ticket["custom_fields"],
        json!({"cf_switchboard_id": "conv-1"})
    );
    assert_eq!(ticket["description_text"], "Where is my order?");
    // The requester was created from the external id.
    let contacts = h.sim.contacts();
    let aiko = contacts
        .iter()
        .find(|c| c["unique_external_id"] == "telegram:5001")
        .expect("contact");
    assert_eq!(ticket["requester_id"], aiko["id"]);
    assert_eq!(aiko["name"], "Aiko");
    // No idempotency: the same body twice is two tickets.
    let again = h
        .post(
            "/api/v2/tickets",
            json!({"requester_id": aiko["id"], "subject": "Order late", "description": "d"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let fb = h
        .post(
            "/api/v2/tickets",
            json!({"facebook_id": "1000", "subject": "Hi", "description": "d", "source": 7}),
        )
        .await;
    assert_eq!(json_of(fb).await["requester_id"], facebook);
    assert_eq!(h.sim.tickets().len(), 3);

    let updated = h
        .put(
            &format!("/api/v2/tickets/{id}"),
            json!({"status": 3, "priority": 4, "tags": ["vip"]}),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated = json_of(updated).await;
    assert_eq!(
        (&updated["status"], &updated["priority"], &updated["tags"]),
        (&json!(3), &json!(4), &json!(["vip"]))
    );
    let missing = h.put("/api/v2/tickets/999", json!({"status": 4})).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let empty = h.put(&format!("/api/v2/tickets/{id}"), json!({})).await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);

    // A public reply by the key's agent, and notes.
    let reply = h
        .post(
            &format!("/api/v2/tickets/{id}/reply"),
            json!({"body": "It ships today"}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let reply = json_of(reply).await;
    assert_eq!(reply["user_id"], h.sim.agent_id());
    assert_eq!(reply["body"], "<div>It ships today</div>");
    assert_eq!(reply["body_text"], "It ships today");
    let note = json_of(
        h.post(
            &format!("/api/v2/tickets/{id}/notes"),
            json!({"body": "VIP"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (&note["private"], &note["incoming"]),
        (&json!(true), &json!(false))
    );
    // The customer writes again, as a public incoming note: the pending ticket reopens.
    let customer = json_of(
        h.post(
            &format!("/api/v2/tickets/{id}/notes"),
            json!({"body": "Thanks!", "private": false, "incoming": true, "user_id": aiko["id"]}),
        )
        .await,
    )
    .await;
    assert_eq!(customer["user_id"], aiko["id"]);
    let ticket = json_of(
        h.get(&format!("/api/v2/tickets/{id}?include=stats,requester"))
            .await,
    )
    .await;
    assert_eq!(ticket["status"], 2, "reopened by the customer");
    assert!(ticket["stats"]["first_responded_at"].is_string());
    assert_eq!(ticket["requester"]["id"], aiko["id"]);
    // Replies come from agents only.
    let errors = validation_errors(
        h.post(
            &format!("/api/v2/tickets/{id}/reply"),
            json!({"body": "x", "user_id": aiko["id"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "user_id", "invalid_value"));

    let conversations = json_of(h.get(&format!("/api/v2/tickets/{id}/conversations")).await).await;
    let conversations = conversations.as_array().expect("list");
    assert_eq!(
        conversations.len(),
        3,
        "the description is not a conversation"
    );
    let shape: Vec<(Value, Value, Value, Value)> = conversations
        .iter()
        .map(|c| {
            (
                c["source"].clone(),
                c["private"].clone(),
                c["incoming"].clone(),
                c["body_text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                json!(0),
                json!(false),
                json!(false),
                json!("It ships today")
            ),
            (json!(2), json!(true), json!(false), json!("VIP")),
            (json!(2), json!(false), json!(true), json!("Thanks!")),
        ]
    );
    for field in [
        "id",
        "user_id",
        "ticket_id",
        "created_at",
        "updated_at",
        "body",
    ] {
        assert!(!conversations[0][field].is_null(), "{field}");
    }
    let embedded = json_of(
        h.get(&format!("/api/v2/tickets/{id}?include=conversations"))
            .await,
    )
    .await;
    assert_eq!(embedded["conversations"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn ticket_list_pages_with_link_headers_and_caps() {
    let h = Harness::default().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            h.ticket(&format!("telegram:{n}"), &format!("Ticket {n}"))
                .await,
        );
        h.sim.advance_clock(Duration::from_secs(2));
    }
    // Touch the first ticket: it moves to the end of an updated_at ascending listing.
    h.put(
        &format!("/api/v2/tickets/{}", ids[0]),
        json!({"priority": 2}),
    )
    .await;

    let mut url = h.url("/api/v2/tickets?updated_since=2020-01-01T00:00:00Z&order_by=updated_at&order_type=asc&per_page=3");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = h.authed(h.http.get(&url)).send().await.expect("GET page");
        assert_eq!(response.status(), StatusCode::OK);
        pages += 1;
        let next = next_link(&response);
        let page = json_of(response).await;
        let page = page.as_array().expect("array").clone();
        assert!(page.len() <= 3);
        assert!(
            page.iter().all(|t| t.get("description").is_none()),
            "no description without include"
        );
        seen.extend(page.iter().map(|t| t["id"].as_u64().expect("id")));
        match next {
            Some(next) => {
                assert!(
                    next.contains("per_page=3") && next.contains("order_type=asc"),
                    "{next}"
                );
                url = next;
            }
            None => break,
        }
    }
    assert_eq!(
        pages, 3,
        "7 tickets at 3 per page, no link after the last page"
    );
    let mut expected: Vec<u64> = ids[1..].to_vec();
    expected.push(ids[0]);
    assert_eq!(seen, expected);

    // Default order is newest created first; include=description adds it back.
    let first = json_of(
        h.get("/api/v2/tickets?per_page=2&include=description")
            .await,
    )
    .await;
    assert_eq!(first[0]["id"], ids[6]);
    assert_eq!(first[0]["description_text"], "Where is my order?");

    // The documented caps.
    let errors = validation_errors(
        h.get("/api/v2/tickets?page=301").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        errors,
        vec![json!({"field": "page", "code": "invalid_value",
                    "message": "You cannot access tickets beyond the 300th page. Please provide a smaller page number."})]
    );
    let errors = validation_errors(
        h.get("/api/v2/tickets?per_page=101").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        errors[0]["message"],
        "It should be a Positive Integer less than or equal to 100"
    );
    let errors = validation_errors(
        h.get("/api/v2/tickets?updated_since=yesterday").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "updated_since", "invalid_value"));
    let errors = validation_errors(
        h.get("/api/v2/tickets?sort=id").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(has_error(&errors, "sort", "invalid_field"));

    // By requester's external id.
    let mine = json_of(
        h.get("/api/v2/tickets?unique_external_id=telegram%3A3")
            .await,
    )
    .await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1));
    assert_eq!(mine[0]["id"], ids[3]);

    // Without updated_since only the last 30 days' tickets show.
    h.sim.advance_clock(Duration::from_secs(31 * 86_400));
    assert_eq!(json_of(h.get("/api/v2/tickets").await).await, json!([]));
    let since = json_of(h.get("/api/v2/tickets?updated_since=2020-01-01").await).await;
    assert_eq!(since.as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn conversations_page_thirty_at_a_time() {
    let h = Harness::default().await;
    let id = h.ticket("telegram:1", "Long thread").await;
    for n in 0..35 {
        h.sim.agent_reply(id, &format!("Reply {n}"), n % 2 == 0);
    }
    let first = h.get(&format!("/api/v2/tickets/{id}/conversations")).await;
    let next = next_link(&first).expect("a second page");
    assert_eq!(json_of(first).await.as_array().map(Vec::len), Some(30));
    assert_eq!(
        next,
        h.url(&format!("/api/v2/tickets/{id}/conversations?page=2"))
    );
    let second = h.authed(h.http.get(&next)).send().await.expect("GET");
    assert!(next_link(&second).is_none());
    let second = json_of(second).await;
    assert_eq!(second.as_array().map(Vec::len), Some(5));
    assert_eq!(second[4]["body_text"], "Reply 34");
    assert_eq!(second[4]["user_id"], h.sim.human_agent_id());
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_headers() {
    let h = Harness::default().await;
    let id = h.ticket("telegram:1", "Hello").await;
    let unlimited = h.get(&format!("/api/v2/tickets/{id}")).await;
    assert_eq!(
        header(&unlimited, "x-ratelimit-total").as_deref(),
        Some("700")
    );
    assert_eq!(
        header(&unlimited, "x-ratelimit-used-currentrequest").as_deref(),
        Some("1")
    );

    let set = h
        .control(
            "/_control/rate-limit",
            json!({"limit": 5, "window_secs": 60}),
        )
        .await;
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let first = h.get(&format!("/api/v2/tickets/{id}")).await;
    assert_eq!(header(&first, "x-ratelimit-total").as_deref(), Some("5"));
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("4")
    );
    // Each embedded resource costs a credit more.
    let embedded = h
        .get(&format!("/api/v2/tickets/{id}?include=requester,stats"))
        .await;
    assert_eq!(embedded.status(), StatusCode::OK);
    assert_eq!(
        header(&embedded, "x-ratelimit-used-currentrequest").as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&embedded, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    let last = h.get("/api/v2/agents/me").await;
    assert_eq!(header(&last, "x-ratelimit-remaining").as_deref(), Some("0"));
    let limited = h.get("/api/v2/agents/me").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&limited, "retry-after")
        .and_then(|r| r.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // Even a request with bad credentials is refused for the budget first.
    let anonymous = h
        .http
        .get(h.url("/api/v2/agents/me"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::TOO_MANY_REQUESTS);

    // An injected 429, and the per-endpoint share of the budget.
    h.sim.faults().clear();
    h.sim.faults().inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 34,
        },
        count: 1,
        path: Some("/api/v2/tickets".into()),
    });
    let injected = h.get(&format!("/api/v2/tickets/{id}")).await;
    assert_eq!(injected.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&injected, "retry-after").as_deref(), Some("34"));
    h.sim.update_config(|c| {
        c.endpoint_limits = EndpointLimits {
            tickets_list: Some(1),
            ..EndpointLimits::default()
        }
    });
    assert_eq!(h.get("/api/v2/tickets").await.status(), StatusCode::OK);
    let listed = h.get("/api/v2/tickets").await;
    assert_eq!(listed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&listed, "retry-after").is_some());
    assert_eq!(
        h.get(&format!("/api/v2/tickets/{id}")).await.status(),
        StatusCode::OK
    );
    h.sim.advance_clock(Duration::from_secs(61));
    assert_eq!(h.get("/api/v2/tickets").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn chunked_request_bodies_are_read_whole() {
    let h = Harness::default().await;
    let body = json!({"name": "Chunky", "unique_external_id": "telegram:77"}).to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let credentials = base64_encode(&format!("{}:X", h.config.api_key));
    let request = format!(
        "POST /api/v2/contacts HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        h.addr,
        a.len(),
        b.len()
    );
    let mut stream = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(
        answer.contains("\"unique_external_id\":\"telegram:77\""),
        "{answer}"
    );
    assert!(h.sim.contacts().iter().any(|c| c["name"] == "Chunky"));
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn the_control_api_drives_the_agent_like_zendesks() {
    let h = Harness::default().await;
    let id = h.ticket("telegram:1", "Hello").await;
    let reply = h
        .control(
            &format!("/_control/tickets/{id}/agent_reply"),
            json!({"body": "Hi Aiko", "public": true}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::OK);
    let reply_id = json_of(reply).await["comment_id"]
        .as_u64()
        .expect("comment id");
    h.control(
        &format!("/_control/tickets/{id}/agent_reply"),
        json!({"body": "Checked the warehouse", "public": false}),
    )
    .await;
    for (name, number) in [("pending", 3), ("solved", 4), ("closed", 5), ("open", 2)] {
        let changed = h
            .control(
                &format!("/_control/tickets/{id}/status"),
                json!({"status": name}),
            )
            .await;
        assert_eq!(changed.status(), StatusCode::OK);
        assert_eq!(json_of(changed).await["ticket"]["status"], number);
    }
    let bad = h
        .control(
            &format!("/_control/tickets/{id}/status"),
            json!({"status": "hold"}),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let all = json_of(
        h.http
            .get(h.url("/_control/tickets"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    let comments = all["tickets"][0]["comments"]
        .as_array()
        .expect("comments")
        .clone();
    let view: Vec<(Value, Value, Value)> = comments
        .iter()
        .map(|c| {
            (
                c["body"].clone(),
                c["public"].clone(),
                c["author_id"].clone(),
            )
        })
        .collect();
    let requester = all["tickets"][0]["requester_id"].clone();
    let human = json!(h.sim.human_agent_id());
    assert_eq!(
        view,
        vec![
            (json!("Where is my order?"), json!(true), requester),
            (json!("Hi Aiko"), json!(true), human.clone()),
            (json!("Checked the warehouse"), json!(false), human),
        ]
    );
    assert_eq!(comments[1]["id"], reply_id);
    assert_eq!(h.sim.comments(id), comments);

    let clock = json_of(
        h.control("/_control/clock/advance", json!({"secs": 3600}))
            .await,
    )
    .await;
    assert!(clock["now"].as_i64().is_some());
    let config = json_of(
        h.control(
            "/_control/config",
            json!({"ticket_custom_fields": ["cf_switchboard_id"]}),
        )
        .await,
    )
    .await;
    assert_eq!(config["ticket_custom_fields"], json!(["cf_switchboard_id"]));
}

/// A receiver that records webhook calls and answers each with the next status of `script`
/// (then 200).
async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
    let calls: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let log = calls.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let (log, script) = (log.clone(), script.clone());
        async move {
            log.lock().expect("log").push((headers, body));
            let status = script.lock().expect("script").next().unwrap_or(200);
            StatusCode::from_u16(status).expect("status")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, calls)
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn automation_webhooks_post_unsigned_json_with_custom_headers() {
    let h = Harness::default().await;
    // The first call fails: Freshdesk retries it.
    let (url, calls) = receiver(vec![500]).await;
    let rule = h
        .control(
            "/_control/automations",
            serde_json::to_value(
                AutomationWebhook::new(url.clone())
                    .header("X-Switchboard-Secret", "s3cret")
                    .events(&["reply_sent", "status_changed"])
                    .performer("agent"),
            )
            .expect("rule"),
        )
        .await;
    assert_eq!(rule.status(), StatusCode::CREATED);
    let bad_rule = h
        .control(
            "/_control/automations",
            json!({"url": url, "events": ["tweeted"]}),
        )
        .await;
    assert_eq!(bad_rule.status(), StatusCode::BAD_REQUEST);

    let id = h.ticket("telegram:1", "Hello").await;
    // A note does not match the rule; a customer's note neither.
    h.sim.agent_reply(id, "Internal", false);
    h.sim.agent_reply(id, "We are on it", true);
    h.sim.set_status(id, "pending");

    let deliveries = wait_for(|| {
        let d = h.sim.webhook_deliveries();
        (d.len() == 2 && d.iter().all(|d| d.delivered)).then_some(d)
    })
    .await;
    let mut events: Vec<&str> = deliveries.iter().map(|d| d.event.as_str()).collect();
    events.sort_unstable();
    assert_eq!(events, ["reply_sent", "status_changed"]);
    let attempts: u32 = deliveries.iter().map(|d| d.attempts).sum();
    assert_eq!(
        attempts, 3,
        "the call that got the 500 was retried: {deliveries:?}"
    );

    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 3);
    let mut bodies = Vec::new();
    for (headers, body) in &calls {
        assert_eq!(
            headers.get("x-switchboard-secret").map(|v| v.as_bytes()),
            Some(&b"s3cret"[..])
        );
        assert!(headers.get("authorization").is_none(), "unsigned, no auth");
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["freshdesk_webhook"]["ticket_id"], id);
        bodies.push(body["freshdesk_webhook"].clone());
    }
    let status = bodies
        .iter()
        .find(|b| b["triggered_event"] == "status_changed")
        .expect("status call");
    assert_eq!(status["ticket_status"], "Pending");
    let reply = bodies
        .iter()
        .find(|b| b["triggered_event"] == "reply_sent")
        .expect("reply call");
    assert_eq!(reply["ticket_latest_public_comment"], "We are on it");
    assert_eq!(reply["ticket_status"], "Open");
}

/// A `multipart/form-data` body: text parts, then `attachments[]` files.
fn multipart(boundary: &str, fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (file_name, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Ticket create, reply and note take multipart bodies with `attachments[]` the way Freshdesk
/// (and freshdesk-api) send them: the other fields as text parts, typed as in JSON.
#[tokio::test]
async fn multipart_bodies_with_attachments_on_ticket_reply_and_note() {
    let h = Harness::default().await;
    let boundary = "----switchboard-test-boundary";
    let send = |path: String, body: Vec<u8>| {
        h.authed(h.http.post(h.url(&path)))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
    };
    let body = multipart(
        boundary,
        &[
            ("subject", "Broken order"),
            ("description", "It arrived broken"),
            ("email", "ana@example.com"),
            ("status", "2"),
            ("priority", "1"),
            ("tags[]", "telegram"),
            ("tags[]", "vip"),
        ],
        &[("photo.txt", b"not really a photo")],
    );
    let response = send("/api/v2/tickets".into(), body).await.expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let ticket = json_of(response).await;
    assert_eq!(ticket["subject"], json!("Broken order"));
    assert_eq!(ticket["status"], json!(2));
    assert_eq!(ticket["tags"], json!(["telegram", "vip"]));
    assert_eq!(ticket["attachments"][0]["name"], json!("photo.txt"));
    assert_eq!(ticket["attachments"][0]["size"], json!(18));
    let id = ticket["id"].as_u64().expect("id");
    let url = ticket["attachments"][0]["attachment_url"]
        .as_str()
        .expect("attachment_url")
        .to_owned();
    let content = h
        .http
        .get(&url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&content[..], b"not really a photo");

    let body = multipart(
        boundary,
        &[("body", "Here is the label")],
        &[("label.txt", b"label")],
    );
    let response = send(format!("/api/v2/tickets/{id}/reply"), body)
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let reply = json_of(response).await;
    assert_eq!(reply["attachments"][0]["name"], json!("label.txt"));

    let body = multipart(
        boundary,
        &[("body", "internal"), ("private", "true")],
        &[("a.txt", b"a"), ("b.txt", b"bb")],
    );
    let response = send(format!("/api/v2/tickets/{id}/notes"), body)
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let note = json_of(response).await;
    assert_eq!(note["private"], json!(true));
    assert_eq!(note["attachments"].as_array().map(Vec::len), Some(2));

    // Validation still applies to form fields, and 20 MB is the most all files may add up to.
    let body = multipart(boundary, &[("body", "x"), ("nonsense", "1")], &[]);
    let response = send(format!("/api/v2/tickets/{id}/notes"), body)
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let body = multipart(
        boundary,
        &[("body", "x")],
        &[("1.bin", &big), ("2.bin", &big)],
    );
    let response = send(format!("/api/v2/tickets/{id}/notes"), body)
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let errors = json_of(response).await;
    assert_eq!(
        errors["errors"][0]["field"],
        json!("attachments"),
        "{errors}"
    );
}
