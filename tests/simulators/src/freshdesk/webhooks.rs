//! Automation-rule webhooks.
//!
//! Freshdesk has no webhook subscription API: an admin adds a "Trigger webhook" action to an
//! automation rule (ticket creation, or ticket update filtered by event and performer). The
//! request is unsigned; it can carry basic auth or custom headers, which is how a receiver
//! tells it from a forgery. Failed calls are retried three times (after 5, 30 and 60 minutes
//! in Freshdesk; [`super::Config::webhook_retry_delays`] compresses that for tests).
//!
//! Rules are set up through the control API (`POST /_control/automations`) rather than
//! `/api/v2/automations`, whose rule format is far larger than what a connector test needs.
//! The body is the "simple" JSON layout: the chosen placeholders under `freshdesk_webhook`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{Performer, Store, PRIORITIES};
use super::util::{iso8601, text_of};

/// The events an update rule can filter on, plus `ticket_created` for creation rules.
pub const EVENTS: [&str; 5] = [
    "ticket_created",
    "reply_sent",
    "note_added",
    "status_changed",
    "priority_changed",
];

/// Who must have made the change for the rule to fire.
const PERFORMERS: [&str; 5] = ["any", "agent", "requester", "agent_or_requester", "system"];

/// An automation rule whose action triggers a webhook.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AutomationWebhook {
    /// Where the POST goes.
    pub url: String,
    /// The events that fire the rule (see [`EVENTS`]); empty means all of them.
    #[serde(default)]
    pub events: Vec<String>,
    /// `any` (default), `agent`, `requester`, `agent_or_requester` or `system`.
    #[serde(default = "any")]
    pub performer: String,
    /// Custom headers sent with every call, e.g. a shared secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Basic auth credentials, when the rule requires authentication; in JSON
    /// `["username", "password"]`.
    #[serde(default)]
    pub basic_auth: Option<(String, String)>,
}

fn any() -> String {
    "any".into()
}

impl AutomationWebhook {
    /// A rule posting every event to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            events: Vec::new(),
            performer: any(),
            headers: BTreeMap::new(),
            basic_auth: None,
        }
    }

    /// Adds a custom header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Restricts the rule to these events.
    pub fn events(mut self, events: &[&str]) -> Self {
        self.events = events.iter().map(|e| (*e).to_owned()).collect();
        self
    }

    /// Restricts the rule to changes by this performer.
    pub fn performer(mut self, performer: &str) -> Self {
        self.performer = performer.to_owned();
        self
    }

    /// Checks the rule's settings; the message says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err("url must be an http(s) URL".into());
        }
        if let Some(bad) = self.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(format!("unknown event `{bad}`; expected one of {EVENTS:?}"));
        }
        if !PERFORMERS.contains(&self.performer.as_str()) {
            return Err(format!(
                "unknown performer `{}`; expected one of {PERFORMERS:?}",
                self.performer
            ));
        }
        Ok(())
    }

    pub(crate) fn fires_on(&self, event: &str, performer: Performer) -> bool {
        let event_ok = self.events.is_empty() || self.events.iter().any(|e| e == event);
        let performer_ok = match self.performer.as_str() {
            "agent" => performer == Performer::Agent,
            "requester" => performer == Performer::Requester,
            "agent_or_requester" => performer != Performer::System,
            "system" => performer == Performer::System,
            _ => true,
        };
        event_ok && performer_ok
    }
}

/// One webhook call (with its retries), as recorded for tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Index of the rule in the order rules were added.
    pub rule: usize,
    pub url: String,
    /// The event that fired the rule.
    pub event: String,
    pub ticket_id: u64,
    /// The JSON body sent.
    pub body: String,
    /// Requests made, retries included.
    pub attempts: u32,
    /// The last HTTP status received; `None` when the endpoint could not be reached.
    pub last_status: Option<u16>,
    /// True once the endpoint answered 2xx.
    pub delivered: bool,
}

/// A call waiting to be made.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub rule: usize,
    pub hook: AutomationWebhook,
    pub event: &'static str,
    pub ticket_id: u64,
    pub body: String,
}

/// The "simple" JSON body: the ticket's placeholders as Freshdesk names them.
pub(crate) fn payload(store: &Store, event: &str, ticket_id: u64) -> Value {
    let Some(t) = store.tickets.get(&ticket_id) else {
        return json!({"freshdesk_webhook": {"ticket_id": ticket_id, "triggered_event": event}});
    };
    let priority = PRIORITIES
        .iter()
        .find(|(id, _)| *id == t.priority)
        .map(|(_, name)| *name)
        .unwrap_or_default();
    let latest_public = t
        .conversations
        .iter()
        .rev()
        .find(|c| !c.private)
        .map(|c| text_of(&c.body))
        .unwrap_or_else(|| text_of(&t.description));
    let requester = store.contacts.get(&t.requester_id);
    json!({"freshdesk_webhook": {
        "ticket_id": t.id,
        "ticket_subject": t.subject,
        "ticket_status": store.status_label(t.status),
        "ticket_priority": priority,
        "ticket_source": store.source_label(t.source),
        "ticket_tags": t.tags.join(","),
        "ticket_url": format!("https://{}.freshdesk.com/helpdesk/tickets/{}", store.config.domain, t.id),
        "ticket_requester_id": t.requester_id,
        "ticket_requester_name": requester.map(|c| c.name.clone()),
        "ticket_latest_public_comment": latest_public,
        "ticket_updated_at": iso8601(t.updated_at),
        "triggered_event": event,
    }})
}

/// Makes the call, retrying after each delay on a failure, and records the outcome.
pub(crate) async fn deliver(
    client: reqwest::Client,
    job: Job,
    delays: Vec<Duration>,
    timeout: Duration,
    log: Arc<Mutex<Vec<WebhookDelivery>>>,
) {
    let index = {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(WebhookDelivery {
            rule: job.rule,
            url: job.hook.url.clone(),
            event: job.event.to_owned(),
            ticket_id: job.ticket_id,
            body: job.body.clone(),
            attempts: 0,
            last_status: None,
            delivered: false,
        });
        log.len() - 1
    };
    let waits = std::iter::once(Duration::ZERO).chain(delays);
    for (attempt, wait) in waits.enumerate() {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut request = client
            .post(&job.hook.url)
            .timeout(timeout)
            .header("content-type", "application/json");
        for (name, value) in &job.hook.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some((user, password)) = &job.hook.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let status = match request.body(job.body.clone()).send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(error) => {
                tracing::debug!(url = %job.hook.url, %error, "webhook call failed");
                None
            }
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = log.get_mut(index) {
                entry.attempts = attempt as u32 + 1;
                entry.last_status = status;
                entry.delivered = delivered;
            }
        }
        if delivered {
            return;
        }
    }
}
