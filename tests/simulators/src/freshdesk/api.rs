//! HTTP layer: routing, the limit/fault/auth gate, request parsing and the handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE, HOST, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::error::{ApiError, Errors, FRESHDESK};
use super::form::{self, Form, MAX_ATTACHMENTS_BYTES};
use super::model::{Conversation, Store, Ticket, PRIORITIES, STATUSES};
use super::util::{http_date, parse_datetime, with_query};
use super::webhooks::AutomationWebhook;
use super::{lock, search, Simulator, Window};
use crate::kit::control::{self, set, ControlError};
use crate::kit::faults::Refusals;
use crate::kit::faults::{insert_headers, with_headers};
use crate::kit::Budget;

/// Shown in rate-limit headers when no budget is configured (Freshdesk's Enterprise plan).
const NOMINAL_LIMIT: u32 = 700;
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// The ticket list stops at page 300.
const MAX_TICKET_PAGES: usize = 300;
const SEARCH_PAGE_SIZE: usize = 30;
const MAX_SEARCH_PAGES: usize = 10;
/// Without `updated_since`, the ticket list shows tickets created in the last 30 days.
const DEFAULT_WINDOW_SECS: i64 = 30 * 86_400;
/// `include=conversations` embeds at most this many.
const INCLUDED_CONVERSATIONS: usize = 10;

type ApiResult = Result<Response, ApiError>;
type Params = Query<Vec<(String, String)>>;

pub(crate) fn router(sim: Simulator) -> Router {
    let api = Router::new()
        .route("/api/v2/agents", get(list_agents))
        .route("/api/v2/agents/me", get(show_me))
        .route("/api/v2/agents/{id}", get(show_agent))
        .route("/api/v2/contacts", get(list_contacts).post(create_contact))
        .route(
            "/api/v2/contacts/{id}",
            get(show_contact).put(update_contact),
        )
        .route("/api/v2/search/contacts", get(search_contacts))
        .route(
            "/api/v2/tickets",
            get(list_tickets).post(create_ticket).layer(upload_limit()),
        )
        .route("/api/v2/tickets/{id}", get(show_ticket).put(update_ticket))
        .route(
            "/api/v2/tickets/{id}/reply",
            post(create_reply).layer(upload_limit()),
        )
        .route(
            "/api/v2/tickets/{id}/notes",
            post(create_note).layer(upload_limit()),
        )
        .route(
            "/api/v2/tickets/{id}/conversations",
            get(list_conversations),
        )
        .route("/api/v2/ticket_fields", get(list_ticket_fields))
        .route_layer(middleware::from_fn_with_state(sim.clone(), gate));

    let control = Router::new()
        .route(
            "/_control/automations",
            get(control_automations).post(control_add_automation),
        )
        .route("/_control/webhook_deliveries", get(control_deliveries))
        .route("/_control/attachments/{id}", get(control_attachment))
        .merge(control::routes())
        .merge(control::helpdesk_routes());

    api.merge(control).with_state(sim)
}

// ----- gate: budget, faults, auth ------------------------------------------------------------

/// Runs before every API handler and stamps Freshdesk's headers on every API answer.
async fn gate(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    // Even refused requests count against the budget, as in Freshdesk.
    let budget = sim.faults().check_budget();
    // Owned, so the future holds no borrow of the (non-Sync) body across an await.
    let headers = request.headers().clone();
    let (mut response, cost) = match admit(&sim, &headers, budget, &method, &path).await {
        Ok(()) => (next.run(request).await, cost(&method, &path, &query)),
        Err(refused) => (refused, 1),
    };
    // Embedded resources cost extra credits.
    let mut reported = budget;
    for _ in 1..cost {
        match sim.faults().check_budget() {
            Budget::Unlimited => {}
            spent => reported = spent,
        }
    }
    rate_headers(response.headers_mut(), reported, cost);
    let headers = response.headers_mut();
    headers.insert(
        "x-freshdesk-api-version",
        HeaderValue::from_static("latest=v2; requested=v2"),
    );
    if let Ok(date) = HeaderValue::from_str(&http_date(sim.now_secs())) {
        headers.insert(DATE, date);
    }
    response
}

/// The account budget, then injected faults, then Freshdesk's own checks.
async fn admit(
    sim: &Simulator,
    headers: &HeaderMap,
    budget: Budget,
    method: &Method,
    path: &str,
) -> Result<(), Response> {
    sim.faults().admit_within(budget, path, &FRESHDESK).await?;
    checks(sim, headers, method, path).map_err(IntoResponse::into_response)
}

/// HTTPS, `Accept`, the API key and the endpoint's share of the budget.
fn checks(
    sim: &Simulator,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<(), ApiError> {
    if header(headers, "x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("http")) {
        return Err(ApiError::ssl_required());
    }
    if let Some(accept) = header(headers, ACCEPT.as_str()) {
        let acceptable = accept.split(',').any(|range| {
            let mime = range.split(';').next().unwrap_or_default().trim();
            mime == "*/*"
                || mime == "application/*"
                || mime.eq_ignore_ascii_case("application/json")
        });
        if !acceptable {
            return Err(ApiError::not_acceptable(accept));
        }
    }
    authenticate(sim, headers)?;
    if let Some(kind) = endpoint_kind(method, path) {
        check_endpoint_limit(sim, kind)?;
    }
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Basic auth with the API key as the user name; the password is ignored (`X` by custom).
fn authenticate(sim: &Simulator, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = header(headers, AUTHORIZATION.as_str()).ok_or_else(ApiError::unauthorized)?;
    let (scheme, credentials) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized());
    }
    let decoded = STANDARD
        .decode(credentials.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(ApiError::unauthorized)?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    if user == sim.store().config.api_key {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Credits a request costs: one, plus one per embedded resource on a ticket and two per
/// embedded resource on the ticket list.
fn cost(method: &Method, path: &str, query: &str) -> u32 {
    if method != Method::GET || !path.starts_with("/api/v2/tickets") {
        return 1;
    }
    let includes = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "include")
        .map(|(_, v)| v.split(',').filter(|s| !s.trim().is_empty()).count())
        .sum::<usize>() as u32;
    let per_include = if path.trim_end_matches('/') == "/api/v2/tickets" {
        2
    } else if path.ends_with("/conversations") {
        0
    } else {
        1
    };
    1 + includes * per_include
}

fn rate_headers(headers: &mut HeaderMap, budget: Budget, cost: u32) {
    let (limit, remaining) = match budget {
        Budget::Unlimited => (NOMINAL_LIMIT, NOMINAL_LIMIT - cost),
        Budget::Allowed {
            limit, remaining, ..
        } => (limit, remaining),
        Budget::Exceeded { limit, .. } => (limit, 0),
    };
    let values = [
        ("x-ratelimit-total", limit),
        ("x-ratelimit-remaining", remaining),
        ("x-ratelimit-used-currentrequest", cost),
    ];
    insert_headers(headers, values.map(|(name, n)| (name, n.to_string())));
}

/// Which per-endpoint share a request draws on, if any.
fn endpoint_kind(method: &Method, path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let ticket_item = path
        .strip_prefix("/api/v2/tickets/")
        .is_some_and(|rest| !rest.contains('/'));
    match (method.as_str(), path) {
        ("POST", "/api/v2/tickets") => Some("ticket_create"),
        ("GET", "/api/v2/tickets") => Some("tickets_list"),
        ("GET", "/api/v2/contacts") => Some("contacts_list"),
        ("PUT", _) if ticket_item => Some("ticket_update"),
        _ => None,
    }
}

fn check_endpoint_limit(sim: &Simulator, kind: &'static str) -> Result<(), ApiError> {
    let limits = sim.store().config.endpoint_limits;
    let limit = match kind {
        "ticket_create" => limits.ticket_create,
        "ticket_update" => limits.ticket_update,
        "tickets_list" => limits.tickets_list,
        _ => limits.contacts_list,
    };
    let Some(limit) = limit else {
        return Ok(());
    };
    let now = sim.inner.base.clock.now_ms();
    let mut windows = lock(&sim.inner.endpoint_windows);
    let window = windows.entry(kind).or_insert(Window {
        started_ms: now,
        used: 0,
    });
    if now - window.started_ms >= 60_000 {
        *window = Window {
            started_ms: now,
            used: 0,
        };
    }
    if window.used >= limit {
        let left_ms = (window.started_ms + 60_000 - now).max(1);
        return Err(ApiError::rate_limited(((left_ms + 999) / 1000) as u64));
    }
    window.used += 1;
    Ok(())
}

// ----- request helpers -----------------------------------------------------------------------

/// Parses a JSON object body: `application/json` only (multipart bodies, which Freshdesk takes
/// where files can be attached, go through [`body_with_uploads`]).
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let content_type = header(headers, CONTENT_TYPE.as_str()).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::unsupported_media_type(
            if content_type.is_empty() {
                "(none)"
            } else {
                content_type
            },
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::invalid_json()),
    }
}

/// Room for 20 MB of attachments plus the other parts; past it, axum's 413.
fn upload_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_ATTACHMENTS_BYTES + 1024 * 1024)
}

/// The body of a request that may carry attachments: JSON, or `multipart/form-data` with
/// `attachments[]` file parts (what clients send when there are files).
async fn body_with_uploads(headers: &HeaderMap, body: Bytes) -> Result<Form, ApiError> {
    let content_type = header(headers, CONTENT_TYPE.as_str()).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("multipart/form-data") {
        return form::parse(content_type, body).await;
    }
    Ok(Form {
        fields: json_body(headers, &body)?,
        uploads: Vec::new(),
    })
}

/// `{base}/_control/attachments/{id}`, an attachment's `attachment_url`.
fn attachment_url(base: &str) -> impl Fn(u64) -> String + '_ {
    move |id| format!("{base}/_control/attachments/{id}")
}

/// A numeric id from the path; anything else is a 404, as an unknown id is.
fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// `http://{Host}` of the request, so links point back at this server.
fn base_url(sim: &Simulator, headers: &HeaderMap) -> String {
    match header(headers, HOST.as_str()) {
        Some(host) => format!("http://{host}"),
        None => sim.origin(),
    }
}

fn created(body: Value, location: &str) -> Response {
    let response = (StatusCode::CREATED, Json(body)).into_response();
    with_headers(response, [(LOCATION, location)])
}

fn ok(body: Value) -> ApiResult {
    Ok(Json(body).into_response())
}

/// Query parameters: the list (for links, in order) and a lookup by name.
struct QueryParams {
    list: Vec<(String, String)>,
    map: HashMap<String, String>,
}

impl QueryParams {
    fn new(list: Vec<(String, String)>) -> Self {
        let map = list.iter().cloned().collect();
        Self { list, map }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Every parameter outside `allowed` is an `invalid_field`, as in Freshdesk.
    fn only(&self, allowed: &[&str], e: &mut Errors) {
        for (key, _) in &self.list {
            if !allowed.contains(&key.as_str()) {
                e.add(key, "Unexpected/invalid field in request", "invalid_field");
            }
        }
    }

    /// `page` (from 1, at most `max_page`) and `per_page` (1 to 100, default 30).
    fn paging(&self, max_page: Option<usize>, e: &mut Errors) -> (usize, usize) {
        let page = match self.get("page") {
            None => 1,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if n >= 1 => {
                    if max_page.is_some_and(|max| n > max) {
                        e.add(
                            "page",
                            "You cannot access tickets beyond the 300th page. Please provide a smaller page number.",
                            "invalid_value",
                        );
                    }
                    n
                }
                _ => {
                    e.add("page", "It should be a Positive Integer", "invalid_value");
                    1
                }
            },
        };
        let per_page = match self.get("per_page") {
            None => DEFAULT_PER_PAGE,
            Some(raw) => {
                match raw.trim().parse::<usize>() {
                    Ok(n) if (1..=MAX_PER_PAGE).contains(&n) => n,
                    _ => {
                        e.add(
                        "per_page",
                        format!("It should be a Positive Integer less than or equal to {MAX_PER_PAGE}"),
                        "invalid_value",
                    );
                        DEFAULT_PER_PAGE
                    }
                }
            }
        };
        (page, per_page)
    }

    /// The `Link` header value for the page after `page`.
    fn next_link(&self, base: &str, path: &str, page: usize) -> String {
        let mut params: Vec<(String, String)> = self
            .list
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .collect();
        params.push(("page".into(), (page + 1).to_string()));
        format!(
            "<{}>; rel=\"next\"",
            with_query(&format!("{base}{path}"), &params)
        )
    }
}

/// One page of `items`, with the `Link` header when more follow (and `max_page` allows).
fn paged(
    items: Vec<Value>,
    q: &QueryParams,
    (page, per_page): (usize, usize),
    max_page: Option<usize>,
    base: &str,
    path: &str,
) -> Response {
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    let more = end < items.len() && max_page.is_none_or(|max| page < max);
    let slice: Vec<Value> = items[start..end].to_vec();
    let mut response = Json(Value::Array(slice)).into_response();
    if more {
        if let Ok(v) = HeaderValue::from_str(&q.next_link(base, path, page)) {
            response.headers_mut().insert(LINK, v);
        }
    }
    response
}

/// The `include` list, checked against `allowed`.
fn includes(q: &QueryParams, allowed: &[&str], e: &mut Errors) -> Vec<String> {
    let Some(raw) = q.get("include") else {
        return Vec::new();
    };
    let list: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if list.iter().any(|i| !allowed.contains(&i.as_str())) {
        e.add(
            "include",
            format!("It should be one of these values: '{}'", allowed.join(",")),
            "invalid_value",
        );
    }
    list
}

fn date_param(q: &QueryParams, key: &str, e: &mut Errors) -> Option<i64> {
    let raw = q.get(key)?;
    let parsed = parse_datetime(raw);
    if parsed.is_none() {
        e.add(
            key,
            "It should be a valid date in the 'combined date and time ISO8601' format",
            "invalid_value",
        );
    }
    parsed
}

fn integer_param(q: &QueryParams, key: &str, e: &mut Errors) -> Option<u64> {
    let raw = q.get(key)?;
    let parsed = raw.trim().parse::<u64>().ok();
    if parsed.is_none() {
        e.add(
            key,
            "It should be a/an Positive Integer",
            "datatype_mismatch",
        );
    }
    parsed
}

// ----- agents --------------------------------------------------------------------------------

async fn show_me(State(sim): State<Simulator>) -> ApiResult {
    let store = sim.store();
    let agent = store
        .agents
        .get(&store.api_agent_id)
        .ok_or_else(ApiError::not_found)?;
    ok(store.agent_json(agent))
}

async fn show_agent(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let store = sim.store();
    let agent = store.agents.get(&id).ok_or_else(ApiError::not_found)?;
    ok(store.agent_json(agent))
}

async fn list_agents(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(&["email", "page", "per_page", "state"], &mut e);
    let paging = q.paging(None, &mut e);
    e.check()?;
    let store = sim.store();
    let agents = store
        .agents
        .values()
        .filter(|a| {
            q.get("email")
                .is_none_or(|m| a.email.eq_ignore_ascii_case(m))
        })
        .map(|a| store.agent_json(a))
        .collect();
    let base = base_url(&sim, &headers);
    Ok(paged(agents, &q, paging, None, &base, "/api/v2/agents"))
}

// ----- contacts ------------------------------------------------------------------------------

async fn create_contact(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let input = json_body(&headers, &body)?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now| {
        let id = store.save_contact(&input, None, now)?;
        let contact = store.contacts.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(created(
            store.contact_json(contact),
            &format!("{base}/api/v2/contacts/{id}"),
        ))
    })
}

async fn update_contact(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let input = json_body(&headers, &body)?;
    sim.mutate(|store, now| {
        if !store.contacts.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        store.save_contact(&input, Some(id), now)?;
        let contact = store.contacts.get(&id).ok_or_else(ApiError::not_found)?;
        ok(store.contact_json(contact))
    })
}

async fn show_contact(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let store = sim.store();
    let contact = store.contacts.get(&id).ok_or_else(ApiError::not_found)?;
    ok(store.contact_json(contact))
}

async fn list_contacts(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(
        &[
            "email",
            "phone",
            "mobile",
            "company_id",
            "state",
            "updated_since",
            "unique_external_id",
            "tag",
            "page",
            "per_page",
        ],
        &mut e,
    );
    let paging = q.paging(None, &mut e);
    let since = date_param(&q, "updated_since", &mut e);
    let company = integer_param(&q, "company_id", &mut e);
    let state = q.get("state");
    if state.is_some_and(|s| !["blocked", "deleted", "unverified", "verified"].contains(&s)) {
        e.add(
            "state",
            "It should be one of these values: 'blocked,deleted,unverified,verified'",
            "invalid_value",
        );
    }
    e.check()?;
    let store = sim.store();
    let text = |value: &Option<String>, key: &str| {
        q.get(key).is_none_or(|wanted| {
            value
                .as_ref()
                .is_some_and(|v| v.eq_ignore_ascii_case(wanted))
        })
    };
    let mut contacts: Vec<_> = store
        .contacts
        .values()
        .filter(|c| {
            text(&c.email, "email")
                && text(&c.phone, "phone")
                && text(&c.mobile, "mobile")
                && text(&c.unique_external_id, "unique_external_id")
                && q
                    .get("tag")
                    .is_none_or(|t| c.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
                && since.is_none_or(|s| c.updated_at >= s)
                // No companies, and API contacts stay unverified.
                && company.is_none()
                && state.is_none_or(|s| s == "unverified")
        })
        .collect();
    contacts.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let items = contacts.iter().map(|c| store.contact_json(c)).collect();
    let base = base_url(&sim, &headers);
    Ok(paged(items, &q, paging, None, &base, "/api/v2/contacts"))
}

async fn search_contacts(State(sim): State<Simulator>, Query(q): Params) -> ApiResult {
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(&["query", "page"], &mut e);
    let page = match q.get("page").map(|p| p.trim().parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if (1..=MAX_SEARCH_PAGES).contains(&n) => n,
        Some(_) => {
            e.add(
                "page",
                format!("It should be a Positive Integer less than or equal to {MAX_SEARCH_PAGES}"),
                "invalid_value",
            );
            1
        }
    };
    let query = match q.get("query") {
        None => {
            e.add("query", "It should be a/an String", "missing_field");
            None
        }
        Some(raw) => match search::parse(raw) {
            Ok(query) => {
                if let Some(field) = search::unknown_field(&query) {
                    e.add(
                        "query",
                        format!("The simulator cannot search contacts by `{field}`"),
                        "invalid_value",
                    );
                }
                Some(query)
            }
            Err(message) => {
                e.add("query", message, "invalid_value");
                None
            }
        },
    };
    e.check()?;
    let Some(query) = query else {
        return Err(ApiError::invalid(
            "query",
            "It should be a/an String",
            "missing_field",
        ));
    };
    let now = sim.now_secs();
    let store = sim.store();
    let delay = i64::try_from(store.config.search_index_delay.as_secs()).unwrap_or(i64::MAX);
    // The search index lags: recent contacts are not found yet.
    let found: Vec<Value> = store
        .contacts
        .values()
        .filter(|c| c.created_at.saturating_add(delay) <= now)
        .filter(|c| search::matches(&query, c))
        .map(|c| store.contact_json(c))
        .collect();
    let total = found.len();
    let start = ((page - 1) * SEARCH_PAGE_SIZE).min(total);
    let end = (start + SEARCH_PAGE_SIZE).min(total);
    ok(json!({"results": found[start..end], "total": total}))
}

// ----- tickets -------------------------------------------------------------------------------

async fn create_ticket(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let Form {
        fields: input,
        uploads,
    } = body_with_uploads(&headers, body).await?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now| {
        let actor = store.api_agent_id;
        let id = store.create_ticket(actor, &input, now)?;
        store.attach(id, None, uploads, attachment_url(&base), now)?;
        let ticket = store.tickets.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(created(
            store.ticket_json(ticket, false),
            &format!("{base}/api/v2/tickets/{id}"),
        ))
    })
}

async fn update_ticket(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let input = json_body(&headers, &body)?;
    sim.mutate(|store, now| {
        let actor = store.api_agent_id;
        store.update_ticket(actor, id, &input, now)?;
        let ticket = store.tickets.get(&id).ok_or_else(ApiError::not_found)?;
        ok(store.ticket_json(ticket, false))
    })
}

async fn show_ticket(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(&["include"], &mut e);
    let includes = includes(
        &q,
        &["conversations", "requester", "company", "stats"],
        &mut e,
    );
    e.check()?;
    let store = sim.store();
    let ticket = store.tickets.get(&id).ok_or_else(ApiError::not_found)?;
    let mut v = store.ticket_json(ticket, false);
    for include in &includes {
        match include.as_str() {
            "conversations" => {
                v["conversations"] = ticket
                    .conversations
                    .iter()
                    .take(INCLUDED_CONVERSATIONS)
                    .map(|c| store.conversation_json(c))
                    .collect();
            }
            "requester" => v["requester"] = store.requester_json(ticket),
            "stats" => v["stats"] = store.stats_json(ticket),
            _ => v["company"] = Value::Null,
        }
    }
    ok(v)
}

async fn list_tickets(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(
        &[
            "filter",
            "requester_id",
            "email",
            "unique_external_id",
            "company_id",
            "updated_since",
            "order_by",
            "order_type",
            "include",
            "page",
            "per_page",
        ],
        &mut e,
    );
    let paging = q.paging(Some(MAX_TICKET_PAGES), &mut e);
    let includes = includes(&q, &["description", "requester", "stats"], &mut e);
    let since = date_param(&q, "updated_since", &mut e);
    let requester = integer_param(&q, "requester_id", &mut e);
    let company = integer_param(&q, "company_id", &mut e);
    let filter = q.get("filter");
    if filter.is_some_and(|f| !["new_and_my_open", "watching", "spam", "deleted"].contains(&f)) {
        e.add(
            "filter",
            "It should be one of these values: 'new_and_my_open,watching,spam,deleted'",
            "invalid_value",
        );
    }
    let order_by = q.get("order_by").unwrap_or("created_at");
    if !["created_at", "due_by", "updated_at", "status"].contains(&order_by) {
        e.add(
            "order_by",
            "It should be one of these values: 'created_at,due_by,updated_at,status'",
            "invalid_value",
        );
    }
    let order_type = q.get("order_type").unwrap_or("desc");
    if !["asc", "desc"].contains(&order_type) {
        e.add(
            "order_type",
            "It should be one of these values: 'asc,desc'",
            "invalid_value",
        );
    }
    e.check()?;

    let now = sim.now_secs();
    let store = sim.store();
    let by_contact = |field: &str| {
        q.get(field)
            .map(|value| store.contact_by(field, value).unwrap_or(0))
    };
    let email_requester = by_contact("email");
    let external_requester = by_contact("unique_external_id");
    let mut tickets: Vec<&Ticket> = store
        .tickets
        .values()
        .filter(|t| match since {
            Some(since) => t.updated_at >= since,
            None => t.created_at >= now - DEFAULT_WINDOW_SECS,
        })
        .filter(|t| requester.is_none_or(|r| t.requester_id == r))
        .filter(|t| email_requester.is_none_or(|r| t.requester_id == r))
        .filter(|t| external_requester.is_none_or(|r| t.requester_id == r))
        .filter(|_| company.is_none())
        .filter(|t| match filter {
            None => true,
            Some("new_and_my_open") => {
                t.status == super::model::OPEN
                    && t.responder_id.is_none_or(|r| r == store.api_agent_id)
            }
            // Nothing is watched, marked as spam or deleted in the simulator.
            Some(_) => false,
        })
        .collect();
    let key = |t: &Ticket| match order_by {
        "updated_at" => t.updated_at,
        "status" => t.status as i64,
        // due_by follows created_at: every ticket gets the same SLA.
        _ => t.created_at,
    };
    tickets.sort_by(|a, b| {
        let ordering = key(a).cmp(&key(b));
        let ordering = if order_type == "asc" {
            ordering
        } else {
            ordering.reverse()
        };
        ordering.then(a.id.cmp(&b.id))
    });
    let items: Vec<Value> = tickets
        .iter()
        .map(|t| listed_ticket(&store, t, &includes))
        .collect();
    let base = base_url(&sim, &headers);
    Ok(paged(
        items,
        &q,
        paging,
        Some(MAX_TICKET_PAGES),
        &base,
        "/api/v2/tickets",
    ))
}

fn listed_ticket(store: &Store, t: &Ticket, includes: &[String]) -> Value {
    let mut v = store.ticket_json(t, true);
    for include in includes {
        match include.as_str() {
            "description" => store.add_description(&mut v, t),
            "requester" => v["requester"] = store.requester_json(t),
            _ => v["stats"] = store.stats_json(t),
        }
    }
    v
}

// ----- conversations -------------------------------------------------------------------------

async fn create_reply(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    create_conversation(sim, headers, &id, body, Store::add_reply, Store::reply_json).await
}

async fn create_note(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    create_conversation(sim, headers, &id, body, Store::add_note, Store::note_json).await
}

/// Stores a reply or a note: `(store, actor, ticket_id, input, now)` → its id.
type AddConversation = fn(&mut Store, u64, u64, &Map<String, Value>, i64) -> Result<u64, ApiError>;

/// A reply or a note by the key's agent, with its uploads: `add` stores it, `render` is 201's
/// body.
async fn create_conversation(
    sim: Simulator,
    headers: HeaderMap,
    id: &str,
    body: Bytes,
    add: AddConversation,
    render: fn(&Store, &Conversation) -> Value,
) -> ApiResult {
    let ticket_id = parse_id(id)?;
    let Form {
        fields: input,
        uploads,
    } = body_with_uploads(&headers, body).await?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now| {
        let actor = store.api_agent_id;
        let id = add(store, actor, ticket_id, &input, now)?;
        store.attach(ticket_id, Some(id), uploads, attachment_url(&base), now)?;
        let conversation = store
            .conversation(ticket_id, id)
            .ok_or_else(ApiError::not_found)?;
        Ok((StatusCode::CREATED, Json(render(store, conversation))).into_response())
    })
}

async fn list_conversations(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let ticket_id = parse_id(&id)?;
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(&["page", "per_page"], &mut e);
    let paging = q.paging(None, &mut e);
    e.check()?;
    let store = sim.store();
    let ticket = store
        .tickets
        .get(&ticket_id)
        .ok_or_else(ApiError::not_found)?;
    let items = ticket
        .conversations
        .iter()
        .map(|c| store.conversation_json(c))
        .collect();
    let base = base_url(&sim, &headers);
    Ok(paged(
        items,
        &q,
        paging,
        None,
        &base,
        &format!("/api/v2/tickets/{ticket_id}/conversations"),
    ))
}

// ----- ticket fields -------------------------------------------------------------------------

async fn list_ticket_fields(State(sim): State<Simulator>, Query(q): Params) -> ApiResult {
    let q = QueryParams::new(q);
    let mut e = Errors::default();
    q.only(&["type"], &mut e);
    e.check()?;
    let store = sim.store();
    let c = &store.config;
    let field = |id: u64, name: &str, label: &str, kind: &str, choices: Option<Value>| {
        let mut v = json!({
            "id": id, "name": name, "label": label, "description": label, "position": id,
            "type": kind, "default": kind.starts_with("default_"),
            "required_for_closure": false, "required_for_agents": matches!(name, "subject" | "description" | "status" | "priority"),
            "required_for_customers": false, "customers_can_edit": false,
            "label_for_customers": label, "displayed_to_customers": true,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        });
        if let Some(choices) = choices {
            v["choices"] = choices;
        }
        v
    };
    let statuses: Map<String, Value> = STATUSES
        .iter()
        .map(|(id, name)| (*id, (*name).to_owned()))
        .chain(c.custom_statuses.iter().cloned())
        .map(|(id, name)| (id.to_string(), json!([name, name])))
        .collect();
    let priorities: Map<String, Value> = PRIORITIES
        .iter()
        .map(|(id, name)| ((*name).to_owned(), json!(id)))
        .collect();
    let sources: Map<String, Value> = c
        .sources
        .iter()
        .map(|(id, name)| (name.clone(), json!(id)))
        .collect();
    let mut fields = vec![
        field(
            1,
            "requester",
            "Search a requester",
            "default_requester",
            None,
        ),
        field(2, "subject", "Subject", "default_subject", None),
        field(
            3,
            "ticket_type",
            "Type",
            "default_ticket_type",
            Some(json!(c.ticket_types)),
        ),
        field(
            4,
            "source",
            "Source",
            "default_source",
            Some(Value::Object(sources)),
        ),
        field(
            5,
            "status",
            "Status",
            "default_status",
            Some(Value::Object(statuses)),
        ),
        field(
            6,
            "priority",
            "Priority",
            "default_priority",
            Some(Value::Object(priorities)),
        ),
        field(7, "description", "Description", "default_description", None),
    ];
    for (n, name) in c.ticket_custom_fields.iter().enumerate() {
        let label = name.trim_start_matches("cf_").replace('_', " ");
        fields.push(field(101 + n as u64, name, &label, "custom_text", None));
    }
    if let Some(kind) = q.get("type") {
        fields.retain(|f| f["type"] == kind);
    }
    ok(Value::Array(fields))
}

// ----- control API (the kit mounts the rest) ------------------------------------------------

pub(super) fn config_json(sim: &Simulator) -> Value {
    let c = sim.config();
    let l = c.endpoint_limits;
    json!({
        "rate_limit_per_minute": c.rate_limit_per_minute,
        "ticket_create_per_minute": l.ticket_create,
        "ticket_update_per_minute": l.ticket_update,
        "tickets_list_per_minute": l.tickets_list,
        "contacts_list_per_minute": l.contacts_list,
        "search_index_delay_secs": c.search_index_delay.as_secs(),
        "reopen_on_customer_reply": c.reopen_on_customer_reply,
        "ticket_custom_fields": c.ticket_custom_fields,
        "sources": c.sources.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
    })
}

/// `POST /_control/config`: the settings named; a `null` limit lifts that limit.
pub(super) fn apply_config(sim: &Simulator, patch: &control::Patch) -> Result<(), ControlError> {
    if patch.has("sources") {
        return Err(ControlError::bad_request(
            "config `sources` is read-only here: set Config::sources when creating the simulator",
        ));
    }
    let rate = patch.limit("rate_limit_per_minute")?;
    let create = patch.limit("ticket_create_per_minute")?;
    let update = patch.limit("ticket_update_per_minute")?;
    let list = patch.limit("tickets_list_per_minute")?;
    let contacts = patch.limit("contacts_list_per_minute")?;
    // No delay is the same as a delay of 0.
    let delay = patch.nullable("search_index_delay_secs")?;
    let reopen = patch.flag("reopen_on_customer_reply")?;
    let fields = patch.strings("ticket_custom_fields")?;
    let delay = delay.map(|v| Duration::from_secs(v.unwrap_or(0)));
    sim.update_config(|c| {
        set(&mut c.rate_limit_per_minute, rate);
        let l = &mut c.endpoint_limits;
        for (slot, v) in [
            (&mut l.ticket_create, create),
            (&mut l.ticket_update, update),
            (&mut l.tickets_list, list),
            (&mut l.contacts_list, contacts),
        ] {
            set(slot, v);
        }
        set(&mut c.search_index_delay, delay);
        set(&mut c.reopen_on_customer_reply, reopen);
        set(&mut c.ticket_custom_fields, fields);
    });
    Ok(())
}

async fn control_add_automation(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let rule: AutomationWebhook = control::json_body(&body)?;
    rule.validate().map_err(ControlError::bad_request)?;
    let index = sim.add_automation(rule);
    Ok((StatusCode::CREATED, Json(json!({"rule": index}))).into_response())
}

async fn control_automations(State(sim): State<Simulator>) -> Json<Value> {
    let rules = lock(&sim.inner.automations).clone();
    Json(json!({"automations": rules}))
}

async fn control_deliveries(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"deliveries": sim.webhook_deliveries()}))
}

/// `GET /_control/attachments/{id}`: the uploaded file as it was sent.
async fn control_attachment(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let no_file = || ControlError::not_found(format!("no attachment `{id}`"));
    let number: u64 = id.parse().map_err(|_| no_file())?;
    let store = sim.store();
    let file = store.attachment(number).ok_or_else(no_file)?;
    let mut response = file.content.clone().into_response();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    Ok(response)
}
