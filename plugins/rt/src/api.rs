//! Request Tracker's REST 2.0: response shapes, value mappings, request pieces and error
//! mapping.
//!
//! Nothing here calls the host, so all of it is unit-tested natively; `account.rs` sends.

use serde::{Deserialize, Deserializer};
use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};
use switchboard_plugin_sdk::http::{Response, Service};
use switchboard_plugin_sdk::ids::Id;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time::parse_utc_datetime_ms;

/// RT's REST 2.0: its answers are checked with [`rt_error`].
pub const RT: Service = Service::new("RT", rt_error);

/// The domain of the addresses given to social requesters. `.invalid` can never resolve
/// (RFC 2606), so RT's notifications to them go nowhere.
pub const REQUESTER_DOMAIN: &str = "social.invalid";

/// How long to wait on a 429 that names no delay. RT itself never sends one; a proxy might.
const DEFAULT_RATE_LIMIT_WAIT_MS: u64 = 10_000;

/// A number RT may also write as a string (`"Privileged": 1`, `"Priority": "50"`).
fn loose_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A reference to another record, as REST 2.0 embeds it: `{"type", "id", "_url"}`. Users are
/// named by login in `id` unless sub-fields were asked for (`fields[Creator]=id,Name`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordRef {
    #[serde(default)]
    pub id: Id,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "RealName")]
    pub real_name: Option<String>,
}

/// `GET /user/{id or name}`.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: Id,
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "RealName")]
    pub real_name: Option<String>,
    #[serde(rename = "EmailAddress")]
    pub email: Option<String>,
    /// 1 for staff (privileged users), 0 for end users.
    #[serde(rename = "Privileged", default, deserialize_with = "loose_u64")]
    pub privileged: Option<u64>,
}

impl User {
    /// The name agents know the user by.
    pub fn display_name(&self) -> String {
        self.real_name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| self.name.clone())
    }
}

/// `GET /queue/{name}`: which ticket custom fields apply to the queue.
#[derive(Debug, Deserialize)]
pub struct Queue {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "TicketCustomFields", default)]
    pub ticket_custom_fields: Vec<CustomFieldRef>,
}

#[derive(Debug, Deserialize)]
pub struct CustomFieldRef {
    #[serde(default)]
    pub name: String,
}

impl Queue {
    pub fn has_custom_field(&self, name: &str) -> bool {
        self.ticket_custom_fields
            .iter()
            .any(|cf| cf.name.eq_ignore_ascii_case(name))
    }
}

/// `GET /ticket/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: Id,
    #[serde(rename = "Status", default)]
    pub status: String,
    /// A number, or a label on sites with `$EnablePriorityAsString`.
    #[serde(rename = "Priority")]
    pub priority: Option<serde_json::Value>,
    #[serde(rename = "LastUpdated")]
    pub last_updated: Option<String>,
    #[serde(rename = "Subject")]
    pub subject: Option<String>,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "CustomFields", default)]
    pub custom_fields: Vec<CustomFieldValues>,
    #[serde(rename = "_hyperlinks", default)]
    pub hyperlinks: Vec<Hyperlink>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CustomFieldValues {
    #[serde(default)]
    pub name: String,
    /// Strings for text fields; objects for image and binary fields.
    #[serde(default)]
    pub values: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Hyperlink {
    #[serde(rename = "ref", default)]
    pub rel: String,
    pub name: Option<String>,
}

impl Ticket {
    /// The first value of the custom field `name`, if it has one.
    pub fn custom_field(&self, name: &str) -> Option<String> {
        self.custom_fields
            .iter()
            .filter(|cf| cf.name.eq_ignore_ascii_case(name))
            .flat_map(|cf| cf.values.iter())
            .find_map(|v| v.as_str().map(str::to_string))
            .filter(|v| !v.is_empty())
    }

    /// True when the custom field `name` applies to the ticket, set or not (RT lists every
    /// applicable field among the hyperlinks).
    pub fn has_custom_field(&self, name: &str) -> bool {
        self.hyperlinks.iter().any(|link| {
            link.rel == "customfield"
                && link
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) || self
            .custom_fields
            .iter()
            .any(|cf| cf.name.eq_ignore_ascii_case(name))
    }

    pub fn priority(&self) -> Option<TicketPriority> {
        match self.priority.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64().map(priority_from_number),
            serde_json::Value::String(s) => priority_from_rt(s),
            _ => None,
        }
    }

    pub fn updated_at_ms(&self) -> u64 {
        self.last_updated
            .as_deref()
            .and_then(parse_utc_datetime_ms)
            .unwrap_or(0)
    }

    pub fn created_ms(&self) -> Option<u64> {
        self.created.as_deref().and_then(parse_utc_datetime_ms)
    }
}

/// One page of a collection (`/transactions`, `/ticket/{id}/history`, ...).
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    pub next_page: Option<String>,
}

/// A transaction, with the fields the poll asks for.
#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    pub id: Id,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "ObjectId", default)]
    pub object_id: Id,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    /// An object with `fields[Creator]=...`; an empty string when the user may not see it.
    #[serde(rename = "Creator", default, deserialize_with = "record_ref_or_empty")]
    pub creator: Option<RecordRef>,
    #[serde(rename = "Field")]
    pub field: Option<String>,
    #[serde(rename = "NewValue")]
    pub new_value: Option<String>,
}

fn record_ref_or_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RecordRef>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value).ok(),
        _ => None,
    })
}

impl Transaction {
    pub fn created_ms(&self) -> Option<u64> {
        self.created.as_deref().and_then(parse_utc_datetime_ms)
    }
}

/// One MIME part of a message, from a search of `/attachments`; `Content` (decoded text)
/// only when asked for.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    pub id: Id,
    #[serde(rename = "ContentType", default)]
    pub content_type: String,
    #[serde(rename = "Filename", default)]
    pub filename: Option<String>,
    #[serde(rename = "ContentLength", default, deserialize_with = "loose_u64")]
    pub content_length: Option<u64>,
    #[serde(rename = "TransactionId", default)]
    pub transaction_id: Id,
    #[serde(rename = "Content")]
    pub content: Option<String>,
}

impl Part {
    pub fn is_file(&self) -> bool {
        self.filename.as_deref().is_some_and(|f| !f.is_empty())
    }
}

/// The body of a `201 Created`: `{"id": ..., "type": ..., "_url": ...}`.
#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: Id,
}

/// The default lifecycle's statuses onto the contract's.
///
/// `stalled` ("waiting on something", usually the customer) reads as `pending`; `rejected`,
/// RT's other inactive status, as `closed`. `deleted` tickets are gone (`None`). Statuses of
/// custom lifecycles are unknown (`None`) and left to the caller.
pub fn status_from_rt(status: &str) -> Option<TicketStatus> {
    Some(match status.to_ascii_lowercase().as_str() {
        "new" => TicketStatus::New,
        "open" => TicketStatus::Open,
        "stalled" => TicketStatus::Pending,
        "resolved" => TicketStatus::Solved,
        "rejected" => TicketStatus::Closed,
        _ => return None,
    })
}

/// The contract's statuses onto the default lifecycle. RT has one waiting status (`stalled`)
/// and one final one for work done (`resolved`), so `pending`/`on-hold` and
/// `solved`/`closed` each share one.
pub fn status_to_rt(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending | TicketStatus::OnHold => "stalled",
        TicketStatus::Solved | TicketStatus::Closed => "resolved",
    }
}

/// Priorities as numbers: RT stores a number, and its REST 2.0 create does not translate
/// labels. The values are RT's own documented four-level example (Low 0, Medium 50, High 80,
/// On Fire 100).
pub fn priority_to_rt(priority: TicketPriority) -> u64 {
    match priority {
        TicketPriority::Low => 0,
        TicketPriority::Normal => 50,
        TicketPriority::High => 80,
        TicketPriority::Urgent => 100,
    }
}

/// The inverse of [`priority_to_rt`], by ranges so that numbers set in RT's UI map too.
pub fn priority_from_number(priority: u64) -> TicketPriority {
    match priority {
        0..=24 => TicketPriority::Low,
        25..=64 => TicketPriority::Normal,
        65..=89 => TicketPriority::High,
        _ => TicketPriority::Urgent,
    }
}

/// A priority as RT reports it: a number, or one of the usual labels.
pub fn priority_from_rt(priority: &str) -> Option<TicketPriority> {
    let priority = priority.trim();
    if let Ok(number) = priority.parse::<u64>() {
        return Some(priority_from_number(number));
    }
    Some(match priority.to_ascii_lowercase().as_str() {
        "low" => TicketPriority::Low,
        "medium" | "normal" => TicketPriority::Normal,
        "high" => TicketPriority::High,
        "urgent" | "critical" | "on fire" => TicketPriority::Urgent,
        _ => return None,
    })
}

/// The RT login (and email address) of a social requester: `telegram-12345@social.invalid`.
///
/// Anything but ASCII letters, digits, `.`, `_` and `-` becomes `_`, and letters are lowered:
/// RT compares logins and addresses without regard to case anyway.
pub fn requester_login(network: &str, person_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.trim()
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '_',
            })
            .collect()
    };
    let network = clean(network);
    let person = clean(person_id);
    let local = if network.is_empty() {
        person
    } else {
        format!("{network}-{person}")
    };
    format!("{local}@{REQUESTER_DOMAIN}")
}

/// A value quoted for TicketSQL and TransactionSQL: single quotes, with `\` and `'` escaped.
pub fn sql_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// A value percent-encoded for one URL path segment (queue names may hold spaces).
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The id at the end of a `Location` header (`/REST/2.0/transaction/40`).
pub fn id_from_location(location: &str) -> Option<String> {
    let last = location.trim().trim_end_matches('/').rsplit('/').next()?;
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())).then(|| last.to_string())
}

/// The line that names the customer above a message the integration user files for them.
pub fn attributed(author: &User, body: &str) -> String {
    let address = author.email.as_deref().unwrap_or(author.name.as_str());
    format!("{} <{address}> wrote:\n\n{body}", author.display_name())
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// RT's `{"message": ...}`, else the start of the body.
fn error_message(response: &Response) -> String {
    let message = serde_json::from_slice::<ErrorBody>(&response.body)
        .ok()
        .and_then(|body| body.message)
        .unwrap_or_else(|| {
            let text = response.text();
            text.trim().chars().take(300).collect()
        });
    format!("RT {}: {}", response.status, message.trim())
        .trim_end_matches([' ', ':'])
        .to_string()
}

/// Maps an unsuccessful REST 2.0 response onto the error the host acts on.
pub fn rt_error(response: &Response) -> ConnectorError {
    let message = error_message(response);
    match response.status {
        401 => ConnectorError::unauthorized(format!(
            "RT refused the credentials; check `username` and `password` or `auth_token` \
             ({message})"
        )),
        403 => ConnectorError::unauthorized(format!(
            "the RT user lacks a right for this (or the queue does not exist) ({message})"
        )),
        404 => ConnectorError::not_found(message),
        400 | 422 => ConnectorError::invalid("request", message),
        // ETag and If-Match conflicts: another write came first.
        409 | 412 => ConnectorError::transient(message),
        429 => response.rate_limited(DEFAULT_RATE_LIMIT_WAIT_MS, message),
        _ => response.status_error(),
    }
}

/// The messages of a `PUT` answer (`["Ticket 1: Status changed from 'new' to 'open'"]`).
/// RT answers 200 even when it refused a change, saying so only here.
pub fn messages(response: &Response) -> Vec<String> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&response.body)
        .map(|items| {
            items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_both_ways() {
        for status in [
            TicketStatus::New,
            TicketStatus::Open,
            TicketStatus::Pending,
            TicketStatus::Solved,
        ] {
            assert_eq!(status_from_rt(status_to_rt(status)), Some(status));
        }
        assert_eq!(status_to_rt(TicketStatus::OnHold), "stalled");
        assert_eq!(status_to_rt(TicketStatus::Closed), "resolved");
        assert_eq!(status_from_rt("rejected"), Some(TicketStatus::Closed));
        assert_eq!(status_from_rt("Open"), Some(TicketStatus::Open));
        assert_eq!(status_from_rt("deleted"), None);
        assert_eq!(status_from_rt("waiting-for-vendor"), None);
    }

    #[test]
    fn priorities_map_both_ways_and_read_labels() {
        for priority in TicketPriority::ALL {
            assert_eq!(
                priority_from_number(priority_to_rt(priority)),
                priority,
                "{priority:?}"
            );
        }
        assert_eq!(priority_from_rt("75"), Some(TicketPriority::High));
        assert_eq!(priority_from_rt("Medium"), Some(TicketPriority::Normal));
        assert_eq!(priority_from_rt("On Fire"), Some(TicketPriority::Urgent));
        assert_eq!(priority_from_rt("whenever"), None);
    }

    #[test]
    fn requester_logins_are_safe_addresses() {
        assert_eq!(
            requester_login("telegram", "12345"),
            "telegram-12345@social.invalid"
        );
        assert_eq!(
            requester_login("LINE", "U4af49806292c"),
            "line-u4af49806292c@social.invalid"
        );
        assert_eq!(
            requester_login("x", "a b<c>@d"),
            "x-a_b_c__d@social.invalid"
        );
        assert_eq!(requester_login("", "77"), "77@social.invalid");
    }

    #[test]
    fn sql_values_and_path_segments_are_quoted() {
        assert_eq!(path_segment("Tier 2/Ünï"), "Tier%202%2F%C3%9Cn%C3%AF");
        assert_eq!(
            path_segment("telegram-5_1.x@social.invalid"),
            "telegram-5_1.x@social.invalid"
        );
        assert_eq!(sql_quote("General"), "'General'");
        assert_eq!(sql_quote(r"it's \ odd"), r"'it\'s \\ odd'");
    }

    #[test]
    fn ids_come_from_locations_and_bodies() {
        assert_eq!(
            id_from_location("/REST/2.0/transaction/40").as_deref(),
            Some("40")
        );
        assert_eq!(
            id_from_location("http://rt/REST/2.0/user/29/").as_deref(),
            Some("29")
        );
        assert_eq!(id_from_location("/REST/2.0/user/bob"), None);
    }

    #[test]
    fn tickets_read_status_priority_and_custom_fields() {
        let ticket: Ticket = serde_json::from_value(serde_json::json!({
            "id": 7, "Status": "stalled", "Priority": "80",
            "LastUpdated": "2026-11-25T00:37:04Z", "Created": "2026-11-25T00:36:28Z",
            "Subject": "Order late",
            "CustomFields": [
                {"name": "Switchboard External ID", "values": ["telegram:5001"], "id": "2"},
                {"name": "Photo", "values": [{"filename": "a.png"}]}
            ],
            "_hyperlinks": [
                {"ref": "customfield", "name": "Switchboard Idempotency Key", "id": "3"},
                {"ref": "history"}
            ]
        }))
        .expect("ticket");
        assert_eq!(ticket.id.0, "7");
        assert_eq!(ticket.priority(), Some(TicketPriority::High));
        assert_eq!(
            ticket.custom_field("switchboard external id").as_deref(),
            Some("telegram:5001")
        );
        assert_eq!(ticket.custom_field("Photo"), None);
        assert!(ticket.has_custom_field("Switchboard Idempotency Key"));
        assert!(!ticket.has_custom_field("Other"));
        assert_eq!(ticket.updated_at_ms(), 1_795_567_024_000);
        assert_eq!(ticket.created_ms(), Some(1_795_566_988_000));
        assert_eq!(ticket.subject.as_deref(), Some("Order late"));
    }

    #[test]
    fn transactions_tolerate_hidden_creators() {
        let page: Page<Transaction> = serde_json::from_value(serde_json::json!({
            "items": [
                {"id": "43", "Type": "Correspond", "ObjectId": "1",
                 "Created": "2026-11-25T00:37:04Z",
                 "Creator": {"id": 27, "Name": "agent", "RealName": "Hana Agent", "type": "user"}},
                {"id": "44", "Type": "Status", "ObjectId": "1", "Creator": "",
                 "Field": "Status", "NewValue": "open"}
            ],
            "page": 1, "pages": 1
        }))
        .expect("page");
        let creator = page.items[0].creator.as_ref().expect("creator");
        assert_eq!(
            (creator.id.0.as_str(), creator.name.as_deref()),
            ("27", Some("agent"))
        );
        assert!(page.items[1].creator.is_none());
        assert_eq!(page.next_page, None);
    }

    #[test]
    fn bodies_name_attachments_and_authors() {
        assert_eq!(text::with_attachment_links("hi", &[]), "hi");
        let attachments = [Attachment {
            url: "tg-file:abc".into(),
            content_type: None,
            name: Some("a.jpg".into()),
            size_bytes: None,
        }];
        assert_eq!(
            text::with_attachment_links("see\n", &attachments),
            "see\n\nAttachments:\n- a.jpg: tg-file:abc"
        );
        let user: User = serde_json::from_value(serde_json::json!({
            "id": 29, "Name": "telegram-5001@social.invalid", "RealName": "Aiko Sato",
            "EmailAddress": "telegram-5001@social.invalid", "Privileged": 0
        }))
        .expect("user");
        assert_eq!(user.privileged, Some(0));
        assert_eq!(
            attributed(&user, "Any news?"),
            "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nAny news?"
        );
    }

    #[test]
    fn errors_map_from_rt_answers() {
        assert!(matches!(
            rt_error(&Response::new(401, &[], r#"{"message":"Unauthorized"}"#)),
            ConnectorError::Unauthorized(m) if m.contains("Unauthorized")
        ));
        assert!(matches!(
            rt_error(&Response::new(403, &[], r#"{"message":"No permission to create tickets in the queue 'X'"}"#)),
            ConnectorError::Unauthorized(m) if m.contains("No permission")
        ));
        assert!(matches!(
            rt_error(&Response::new(404, &[], r#"{"message":"Not Found"}"#)),
            ConnectorError::NotFound(m) if m == "RT 404: Not Found"
        ));
        assert!(matches!(
            rt_error(&Response::new(400, &[], r#"{"message":"Name in use"}"#)),
            ConnectorError::InvalidInput(f) if f.message.contains("Name in use")
        ));
        assert!(matches!(
            rt_error(&Response::new(
                412,
                &[],
                r#"{"message":"Precondition Failed"}"#
            )),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            rt_error(&Response::new(429, &[("retry-after", "7")], "")),
            ConnectorError::RateLimited(r) if r.retry_after_ms == 7000
        ));
        assert!(matches!(
            rt_error(&Response::new(500, &[], "")),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            rt_error(&Response::new(502, &[], "<html>Bad gateway</html>")),
            ConnectorError::Transient(m) if m.contains("Bad gateway")
        ));
    }

    #[test]
    fn put_answers_carry_messages() {
        let answer = Response::new(
            200,
            &[],
            r#"["Ticket 1: Status 'bogus' isn't a valid status for this ticket."]"#,
        );
        assert_eq!(
            messages(&answer),
            vec!["Ticket 1: Status 'bogus' isn't a valid status for this ticket.".to_string()]
        );
        assert!(messages(&Response::new(200, &[], "{}")).is_empty());
    }
}
