//! WhatsApp Business Cloud API for one business phone number: inbound messages with contacts
//! (`wa_id` and the business-scoped `user_id`), `POST /{phone-number-id}/messages` with the
//! 24-hour customer-service window, templates, read receipts, and status callbacks that can
//! arrive out of order and twice.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::GraphError;
use super::model::{Event, Store, DAY_MS};

/// Longest text body.
const MAX_BODY: usize = 4096;

/// A person on WhatsApp.
#[derive(Debug, Clone)]
pub(crate) struct Contact {
    /// Business-scoped user id (`US.…`): always present.
    pub user_id: String,
    /// Phone number as digits; withheld for some username users.
    pub wa_id: Option<String>,
    pub name: String,
    /// The last inbound message: the customer-service window runs from here.
    pub last_inbound_ms: Option<i64>,
    /// The last business message, for the pair rate limit.
    pub last_outbound_ms: Option<i64>,
}

/// A message the business sent, for tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WhatsAppSent {
    pub id: String,
    /// The contact's `user_id`.
    pub user_id: String,
    /// `text`, `template`, …
    pub kind: String,
    pub text: Option<String>,
    pub template: Option<String>,
    /// The status the simulator reported last (`sent`, `delivered`, `read`, `failed`).
    pub status: String,
    pub timestamp: i64,
}

#[derive(Debug, Default)]
pub(crate) struct WhatsApp {
    pub contacts: Vec<Contact>,
    pub sent: Vec<WhatsAppSent>,
    next: u64,
}

impl WhatsApp {
    fn wamid(&mut self) -> String {
        self.next += 1;
        format!("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz{:016X}AA==", self.next)
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.contacts
            .iter()
            .position(|c| c.user_id == id || c.wa_id.as_deref() == Some(id))
    }
}

/// A parsed control request: a customer's WhatsApp message.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct WhatsAppInbound {
    /// Phone number digits; new contacts get one unless `hide_phone`.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// Business-scoped user id; generated for new contacts.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// Another message type with its object (`{"type":"location","location":{…}}`).
    #[serde(default)]
    pub message: Option<Value>,
    /// Leave the phone number out of this webhook (a username user).
    #[serde(default)]
    pub hide_phone: bool,
    /// Click-to-WhatsApp ad context.
    #[serde(default)]
    pub referral: Option<Value>,
}

fn wa_error(code: u32, title: &str, details: &str) -> GraphError {
    let mut e = GraphError::new(code, None, format!("({code}) {title}"));
    e.error_data = Some(json!({"messaging_product": "whatsapp", "details": details}));
    e
}

impl Store {
    fn wa_metadata(&self) -> Value {
        json!({
            "display_phone_number": self.config.display_phone_number,
            "phone_number_id": self.config.phone_number_id,
        })
    }

    fn wa_event(&mut self, value: Value) {
        self.outbox.push(Event::WhatsApp { value });
    }

    /// The customer writes to the business number. Returns (wamid, user_id, wa_id).
    pub fn wa_inbound(
        &mut self,
        m: WhatsAppInbound,
        now_ms: i64,
    ) -> (String, String, Option<String>) {
        let known = m
            .user_id
            .as_deref()
            .or(m.wa_id.as_deref())
            .and_then(|id| self.whatsapp.find(id));
        let index = match known {
            Some(i) => i,
            None => {
                let n = self.whatsapp.contacts.len() as u64 + 1;
                let wa_id = match (&m.wa_id, m.hide_phone) {
                    (Some(w), _) => Some(w.clone()),
                    (None, true) => None,
                    (None, false) => Some(format!("1650555{:04}", n)),
                };
                self.whatsapp.contacts.push(Contact {
                    user_id: m
                        .user_id
                        .clone()
                        .unwrap_or_else(|| format!("US.{}", 13_491_208_655_302_741_000 + n)),
                    wa_id,
                    name: m.name.clone().unwrap_or_else(|| "WhatsApp Customer".into()),
                    last_inbound_ms: None,
                    last_outbound_ms: None,
                });
                self.whatsapp.contacts.len() - 1
            }
        };
        if let Some(name) = &m.name {
            self.whatsapp.contacts[index].name = name.clone();
        }
        self.whatsapp.contacts[index].last_inbound_ms = Some(now_ms);
        let contact = self.whatsapp.contacts[index].clone();
        let shown_phone = if m.hide_phone {
            None
        } else {
            contact.wa_id.clone()
        };
        let id = self.whatsapp.wamid();
        let mut message = json!({
            "from": shown_phone.clone().unwrap_or_else(|| contact.user_id.clone()),
            "id": id,
            "timestamp": now_ms.div_euclid(1000).to_string(),
        });
        match (&m.message, &m.text) {
            (Some(Value::Object(obj)), _) => {
                for (k, v) in obj {
                    message[k] = v.clone();
                }
            }
            (_, Some(text)) => {
                message["type"] = json!("text");
                message["text"] = json!({"body": text});
            }
            _ => message["type"] = json!("unsupported"),
        }
        if let Some(referral) = m.referral {
            message["referral"] = referral;
        }
        let mut contact_json =
            json!({"profile": {"name": contact.name}, "user_id": contact.user_id});
        if let Some(wa_id) = &shown_phone {
            contact_json["wa_id"] = json!(wa_id);
        }
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": self.wa_metadata(),
            "contacts": [contact_json],
            "messages": [message],
        });
        self.wa_event(value);
        (id, contact.user_id, contact.wa_id)
    }

    /// `POST /{phone-number-id}/messages`.
    pub fn wa_send(
        &mut self,
        params: &BTreeMap<String, Value>,
        now_ms: i64,
    ) -> Result<Value, GraphError> {
        let text = |k: &str| params.get(k).and_then(Value::as_str);
        if text("messaging_product") != Some("whatsapp") {
            return Err(wa_error(
                100,
                "Invalid parameter",
                "Param messaging_product must be whatsapp",
            ));
        }
        if text("status") == Some("read") {
            let id = text("message_id").unwrap_or_default();
            return Ok(json!({"success": !id.is_empty()}));
        }
        let to = text("to")
            .ok_or_else(|| wa_error(100, "Invalid parameter", "The parameter to is required."))?;
        let kind = text("type").unwrap_or("text").to_owned();
        let (body, template) = match kind.as_str() {
            "text" => {
                let body = params
                    .get("text")
                    .and_then(|t| t.get("body"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| wa_error(100, "Invalid parameter", "text.body is required"))?;
                if body.chars().count() > MAX_BODY {
                    return Err(wa_error(
                        100,
                        "Invalid parameter",
                        "Param text['body'] must be at most 4096 characters long.",
                    ));
                }
                (Some(body.to_owned()), None)
            }
            "template" => {
                let name = params
                    .get("template")
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !self.config.whatsapp_templates.iter().any(|t| t == name) {
                    return Err(wa_error(
                        132_001,
                        "Template name does not exist in the translation",
                        &format!("template name ({name}) does not exist in the translation"),
                    ));
                }
                (None, Some(name.to_owned()))
            }
            other => {
                return Err(wa_error(
                    100,
                    "Invalid parameter",
                    &format!("The simulator does not send messages of type {other}"),
                ))
            }
        };
        let index = self.whatsapp.find(to);
        if let (Some(i), Some(interval)) = (index, self.config.whatsapp_pair_interval) {
            let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            if self.whatsapp.contacts[i]
                .last_outbound_ms
                .is_some_and(|at| now_ms - at < interval_ms)
            {
                return Err(wa_error(
                    131_056,
                    "(Business Account, Consumer Account) pair rate limit hit",
                    "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
                ));
            }
        }
        let id = self.whatsapp.wamid();
        let Some(i) = index else {
            // Accepted, then undeliverable: Cloud API answers 200 and fails asynchronously.
            self.wa_statuses(&id, to, &[("failed", Some(wa_failure(131_026)))], now_ms);
            return Ok(self.wa_accepted(to, to, &id));
        };
        let contact = self.whatsapp.contacts[i].clone();
        self.whatsapp.contacts[i].last_outbound_ms = Some(now_ms);
        let recipient = contact
            .wa_id
            .clone()
            .unwrap_or_else(|| contact.user_id.clone());
        let open = contact
            .last_inbound_ms
            .is_some_and(|at| now_ms - at <= DAY_MS);
        let status = if template.is_none() && !open {
            self.wa_statuses(
                &id,
                &recipient,
                &[("failed", Some(wa_failure(131_047)))],
                now_ms,
            );
            "failed"
        } else if self.config.whatsapp_shuffle_statuses {
            // Out of order and duplicated, as Cloud API sometimes delivers them.
            self.wa_statuses(
                &id,
                &recipient,
                &[("delivered", None), ("sent", None), ("delivered", None)],
                now_ms,
            );
            "delivered"
        } else {
            self.wa_statuses(
                &id,
                &recipient,
                &[("sent", None), ("delivered", None)],
                now_ms,
            );
            "delivered"
        };
        self.whatsapp.sent.push(WhatsAppSent {
            id: id.clone(),
            user_id: contact.user_id,
            kind,
            text: body,
            template,
            status: status.into(),
            timestamp: now_ms,
        });
        Ok(self.wa_accepted(to, &recipient, &id))
    }

    fn wa_accepted(&self, input: &str, wa_id: &str, id: &str) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": input, "wa_id": wa_id}],
            "messages": [{"id": id}],
        })
    }

    /// One webhook with these statuses of message `id`, in this order.
    pub fn wa_statuses(
        &mut self,
        id: &str,
        recipient: &str,
        statuses: &[(&str, Option<Value>)],
        now_ms: i64,
    ) {
        let list: Vec<Value> = statuses
            .iter()
            .map(|(status, error)| {
                let mut s = json!({
                    "id": id,
                    "status": status,
                    "timestamp": now_ms.div_euclid(1000).to_string(),
                    "recipient_id": recipient,
                });
                if *status != "failed" && *status != "read" {
                    s["conversation"] =
                        json!({"id": "CONVERSATION_ID", "origin": {"type": "service"}});
                    s["pricing"] =
                        json!({"billable": true, "pricing_model": "PMP", "category": "service"});
                }
                if let Some(error) = error {
                    s["errors"] = json!([error]);
                }
                s
            })
            .collect();
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": self.wa_metadata(),
            "statuses": list,
        });
        self.wa_event(value);
    }

    /// Statuses of a message the business sent, for the control API. `Err` names what is
    /// unknown.
    pub fn wa_control_statuses(
        &mut self,
        id: &str,
        statuses: &[String],
        now_ms: i64,
    ) -> Result<(), String> {
        let sent = self
            .whatsapp
            .sent
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| format!("no sent WhatsApp message {id}"))?;
        let contact = self
            .whatsapp
            .find(&sent.user_id)
            .map(|i| self.whatsapp.contacts[i].clone())
            .ok_or_else(|| format!("no contact {}", sent.user_id))?;
        let recipient = contact.wa_id.unwrap_or(contact.user_id);
        let mut list = Vec::new();
        for s in statuses {
            let error = match s.as_str() {
                "sent" | "delivered" | "read" => None,
                "failed" => Some(wa_failure(131_026)),
                other => return Err(format!("unknown status {other}")),
            };
            list.push((s.as_str(), error));
        }
        self.wa_statuses(id, &recipient, &list, now_ms);
        Ok(())
    }
}

/// The `errors[]` item of a failed status.
fn wa_failure(code: u32) -> Value {
    let (title, details) = match code {
        131_047 => (
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        _ => ("Message undeliverable", "Unable to deliver message."),
    };
    json!({
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Config;

    fn send(to: &str, body: &str) -> BTreeMap<String, Value> {
        serde_json::from_value(json!({
            "messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}
        }))
        .expect("params")
    }

    fn statuses(store: &Store) -> Vec<(String, Option<u64>)> {
        store
            .outbox
            .iter()
            .filter_map(|e| match e {
                Event::WhatsApp { value } => value.get("statuses").cloned(),
                _ => None,
            })
            .flat_map(|s| s.as_array().cloned().unwrap_or_default())
            .map(|s| {
                (
                    s["status"].as_str().unwrap_or_default().to_owned(),
                    s["errors"][0]["code"].as_u64(),
                )
            })
            .collect()
    }

    #[test]
    fn the_window_is_24_hours_from_the_last_inbound_message() {
        let mut s = Store::new(Config::default());
        let (_, user_id, wa_id) = s.wa_inbound(
            WhatsAppInbound {
                text: Some("hi".into()),
                ..WhatsAppInbound::default()
            },
            0,
        );
        let wa_id = wa_id.expect("phone");
        s.wa_send(&send(&wa_id, "inside"), DAY_MS)
            .expect("accepted");
        s.wa_send(&send(&user_id, "outside"), DAY_MS + 1)
            .expect("accepted, then failed");
        assert_eq!(statuses(&s)[2..], [("failed".to_owned(), Some(131_047))]);
        assert_eq!(s.whatsapp.sent[1].status, "failed");
    }

    #[test]
    fn the_pair_rate_limit_refuses_quick_repeats() {
        let mut s = Store::new(Config::default());
        s.config.whatsapp_pair_interval = Some(std::time::Duration::from_secs(6));
        let (_, user_id, _) = s.wa_inbound(
            WhatsAppInbound {
                text: Some("hi".into()),
                ..WhatsAppInbound::default()
            },
            0,
        );
        s.wa_send(&send(&user_id, "one"), 0).expect("first");
        let e = s
            .wa_send(&send(&user_id, "two"), 1000)
            .expect_err("too soon");
        assert_eq!(e.code, 131_056);
        assert_eq!(
            e.body()["error"]["error_data"]["messaging_product"],
            "whatsapp"
        );
        assert!(s.wa_send(&send(&user_id, "three"), 6000).is_ok());
    }
}
