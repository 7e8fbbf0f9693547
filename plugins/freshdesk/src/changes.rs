//! Turning a Freshdesk ticket and its conversations into the hub's [`TicketChange`]s.
//!
//! Polling and webhooks both read the ticket and its conversations from the API, so they
//! produce the same change ids and the hub files each change once:
//! - a conversation is `conversation:<id>`;
//! - a status is `status:<ticket_id>:<freshdesk status>:<ticket updated_at in ms>`.

use std::collections::HashMap;

use switchboard_plugin_sdk::helpdesk::{ChangeAuthor, ChangeKind, CommentChange, TicketChange};
use switchboard_plugin_sdk::prelude::*;

use switchboard_plugin_sdk::text::html_to_text;
use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

use crate::api::{Conversation, StatusMapping, Ticket};

pub fn conversation_change_id(conversation_id: u64) -> String {
    format!("conversation:{conversation_id}")
}

pub fn status_change_id(ticket_id: u64, status: u64, updated_at_ms: u64) -> String {
    format!("status:{ticket_id}:{status}:{updated_at_ms}")
}

/// True when a conversation was written by an agent: not the requester, and not marked as
/// coming from outside (`incoming`, which is how customer messages are filed).
pub fn by_agent(ticket: &Ticket, conversation: &Conversation) -> bool {
    !conversation.incoming
        && conversation.user_id.is_some()
        && conversation.user_id != ticket.requester_id
}

/// What the mapping needs besides the ticket.
pub struct Context<'a> {
    /// The API key's agent: their conversations are the hub's own echoes.
    pub integration_agent_id: Option<u64>,
    /// Names of the agents who wrote conversations, where known.
    pub agent_names: &'a HashMap<u64, String>,
    pub statuses: StatusMapping,
    /// The custom field holding the hub's external id.
    pub external_field: Option<&'a str>,
}

/// The changes of one ticket: each conversation (the hub drops those it has seen by change
/// id), then the current status. The description is the customer's first message, which the
/// hub filed itself, so it is not reported.
pub fn ticket_changes(
    ticket: &Ticket,
    conversations: &[Conversation],
    ctx: &Context<'_>,
) -> Vec<TicketChange> {
    let external_id = ticket.external_id(ctx.external_field);
    let ticket_id = ticket.id.to_string();
    let mut changes: Vec<TicketChange> = conversations
        .iter()
        .map(|c| {
            let is_agent = by_agent(ticket, c);
            TicketChange {
                change_id: conversation_change_id(c.id),
                ticket_id: ticket_id.clone(),
                external_id: external_id.clone(),
                author: c.user_id.map(|id| ChangeAuthor {
                    id: id.to_string(),
                    name: ctx.agent_names.get(&id).cloned(),
                    is_agent,
                }),
                is_echo: c.user_id.is_some() && c.user_id == ctx.integration_agent_id,
                at: c
                    .created_at
                    .as_deref()
                    .and_then(parse_iso8601_ms)
                    .unwrap_or(0),
                kind: ChangeKind::Comment(CommentChange {
                    comment_id: c.id.to_string(),
                    body: c
                        .body_text
                        .clone()
                        .or_else(|| c.body.as_deref().map(html_to_text))
                        .unwrap_or_default(),
                    visibility: Visibility::public_if(!c.private),
                    attachments: c.attachments.iter().map(Attachment::from).collect(),
                }),
            }
        })
        .collect();
    let updated_at = ticket.updated_at_ms().unwrap_or(0);
    changes.push(TicketChange {
        change_id: status_change_id(ticket.id, ticket.status, updated_at),
        ticket_id,
        external_id,
        // The ticket does not say who changed its status.
        author: None,
        is_echo: false,
        at: updated_at,
        kind: ChangeKind::Status(ctx.statuses.read(ticket.status)),
    });
    changes
}

/// The ticket a webhook body is about: `freshdesk_webhook.ticket_id` in the simple layout, or
/// a top-level `ticket_id` in a hand-written one. Freshdesk fills placeholders as text, so
/// the id may be a number or a numeric string.
pub fn webhook_ticket_id(body: &serde_json::Value) -> Option<u64> {
    let raw = body
        .get("freshdesk_webhook")
        .and_then(|inner| inner.get("ticket_id"))
        .or_else(|| body.get("ticket_id"))?;
    match raw {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::helpdesk::TicketStatus;

    fn ticket() -> Ticket {
        serde_json::from_value(serde_json::json!({
            "id": 20, "status": 3, "requester_id": 43000000005_u64,
            "updated_at": "2015-08-24T12:00:00Z", "tags": ["switchboard"],
            "custom_fields": {"cf_switchboard_id": "conv-1"}
        }))
        .expect("ticket")
    }

    fn conversations() -> Vec<Conversation> {
        serde_json::from_value(serde_json::json!([
            {"id": 1, "body": "<div>It ships today</div>", "body_text": "It ships today",
             "incoming": false, "private": false, "user_id": 43000000002_u64, "source": 0,
             "created_at": "2015-08-24T11:59:05Z",
             "attachments": [{"attachment_url": "https://cdn.example/a.pdf", "content_type": "application/pdf",
                              "name": "a.pdf", "size": 98}]},
            {"id": 2, "body": "<div>VIP &amp; urgent</div>", "incoming": false, "private": true,
             "user_id": 43000000001_u64, "source": 2, "created_at": "2015-08-24T11:59:06Z"},
            {"id": 3, "body_text": "Thanks", "incoming": true, "private": false,
             "user_id": 43000000005_u64, "source": 2, "created_at": "2015-08-24T11:59:07Z"}
        ]))
        .expect("conversations")
    }

    #[test]
    fn conversations_then_status() {
        let names = HashMap::from([(43_000_000_002, "Sam Agent".to_string())]);
        let ctx = Context {
            integration_agent_id: Some(43_000_000_001),
            agent_names: &names,
            statuses: StatusMapping::default(),
            external_field: Some("cf_switchboard_id"),
        };
        let changes = ticket_changes(&ticket(), &conversations(), &ctx);
        assert_eq!(changes.len(), 4);
        assert!(changes
            .iter()
            .all(|c| c.ticket_id == "20" && c.external_id.as_deref() == Some("conv-1")));

        let reply = &changes[0];
        assert_eq!(reply.change_id, "conversation:1");
        assert!(!reply.is_echo);
        assert_eq!(reply.at, 1_440_417_545_000);
        let author = reply.author.as_ref().expect("author");
        assert_eq!(
            (author.id.as_str(), author.name.as_deref(), author.is_agent),
            ("43000000002", Some("Sam Agent"), true)
        );
        assert!(matches!(&reply.kind, ChangeKind::Comment(c)
            if c.body == "It ships today" && c.visibility == Visibility::Public
               && c.attachments.len() == 1 && c.attachments[0].size_bytes == Some(98)));

        let note = &changes[1];
        assert!(note.is_echo, "written by the API key's agent");
        assert!(matches!(&note.kind, ChangeKind::Comment(c)
            if c.body == "VIP & urgent" && c.visibility == Visibility::Private));

        let customer = &changes[2];
        assert!(!customer.is_echo);
        assert!(customer.author.as_ref().is_some_and(|a| !a.is_agent));

        let status = &changes[3];
        assert_eq!(status.change_id, "status:20:3:1440417600000");
        assert!(matches!(
            status.kind,
            ChangeKind::Status(TicketStatus::Pending)
        ));
    }

    #[test]
    fn webhook_bodies_name_the_ticket() {
        use serde_json::json;
        assert_eq!(
            webhook_ticket_id(&json!({"freshdesk_webhook": {"ticket_id": 20}})),
            Some(20)
        );
        assert_eq!(webhook_ticket_id(&json!({"ticket_id": " 21 "})), Some(21));
        assert_eq!(
            webhook_ticket_id(&json!({"ticket_id": "{{ticket.id}}"})),
            None
        );
        assert_eq!(webhook_ticket_id(&json!({"freshdesk_webhook": {}})), None);
    }
}
