//! Telegram Bot API simulator.
//!
//! An in-memory stand-in for `https://api.telegram.org` that a connector under test talks to
//! exactly as it would to Telegram: methods at `/bot<token>/<method>`, parameters as query,
//! urlencoded form, JSON or multipart, answers in the `{"ok":…}` envelope. Tests play the
//! customer through [`Simulator::customer_message`] (or `POST /_control/messages`) and read
//! what the bot sent with [`Simulator::sent_messages`] (or `GET /_control/sent`).
//!
//! # What is modelled
//!
//! * **Methods**: `getMe`, `getUpdates`, `setWebhook`, `deleteWebhook`, `getWebhookInfo`,
//!   `sendMessage`, `getChat`, `sendChatAction`; names are case-insensitive; anything else is
//!   `404 Not Found`, a wrong token `401 Unauthorized`.
//! * **Long polling**: `getUpdates` confirms every update below `offset`, reads from the end
//!   for a negative `offset`, waits up to `timeout` seconds (capped by
//!   [`Config::max_long_poll`]) for something new, ends an older pending poll with `409
//!   Conflict: terminated by other getUpdates request…`, and refuses to run (`409`) while a
//!   webhook is set. Updates are kept for [`Config::update_retention`] (24 h), measured on the
//!   simulator's clock, which tests can move forward.
//! * **Webhooks**: once `setWebhook` is called the simulator POSTs each update as JSON with
//!   `X-Telegram-Bot-Api-Secret-Token`, one update at a time per chat and in order, up to
//!   `max_connections` chats at once, retrying non-2xx answers and transport errors with
//!   exponential backoff and reporting the last failure in `getWebhookInfo`. An update leaves
//!   the queue when the receiver answers 2xx. Replies embedded in the webhook answer are not
//!   executed.
//! * **Sending**: `sendMessage` parses `parse_mode` markup like Telegram (see the private
//!   `format` module), limits the parsed text to 1–4096 UTF-16 code units, checks the chat
//!   exists (the customer wrote first) and hasn't blocked the bot, resolves `reply_parameters`
//!   (also the legacy `reply_to_message_id`), and applies flood control: the shared
//!   [`Faults`](crate::kit::Faults) budget (`/_control/rate-limit`) counts sent messages, and an optional per-chat
//!   minimum interval ([`Config::per_chat_interval`]) models the ~1 message/s per chat limit.
//! * **Updates**: `message`, `edited_message`, `business_message` (customer messages with a
//!   `business_connection_id`) and `my_chat_member` (the customer blocked or unblocked the
//!   bot). `allowed_updates` filters updates created after it is set, as on Telegram. The
//!   bot's own messages never come back as updates.
//! * **Faults**: injected through `/_control/faults`, rendered in Telegram's error shape.
//!
//! Only private chats exist; groups, channels, media, keyboards and inline mode do not.
//!
//! # Control API (JSON, no auth)
//!
//! | Route | Does |
//! |---|---|
//! | `POST /_control/messages` | a [`CustomerMessage`] → `{"update_id","message_id"}` |
//! | `POST /_control/edits` | `{"chat_id","message_id","text"}` → edited_message update |
//! | `GET /_control/sent?chat_id=` | [`SentMessage`]s, oldest first |
//! | `GET /_control/updates` | pending updates, as the bot would receive them |
//! | `POST /_control/block`, `/_control/unblock` | `{"chat_id"}`: the customer blocks/unblocks the bot |
//! | `POST /_control/flood` | `{"per_chat_interval_ms": 1000}` (or `null`): per-chat limit |
//! | `GET`/`POST /_control/config` | the same setting, `{"per_chat_interval_ms"}` |
//! | `GET /_control/state` | a [`StateSummary`], plus the kit's `clock` and `faults` |
//! | `/_control/faults`, `/_control/rate-limit`, `/_control/clock…` | the kit's, see [`crate::kit::control`] |

mod api;
mod control;
mod format;
mod params;
mod state;
mod webhook;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::kit::control::{ControlError, Patch};
use crate::kit::{Base, Simulated};
use state::State;

/// How the simulated bot and server behave. Start from [`Config::default`] or
/// [`Config::for_token`] and override what a test needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The token clients put in the path, `<bot_id>:<secret>` like BotFather's.
    pub bot_token: String,
    /// The bot's user id (`getMe().id`, `from.id` of what it sends).
    pub bot_id: i64,
    /// The bot's `@username`, without the `@`.
    pub bot_username: String,
    /// The bot's display name.
    pub bot_first_name: String,
    /// The first `update_id` handed out. Telegram starts at an arbitrary large number, so by
    /// default this is random in 100 000 000–899 999 999; fix it for reproducible tests.
    pub first_update_id: Option<i64>,
    /// Upper bound on a `getUpdates` long poll, whatever `timeout` the client asks for.
    pub max_long_poll: Duration,
    /// How long an unconfirmed update is kept (Telegram: 24 hours).
    pub update_retention: Duration,
    /// Minimum time between two messages the bot sends to one chat; a faster send gets 429
    /// with `retry_after`. `None` (the default) leaves flood control to the shared budget so
    /// tests decide when limits apply; `Some(1 s)` approximates Telegram.
    pub per_chat_interval: Option<Duration>,
    /// Delay before the first webhook retry; it doubles per failure up to
    /// [`Config::webhook_retry_max`].
    pub webhook_retry_initial: Duration,
    /// Longest delay between webhook retries.
    pub webhook_retry_max: Duration,
    /// How long a webhook request may take before it counts as failed (Telegram: 60 s).
    pub webhook_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self::for_token("123456789:AAHsimulatedTelegramBotToken-0123456")
    }
}

impl Config {
    /// A config for `token`, taking the bot id from the token's `<id>:` prefix as Telegram's
    /// tokens do (or `123456789` when the token has none).
    pub fn for_token(token: impl Into<String>) -> Self {
        let bot_token = token.into();
        let bot_id = bot_token
            .split_once(':')
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or(123_456_789);
        Self {
            bot_token,
            bot_id,
            bot_username: "switchboard_sim_bot".into(),
            bot_first_name: "Switchboard Simulator".into(),
            first_update_id: None,
            max_long_poll: Duration::from_secs(50),
            update_retention: Duration::from_secs(24 * 60 * 60),
            per_chat_interval: None,
            webhook_retry_initial: Duration::from_millis(200),
            webhook_retry_max: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(60),
        }
    }
}

/// A Telegram user writing to the bot (the `from` of their messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: i64,
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
}

impl Customer {
    /// A customer with just an id and a first name.
    pub fn new(id: i64, first_name: impl Into<String>) -> Self {
        Self {
            id,
            first_name: first_name.into(),
            last_name: None,
            username: None,
            language_code: None,
        }
    }
}

/// A message a customer sends to the bot in their private chat. This is also the body of
/// `POST /_control/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMessage {
    /// The private chat; Telegram makes it equal to the customer's user id.
    pub chat_id: i64,
    pub from: Customer,
    pub text: String,
    /// Quote an earlier message of this chat. An unknown id is ignored, as a client can't
    /// reply to a message that doesn't exist.
    #[serde(default)]
    pub reply_to_message_id: Option<i64>,
    /// Unix time of the message; defaults to the simulator's clock.
    #[serde(default)]
    pub date: Option<i64>,
    /// Set to deliver the message as a `business_message` update: the customer wrote to a
    /// Telegram Business account that delegates its chats to this bot.
    #[serde(default)]
    pub business_connection_id: Option<String>,
}

impl CustomerMessage {
    /// `text` from a customer whose user id is `chat_id`, as in every private chat.
    pub fn new(chat_id: i64, first_name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            chat_id,
            from: Customer::new(chat_id, first_name),
            text: text.into(),
            reply_to_message_id: None,
            date: None,
            business_connection_id: None,
        }
    }
}

/// Ids given to a message injected through the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    pub update_id: i64,
    pub message_id: i64,
}

/// A message the bot sent with `sendMessage`, as recorded for assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    pub chat_id: i64,
    pub message_id: i64,
    pub date: i64,
    /// The text the customer sees, after `parse_mode` markup was parsed.
    pub text: String,
    /// The `text` parameter exactly as the bot sent it.
    pub source_text: String,
    pub parse_mode: Option<String>,
    /// Formatting entities of `text` (from `entities` or from parsing `parse_mode`).
    pub entities: Vec<Value>,
    /// The message this one replies to, when the reply target existed.
    pub reply_to_message_id: Option<i64>,
    pub quote: Option<String>,
    pub message_thread_id: Option<i64>,
    pub disable_notification: bool,
    pub business_connection_id: Option<String>,
}

/// A snapshot of the simulator, served at `GET /_control/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSummary {
    /// Updates not yet confirmed (polling) or acknowledged (webhook).
    pub pending_update_count: usize,
    pub next_update_id: i64,
    pub webhook_url: Option<String>,
    pub webhook_last_error_message: Option<String>,
    pub chats: usize,
    pub blocked_chats: usize,
    pub customer_messages: u64,
    pub sent_messages: usize,
    pub per_chat_interval_ms: Option<u64>,
    /// How far tests have moved the simulator's clock ahead of real time.
    pub clock_offset_secs: i64,
}

/// Why a control-API request could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("chat {0} not found: a customer must write to the bot first")]
    ChatNotFound(i64),
    #[error("message {message_id} not found in chat {chat_id}")]
    MessageNotFound { chat_id: i64, message_id: i64 },
    #[error("message {message_id} in chat {chat_id} was sent by the bot, not the customer")]
    NotCustomerMessage { chat_id: i64, message_id: i64 },
}

/// A running Telegram simulator. Cheap to clone: clones share one in-memory server.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("bot_username", &self.inner.config.bot_username)
            .finish_non_exhaustive()
    }
}

/// State shared by the HTTP handlers, the webhook worker and the test accessors.
struct Inner {
    config: Config,
    /// The clock and the fault layer.
    base: Base,
    state: Mutex<State>,
    /// Wakes pending `getUpdates` long polls: new updates, a newer poll, a webhook change.
    updates_changed: Notify,
    /// Wakes the webhook worker: new updates or a webhook change.
    webhook_wake: Arc<Notify>,
    http: reqwest::Client,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The webhook worker holds only a weak reference; let it notice and exit.
        self.webhook_wake.notify_waiters();
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        crate::kit::lock(&self.state)
    }

    /// Wakes everyone waiting for updates after the queue or the webhook changed.
    fn wake_consumers(&self) {
        self.updates_changed.notify_waiters();
        self.webhook_wake.notify_waiters();
    }
}

impl Simulator {
    /// Creates a simulator with no chats, no updates and no webhook.
    pub fn new(config: Config) -> Self {
        let first_update_id = config.first_update_id.unwrap_or_else(|| {
            // Any randomness will do; this avoids a dependency just for one number.
            let random = RandomState::new().hash_one(std::time::SystemTime::now());
            100_000_000 + (random % 800_000_000) as i64
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            // Telegram does not follow redirects from a webhook: a 3xx is a failed delivery.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let state = State::new(first_update_id, config.per_chat_interval);
        Self {
            inner: Arc::new(Inner {
                config,
                base: Base::default(),
                state: Mutex::new(state),
                updates_changed: Notify::new(),
                webhook_wake: Arc::new(Notify::new()),
                http,
            }),
        }
    }

    /// The configuration this simulator was created with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The Bot API under `/bot<token>/…` plus the `/_control/…` API, ready to serve.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{bot_token}/{method}", axum::routing::any(api::handle))
            .merge(control::routes())
            .merge(crate::kit::control::routes())
            .fallback(api::not_found)
            .with_state(self.clone())
    }

    crate::kit::simulator_methods!("telegram");

    /// The customer writes to the bot; returns the new update's `update_id`. See
    /// [`Simulator::inject_customer_message`] for the message id too.
    pub fn customer_message(&self, msg: CustomerMessage) -> i64 {
        self.inject_customer_message(msg).update_id
    }

    /// The customer writes to the bot: creates the chat on first contact, stores the message
    /// and queues a `message` (or `business_message`) update for the bot.
    pub fn inject_customer_message(&self, msg: CustomerMessage) -> Injected {
        let now_ms = self.inner.base.clock.now_ms();
        let injected = self.inner.state().customer_message(now_ms, msg);
        self.inner.wake_consumers();
        injected
    }

    /// The customer edits one of their messages; queues an `edited_message` update.
    pub fn edit_customer_message(
        &self,
        chat_id: i64,
        message_id: i64,
        text: impl Into<String>,
    ) -> Result<Injected, SimError> {
        let now_ms = self.inner.base.clock.now_ms();
        let injected = self.inner.state().edit_customer_message(
            &self.inner.config,
            now_ms,
            chat_id,
            message_id,
            text.into(),
        )?;
        self.inner.wake_consumers();
        Ok(injected)
    }

    /// The customer blocks the bot: sends now fail with 403, and a `my_chat_member` update
    /// tells the bot.
    pub fn block(&self, chat_id: i64) -> Result<(), SimError> {
        self.set_blocked(chat_id, true)
    }

    /// The customer unblocks the bot (again with a `my_chat_member` update).
    pub fn unblock(&self, chat_id: i64) -> Result<(), SimError> {
        self.set_blocked(chat_id, false)
    }

    fn set_blocked(&self, chat_id: i64, blocked: bool) -> Result<(), SimError> {
        let now_ms = self.inner.base.clock.now_ms();
        self.inner
            .state()
            .set_blocked(&self.inner.config, now_ms, chat_id, blocked)?;
        self.inner.wake_consumers();
        Ok(())
    }

    /// Messages the bot sent, oldest first; only those to `chat_id` when given.
    pub fn sent_messages(&self, chat_id: Option<i64>) -> Vec<SentMessage> {
        let state = self.inner.state();
        state
            .sent
            .iter()
            .filter(|m| chat_id.is_none_or(|id| m.chat_id == id))
            .cloned()
            .collect()
    }

    /// Updates still waiting for the bot, as it would receive them.
    pub fn pending_updates(&self) -> Vec<Value> {
        let now_ms = self.inner.base.clock.now_ms();
        let mut state = self.inner.state();
        state.prune(now_ms, self.inner.config.update_retention);
        state.updates.iter().map(|u| u.body.clone()).collect()
    }

    /// A snapshot of counters and settings.
    pub fn summary(&self) -> StateSummary {
        let now_ms = self.inner.base.clock.now_ms();
        let mut state = self.inner.state();
        state.prune(now_ms, self.inner.config.update_retention);
        state.summary(self.inner.base.clock.offset_secs())
    }

    /// Turns the per-chat flood limit on (`Some(interval)`) or off at run time.
    pub fn set_per_chat_interval(&self, interval: Option<Duration>) {
        self.inner.state().per_chat_interval = interval;
    }
}

impl Simulated for Simulator {
    fn base(&self) -> &Base {
        &self.inner.base
    }

    fn control_state(&self) -> Value {
        serde_json::to_value(self.summary()).unwrap_or_default()
    }

    fn control_config(&self) -> Value {
        let interval = self.inner.state().per_chat_interval;
        let ms = interval.map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX));
        serde_json::json!({ "per_chat_interval_ms": ms })
    }

    fn patch_config(&self, patch: &Patch) -> Result<(), ControlError> {
        if let Some(ms) = patch.nullable("per_chat_interval_ms")? {
            self.set_per_chat_interval(ms.map(Duration::from_millis));
        }
        Ok(())
    }

    /// Message dates, the 24-hour update retention and the per-chat flood interval follow the
    /// clock; long polls and the webhook worker are woken to notice.
    fn advance_clock(&self, by: Duration) {
        self.inner.base.clock.advance(by);
        self.inner.wake_consumers();
    }
}
