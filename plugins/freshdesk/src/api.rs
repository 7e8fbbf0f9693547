//! Freshdesk API v2: response shapes, request bodies, value mappings and error mapping.
//!
//! Nothing here calls the host, so all of it is unit-tested natively; `lib.rs` sends.

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{NewTicket, TicketPriority, TicketState, TicketStatus};
use switchboard_plugin_sdk::http::{Response, Service};
use switchboard_plugin_sdk::ids::numeric_id;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::text::{escape_html, html_to_text, text_to_html};
use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

use crate::look_back::{ExpectedConversation, SOURCE_NOTE};

/// Freshdesk's API: its answers are checked with [`freshdesk_error`].
pub const FRESHDESK: Service = Service::new("Freshdesk", freshdesk_error);

/// How long to wait on a 429 that names no delay: Freshdesk's limits are per minute.
const DEFAULT_RATE_LIMIT_WAIT_MS: u64 = 60_000;
/// Freshdesk refuses longer tags.
pub const TAG_MAX_CHARS: usize = 32;
/// Contact names longer than this are refused.
pub const NAME_MAX_CHARS: usize = 255;

/// The tag every ticket the connector creates carries; polling looks only at those.
pub const HUB_TAG: &str = "switchboard";

/// Freshdesk's statuses (custom ones start at 6).
pub const OPEN: u64 = 2;
pub const PENDING: u64 = 3;
pub const RESOLVED: u64 = 4;
pub const CLOSED: u64 = 5;

/// A ticket as `GET /tickets/{id}` and the ticket list return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: u64,
    pub status: u64,
    pub priority: Option<u64>,
    pub requester_id: Option<u64>,
    pub subject: Option<String>,
    /// HTML; the list has it only with `include=description`.
    pub description: Option<String>,
    pub description_text: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// `None` when the response leaves tags out; see [`is_hub_ticket`].
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

impl Ticket {
    pub fn updated_at_ms(&self) -> Option<u64> {
        self.updated_at.as_deref().and_then(parse_iso8601_ms)
    }

    pub fn created_at_ms(&self) -> Option<u64> {
        self.created_at.as_deref().and_then(parse_iso8601_ms)
    }

    /// The hub's external id, kept in the custom field named by `field` (when configured).
    pub fn external_id(&self, field: Option<&str>) -> Option<String> {
        let value = self.custom_fields.get(field?)?.as_str()?;
        (!value.is_empty()).then(|| value.to_string())
    }

    /// The ticket as the contract reports it.
    pub fn to_state(&self, mapping: &StatusMapping, external_field: Option<&str>) -> TicketState {
        TicketState {
            id: self.id.to_string(),
            status: mapping.read(self.status),
            priority: self.priority.and_then(priority_from_freshdesk),
            external_id: self.external_id(external_field),
            updated_at: self.updated_at_ms().unwrap_or(0),
        }
    }
}

/// True for tickets the hub created (tagged [`HUB_TAG`]). When a response leaves tags out,
/// the ticket is kept: the hub ignores changes to tickets it doesn't know anyway.
pub fn is_hub_ticket(ticket: &Ticket) -> bool {
    ticket
        .tags
        .as_ref()
        .is_none_or(|tags| tags.iter().any(|t| t.eq_ignore_ascii_case(HUB_TAG)))
}

/// A reply or note, as `GET /tickets/{id}/conversations` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    pub id: u64,
    /// HTML.
    pub body: Option<String>,
    pub body_text: Option<String>,
    #[serde(default)]
    pub incoming: bool,
    #[serde(default)]
    pub private: bool,
    pub user_id: Option<u64>,
    /// Reply 0, note 2, and others for channels' messages.
    pub source: Option<u64>,
    pub created_at: Option<String>,
    #[serde(default)]
    pub attachments: Vec<ConversationAttachment>,
}

impl Conversation {
    pub fn created_at_ms(&self) -> Option<u64> {
        self.created_at.as_deref().and_then(parse_iso8601_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConversationAttachment {
    pub attachment_url: String,
    pub content_type: Option<String>,
    pub name: Option<String>,
    /// Freshdesk writes `size` in conversations and `file_size` on tickets.
    #[serde(alias = "file_size")]
    pub size: Option<u64>,
}

impl From<&ConversationAttachment> for Attachment {
    fn from(a: &ConversationAttachment) -> Self {
        Attachment {
            url: a.attachment_url.clone(),
            content_type: a.content_type.clone(),
            name: a.name.clone(),
            size_bytes: a.size,
        }
    }
}

/// The answer of `POST /tickets/{id}/reply` and `/notes`: only the id matters.
#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: u64,
    pub unique_external_id: Option<String>,
}

/// `GET /api/v2/search/contacts`.
#[derive(Debug, Deserialize)]
pub struct ContactSearch {
    #[serde(default)]
    pub results: Vec<Contact>,
}

/// `GET /api/v2/agents/{id}` and `/agents/me`.
#[derive(Debug, Deserialize)]
pub struct Agent {
    pub id: u64,
    pub contact: Option<AgentContact>,
}

#[derive(Debug, Deserialize)]
pub struct AgentContact {
    pub name: Option<String>,
}

/// How Freshdesk's numeric statuses map onto the contract's.
///
/// Open 2, Pending 3, Resolved 4 and Closed 5 are fixed. Freshdesk has no on-hold status:
/// accounts add custom ones (6 and up, such as "Waiting on Third Party"). `on_hold` names the
/// one to use; without it on-hold is written as Pending. Any other custom status reads as
/// on-hold: the ticket waits on something, and is neither open nor done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusMapping {
    pub on_hold: Option<u64>,
}

impl StatusMapping {
    /// A Freshdesk status as the contract names it.
    pub fn read(&self, status: u64) -> TicketStatus {
        match status {
            OPEN => TicketStatus::Open,
            PENDING => TicketStatus::Pending,
            RESOLVED => TicketStatus::Solved,
            CLOSED => TicketStatus::Closed,
            _ => TicketStatus::OnHold,
        }
    }

    /// The Freshdesk status to write for a contract status.
    pub fn write(&self, status: TicketStatus) -> u64 {
        match status {
            TicketStatus::New | TicketStatus::Open => OPEN,
            TicketStatus::Pending => PENDING,
            TicketStatus::OnHold => self.on_hold.unwrap_or(PENDING),
            TicketStatus::Solved => RESOLVED,
            TicketStatus::Closed => CLOSED,
        }
    }
}

pub fn priority_from_freshdesk(priority: u64) -> Option<TicketPriority> {
    Some(match priority {
        1 => TicketPriority::Low,
        2 => TicketPriority::Normal,
        3 => TicketPriority::High,
        4 => TicketPriority::Urgent,
        _ => return None,
    })
}

pub fn priority_to_freshdesk(priority: TicketPriority) -> u64 {
    match priority {
        TicketPriority::Low => 1,
        TicketPriority::Normal => 2,
        TicketPriority::High => 3,
        TicketPriority::Urgent => 4,
    }
}

/// A tag as Freshdesk takes it: no commas, at most 32 characters.
pub fn clean_tag(tag: &str) -> String {
    let tag = tag.replace(',', " ");
    let tag = tag.split_whitespace().collect::<Vec<_>>().join(" ");
    tag.chars()
        .take(TAG_MAX_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Cleans tags and drops empty and repeated ones (Freshdesk compares them case-insensitively).
pub fn clean_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags.into_iter().map(clean_tag) {
        if !tag.is_empty() && !out.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
            out.push(tag);
        }
    }
    out
}

/// Plain text as the HTML Freshdesk stores, with the attachments listed as links after it.
///
/// Freshdesk attaches files only from multipart uploads, and the hub passes attachments as
/// links it never downloads, so the agent gets the links instead.
pub fn html_body(text: &str, attachments: &[Attachment]) -> String {
    let mut html = text_to_html(text);
    if !attachments.is_empty() {
        html.push_str("<br><br>Attachments:");
        for a in attachments {
            let name = escape_html(a.name.as_deref().unwrap_or("file"));
            let url = escape_html(&a.url);
            html.push_str(&format!("<br>- {name}: <a href=\"{url}\">{url}</a>"));
        }
    }
    html
}

/// One entry of Freshdesk's `errors` list.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: String,
    pub additional_info: Option<serde_json::Value>,
}

impl FieldError {
    /// The user holding a duplicate value, which Freshdesk names in `additional_info`.
    pub fn holder(&self) -> Option<u64> {
        self.additional_info.as_ref()?.get("user_id")?.as_u64()
    }
}

/// Both of Freshdesk's error bodies: `{"code","message"}` and
/// `{"description","errors":[...]}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

impl ErrorBody {
    pub fn of(response: &Response) -> Self {
        serde_json::from_slice(&response.body).unwrap_or_default()
    }

    /// The first duplicate-value error, if the answer is a uniqueness clash.
    pub fn duplicate(&self) -> Option<&FieldError> {
        self.errors.iter().find(|e| e.code == "duplicate_value")
    }

    fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(code) = &self.code {
            parts.push(code.clone());
        }
        if let Some(message) = self.message.as_ref().or(self.description.as_ref()) {
            parts.push(message.clone());
        }
        for e in &self.errors {
            parts.push(format!("{}: {} ({})", e.field, e.message, e.code));
        }
        parts.join("; ")
    }
}

/// Maps an unsuccessful Freshdesk answer onto the error the host acts on.
pub fn freshdesk_error(response: &Response) -> ConnectorError {
    let body = ErrorBody::of(response);
    let message = format!("Freshdesk {}: {}", response.status, body.summary())
        .trim_end_matches([' ', ':'])
        .to_string();
    match response.status {
        401 => ConnectorError::unauthorized(format!(
            "Freshdesk refused the API key; check `api_key` ({message})"
        )),
        403 => ConnectorError::unauthorized(format!(
            "the API key's agent may not do this, or the account lacks the feature ({message})"
        )),
        404 => ConnectorError::not_found(message),
        // Spam or deleted tickets (and contacts) refuse changes.
        405 => ConnectorError::not_found(format!(
            "the record is spam, deleted or blocked ({message})"
        )),
        429 => response.rate_limited(DEFAULT_RATE_LIMIT_WAIT_MS, message),
        // A field Freshdesk refused, or a clash with an existing record: not worth retrying.
        400 | 409 => match body.errors.first() {
            Some(first) if !first.field.is_empty() => {
                ConnectorError::invalid(first.field.clone(), message)
            }
            _ => ConnectorError::invalid("request", message),
        },
        // Content type or Accept header: the request itself is wrong.
        406 | 415 => ConnectorError::fatal(message),
        _ => response.status_error(),
    }
}

/// The poll cursor of the `ticket-changes` stream: list tickets updated at or after `since`
/// (Unix seconds), from `page` of that listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    pub since: u64,
    pub page: u32,
}

/// Where the next poll starts, from what one page of the listing showed.
///
/// `last` is the newest `updated_at` (seconds) on the page, `more` whether a `Link` to a next
/// page came back, `server_now` Freshdesk's clock from its `Date` header.
///
/// The listing is keyset-paged on `updated_since`, so tickets that change while the hub pages
/// through cannot shift others past it. The boundary second is read again on the next poll
/// (the hub drops repeated changes by id) unless Freshdesk's clock shows it is over, since a
/// ticket can still change within it. Only when a whole page shares one second does the
/// cursor move by page number instead.
pub fn next_cursor(
    cursor: &PollCursor,
    last: Option<u64>,
    more: bool,
    server_now: Option<u64>,
) -> (PollCursor, bool) {
    if more {
        return match last {
            Some(last) if last > cursor.since => (
                PollCursor {
                    since: last,
                    page: 1,
                },
                true,
            ),
            _ => (
                PollCursor {
                    since: cursor.since,
                    page: cursor.page.saturating_add(1),
                },
                true,
            ),
        };
    }
    let boundary = last.unwrap_or(cursor.since).max(cursor.since);
    let finished = server_now.is_some_and(|now| boundary < now);
    let since = if finished && (last.is_some() || cursor.page > 1) {
        boundary + 1
    } else {
        boundary
    };
    (PollCursor { since, page: 1 }, false)
}

/// The body of `POST /api/v2/tickets`.
///
/// `source` is the source number new tickets get, `statuses` how statuses are written, and
/// `external_id_field` the custom field that keeps the hub's external id, when there is one.
pub fn new_ticket_body(
    ticket: &NewTicket,
    source: u64,
    statuses: &StatusMapping,
    external_id_field: Option<&str>,
) -> Result<serde_json::Value> {
    let requester_id = numeric_id("requester-id", &ticket.requester_id)?;
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        ticket.subject.clone()
    };
    let subject = if subject.trim().is_empty() {
        format!("Message from {}", ticket.channel)
    } else {
        subject
    };
    let description = match ticket.visibility {
        Visibility::Public => html_body(&ticket.body, &ticket.attachments),
        Visibility::Private => html_body(
            &format!(
                "A private message from {}; its text is in the private note below.",
                ticket.channel
            ),
            &[],
        ),
    };
    let tags = clean_tags(
        [HUB_TAG, ticket.channel.as_str()]
            .into_iter()
            .chain(ticket.tags.iter().map(String::as_str)),
    );
    let mut body = json!({
        "subject": subject.chars().take(255).collect::<String>(),
        "description": description,
        "requester_id": requester_id,
        "status": statuses.write(ticket.status.unwrap_or(
            switchboard_plugin_sdk::helpdesk::TicketStatus::Open,
        )),
        "priority": priority_to_freshdesk(ticket.priority.unwrap_or(
            switchboard_plugin_sdk::helpdesk::TicketPriority::Low,
        )),
        "source": source,
        "tags": tags,
    });
    if let Some(field) = external_id_field {
        if !ticket.external_id.is_empty() {
            body["custom_fields"] = json!({ field.trim(): ticket.external_id });
        }
    }
    Ok(body)
}

/// `current` minus `remove`, plus `add`, compared case-insensitively as Freshdesk does.
pub fn merged_tags(current: &[String], add: &[String], remove: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = current
        .iter()
        .filter(|t| !remove.iter().any(|r| r.eq_ignore_ascii_case(t)))
        .cloned()
        .collect();
    for tag in add {
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.clone());
        }
    }
    tags
}

/// The contact name: the display name, else the handle, else the external id.
pub fn contact_name(identity: &SocialIdentity, external_id: &str) -> String {
    let name = [identity.display_name.as_deref(), identity.handle.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or(external_id);
    name.chars().take(NAME_MAX_CHARS).collect()
}

/// The X user id, which Freshdesk keeps as `twitter_id` since 2020.
pub fn twitter_id(identity: &SocialIdentity) -> Option<String> {
    matches!(identity.network.as_str(), "x" | "twitter")
        .then(|| identity.external_id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// The private incoming note a private first message goes into, and how to recognize it.
pub fn first_note(ticket: &NewTicket) -> Result<(serde_json::Value, ExpectedConversation)> {
    let requester = numeric_id("requester-id", &ticket.requester_id)?;
    let body = html_body(&ticket.body, &ticket.attachments);
    let expected = ExpectedConversation {
        user_id: requester,
        private: true,
        incoming: true,
        source: SOURCE_NOTE,
        text: html_to_text(&body),
    };
    let note = json!({"body": body, "private": true, "incoming": true, "user_id": requester});
    Ok((note, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(extra: &[(&str, &str)]) -> Context {
        let mut settings = vec![("domain", "acme"), ("api_key", "k")];
        settings.extend_from_slice(extra);
        Context::new("i", settings)
    }

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "ticket:1".into(),
            external_id: "conv-1".into(),
            requester_id: "43000000005".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["VIP customer".into(), "switchboard".into()],
            priority: Some(TicketPriority::High),
            status: None,
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    /// The body `create_ticket` posts for an installation with these settings.
    fn body_for(ctx: &Context, ticket: &NewTicket) -> Result<serde_json::Value> {
        let account = crate::account::Account::of(ctx)?;
        new_ticket_body(
            ticket,
            account.source,
            &account.statuses,
            account.external_id_field.as_deref(),
        )
    }

    #[test]
    fn ticket_body_is_flat_with_requester_source_and_tags() {
        let body = body_for(&ctx(&[]), &new_ticket()).expect("body");
        assert_eq!(
            body,
            json!({
                "subject": "Order late",
                "description": "My order is late",
                "requester_id": 43000000005_u64,
                "status": 2,
                "priority": 3,
                "source": 7,
                "tags": ["switchboard", "telegram", "VIP customer"],
            })
        );
        let mut ticket = new_ticket();
        ticket.subject = " ".into();
        ticket.status = Some(TicketStatus::OnHold);
        ticket.priority = None;
        let body = body_for(
            &ctx(&[
                ("source", "101"),
                ("on_hold_status", "7"),
                ("external_id_field", "cf_switchboard_id"),
            ]),
            &ticket,
        )
        .expect("body");
        assert_eq!(body["subject"], "My order is late");
        assert_eq!((&body["status"], &body["priority"]), (&json!(7), &json!(1)));
        assert_eq!(body["source"], 101);
        assert_eq!(
            body["custom_fields"],
            json!({"cf_switchboard_id": "conv-1"})
        );

        ticket.visibility = Visibility::Private;
        let body = body_for(&ctx(&[]), &ticket).expect("body");
        assert!(!body["description"]
            .as_str()
            .expect("description")
            .contains("late"));
        for (key, value) in [("source", "chat"), ("on_hold_status", "3")] {
            assert!(matches!(
                body_for(&ctx(&[(key, value)]), &new_ticket()),
                Err(ConnectorError::InvalidInput(f)) if f.field == key
            ));
        }
        ticket.requester_id = "aiko".into();
        assert!(matches!(
            body_for(&ctx(&[]), &ticket),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn tags_merge_case_insensitively() {
        let current = vec!["switchboard".to_string(), "Telegram".to_string()];
        assert_eq!(
            merged_tags(
                &current,
                &["vip".into(), "SWITCHBOARD".into()],
                &["telegram".into()]
            ),
            vec!["switchboard".to_string(), "vip".to_string()]
        );
    }

    #[test]
    fn contact_names_and_twitter_ids() {
        let identity = |network: &str, name: Option<&str>, handle: Option<&str>| SocialIdentity {
            external_id: "99".into(),
            network: network.into(),
            handle: handle.map(str::to_string),
            display_name: name.map(str::to_string),
        };
        assert_eq!(
            contact_name(&identity("x", Some("Fan"), None), "x:99"),
            "Fan"
        );
        assert_eq!(
            contact_name(&identity("x", Some(" "), Some("fan")), "x:99"),
            "fan"
        );
        assert_eq!(contact_name(&identity("x", None, None), "x:99"), "x:99");
        assert_eq!(
            twitter_id(&identity("x", None, None)).as_deref(),
            Some("99")
        );
        assert_eq!(
            twitter_id(&identity("twitter", None, None)).as_deref(),
            Some("99")
        );
        assert_eq!(twitter_id(&identity("telegram", None, None)), None);
    }

    #[test]
    fn statuses_and_priorities_map_both_ways() {
        let plain = StatusMapping::default();
        for status in [
            TicketStatus::Open,
            TicketStatus::Pending,
            TicketStatus::Solved,
            TicketStatus::Closed,
        ] {
            assert_eq!(plain.read(plain.write(status)), status);
        }
        assert_eq!(plain.write(TicketStatus::New), 2);
        assert_eq!(plain.write(TicketStatus::OnHold), 3);
        assert_eq!(plain.read(7), TicketStatus::OnHold);
        let custom = StatusMapping { on_hold: Some(7) };
        assert_eq!(custom.write(TicketStatus::OnHold), 7);
        assert_eq!(custom.read(7), TicketStatus::OnHold);
        for priority in TicketPriority::ALL {
            assert_eq!(
                priority_from_freshdesk(priority_to_freshdesk(priority)),
                Some(priority)
            );
        }
        assert_eq!(priority_from_freshdesk(9), None);
    }

    #[test]
    fn ticket_state_and_external_id() {
        let ticket: Ticket = serde_json::from_str(
            r#"{"id": 20, "status": 6, "priority": 3, "requester_id": 43000000005,
                "updated_at": "2015-08-24T11:59:05Z", "tags": ["switchboard"],
                "custom_fields": {"cf_switchboard_id": "conv-1", "category": null}}"#,
        )
        .expect("ticket");
        let state = ticket.to_state(&StatusMapping::default(), Some("cf_switchboard_id"));
        assert_eq!(state.id, "20");
        assert_eq!(state.status, TicketStatus::OnHold);
        assert_eq!(state.priority, Some(TicketPriority::High));
        assert_eq!(state.external_id.as_deref(), Some("conv-1"));
        assert_eq!(state.updated_at, 1_440_417_545_000);
        assert_eq!(ticket.external_id(None), None);
        assert_eq!(ticket.external_id(Some("category")), None);
        assert!(is_hub_ticket(&ticket));
        let other: Ticket =
            serde_json::from_str(r#"{"id": 1, "status": 2, "tags": ["billing"]}"#).expect("t");
        assert!(!is_hub_ticket(&other));
        let untagged: Ticket = serde_json::from_str(r#"{"id": 1, "status": 2}"#).expect("t");
        assert!(is_hub_ticket(&untagged));
    }

    #[test]
    fn tags_and_bodies_fit_freshdesk() {
        assert_eq!(
            clean_tags([
                "switchboard",
                "Telegram",
                "telegram",
                " a,b ",
                "",
                "x".repeat(40).as_str()
            ]),
            vec![
                "switchboard".to_string(),
                "Telegram".to_string(),
                "a b".to_string(),
                "x".repeat(32)
            ]
        );
        assert_eq!(html_body("a < b\nc", &[]), "a &lt; b<br>c");
        let attachments = [Attachment {
            url: "tg-file:abc".into(),
            content_type: None,
            name: Some("photo.jpg".into()),
            size_bytes: None,
        }];
        let html = html_body("see", &attachments);
        assert_eq!(
            html,
            "see<br><br>Attachments:<br>- photo.jpg: <a href=\"tg-file:abc\">tg-file:abc</a>"
        );
    }

    #[test]
    fn errors_map_to_what_the_host_acts_on() {
        let unauthorized = freshdesk_error(&Response::new(
            401,
            &[],
            r#"{"code":"invalid_credentials","message":"You have to be logged in to perform this action."}"#,
        ));
        assert!(matches!(unauthorized, ConnectorError::Unauthorized(m) if m.contains("api_key")));
        let invalid = freshdesk_error(&Response::new(
            400,
            &[],
            r#"{"description":"Validation failed","errors":[{"field":"priority","message":"It should be one of these values: '1,2,3,4'","code":"invalid_value"}]}"#,
        ));
        assert!(
            matches!(&invalid, ConnectorError::InvalidInput(f) if f.field == "priority" && f.message.contains("1,2,3,4")),
            "{invalid:?}"
        );
        let conflict = Response::new(
            409,
            &[],
            r#"{"description":"Validation failed","errors":[{"field":"unique_external_id","additional_info":{"user_id":43000000007},"message":"It should be a unique value","code":"duplicate_value"}]}"#,
        );
        assert_eq!(
            ErrorBody::of(&conflict)
                .duplicate()
                .and_then(FieldError::holder),
            Some(43_000_000_007)
        );
        assert!(matches!(
            freshdesk_error(&conflict),
            ConnectorError::InvalidInput(f) if f.field == "unique_external_id"
        ));
        assert!(matches!(
            freshdesk_error(&Response::new(429, &[("retry-after", "34")], "")),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 34_000
        ));
        assert!(matches!(
            freshdesk_error(&Response::new(429, &[], "")),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 60_000
        ));
        assert!(matches!(
            freshdesk_error(&Response::new(404, &[], "")),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            freshdesk_error(&Response::new(403, &[], r#"{"code":"access_denied"}"#)),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            freshdesk_error(&Response::new(415, &[], "{}")),
            ConnectorError::Fatal(_)
        ));
        for status in [500, 502, 503] {
            assert!(matches!(
                freshdesk_error(&Response::new(status, &[], "")),
                ConnectorError::Transient(_)
            ));
        }
    }

    #[test]
    fn cursor_moves_by_time_and_by_page_in_a_crowded_second() {
        let start = PollCursor {
            since: 100,
            page: 1,
        };
        // More pages and newer tickets: continue from the newest second.
        assert_eq!(
            next_cursor(&start, Some(130), true, Some(200)),
            (
                PollCursor {
                    since: 130,
                    page: 1
                },
                true
            )
        );
        // A full page within one second: the next page of that second.
        assert_eq!(
            next_cursor(&start, Some(100), true, Some(200)),
            (
                PollCursor {
                    since: 100,
                    page: 2
                },
                true
            )
        );
        // The end, in a second Freshdesk has finished: start after it.
        assert_eq!(
            next_cursor(&start, Some(130), false, Some(200)),
            (
                PollCursor {
                    since: 131,
                    page: 1
                },
                false
            )
        );
        // The end, in the current second: read it again next time.
        assert_eq!(
            next_cursor(&start, Some(130), false, Some(130)),
            (
                PollCursor {
                    since: 130,
                    page: 1
                },
                false
            )
        );
        assert_eq!(
            next_cursor(&start, None, false, Some(200)),
            (
                PollCursor {
                    since: 100,
                    page: 1
                },
                false
            )
        );
        // The last page of a crowded second, now over.
        let crowded = PollCursor {
            since: 100,
            page: 3,
        };
        assert_eq!(
            next_cursor(&crowded, None, false, Some(200)),
            (
                PollCursor {
                    since: 101,
                    page: 1
                },
                false
            )
        );
    }
}
