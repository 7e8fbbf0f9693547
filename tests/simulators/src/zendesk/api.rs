//! HTTP layer: routing, the auth/limit/fault gate, request parsing and the handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ZENDESK};
use super::model::{Fields, IdempotentResponse, Store, User};
use super::util::{decode_cursor, encode_cursor, iso8601, with_query};
use super::webhooks::{webhook_not_found, Webhook};
use super::Simulator;
use crate::kit::control::{self, set, ControlError};
use crate::kit::faults::{insert_headers, with_headers};
use crate::kit::Budget;

/// Shown in rate-limit headers when no budget is configured (Zendesk Enterprise's limit).
const NOMINAL_LIMIT: u32 = 700;
/// Cursor and offset pages hold at most this many items.
const MAX_PAGE_SIZE: usize = 100;
/// Offset pagination stops here (Zendesk: 100 pages / 10,000 records).
const MAX_OFFSET_PAGE: usize = 100;
/// Largest incremental export page.
const MAX_EXPORT_PAGE: usize = 1000;

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    user_id: u64,
    admin: bool,
    /// `None` for the API token, which has every scope.
    scopes: Option<Vec<String>>,
}

impl Principal {
    fn allows(&self, method: &Method, path: &str) -> bool {
        let Some(scopes) = &self.scopes else {
            return true;
        };
        let access = if method == Method::GET || method == Method::HEAD {
            "read"
        } else {
            "write"
        };
        let rest = path.trim_start_matches("/api/v2/");
        let resource = if rest.starts_with("incremental/") {
            "tickets"
        } else {
            rest.split(['/', '.']).next().unwrap_or_default()
        };
        let specific = format!("{resource}:{access}");
        scopes.iter().any(|s| s == access || *s == specific)
    }
}

/// Registers `path` and its `.json` twin, since Zendesk clients use both spellings.
fn both(
    router: Router<Simulator>,
    path: &str,
    handler: MethodRouter<Simulator>,
) -> Router<Simulator> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}.json"), handler)
}

pub(crate) fn router(sim: Simulator) -> Router {
    let mut api = Router::new();
    api = both(
        api,
        "/api/v2/tickets",
        get(list_tickets).post(create_ticket),
    );
    // `{id}` also captures `123.json`; `parse_id` strips the suffix.
    api = api.route("/api/v2/tickets/{id}", get(show_ticket).put(update_ticket));
    api = both(api, "/api/v2/tickets/{id}/comments", get(list_comments));
    api = both(api, "/api/v2/tickets/{id}/audits", get(list_audits));
    api = both(
        api,
        "/api/v2/users/create_or_update",
        post(create_or_update_user),
    );
    api = both(api, "/api/v2/users/search", get(search_users));
    api = both(api, "/api/v2/users/show_many", get(show_many_users));
    api = both(api, "/api/v2/users/me", get(show_me));
    api = api.route("/api/v2/users/{id}", get(show_user));
    api = both(
        api,
        "/api/v2/users/{id}/identities",
        get(list_identities).post(add_identity),
    );
    api = both(
        api,
        "/api/v2/webhooks",
        get(list_webhooks).post(create_webhook),
    );
    api = api.route(
        "/api/v2/webhooks/{id}",
        get(show_webhook)
            .patch(patch_webhook)
            .delete(delete_webhook),
    );
    api = both(
        api,
        "/api/v2/webhooks/{id}/signing_secret",
        get(show_secret).post(reset_secret),
    );
    api = both(
        api,
        "/api/v2/incremental/tickets/cursor",
        get(export_tickets),
    );
    api = both(
        api,
        "/api/v2/incremental/tickets",
        get(export_tickets_by_time),
    );
    api = both(
        api,
        "/api/v2/incremental/ticket_events",
        get(export_ticket_events),
    );
    let api = api.route_layer(middleware::from_fn_with_state(sim.clone(), gate));

    let control = Router::new()
        .route("/_control/webhook_deliveries", get(control_deliveries))
        .merge(control::routes())
        .merge(control::helpdesk_routes());

    api.merge(control)
        .fallback(unknown_endpoint)
        .with_state(sim)
}

/// Any other path: Zendesk's JSON 404 for an endpoint it does not have (clients parse the
/// body of every error, so an empty one breaks them).
async fn unknown_endpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        json!({"error": "InvalidEndpoint", "description": "Not found"}),
    )
}

// ----- gate: budget, faults, auth ------------------------------------------------------------

/// Runs before every API handler and stamps rate-limit headers on every API response.
async fn gate(State(sim): State<Simulator>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let budget = sim.faults().check_budget();
    let mut response = match admit(&sim, &mut request, budget, &path).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    };
    let ticket_endpoint =
        path.starts_with("/api/v2/tickets") || path.starts_with("/api/v2/incremental/ticket");
    rate_headers(response.headers_mut(), budget, ticket_endpoint);
    response
}

/// The account budget, then injected faults, then auth and scopes: Zendesk counts every call.
async fn admit(
    sim: &Simulator,
    request: &mut Request,
    budget: Budget,
    path: &str,
) -> Result<(), Response> {
    sim.faults().admit_within(budget, path, &ZENDESK).await?;
    let principal = authenticate(sim, request.headers()).map_err(IntoResponse::into_response)?;
    if !principal.allows(request.method(), path) {
        return Err(ApiError::forbidden().into_response());
    }
    request.extensions_mut().insert(principal);
    Ok(())
}

fn rate_headers(headers: &mut HeaderMap, budget: Budget, ticket_endpoint: bool) {
    let (limit, remaining, reset) = match budget {
        Budget::Unlimited => (NOMINAL_LIMIT, NOMINAL_LIMIT - 1, 60),
        Budget::Allowed {
            limit,
            remaining,
            resets_in_secs,
        } => (limit, remaining, resets_in_secs),
        Budget::Exceeded {
            limit,
            retry_after_secs,
        } => (limit, 0, retry_after_secs),
    };
    let account = [
        ("x-rate-limit", limit),
        ("x-rate-limit-remaining", remaining),
    ];
    insert_headers(headers, account.map(|(name, n)| (name, n.to_string())));
    if ticket_endpoint {
        let endpoint = [
            ("ratelimit-limit", limit.to_string()),
            ("ratelimit-remaining", remaining.to_string()),
            ("ratelimit-reset", reset.to_string()),
        ];
        insert_headers(headers, endpoint);
    }
}

fn authenticate(sim: &Simulator, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (scheme, credentials) = value
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    let store = sim.store();
    let config = &store.config;
    let agent = Principal {
        user_id: store.agent_id,
        admin: config.admin,
        scopes: None,
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials.trim())
            .map_err(|_| ApiError::unauthorized())?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized())?;
        let (user, password) = decoded.split_once(':').ok_or_else(ApiError::unauthorized)?;
        let email = user
            .strip_suffix("/token")
            .ok_or_else(ApiError::unauthorized)?;
        if email.eq_ignore_ascii_case(&config.agent_email) && password == config.api_token {
            return Ok(agent);
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(token) = config
            .oauth_tokens
            .iter()
            .find(|t| t.token == credentials.trim())
        {
            return Ok(Principal {
                scopes: Some(token.scopes.clone()),
                ..agent
            });
        }
    }
    Err(ApiError::unauthorized())
}

// ----- request helpers -----------------------------------------------------------------------

/// Parses a JSON request body; Zendesk only accepts `application/json`.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "UnsupportedMediaType", "description": "Content-Type must be application/json"}),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("InvalidJSON", format!("Invalid JSON in request body: {e}"))
    })
}

/// The object under the root key (`{"ticket": {...}}`), as Rails' `params.require` wants it.
fn root<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value.get(key).and_then(Value::as_object).ok_or_else(|| {
        ApiError::bad_request(
            "ParameterMissing",
            format!("param is missing or the value is empty: {key}"),
        )
    })
}

/// `123` or `123.json`.
fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.trim_end_matches(".json")
        .parse()
        .map_err(|_| ApiError::not_found())
}

/// `http://{Host}` of the request, so links point back at this server.
fn base_url(sim: &Simulator, headers: &HeaderMap) -> String {
    sim.request_origin(headers)
}

fn ok(body: Value) -> ApiResult {
    Ok(Json(body).into_response())
}

// ----- pagination ----------------------------------------------------------------------------

/// Pages `items` (already in order, each with a stable id) with cursor pagination when any
/// `page[...]` parameter is present, otherwise with offset pagination.
fn paginate(
    items: Vec<(u64, Value)>,
    q: &HashMap<String, String>,
    key: &str,
    url: &str,
    keep: &[(&str, String)],
) -> Result<Value, ApiError> {
    let listing = Listing {
        items,
        q,
        key,
        url,
        keep,
    };
    if is_cursor_paged(q) {
        cursor_page(listing)
    } else {
        offset_page(listing)
    }
}

/// What [`paginate`] pages: the items in order, the request's query, the key the page goes
/// under, the listing's URL and the filters its links keep.
struct Listing<'a> {
    items: Vec<(u64, Value)>,
    q: &'a HashMap<String, String>,
    key: &'a str,
    url: &'a str,
    keep: &'a [(&'a str, String)],
}

impl Listing<'_> {
    /// The listing's URL with its filters and `paging` (the page's position and size).
    fn link(&self, paging: [(&str, String); 2]) -> String {
        let mut params: Vec<(&str, String)> = self.keep.to_vec();
        params.extend(paging);
        with_query(self.url, &params)
    }
}

/// True when the request asks for cursor pagination (any `page[...]` parameter).
fn is_cursor_paged(q: &HashMap<String, String>) -> bool {
    ["page[size]", "page[after]", "page[before]"]
        .iter()
        .any(|k| q.contains_key(*k))
}

fn bad_page(description: &str) -> ApiError {
    ApiError::bad_request("InvalidPaginationParameter", description)
}

fn cursor_page(listing: Listing<'_>) -> Result<Value, ApiError> {
    let (items, q, key) = (&listing.items, listing.q, listing.key);
    let size = match q.get("page[size]") {
        None => MAX_PAGE_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => return Err(bad_page("page[size] must be between 1 and 100")),
        },
    };
    let position = |cursor: &str| -> Result<usize, ApiError> {
        let id = decode_cursor(key, cursor).ok_or_else(|| bad_page("Invalid cursor"))?;
        items
            .iter()
            .position(|(i, _)| *i == id)
            .ok_or_else(|| bad_page("Invalid cursor"))
    };
    let (range, has_more) = if let Some(before) = q.get("page[before]") {
        let end = position(before)?;
        let start = end.saturating_sub(size);
        (start..end, start > 0)
    } else {
        let start = match q.get("page[after]") {
            Some(after) => position(after)? + 1,
            None => 0,
        };
        let end = (start + size).min(items.len());
        (start..end, end < items.len())
    };
    let page = &items[range];
    let after = page.last().map(|(id, _)| encode_cursor(key, *id));
    let before = page.first().map(|(id, _)| encode_cursor(key, *id));
    let link = |name: &str, cursor: &Option<String>| {
        cursor
            .as_ref()
            .map(|c| listing.link([(name, c.clone()), ("page[size]", size.to_string())]))
    };
    let mut body = Map::new();
    body.insert(
        key.to_owned(),
        Value::Array(page.iter().map(|(_, v)| v.clone()).collect()),
    );
    body.insert(
        "meta".into(),
        json!({"has_more": has_more, "after_cursor": after, "before_cursor": before}),
    );
    body.insert(
        "links".into(),
        json!({"next": link("page[after]", &after), "prev": link("page[before]", &before)}),
    );
    Ok(Value::Object(body))
}

fn offset_page(listing: Listing<'_>) -> Result<Value, ApiError> {
    let (items, q, key) = (&listing.items, listing.q, listing.key);
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad_page(&format!("{name} must be a positive integer"))),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", MAX_PAGE_SIZE)?.min(MAX_PAGE_SIZE);
    if page > MAX_OFFSET_PAGE {
        return Err(bad_page(
            "Offset pagination is limited to the first 100 pages. Use cursor pagination instead.",
        ));
    }
    let count = items.len();
    let start = (page - 1).saturating_mul(per_page).min(count);
    let end = (start + per_page).min(count);
    let link =
        |p: usize| listing.link([("page", p.to_string()), ("per_page", per_page.to_string())]);
    let next = (end < count && page < MAX_OFFSET_PAGE).then(|| link(page + 1));
    let previous = (page > 1).then(|| link(page - 1));
    let mut body = Map::new();
    body.insert(
        key.to_owned(),
        Value::Array(items[start..end].iter().map(|(_, v)| v.clone()).collect()),
    );
    body.insert("next_page".into(), json!(next));
    body.insert("previous_page".into(), json!(previous));
    body.insert("count".into(), json!(count));
    Ok(Value::Object(body))
}

// ----- tickets -------------------------------------------------------------------------------

fn created(body: Value, location: String, lookup: Option<&str>) -> Response {
    let lookup = lookup.map(|l| if l == "hit" { "hit" } else { "miss" });
    let lookup = lookup.map(|l| (HeaderName::from_static("x-idempotency-lookup"), l));
    let response = (StatusCode::CREATED, Json(body)).into_response();
    with_headers(with_headers(response, [(LOCATION, location)]), lookup)
}

async fn create_ticket(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&headers, &body)?;
    let input = root(&value, "ticket")?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now_ms| {
        if let Some(key) = &key {
            let ttl = i64::try_from(store.config.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
            if let Some(entry) = store.idempotent_response(key, now_ms, ttl) {
                if entry.request != value {
                    return Err(ApiError::bad_request(
                        "IdempotentRequestError",
                        "Request parameters don't match the given idempotency key",
                    ));
                }
                let location = format!("{base}/api/v2/tickets/{}.json", entry.ticket_id);
                return Ok(created(entry.response.clone(), location, Some("hit")));
            }
        }
        let id = store.create_ticket(p.user_id, input, now_ms.div_euclid(1000))?;
        let body = ticket_with_audit(store, id, &base);
        if let Some(key) = &key {
            let entry = IdempotentResponse {
                request: value.clone(),
                response: body.clone(),
                ticket_id: id,
                stored_at_ms: now_ms,
            };
            store.store_idempotent_response(key.clone(), entry);
        }
        Ok(created(
            body,
            format!("{base}/api/v2/tickets/{id}.json"),
            key.as_ref().map(|_| "miss"),
        ))
    })
}

/// `{"ticket": ..., "audit": <latest audit>}` as create and update answer.
fn ticket_with_audit(store: &Store, id: u64, base: &str) -> Value {
    let ticket = store.tickets.get(&id).map(|t| store.ticket_json(t, base));
    let audit = store
        .audits
        .iter()
        .rev()
        .find(|a| a.ticket_id == id)
        .map(|a| store.audit_json(a));
    json!({"ticket": ticket, "audit": audit})
}

async fn list_tickets(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let external_id = q.get("external_id");
    let items = match external_id {
        Some(e) => store
            .tickets_with_external_id(e)
            .into_iter()
            .map(|t| (t.id, store.ticket_json(t, &base)))
            .collect(),
        None => store
            .tickets
            .values()
            .map(|t| (t.id, store.ticket_json(t, &base)))
            .collect(),
    };
    let keep: Vec<(&str, String)> = external_id
        .map(|e| ("external_id", e.clone()))
        .into_iter()
        .collect();
    ok(paginate(
        items,
        &q,
        "tickets",
        &format!("{base}/api/v2/tickets.json"),
        &keep,
    )?)
}

async fn show_ticket(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let ticket = store.tickets.get(&id).ok_or_else(ApiError::not_found)?;
    ok(json!({"ticket": store.ticket_json(ticket, &base)}))
}

async fn update_ticket(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let value = json_body(&headers, &body)?;
    let input = root(&value, "ticket")?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now_ms| {
        let ticket = store.tickets.get(&id).cloned().ok_or_else(ApiError::not_found)?;
        if ticket.status == "closed" {
            let mut d = super::error::Details::default();
            d.add("status", "InvalidValue", "closed prevents ticket update");
            return Err(d.into_error());
        }
        let mut d = super::error::Details::default();
        let f = Fields::new(input);
        if f.bool("safe_update", &mut d) == Some(true) {
            match f.str("updated_stamp", &mut d) {
                None => d.add("updated_stamp", "BlankValue", "Updated stamp: is required for a safe update"),
                Some(stamp) if !same_instant(&stamp, ticket.updated_at) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        json!({
                            "error": "UpdateConflict",
                            "description": "Safe Update prevented the update due to outdated ticket data. \
                                            Please fetch the latest ticket data and try again."
                        }),
                    ));
                }
                Some(_) => {}
            }
        }
        d.check()?;
        let changes = store.parse_update(p.user_id, &ticket, input)?;
        store.check_update_limit(p.user_id, id, now_ms)?;
        store.apply(id, p.user_id, super::model::Channel::Api, changes, now_ms.div_euclid(1000))?;
        ok(ticket_with_audit(store, id, &base))
    })
}

/// Compares a client's `updated_stamp` with a stored second, tolerating `+00:00` for `Z`.
fn same_instant(stamp: &str, secs: i64) -> bool {
    let stamp = stamp.trim();
    let stamp = stamp
        .strip_suffix("+00:00")
        .or_else(|| stamp.strip_suffix('Z'))
        .unwrap_or(stamp);
    let stamp = stamp.split('.').next().unwrap_or(stamp);
    iso8601(secs).trim_end_matches('Z') == stamp
}

async fn list_comments(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let ticket = store.tickets.get(&id).ok_or_else(ApiError::not_found)?;
    let mut comments: Vec<_> = ticket.comments.iter().collect();
    // Ascending by default. Zendesk documents `sort` for cursor pagination and `sort_order`
    // for offset pagination; each is ignored in the other mode.
    let descending = if is_cursor_paged(&q) {
        q.get("sort").is_some_and(|s| s == "-created_at")
    } else {
        q.get("sort_order").is_some_and(|s| s == "desc")
    };
    if descending {
        comments.reverse();
    }
    let items: Vec<(u64, Value)> = comments
        .iter()
        .map(|c| (c.id, store.comment_json(c)))
        .collect();
    let mut keep: Vec<(&str, String)> = Vec::new();
    for name in ["sort", "sort_order", "include"] {
        if let Some(v) = q.get(name) {
            keep.push((name, v.clone()));
        }
    }
    let mut body = paginate(
        items,
        &q,
        "comments",
        &format!("{base}/api/v2/tickets/{id}/comments.json"),
        &keep,
    )?;
    // `include=users` sideloads the authors of the comments on the page.
    if q.get("include")
        .is_some_and(|i| i.split(',').any(|x| x.trim() == "users"))
    {
        let mut author_ids: Vec<u64> = body["comments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["author_id"].as_u64())
            .collect();
        author_ids.sort_unstable();
        author_ids.dedup();
        let users: Vec<Value> = author_ids
            .iter()
            .filter_map(|a| store.users.get(a))
            .map(|u| store.user_json(u, &base))
            .collect();
        body["users"] = Value::Array(users);
    }
    ok(body)
}

async fn list_audits(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = base_url(&sim, &headers);
    let store = sim.store();
    if !store.tickets.contains_key(&id) {
        return Err(ApiError::not_found());
    }
    let items = store
        .audits
        .iter()
        .filter(|a| a.ticket_id == id)
        .map(|a| (a.id, store.audit_json(a)))
        .collect();
    ok(paginate(
        items,
        &q,
        "audits",
        &format!("{base}/api/v2/tickets/{id}/audits.json"),
        &[],
    )?)
}

// ----- users ---------------------------------------------------------------------------------

async fn create_or_update_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&headers, &body)?;
    let input = root(&value, "user")?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now_ms| {
        let (id, was_created) = store.create_or_update_user(input, now_ms.div_euclid(1000))?;
        let user = store.users.get(&id).map(|u| store.user_json(u, &base));
        let body = json!({"user": user});
        if was_created {
            Ok(created(
                body,
                format!("{base}/api/v2/users/{id}.json"),
                None,
            ))
        } else {
            ok(body)
        }
    })
}

async fn search_users(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let (users, keep): (Vec<&User>, _) = if let Some(e) = q.get("external_id") {
        let users = store
            .user_by_external_id(e)
            .and_then(|id| store.users.get(&id))
            .into_iter()
            .collect();
        (users, vec![("external_id", e.clone())])
    } else if let Some(query) = q.get("query") {
        // A simplified search: a substring of the name, email or any identity.
        let needle = query.trim().trim_start_matches("email:").to_lowercase();
        let matches = |u: &&User| {
            u.name.to_lowercase().contains(&needle)
                || u.email
                    .as_deref()
                    .is_some_and(|m| m.to_lowercase().contains(&needle))
                || u.identities
                    .iter()
                    .any(|i| i.value.to_lowercase().contains(&needle))
        };
        (
            store.users.values().filter(matches).collect(),
            vec![("query", query.clone())],
        )
    } else {
        return Err(ApiError::bad_request(
            "InvalidSearchParameter",
            "query or external_id is required",
        ));
    };
    let items = users
        .into_iter()
        .map(|u| (u.id, store.user_json(u, &base)))
        .collect();
    ok(paginate(
        items,
        &q,
        "users",
        &format!("{base}/api/v2/users/search.json"),
        &keep,
    )?)
}

async fn show_many_users(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let split = |s: &String| {
        s.split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
    };
    let users: Vec<Value> = if let Some(ids) = q.get("ids") {
        split(ids)
            .iter()
            .filter_map(|i| i.parse::<u64>().ok())
            .filter_map(|i| store.users.get(&i))
            .map(|u| store.user_json(u, &base))
            .collect()
    } else if let Some(ext) = q.get("external_ids") {
        let wanted = split(ext);
        if wanted.len() > MAX_PAGE_SIZE {
            return Err(ApiError::bad_request(
                "InvalidValue",
                "At most 100 external_ids are allowed",
            ));
        }
        wanted
            .iter()
            .filter_map(|e| store.user_by_external_id(e))
            .filter_map(|i| store.users.get(&i))
            .map(|u| store.user_json(u, &base))
            .collect()
    } else {
        return Err(ApiError::bad_request(
            "InvalidValue",
            "ids or external_ids is required",
        ));
    };
    let count = users.len();
    ok(json!({"users": users, "next_page": null, "previous_page": null, "count": count}))
}

async fn show_me(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let user = store
        .users
        .get(&p.user_id)
        .ok_or_else(ApiError::not_found)?;
    ok(json!({"user": store.user_json(user, &base)}))
}

async fn show_user(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let user = store.users.get(&id).ok_or_else(ApiError::not_found)?;
    ok(json!({"user": store.user_json(user, &base)}))
}

async fn list_identities(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = base_url(&sim, &headers);
    let store = sim.store();
    let user = store.users.get(&id).ok_or_else(ApiError::not_found)?;
    let items = user
        .identities
        .iter()
        .map(|i| (i.id, store.identity_json(id, i, &base)))
        .collect();
    ok(paginate(
        items,
        &q,
        "identities",
        &format!("{base}/api/v2/users/{id}/identities.json"),
        &[],
    )?)
}

async fn add_identity(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let value = json_body(&headers, &body)?;
    let input = root(&value, "identity")?;
    let base = base_url(&sim, &headers);
    sim.mutate(|store, now_ms| {
        let identity_id = store.add_identity(id, input, now_ms.div_euclid(1000))?;
        let identity = store
            .users
            .get(&id)
            .and_then(|u| u.identities.iter().find(|i| i.id == identity_id))
            .map(|i| store.identity_json(id, i, &base));
        Ok(created(
            json!({"identity": identity}),
            format!("{base}/api/v2/users/{id}/identities/{identity_id}.json"),
            None,
        ))
    })
}

// ----- webhooks ------------------------------------------------------------------------------

fn webhook_id(raw: &str) -> String {
    raw.trim_end_matches(".json").to_owned()
}

async fn list_webhooks(State(sim): State<Simulator>) -> ApiResult {
    let store = sim.store();
    let hooks: Vec<Value> = store.webhooks.values().map(Webhook::json).collect();
    ok(
        json!({"webhooks": hooks, "meta": {"has_more": false, "after_cursor": null, "before_cursor": null}, "links": {"next": null, "prev": null}}),
    )
}

async fn create_webhook(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&headers, &body)?;
    let input = root(&value, "webhook")?;
    let base = base_url(&sim, &headers);
    let now_ms = sim.now_ms();
    let mut store = sim.store();
    let n = store.next_webhook_id;
    // Zendesk webhook ids are 26-character ULIDs.
    let id = format!("01HSWBD{n:019}");
    let seq = sim
        .inner
        .sequence
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret = super::util::pseudo_secret(seq, now_ms);
    let hook = Webhook::blank(id.clone(), secret, p.user_id, now_ms.div_euclid(1000))
        .apply(input, true)?;
    store.next_webhook_id += 1;
    let body = json!({"webhook": hook.json()});
    store.webhooks.insert(id.clone(), hook);
    Ok(created(body, format!("{base}/api/v2/webhooks/{id}"), None))
}

async fn show_webhook(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let store = sim.store();
    let hook = store
        .webhooks
        .get(&webhook_id(&id))
        .ok_or_else(webhook_not_found)?;
    ok(json!({"webhook": hook.json()}))
}

async fn patch_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let value = json_body(&headers, &body)?;
    let input = root(&value, "webhook")?;
    let now = sim.inner.base.clock.now_secs();
    let mut store = sim.store();
    let id = webhook_id(&id);
    let hook = store
        .webhooks
        .get(&id)
        .cloned()
        .ok_or_else(webhook_not_found)?;
    let mut hook = hook.apply(input, false)?;
    hook.updated_at = now;
    store.webhooks.insert(id, hook);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_webhook(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let mut store = sim.store();
    store
        .webhooks
        .remove(&webhook_id(&id))
        .ok_or_else(webhook_not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn show_secret(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let store = sim.store();
    let hook = store
        .webhooks
        .get(&webhook_id(&id))
        .ok_or_else(webhook_not_found)?;
    ok(json!({"signing_secret": {"secret": hook.signing_secret, "algorithm": "SHA256"}}))
}

async fn reset_secret(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    let now_ms = sim.now_ms();
    let seq = sim
        .inner
        .sequence
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut store = sim.store();
    let hook = store
        .webhooks
        .get_mut(&webhook_id(&id))
        .ok_or_else(webhook_not_found)?;
    hook.signing_secret = super::util::pseudo_secret(seq, now_ms);
    let body = json!({"signing_secret": {"secret": hook.signing_secret, "algorithm": "SHA256"}});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

// ----- incremental exports -------------------------------------------------------------------

/// Admin check, export rate limit, and the page size; shared by both exports.
fn export_preamble(
    store: &mut Store,
    p: &Principal,
    q: &HashMap<String, String>,
    now_ms: i64,
) -> Result<usize, ApiError> {
    if !p.admin {
        return Err(ApiError::forbidden());
    }
    store.check_export_limit(now_ms)?;
    match q.get("per_page") {
        None => Ok(store.config.export_page_size.clamp(1, MAX_EXPORT_PAGE)),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_EXPORT_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid_value("per_page must be between 1 and 1000")),
    }
}

/// Parses `start_time` and refuses one inside the exclusion window.
fn start_time(q: &HashMap<String, String>, window_secs: u64, now: i64) -> Result<i64, ApiError> {
    let raw = q
        .get("start_time")
        .ok_or_else(|| ApiError::invalid_value("start_time is required"))?;
    let start: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid_value("start_time must be a Unix timestamp in seconds"))?;
    if start > now - window_secs as i64 {
        let window = match window_secs {
            0 => "not in the future".to_owned(),
            60 => "older than 1 minute".to_owned(),
            n => format!("older than {n} seconds"),
        };
        return Err(ApiError::invalid_value(format!(
            "Too recent start_time. Use a start_time {window}"
        )));
    }
    Ok(start)
}

/// Where a cursor export page starts.
enum Position {
    /// Tickets changed at or after this Unix time.
    Since(i64),
    /// Tickets whose latest change comes after this sequence number.
    After(u64),
    /// Tickets whose latest change comes before this sequence number (paging backwards).
    Before(u64),
}

const SINCE: &str = "export-since";
const AFTER: &str = "export-after";
const BEFORE: &str = "export-before";

async fn export_tickets(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let now_ms = sim.now_ms();
    let now = now_ms.div_euclid(1000);
    let mut store = sim.store();
    let per_page = export_preamble(&mut store, &p, &q, now_ms)?;
    let window = store.config.export_window_secs;
    let position = if let Some(cursor) = q.get("cursor") {
        let invalid = || ApiError::invalid_value("cursor is invalid");
        if let Some(seq) = decode_cursor(AFTER, cursor) {
            Position::After(seq)
        } else if let Some(seq) = decode_cursor(BEFORE, cursor) {
            Position::Before(seq)
        } else {
            Position::Since(
                decode_cursor(SINCE, cursor)
                    .and_then(|t| i64::try_from(t).ok())
                    .ok_or_else(invalid)?,
            )
        }
    } else {
        Position::Since(start_time(&q, window, now)?)
    };

    // Recent changes stay hidden for `window` seconds, so a client never reads a second that
    // can still gain changes. Sequence order is time order, so the visible part is a prefix.
    let cutoff = now - window as i64;
    let visible: Vec<_> = store
        .tickets_by_seq()
        .filter(|t| window == 0 || t.updated_at <= cutoff)
        .collect();
    let (page, more) = match position {
        Position::Since(t) => {
            let rest: Vec<_> = visible.into_iter().filter(|x| x.updated_at >= t).collect();
            let more = rest.len() > per_page;
            (rest.into_iter().take(per_page).collect::<Vec<_>>(), more)
        }
        Position::After(seq) => {
            let rest: Vec<_> = visible.into_iter().filter(|x| x.seq > seq).collect();
            let more = rest.len() > per_page;
            (rest.into_iter().take(per_page).collect(), more)
        }
        Position::Before(seq) => {
            let rest: Vec<_> = visible.into_iter().filter(|x| x.seq < seq).collect();
            let skip = rest.len().saturating_sub(per_page);
            (rest.into_iter().skip(skip).collect(), skip > 0)
        }
    };
    // An empty page keeps the client where it was, so polling again resumes correctly.
    let after_cursor = match (page.last(), &position) {
        (Some(t), _) => encode_cursor(AFTER, t.seq),
        (None, Position::Since(t)) => encode_cursor(SINCE, u64::try_from(*t).unwrap_or(0)),
        (None, Position::After(seq)) => encode_cursor(AFTER, *seq),
        (None, Position::Before(seq)) => encode_cursor(AFTER, seq.saturating_sub(1)),
    };
    let before_cursor = page.first().map(|t| encode_cursor(BEFORE, t.seq));
    let url = |c: &str| {
        let mut params = vec![("cursor", c.to_owned())];
        if let Some(n) = q.get("per_page") {
            params.push(("per_page", n.clone()));
        }
        with_query(
            &format!("{base}/api/v2/incremental/tickets/cursor.json"),
            &params,
        )
    };
    let tickets: Vec<Value> = page.iter().map(|t| store.ticket_json(t, &base)).collect();
    let end_of_stream = matches!(position, Position::Before(_)) || !more;
    ok(json!({
        "tickets": tickets,
        "after_url": url(&after_cursor),
        "after_cursor": after_cursor,
        "before_url": before_cursor.as_deref().map(url),
        "before_cursor": before_cursor,
        "end_of_stream": end_of_stream,
    }))
}

/// One page of a time-based export (see [`time_page`]).
struct TimePage<'a, T> {
    taken: &'a [T],
    end_of_stream: bool,
    /// The last item's time (`start` when the page is empty).
    end_time: i64,
    /// Where the next page starts.
    next_start: i64,
}

/// Pages `candidates` (sorted by `time`, all at or after `start`) the way Zendesk's time-based
/// exports do. A page ends on a whole second: it takes every item sharing the last time, so
/// the next page, which starts at `end_time`, repeats at most that second. When the whole page
/// is one second, starting the next at that second would return the same page forever, so it
/// moves past it.
fn time_page<T>(
    candidates: &[T],
    per_page: usize,
    start: i64,
    time: impl Fn(&T) -> i64,
) -> TimePage<'_, T> {
    let mut take = per_page.min(candidates.len());
    if let Some(last) = take.checked_sub(1).map(|i| time(&candidates[i])) {
        while take < candidates.len() && time(&candidates[take]) == last {
            take += 1;
        }
    }
    let taken = &candidates[..take];
    let end_of_stream = take == candidates.len();
    let end_time = taken.last().map_or(start, &time);
    let next_start = if taken.first().is_some_and(|t| time(t) == end_time) && !end_of_stream {
        end_time + 1
    } else {
        end_time
    };
    TimePage {
        taken,
        end_of_stream,
        end_time,
        next_start,
    }
}

/// The time-based ticket export: tickets whose latest change is at or after `start_time`,
/// oldest first, up to `per_page` (1,000) but always ending on a whole second, with
/// `end_time` (the last ticket's change time) as the next page's `start_time`. Like Zendesk's,
/// the next page repeats that last second, so clients see duplicates; a page that is all one
/// second moves on past it instead of looping.
async fn export_tickets_by_time(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let now_ms = sim.now_ms();
    let now = now_ms.div_euclid(1000);
    let mut store = sim.store();
    let per_page = export_preamble(&mut store, &p, &q, now_ms)?;
    let window = store.config.export_window_secs;
    let start = start_time(&q, window, now)?;
    let cutoff = now - window as i64;
    // Change order is time order, so this is sorted by `updated_at`.
    let candidates: Vec<_> = store
        .tickets_by_seq()
        .filter(|t| t.updated_at >= start && (window == 0 || t.updated_at <= cutoff))
        .collect();
    let TimePage {
        taken: page,
        end_of_stream,
        end_time,
        next_start,
    } = time_page(&candidates, per_page, start, |t| t.updated_at);
    let mut params = vec![("start_time", next_start.to_string())];
    for key in ["include", "per_page"] {
        if let Some(value) = q.get(key) {
            params.push((key, value.clone()));
        }
    }
    let tickets: Vec<Value> = page.iter().map(|t| store.ticket_json(t, &base)).collect();
    ok(json!({
        "tickets": tickets,
        "next_page": with_query(&format!("{base}/api/v2/incremental/tickets.json"), &params),
        "count": tickets.len(),
        "end_time": end_time,
        "end_of_stream": end_of_stream,
    }))
}

async fn export_ticket_events(
    State(sim): State<Simulator>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Params,
) -> ApiResult {
    let base = base_url(&sim, &headers);
    let now_ms = sim.now_ms();
    let now = now_ms.div_euclid(1000);
    let mut store = sim.store();
    let per_page = export_preamble(&mut store, &p, &q, now_ms)?;
    let window = store.config.export_window_secs;
    let start = start_time(&q, window, now)?;
    let include_comments = q
        .get("include")
        .is_some_and(|i| i.split(',').any(|x| x.trim() == "comment_events"));
    let cutoff = now - window as i64;

    let candidates: Vec<_> = store
        .audits
        .iter()
        .filter(|a| a.created_at >= start && (window == 0 || a.created_at <= cutoff))
        .collect();
    let TimePage {
        taken: page,
        end_of_stream,
        end_time,
        next_start,
    } = time_page(&candidates, per_page, start, |a| a.created_at);
    let mut params = vec![("start_time", next_start.to_string())];
    if let Some(include) = q.get("include") {
        params.push(("include", include.clone()));
    }
    if let Some(n) = q.get("per_page") {
        params.push(("per_page", n.clone()));
    }
    let events: Vec<Value> = page
        .iter()
        .map(|a| store.ticket_event_json(a, include_comments))
        .collect();
    ok(json!({
        "ticket_events": events,
        "next_page": with_query(&format!("{base}/api/v2/incremental/ticket_events.json"), &params),
        "count": events.len(),
        "end_time": end_time,
        "end_of_stream": end_of_stream,
    }))
}

// ----- control API (the kit mounts the rest) ------------------------------------------------

pub(super) fn config_json(sim: &Simulator) -> Value {
    let c = sim.config();
    json!({
        "rate_limit_per_minute": c.rate_limit_per_minute,
        "export_page_size": c.export_page_size,
        "export_window_secs": c.export_window_secs,
        "export_rate_limit_per_minute": c.export_rate_limit_per_minute,
        "ticket_update_limit": c.ticket_update_limit,
        "idempotency_ttl_secs": c.idempotency_ttl.as_secs(),
        "webhook_max_retries": c.webhook_max_retries,
        "webhook_retry_delay_ms": c.webhook_retry_delay.as_millis() as u64,
    })
}

/// `POST /_control/config`: the settings named; a `null` limit lifts that limit.
pub(super) fn apply_config(sim: &Simulator, patch: &control::Patch) -> Result<(), ControlError> {
    let rate = patch.limit("rate_limit_per_minute")?;
    let page = patch.number("export_page_size")?;
    // No window is the same as a window of 0.
    let window = patch.nullable("export_window_secs")?;
    let export_limit = patch.limit("export_rate_limit_per_minute")?;
    let update_limit = patch.limit("ticket_update_limit")?;
    let ttl = patch.number("idempotency_ttl_secs")?;
    let retries = patch.limit("webhook_max_retries")?;
    let delay = patch.number("webhook_retry_delay_ms")?;
    let page = page.map(|v| {
        usize::try_from(v)
            .unwrap_or(MAX_EXPORT_PAGE)
            .clamp(1, MAX_EXPORT_PAGE)
    });
    sim.update_config(|c| {
        set(&mut c.rate_limit_per_minute, rate);
        set(&mut c.export_page_size, page);
        set(&mut c.export_window_secs, window.map(|v| v.unwrap_or(0)));
        set(&mut c.export_rate_limit_per_minute, export_limit);
        set(&mut c.ticket_update_limit, update_limit);
        set(&mut c.idempotency_ttl, ttl.map(Duration::from_secs));
        // `null` cannot lift the retries: they are a count, not a limit.
        set(&mut c.webhook_max_retries, retries.flatten());
        set(&mut c.webhook_retry_delay, delay.map(Duration::from_millis));
    });
    Ok(())
}

async fn control_deliveries(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"deliveries": sim.webhook_deliveries()}))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    /// Serves a fresh account with one ticket, its description and `replies` agent replies.
    async fn ticket_with_replies(replies: usize) -> (Simulator, String, u64) {
        let sim = Simulator::new(Config::default().relaxed());
        let (addr, _) = sim
            .clone()
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .expect("serve");
        let base = format!("http://{addr}");
        let config = sim.config();
        let created: Value = reqwest::Client::new()
            .post(format!("{base}/api/v2/tickets"))
            .basic_auth(
                format!("{}/token", config.agent_email),
                Some(&config.api_token),
            )
            .json(&json!({"ticket": {"subject": "s", "comment": {"body": "description"}}}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("ticket");
        let id = created["ticket"]["id"].as_u64().expect("ticket id");
        for n in 0..replies {
            sim.agent_reply(id, &format!("reply {n}"), true);
        }
        (sim, base, id)
    }

    /// The comment bodies of every page from `url` on, following the next links.
    async fn bodies(sim: &Simulator, mut url: String) -> Vec<String> {
        let config = sim.config();
        let mut bodies = Vec::new();
        for _ in 0..10 {
            let page: Value = reqwest::Client::new()
                .get(&url)
                .basic_auth(
                    format!("{}/token", config.agent_email),
                    Some(&config.api_token),
                )
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("page");
            bodies.extend(
                page["comments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["body"].as_str().map(str::to_owned)),
            );
            let next = if page.get("meta").is_some() {
                page["meta"]["has_more"]
                    .as_bool()
                    .unwrap_or(false)
                    .then(|| page["links"]["next"].as_str())
                    .flatten()
            } else {
                page["next_page"].as_str()
            };
            match next {
                Some(next) => url = next.to_owned(),
                None => return bodies,
            }
        }
        panic!("pagination did not end");
    }

    #[tokio::test]
    async fn tickets_listed_by_external_id_keep_the_filter_across_pages() {
        let (sim, base, _) = ticket_with_replies(0).await;
        let config = sim.config();
        let client = reqwest::Client::new();
        let auth = |r: reqwest::RequestBuilder| {
            r.basic_auth(
                format!("{}/token", config.agent_email),
                Some(&config.api_token),
            )
        };
        for external_id in ["tg:1", "tg:2", "tg:1", "tg:1"] {
            let body = json!({"ticket": {"external_id": external_id, "comment": {"body": "b"}}});
            let response = auth(client.post(format!("{base}/api/v2/tickets")))
                .json(&body)
                .send()
                .await
                .expect("create");
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        let get = |url: String| {
            let request = auth(client.get(url));
            async move {
                request
                    .send()
                    .await
                    .expect("list")
                    .json::<Value>()
                    .await
                    .expect("page")
            }
        };
        let ids = |page: &Value| -> Vec<u64> {
            page["tickets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["id"].as_u64())
                .collect()
        };
        // The account's first ticket (from the helper) has no external id.
        let first = get(format!(
            "{base}/api/v2/tickets?external_id=tg:1&page[size]=2"
        ))
        .await;
        assert_eq!(ids(&first), [2, 4]);
        assert_eq!(first["meta"]["has_more"], true);
        let next = first["links"]["next"].as_str().expect("next link");
        let second = get(next.to_owned()).await;
        assert_eq!(ids(&second), [5], "{next}");
        assert_eq!(second["meta"]["has_more"], false);

        let offset = get(format!(
            "{base}/api/v2/tickets.json?external_id=tg:1&per_page=2"
        ))
        .await;
        assert_eq!((ids(&offset), &offset["count"]), (vec![2, 4], &json!(3)));
        let next = offset["next_page"].as_str().expect("next page");
        assert_eq!(ids(&get(next.to_owned()).await), [5]);

        let none = get(format!("{base}/api/v2/tickets?external_id=tg:9")).await;
        assert_eq!((ids(&none), &none["count"]), (vec![], &json!(0)));
    }

    #[tokio::test]
    async fn comments_sort_newest_first_with_each_paginations_parameter() {
        let (sim, base, id) = ticket_with_replies(3).await;
        let url = |query: &str| format!("{base}/api/v2/tickets/{id}/comments?{query}");
        let newest_first = ["reply 2", "reply 1", "reply 0", "description"];
        let oldest_first = ["description", "reply 0", "reply 1", "reply 2"];
        assert_eq!(
            bodies(&sim, url("sort=-created_at&page[size]=2")).await,
            newest_first,
            "cursor pages keep the order in their next links"
        );
        assert_eq!(
            bodies(&sim, url("sort=created_at&page[size]=3")).await,
            oldest_first
        );
        assert_eq!(
            bodies(&sim, url("sort_order=desc&per_page=3")).await,
            newest_first
        );
        // Each pagination has its own sort parameter.
        assert_eq!(
            bodies(&sim, url("sort=-created_at&per_page=3")).await,
            oldest_first
        );
        assert_eq!(
            bodies(&sim, url("sort_order=desc&page[size]=3")).await,
            oldest_first
        );
    }
}
