//! Meta Graph API simulator: Messenger and Facebook Page comments for one Page, Instagram
//! messaging and comments for one professional account, and the WhatsApp Cloud API for one
//! business number.
//!
//! A stand-in for `https://graph.facebook.com` that a Meta connector talks to as it would to
//! Graph: paths with or without a version prefix (`/v23.0/me/messages`), the Page access
//! token as `access_token` (query or form) or `Authorization: Bearer`/`OAuth`, Graph's error
//! object on every refusal, and webhooks POSTed to the configured callback exactly as Meta
//! sends them.
//!
//! # What is modelled
//!
//! * **Auth and errors**: a missing token is `104`; an unknown or invalidated token is `190`
//!   (subcode 460 after a password change, 463 when expired), with `WWW-Authenticate`. Every
//!   error is `{"error":{"message","type","code","error_subcode"?,"fbtrace_id"}}`.
//! * **Throttling**: the kit's request budget (`/_control/rate-limit`) counts every Graph
//!   call; over it, the throttling error ([`Config::throttle_code`]: 4, 17, 32, 613 or a BUC
//!   code) with `is_transient`, and no `Retry-After`: `X-App-Usage` and
//!   `X-Business-Use-Case-Usage` (with `estimated_time_to_regain_access` in minutes) are on
//!   every answer instead.
//! * **Send API** (`POST /me/messages`, `/{page-id}/messages`): `messaging_type` RESPONSE
//!   or UPDATE inside 24 h of the person's last message; MESSAGE_TAG + HUMAN_AGENT up to
//!   7 days (when [`Config::human_agent`]); beyond that code 10 / subcode 2018278. 2000
//!   characters at most; an unknown PSID is 100 / 2018001. Private replies with
//!   `recipient.comment_id`: one per comment (10900), within 7 days of the comment and never to
//!   the Page's own comment (10903); they open no window.
//! * **Conversations API**: `GET /{page-id}/conversations?platform=messenger` (newest first,
//!   `user_id=` filter), `GET /{conversation-id}?fields=messages{…}`,
//!   `GET /{conversation-id}/messages`, `GET /{message-id}`, all with cursor paging
//!   (`paging.cursors.before/after`, `paging.next`/`previous`) and `fields=` selection.
//! * **Page comments**: `GET /{post-id}/comments` and `/{comment-id}/comments` (cursors,
//!   `order=chronological|reverse_chronological`, `filter=toplevel|stream`), public replies by
//!   `POST /{comment-id}/comments` (the Page's own comment, which comes back in `feed`), hiding
//!   by `POST /{comment-id}` `is_hidden`, `DELETE /{comment-id}`.
//! * **Handover**: `GET /{page-id}/thread_owner?recipient=`, `POST /{page-id}/pass_thread_control`,
//!   `/take_thread_control`; while another app owns a thread this app's events arrive under
//!   `entry[].standby[]`, and a send it makes anyway is recorded with `while_standby`.
//! * **Webhooks**: the verification handshake (`hub.mode`, `hub.verify_token`,
//!   `hub.challenge`) when a callback is set, then signed deliveries
//!   (`X-Hub-Signature-256` over [`meta_json`] bytes), batched (every event of one change
//!   in one POST, and within [`Config::batch_window`]), retried on failure, duplicated on
//!   request: `messages`, `message_echoes` (`is_echo`, `app_id`, `metadata`) for this app's,
//!   the Page inbox's and the other app's sends, `message_deliveries`, `message_reads`,
//!   `messaging_handovers`, and `feed` comment changes (add/edited/remove/hide/unhide, photo- or
//!   sticker-only comments without `message`, the Page's own comments).
//! * **Faults**: `/_control/faults` in Graph's words (an injected rate limit is the throttling
//!   error with its usage headers).
//!
//! * **WhatsApp Cloud API** (one business number, [`Config::phone_number_id`]):
//!   inbound messages as `whatsapp_business_account` webhooks with `contacts[]` carrying
//!   `wa_id` and the business-scoped `user_id` (the phone can be withheld), any message type;
//!   `POST /{phone-number-id}/messages` for text (4096 characters), approved templates
//!   (132001 otherwise) and read receipts, answering `contacts[].wa_id` and a `wamid`; the
//!   24-hour customer-service window from the last inbound message, outside which a free-form
//!   message is accepted and then fails with status `failed` / 131047; statuses sent and
//!   delivered (or delivered, sent, delivered with `whatsapp_shuffle_statuses`), any sequence
//!   through the control API; the pair rate limit (131056) and throughput (130429 from the
//!   budget); errors with `error_data`.
//!
//! * **Instagram** ([`Config::ig_user_id`]; with the Instagram token `me` is the account):
//!   DMs as `object: "instagram"` webhooks (echoes in `messages`, story mentions and replies
//!   as the control API gives them), `POST /{ig-id}/messages` with the 24 h / HUMAN_AGENT
//!   windows (code 10 / subcode 2534022 beyond) and a 1000-byte UTF-8 text limit (Meta
//!   documents both 1000 characters and 1000 bytes; the stricter one is enforced),
//!   `/{ig-id}/conversations?platform=instagram`; `comments` and `mentions` changes,
//!   `GET /{media-id}/comments`, `GET|POST /{comment-id}/replies` (a reply to a reply goes to
//!   the top-level comment), `POST /{ig-id}/mentions`, `GET /{ig-id}/media`, and private replies
//!   (once per comment, 7 days, [`Config::instagram_private_replies_per_hour`], then 613).
//!
//! * **Tokens**: Facebook Login's `GET /oauth/access_token` (a login `code` from the control
//!   API, single use: 36009; then `grant_type=fb_exchange_token` for a 60-day user token),
//!   `GET /me/accounts` handing out the Page token (without expiry from a long-lived user
//!   token, dying with a short-lived one), user tokens refused elsewhere (210); Instagram
//!   Login's `GET /access_token?grant_type=ig_exchange_token` (60 days) and
//!   `GET /refresh_access_token` (only once a day old); expired tokens are 190 / 463, on the
//!   simulator clock. The configured Page, Instagram and WhatsApp tokens never expire.
//!
//! Not modelled yet: attachment upload and media download, quick replies, retry horizons
//! in time (36 h; WhatsApp 7 days: retries
//! here are counted, [`Config::webhook_max_retries`]), Instagram story replies' expiring URLs
//! beyond what the control API passes through.
//!
//! # Control API (JSON, no auth)
//!
//! | Route | Does |
//! |---|---|
//! | `POST /_control/messages` `{"psid"?,"name"?,"text"?,"attachments"?,"reply_to"?,"referral"?}` or a list | the customer writes (a list: one webhook POST) → `{"psid","mid","conversation_id"}` (a list for a list) |
//! | `POST /_control/reads` `{"psid"}` | the customer reads the thread → `message_reads` |
//! | `POST /_control/postbacks` `{"psid","title","payload"}` | the customer taps a button → `messaging_postbacks` (opens the window) |
//! | `POST /_control/inbox/reply` `{"psid","text"}` | an agent answers in the Page inbox → echo with the inbox's `app_id` → `{"mid"}` |
//! | `POST /_control/other_app/reply` `{"psid","text"}` | the other app answers → echo with its `app_id` |
//! | `POST /_control/handover/take` `{"psid","metadata"?}` | the other app takes the thread (this app gets `take_thread_control`, then standby) |
//! | `POST /_control/handover/release` `{"psid","metadata"?}` | the other app passes it back (`pass_thread_control`) |
//! | `GET /_control/sent` | what this app sent ([`SentMessage`]s) |
//! | `GET /_control/conversations` | every conversation with its messages and owner |
//! | `POST /_control/posts` `{"message"}` | the Page posts → `{"post_id"}` |
//! | `POST /_control/comments` `{"parent_id","psid"?,"name"?,"message"?,"photo"?,"sticker"?}` | the customer comments (or replies) → `{"comment_id","psid"}` |
//! | `POST /_control/comments/{id}/{edit,remove,hide,unhide}` `{"message"?}` | the matching `feed` verb |
//! | `POST /_control/webhook` `{"callback_url","verify_token"}` | handshake, then deliveries go there → `{"verified":true}` |
//! | `DELETE /_control/webhook` | stops deliveries |
//! | `POST /_control/webhook/duplicate` `{"count"}` | the next `count` payloads are sent twice |
//! | `GET /_control/webhook_deliveries` | [`WebhookDelivery`] log |
//! | `POST /_control/token/invalidate` `{"reason"?: "password_changed"\|"expired"}` | the Page token stops working (190) |
//! | `POST /_control/whatsapp/messages` `{"wa_id"?,"user_id"?,"name"?,"text"?,"message"?,"hide_phone"?,"referral"?}` | a WhatsApp customer writes → `{"id","user_id","wa_id"}` |
//! | `POST /_control/whatsapp/statuses` `{"id","statuses":["read","delivered",…]}` | status callbacks for a sent message, in that order (duplicates allowed) |
//! | `GET /_control/whatsapp/sent` | what the business sent on WhatsApp ([`WhatsAppSent`]s) |
//! | `POST /_control/instagram/messages` `{"igsid"?,"username"?,"text"?,"attachments"?,"reply_to"?}` | an Instagram DM → `{"igsid","mid","conversation_id"}` |
//! | `POST /_control/instagram/media` `{"caption","foreign"?}` | the account's media (or someone else's) → `{"media_id"}` |
//! | `POST /_control/instagram/comments` `{"parent_id","igsid"?,"username"?,"text"}` | a comment or reply → `{"comment_id","igsid"}` |
//! | `POST /_control/instagram/mentions` `{"media_id"?,"text"?,"username"?}` | the account is @mentioned (in a comment when `text`) → `{"media_id","comment_id"}` |
//! | `POST /_control/oauth/code` | the Page admin completes Facebook Login → `{"code"}` |
//! | `POST /_control/oauth/instagram_token` | the owner completes Instagram Login → `{"access_token","user_id","expires_in"}` (short-lived) |
//! | `GET`/`POST /_control/config` | `human_agent`, `auto_delivery`, `throttle_code`, `batch_window_ms`, `subscribed_fields`, `whatsapp_shuffle_statuses`, `whatsapp_pair_interval_ms`, `whatsapp_templates`, `conversations_per_second` |
//! | `/_control/faults`, `/_control/rate-limit`, `/_control/clock…`, `/_control/state` | the kit's, see [`crate::kit::control`] |

mod api;
mod control;
mod error;
mod model;
mod oauth;
mod webhooks;
mod whatsapp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::kit::control::ControlError;
use crate::kit::lock;
pub use control::{CustomerMessage, InstagramMessage};
pub use error::{usage_headers, GraphError};
pub use model::SentMessage;
use model::{Event, Store};
pub use webhooks::{
    meta_json, sign, verification_url, verify_callback, WebhookDelivery, SIGNATURE_HEADER,
};
pub use whatsapp::{WhatsAppInbound, WhatsAppSent};

/// The Page inbox's app id as it appears in echoes of replies typed in Meta Business Suite.
pub const PAGE_INBOX_APP_ID: &str = "263902037430900";

/// Every field a Page subscription can carry that the simulator produces.
pub const FIELDS: [&str; 7] = [
    "messages",
    "messaging_postbacks",
    "message_echoes",
    "message_deliveries",
    "message_reads",
    "messaging_handovers",
    "feed",
];

/// The app, the Page and how the simulated Graph behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// This app (the connector's), in echoes and thread ownership.
    pub app_id: String,
    /// The key of `X-Hub-Signature-256`.
    pub app_secret: String,
    pub page_id: String,
    pub page_name: String,
    /// The Page access token the connector holds.
    pub page_access_token: String,
    /// The app the Page inbox sends as ([`PAGE_INBOX_APP_ID`]).
    pub inbox_app_id: String,
    /// Another app on the Page that can take conversations over (a chatbot, say).
    pub other_app_id: String,
    /// The installation has the Human Agent feature (HUMAN_AGENT tag up to 7 days).
    pub human_agent: bool,
    /// Each send is followed by a `message_deliveries` event.
    pub auto_delivery: bool,
    /// The code throttled calls get: 4 (app), 17 (user), 32 (Page), 613, or a BUC code.
    pub throttle_code: u32,
    /// Events of changes within this window share one webhook POST (zero: one POST per change).
    pub batch_window: Duration,
    /// The fields the app subscribed the Page to (`POST /{page-id}/subscribed_apps`).
    pub subscribed_fields: Vec<String>,
    /// Redeliveries after a failed webhook POST.
    pub webhook_max_retries: u32,
    /// Wait before the first redelivery; later ones wait proportionally longer.
    pub webhook_retry_delay: Duration,
    /// Time a callback may take to answer (Meta: 20 s).
    pub webhook_timeout: Duration,
    /// The WhatsApp Business Account (`entry[].id` of WhatsApp webhooks).
    pub waba_id: String,
    /// The business phone number's id (`POST /{phone-number-id}/messages`).
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// The system-user token for WhatsApp (the Page token is accepted too).
    pub whatsapp_access_token: String,
    /// Approved template names.
    pub whatsapp_templates: Vec<String>,
    /// Least time between two messages to one person (Meta: about 6 s); `None`: no limit.
    pub whatsapp_pair_interval: Option<Duration>,
    /// Report statuses out of order and duplicated (delivered, sent, delivered).
    pub whatsapp_shuffle_statuses: bool,
    /// The Instagram professional account (`entry[].id`, the `IG_ID` of `/{IG_ID}/messages`).
    pub ig_user_id: String,
    pub ig_username: String,
    /// The Instagram User token (Instagram Login); with it `me` is the Instagram account.
    pub instagram_access_token: String,
    /// Private replies per hour per account (Meta: 750).
    pub instagram_private_replies_per_hour: u32,
    /// Conversations API calls per second per Page or account (Meta: 2), counted on the
    /// simulator clock; `None` (the default) leaves it to the shared budget.
    pub conversations_per_second: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_id: "1517776481860111".into(),
            app_secret: "meta-sim-app-secret".into(),
            page_id: "104857600000001".into(),
            page_name: "Switchboard Coffee".into(),
            page_access_token: "EAAGsimPageAccessToken0123456789".into(),
            inbox_app_id: PAGE_INBOX_APP_ID.into(),
            other_app_id: "2222222222222222".into(),
            human_agent: true,
            auto_delivery: true,
            throttle_code: 32,
            batch_window: Duration::ZERO,
            subscribed_fields: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            webhook_max_retries: 3,
            webhook_retry_delay: Duration::from_millis(50),
            webhook_timeout: Duration::from_secs(20),
            waba_id: "102290129340398".into(),
            phone_number_id: "106540352242922".into(),
            display_phone_number: "15550783881".into(),
            whatsapp_access_token: "EAAGsimWhatsAppSystemUserToken0123".into(),
            whatsapp_templates: vec!["hello_world".into()],
            whatsapp_pair_interval: None,
            whatsapp_shuffle_statuses: false,
            ig_user_id: "17841400000000001".into(),
            ig_username: "switchboard.coffee".into(),
            instagram_access_token: "IGAAsimInstagramUserToken0123456789".into(),
            instagram_private_replies_per_hour: 750,
            conversations_per_second: None,
        }
    }
}

/// Where deliveries go, once the handshake passed.
#[derive(Debug, Clone)]
struct Callback {
    url: String,
}

crate::kit::account_simulator! {
    /// An in-memory Page (with its Instagram account and WhatsApp number) behind a Graph API
    /// router. Cloning shares it.
    name: "meta", budget: |_c| None, window: crate::kit::MINUTE,
    extra: {
        http: reqwest::Client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default(),
        /// Where deliveries go, once the handshake passed.
        callback: Mutex<Option<Callback>> = Mutex::new(None),
        deliveries: Arc<Mutex<Vec<WebhookDelivery>>> = Arc::default(),
        /// Events waiting for the batch window to close.
        pending: Mutex<Vec<Event>> = Mutex::new(Vec::new()),
        flush_scheduled: AtomicBool = AtomicBool::new(false),
        /// Payload indexes (into `deliveries`) for the delivery worker, in order.
        queue: OnceLock<mpsc::UnboundedSender<usize>> = OnceLock::new(),
        sequence: AtomicU64 = AtomicU64::new(1),
    },
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Simulator {
    pub fn new(config: Config) -> Self {
        Self::start(config, |config, _| Store::new(config))
    }

    /// Runs the verification handshake against `callback_url` and, when it passes, sends
    /// webhooks there from now on.
    pub async fn set_callback(&self, callback_url: &str, verify_token: &str) -> Result<(), String> {
        let challenge =
            (1_158_201_444 + self.inner.sequence.fetch_add(7919, Ordering::Relaxed)).to_string();
        verify_callback(&self.inner.http, callback_url, verify_token, &challenge).await?;
        *lock(&self.inner.callback) = Some(Callback {
            url: callback_url.to_owned(),
        });
        Ok(())
    }

    /// Stops webhook deliveries.
    pub fn clear_callback(&self) {
        *lock(&self.inner.callback) = None;
    }

    /// The webhook POSTs so far, oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.inner.deliveries).clone()
    }

    /// What this app sent through the Send API, oldest first.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.store().sent.clone()
    }

    // ----- internals ------------------------------------------------------------------------

    /// Runs a change under the lock, then hands the events it produced to delivery.
    fn mutate<T>(&self, change: impl FnOnce(&mut Store, i64) -> T) -> T {
        let now_ms = self.now_ms();
        let (result, events, fields, window) = {
            let mut store = self.store();
            let result = change(&mut store, now_ms);
            let events = std::mem::take(&mut store.outbox);
            (
                result,
                events,
                store.config.subscribed_fields.clone(),
                store.config.batch_window,
            )
        };
        let events: Vec<Event> = events
            .into_iter()
            .filter(|e| {
                matches!(e, Event::WhatsApp { .. } | Event::Instagram { .. })
                    || fields.iter().any(|f| f == e.field())
            })
            .collect();
        if events.is_empty() || lock(&self.inner.callback).is_none() {
            return result;
        }
        lock(&self.inner.pending).extend(events);
        if window.is_zero() {
            self.flush();
        } else if !self.inner.flush_scheduled.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let sim = self.clone();
                    runtime.spawn(async move {
                        tokio::time::sleep(window).await;
                        sim.inner.flush_scheduled.store(false, Ordering::Release);
                        sim.flush();
                    });
                }
                Err(_) => {
                    self.inner.flush_scheduled.store(false, Ordering::Release);
                    self.flush();
                }
            }
        }
        result
    }

    /// Turns the pending events into one signed payload and queues it (twice when a
    /// duplicate was asked for).
    fn flush(&self) {
        let events = std::mem::take(&mut *lock(&self.inner.pending));
        if events.is_empty() {
            return;
        }
        let (page_id, ig_id, waba_id, secret, copies, policy) = {
            let mut store = self.store();
            let copies = if store.duplicates_pending > 0 {
                store.duplicates_pending -= 1;
                2
            } else {
                1
            };
            let c = &store.config;
            let policy = webhooks::RetryPolicy {
                max_retries: c.webhook_max_retries,
                delay: c.webhook_retry_delay,
                timeout: c.webhook_timeout,
            };
            (
                c.page_id.clone(),
                c.ig_user_id.clone(),
                c.waba_id.clone(),
                c.app_secret.clone(),
                copies,
                policy,
            )
        };
        let (whatsapp, rest): (Vec<Event>, Vec<Event>) = events
            .into_iter()
            .partition(|e| matches!(e, Event::WhatsApp { .. }));
        let (instagram, page): (Vec<Event>, Vec<Event>) = rest
            .into_iter()
            .partition(|e| matches!(e, Event::Instagram { .. }));
        let now_ms = self.now_ms();
        let mut payloads = Vec::new();
        if !page.is_empty() {
            payloads.push(("page", payload(&page_id, &page, now_ms)));
        }
        if !instagram.is_empty() {
            payloads.push(("instagram", instagram_payload(&ig_id, &instagram, now_ms)));
        }
        if !whatsapp.is_empty() {
            payloads.push((
                "whatsapp_business_account",
                whatsapp_payload(&waba_id, &whatsapp),
            ));
        }
        let Some(sender) = self.queue(policy) else {
            tracing::warn!("no tokio runtime: a meta webhook payload was dropped");
            return;
        };
        for (object, payload) in payloads {
            let body = meta_json(&payload);
            let signature = sign(&secret, body.as_bytes());
            for copy in 0..copies {
                let index = {
                    let mut log = lock(&self.inner.deliveries);
                    log.push(WebhookDelivery {
                        id: self.inner.sequence.fetch_add(1, Ordering::Relaxed),
                        object: object.into(),
                        body: body.clone(),
                        signature: signature.clone(),
                        attempts: 0,
                        last_status: None,
                        delivered: false,
                        duplicate: copy > 0,
                    });
                    log.len() - 1
                };
                let _ = sender.send(index);
            }
        }
    }

    /// The delivery worker's queue, started on first use: payloads go out one at a time, in
    /// order, each retried before the next.
    fn queue(&self, policy: webhooks::RetryPolicy) -> Option<mpsc::UnboundedSender<usize>> {
        if let Some(sender) = self.inner.queue.get() {
            return Some(sender.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<usize>();
        if self.inner.queue.set(sender).is_ok() {
            let inner = Arc::downgrade(&self.inner);
            runtime.spawn(async move {
                while let Some(index) = receiver.recv().await {
                    let Some(inner) = inner.upgrade() else {
                        return;
                    };
                    let callback = lock(&inner.callback).clone();
                    let Some(callback) = callback else {
                        continue;
                    };
                    let (http, log) = (inner.http.clone(), inner.deliveries.clone());
                    drop(inner);
                    webhooks::deliver(http, callback.url, log, index, policy).await;
                }
            });
        }
        self.inner.queue.get().cloned()
    }
}

/// `{"object":"page","entry":[…]}`: each run of events of one kind (messaging, standby,
/// changes) becomes one entry.
fn payload(page_id: &str, events: &[Event], now_ms: i64) -> Value {
    let mut entries: Vec<Value> = Vec::new();
    let mut current: Option<(&'static str, Vec<Value>)> = None;
    let close = |entries: &mut Vec<Value>, run: Option<(&'static str, Vec<Value>)>| {
        if let Some((key, items)) = run {
            // Messaging entries carry milliseconds, change entries seconds, as Meta's do.
            let time = if key == "changes" {
                now_ms.div_euclid(1000)
            } else {
                now_ms
            };
            entries.push(json!({"id": page_id, "time": time, key: items}));
        }
    };
    for event in events {
        let (key, item) = match event {
            Event::Messaging {
                standby: false,
                item,
                ..
            } => ("messaging", item.clone()),
            Event::Messaging {
                standby: true,
                item,
                ..
            } => ("standby", item.clone()),
            Event::Change { field, value } => ("changes", json!({"field": field, "value": value})),
            Event::WhatsApp { value } => ("changes", json!({"field": "messages", "value": value})),
            Event::Instagram { field, item, .. } => {
                ("changes", json!({"field": field, "value": item}))
            }
        };
        match &mut current {
            Some((k, items)) if *k == key => items.push(item),
            _ => {
                close(&mut entries, current.take());
                current = Some((key, vec![item]));
            }
        }
    }
    close(&mut entries, current);
    json!({"object": "page", "entry": entries})
}

/// `{"object":"instagram","entry":[…]}`: messaging items in one entry (milliseconds),
/// comment and mention changes in another (seconds).
fn instagram_payload(ig_id: &str, events: &[Event], now_ms: i64) -> Value {
    let mut messaging = Vec::new();
    let mut changes = Vec::new();
    for event in events {
        if let Event::Instagram {
            field,
            messaging: is_messaging,
            item,
        } = event
        {
            if *is_messaging {
                messaging.push(item.clone());
            } else {
                changes.push(json!({"field": field, "value": item}));
            }
        }
    }
    let mut entries = Vec::new();
    if !messaging.is_empty() {
        entries.push(json!({"id": ig_id, "time": now_ms, "messaging": messaging}));
    }
    if !changes.is_empty() {
        entries.push(json!({"id": ig_id, "time": now_ms.div_euclid(1000), "changes": changes}));
    }
    json!({"object": "instagram", "entry": entries})
}

/// `{"object":"whatsapp_business_account","entry":[{"id":<WABA>,"changes":[…]}]}`.
fn whatsapp_payload(waba_id: &str, events: &[Event]) -> Value {
    let changes: Vec<Value> = events
        .iter()
        .filter_map(|e| match e {
            Event::WhatsApp { value } => Some(json!({"field": "messages", "value": value})),
            _ => None,
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": changes}]})
}

impl Simulator {
    /// The counters `GET /_control/state` shows.
    fn counts(&self) -> Value {
        let store = self.store();
        let deliveries = lock(&self.inner.deliveries);
        json!({
            "users": store.users.len(),
            "conversations": store.conversations.len(),
            "posts": store.posts.len(),
            "comments": store.comments.len(),
            "sent": store.sent.len(),
            "sent_while_standby": store.sent.iter().filter(|s| s.while_standby).count(),
            "whatsapp_sent": store.whatsapp.sent.len(),
            "webhook_deliveries": deliveries.len(),
            "webhook_undelivered": deliveries.iter().filter(|d| !d.delivered).count(),
            "callback": lock(&self.inner.callback).as_ref().map(|c| c.url.clone()),
        })
    }
}

impl From<GraphError> for ControlError {
    fn from(e: GraphError) -> Self {
        ControlError::vendor(e.status, Some(e.body()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_kind_share_an_entry() {
        let item = |n: i64| json!({"n": n});
        let events = vec![
            Event::Messaging {
                field: "messages",
                standby: false,
                item: item(1),
            },
            Event::Messaging {
                field: "message_echoes",
                standby: false,
                item: item(2),
            },
            Event::Messaging {
                field: "messages",
                standby: true,
                item: item(3),
            },
            Event::Change {
                field: "feed",
                value: item(4),
            },
        ];
        let p = payload("9", &events, 5_000);
        let entries = p["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["messaging"].as_array().map(Vec::len), Some(2));
        assert_eq!(entries[0]["time"], 5_000);
        assert_eq!(entries[1]["standby"][0]["n"], 3);
        assert_eq!(entries[2]["changes"][0]["field"], "feed");
        assert_eq!(entries[2]["time"], 5);
    }
}
