//! Freshdesk (API v2) simulator.
//!
//! Models the parts of the Freshdesk API a helpdesk connector uses, as the public API
//! documentation describes them (with a few details from Freshdesk's published server code):
//!
//! - **Auth**: HTTP Basic with the API key as the user name and any password (`apikey:X`);
//!   anything else is 401 `{"code":"invalid_credentials",...}`. Calls act as the key's owner,
//!   an agent ([`Simulator::agent_id`]); `GET /api/v2/agents/me` names them. A request marked
//!   `X-Forwarded-Proto: http` gets 403 `ssl_required` (Freshdesk is HTTPS only; the simulator
//!   itself serves plain HTTP).
//! - **Requests**: JSON, or `multipart/form-data` on ticket create, reply and note, where
//!   files come as `attachments[]` parts (20 MB in all) and the other fields as text parts
//!   (415 `invalid_content_type` for anything else, 406 for an `Accept` that
//!   excludes JSON); unknown attributes are 400 `invalid_field`; validation errors come as
//!   `{"description":"Validation failed","errors":[{"field","message","code"}]}`, uniqueness
//!   clashes as 409 `duplicate_value` with `additional_info.user_id`; an unknown id is a 404
//!   with an empty body. Bodies may be chunked.
//! - **Contacts**: `POST /api/v2/contacts` (name plus one of email, phone, mobile, twitter_id,
//!   unique_external_id; email, twitter_id and unique_external_id are unique, compared
//!   case-insensitively), `GET`/`PUT /api/v2/contacts/{id}`, `GET /api/v2/contacts` filtered by
//!   `email`, `phone`, `mobile`, `unique_external_id`, `state`, `updated_since` (other filters,
//!   `twitter_id` included, are 400 `invalid_field` as in Freshdesk), and
//!   `GET /api/v2/search/contacts?query="twitter_id:'...'"` (30 per page, at most 10 pages,
//!   with a configurable indexing delay).
//! - **Tickets**: `POST /api/v2/tickets` (flat body; one requester identifier required; email,
//!   phone, twitter_id and unique_external_id create the contact when nobody has it,
//!   facebook_id must exist; status 2–5 plus custom, priority 1–4, source from the account's
//!   set, tags of at most 32 characters, custom fields by name), `GET`/`PUT
//!   /api/v2/tickets/{id}` (`include=conversations,requester,stats`), and `GET
//!   /api/v2/tickets` with `updated_since`, `order_by`, `order_type`, `requester_id`, `email`,
//!   `unique_external_id`, `include`, `per_page` (≤ 100), `page` (≤ 300) and the `Link: <...>;
//!   rel="next"` header. Without `updated_since` only tickets created in the last 30 days are
//!   listed. There is no idempotency key: a repeated POST creates another ticket.
//! - **Conversations**: `POST /tickets/{id}/reply` (public, `source` 0, by an agent), `POST
//!   /tickets/{id}/notes` (`private` defaults to true, `incoming` to false, `user_id` any user),
//!   `GET /tickets/{id}/conversations` (30 per page, `Link`). The ticket's description is not a
//!   conversation. A conversation moves the ticket's `updated_at`; a public incoming note
//!   reopens a pending, resolved or closed ticket ([`Config::reopen_on_customer_reply`]).
//! - **Rate limits**: every API response carries `X-Ratelimit-Total`,
//!   `X-Ratelimit-Remaining` and `X-Ratelimit-Used-CurrentRequest` (an `include` costs one
//!   more credit on a ticket, two on the ticket list); over the account budget (or an
//!   endpoint's share, [`EndpointLimits`]) the answer is 429 with `Retry-After`. Also
//!   `X-Freshdesk-Api-Version` and a `Date` from the simulator clock.
//! - **Automation webhooks**: rules with a webhook action POST an unsigned JSON body (the
//!   "simple" layout, `{"freshdesk_webhook": {"ticket_id", ...}}`) with the rule's custom
//!   headers or basic auth, retried three times ([`webhooks`] has the details).
//!
//! Tests drive the agent's side through direct accessors ([`Simulator::agent_reply`],
//! [`Simulator::set_status`]) or the unauthenticated control API, which has the same shape as
//! the Zendesk simulator's:
//!
//! | Route | Effect |
//! |---|---|
//! | `POST /_control/tickets/{id}/agent_reply` `{"body","public","status"?}` | the human agent replies (public) or adds a private note; answers `{"comment_id"}` |
//! | `POST /_control/tickets/{id}/status` `{"status"}` | `open`, `pending`, `solved` (or `resolved`), `closed`, or a number |
//! | `GET /_control/tickets` | every ticket with its `comments` (see [`Simulator::comments`]) |
//! | `GET`/`POST /_control/config` | reads or patches runtime settings |
//! | `POST /_control/automations` (an [`AutomationWebhook`]), `GET /_control/automations` | webhook rules |
//! | `GET /_control/webhook_deliveries` | the webhook call log |
//! | `GET /_control/attachments/{id}` | an uploaded file as it was sent |
//! | `/_control/faults`, `/_control/rate-limit`, `/_control/clock…`, `/_control/state` | the kit's, see [`crate::kit::control`] |

mod api;
mod error;
mod form;
mod model;
mod search;
mod util;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::kit::control::{AgentReply, ControlError, Helpdesk};
use crate::kit::lock;
use model::{Store, CLOSED, OPEN, PENDING, RESOLVED};
pub use webhooks::{AutomationWebhook, WebhookDelivery};

/// Per-minute shares of the account budget for the busiest endpoints (Freshdesk's plans set
/// these, e.g. Pro: create 160, update 160, tickets list 100, contacts list 100). `None` is
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointLimits {
    pub ticket_create: Option<u32>,
    pub ticket_update: Option<u32>,
    pub tickets_list: Option<u32>,
    pub contacts_list: Option<u32>,
}

/// Account settings. [`Config::default`] is a fresh account with Freshdesk's default fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The account's domain: `acme` for `acme.freshdesk.com`.
    pub domain: String,
    /// The API key of the integration's agent.
    pub api_key: String,
    /// Name of the agent who owns the API key.
    pub agent_name: String,
    /// Email of that agent.
    pub agent_email: String,
    /// The account's time zone, shown on contacts and agents.
    pub time_zone: String,
    /// Account-wide requests per minute; `None` is unlimited (headers still show 700).
    pub rate_limit_per_minute: Option<u32>,
    /// Per-endpoint shares of the budget.
    pub endpoint_limits: EndpointLimits,
    /// Ticket sources a create or update may use, with their names. The default is the set
    /// Freshdesk documents (Email 1, Portal 2, Phone 3, Chat 7, Feedback Widget 9, Outbound
    /// Email 10); accounts may add custom sources (ids from 101).
    pub sources: Vec<(u64, String)>,
    /// Custom statuses (ids from 6) besides Open 2, Pending 3, Resolved 4 and Closed 5.
    pub custom_statuses: Vec<(u64, String)>,
    /// The account's ticket types.
    pub ticket_types: Vec<String>,
    /// Custom ticket text fields, by name (`cf_...`). A fresh account has none.
    pub ticket_custom_fields: Vec<String>,
    /// How long a new contact stays out of `search/contacts` results (Freshdesk: minutes).
    pub search_index_delay: Duration,
    /// A customer's public incoming note reopens a pending, resolved or closed ticket.
    pub reopen_on_customer_reply: bool,
    /// Waits before the retries of a failed webhook call (Freshdesk: 5, 30 and 60 minutes).
    pub webhook_retry_delays: Vec<Duration>,
    /// Per-call timeout of webhook calls.
    pub webhook_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: "switchboard".into(),
            api_key: "fdSimApiKey0123456789".into(),
            agent_name: "Switchboard Integration".into(),
            agent_email: "integration@switchboard.example".into(),
            time_zone: "Eastern Time (US & Canada)".into(),
            rate_limit_per_minute: None,
            endpoint_limits: EndpointLimits::default(),
            sources: model::DOCUMENTED_SOURCES
                .iter()
                .map(|(id, name)| (*id, (*name).to_owned()))
                .collect(),
            custom_statuses: Vec::new(),
            ticket_types: [
                "Question",
                "Incident",
                "Problem",
                "Feature Request",
                "Refund",
            ]
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
            ticket_custom_fields: Vec::new(),
            search_index_delay: Duration::ZERO,
            reopen_on_customer_reply: true,
            webhook_retry_delays: vec![
                Duration::from_millis(50),
                Duration::from_millis(300),
                Duration::from_millis(600),
            ],
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The default settings for this domain and API key.
    pub fn new(domain: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            api_key: api_key.into(),
            ..Self::default()
        }
    }

    /// Adds a custom ticket text field named `name` (`cf_...`).
    pub fn with_custom_field(mut self, name: impl Into<String>) -> Self {
        self.ticket_custom_fields.push(name.into());
        self
    }

    /// The `https://{domain}.freshdesk.com` origin.
    fn public_origin(&self) -> String {
        format!("https://{}.freshdesk.com", self.domain)
    }
}

/// A fixed per-minute window on the simulator clock, for the endpoint shares.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    started_ms: i64,
    used: u32,
}

crate::kit::account_simulator! {
    /// An in-memory Freshdesk account behind an axum router. Cloning shares the account.
    name: "freshdesk", budget: |c| c.rate_limit_per_minute, window: crate::kit::MINUTE,
    public_origin: Config::public_origin,
    extra: {
        http: reqwest::Client = reqwest::Client::new(),
        automations: Mutex<Vec<AutomationWebhook>> = Mutex::new(Vec::new()),
        deliveries: Arc<Mutex<Vec<WebhookDelivery>>> = Arc::default(),
        endpoint_windows: Mutex<HashMap<&'static str, Window>> = Mutex::default(),
    },
}

impl Simulator {
    /// A fresh account with two agents: the API key's owner and a human agent.
    pub fn new(config: Config) -> Self {
        Self::start(config, |config, base| {
            Store::new(config, base.clock.now_secs())
        })
    }

    /// The id of the agent who owns the API key (the integration's agent).
    pub fn agent_id(&self) -> u64 {
        self.store().api_agent_id
    }

    /// The id of the human agent who answers in the agent UI ([`Self::agent_reply`],
    /// [`Self::set_status`]): a different agent from the key's owner, so connectors can tell
    /// their own writes apart.
    pub fn human_agent_id(&self) -> u64 {
        self.store().human_agent_id
    }

    /// Every ticket, as `GET /api/v2/tickets/{id}` shows it, oldest first.
    pub fn tickets(&self) -> Vec<Value> {
        let store = self.store();
        store
            .tickets
            .values()
            .map(|t| store.ticket_json(t, false))
            .collect()
    }

    /// One ticket, as `GET /api/v2/tickets/{id}` shows it.
    pub fn ticket(&self, ticket_id: u64) -> Option<Value> {
        let store = self.store();
        store
            .tickets
            .get(&ticket_id)
            .map(|t| store.ticket_json(t, false))
    }

    /// A ticket's conversations, as `GET /api/v2/tickets/{id}/conversations` lists them;
    /// empty for an unknown ticket.
    pub fn conversations(&self, ticket_id: u64) -> Vec<Value> {
        let store = self.store();
        store
            .tickets
            .get(&ticket_id)
            .map(|t| {
                t.conversations
                    .iter()
                    .map(|c| store.conversation_json(c))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A ticket's messages in the shape the Zendesk simulator's `comments` has, so tests can
    /// drive either: the description first, then each conversation, each with `body` (plain
    /// text), `public` and `author_id`, plus the conversation's own fields (`id`, `body_html`,
    /// `incoming`, `private`, `source`, `user_id`, ...). The description's `id` is null.
    pub fn comments(&self, ticket_id: u64) -> Vec<Value> {
        let store = self.store();
        let Some(ticket) = store.tickets.get(&ticket_id) else {
            return Vec::new();
        };
        comments_of(&store, ticket)
    }

    /// Every contact, as `GET /api/v2/contacts/{id}` shows them.
    pub fn contacts(&self) -> Vec<Value> {
        let store = self.store();
        store
            .contacts
            .values()
            .map(|c| store.contact_json(c))
            .collect()
    }

    /// Every agent, as `GET /api/v2/agents/{id}` shows them.
    pub fn agents(&self) -> Vec<Value> {
        let store = self.store();
        store.agents.values().map(|a| store.agent_json(a)).collect()
    }

    /// Adds a contact the way a social channel would (the API cannot set `facebook_id`):
    /// `twitter_id` holds the X user id, `facebook_id` the Facebook one. Returns its id.
    pub fn add_social_contact(
        &self,
        name: &str,
        twitter_id: Option<&str>,
        facebook_id: Option<&str>,
    ) -> u64 {
        let now = self.now_secs();
        let mut store = self.store();
        let mut input = Map::new();
        input.insert("name".into(), json!(name));
        if let Some(twitter) = twitter_id {
            input.insert("twitter_id".into(), json!(twitter));
        } else {
            // A placeholder identifier: the API insists on one.
            input.insert(
                "unique_external_id".into(),
                json!(format!("facebook-channel:{}", facebook_id.unwrap_or(name))),
            );
        }
        let id = match store.save_contact(&input, None, now) {
            Ok(id) => id,
            Err(e) => panic!("add_social_contact: {}", e.summary()),
        };
        if let Some(mut contact) = store.contacts.get(&id).cloned() {
            contact.facebook_id = facebook_id.map(str::to_owned);
            if twitter_id.is_none() {
                contact.unique_external_id = None;
            }
            store.put_contact(contact);
        }
        id
    }

    /// The human agent answers in the agent UI: a public reply, or a private note when
    /// `public` is false. Returns the conversation id. Webhook calls it triggers run on the
    /// caller's Tokio runtime.
    ///
    /// # Panics
    /// When the ticket does not exist (a test bug, not an API outcome).
    pub fn agent_reply(&self, ticket_id: u64, body: &str, public: bool) -> u64 {
        match self.try_agent_reply(ticket_id, body, public, None) {
            Ok(id) => id,
            Err(e) => panic!("agent_reply on ticket {ticket_id}: {}", e.summary()),
        }
    }

    /// The human agent changes the status: `open`, `pending`, `solved`/`resolved`, `closed`
    /// (Zendesk's names, so a test can drive either simulator), or a status number.
    ///
    /// # Panics
    /// When the ticket does not exist or the status is unknown.
    pub fn set_status(&self, ticket_id: u64, status: &str) {
        if let Err(e) = self.try_set_status(ticket_id, status) {
            panic!("set_status on ticket {ticket_id}: {}", e.summary());
        }
    }

    /// Adds an automation rule with a webhook action; returns its index.
    ///
    /// # Panics
    /// When the rule is invalid (see [`AutomationWebhook`]).
    pub fn add_automation(&self, rule: AutomationWebhook) -> usize {
        if let Err(message) = rule.validate() {
            panic!("add_automation: {message}");
        }
        let mut rules = lock(&self.inner.automations);
        rules.push(rule);
        rules.len() - 1
    }

    /// The webhook call log, oldest first.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.inner.deliveries).clone()
    }

    // ----- internals shared with the HTTP layer --------------------------------------------

    /// Runs a change under the lock, then makes the webhook calls it caused.
    fn mutate<T>(&self, change: impl FnOnce(&mut Store, i64) -> T) -> T {
        let now = self.now_secs();
        let (result, jobs, delays, timeout) = {
            let mut store = self.store();
            let result = change(&mut store, now);
            let notices = std::mem::take(&mut store.outbox);
            let rules = lock(&self.inner.automations).clone();
            let mut jobs = Vec::new();
            for notice in notices {
                for (index, rule) in rules.iter().enumerate() {
                    if rule.fires_on(notice.event, notice.performer) {
                        jobs.push(webhooks::Job {
                            rule: index,
                            hook: rule.clone(),
                            event: notice.event,
                            ticket_id: notice.ticket_id,
                            body: webhooks::payload(&store, notice.event, notice.ticket_id)
                                .to_string(),
                        });
                    }
                }
            }
            let c = &store.config;
            (
                result,
                jobs,
                c.webhook_retry_delays.clone(),
                c.webhook_timeout,
            )
        };
        if !jobs.is_empty() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    for job in jobs {
                        runtime.spawn(webhooks::deliver(
                            self.inner.http.clone(),
                            job,
                            delays.clone(),
                            timeout,
                            self.inner.deliveries.clone(),
                        ));
                    }
                }
                Err(_) => tracing::warn!("no tokio runtime: {} webhook calls dropped", jobs.len()),
            }
        }
        result
    }

    fn try_agent_reply(
        &self,
        ticket_id: u64,
        body: &str,
        public: bool,
        status: Option<&str>,
    ) -> Result<u64, error::ApiError> {
        let status = status.map(parse_status).transpose()?;
        self.mutate(|store, now| {
            let human = store.human_agent_id;
            let mut input = Map::new();
            input.insert("body".into(), json!(body));
            let id = if public {
                store.add_reply(human, ticket_id, &input, now)?
            } else {
                input.insert("private".into(), json!(true));
                store.add_note(human, ticket_id, &input, now)?
            };
            if let Some(status) = status {
                store.set_status(ticket_id, status, now)?;
            }
            Ok(id)
        })
    }

    fn try_set_status(&self, ticket_id: u64, status: &str) -> Result<(), error::ApiError> {
        let status = parse_status(status)?;
        self.mutate(|store, now| store.set_status(ticket_id, status, now))
    }
}

/// A status by Zendesk-like name or number.
fn parse_status(status: &str) -> Result<u64, error::ApiError> {
    let status = status.trim().to_ascii_lowercase();
    let number = match status.as_str() {
        "new" | "open" => OPEN,
        "pending" => PENDING,
        "solved" | "resolved" => RESOLVED,
        "closed" => CLOSED,
        other => other.parse().map_err(|_| {
            error::ApiError::invalid(
                "status",
                format!("unknown status `{other}`: use open, pending, solved, closed or a number"),
                "invalid_value",
            )
        })?,
    };
    Ok(number)
}

/// The Zendesk-shaped message list of a ticket (see [`Simulator::comments`]).
fn comments_of(store: &Store, ticket: &model::Ticket) -> Vec<Value> {
    let mut out = vec![json!({
        "id": null,
        "kind": "description",
        "body": util::text_of(&ticket.description),
        "body_html": ticket.description,
        "public": true,
        "author_id": ticket.requester_id,
        "created_at": util::iso8601(ticket.created_at),
    })];
    for c in &ticket.conversations {
        let mut v = store.conversation_json(c);
        v["kind"] = json!(if c.source == model::SOURCE_REPLY {
            "reply"
        } else {
            "note"
        });
        v["body_html"] = v["body"].take();
        v["body"] = v["body_text"].clone();
        v["public"] = json!(!c.private);
        v["author_id"] = json!(c.user_id);
        out.push(v);
    }
    out
}

impl Simulator {
    /// What `GET /_control/state` shows.
    fn counts(&self) -> Value {
        let store = self.store();
        json!({
            "tickets": store.tickets.len(),
            "contacts": store.contacts.len(),
            "automations": lock(&self.inner.automations).len(),
            "webhook_deliveries": lock(&self.inner.deliveries).len(),
        })
    }
}

impl From<error::ApiError> for ControlError {
    fn from(e: error::ApiError) -> Self {
        ControlError::vendor(e.status, e.body)
    }
}

/// A ticket id from the control API's path.
fn control_ticket_id(ticket: &str) -> Result<u64, ControlError> {
    ticket
        .parse()
        .map_err(|_| ControlError::not_found(format!("no ticket `{ticket}`: ids are numbers")))
}

impl Helpdesk for Simulator {
    fn control_tickets(&self, _headers: &HeaderMap) -> Vec<Value> {
        let store = self.store();
        store
            .tickets
            .values()
            .map(|t| {
                let mut v = store.ticket_json(t, false);
                v["comments"] = Value::Array(comments_of(&store, t));
                v
            })
            .collect()
    }

    fn control_agent_reply(&self, ticket: &str, reply: AgentReply) -> Result<Value, ControlError> {
        let id = control_ticket_id(ticket)?;
        let status = reply.status.as_deref();
        Ok(json!(self.try_agent_reply(
            id,
            &reply.body,
            reply.public,
            status
        )?))
    }

    fn control_set_status(&self, ticket: &str, status: &str) -> Result<Value, ControlError> {
        let id = control_ticket_id(ticket)?;
        self.try_set_status(id, status)?;
        let store = self.store();
        Ok(json!(store
            .tickets
            .get(&id)
            .map(|t| store.ticket_json(t, false))))
    }
}
