//! Zendesk Support API: response shapes, request bodies, value mappings and error mapping.
//!
//! Nothing here calls the host, so all of it is unit-tested natively; `lib.rs` sends.

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    NewTicket, RequesterRequest, TicketPriority, TicketState, TicketStatus,
};
use switchboard_plugin_sdk::http::{Response, Service};
use switchboard_plugin_sdk::ids::{numeric_id, Id};
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

/// Zendesk's API: its answers are checked with [`zendesk_error`].
pub const ZENDESK: Service = Service::new("Zendesk", zendesk_error);

/// How long to wait on a 429 that names no delay: Zendesk's limits are per minute.
const DEFAULT_RATE_LIMIT_WAIT_MS: u64 = 60_000;

/// A ticket as the REST API and the incremental export return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: Id,
    #[serde(default)]
    pub status: String,
    pub priority: Option<String>,
    pub external_id: Option<String>,
    pub updated_at: Option<String>,
    /// `None` when the response leaves tags out; see [`is_hub_ticket`].
    pub tags: Option<Vec<String>>,
    pub requester_id: Option<Id>,
    pub subject: Option<String>,
    pub created_at: Option<String>,
}

/// `{"ticket": ...}`, with the audit a `PUT` produces.
#[derive(Debug, Deserialize)]
pub struct TicketEnvelope {
    pub ticket: Ticket,
    pub audit: Option<Audit>,
}

#[derive(Debug, Deserialize)]
pub struct Audit {
    #[serde(default)]
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Deserialize)]
pub struct AuditEvent {
    pub id: Id,
    #[serde(rename = "type", default)]
    pub event_type: String,
}

impl TicketEnvelope {
    /// The id of the comment an update created, from its audit's `Comment` event.
    pub fn created_comment_id(&self) -> Option<String> {
        self.audit.as_ref().and_then(|audit| {
            audit
                .events
                .iter()
                .find(|event| event.event_type.ends_with("Comment"))
                .map(|event| event.id.0.clone())
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct UserEnvelope {
    pub user: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// `null` for the anonymous user `users/me` returns to unauthenticated calls.
    pub id: Option<Id>,
    pub name: Option<String>,
    /// `end-user`, `agent` or `admin`.
    pub role: Option<String>,
}

impl User {
    pub fn is_agent(&self) -> bool {
        matches!(self.role.as_deref(), Some("agent" | "admin"))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: Id,
    pub body: Option<String>,
    pub plain_body: Option<String>,
    #[serde(default = "default_true")]
    pub public: bool,
    pub author_id: Option<Id>,
    pub created_at: Option<String>,
    #[serde(default)]
    pub attachments: Vec<CommentAttachment>,
}

fn default_true() -> bool {
    true
}

impl Comment {
    pub fn created_at_ms(&self) -> Option<u64> {
        self.created_at.as_deref().and_then(parse_iso8601_ms)
    }

    pub fn is_by(&self, author_id: &str) -> bool {
        self.author_id.as_ref().is_some_and(|a| a.0 == author_id)
    }

    /// Creation order: Zendesk ids grow, so they settle comments made in the same second.
    pub fn order_key(&self) -> (Option<u64>, Option<u64>) {
        (self.created_at_ms(), self.id.0.parse::<u64>().ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommentAttachment {
    pub content_url: String,
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub size: Option<u64>,
}

impl From<&CommentAttachment> for Attachment {
    fn from(attachment: &CommentAttachment) -> Self {
        Attachment {
            url: attachment.content_url.clone(),
            content_type: attachment.content_type.clone(),
            name: attachment.file_name.clone(),
            size_bytes: attachment.size,
        }
    }
}

/// One page of `GET /tickets/{id}/comments`, cursor (`meta`/`links`) or offset (`next_page`)
/// paginated.
#[derive(Debug, Deserialize)]
pub struct CommentsPage {
    #[serde(default)]
    pub comments: Vec<Comment>,
    /// Sideloaded with `include=users`.
    #[serde(default)]
    pub users: Vec<User>,
    pub meta: Option<PageMeta>,
    pub links: Option<PageLinks>,
    pub next_page: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageMeta {
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
pub struct PageLinks {
    pub next: Option<String>,
}

impl CommentsPage {
    /// The URL of the next page, if there is one.
    pub fn next_url(&self) -> Option<&str> {
        next_url(&self.meta, &self.links, &self.next_page)
    }
}

/// One page of `GET /tickets` (here always filtered by `external_id`), cursor or offset
/// paginated.
#[derive(Debug, Deserialize)]
pub struct TicketsPage {
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    pub meta: Option<PageMeta>,
    pub links: Option<PageLinks>,
    pub next_page: Option<String>,
}

impl TicketsPage {
    /// The URL of the next page, if there is one.
    pub fn next_url(&self) -> Option<&str> {
        next_url(&self.meta, &self.links, &self.next_page)
    }
}

/// A list's next page: `links.next` while `meta.has_more` (cursor pagination), else
/// `next_page` (offset pagination).
fn next_url<'a>(
    meta: &Option<PageMeta>,
    links: &'a Option<PageLinks>,
    next_page: &'a Option<String>,
) -> Option<&'a str> {
    match meta {
        Some(meta) => meta
            .has_more
            .then(|| links.as_ref()?.next.as_deref())
            .flatten(),
        None => next_page.as_deref(),
    }
    .filter(|url| !url.is_empty())
}

/// One page of the cursor-based incremental ticket export.
#[derive(Debug, Deserialize)]
pub struct ExportPage {
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    pub after_cursor: Option<String>,
    #[serde(default)]
    pub end_of_stream: bool,
}

impl ExportPage {
    /// The tickets of this page whose changes the hub wants: created by the hub, not deleted,
    /// each once.
    pub fn hub_tickets(&self) -> Vec<&Ticket> {
        let mut seen = std::collections::HashSet::new();
        self.tickets
            .iter()
            .filter(|ticket| is_hub_ticket(ticket))
            .filter(|ticket| status_from_zendesk(&ticket.status).is_some())
            .filter(|ticket| seen.insert(ticket.id.0.as_str()))
            .collect()
    }

    /// Where the export continues (`after_cursor`) and whether more is waiting now.
    pub fn position(&self) -> (Option<String>, bool) {
        let after_cursor = self.after_cursor.clone().filter(|c| !c.is_empty());
        // Without a cursor to move on, polling again right away would read the same page.
        let has_more = !self.end_of_stream && after_cursor.is_some();
        (after_cursor, has_more)
    }
}

/// The poll cursor of the `ticket-changes` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportCursor {
    /// Zendesk's `after_cursor` of the last page read.
    pub after_cursor: String,
}

/// The tag the connector puts on every ticket it creates; polling looks only at those.
pub const HUB_TAG: &str = "switchboard";

/// True for tickets the hub created (tagged [`HUB_TAG`]). When a response leaves tags out,
/// the ticket is kept: the hub ignores changes to tickets it doesn't know anyway.
pub fn is_hub_ticket(ticket: &Ticket) -> bool {
    ticket
        .tags
        .as_ref()
        .is_none_or(|tags| tags.iter().any(|tag| tag == HUB_TAG))
}

/// Zendesk's status names onto the contract's. Tickets reported as deleted or scrubbed give
/// `None`; archived ones are closed ones moved to cold storage.
pub fn status_from_zendesk(status: &str) -> Option<TicketStatus> {
    Some(match status {
        "new" => TicketStatus::New,
        "open" => TicketStatus::Open,
        "pending" => TicketStatus::Pending,
        "hold" => TicketStatus::OnHold,
        "solved" => TicketStatus::Solved,
        "closed" | "archived" => TicketStatus::Closed,
        _ => return None,
    })
}

pub fn status_to_zendesk(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::OnHold => "hold",
        TicketStatus::Solved => "solved",
        TicketStatus::Closed => "closed",
    }
}

pub fn priority_from_zendesk(priority: &str) -> Option<TicketPriority> {
    Some(match priority {
        "low" => TicketPriority::Low,
        "normal" => TicketPriority::Normal,
        "high" => TicketPriority::High,
        "urgent" => TicketPriority::Urgent,
        _ => return None,
    })
}

pub fn priority_to_zendesk(priority: TicketPriority) -> &'static str {
    match priority {
        TicketPriority::Low => "low",
        TicketPriority::Normal => "normal",
        TicketPriority::High => "high",
        TicketPriority::Urgent => "urgent",
    }
}

impl Ticket {
    /// The ticket as the contract reports it.
    pub fn to_state(&self) -> Result<TicketState> {
        let status = status_from_zendesk(&self.status).ok_or_else(|| {
            ConnectorError::not_found(format!("ticket {} has status `{}`", self.id, self.status))
        })?;
        Ok(TicketState {
            id: self.id.0.clone(),
            status,
            priority: self.priority.as_deref().and_then(priority_from_zendesk),
            external_id: self.external_id.clone().filter(|id| !id.is_empty()),
            updated_at: self.updated_at_ms().unwrap_or(0),
        })
    }

    pub fn updated_at_ms(&self) -> Option<u64> {
        self.updated_at.as_deref().and_then(parse_iso8601_ms)
    }

    pub fn created_at_ms(&self) -> Option<u64> {
        self.created_at.as_deref().and_then(parse_iso8601_ms)
    }

    /// Creation order: Zendesk ids grow, so they settle tickets made in the same second.
    pub fn order_key(&self) -> (Option<u64>, Option<u64>) {
        (self.created_at_ms(), self.id.0.parse::<u64>().ok())
    }
}

/// A tag as Zendesk stores it: lower case, no spaces (Zendesk splits tags on whitespace).
pub fn normalize_tag(tag: &str) -> String {
    tag.trim()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: Option<serde_json::Value>,
    description: Option<String>,
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Maps an unsuccessful Zendesk response onto the error the host acts on, reading Zendesk's
/// error body where it says more than the status.
pub fn zendesk_error(response: &Response) -> ConnectorError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
    let error_name = parsed
        .as_ref()
        .and_then(|body| body.error.as_ref())
        .map(|error| match error {
            serde_json::Value::String(s) => s.clone(),
            // Some endpoints nest it: {"error": {"title": ..., "message": ...}}.
            other => other
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
        })
        .unwrap_or_default();
    let description = parsed
        .as_ref()
        .and_then(|body| body.description.clone())
        .unwrap_or_default();
    let message = format!("Zendesk {}: {error_name} {description}", response.status)
        .trim_end()
        .to_string();

    match response.status {
        401 => ConnectorError::unauthorized(format!(
            "Zendesk refused the credentials; check `email` and `api_token` ({message})"
        )),
        403 => ConnectorError::unauthorized(format!(
            "the Zendesk user lacks permission; incremental exports need an admin ({message})"
        )),
        429 => response.rate_limited(DEFAULT_RATE_LIMIT_WAIT_MS, message),
        // Concurrent writes to the same record; worth another try.
        409 => ConnectorError::transient(message),
        400 if error_name == "IdempotentRequestError" => ConnectorError::fatal(format!(
            "the idempotency key was used before with a different request ({message})"
        )),
        422 => {
            let details = parsed.as_ref().and_then(|body| body.details.as_ref());
            invalid_record_error(details, message)
        }
        _ => response.status_error(),
    }
}

/// A 422: a closed ticket, or the first field Zendesk complained about.
fn invalid_record_error(
    details: Option<&serde_json::Map<String, serde_json::Value>>,
    message: String,
) -> ConnectorError {
    let Some(details) = details.filter(|d| !d.is_empty()) else {
        return ConnectorError::invalid("request", message);
    };
    let descriptions = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|problems| {
                problems
                    .iter()
                    .filter_map(|p| p.get("description").and_then(|d| d.as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    // Zendesk's wording for an update of a closed ticket. Other messages can mention `closed`
    // too ("Status: closed is not valid for a new ticket") and are the request's fault.
    let closed = details.values().flat_map(descriptions).any(|d| {
        d.to_ascii_lowercase()
            .contains("closed prevents ticket update")
    });
    if closed {
        return ConnectorError::policy(
            "ticket-closed",
            format!("the ticket is closed and cannot be updated ({message})"),
        );
    }
    let (field, problems) = details
        .iter()
        .find(|(field, _)| field.as_str() != "base")
        .or_else(|| details.iter().next())
        .map(|(field, value)| (field.clone(), descriptions(value)))
        .unwrap_or_else(|| ("request".to_string(), Vec::new()));
    let detail = if problems.is_empty() {
        message
    } else {
        format!("{} ({message})", problems.join("; "))
    };
    ConnectorError::invalid(field, detail)
}

#[derive(Serialize)]
pub struct CommentBody {
    pub body: String,
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_id: Option<u64>,
}

/// The fields of a ticket update; absent ones are left alone by Zendesk.
#[derive(Serialize)]
pub struct TicketChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
}

impl TicketChanges {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.priority.is_none()
            && self.additional_tags.is_empty()
            && self.remove_tags.is_empty()
    }
}

pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut normalized: Vec<String> = Vec::new();
    for tag in tags.iter().map(|t| normalize_tag(t)) {
        if !tag.is_empty() && !normalized.contains(&tag) {
            normalized.push(tag);
        }
    }
    normalized
}

/// The body of `POST /users/create_or_update` for a requester: an end user keyed by the
/// hub's external id, named after the social identity.
pub fn requester_body(request: &RequesterRequest) -> serde_json::Value {
    let identity = &request.identity;
    let name = identity
        .display_name
        .as_deref()
        .or(identity.handle.as_deref())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(&request.external_id);
    json!({"user": {
        "name": name,
        "external_id": request.external_id,
        "role": "end-user",
        // Social users have no email; never mail them a verification link.
        "skip_verify_email": true,
    }})
}

/// The body of `POST /api/v2/tickets` for a new ticket.
pub fn new_ticket_body(ticket: &NewTicket) -> Result<serde_json::Value> {
    let requester_id = numeric_id("requester-id", &ticket.requester_id)?;
    let mut tags = vec![HUB_TAG.to_string()];
    tags.extend(normalize_tags(std::slice::from_ref(&ticket.channel)));
    tags.extend(normalize_tags(&ticket.tags));
    let tags = normalize_tags(&tags);
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        ticket.subject.clone()
    };
    let mut fields = json!({
        "subject": subject,
        "comment": CommentBody {
            body: text::with_attachment_links(&ticket.body, &ticket.attachments),
            public: ticket.visibility == Visibility::Public,
            author_id: Some(requester_id),
        },
        "requester_id": requester_id,
        "tags": tags,
    });
    if !ticket.external_id.is_empty() {
        fields["external_id"] = json!(ticket.external_id);
    }
    if let Some(priority) = ticket.priority {
        fields["priority"] = json!(priority_to_zendesk(priority));
    }
    if let Some(status) = ticket.status {
        fields["status"] = json!(status_to_zendesk(status));
    }
    Ok(json!({ "ticket": fields }))
}

/// The Zendesk identity type and value for a social identity, where Zendesk has one.
pub fn zendesk_identity(identity: &SocialIdentity) -> Option<(&'static str, String)> {
    match identity.network.as_str() {
        // Zendesk keys X users by screen name.
        "x" | "twitter" => identity.handle.clone().map(|handle| ("twitter", handle)),
        "facebook" => Some(("facebook", identity.external_id.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "telegram:5:42".into(),
            external_id: "telegram:5".into(),
            requester_id: "20".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["VIP customer".into(), "switchboard".into()],
            priority: Some(TicketPriority::High),
            status: Some(TicketStatus::New),
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    #[test]
    fn ticket_body_has_requester_comment_tags_and_values() {
        let body = new_ticket_body(&new_ticket()).expect("body");
        assert_eq!(
            body,
            json!({"ticket": {
                "subject": "Order late",
                "comment": {"body": "My order is late", "public": true, "author_id": 20},
                "requester_id": 20,
                "external_id": "telegram:5",
                "tags": ["switchboard", "telegram", "vip_customer"],
                "priority": "high",
                "status": "new",
            }})
        );
    }

    #[test]
    fn private_first_message_and_missing_subject() {
        let mut ticket = new_ticket();
        ticket.visibility = Visibility::Private;
        ticket.subject = " ".into();
        ticket.priority = None;
        ticket.status = None;
        let body = new_ticket_body(&ticket).expect("body");
        assert_eq!(body["ticket"]["comment"]["public"], false);
        assert_eq!(body["ticket"]["subject"], "My order is late");
        assert!(body["ticket"].get("priority").is_none());
        ticket.requester_id = "abc".into();
        assert!(matches!(
            new_ticket_body(&ticket),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn ticket_changes_serialize_only_what_changes() {
        let changes = TicketChanges {
            status: Some("hold"),
            priority: None,
            additional_tags: normalize_tags(&["Escalated".into(), "escalated".into()]),
            remove_tags: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&changes).expect("json"),
            json!({"status": "hold", "additional_tags": ["escalated"]})
        );
        assert!(TicketChanges {
            status: None,
            priority: None,
            additional_tags: Vec::new(),
            remove_tags: Vec::new()
        }
        .is_empty());
    }

    #[test]
    fn integration_comments_omit_the_author() {
        let body = serde_json::to_value(CommentBody {
            body: "note".into(),
            public: false,
            author_id: None,
        })
        .expect("json");
        assert_eq!(body, json!({"body": "note", "public": false}));
    }

    #[test]
    fn identities_exist_for_x_and_facebook_only() {
        let identity = |network: &str, handle: Option<&str>| SocialIdentity {
            external_id: "123".into(),
            network: network.into(),
            handle: handle.map(str::to_string),
            display_name: None,
        };
        assert_eq!(
            zendesk_identity(&identity("x", Some("acme"))),
            Some(("twitter", "acme".to_string()))
        );
        assert_eq!(
            zendesk_identity(&identity("facebook", None)),
            Some(("facebook", "123".to_string()))
        );
        assert_eq!(zendesk_identity(&identity("telegram", Some("a"))), None);
        assert_eq!(zendesk_identity(&identity("x", None)), None);
    }

    #[test]
    fn statuses_map_both_ways() {
        for status in TicketStatus::ALL {
            assert_eq!(status_from_zendesk(status_to_zendesk(status)), Some(status));
        }
        assert_eq!(status_to_zendesk(TicketStatus::OnHold), "hold");
        assert_eq!(status_from_zendesk("archived"), Some(TicketStatus::Closed));
        assert_eq!(status_from_zendesk("deleted"), None);
        for priority in TicketPriority::ALL {
            assert_eq!(
                priority_from_zendesk(priority_to_zendesk(priority)),
                Some(priority)
            );
        }
    }

    #[test]
    fn ticket_state_from_a_ticket() {
        let envelope: TicketEnvelope = serde_json::from_str(
            r#"{"ticket":{"id":35436,"status":"hold","priority":null,"external_id":"telegram:5:1",
                "updated_at":"2012-04-04T09:14:57Z","tags":["switchboard"]}}"#,
        )
        .expect("ticket");
        let state = envelope.ticket.to_state().expect("state");
        assert_eq!(state.id, "35436");
        assert_eq!(state.status, TicketStatus::OnHold);
        assert_eq!(state.priority, None);
        assert_eq!(state.external_id.as_deref(), Some("telegram:5:1"));
        assert_eq!(state.updated_at, 1_333_530_897_000);
    }

    #[test]
    fn comment_id_comes_from_the_audit() {
        let envelope: TicketEnvelope = serde_json::from_str(
            r#"{"ticket":{"id":1,"status":"open"},
                "audit":{"id":9,"events":[{"id":11,"type":"Change","field_name":"status"},
                                           {"id":12,"type":"Comment","body":"hi"}]}}"#,
        )
        .expect("envelope");
        assert_eq!(envelope.created_comment_id().as_deref(), Some("12"));
        let without: TicketEnvelope =
            serde_json::from_str(r#"{"ticket":{"id":1,"status":"open"}}"#).expect("envelope");
        assert_eq!(without.created_comment_id(), None);
    }

    #[test]
    fn comment_pages_follow_cursor_or_offset_links() {
        let cursor: CommentsPage = serde_json::from_str(
            r#"{"comments":[],"meta":{"has_more":true},"links":{"next":"https://x/next"}}"#,
        )
        .expect("page");
        assert_eq!(cursor.next_url(), Some("https://x/next"));
        let last: CommentsPage = serde_json::from_str(
            r#"{"comments":[],"meta":{"has_more":false},"links":{"next":"https://x/next"}}"#,
        )
        .expect("page");
        assert_eq!(last.next_url(), None);
        let offset: CommentsPage =
            serde_json::from_str(r#"{"comments":[],"next_page":"https://x/p2"}"#).expect("page");
        assert_eq!(offset.next_url(), Some("https://x/p2"));
    }

    #[test]
    fn export_pages_select_hub_tickets_and_know_where_to_continue() {
        let page: ExportPage = serde_json::from_value(serde_json::json!({
            "tickets": [
                {"id": 1, "status": "open", "tags": ["switchboard", "telegram"]},
                {"id": 2, "status": "open", "tags": ["billing"]},
                {"id": 3, "status": "deleted", "tags": ["switchboard"]},
                {"id": 1, "status": "open", "tags": ["switchboard", "telegram"]},
                {"id": 4, "status": "solved"}
            ],
            "after_cursor": "MTU3NjYxMzUzOS4wfHw0Njd8", "before_cursor": null,
            "end_of_stream": false
        }))
        .expect("page");
        let ids: Vec<&str> = page.hub_tickets().iter().map(|t| t.id.0.as_str()).collect();
        assert_eq!(ids, ["1", "4"]);
        assert_eq!(
            page.position(),
            (Some("MTU3NjYxMzUzOS4wfHw0Njd8".to_string()), true)
        );

        let last: ExportPage = serde_json::from_value(serde_json::json!(
            {"tickets": [], "after_cursor": "abc", "end_of_stream": true}))
        .expect("page");
        assert_eq!(last.position(), (Some("abc".to_string()), false));
        let stuck: ExportPage = serde_json::from_value(serde_json::json!(
            {"tickets": [], "after_cursor": null, "end_of_stream": false}))
        .expect("page");
        assert_eq!(stuck.position(), (None, false));
    }

    #[test]
    fn hub_tickets_are_recognised_by_tag() {
        let ticket = |tags: Option<&[&str]>| Ticket {
            id: Id("1".into()),
            status: "open".into(),
            priority: None,
            external_id: None,
            updated_at: None,
            tags: tags.map(|t| t.iter().map(|s| s.to_string()).collect()),
            requester_id: None,
            subject: None,
            created_at: None,
        };
        assert!(is_hub_ticket(&ticket(Some(&["telegram", "switchboard"]))));
        assert!(!is_hub_ticket(&ticket(Some(&["billing"]))));
        assert!(is_hub_ticket(&ticket(None)));
    }

    #[test]
    fn tags_and_bodies_are_prepared_for_zendesk() {
        assert_eq!(normalize_tag(" Telegram Business "), "telegram_business");
        assert_eq!(text::with_attachment_links("hi", &[]), "hi");
        let attachments = [Attachment {
            url: "tg-file:abc".into(),
            content_type: Some("image/jpeg".into()),
            name: None,
            size_bytes: Some(3),
        }];
        assert_eq!(
            text::with_attachment_links("see photo\n", &attachments),
            "see photo\n\nAttachments:\n- file: tg-file:abc"
        );
    }

    #[test]
    fn errors_are_refined_from_zendesk_bodies() {
        let closed = zendesk_error(&Response::new(
            422,
            &[],
            r#"{"error":"RecordInvalid","description":"Record validation errors",
                "details":{"status":[{"description":"Status: closed prevents ticket update"}]}}"#,
        ));
        assert!(matches!(closed, ConnectorError::Policy(p) if p.code == "ticket-closed"));

        let closed_on_create = zendesk_error(&Response::new(
            422,
            &[],
            r#"{"error":"RecordInvalid","description":"Record validation errors",
                "details":{"status":[{"description":"Status: closed is not valid for a new ticket"}]}}"#,
        ));
        assert!(matches!(
            closed_on_create,
            ConnectorError::InvalidInput(f) if f.field == "status"
        ));

        let invalid = zendesk_error(&Response::new(
            422,
            &[],
            r#"{"error":"RecordInvalid","description":"Record validation errors",
                "details":{"base":[{"description":"x"}],"priority":[{"description":"Priority: is invalid","error":"InvalidValue"}]}}"#,
        ));
        assert!(matches!(
            invalid,
            ConnectorError::InvalidInput(f) if f.field == "priority" && f.message.contains("is invalid")
        ));

        assert!(matches!(
            zendesk_error(&Response::new(
                409,
                &[],
                r#"{"error":"DatabaseConflict","description":"Database collision"}"#
            )),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            zendesk_error(&Response::new(
                400,
                &[],
                r#"{"error":"IdempotentRequestError","description":"Request parameters don't match the given idempotency key"}"#
            )),
            ConnectorError::Fatal(_)
        ));
        assert!(matches!(
            zendesk_error(&Response::new(400, &[], "Bad request")),
            ConnectorError::InvalidInput(_)
        ));
        assert!(matches!(
            zendesk_error(&Response::new(
                401,
                &[],
                r#"{"error":"Couldn't authenticate you"}"#
            )),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            zendesk_error(&Response::new(429, &[("retry-after", "41")], r#"{"error":"RateLimited"}"#)),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 41_000
        ));
        assert!(matches!(
            zendesk_error(&Response::new(
                404,
                &[],
                r#"{"error":"RecordNotFound","description":"Not found"}"#
            )),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            zendesk_error(&Response::new(503, &[], "")),
            ConnectorError::Transient(_)
        ));
    }
}
