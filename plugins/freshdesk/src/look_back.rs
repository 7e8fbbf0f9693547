//! Recognizing what an earlier, unconfirmed attempt filed. Freshdesk has no idempotency key,
//! so when the hub says an earlier create or comment may have taken effect, the plugin reads
//! the requester's recent tickets or the ticket's conversations and compares them with what
//! it would send now.
//!
//! Nothing here calls the host; `account.rs` lists and decides with [`LookBack`] which records
//! are recent enough and not already the hub's.
//!
//! [`LookBack`]: switchboard_plugin_sdk::helpdesk::LookBack

use serde_json::Value;
use switchboard_plugin_sdk::helpdesk::LookBack;
use switchboard_plugin_sdk::text::{html_to_text, same_text};

use crate::api::{is_hub_ticket, Conversation, Ticket};

/// Conversation sources (Freshdesk's codes): a reply and a note.
pub const SOURCE_REPLY: u64 = 0;
pub const SOURCE_NOTE: u64 = 2;

/// The readable text of a record: Freshdesk's plain-text copy, else the HTML's text.
fn readable(text: Option<&str>, html: Option<&str>) -> Option<String> {
    text.map(str::to_string).or_else(|| html.map(html_to_text))
}

/// The ticket a create would file, from the body it would POST.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTicket {
    pub requester_id: u64,
    pub subject: String,
    /// The description's text.
    pub description: String,
    /// The custom field holding the hub's external id, and its value, when one is written.
    pub external_id: Option<(String, String)>,
}

impl ExpectedTicket {
    /// What `body` (the plugin's `POST /tickets` body) files.
    pub fn of(body: &Value) -> Option<Self> {
        let external_id = body
            .get("custom_fields")
            .and_then(Value::as_object)
            .and_then(|fields| fields.iter().next())
            .and_then(|(field, value)| Some((field.clone(), value.as_str()?.to_string())));
        Some(Self {
            requester_id: body.get("requester_id")?.as_u64()?,
            subject: body.get("subject")?.as_str()?.to_string(),
            description: html_to_text(body.get("description")?.as_str()?),
            external_id,
        })
    }

    /// Whether `ticket` (listed with its description) has this content. Its age and id are
    /// the look-back's to judge.
    pub fn matches(&self, ticket: &Ticket) -> bool {
        let same_external_id = match &self.external_id {
            Some((field, value)) => ticket.external_id(Some(field)).as_deref() == Some(value),
            None => true,
        };
        let description = readable(
            ticket.description_text.as_deref(),
            ticket.description.as_deref(),
        );
        ticket.requester_id == Some(self.requester_id)
            && is_hub_ticket(ticket)
            && same_external_id
            && ticket
                .subject
                .as_deref()
                .is_some_and(|s| same_text(s, &self.subject))
            && description.is_some_and(|d| same_text(&d, &self.description))
    }
}

/// The conversation a reply or note would add.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedConversation {
    pub user_id: u64,
    pub private: bool,
    pub incoming: bool,
    pub source: u64,
    /// The text of the HTML body the plugin sends.
    pub text: String,
}

impl ExpectedConversation {
    /// Whether `conversation` has this author, kind and text. Its age and id are the
    /// look-back's to judge.
    pub fn matches(&self, conversation: &Conversation) -> bool {
        let text = readable(
            conversation.body_text.as_deref(),
            conversation.body.as_deref(),
        );
        conversation.user_id == Some(self.user_id)
            && conversation.private == self.private
            && conversation.incoming == self.incoming
            // Not every answer carries the source; where it does, a reply is not a note.
            && conversation.source.is_none_or(|s| s == self.source)
            && text.is_some_and(|t| same_text(&t, &self.text))
    }

    /// The newest of `conversations` (listed oldest first) that is this one and, with a
    /// look-back, that the earlier attempt may have added.
    pub fn newest_in(
        &self,
        conversations: &[Conversation],
        earlier: Option<LookBack<'_>>,
    ) -> Option<u64> {
        conversations
            .iter()
            .rev()
            .find(|c| {
                self.matches(c)
                    && earlier.is_none_or(|earlier| {
                        c.created_at_ms()
                            .is_some_and(|at| earlier.may_be(&c.id.to_string(), at))
                    })
            })
            .map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ticket(overrides: Value) -> Ticket {
        let mut v = json!({
            "id": 20, "status": 2, "requester_id": 5, "subject": "Order late",
            "description": "<div>My order is late<br>Order #12</div>",
            "description_text": "My order is late\nOrder #12",
            "created_at": "2015-08-24T11:59:05Z", "updated_at": "2015-08-24T11:59:05Z",
            "tags": ["switchboard", "telegram"],
            "custom_fields": {"cf_switchboard_id": "conv-1"}
        });
        if let (Some(v), Some(o)) = (v.as_object_mut(), overrides.as_object()) {
            for (key, value) in o {
                v.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(v).expect("ticket")
    }

    fn expected_ticket() -> ExpectedTicket {
        ExpectedTicket::of(&json!({
            "subject": "Order late",
            "description": "My order is late<br>Order #12",
            "requester_id": 5,
            "status": 2,
            "tags": ["switchboard", "telegram"],
            "custom_fields": {"cf_switchboard_id": "conv-1"},
        }))
        .expect("expected ticket")
    }

    #[test]
    fn a_ticket_matches_by_requester_subject_description_and_external_id() {
        let expected = expected_ticket();
        assert_eq!(
            expected.external_id,
            Some(("cf_switchboard_id".into(), "conv-1".into()))
        );
        assert!(expected.matches(&ticket(json!({}))));
        // Only the HTML: its text is compared.
        assert!(expected.matches(&ticket(json!({"description_text": null}))));
        for other in [
            json!({"requester_id": 6}),
            json!({"subject": "Order lost"}),
            json!({"description_text": "My order is late"}),
            json!({"custom_fields": {"cf_switchboard_id": "conv-2"}}),
            json!({"custom_fields": {}}),
            json!({"tags": ["billing"]}),
            // Listed without its description: nothing to compare, so not taken.
            json!({"description_text": null, "description": null}),
        ] {
            assert!(!expected.matches(&ticket(other.clone())), "{other}");
        }
        // No external id field configured: the rest decides.
        let plain = ExpectedTicket {
            external_id: None,
            ..expected
        };
        assert!(plain.matches(&ticket(json!({"custom_fields": {}}))));
        assert_eq!(ExpectedTicket::of(&json!({"subject": "x"})), None);
    }

    #[test]
    fn a_conversation_matches_by_author_kind_and_text() {
        let conversation = |overrides: Value| -> Conversation {
            let mut v = json!({
                "id": 7, "body": "<div>Any news?<br>It's &quot;urgent&quot;</div>",
                "body_text": "Any news?\nIt's \"urgent\"", "incoming": true, "private": false,
                "user_id": 5, "source": 2, "created_at": "2015-08-24T11:59:05Z"
            });
            if let (Some(v), Some(o)) = (v.as_object_mut(), overrides.as_object()) {
                for (key, value) in o {
                    v.insert(key.clone(), value.clone());
                }
            }
            serde_json::from_value(v).expect("conversation")
        };
        let expected = ExpectedConversation {
            user_id: 5,
            private: false,
            incoming: true,
            source: SOURCE_NOTE,
            text: html_to_text("Any news?<br>It's &quot;urgent&quot;"),
        };
        assert!(expected.matches(&conversation(json!({}))));
        assert!(expected.matches(&conversation(json!({"body_text": null}))));
        assert!(expected.matches(&conversation(json!({"source": null}))));
        for other in [
            json!({"user_id": 6}),
            json!({"private": true}),
            json!({"incoming": false}),
            json!({"source": 0}),
            json!({"body_text": "Any news?"}),
            json!({"body_text": null, "body": null}),
        ] {
            assert!(!expected.matches(&conversation(other.clone())), "{other}");
        }
    }
}
