//! Zendesk Support API simulator.
//!
//! Models the parts of the Ticketing API a helpdesk connector uses: API-token and OAuth bearer
//! auth, tickets (with `Idempotency-Key`, listing by `external_id`, safe updates, the
//! per-ticket update limit and the closed-ticket rule), users (`create_or_update`, search by
//! external id, identities), ticket comments and audits with cursor and offset pagination,
//! the incremental cursor ticket export and `ticket_events`, account rate limiting, and
//! webhooks that deliver signed event-subscription payloads.
//!
//! Tests drive the agent's side through direct accessors ([`Simulator::agent_reply`],
//! [`Simulator::set_status`]) or the unauthenticated control API under `/_control/`:
//!
//! | Route | Effect |
//! |---|---|
//! | `POST /_control/tickets/{id}/agent_reply` `{"body","public","status"?}` | adds an agent comment, answers `{"comment_id"}` |
//! | `POST /_control/tickets/{id}/status` `{"status"}` | changes the status (also to `closed`) |
//! | `GET /_control/tickets` | every ticket with its `comments` |
//! | `GET`/`POST /_control/config` | reads or patches the runtime settings (see [`Config`]) |
//! | `GET /_control/webhook_deliveries` | the delivery log |
//! | `/_control/faults`, `/_control/rate-limit`, `/_control/clock…`, `/_control/state` | the kit's, see [`crate::kit::control`] |

mod api;
mod error;
mod model;
mod util;
mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::kit::control::{AgentReply, ControlError, Helpdesk};
use crate::kit::lock;
use model::{Changes, Channel, NewComment, Store};
use util::html_from_text;
pub use webhooks::{sign as sign_webhook, WebhookDelivery};

/// An OAuth access token the simulator accepts as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthToken {
    /// The bearer token itself.
    pub token: String,
    /// Granted scopes: `read`, `write`, or `<resource>:read|write` (e.g. `tickets:write`).
    pub scopes: Vec<String>,
}

impl OAuthToken {
    /// A token with these scopes.
    pub fn new(token: impl Into<String>, scopes: &[&str]) -> Self {
        Self {
            token: token.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Account settings. [`Config::default`] follows Zendesk's documented limits;
/// [`Config::relaxed`] removes the waits that make tests slow.
#[derive(Debug, Clone)]
pub struct Config {
    /// The account's subdomain, used in resource `url` fields when no request host is known.
    pub subdomain: String,
    /// Sent as `x-zendesk-account-id` and in webhook payloads.
    pub account_id: u64,
    /// Email of the agent that owns the API token; this user exists from the start.
    pub agent_email: String,
    /// Display name of that agent.
    pub agent_name: String,
    /// The API token for Basic `{agent_email}/token:{api_token}`.
    pub api_token: String,
    /// True when the token owner is an admin (needed for incremental exports); else an agent.
    pub admin: bool,
    /// Bearer tokens accepted besides the API token; they act as the same agent.
    pub oauth_tokens: Vec<OAuthToken>,
    /// Account-wide requests per minute; `None` is unlimited (headers still show 700).
    pub rate_limit_per_minute: Option<u32>,
    /// Default page size of the incremental exports (Zendesk: 1000).
    pub export_page_size: usize,
    /// Changes newer than this are left out of incremental exports, and a `start_time` inside
    /// the window is refused (Zendesk: 60 s). Tests and the demo use 0.
    pub export_window_secs: u64,
    /// Incremental export calls per minute (Zendesk: 10); `None` disables the limit.
    pub export_rate_limit_per_minute: Option<u32>,
    /// Updates per user per ticket per 10 minutes (Zendesk: 30); `None` disables the limit.
    pub ticket_update_limit: Option<u32>,
    /// How long an `Idempotency-Key` answer is replayed (Zendesk: 2 h).
    pub idempotency_ttl: Duration,
    /// Webhook redeliveries after a failed attempt.
    pub webhook_max_retries: u32,
    /// Wait before the first redelivery; later ones wait proportionally longer.
    pub webhook_retry_delay: Duration,
    /// Per-request timeout of webhook deliveries (Zendesk: about 12 s).
    pub webhook_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            subdomain: "switchboard".into(),
            account_id: 10_000_001,
            agent_email: "agent@switchboard.example".into(),
            agent_name: "Switchboard Integration".into(),
            api_token: "zendesk-sim-token".into(),
            admin: true,
            oauth_tokens: Vec::new(),
            rate_limit_per_minute: None,
            export_page_size: 1000,
            export_window_secs: 60,
            export_rate_limit_per_minute: Some(10),
            ticket_update_limit: Some(30),
            idempotency_ttl: Duration::from_secs(2 * 60 * 60),
            webhook_max_retries: 3,
            webhook_retry_delay: Duration::from_millis(500),
            webhook_timeout: Duration::from_secs(12),
        }
    }
}

impl Config {
    /// The default settings for this account and credentials.
    pub fn new(
        subdomain: impl Into<String>,
        agent_email: impl Into<String>,
        api_token: impl Into<String>,
    ) -> Self {
        Self {
            subdomain: subdomain.into(),
            agent_email: agent_email.into(),
            api_token: api_token.into(),
            ..Self::default()
        }
    }

    /// No export window or export limit, and fast webhook retries: what tests and the demo
    /// want. The account budget and per-ticket limit stay as configured.
    pub fn relaxed(mut self) -> Self {
        self.export_window_secs = 0;
        self.export_rate_limit_per_minute = None;
        self.webhook_retry_delay = Duration::from_millis(20);
        self
    }

    /// The `https://{subdomain}.zendesk.com` origin.
    fn public_origin(&self) -> String {
        format!("https://{}.zendesk.com", self.subdomain)
    }
}

crate::kit::account_simulator! {
    /// An in-memory Zendesk account behind an axum router. Cloning shares the account.
    name: "zendesk", budget: |c| c.rate_limit_per_minute, window: crate::kit::MINUTE,
    public_origin: Config::public_origin,
    extra: {
        http: reqwest::Client = reqwest::Client::new(),
        deliveries: Arc<Mutex<Vec<WebhookDelivery>>> = Arc::default(),
        sequence: AtomicU64 = AtomicU64::new(1),
    },
}

impl Simulator {
    /// A fresh account whose only user is the configured agent.
    pub fn new(config: Config) -> Self {
        Self::start(config, |config, base| {
            Store::new(config, base.clock.now_secs())
        })
    }

    /// Every ticket, as `GET /api/v2/tickets/{id}` shows it.
    pub fn tickets(&self) -> Vec<Value> {
        let base = self.origin();
        let store = self.store();
        store
            .tickets
            .values()
            .map(|t| store.ticket_json(t, &base))
            .collect()
    }

    /// The comments of a ticket in order, as `GET /api/v2/tickets/{id}/comments` shows them;
    /// empty for an unknown ticket.
    pub fn comments(&self, ticket_id: u64) -> Vec<Value> {
        let store = self.store();
        store
            .tickets
            .get(&ticket_id)
            .map(|t| t.comments.iter().map(|c| store.comment_json(c)).collect())
            .unwrap_or_default()
    }

    /// Every user, as `GET /api/v2/users/{id}` shows them.
    pub fn users(&self) -> Vec<Value> {
        let base = self.origin();
        let store = self.store();
        store
            .users
            .values()
            .map(|u| store.user_json(u, &base))
            .collect()
    }

    /// The id of the agent that owns the API token.
    pub fn agent_id(&self) -> u64 {
        self.store().agent_id
    }

    /// The id of the human agent who answers in the agent UI ([`Self::agent_reply`],
    /// [`Self::set_status`]). A different user from the token owner, as in a real account where
    /// the integration has its own API user, so connectors can tell their own echoes apart.
    pub fn human_agent_id(&self) -> u64 {
        self.store().human_agent_id
    }

    /// The agent answers in the agent UI: a public reply, or an internal note when `public`
    /// is false. Returns the comment id. Webhook deliveries it triggers run on the caller's
    /// Tokio runtime (none are sent without one).
    ///
    /// # Panics
    /// When the ticket does not exist or is closed (a test bug, not an API outcome).
    pub fn agent_reply(&self, ticket_id: u64, body: &str, public: bool) -> u64 {
        match self.try_agent_reply(ticket_id, body, public, None) {
            Ok(id) => id,
            Err(e) => panic!("agent_reply on ticket {ticket_id}: {}", e.body),
        }
    }

    /// The agent changes the status in the agent UI (any status, `closed` included).
    ///
    /// # Panics
    /// When the ticket does not exist, is closed, or `status` is not a Zendesk status.
    pub fn set_status(&self, ticket_id: u64, status: &str) {
        if let Err(e) = self.try_set_status(ticket_id, status) {
            panic!("set_status on ticket {ticket_id}: {}", e.body);
        }
    }

    /// The webhook delivery log, oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.inner.deliveries).clone()
    }

    // ----- internals shared with the HTTP layer --------------------------------------------

    /// The origin for `url` fields in an answer: where the request came to.
    fn request_origin(&self, headers: &HeaderMap) -> String {
        self.inner
            .base
            .origin(headers)
            .unwrap_or_else(|| self.store().config.public_origin())
    }

    /// Runs a change under the lock, then sends any webhook events it queued.
    fn mutate<T>(&self, change: impl FnOnce(&mut Store, i64) -> T) -> T {
        let now_ms = self.now_ms();
        let (result, jobs, policy) = {
            let mut store = self.store();
            let result = change(&mut store, now_ms);
            let jobs = self.collect_jobs(&mut store, now_ms);
            let c = &store.config;
            let policy = webhooks::RetryPolicy {
                max_retries: c.webhook_max_retries,
                delay: c.webhook_retry_delay,
                timeout: c.webhook_timeout,
            };
            (result, jobs, policy)
        };
        if !jobs.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    for job in jobs {
                        let client = self.inner.http.clone();
                        let log = self.inner.deliveries.clone();
                        runtime.spawn(webhooks::deliver(client, job, policy, log));
                    }
                }
                Err(_) => tracing::warn!(
                    "no tokio runtime: {} webhook deliveries dropped",
                    jobs.len()
                ),
            }
        }
        result
    }

    fn collect_jobs(&self, store: &mut Store, now_ms: i64) -> Vec<webhooks::Job> {
        let notices = std::mem::take(&mut store.outbox);
        let mut jobs = Vec::new();
        for notice in notices {
            let seq = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
            let event_id = util::pseudo_uuid(seq, now_ms);
            let body =
                webhooks::payload(store.config.account_id, &event_id, &notice, now_ms).to_string();
            for hook in store
                .webhooks
                .values()
                .filter(|w| w.wants(notice.event_type))
            {
                let invocation = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
                jobs.push(webhooks::Job {
                    webhook_id: hook.id.clone(),
                    endpoint: hook.endpoint.clone(),
                    secret: hook.signing_secret.clone(),
                    authentication: hook.authentication.clone(),
                    custom_headers: hook.custom_headers.clone(),
                    account_id: store.config.account_id,
                    invocation_id: (8_350_000_000 + invocation).to_string(),
                    event_type: notice.event_type.to_owned(),
                    ticket_id: notice.ticket_id,
                    timestamp: util::iso8601(now_ms.div_euclid(1000)),
                    body: body.clone(),
                });
            }
        }
        jobs
    }

    fn try_agent_reply(
        &self,
        ticket_id: u64,
        body: &str,
        public: bool,
        status: Option<String>,
    ) -> Result<u64, error::ApiError> {
        self.mutate(|store, now_ms| {
            let changes = Changes {
                comment: Some(NewComment {
                    body: body.to_owned(),
                    html_body: html_from_text(body),
                    public,
                    author_id: store.human_agent_id,
                }),
                status,
                ..Changes::default()
            };
            let agent = store.human_agent_id;
            store.apply(
                ticket_id,
                agent,
                Channel::Web,
                changes,
                now_ms.div_euclid(1000),
            )?;
            store
                .tickets
                .get(&ticket_id)
                .and_then(|t| t.comments.last())
                .map(|c| c.id)
                .ok_or_else(error::ApiError::not_found)
        })
    }

    fn try_set_status(&self, ticket_id: u64, status: &str) -> Result<(), error::ApiError> {
        if !model::STATUSES.contains(&status) {
            let mut d = error::Details::default();
            d.add(
                "status",
                "InvalidValue",
                format!("Status: {status} is not a valid value"),
            );
            return Err(d.into_error());
        }
        self.mutate(|store, now_ms| {
            let changes = Changes {
                status: Some(status.to_owned()),
                ..Changes::default()
            };
            let agent = store.human_agent_id;
            store
                .apply(
                    ticket_id,
                    agent,
                    Channel::Web,
                    changes,
                    now_ms.div_euclid(1000),
                )
                .map(|_| ())
        })
    }
}

impl Simulator {
    /// What `GET /_control/state` shows.
    fn counts(&self) -> Value {
        let store = self.store();
        json!({
            "tickets": store.tickets.len(),
            "users": store.users.len(),
            "webhooks": store.webhooks.len(),
            "webhook_deliveries": lock(&self.inner.deliveries).len(),
        })
    }
}

impl From<error::ApiError> for ControlError {
    fn from(e: error::ApiError) -> Self {
        ControlError::vendor(e.status, Some(e.body))
    }
}

/// A ticket id from the control API's path.
fn control_ticket_id(ticket: &str) -> Result<u64, ControlError> {
    let id = ticket.trim_end_matches(".json");
    id.parse()
        .map_err(|_| ControlError::not_found(format!("no ticket `{ticket}`: ids are numbers")))
}

impl Helpdesk for Simulator {
    fn control_tickets(&self, headers: &HeaderMap) -> Vec<Value> {
        let base = self.request_origin(headers);
        let store = self.store();
        store
            .tickets
            .values()
            .map(|t| {
                let mut v = store.ticket_json(t, &base);
                v["comments"] =
                    Value::Array(t.comments.iter().map(|c| store.comment_json(c)).collect());
                v
            })
            .collect()
    }

    fn control_agent_reply(&self, ticket: &str, reply: AgentReply) -> Result<Value, ControlError> {
        let id = control_ticket_id(ticket)?;
        if let Some(s) = &reply.status {
            if !model::STATUSES.contains(&s.as_str()) {
                return Err(ControlError::bad_request(format!("unknown status {s}")));
            }
        }
        let comment_id = self.try_agent_reply(id, &reply.body, reply.public, reply.status)?;
        Ok(json!(comment_id))
    }

    fn control_set_status(&self, ticket: &str, status: &str) -> Result<Value, ControlError> {
        let id = control_ticket_id(ticket)?;
        self.try_set_status(id, status)?;
        let base = self.origin();
        let store = self.store();
        Ok(json!(store
            .tickets
            .get(&id)
            .map(|t| store.ticket_json(t, &base))))
    }
}
