//! Turning what Zendesk reports (exported tickets with their comments, event webhooks) into the
//! hub's [`TicketChange`]s.
//!
//! Change ids are built the same way from both sources, so a change seen by a webhook and again
//! by polling is deduplicated by the hub:
//! - a comment is `comment:<comment_id>`;
//! - a status is `status:<ticket_id>:<zendesk status>:<ticket updated_at in ms>`;
//! - a priority is `priority:<ticket_id>:<zendesk priority>:<ticket updated_at in ms>`.

use std::collections::HashMap;

use serde::Deserialize;
use switchboard_plugin_sdk::helpdesk::{ChangeAuthor, ChangeKind, CommentChange, TicketChange};
use switchboard_plugin_sdk::prelude::*;

use switchboard_plugin_sdk::ids::Id;
use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

use crate::api::{priority_from_zendesk, status_from_zendesk, Comment, Ticket, User};

pub fn comment_change_id(comment_id: &str) -> String {
    format!("comment:{comment_id}")
}

pub fn status_change_id(ticket_id: &str, status: &str, updated_at_ms: u64) -> String {
    format!("status:{ticket_id}:{status}:{updated_at_ms}")
}

pub fn priority_change_id(ticket_id: &str, priority: &str, updated_at_ms: u64) -> String {
    format!("priority:{ticket_id}:{priority}:{updated_at_ms}")
}

/// The changes of one exported ticket: each of its comments (the hub drops the ones it has
/// seen by change id), then its current status.
///
/// `users` are the sideloaded comment authors; `integration_user_id` is the token owner,
/// whose comments are the hub's own echoes.
pub fn ticket_changes(
    ticket: &Ticket,
    comments: &[Comment],
    users: &[User],
    integration_user_id: Option<&str>,
) -> Vec<TicketChange> {
    let users_by_id: HashMap<&str, &User> = users
        .iter()
        .filter_map(|user| Some((user.id.as_ref()?.0.as_str(), user)))
        .collect();
    let external_id = ticket.external_id.clone().filter(|id| !id.is_empty());
    let mut changes: Vec<TicketChange> = comments
        .iter()
        .map(|comment| {
            let author = comment.author_id.as_ref().map(|author_id| {
                let user = users_by_id.get(author_id.0.as_str());
                ChangeAuthor {
                    id: author_id.0.clone(),
                    name: user.and_then(|u| u.name.clone()),
                    // Without the sideloaded user, anyone but the requester is staff.
                    is_agent: match user {
                        Some(user) => user.is_agent(),
                        None => ticket.requester_id.as_ref() != Some(author_id),
                    },
                }
            });
            TicketChange {
                change_id: comment_change_id(&comment.id.0),
                ticket_id: ticket.id.0.clone(),
                external_id: external_id.clone(),
                is_echo: is_integration(comment.author_id.as_ref(), integration_user_id),
                author,
                at: comment
                    .created_at
                    .as_deref()
                    .and_then(parse_iso8601_ms)
                    .unwrap_or(0),
                kind: ChangeKind::Comment(CommentChange {
                    comment_id: comment.id.0.clone(),
                    body: comment
                        .body
                        .clone()
                        .or_else(|| comment.plain_body.clone())
                        .unwrap_or_default(),
                    visibility: Visibility::public_if(comment.public),
                    attachments: comment.attachments.iter().map(Attachment::from).collect(),
                }),
            }
        })
        .collect();

    if let Some(status) = status_from_zendesk(&ticket.status) {
        let updated_at = ticket.updated_at_ms().unwrap_or(0);
        changes.push(TicketChange {
            change_id: status_change_id(&ticket.id.0, &ticket.status, updated_at),
            ticket_id: ticket.id.0.clone(),
            external_id,
            // The export does not say who changed the status.
            author: None,
            is_echo: false,
            at: updated_at,
            kind: ChangeKind::Status(status),
        });
    }
    changes
}

fn is_integration(author_id: Option<&Id>, integration_user_id: Option<&str>) -> bool {
    matches!((author_id, integration_user_id), (Some(a), Some(i)) if a.0 == i)
}

/// A Zendesk event webhook payload (`zen:event-type:ticket.*`).
#[derive(Debug, Deserialize)]
pub struct WebhookEvent {
    #[serde(rename = "type", default)]
    pub event_type: String,
    /// `zen:ticket:<id>`.
    pub subject: Option<String>,
    /// When the event happened (ISO-8601).
    pub time: Option<String>,
    /// The ticket as it was after the event.
    pub detail: Option<EventTicket>,
    pub event: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct EventTicket {
    pub id: Option<Id>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub external_id: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventComment {
    id: Id,
    #[serde(default)]
    body: String,
    #[serde(default = "default_true")]
    is_public: bool,
    author: Option<EventAuthor>,
    #[serde(default)]
    attachments: Vec<crate::api::CommentAttachment>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct EventAuthor {
    id: Id,
    #[serde(default)]
    is_staff: bool,
    name: Option<String>,
}

/// The event types that carry a change for the hub.
pub const COMMENT_ADDED: &str = "zen:event-type:ticket.comment_added";
pub const STATUS_CHANGED: &str = "zen:event-type:ticket.status_changed";
pub const PRIORITY_CHANGED: &str = "zen:event-type:ticket.priority_changed";

impl WebhookEvent {
    /// True when mapping the event needs the integration user's id (to flag echoes).
    pub fn needs_integration_user(&self) -> bool {
        self.event_type == COMMENT_ADDED
    }

    fn ticket_id(&self) -> Option<String> {
        self.detail
            .as_ref()
            .and_then(|d| d.id.as_ref())
            .map(|id| id.0.clone())
            .or_else(|| {
                self.subject
                    .as_deref()?
                    .strip_prefix("zen:ticket:")
                    .map(str::to_string)
            })
    }
}

/// Maps one event webhook onto changes. Event types the hub has no use for give none;
/// `received_at_ms` stands in for a missing event time.
pub fn webhook_changes(
    event: &WebhookEvent,
    integration_user_id: Option<&str>,
    received_at_ms: u64,
) -> Result<Vec<TicketChange>> {
    let relevant = [COMMENT_ADDED, STATUS_CHANGED, PRIORITY_CHANGED];
    if !relevant.contains(&event.event_type.as_str()) {
        return Ok(Vec::new());
    }
    let ticket_id = event
        .ticket_id()
        .ok_or_else(|| ConnectorError::invalid("body", "the event names no ticket"))?;
    let detail = event.detail.as_ref();
    let external_id = detail
        .and_then(|d| d.external_id.clone())
        .filter(|id| !id.is_empty());
    let at = event
        .time
        .as_deref()
        .and_then(parse_iso8601_ms)
        .unwrap_or(received_at_ms);
    let ticket_updated_at = detail
        .and_then(|d| d.updated_at.as_deref())
        .and_then(parse_iso8601_ms)
        .unwrap_or(at);
    // `event` holds the details: {"comment": {...}} or {"current": ..., "previous": ...}.
    let details = event.event.as_ref();
    let current = |field: &str| -> Option<String> {
        details
            .and_then(|e| e.get("current"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| {
                let d = detail?;
                match field {
                    "status" => d.status.clone(),
                    _ => d.priority.clone(),
                }
            })
            .map(|v| v.to_ascii_lowercase())
    };

    if event.event_type == COMMENT_ADDED {
        let raw = details
            .and_then(|e| e.get("comment"))
            .ok_or_else(|| ConnectorError::invalid("body", "comment_added without comment"))?;
        let comment = EventComment::deserialize(raw)
            .map_err(|err| ConnectorError::invalid("body", format!("bad comment: {err}")))?;
        let author_id = comment.author.as_ref().map(|a| a.id.clone());
        return Ok(vec![TicketChange {
            change_id: comment_change_id(&comment.id.0),
            ticket_id,
            external_id,
            is_echo: is_integration(author_id.as_ref(), integration_user_id),
            author: comment.author.as_ref().map(|a| ChangeAuthor {
                id: a.id.0.clone(),
                name: a.name.clone(),
                is_agent: a.is_staff,
            }),
            at,
            kind: ChangeKind::Comment(CommentChange {
                comment_id: comment.id.0.clone(),
                body: comment.body.clone(),
                visibility: Visibility::public_if(comment.is_public),
                attachments: comment.attachments.iter().map(Attachment::from).collect(),
            }),
        }]);
    }
    // The new value, as the change id names it and as the contract does.
    let raw = if event.event_type == STATUS_CHANGED {
        current("status")
    } else {
        current("priority")
    }
    .unwrap_or_default();
    let (change_id, kind) = if event.event_type == STATUS_CHANGED {
        let kind = status_from_zendesk(&raw).map(ChangeKind::Status);
        (status_change_id(&ticket_id, &raw, ticket_updated_at), kind)
    } else {
        let kind = priority_from_zendesk(&raw).map(ChangeKind::Priority);
        (
            priority_change_id(&ticket_id, &raw, ticket_updated_at),
            kind,
        )
    };
    // A deleted or scrubbed ticket, a status the contract has no name for, or a priority
    // cleared (the contract has no "none" change): nothing to report.
    let Some(kind) = kind else {
        return Ok(Vec::new());
    };
    Ok(vec![TicketChange {
        change_id,
        ticket_id,
        external_id,
        author: None,
        is_echo: false,
        at,
        kind,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};

    use crate::api::CommentsPage;

    fn ticket() -> Ticket {
        serde_json::from_value(serde_json::json!({
            "id": 35436, "status": "pending", "external_id": "telegram:5",
            "updated_at": "2024-05-01T10:00:00Z", "requester_id": 20, "tags": ["switchboard"]
        }))
        .expect("ticket")
    }

    fn event(json: serde_json::Value) -> WebhookEvent {
        serde_json::from_value(json).expect("event")
    }

    #[test]
    fn exported_ticket_gives_comments_then_status() {
        let page: CommentsPage = serde_json::from_value(serde_json::json!({
            "comments": [
                {"id": 100, "body": "My order is late", "public": true, "author_id": 20,
                 "created_at": "2024-05-01T09:00:00Z", "attachments": []},
                {"id": 101, "body": "Checking with the warehouse", "public": false,
                 "author_id": 30, "created_at": "2024-05-01T09:30:00Z"},
                {"id": 102, "body": "It ships today", "public": true, "author_id": 30,
                 "created_at": "2024-05-01T09:45:00Z",
                 "attachments": [{"content_url": "https://acme.zendesk.com/attachments/token/x/?name=a.pdf",
                                  "content_type": "application/pdf", "file_name": "a.pdf", "size": 10}]},
                {"id": 103, "body": "Sent to the customer", "public": false, "author_id": 40,
                 "created_at": "2024-05-01T09:50:00Z"}
            ],
            "users": [
                {"id": 20, "name": "Aiko", "role": "end-user"},
                {"id": 30, "name": "Agent Smith", "role": "agent"}
            ],
            "meta": {"has_more": false}
        }))
        .expect("page");
        let changes = ticket_changes(&ticket(), &page.comments, &page.users, Some("40"));
        assert_eq!(changes.len(), 5);

        let customer = &changes[0];
        assert_eq!(customer.change_id, "comment:100");
        assert_eq!(customer.ticket_id, "35436");
        assert_eq!(customer.external_id.as_deref(), Some("telegram:5"));
        let author = customer.author.as_ref().expect("author");
        assert_eq!(author.name.as_deref(), Some("Aiko"));
        assert!(!author.is_agent);
        assert!(!customer.is_echo);

        let note = &changes[1];
        assert!(note.author.as_ref().is_some_and(|a| a.is_agent));
        assert!(matches!(&note.kind,
            ChangeKind::Comment(c) if c.visibility == Visibility::Private && c.body == "Checking with the warehouse"));

        let reply = &changes[2];
        assert_eq!(reply.at, 1_714_556_700_000);
        assert!(matches!(&reply.kind,
            ChangeKind::Comment(c) if c.visibility == Visibility::Public
                && c.attachments.len() == 1 && c.attachments[0].name.as_deref() == Some("a.pdf")));

        // Authored by the token owner, not sideloaded: an echo, and staff.
        let echo = &changes[3];
        assert!(echo.is_echo);
        assert!(echo.author.as_ref().is_some_and(|a| a.is_agent));

        let status = &changes[4];
        assert_eq!(status.change_id, "status:35436:pending:1714557600000");
        assert!(matches!(
            status.kind,
            ChangeKind::Status(TicketStatus::Pending)
        ));
        assert_eq!(status.at, 1_714_557_600_000);
    }

    #[test]
    fn comment_added_webhook_matches_the_polled_change_id() {
        let changes = webhook_changes(
            &event(serde_json::json!({
                "account_id": 1, "id": "2b7e", "subject": "zen:ticket:35436",
                "time": "2024-05-01T09:45:00Z", "type": "zen:event-type:ticket.comment_added",
                "zendesk_event_version": "2022-11-06",
                "detail": {"id": "35436", "status": "OPEN", "external_id": "telegram:5",
                           "updated_at": "2024-05-01T09:45:00Z"},
                "event": {"comment": {"id": "102", "body": "It ships today", "is_public": true,
                          "author": {"id": "30", "is_staff": true, "name": "Agent Smith"}}}
            })),
            Some("40"),
            0,
        )
        .expect("changes");
        assert_eq!(changes.len(), 1);
        let change = &changes[0];
        assert_eq!(change.change_id, "comment:102");
        assert_eq!(change.ticket_id, "35436");
        assert_eq!(change.at, 1_714_556_700_000);
        assert!(!change.is_echo);
        assert!(change
            .author
            .as_ref()
            .is_some_and(|a| a.is_agent && a.id == "30"));
        assert!(matches!(&change.kind,
            ChangeKind::Comment(c) if c.body == "It ships today" && c.visibility == Visibility::Public));
    }

    #[test]
    fn own_comments_in_webhooks_are_echoes() {
        let changes = webhook_changes(
            &event(serde_json::json!({
                "type": "zen:event-type:ticket.comment_added", "subject": "zen:ticket:7",
                "event": {"comment": {"id": 9, "body": "note", "is_public": false,
                          "author": {"id": 40, "is_staff": true}}}
            })),
            Some("40"),
            5_000,
        )
        .expect("changes");
        assert!(changes[0].is_echo);
        assert_eq!(changes[0].ticket_id, "7");
        assert_eq!(changes[0].at, 5_000);
    }

    #[test]
    fn status_changed_webhook_matches_the_polled_change_id() {
        let changes = webhook_changes(
            &event(serde_json::json!({
                "type": "zen:event-type:ticket.status_changed", "subject": "zen:ticket:35436",
                "time": "2024-05-01T10:00:01Z",
                "detail": {"id": "35436", "status": "PENDING", "updated_at": "2024-05-01T10:00:00Z"},
                "event": {"current": "PENDING", "previous": "OPEN"}
            })),
            None,
            0,
        )
        .expect("changes");
        assert_eq!(changes[0].change_id, "status:35436:pending:1714557600000");
        assert!(matches!(
            changes[0].kind,
            ChangeKind::Status(TicketStatus::Pending)
        ));
    }

    #[test]
    fn priority_changes_and_other_events() {
        let changes = webhook_changes(
            &event(serde_json::json!({
                "type": "zen:event-type:ticket.priority_changed", "subject": "zen:ticket:1",
                "detail": {"id": 1, "updated_at": "2024-05-01T10:00:00Z"},
                "event": {"current": "URGENT", "previous": null}
            })),
            None,
            0,
        )
        .expect("changes");
        assert!(matches!(
            changes[0].kind,
            ChangeKind::Priority(TicketPriority::Urgent)
        ));
        assert_eq!(changes[0].change_id, "priority:1:urgent:1714557600000");

        let tags = webhook_changes(
            &event(
                serde_json::json!({"type": "zen:event-type:ticket.tags_changed",
                                      "subject": "zen:ticket:1"}),
            ),
            None,
            0,
        )
        .expect("changes");
        assert!(tags.is_empty());

        let no_ticket = webhook_changes(
            &event(serde_json::json!({"type": "zen:event-type:ticket.status_changed"})),
            None,
            0,
        );
        assert!(matches!(no_ticket, Err(ConnectorError::InvalidInput(f)) if f.field == "body"));
    }
}
