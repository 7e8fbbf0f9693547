//! The Bot API itself: `/bot<token>/<method>` dispatch, the response envelope and the
//! methods.

use std::pin::pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::format::{self, ParseMode};
use super::params::Params;
use super::state::{bot_json, insert_opt, Webhook};
use super::{webhook, SentMessage, Simulator};
use crate::kit::{Answers, Budget, Refusals};

/// Telegram's longest message, in UTF-16 code units after markup is parsed.
const MAX_TEXT_LEN: usize = 4096;

/// A failed method call: `{"ok":false,"error_code":…,"description":…,"parameters"?}`. The
/// HTTP status always equals `error_code`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    description: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            status,
            description: description.into(),
            retry_after: None,
        }
    }

    /// `400 Bad Request: <detail>`.
    pub fn bad_request(detail: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Bad Request: {detail}"))
    }

    fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, format!("Forbidden: {detail}"))
    }

    fn conflict(detail: &str) -> Self {
        Self::new(StatusCode::CONFLICT, format!("Conflict: {detail}"))
    }

    /// Flood control: 429 with the wait in both the description and `parameters`.
    fn too_many_requests(retry_after: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            description: format!("Too Many Requests: retry after {retry_after}"),
            retry_after: Some(retry_after),
        }
    }

    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    fn chat_not_found() -> Self {
        Self::bad_request("chat not found")
    }

    fn webhook_active() -> Self {
        Self::conflict("can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
    }
}

/// How the Bot API refuses, for the kit's fault layer: 429 with `parameters.retry_after` in the
/// body (Telegram sends no Retry-After header), and its envelope for injected statuses.
pub(crate) const TELEGRAM: Answers<ApiError> = Answers::new();

impl Refusals for ApiError {
    fn rate_limited(retry_after_secs: u64) -> Self {
        Self::too_many_requests(retry_after_secs)
    }

    /// An injected status, described the way Telegram's front end words it.
    fn injected(code: u16) -> Self {
        if code == 429 {
            return Self::too_many_requests(1);
        }
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let description = status.canonical_reason().unwrap_or("Internal Server Error");
        Self::new(status, description)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error_code": self.status.as_u16(),
            "description": self.description,
        });
        if let Some(retry_after) = self.retry_after {
            body["parameters"] = json!({"retry_after": retry_after});
        }
        (self.status, Json(body)).into_response()
    }
}

/// A successful method call; some methods add a human-readable `description`.
struct Reply {
    result: Value,
    description: Option<&'static str>,
}

impl From<Value> for Reply {
    fn from(result: Value) -> Self {
        Self {
            result,
            description: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut body = json!({"ok": true, "result": self.result});
        if let Some(description) = self.description {
            body["description"] = json!(description);
        }
        Json(body).into_response()
    }
}

/// The methods the simulator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    GetMe,
    GetUpdates,
    SetWebhook,
    DeleteWebhook,
    GetWebhookInfo,
    SendMessage,
    GetChat,
    SendChatAction,
}

impl Method {
    /// Method names are case-insensitive on Telegram.
    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "getme" => Self::GetMe,
            "getupdates" => Self::GetUpdates,
            "setwebhook" => Self::SetWebhook,
            "deletewebhook" => Self::DeleteWebhook,
            "getwebhookinfo" => Self::GetWebhookInfo,
            "sendmessage" => Self::SendMessage,
            "getchat" => Self::GetChat,
            "sendchataction" => Self::SendChatAction,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::GetMe => "getMe",
            Self::GetUpdates => "getUpdates",
            Self::SetWebhook => "setWebhook",
            Self::DeleteWebhook => "deleteWebhook",
            Self::GetWebhookInfo => "getWebhookInfo",
            Self::SendMessage => "sendMessage",
            Self::GetChat => "getChat",
            Self::SendChatAction => "sendChatAction",
        }
    }
}

/// Any path the API doesn't know, in Telegram's shape.
pub async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// `/{bot<token>}/{method}`, any HTTP method.
pub async fn handle(
    State(sim): State<Simulator>,
    Path((bot_token, method)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = bot_token.strip_prefix("bot") else {
        return ApiError::not_found().into_response();
    };
    if token != sim.inner.config.bot_token {
        return ApiError::unauthorized().into_response();
    }
    let Some(method) = Method::parse(&method) else {
        return ApiError::not_found().into_response();
    };
    // Faults match on the canonical path, so `sendMessage` catches `sendmessage` calls too.
    let path = format!("/bot{token}/{}", method.name());
    if let Err(refused) = sim.faults().admit(&path, &TELEGRAM).await {
        return refused;
    }
    let params = match Params::from_request(&headers, uri.query(), body).await {
        Ok(params) => params,
        Err(err) => return err.into_response(),
    };
    tracing::debug!(method = method.name(), "telegram api call");
    let outcome = match method {
        Method::GetMe => Ok(get_me(&sim)),
        Method::GetUpdates => get_updates(&sim, &params).await,
        Method::SetWebhook => set_webhook(&sim, &params),
        Method::DeleteWebhook => Ok(delete_webhook(&sim, &params)),
        Method::GetWebhookInfo => Ok(get_webhook_info(&sim)),
        Method::SendMessage => send_message(&sim, &params),
        Method::GetChat => get_chat(&sim, &params),
        Method::SendChatAction => send_chat_action(&sim, &params),
    };
    match outcome {
        Ok(reply) => reply.into_response(),
        Err(err) => err.into_response(),
    }
}

fn get_me(sim: &Simulator) -> Reply {
    let mut me = bot_json(&sim.inner.config);
    if let Some(map) = me.as_object_mut() {
        map.insert("can_join_groups".into(), json!(true));
        map.insert("can_read_all_group_messages".into(), json!(false));
        map.insert("supports_inline_queries".into(), json!(false));
        map.insert("can_connect_to_business".into(), json!(false));
        map.insert("has_main_web_app".into(), json!(false));
    }
    me.into()
}

/// `allowed_updates` as a list of kind names; entries that aren't strings are ignored.
fn allowed_updates(params: &Params) -> Result<Option<Vec<String>>, ApiError> {
    Ok(params
        .array("allowed_updates", "allowed updates")?
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        }))
}

async fn get_updates(sim: &Simulator, params: &Params) -> Result<Reply, ApiError> {
    let inner = &sim.inner;
    let offset = params.int_or_zero("offset").unwrap_or(0);
    let limit = match params.int_or_zero("limit") {
        Some(n) if n >= 1 => n.min(100) as usize,
        _ => 100,
    };
    let timeout = params.int_or_zero("timeout").unwrap_or(0).max(0) as u64;
    let wait = Duration::from_secs(timeout).min(inner.config.max_long_poll);
    let allowed = allowed_updates(params)?;

    let generation = {
        let mut state = inner.state();
        if state.webhook.is_some() {
            return Err(ApiError::webhook_active());
        }
        if let Some(kinds) = allowed {
            state.set_allowed_updates(kinds);
        }
        state.confirm(offset);
        state.poll_generation += 1;
        state.poll_generation
    };
    // A poll still waiting from before loses to this one.
    inner.updates_changed.notify_waiters();

    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut changed = pin!(inner.updates_changed.notified());
        // Register before looking, so a wake-up between the check and the wait isn't lost.
        changed.as_mut().enable();
        {
            let mut state = inner.state();
            if state.poll_generation != generation {
                return Err(ApiError::conflict(
                    "terminated by other getUpdates request; make sure that only one bot instance is running",
                ));
            }
            if state.webhook.is_some() {
                return Err(ApiError::webhook_active());
            }
            state.prune(inner.base.clock.now_ms(), inner.config.update_retention);
            let batch: Vec<Value> = state
                .updates
                .iter()
                .filter(|u| offset <= 0 || u.update_id >= offset)
                .take(limit)
                .map(|u| u.body.clone())
                .collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Value::Array(batch).into());
            }
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn set_webhook(sim: &Simulator, params: &Params) -> Result<Reply, ApiError> {
    let url = params.string("url").unwrap_or_default().trim().to_string();
    if url.is_empty() {
        // An empty URL is how older clients remove the webhook.
        return Ok(delete_webhook(sim, params));
    }
    let parsed = reqwest::Url::parse(&url)
        .map_err(|_| ApiError::bad_request("invalid webhook URL specified"))?;
    // Telegram insists on HTTPS; the simulator also accepts plain HTTP so local receivers
    // need no certificates.
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(ApiError::bad_request(
            "bad webhook: An HTTPS URL must be provided for webhook",
        ));
    }
    let secret_token = params.string("secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = &secret_token {
        if secret.len() > 256 {
            return Err(ApiError::bad_request("secret token is too long"));
        }
        if !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    let max_connections = match params.int_or_zero("max_connections") {
        Some(n) if n >= 1 => n.min(100) as usize,
        _ => 40,
    };
    let allowed = allowed_updates(params)?;
    let hook = Webhook {
        url,
        secret_token,
        max_connections,
    };

    let inner = &sim.inner;
    let (changed, generation) = {
        let mut state = inner.state();
        if params.flag("drop_pending_updates") {
            state.updates.clear();
        }
        if let Some(kinds) = allowed {
            state.set_allowed_updates(kinds);
        }
        (
            state.set_webhook(Some(hook.clone())),
            state.webhook_generation,
        )
    };
    if changed {
        webhook::spawn_worker(sim, generation, hook);
    }
    inner.wake_consumers();
    let description = if changed {
        "Webhook was set"
    } else {
        "Webhook is already set"
    };
    Ok(Reply {
        result: json!(true),
        description: Some(description),
    })
}

fn delete_webhook(sim: &Simulator, params: &Params) -> Reply {
    let changed = {
        let mut state = sim.inner.state();
        if params.flag("drop_pending_updates") {
            state.updates.clear();
        }
        state.set_webhook(None)
    };
    sim.inner.wake_consumers();
    let description = if changed {
        "Webhook was deleted"
    } else {
        "Webhook is already deleted"
    };
    Reply {
        result: json!(true),
        description: Some(description),
    }
}

fn get_webhook_info(sim: &Simulator) -> Reply {
    let inner = &sim.inner;
    let mut state = inner.state();
    state.prune(inner.base.clock.now_ms(), inner.config.update_retention);
    let mut info = json!({
        "url": state.webhook.as_ref().map(|w| w.url.as_str()).unwrap_or(""),
        "has_custom_certificate": false,
        "pending_update_count": state.updates.len(),
    });
    if let Some(hook) = &state.webhook {
        info["max_connections"] = json!(hook.max_connections);
        insert_opt(&mut info, "allowed_updates", state.allowed_updates.clone());
    }
    if let Some((date, message)) = &state.last_webhook_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    info.into()
}

/// `chat_id`: the chat must be one the bot knows. `@username` addresses only public groups
/// and channels, which don't exist here.
fn chat_id(params: &Params) -> Result<i64, ApiError> {
    match params.int("chat_id") {
        None => Err(ApiError::bad_request("chat_id is empty")),
        Some(Ok(id)) => Ok(id),
        Some(Err(())) => Err(ApiError::chat_not_found()),
    }
}

fn get_chat(sim: &Simulator, params: &Params) -> Result<Reply, ApiError> {
    let id = chat_id(params)?;
    let state = sim.inner.state();
    let chat = state.chats.get(&id).ok_or_else(ApiError::chat_not_found)?;
    let mut info = chat.to_json();
    info["accent_color_id"] = json!(0);
    info["max_reaction_count"] = json!(11);
    Ok(info.into())
}

const CHAT_ACTIONS: [&str; 11] = [
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

fn send_chat_action(sim: &Simulator, params: &Params) -> Result<Reply, ApiError> {
    let id = chat_id(params)?;
    let action = params.string("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(ApiError::bad_request("wrong parameter action in request"));
    }
    let state = sim.inner.state();
    let chat = state.chats.get(&id).ok_or_else(ApiError::chat_not_found)?;
    if chat.blocked {
        return Err(ApiError::forbidden("bot was blocked by the user"));
    }
    Ok(json!(true).into())
}

/// What the bot asked to reply to.
struct ReplyTarget {
    message_id: i64,
    allow_sending_without_reply: bool,
    quote: Option<String>,
}

/// `reply_parameters` (object or JSON text), or the older top-level `reply_to_message_id`
/// plus `allow_sending_without_reply` that many clients still send.
fn reply_target(params: &Params) -> Result<Option<ReplyTarget>, ApiError> {
    if let Some(object) = params.object("reply_parameters", "reply parameters")? {
        let nested = Params::from_map(object);
        let message_id = match nested.int("message_id") {
            Some(Ok(id)) => id,
            _ => {
                return Err(ApiError::bad_request(
                    "can't parse reply parameters JSON object",
                ))
            }
        };
        return Ok(Some(ReplyTarget {
            message_id,
            allow_sending_without_reply: nested.flag("allow_sending_without_reply"),
            quote: nested.string("quote").filter(|q| !q.is_empty()),
        }));
    }
    Ok(match params.int_or_zero("reply_to_message_id") {
        Some(id) if id != 0 => Some(ReplyTarget {
            message_id: id,
            allow_sending_without_reply: params.flag("allow_sending_without_reply"),
            quote: None,
        }),
        _ => None,
    })
}

fn send_message(sim: &Simulator, params: &Params) -> Result<Reply, ApiError> {
    let inner = &sim.inner;
    let chat_id = chat_id(params)?;
    let source_text = params.string("text").unwrap_or_default();
    let parse_mode = params.string("parse_mode").filter(|m| !m.is_empty());
    if source_text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    // Explicit entities win over parse_mode, as on Telegram.
    let (text, entities) = if let Some(entities) = params.array("entities", "entities")? {
        (source_text.clone(), entities)
    } else if let Some(mode) = &parse_mode {
        let mode = ParseMode::from_param(mode)
            .ok_or_else(|| ApiError::bad_request("unsupported parse_mode"))?;
        let parsed = format::parse(&source_text, mode)
            .map_err(|err| ApiError::bad_request(&format!("can't parse entities: {err}")))?;
        let entities = parsed
            .entities
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        (parsed.text, entities)
    } else {
        (source_text.clone(), Vec::new())
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    if format::utf16_len(&text) > MAX_TEXT_LEN {
        return Err(ApiError::bad_request("message is too long"));
    }
    let reply = reply_target(params)?;
    let message_thread_id = params
        .int_or_zero("message_thread_id")
        .filter(|&id| id != 0);
    let business_connection_id = params
        .string("business_connection_id")
        .filter(|s| !s.is_empty());
    let disable_notification = params.flag("disable_notification");

    let now_ms = inner.base.clock.now_ms();
    let mut state = inner.state();
    let per_chat_interval = state.per_chat_interval;
    let chat = state
        .chats
        .get_mut(&chat_id)
        .ok_or_else(ApiError::chat_not_found)?;
    if chat.blocked {
        return Err(ApiError::forbidden("bot was blocked by the user"));
    }
    let target = match &reply {
        Some(r) => match chat.messages.get(&r.message_id) {
            Some(target) => Some(target.clone()),
            None if r.allow_sending_without_reply => None,
            None => return Err(ApiError::bad_request("message to be replied not found")),
        },
        None => None,
    };
    let quote = reply.as_ref().and_then(|r| r.quote.clone());
    // A quote must be a part of the replied-to text; its position is in UTF-16 units.
    let quote_position = match (&quote, &target) {
        (Some(quote), Some(target)) => {
            let quoted_text = target
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let at = quoted_text
                .find(quote.as_str())
                .ok_or_else(|| ApiError::bad_request("quote not found"))?;
            Some(format::utf16_len(&quoted_text[..at]))
        }
        _ => None,
    };
    // Flood control counts only messages that would otherwise go out.
    if let (Some(interval), Some(last)) = (per_chat_interval, chat.last_bot_send_ms) {
        let wait_ms = interval.as_millis() as i64 - (now_ms - last);
        if wait_ms > 0 {
            return Err(ApiError::too_many_requests(
                (wait_ms as u64).div_ceil(1000).max(1),
            ));
        }
    }
    if let Budget::Exceeded {
        retry_after_secs, ..
    } = sim.faults().check_budget()
    {
        return Err(ApiError::too_many_requests(retry_after_secs));
    }

    let message_id = chat.allocate_message_id();
    let date = now_ms / 1000;
    let mut message = json!({
        "message_id": message_id,
        "from": bot_json(&inner.config),
        "chat": chat.to_json(),
        "date": date,
        "text": text,
    });
    if !entities.is_empty() {
        message["entities"] = Value::Array(entities.clone());
    }
    insert_opt(&mut message, "message_thread_id", message_thread_id);
    insert_opt(
        &mut message,
        "business_connection_id",
        business_connection_id.clone(),
    );
    chat.messages.insert(message_id, message.clone());
    chat.last_bot_send_ms = Some(now_ms);
    let reply_to_message_id = target
        .as_ref()
        .and_then(|t| t.get("message_id"))
        .and_then(Value::as_i64);
    if let Some(target) = target {
        message["reply_to_message"] = target;
    }
    if let (Some(quote), Some(position)) = (&quote, quote_position) {
        message["quote"] = json!({"text": quote, "position": position, "is_manual": true});
    }
    state.sent.push(SentMessage {
        chat_id,
        message_id,
        date,
        text,
        source_text,
        parse_mode,
        entities,
        reply_to_message_id,
        quote,
        message_thread_id,
        disable_notification,
        business_connection_id,
    });
    Ok(message.into())
}

impl Params {
    /// Parameters nested in a JSON object, read with the same lenient getters.
    fn from_map(map: Map<String, Value>) -> Self {
        Self::from_json(Value::Object(map))
    }
}
