//! The Meta simulator's own `/_control/*` routes: the customer, the Page inbox, the other app,
//! posts and comments, the webhook callback and the token (see the module table in `meta`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::model::graph_time;
use super::whatsapp::{WhatsAppInbound, WhatsAppSent};
use super::Simulator;
use crate::kit::control::{json_body, ControlError};
use crate::kit::lock;

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/_control/messages", post(customer_messages))
        .route("/_control/reads", post(read))
        .route("/_control/postbacks", post(postback))
        .route("/_control/inbox/reply", post(inbox_reply))
        .route("/_control/other_app/reply", post(other_app_reply))
        .route("/_control/handover/take", post(take))
        .route("/_control/handover/release", post(release))
        .route("/_control/sent", get(sent))
        .route("/_control/conversations", get(conversations))
        .route("/_control/posts", post(create_post))
        .route("/_control/comments", post(create_comment))
        .route("/_control/comments/{id}/{verb}", post(comment_verb))
        .route("/_control/webhook", post(set_webhook).delete(clear_webhook))
        .route("/_control/webhook/duplicate", post(duplicate))
        .route("/_control/webhook_deliveries", get(deliveries))
        .route("/_control/token/invalidate", post(invalidate_token))
        .route("/_control/whatsapp/messages", post(whatsapp_message))
        .route("/_control/whatsapp/statuses", post(whatsapp_statuses))
        .route("/_control/whatsapp/sent", get(whatsapp_sent))
        .route("/_control/instagram/messages", post(ig_message))
        .route("/_control/instagram/media", post(ig_media))
        .route("/_control/instagram/comments", post(ig_comment))
        .route("/_control/instagram/mentions", post(ig_mention))
        .route("/_control/oauth/code", post(login_code))
        .route("/_control/oauth/instagram_token", post(instagram_token))
}

/// A message from the customer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CustomerMessage {
    /// The sender's PSID; a new person when absent.
    #[serde(default)]
    pub psid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// Attachments as Meta sends them (`{"type":"image","payload":{"url":…}}`).
    #[serde(default)]
    pub attachments: Vec<Value>,
    /// `{"mid": …}` of the message quoted.
    #[serde(default)]
    pub reply_to: Option<Value>,
    /// Ad referral context (Click-to-Messenger).
    #[serde(default)]
    pub referral: Option<Value>,
}

impl Simulator {
    /// The customer writes; every message of `messages` goes in one webhook POST. Returns
    /// `{"psid","mid","conversation_id"}` per message.
    pub fn customer_messages(&self, messages: Vec<CustomerMessage>) -> Vec<Value> {
        self.mutate(|store, now| {
            messages
                .into_iter()
                .map(|m| {
                    let user = store.user(m.psid.as_deref(), m.name.as_deref());
                    let mut extra = json!({});
                    if let Some(r) = m.reply_to {
                        extra["reply_to"] = r;
                    }
                    if let Some(r) = m.referral {
                        extra["referral"] = r;
                    }
                    let (mid, conversation_id) = store.customer_message(
                        &user.psid,
                        m.text,
                        m.attachments,
                        Some(&extra),
                        now,
                    );
                    json!({"psid": user.psid, "mid": mid, "conversation_id": conversation_id})
                })
                .collect()
        })
    }

    /// The customer `psid` writes `text`. Returns the message id.
    pub fn customer_says(&self, psid: &str, text: &str) -> String {
        let message = CustomerMessage {
            psid: Some(psid.to_owned()),
            text: Some(text.to_owned()),
            ..CustomerMessage::default()
        };
        self.customer_messages(vec![message])
            .first()
            .and_then(|v| v["mid"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Someone answers as the Page through `app_id` (the inbox or the other app).
    fn page_reply(&self, psid: &str, text: &str, app_id: &str) -> Result<String, ControlError> {
        self.mutate(|store, now| {
            let index = store
                .conversations
                .iter()
                .position(|c| c.psid == psid)
                .ok_or_else(|| ControlError::not_found(format!("no conversation with {psid}")))?;
            Ok(store.page_message(index, app_id, Some(text.to_owned()), None, None, now))
        })
    }

    /// An agent answers `psid` in the Page inbox: the app sees an echo with the inbox's app id.
    pub fn inbox_reply(&self, psid: &str, text: &str) -> Result<String, ControlError> {
        let app = self.config().inbox_app_id;
        self.page_reply(psid, text, &app)
    }

    /// The other app takes the thread with `psid` (`true`) or passes it back (`false`).
    pub fn other_app_owns(
        &self,
        psid: &str,
        owns: bool,
        metadata: Option<String>,
    ) -> Result<(), ControlError> {
        let config = self.config();
        let owner = if owns {
            config.other_app_id
        } else {
            config.app_id
        };
        self.mutate(|store, now| store.set_owner(psid, &owner, metadata, now))
            .map_err(ControlError::not_found)
    }

    /// The Page posts; returns the post id.
    pub fn page_post(&self, message: &str) -> String {
        self.mutate(|store, now| store.create_post(message, now))
    }
}

async fn customer_messages(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let value: Value = json_body(&body)?;
    let list = matches!(value, Value::Array(_));
    let messages: Vec<CustomerMessage> = if list {
        serde_json::from_value(value)
    } else {
        serde_json::from_value(value).map(|m| vec![m])
    }
    .map_err(|e| ControlError::bad_request(format!("control request body: {e}")))?;
    if messages
        .iter()
        .any(|m| m.text.is_none() && m.attachments.is_empty())
    {
        return Err(ControlError::bad_request(
            "a message needs text or attachments",
        ));
    }
    let mut out = sim.customer_messages(messages);
    Ok(Json(if list {
        Value::Array(out)
    } else {
        out.pop().unwrap_or(Value::Null)
    }))
}

#[derive(Deserialize)]
struct Psid {
    psid: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    metadata: Option<String>,
}

async fn read(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let p: Psid = json_body(&body)?;
    sim.mutate(|store, now| store.read(&p.psid, now))
        .map_err(ControlError::not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn inbox_reply(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let p: Psid = json_body(&body)?;
    let text = p
        .text
        .ok_or_else(|| ControlError::bad_request("text is required"))?;
    let mid = sim.inbox_reply(&p.psid, &text)?;
    Ok(Json(json!({"mid": mid})))
}

async fn other_app_reply(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let p: Psid = json_body(&body)?;
    let text = p
        .text
        .ok_or_else(|| ControlError::bad_request("text is required"))?;
    let app = sim.config().other_app_id;
    let mid = sim.page_reply(&p.psid, &text, &app)?;
    Ok(Json(json!({"mid": mid})))
}

async fn take(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let p: Psid = json_body(&body)?;
    sim.other_app_owns(&p.psid, true, p.metadata)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn release(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let p: Psid = json_body(&body)?;
    sim.other_app_owns(&p.psid, false, p.metadata)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sent(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"sent": sim.sent_messages()}))
}

async fn conversations(State(sim): State<Simulator>) -> Json<Value> {
    let store = sim.store();
    let list: Vec<Value> = store
        .conversations
        .iter()
        .map(|c| {
            let messages: Vec<Value> = c
                .messages
                .iter()
                .map(|m| {
                    json!({
                        "mid": m.mid,
                        "from_page": m.from_page,
                        "text": m.text,
                        "app_id": m.app_id,
                        "metadata": m.metadata,
                        "created_time": graph_time(m.created_ms),
                    })
                })
                .collect();
            json!({
                "id": c.id,
                "psid": c.psid,
                "owner_app_id": c.owner_app_id,
                "last_customer_message": c.last_customer_ms.map(graph_time),
                "messages": messages,
            })
        })
        .collect();
    Json(json!({"conversations": list}))
}

#[derive(Deserialize)]
struct NewPost {
    message: String,
}

async fn create_post(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let p: NewPost = json_body(&body)?;
    Ok(Json(json!({"post_id": sim.page_post(&p.message)})))
}

#[derive(Deserialize)]
struct NewComment {
    /// The post, or the comment replied to.
    parent_id: String,
    #[serde(default)]
    psid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    photo: Option<String>,
    #[serde(default)]
    sticker: Option<String>,
}

async fn create_comment(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let c: NewComment = json_body(&body)?;
    let attachment = match (&c.photo, &c.sticker) {
        (Some(url), _) => Some(json!({"type": "photo", "url": url})),
        (None, Some(url)) => Some(json!({"type": "sticker", "url": url})),
        (None, None) => None,
    };
    let (id, psid) = sim.mutate(|store, now| {
        let user = store.user(c.psid.as_deref(), c.name.as_deref());
        store
            .create_comment(&c.parent_id, Some(&user.psid), c.message, attachment, now)
            .map(|id| (id, user.psid))
    })?;
    Ok(Json(json!({"comment_id": id, "psid": psid})))
}

#[derive(Deserialize, Default)]
struct Edit {
    #[serde(default)]
    message: Option<String>,
}

async fn comment_verb(
    State(sim): State<Simulator>,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let edit: Edit = json_body(&body)?;
    let verb: &'static str = match verb.as_str() {
        "edit" => "edited",
        "remove" => "remove",
        "hide" => "hide",
        "unhide" => "unhide",
        other => {
            return Err(ControlError::not_found(format!(
                "no comment action `{other}`: edit, remove, hide or unhide"
            )))
        }
    };
    sim.mutate(|store, _| store.comment_verb(&id, verb, edit.message))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Webhook {
    callback_url: String,
    verify_token: String,
}

async fn set_webhook(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let w: Webhook = json_body(&body)?;
    sim.set_callback(&w.callback_url, &w.verify_token)
        .await
        .map_err(|e| ControlError::bad_request(format!("verification failed: {e}")))?;
    Ok(Json(json!({"verified": true})))
}

async fn clear_webhook(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_callback();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Count {
    count: u32,
}

async fn duplicate(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let c: Count = json_body(&body)?;
    sim.store().duplicates_pending += c.count;
    Ok(StatusCode::NO_CONTENT)
}

async fn deliveries(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"deliveries": *lock(&sim.inner.deliveries)}))
}

#[derive(Deserialize, Default)]
struct Invalidate {
    #[serde(default)]
    reason: Option<String>,
}

async fn invalidate_token(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let i: Invalidate = json_body(&body)?;
    let revoked = match i.reason.as_deref().unwrap_or("password_changed") {
        "password_changed" => (460, "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."),
        "expired" => (463, "Error validating access token: Session has expired."),
        other => {
            return Err(ControlError::bad_request(format!(
                "reason `{other}`: password_changed or expired"
            )))
        }
    };
    sim.store().token_revoked = Some((revoked.0, revoked.1.to_owned()));
    Ok(StatusCode::NO_CONTENT)
}

impl Simulator {
    /// A WhatsApp customer writes to the business number. Returns `(wamid, user_id, wa_id)`.
    pub fn whatsapp_inbound(&self, message: WhatsAppInbound) -> (String, String, Option<String>) {
        self.mutate(|store, now| store.wa_inbound(message, now))
    }

    /// What the business sent on WhatsApp, oldest first.
    pub fn whatsapp_sent(&self) -> Vec<WhatsAppSent> {
        self.store().whatsapp.sent.clone()
    }
}

async fn whatsapp_message(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let m: WhatsAppInbound = json_body(&body)?;
    if m.text.is_none() && m.message.is_none() {
        return Err(ControlError::bad_request("a message needs text or message"));
    }
    let (id, user_id, wa_id) = sim.whatsapp_inbound(m);
    Ok(Json(json!({"id": id, "user_id": user_id, "wa_id": wa_id})))
}

#[derive(Deserialize)]
struct Statuses {
    id: String,
    statuses: Vec<String>,
}

async fn whatsapp_statuses(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let s: Statuses = json_body(&body)?;
    sim.mutate(|store, now| store.wa_control_statuses(&s.id, &s.statuses, now))
        .map_err(ControlError::not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn whatsapp_sent(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"sent": sim.whatsapp_sent()}))
}

/// A DM to the Instagram account.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstagramMessage {
    /// The sender's IGSID; a new person when absent.
    #[serde(default)]
    pub igsid: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// As Meta sends them, e.g. `{"type":"story_mention","payload":{"url":…}}`.
    #[serde(default)]
    pub attachments: Vec<Value>,
    /// `{"story":{"id","url"}}` for a story reply, `{"mid"}` for a quoted message.
    #[serde(default)]
    pub reply_to: Option<Value>,
}

impl Simulator {
    /// An Instagram user writes to the account. Returns `{"igsid","mid","conversation_id"}`.
    pub fn instagram_message(&self, m: InstagramMessage) -> Value {
        self.mutate(|store, now| {
            let user = store.ig_user(m.igsid.as_deref(), m.username.as_deref());
            let extra = m.reply_to.map(|r| json!({"reply_to": r}));
            let (mid, conversation_id) =
                store.customer_message(&user.psid, m.text, m.attachments, extra.as_ref(), now);
            json!({"igsid": user.psid, "mid": mid, "conversation_id": conversation_id})
        })
    }
}

async fn ig_message(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let m: InstagramMessage = json_body(&body)?;
    if m.text.is_none() && m.attachments.is_empty() {
        return Err(ControlError::bad_request(
            "a message needs text or attachments",
        ));
    }
    Ok(Json(sim.instagram_message(m)))
}

#[derive(Deserialize)]
struct NewMedia {
    #[serde(default)]
    caption: String,
    /// Someone else's media (where the account gets mentioned).
    #[serde(default)]
    foreign: bool,
}

async fn ig_media(State(sim): State<Simulator>, body: Bytes) -> Result<Json<Value>, ControlError> {
    let m: NewMedia = json_body(&body)?;
    let id = sim.mutate(|store, now| store.create_media(&m.caption, m.foreign, now));
    Ok(Json(json!({"media_id": id})))
}

#[derive(Deserialize)]
struct NewIgComment {
    /// The media, or the comment replied to.
    parent_id: String,
    #[serde(default)]
    igsid: Option<String>,
    #[serde(default)]
    username: Option<String>,
    text: String,
}

async fn ig_comment(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let c: NewIgComment = json_body(&body)?;
    let (id, igsid) = sim.mutate(|store, now| {
        let user = store.ig_user(c.igsid.as_deref(), c.username.as_deref());
        store
            .create_comment(&c.parent_id, Some(&user.psid), Some(c.text), None, now)
            .map(|id| (id, user.psid))
    })?;
    Ok(Json(json!({"comment_id": id, "igsid": igsid})))
}

#[derive(Deserialize)]
struct NewMention {
    /// Someone else's media the account is mentioned on (created when absent).
    #[serde(default)]
    media_id: Option<String>,
    /// Mention in a comment with this text (a caption mention when absent).
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

async fn ig_mention(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let m: NewMention = json_body(&body)?;
    let (media_id, comment_id) = sim.mutate(|store, now| {
        let media = match m.media_id {
            Some(id) => id,
            None => store.create_media("look @ this", true, now),
        };
        let comment = match m.text {
            Some(text) => {
                let user = store.ig_user(None, m.username.as_deref());
                Some(store.create_comment(&media, Some(&user.psid), Some(text), None, now)?)
            }
            None => None,
        };
        store.ig_mention(&media, comment.as_deref());
        Ok::<_, super::error::GraphError>((media, comment))
    })?;
    Ok(Json(
        json!({"media_id": media_id, "comment_id": comment_id}),
    ))
}

/// The Page admin completes Facebook Login: a code for `GET /oauth/access_token`.
async fn login_code(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"code": sim.store().tokens.code()}))
}

/// The account owner completes Instagram Login: a short-lived Instagram User token.
async fn instagram_token(State(sim): State<Simulator>) -> Json<Value> {
    let now = sim.now_ms();
    let issued = sim.store().tokens.instagram_short(now);
    Json(json!({
        "access_token": issued.token,
        "user_id": sim.config().ig_user_id,
        "expires_in": (issued.expires_ms - now).div_euclid(1000),
    }))
}

#[derive(Deserialize)]
struct Postback {
    psid: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    payload: String,
}

async fn postback(State(sim): State<Simulator>, body: Bytes) -> Result<Json<Value>, ControlError> {
    let p: Postback = json_body(&body)?;
    let mid = sim
        .mutate(|store, now| store.postback(&p.psid, &p.title, &p.payload, now))
        .map_err(ControlError::not_found)?;
    Ok(Json(json!({"mid": mid})))
}
