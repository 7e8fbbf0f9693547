//! The simulator's in-memory world: chats, their messages, the update queue, the webhook.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Config, Customer, CustomerMessage, Injected, SentMessage, SimError, StateSummary};

/// One queued update and its webhook delivery bookkeeping.
#[derive(Debug)]
pub struct PendingUpdate {
    pub update_id: i64,
    /// Updates of one chat are delivered to a webhook one at a time, in order.
    pub chat_id: i64,
    /// The update exactly as the bot receives it.
    pub body: Value,
    /// When it was queued, for the retention limit.
    pub stored_at_ms: i64,
    pub in_flight: bool,
    pub failed_attempts: u32,
    pub retry_at: Option<tokio::time::Instant>,
}

/// A private chat between the bot and one customer.
#[derive(Debug)]
pub struct Chat {
    pub customer: Customer,
    pub blocked: bool,
    /// Message ids are sequential per chat, shared by both sides.
    pub next_message_id: i64,
    /// Every message of the chat without its `reply_to_message`, for building replies.
    pub messages: HashMap<i64, Value>,
    /// When the bot last sent here, for the per-chat flood limit.
    pub last_bot_send_ms: Option<i64>,
}

impl Chat {
    /// The `Chat` object of the Bot API.
    pub fn to_json(&self) -> Value {
        let mut chat = json!({"id": self.customer.id, "type": "private", "first_name": self.customer.first_name});
        insert_opt(&mut chat, "last_name", self.customer.last_name.clone());
        insert_opt(&mut chat, "username", self.customer.username.clone());
        chat
    }

    pub fn allocate_message_id(&mut self) -> i64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }
}

/// The webhook as set by `setWebhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret_token: Option<String>,
    pub max_connections: usize,
}

/// Everything that changes, behind one lock.
#[derive(Debug)]
pub struct State {
    pub next_update_id: i64,
    pub updates: VecDeque<PendingUpdate>,
    pub chats: HashMap<i64, Chat>,
    pub sent: Vec<SentMessage>,
    pub customer_messages: u64,
    pub webhook: Option<Webhook>,
    /// Bumped by every webhook change; a delivery worker serves one generation.
    pub webhook_generation: u64,
    /// `(unix time, message)` of the last failed webhook delivery.
    pub last_webhook_error: Option<(i64, String)>,
    /// The bot's `allowed_updates` setting; `None` is Telegram's default.
    pub allowed_updates: Option<Vec<String>>,
    /// Bumped by every `getUpdates`; a long poll from an older generation ends in 409.
    pub poll_generation: u64,
    pub per_chat_interval: Option<Duration>,
}

/// Kinds Telegram leaves out unless the bot asks for them.
const OPT_IN_UPDATES: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

impl State {
    pub fn new(first_update_id: i64, per_chat_interval: Option<Duration>) -> Self {
        Self {
            next_update_id: first_update_id,
            updates: VecDeque::new(),
            chats: HashMap::new(),
            sent: Vec::new(),
            customer_messages: 0,
            webhook: None,
            webhook_generation: 0,
            last_webhook_error: None,
            allowed_updates: None,
            poll_generation: 0,
            per_chat_interval,
        }
    }

    /// Forgets updates older than the retention period.
    pub fn prune(&mut self, now_ms: i64, retention: Duration) {
        let oldest = now_ms - retention.as_millis() as i64;
        self.updates.retain(|u| u.stored_at_ms > oldest);
    }

    /// Applies `getUpdates`' `offset`: a positive one confirms everything below it, a negative
    /// one keeps only the last `-offset` updates.
    pub fn confirm(&mut self, offset: i64) {
        if offset > 0 {
            self.updates.retain(|u| u.update_id >= offset);
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            let drop = self.updates.len().saturating_sub(keep);
            self.updates.drain(..drop);
        }
    }

    /// Stores the bot's `allowed_updates`; an empty list restores the default.
    pub fn set_allowed_updates(&mut self, kinds: Vec<String>) {
        self.allowed_updates = if kinds.is_empty() { None } else { Some(kinds) };
    }

    fn wants(&self, kind: &str) -> bool {
        match &self.allowed_updates {
            Some(kinds) => kinds.iter().any(|k| k == kind),
            None => !OPT_IN_UPDATES.contains(&kind),
        }
    }

    /// Assigns the next `update_id` and queues `{kind: payload}` unless the bot's
    /// `allowed_updates` excludes it (the id is spent either way).
    fn push_update(&mut self, now_ms: i64, chat_id: i64, kind: &str, payload: Value) -> i64 {
        let update_id = self.next_update_id;
        self.next_update_id += 1;
        if self.wants(kind) {
            let mut body = Map::new();
            body.insert("update_id".into(), json!(update_id));
            body.insert(kind.into(), payload);
            self.updates.push_back(PendingUpdate {
                update_id,
                chat_id,
                body: Value::Object(body),
                stored_at_ms: now_ms,
                in_flight: false,
                failed_attempts: 0,
                retry_at: None,
            });
        }
        update_id
    }

    pub fn customer_message(&mut self, now_ms: i64, msg: CustomerMessage) -> Injected {
        let chat = self.chats.entry(msg.chat_id).or_insert_with(|| Chat {
            customer: msg.from.clone(),
            blocked: false,
            next_message_id: 1,
            messages: HashMap::new(),
            last_bot_send_ms: None,
        });
        if msg.chat_id == msg.from.id {
            // Names and usernames change; the chat shows the latest.
            chat.customer = msg.from.clone();
        }
        let message_id = chat.allocate_message_id();
        let mut message = json!({
            "message_id": message_id,
            "from": user_json(&msg.from),
            "chat": chat.to_json(),
            "date": msg.date.unwrap_or(now_ms / 1000),
            "text": msg.text,
        });
        insert_opt(
            &mut message,
            "business_connection_id",
            msg.business_connection_id.clone(),
        );
        chat.messages.insert(message_id, message.clone());
        if let Some(target) = msg
            .reply_to_message_id
            .and_then(|id| chat.messages.get(&id))
        {
            insert_opt(&mut message, "reply_to_message", Some(target.clone()));
        }
        let kind = if msg.business_connection_id.is_some() {
            "business_message"
        } else {
            "message"
        };
        self.customer_messages += 1;
        let update_id = self.push_update(now_ms, msg.chat_id, kind, message);
        Injected {
            update_id,
            message_id,
        }
    }

    pub fn edit_customer_message(
        &mut self,
        config: &Config,
        now_ms: i64,
        chat_id: i64,
        message_id: i64,
        text: String,
    ) -> Result<Injected, SimError> {
        let chat = self
            .chats
            .get_mut(&chat_id)
            .ok_or(SimError::ChatNotFound(chat_id))?;
        let message = chat
            .messages
            .get_mut(&message_id)
            .ok_or(SimError::MessageNotFound {
                chat_id,
                message_id,
            })?;
        if message.pointer("/from/id").and_then(Value::as_i64) == Some(config.bot_id) {
            return Err(SimError::NotCustomerMessage {
                chat_id,
                message_id,
            });
        }
        message["text"] = json!(text);
        message["edit_date"] = json!(now_ms / 1000);
        let payload = message.clone();
        let update_id = self.push_update(now_ms, chat_id, "edited_message", payload);
        Ok(Injected {
            update_id,
            message_id,
        })
    }

    pub fn set_blocked(
        &mut self,
        config: &Config,
        now_ms: i64,
        chat_id: i64,
        blocked: bool,
    ) -> Result<(), SimError> {
        let chat = self
            .chats
            .get_mut(&chat_id)
            .ok_or(SimError::ChatNotFound(chat_id))?;
        if chat.blocked == blocked {
            return Ok(());
        }
        chat.blocked = blocked;
        let (old, new) = if blocked {
            ("member", "kicked")
        } else {
            ("kicked", "member")
        };
        let bot = bot_json(config);
        let payload = json!({
            "chat": chat.to_json(),
            "from": user_json(&chat.customer),
            "date": now_ms / 1000,
            "old_chat_member": chat_member_json(&bot, old),
            "new_chat_member": chat_member_json(&bot, new),
        });
        self.push_update(now_ms, chat_id, "my_chat_member", payload);
        Ok(())
    }

    /// Installs `hook` (or removes the webhook with `None`). Returns whether anything
    /// changed; a change starts a new delivery generation with fresh retry state.
    pub fn set_webhook(&mut self, hook: Option<Webhook>) -> bool {
        if self.webhook == hook {
            return false;
        }
        self.webhook = hook;
        self.webhook_generation += 1;
        self.last_webhook_error = None;
        for update in &mut self.updates {
            update.in_flight = false;
            update.failed_attempts = 0;
            update.retry_at = None;
        }
        true
    }

    pub fn summary(&self, clock_offset_secs: i64) -> StateSummary {
        StateSummary {
            pending_update_count: self.updates.len(),
            next_update_id: self.next_update_id,
            webhook_url: self.webhook.as_ref().map(|w| w.url.clone()),
            webhook_last_error_message: self.last_webhook_error.as_ref().map(|(_, m)| m.clone()),
            chats: self.chats.len(),
            blocked_chats: self.chats.values().filter(|c| c.blocked).count(),
            customer_messages: self.customer_messages,
            sent_messages: self.sent.len(),
            per_chat_interval_ms: self.per_chat_interval.map(|d| d.as_millis() as u64),
            clock_offset_secs,
        }
    }
}

/// The `User` object of a customer.
/// A `ChatMember` of the bot in a private chat, with every field the Bot API marks required
/// for its variant: `ChatMemberMember` needs only `status` and `user`, while
/// `ChatMemberBanned` (`kicked`) always carries `until_date`, 0 meaning banned for good
/// (clients such as python-telegram-bot refuse the whole update batch without it).
pub fn chat_member_json(user: &Value, status: &str) -> Value {
    let mut member = json!({"status": status, "user": user});
    if status == "kicked" {
        member["until_date"] = json!(0);
    }
    member
}

pub fn user_json(customer: &Customer) -> Value {
    let mut user = json!({"id": customer.id, "is_bot": false, "first_name": customer.first_name});
    insert_opt(&mut user, "last_name", customer.last_name.clone());
    insert_opt(&mut user, "username", customer.username.clone());
    insert_opt(&mut user, "language_code", customer.language_code.clone());
    user
}

/// The `User` object of the bot, as in `from` of what it sends.
pub fn bot_json(config: &Config) -> Value {
    json!({
        "id": config.bot_id,
        "is_bot": true,
        "first_name": config.bot_first_name,
        "username": config.bot_username,
    })
}

/// Sets `key` on a JSON object when `value` is present; Telegram omits absent fields.
pub fn insert_opt<T: serde::Serialize>(object: &mut Value, key: &str, value: Option<T>) {
    if let (Some(map), Some(value)) = (object.as_object_mut(), value) {
        if let Ok(value) = serde_json::to_value(value) {
            map.insert(key.to_string(), value);
        }
    }
}
