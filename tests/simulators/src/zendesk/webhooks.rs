//! Webhooks: the `/api/v2/webhooks` resource and signed outbound delivery of
//! event-subscription payloads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::error::ApiError;
use super::model::Notice;
use super::util::{iso8601, iso8601_ms};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const FORMATS: [&str; 3] = ["json", "xml", "form_encoded"];
const CONDITIONAL: &str = "conditional_ticket_events";

/// A registered webhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub status: String,
    pub subscriptions: Vec<String>,
    pub http_method: String,
    pub request_format: String,
    pub authentication: Option<Value>,
    pub custom_headers: BTreeMap<String, String>,
    pub signing_secret: String,
    pub created_by: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One delivery of one event to one webhook, as recorded for tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The webhook delivered to.
    pub webhook_id: String,
    /// The `x-zendesk-webhook-invocation-id` sent (the same on every retry).
    pub invocation_id: String,
    /// The event's `type`, such as `zen:event-type:ticket.comment_added`.
    pub event_type: String,
    /// The ticket the event is about.
    pub ticket_id: u64,
    /// Requests made, retries included.
    pub attempts: u32,
    /// The last HTTP status received; `None` when the endpoint could not be reached.
    pub last_status: Option<u16>,
    /// True once the endpoint answered 2xx.
    pub delivered: bool,
}

/// The webhooks API's own error shape (it differs from the ticketing API's).
fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        json!({"errors": [{"code": "InvalidInput", "title": "Invalid webhook", "detail": detail.into()}]}),
    )
}

pub(crate) fn webhook_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        json!({"errors": [{"code": "WebhookNotFound", "title": "Webhook not found", "detail": "Not found"}]}),
    )
}

impl Webhook {
    /// Builds a webhook from a create body, or applies a PATCH body onto `self`.
    pub(crate) fn apply(
        mut self,
        input: &Map<String, Value>,
        creating: bool,
    ) -> Result<Self, ApiError> {
        let text = |key: &str| -> Result<Option<String>, ApiError> {
            match input.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("{key} must be a string"))),
            }
        };
        if let Some(name) = text("name")? {
            self.name = name;
        }
        if let Some(endpoint) = text("endpoint")? {
            self.endpoint = endpoint;
        }
        if let Some(status) = text("status")? {
            self.status = status;
        }
        if let Some(method) = text("http_method")? {
            self.http_method = method.to_uppercase();
        }
        if let Some(format) = text("request_format")? {
            self.request_format = format;
        }
        if let Some(subs) = input.get("subscriptions") {
            if !creating {
                return Err(invalid("subscriptions cannot be changed after creation"));
            }
            let list = subs
                .as_array()
                .ok_or_else(|| invalid("subscriptions must be a list"))?;
            self.subscriptions = list
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid("subscriptions must be strings"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(auth) = input.get("authentication") {
            self.authentication = match auth {
                Value::Null => None,
                Value::Object(a) => {
                    let kind = a.get("type").and_then(Value::as_str).unwrap_or_default();
                    if !["api_key", "basic_auth", "bearer_token"].contains(&kind) {
                        return Err(invalid(
                            "authentication.type must be api_key, basic_auth or bearer_token",
                        ));
                    }
                    Some(auth.clone())
                }
                _ => return Err(invalid("authentication must be an object")),
            };
        }
        if let Some(headers) = input.get("custom_headers") {
            let map = headers
                .as_object()
                .ok_or_else(|| invalid("custom_headers must be an object"))?;
            self.custom_headers = map
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.clone(), v.to_owned()))
                        .ok_or_else(|| invalid("custom header values must be strings"))
                })
                .collect::<Result<_, _>>()?;
        }

        if self.name.trim().is_empty() {
            return Err(invalid("name is required"));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(invalid("endpoint must be an http(s) URL"));
        }
        if !["active", "inactive"].contains(&self.status.as_str()) {
            return Err(invalid("status must be active or inactive"));
        }
        if !METHODS.contains(&self.http_method.as_str()) {
            return Err(invalid("http_method is not valid"));
        }
        if !FORMATS.contains(&self.request_format.as_str()) {
            return Err(invalid("request_format is not valid"));
        }
        if self.subscriptions.is_empty() {
            return Err(invalid("subscriptions is required"));
        }
        if self.subscriptions.iter().any(|s| s == CONDITIONAL) {
            if self.subscriptions.len() != 1 {
                return Err(invalid(
                    "conditional_ticket_events cannot be combined with event types",
                ));
            }
        } else {
            if let Some(bad) = self
                .subscriptions
                .iter()
                .find(|s| !s.starts_with("zen:event-type:"))
            {
                return Err(invalid(format!("{bad} is not a valid subscription")));
            }
            if self.http_method != "POST" || self.request_format != "json" {
                return Err(invalid(
                    "event subscriptions require http_method POST and request_format json",
                ));
            }
        }
        Ok(self)
    }

    pub(crate) fn json(&self) -> Value {
        // The secret and credentials are write-only, as in Zendesk.
        let authentication = self.authentication.as_ref().map(|a| {
            json!({"type": a.get("type"), "add_position": a.get("add_position").cloned().unwrap_or(json!("header"))})
        });
        json!({
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "status": self.status,
            "subscriptions": self.subscriptions,
            "http_method": self.http_method,
            "request_format": self.request_format,
            "authentication": authentication,
            "custom_headers": self.custom_headers.keys().map(|k| (k.clone(), json!("*****"))).collect::<Map<_, _>>(),
            "signing_secret": null,
            "created_by": self.created_by.to_string(),
            "updated_by": self.created_by.to_string(),
            "created_at": iso8601(self.created_at),
            "updated_at": iso8601(self.updated_at),
        })
    }

    /// A fresh webhook with defaults, before the create body is applied.
    pub(crate) fn blank(id: String, secret: String, created_by: u64, now: i64) -> Self {
        Self {
            id,
            name: String::new(),
            endpoint: String::new(),
            status: "active".into(),
            subscriptions: Vec::new(),
            http_method: "POST".into(),
            request_format: "json".into(),
            authentication: None,
            custom_headers: BTreeMap::new(),
            signing_secret: secret,
            created_by,
            created_at: now,
            updated_at: now,
        }
    }

    pub(crate) fn wants(&self, event_type: &str) -> bool {
        self.status == "active" && self.subscriptions.iter().any(|s| s == event_type)
    }
}

/// Everything one delivery task needs, detached from the store.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub webhook_id: String,
    pub endpoint: String,
    pub secret: String,
    pub authentication: Option<Value>,
    pub custom_headers: BTreeMap<String, String>,
    pub account_id: u64,
    pub invocation_id: String,
    pub event_type: String,
    pub ticket_id: u64,
    pub timestamp: String,
    pub body: String,
}

/// The event-subscription envelope Zendesk posts for `notice`.
pub(crate) fn payload(account_id: u64, event_id: &str, notice: &Notice, now_ms: i64) -> Value {
    json!({
        "account_id": account_id,
        "id": event_id,
        "subject": format!("zen:ticket:{}", notice.ticket_id),
        "time": iso8601_ms(now_ms),
        "type": notice.event_type,
        "zendesk_event_version": "2022-11-06",
        "detail": notice.detail,
        "event": notice.event,
    })
}

/// `base64(HMAC-SHA256(secret, timestamp + body))`, as Zendesk signs webhook requests.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Delivery policy knobs, copied from the config when a job is dispatched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub delay: Duration,
    pub timeout: Duration,
}

fn should_retry(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s == 409 || s == 429 || s >= 500,
    }
}

/// Posts one job, retrying on transport errors, 409, 429 and 5xx, and records the outcome.
pub(crate) async fn deliver(
    client: reqwest::Client,
    job: Job,
    policy: RetryPolicy,
    log: Arc<Mutex<Vec<WebhookDelivery>>>,
) {
    let signature = sign(&job.secret, &job.timestamp, job.body.as_bytes());
    let index = {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(WebhookDelivery {
            webhook_id: job.webhook_id.clone(),
            invocation_id: job.invocation_id.clone(),
            event_type: job.event_type.clone(),
            ticket_id: job.ticket_id,
            attempts: 0,
            last_status: None,
            delivered: false,
        });
        log.len() - 1
    };
    for attempt in 0..=policy.max_retries {
        if attempt > 0 {
            tokio::time::sleep(policy.delay * attempt).await;
        }
        let mut request = client
            .post(&job.endpoint)
            .timeout(policy.timeout)
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "Zendesk Webhook")
            .header("x-zendesk-account-id", job.account_id.to_string())
            .header("x-zendesk-webhook-id", &job.webhook_id)
            .header("x-zendesk-webhook-invocation-id", &job.invocation_id)
            .header("x-zendesk-webhook-signature", &signature)
            .header("x-zendesk-webhook-signature-timestamp", &job.timestamp);
        for (name, value) in &job.custom_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = add_authentication(request, job.authentication.as_ref());
        let status = match request.body(job.body.clone()).send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(error) => {
                tracing::debug!(webhook = %job.webhook_id, %error, "webhook delivery failed");
                None
            }
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = log.get_mut(index) {
                entry.attempts = attempt + 1;
                entry.last_status = status;
                entry.delivered = delivered;
            }
        }
        if delivered || !should_retry(status) {
            return;
        }
    }
}

fn add_authentication(
    request: reqwest::RequestBuilder,
    auth: Option<&Value>,
) -> reqwest::RequestBuilder {
    let Some(auth) = auth else {
        return request;
    };
    let data = auth.get("data");
    let field = |name: &str| {
        data.and_then(|d| d.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match auth.get("type").and_then(Value::as_str) {
        Some("api_key") => {
            let name = field("name");
            if name.is_empty() {
                request
            } else {
                request.header(name.as_str(), field("value"))
            }
        }
        Some("basic_auth") => request.basic_auth(field("username"), Some(field("password"))),
        Some("bearer_token") => request.bearer_auth(field("token")),
        _ => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_hmac_of_timestamp_and_body() {
        // Reference value computed independently (Python's hmac module).
        let sig = sign("secret", "2024-01-01T00:00:00Z", b"{}");
        assert_eq!(sig, "YI9gyI/qRuEv/iS5IsFrpJtrEg9LxRWL2hEkFimh/rg=");
        assert_ne!(sig, sign("secret", "2024-01-01T00:00:01Z", b"{}"));
    }

    #[test]
    fn event_subscriptions_require_post_json() {
        let blank = Webhook::blank("w".into(), "s".into(), 1, 0);
        let input = json!({"name": "n", "endpoint": "http://x/y", "http_method": "GET",
            "subscriptions": ["zen:event-type:ticket.comment_added"]});
        let Value::Object(map) = input else {
            unreachable!()
        };
        assert!(blank.clone().apply(&map, true).is_err());
        let input = json!({"name": "n", "endpoint": "http://x/y",
            "subscriptions": ["zen:event-type:ticket.comment_added"]});
        let Value::Object(map) = input else {
            unreachable!()
        };
        assert!(blank
            .apply(&map, true)
            .is_ok_and(|w| w.wants("zen:event-type:ticket.comment_added")));
    }
}
