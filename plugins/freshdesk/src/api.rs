//! Freshdesk API v2: response shapes, request bodies, value mappings and error mapping.
//!
//! Nothing here calls the host, so all of it is unit-tested natively; `lib.rs` sends.

use serde::{Deserialize, Serialize};
use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketState, TicketStatus};
use switchboard_plugin_sdk::http::{self, Response};
use switchboard_plugin_sdk::prelude::*;

use crate::time::parse_iso8601_ms;

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

/// Checks that an id the hub passes is a Freshdesk numeric id.
pub fn numeric_id(field: &str, id: &str) -> Result<u64> {
    id.trim().parse().map_err(|_| {
        ConnectorError::invalid(
            field,
            format!("expected a numeric Freshdesk id, got `{id}`"),
        )
    })
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
    let mut html = escape(text.trim_end())
        .replace("\r\n", "\n")
        .replace('\n', "<br>");
    if !attachments.is_empty() {
        html.push_str("<br><br>Attachments:");
        for a in attachments {
            let name = escape(a.name.as_deref().unwrap_or("file"));
            let url = escape(&a.url);
            html.push_str(&format!("<br>- {name}: <a href=\"{url}\">{url}</a>"));
        }
    }
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plain text of an HTML body, for when `body_text` is missing.
pub fn text_of(html: &str) -> String {
    let html = html.replace("<br>", "\n").replace("<br/>", "\n");
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .trim()
        .to_string()
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
        429 => ConnectorError::rate_limited(
            http::retry_after_ms(&response.headers).unwrap_or(DEFAULT_RATE_LIMIT_WAIT_MS),
            message,
        ),
        // A field Freshdesk refused, or a clash with an existing record: not worth retrying.
        400 | 409 => match body.errors.first() {
            Some(first) if !first.field.is_empty() => {
                ConnectorError::invalid(first.field.clone(), message)
            }
            _ => ConnectorError::invalid("request", message),
        },
        // Content type or Accept header: the request itself is wrong.
        406 | 415 => ConnectorError::fatal(message),
        _ => http::status_error(response.status, &response.headers, &response.body),
    }
}

/// Passes a successful response through; maps any other with [`freshdesk_error`].
pub fn check(response: Response) -> Result<Response> {
    if response.is_success() {
        Ok(response)
    } else {
        Err(freshdesk_error(&response))
    }
}

/// Parses a successful response body; JSON the plugin cannot read is a contract break.
pub fn parse<T: serde::de::DeserializeOwned>(response: &Response, what: &str) -> Result<T> {
    serde_json::from_slice(&response.body)
        .map_err(|err| ConnectorError::fatal(format!("unexpected {what} from Freshdesk: {err}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
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
        for priority in [
            TicketPriority::Low,
            TicketPriority::Normal,
            TicketPriority::High,
            TicketPriority::Urgent,
        ] {
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
        assert_eq!(text_of("<div>a &amp; b<br>c</div>"), "a & b\nc");
    }

    #[test]
    fn errors_map_to_what_the_host_acts_on() {
        let unauthorized = freshdesk_error(&response(
            401,
            &[],
            r#"{"code":"invalid_credentials","message":"You have to be logged in to perform this action."}"#,
        ));
        assert!(matches!(unauthorized, ConnectorError::Unauthorized(m) if m.contains("api_key")));
        let invalid = freshdesk_error(&response(
            400,
            &[],
            r#"{"description":"Validation failed","errors":[{"field":"priority","message":"It should be one of these values: '1,2,3,4'","code":"invalid_value"}]}"#,
        ));
        assert!(
            matches!(&invalid, ConnectorError::InvalidInput(f) if f.field == "priority" && f.message.contains("1,2,3,4")),
            "{invalid:?}"
        );
        let conflict = response(
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
            freshdesk_error(&response(429, &[("retry-after", "34")], "")),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 34_000
        ));
        assert!(matches!(
            freshdesk_error(&response(429, &[], "")),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 60_000
        ));
        assert!(matches!(
            freshdesk_error(&response(404, &[], "")),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            freshdesk_error(&response(403, &[], r#"{"code":"access_denied"}"#)),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            freshdesk_error(&response(415, &[], "{}")),
            ConnectorError::Fatal(_)
        ));
        for status in [500, 502, 503] {
            assert!(matches!(
                freshdesk_error(&response(status, &[], "")),
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
