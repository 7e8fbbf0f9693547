//! The Graph HTTP surface: one handler that reads Graph paths (`/v23.0/{id}/{edge}`), the
//! gate (faults, token, budget) and the endpoints behind it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::error::{usage_headers, Graph, GraphError};
use super::model::{graph_time, Channel, Fields, Recipient, Send, Store};
use super::oauth::{self, Holder};
use super::Simulator;
use crate::kit::control::{ControlError, Patch};
use crate::kit::faults::Budget;
use crate::kit::{control, Simulated};

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .merge(control::routes())
        .merge(super::control::routes())
        .fallback(graph)
        .with_state(sim)
}

/// Request parameters: the query string, then the body (JSON object, or a form whose values
/// may be JSON, as Graph clients send `recipient={"id":…}`).
pub(crate) type Params = BTreeMap<String, Value>;

fn parse_params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Params, GraphError> {
    let mut params = Params::new();
    let form_value = |v: &str| -> Value {
        let t = v.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            serde_json::from_str(v).unwrap_or_else(|_| json!(v))
        } else {
            json!(v)
        }
    };
    if let Some(query) = uri.query() {
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            params.insert(k.into_owned(), form_value(&v));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_urlencoded::parse(body) {
            params.insert(k.into_owned(), form_value(&v));
        }
    } else {
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            GraphError::invalid_parameter(format!("The request body is not valid JSON: {e}"))
        })?;
        match parsed {
            Value::Object(map) => params.extend(map),
            _ => {
                return Err(GraphError::invalid_parameter(
                    "The request body must be a JSON object",
                ))
            }
        }
    }
    Ok(params)
}

fn text_param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

/// The token: `access_token` (query or body), else `Authorization: Bearer|OAuth <token>`.
fn token(params: &Params, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = text_param(params, "access_token") {
        return Some(t.to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    ["bearer", "oauth"]
        .contains(&scheme.to_ascii_lowercase().as_str())
        .then(|| token.trim().to_owned())
}

/// Every Graph request: faults, then the token, then the budget, then the endpoint; usage
/// headers on the answer.
async fn graph(
    State(sim): State<Simulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (page_id, throttle_code) = {
        let store = sim.store();
        let c = &store.config;
        // The business number's throughput limit is WhatsApp's own code.
        let whatsapp = segments(uri.path()).first() == Some(&c.phone_number_id);
        let code = if whatsapp { 130_429 } else { c.throttle_code };
        (c.page_id.clone(), code)
    };
    let vendor = Graph {
        page_id: page_id.clone(),
        throttle_code,
    };
    if let Err(refused) = sim.base().faults().admit(uri.path(), &vendor).await {
        return refused;
    }
    let params = match parse_params(&uri, &headers, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let path_segments = segments(uri.path());
    let now_ms = sim.now_ms();
    {
        let segs: Vec<&str> = path_segments.iter().map(String::as_str).collect();
        if let Some(result) = oauth::route(&mut sim.store(), &segs, &params, now_ms) {
            return match result {
                Ok(value) => axum::Json(value).into_response(),
                Err(e) => e.into_response(),
            };
        }
    }
    let (token, holder) = match check_token(&sim, &params, &headers, now_ms) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let usage = match sim.base().faults().check_budget() {
        Budget::Unlimited => usage_headers(&page_id, 0, 0),
        Budget::Allowed {
            limit, remaining, ..
        } => {
            let used = u64::from(limit - remaining) * 100 / u64::from(limit.max(1));
            usage_headers(&page_id, u32::try_from(used).unwrap_or(100), 0)
        }
        Budget::Exceeded {
            retry_after_secs, ..
        } => {
            let minutes = retry_after_secs.div_ceil(60).max(1);
            return GraphError::throttled(throttle_code, usage_headers(&page_id, 100, minutes))
                .into_response();
        }
    };
    let origin = sim
        .base()
        .origin(&headers)
        .unwrap_or_else(|| "https://graph.facebook.com".into());
    let request = Request {
        method,
        segments: path_segments,
        params,
        origin,
        instagram: holder == Holder::Instagram,
        user: holder == Holder::User,
        token,
    };
    let mut response = match route(&sim, &request) {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    };
    for (name, value) in usage {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The token and whose it is, or the 104/190 error.
fn check_token(
    sim: &Simulator,
    params: &Params,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<(String, Holder), GraphError> {
    let Some(token) = token(params, headers) else {
        return Err(GraphError::token_required());
    };
    let holder = oauth::holder(&sim.store(), &token, now_ms)?;
    Ok((token, holder))
}

/// The path without the version prefix (`v23.0`).
fn segments(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let versioned = parts.first().is_some_and(|first| {
        first.strip_prefix('v').is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
    });
    if versioned {
        parts.remove(0);
    }
    parts
}

#[derive(Clone)]
struct Request {
    method: Method,
    segments: Vec<String>,
    params: Params,
    origin: String,
    /// Made with the Instagram token: `me` is the Instagram account.
    instagram: bool,
    /// Made with a user token: only `/me` and `/me/accounts`.
    user: bool,
    token: String,
}

impl Request {
    fn fields(&self) -> Fields {
        Fields::parse(text_param(&self.params, "fields").unwrap_or(""))
    }

    fn limit(&self, default: usize) -> usize {
        self.params
            .get("limit")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map_or(default, |n| {
                usize::try_from(n).unwrap_or(default).clamp(1, 100)
            })
    }
}

fn route(sim: &Simulator, r: &Request) -> Result<Value, GraphError> {
    let segs: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    let (page_id, phone_id, ig_id) = {
        let store = sim.store();
        (
            store.config.page_id.clone(),
            store.config.phone_number_id.clone(),
            store.config.ig_user_id.clone(),
        )
    };
    if r.user {
        return match (&r.method, segs.as_slice()) {
            (&Method::GET, ["me"]) => Ok(json!({"id": oauth::ADMIN_USER_ID, "name": "Page Admin"})),
            (&Method::GET, [id, "accounts"]) if *id == "me" || *id == oauth::ADMIN_USER_ID => {
                let now = sim.now_ms();
                Ok(oauth::accounts(&mut sim.store(), &r.token, now))
            }
            _ => Err(GraphError::new(
                210,
                None,
                "(#210) A page access token is required to request this resource.",
            )),
        };
    }
    let is_page = |id: &str| (id == "me" && !r.instagram) || id == page_id;
    let is_ig = |id: &str| (id == "me" && r.instagram) || id == ig_id;
    match (&r.method, segs.as_slice()) {
        (&Method::POST, [id, "messages"]) if is_ig(id) => send(sim, &r.params, Channel::Instagram),
        (&Method::GET, [id]) if is_ig(id) => {
            let store = sim.store();
            Ok(json!({
                "id": store.config.ig_user_id,
                "user_id": store.config.ig_user_id,
                "username": store.config.ig_username,
            }))
        }
        (&Method::GET, [id, "conversations"]) if is_ig(id) => {
            let mut nested = r.clone();
            nested
                .params
                .entry("platform".into())
                .or_insert_with(|| json!("instagram"));
            conversations(sim, &nested)
        }
        (&Method::GET, [id, "media"]) if is_ig(id) => media(sim, r),
        (&Method::POST, [id, "mentions"]) if is_ig(id) => mention_reply(sim, &r.params),
        (&Method::POST, [id, "replies"]) => ig_reply(sim, &r.params, id),
        (&Method::GET, [id, "replies"]) => comments(sim, r, id, "replies"),
        (&Method::POST, [id, "messages"]) if *id == phone_id => {
            sim.mutate(|store, now| store.wa_send(&r.params, now))
        }
        (&Method::GET, [id]) if *id == phone_id => {
            let store = sim.store();
            Ok(json!({
                "verified_name": store.config.page_name,
                "display_phone_number": store.config.display_phone_number,
                "id": store.config.phone_number_id,
                "quality_rating": "GREEN",
            }))
        }
        (&Method::GET, [id]) if is_page(id) => {
            let store = sim.store();
            Ok(json!({"id": store.config.page_id, "name": store.config.page_name}))
        }
        (&Method::POST, [id, "messages"]) if is_page(id) => {
            send(sim, &r.params, Channel::Messenger)
        }
        (&Method::GET, [id, "conversations"]) if is_page(id) => conversations(sim, r),
        (&Method::GET, [id, "thread_owner"]) if is_page(id) => thread_owner(sim, &r.params),
        (&Method::POST, [id, action @ ("pass_thread_control" | "take_thread_control")])
            if is_page(id) =>
        {
            handover(sim, action, &r.params)
        }
        (_, [id, "subscribed_apps"]) if is_page(id) => subscribed_apps(sim, r),
        (&Method::GET, [id, "feed" | "posts"]) if is_page(id) => posts(sim, r),
        (&Method::GET, [id]) if id.starts_with("t_") => conversation(sim, r, id),
        (&Method::GET, [id, "messages"]) if id.starts_with("t_") => {
            conversation_messages(sim, r, id)
        }
        (&Method::GET, [id]) if id.starts_with("m_") => message(sim, r, id),
        (&Method::GET, [id, "comments"]) => comments(sim, r, id, "comments"),
        (&Method::POST, [id, "comments"]) => public_reply(sim, &r.params, id),
        (&Method::GET, [id]) => object(sim, r, id),
        (&Method::POST, [id]) => hide(sim, &r.params, id),
        (&Method::DELETE, [id]) => {
            sim.mutate(|store, _| store.comment_verb(id, "remove", None))?;
            Ok(json!({"success": true}))
        }
        _ => Err(GraphError::unknown_path()),
    }
}

/// The runtime settings `/_control/config` shows and changes.
pub(crate) fn config_json(sim: &Simulator) -> Value {
    let c = &sim.store().config;
    json!({
        "human_agent": c.human_agent,
        "auto_delivery": c.auto_delivery,
        "throttle_code": c.throttle_code,
        "batch_window_ms": u64::try_from(c.batch_window.as_millis()).unwrap_or(u64::MAX),
        "subscribed_fields": c.subscribed_fields,
        "whatsapp_shuffle_statuses": c.whatsapp_shuffle_statuses,
        "whatsapp_pair_interval_ms": c.whatsapp_pair_interval
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "whatsapp_templates": c.whatsapp_templates,
        "conversations_per_second": c.conversations_per_second,
    })
}

/// Applies `POST /_control/config`.
pub(crate) fn apply_config(sim: &Simulator, patch: &Patch) -> Result<(), ControlError> {
    let human_agent = patch.flag("human_agent")?;
    let auto_delivery = patch.flag("auto_delivery")?;
    let throttle_code = patch.number("throttle_code")?;
    let window = patch.number("batch_window_ms")?;
    let fields = patch.strings("subscribed_fields")?;
    let shuffle = patch.flag("whatsapp_shuffle_statuses")?;
    let pair = patch.nullable("whatsapp_pair_interval_ms")?;
    let templates = patch.strings("whatsapp_templates")?;
    let conversations = patch.limit("conversations_per_second")?;
    let mut store = sim.store();
    let c = &mut store.config;
    if let Some(v) = human_agent {
        c.human_agent = v;
    }
    if let Some(v) = auto_delivery {
        c.auto_delivery = v;
    }
    if let Some(v) = throttle_code {
        c.throttle_code = u32::try_from(v).unwrap_or(u32::MAX);
    }
    if let Some(ms) = window {
        c.batch_window = Duration::from_millis(ms);
    }
    if let Some(v) = fields {
        c.subscribed_fields = v;
    }
    if let Some(v) = shuffle {
        c.whatsapp_shuffle_statuses = v;
    }
    if let Some(v) = pair {
        c.whatsapp_pair_interval = v.map(Duration::from_millis);
    }
    if let Some(v) = templates {
        c.whatsapp_templates = v;
    }
    if let Some(v) = conversations {
        c.conversations_per_second = v;
    }
    Ok(())
}

// ----- Send API ------------------------------------------------------------------------------

fn send(sim: &Simulator, params: &Params, channel: Channel) -> Result<Value, GraphError> {
    let recipient = params
        .get("recipient")
        .ok_or_else(|| GraphError::invalid_parameter("param recipient must be non-empty."))?;
    let recipient = if let Some(id) = recipient.get("id").and_then(Value::as_str) {
        Recipient::Psid(id.to_owned())
    } else if let Some(id) = recipient.get("comment_id").and_then(Value::as_str) {
        Recipient::Comment(id.to_owned())
    } else {
        return Err(GraphError::invalid_parameter(
            "Param recipient must contain id or comment_id",
        ));
    };
    if let Some(action) = text_param(params, "sender_action") {
        if !["typing_on", "typing_off", "mark_seen"].contains(&action) {
            return Err(GraphError::invalid_parameter(format!(
                "Param sender_action must be one of {{typing_on, typing_off, mark_seen}}, got {action}"
            )));
        }
        return match recipient {
            Recipient::Psid(psid) if sim.store().users.contains_key(&psid) => {
                Ok(json!({"recipient_id": psid}))
            }
            _ => Err(GraphError::new(
                100,
                Some(2_018_001),
                "(#100) No matching user found",
            )),
        };
    }
    let message = params.get("message").cloned().unwrap_or(Value::Null);
    let send = Send {
        recipient,
        messaging_type: text_param(params, "messaging_type")
            .unwrap_or("RESPONSE")
            .to_owned(),
        tag: text_param(params, "tag").map(str::to_owned),
        text: message
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_owned),
        attachment: message.get("attachment").cloned(),
        metadata: message
            .get("metadata")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    sim.mutate(|store, now| store.send_on(channel, send, now))
}

// ----- Conversations API ---------------------------------------------------------------------

/// Counts one Conversations API call for `account` against the per-second limit.
fn conversations_limit(sim: &Simulator, account: &str) -> Result<(), GraphError> {
    let now_secs = sim.now_ms().div_euclid(1000);
    let mut store = sim.store();
    let Some(limit) = store.config.conversations_per_second else {
        return Ok(());
    };
    let page_id = store.config.page_id.clone();
    let entry = store
        .conversation_calls
        .entry(account.to_owned())
        .or_insert((now_secs, 0));
    if entry.0 != now_secs {
        *entry = (now_secs, 0);
    }
    if entry.1 >= limit {
        return Err(GraphError::throttled(
            80006,
            usage_headers(&page_id, 100, 1),
        ));
    }
    entry.1 += 1;
    Ok(())
}

fn conversations(sim: &Simulator, r: &Request) -> Result<Value, GraphError> {
    let channel = match text_param(&r.params, "platform") {
        Some("instagram") => Channel::Instagram,
        Some("messenger") => Channel::Messenger,
        Some(other) => {
            return Err(GraphError::invalid_parameter(format!(
                "Param platform must be one of {{messenger, instagram}}, got {other}"
            )))
        }
        None if r.instagram => Channel::Instagram,
        None => Channel::Messenger,
    };
    let account = sim.store().account_id(channel).to_owned();
    conversations_limit(sim, &account)?;
    let fields = r.fields();
    let store = sim.store();
    let user = text_param(&r.params, "user_id");
    let mut list: Vec<_> = store
        .conversations
        .iter()
        .filter(|c| c.channel == channel)
        .filter(|c| user.is_none_or(|u| u == c.psid))
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.updated_ms));
    let items: Vec<Value> = list
        .iter()
        .map(|c| conversation_json(&store, c, &fields, r))
        .collect();
    let path = format!("/{}", r.segments.join("/"));
    Ok(paginate(items, r, &path, 25))
}

fn conversation_json(
    store: &Store,
    c: &super::model::Conversation,
    fields: &Fields,
    r: &Request,
) -> Value {
    let mut out = json!({"id": c.id});
    let all = fields.is_empty();
    if all || fields.has("updated_time") {
        out["updated_time"] = json!(graph_time(c.updated_ms));
    }
    if fields.has("message_count") {
        out["message_count"] = json!(c.messages.len());
    }
    if fields.has("unread_count") {
        out["unread_count"] = json!(0);
    }
    if fields.has("link") {
        out["link"] = json!(format!("/{}/inbox/{}", store.config.page_id, c.id));
    }
    if fields.has("participants") || fields.has("senders") {
        let people = json!({"data": store.participants(c)});
        if fields.has("participants") {
            out["participants"] = people.clone();
        }
        if fields.has("senders") {
            out["senders"] = people;
        }
    }
    if let Some((sub, limit)) = fields.sub("messages") {
        let items: Vec<Value> = c
            .messages
            .iter()
            .rev()
            .map(|m| store.message_json(c, m, sub))
            .collect();
        let nested = Request {
            method: Method::GET,
            segments: vec![c.id.clone(), "messages".into()],
            params: {
                let mut p = Params::new();
                if let Some(t) = r.params.get("access_token") {
                    p.insert("access_token".into(), t.clone());
                }
                if !sub.is_empty() {
                    p.insert("fields".into(), json!(fields_spec(sub)));
                }
                p
            },
            origin: r.origin.clone(),
            instagram: r.instagram,
            user: false,
            token: r.token.clone(),
        };
        let path = format!("/{}/messages", c.id);
        out["messages"] = paginate(items, &nested, &path, limit.unwrap_or(25));
    }
    out
}

/// A `fields` value back as text, for `paging.next` of nested edges.
fn fields_spec(fields: &Fields) -> String {
    let names = ["id", "message", "from", "to", "created_time", "attachments"];
    names
        .iter()
        .filter(|n| fields.has(n))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

fn conversation(sim: &Simulator, r: &Request, id: &str) -> Result<Value, GraphError> {
    let store = sim.store();
    let c = store
        .conversations
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| GraphError::unknown_object(id))?;
    Ok(conversation_json(&store, c, &r.fields(), r))
}

fn conversation_messages(sim: &Simulator, r: &Request, id: &str) -> Result<Value, GraphError> {
    let store = sim.store();
    let c = store
        .conversations
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| GraphError::unknown_object(id))?;
    let fields = r.fields();
    let items: Vec<Value> = c
        .messages
        .iter()
        .rev()
        .map(|m| store.message_json(c, m, &fields))
        .collect();
    Ok(paginate(items, r, &format!("/{id}/messages"), 25))
}

fn message(sim: &Simulator, r: &Request, id: &str) -> Result<Value, GraphError> {
    let store = sim.store();
    let fields = r.fields();
    for c in &store.conversations {
        if let Some(m) = c.messages.iter().find(|m| m.mid == id) {
            return Ok(store.message_json(c, m, &fields));
        }
    }
    Err(GraphError::unknown_object(id))
}

// ----- handover ------------------------------------------------------------------------------

fn recipient_psid(params: &Params) -> Result<String, GraphError> {
    let recipient = params.get("recipient");
    recipient
        .and_then(|r| r.get("id").and_then(Value::as_str).or_else(|| r.as_str()))
        .map(str::to_owned)
        .ok_or_else(|| GraphError::invalid_parameter("param recipient must be non-empty."))
}

fn thread_owner(sim: &Simulator, params: &Params) -> Result<Value, GraphError> {
    let psid = recipient_psid(params)?;
    let store = sim.store();
    let owner = store
        .conversations
        .iter()
        .find(|c| c.psid == psid)
        .map_or(store.config.app_id.clone(), |c| c.owner_app_id.clone());
    Ok(json!({"data": [{"thread_owner": {"app_id": owner}}]}))
}

fn handover(sim: &Simulator, action: &str, params: &Params) -> Result<Value, GraphError> {
    let psid = recipient_psid(params)?;
    let metadata = text_param(params, "metadata").map(str::to_owned);
    let (us, other) = {
        let store = sim.store();
        (
            store.config.app_id.clone(),
            store.config.other_app_id.clone(),
        )
    };
    let new_owner = if action == "take_thread_control" {
        us
    } else {
        match params.get("target_app_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => other,
        }
    };
    sim.mutate(|store, now| {
        if !store.conversations.iter().any(|c| c.psid == psid) {
            return Err(GraphError::new(
                100,
                Some(2_018_001),
                "(#100) No matching user found",
            ));
        }
        let _ = store.set_owner(&psid, &new_owner, metadata, now);
        Ok(json!({"success": true}))
    })
}

fn subscribed_apps(sim: &Simulator, r: &Request) -> Result<Value, GraphError> {
    let mut store = sim.store();
    match r.method {
        Method::GET => Ok(json!({"data": [{
            "category": "Business",
            "link": "https://example.invalid/app",
            "name": "Switchboard",
            "id": store.config.app_id,
            "subscribed_fields": store.config.subscribed_fields,
        }]})),
        Method::POST => {
            let fields = text_param(&r.params, "subscribed_fields").ok_or_else(|| {
                GraphError::invalid_parameter("The parameter subscribed_fields is required.")
            })?;
            store.config.subscribed_fields = fields
                .split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect();
            Ok(json!({"success": true}))
        }
        Method::DELETE => {
            store.config.subscribed_fields.clear();
            Ok(json!({"success": true}))
        }
        _ => Err(GraphError::unknown_path()),
    }
}

// ----- posts and comments --------------------------------------------------------------------

fn posts(sim: &Simulator, r: &Request) -> Result<Value, GraphError> {
    let store = sim.store();
    let items: Vec<Value> = store
        .posts
        .iter()
        .rev()
        .map(
            |p| json!({"id": p.id, "message": p.message, "created_time": graph_time(p.created_ms)}),
        )
        .collect();
    let path = format!("/{}", r.segments.join("/"));
    Ok(paginate(items, r, &path, 25))
}

fn comments(sim: &Simulator, r: &Request, parent: &str, edge: &str) -> Result<Value, GraphError> {
    let store = sim.store();
    let is_post = store.posts.iter().any(|p| p.id == parent);
    if !is_post && !store.comments.iter().any(|c| c.id == parent && !c.removed) {
        return Err(GraphError::unknown_object(parent));
    }
    let stream = is_post && text_param(&r.params, "filter") == Some("stream");
    let mut list: Vec<_> = store
        .comments
        .iter()
        .filter(|c| !c.removed)
        .filter(|c| {
            if stream {
                c.post_id == parent
            } else {
                c.parent_id == parent
            }
        })
        .collect();
    if text_param(&r.params, "order") == Some("reverse_chronological") {
        list.reverse();
    }
    let fields = r.fields();
    let items: Vec<Value> = list
        .iter()
        .map(|c| store.comment_json(c, &fields))
        .collect();
    Ok(paginate(items, r, &format!("/{parent}/{edge}"), 25))
}

fn public_reply(sim: &Simulator, params: &Params, parent: &str) -> Result<Value, GraphError> {
    let message = text_param(params, "message").map(str::to_owned);
    let attachment =
        text_param(params, "attachment_url").map(|url| json!({"type": "photo", "url": url}));
    let id =
        sim.mutate(|store, now| store.create_comment(parent, None, message, attachment, now))?;
    Ok(json!({"id": id}))
}

/// Instagram media of the account, newest first.
fn media(sim: &Simulator, r: &Request) -> Result<Value, GraphError> {
    let store = sim.store();
    let items: Vec<Value> = store
        .posts
        .iter()
        .rev()
        .filter(|p| p.channel == Channel::Instagram && !p.foreign)
        .map(|p| json!({"id": p.id, "caption": p.message, "timestamp": graph_time(p.created_ms)}))
        .collect();
    let path = format!("/{}", r.segments.join("/"));
    Ok(paginate(items, r, &path, 25))
}

/// `POST /{ig-comment-id}/replies`: replies attach to the top-level comment.
fn ig_reply(sim: &Simulator, params: &Params, id: &str) -> Result<Value, GraphError> {
    let message = text_param(params, "message")
        .map(str::to_owned)
        .ok_or_else(|| GraphError::invalid_parameter("The parameter message is required"))?;
    let reply = sim.mutate(|store, now| {
        let Some(c) = store
            .comments
            .iter()
            .find(|c| c.id == id && !c.removed && c.channel == Channel::Instagram)
        else {
            return Err(GraphError::unknown_object(id));
        };
        let top = if c.parent_id == c.post_id {
            c.id.clone()
        } else {
            c.parent_id.clone()
        };
        store.create_comment(&top, None, Some(message), None, now)
    })?;
    Ok(json!({"id": reply}))
}

/// `POST /{ig-user-id}/mentions` `{media_id, comment_id?, message}`: a reply where the
/// account was mentioned.
fn mention_reply(sim: &Simulator, params: &Params) -> Result<Value, GraphError> {
    let media = text_param(params, "media_id")
        .ok_or_else(|| GraphError::invalid_parameter("The parameter media_id is required"))?;
    let message = text_param(params, "message")
        .map(str::to_owned)
        .ok_or_else(|| GraphError::invalid_parameter("The parameter message is required"))?;
    let parent = text_param(params, "comment_id").unwrap_or(media).to_owned();
    let id =
        sim.mutate(|store, now| store.create_comment(&parent, None, Some(message), None, now))?;
    Ok(json!({"id": id}))
}

fn hide(sim: &Simulator, params: &Params, id: &str) -> Result<Value, GraphError> {
    let hidden = match params.get("is_hidden") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => {
            return Err(GraphError::invalid_parameter(
                "The simulator updates comments only through is_hidden",
            ))
        }
    };
    let verb = if hidden { "hide" } else { "unhide" };
    sim.mutate(|store, _| store.comment_verb(id, verb, None))?;
    Ok(json!({"success": true}))
}

fn object(sim: &Simulator, r: &Request, id: &str) -> Result<Value, GraphError> {
    let store = sim.store();
    if let Some(c) = store.comments.iter().find(|c| c.id == id && !c.removed) {
        return Ok(store.comment_json(c, &r.fields()));
    }
    if let Some(p) = store.posts.iter().find(|p| p.id == id) {
        return Ok(
            json!({"id": p.id, "message": p.message, "created_time": graph_time(p.created_ms)}),
        );
    }
    Err(GraphError::unknown_object(id))
}

// ----- paging --------------------------------------------------------------------------------

fn cursor(id: &Value) -> String {
    URL_SAFE_NO_PAD.encode(id.as_str().unwrap_or_default())
}

fn uncursor(cursor: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// `{"data": […], "paging": {"cursors": {"before","after"}, "next"?, "previous"?}}` over items
/// that each have an `id`; cursors name the first and last item, so they stay valid while
/// new items arrive.
fn paginate(items: Vec<Value>, r: &Request, path: &str, default_limit: usize) -> Value {
    let limit = r.limit(default_limit);
    let position = |cursor_param: &str| -> Option<usize> {
        let id = uncursor(text_param(&r.params, cursor_param)?)?;
        items
            .iter()
            .position(|v| v["id"].as_str() == Some(id.as_str()))
    };
    let (start, end) = if let Some(after) = position("after") {
        (after + 1, (after + 1 + limit).min(items.len()))
    } else if let Some(before) = position("before") {
        (before.saturating_sub(limit), before)
    } else {
        (0, limit.min(items.len()))
    };
    let data: Vec<Value> = items[start..end].to_vec();
    if data.is_empty() {
        return json!({"data": []});
    }
    let before = cursor(&data[0]["id"]);
    let after = cursor(&data[data.len() - 1]["id"]);
    let mut paging = json!({"cursors": {"before": before, "after": after}});
    let link = |key: &str, value: &str| -> String {
        let mut query: Vec<(String, String)> = r
            .params
            .iter()
            .filter(|(k, _)| !["after", "before"].contains(&k.as_str()))
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), v)
            })
            .collect();
        query.push(("limit".into(), limit.to_string()));
        query.dedup_by(|a, b| a.0 == b.0);
        query.push((key.into(), value.into()));
        format!(
            "{}{}",
            r.origin,
            crate::kit::url::with_query(&format!("/v23.0{path}"), &query)
        )
    };
    if end < items.len() {
        paging["next"] = json!(link("after", &after));
    }
    if start > 0 {
        paging["previous"] = json!(link("before", &before));
    }
    json!({"data": data, "paging": paging})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_stripped_from_paths() {
        assert_eq!(segments("/v23.0/me/messages"), vec!["me", "messages"]);
        assert_eq!(segments("/me/messages"), vec!["me", "messages"]);
        assert_eq!(segments("/v1/x"), vec!["x"]);
        assert_eq!(segments("/vip/x"), vec!["vip", "x"]);
    }

    #[test]
    fn paging_walks_forward_and_back_by_cursor() {
        let items: Vec<Value> = (0..5).map(|n| json!({"id": format!("i{n}")})).collect();
        let mut r = Request {
            method: Method::GET,
            segments: vec![],
            params: Params::from([("limit".into(), json!("2"))]),
            origin: "http://sim".into(),
            instagram: false,
            user: false,
            token: String::new(),
        };
        let first = paginate(items.clone(), &r, "/x", 25);
        assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
        assert!(first["paging"].get("previous").is_none());
        let next = first["paging"]["next"].as_str().expect("next");
        assert!(next.starts_with("http://sim/v23.0/x?"), "{next}");
        let after = first["paging"]["cursors"]["after"].clone();
        r.params.insert("after".into(), after);
        let second = paginate(items.clone(), &r, "/x", 25);
        assert_eq!(second["data"][0]["id"], "i2");
        r.params.remove("after");
        r.params.insert(
            "before".into(),
            second["paging"]["cursors"]["before"].clone(),
        );
        let back = paginate(items.clone(), &r, "/x", 25);
        assert_eq!(back["data"][0]["id"], "i0");
        r.params.remove("before");
        r.params.insert("after".into(), json!(cursor(&json!("i4"))));
        assert_eq!(paginate(items, &r, "/x", 25), json!({"data": []}));
    }
}
