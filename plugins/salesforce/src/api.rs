//! Salesforce REST API: response shapes, ids, request bodies, error mapping.
//!
//! Nothing here calls the host, so all of it is unit-tested natively; `account.rs` sends.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_plugin_sdk::helpdesk::NewTicket;
use switchboard_plugin_sdk::http::{Response, Service};
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time::format_rfc3339_secs;

use crate::mapping::Mappings;

/// Salesforce's REST API: its answers are checked with [`salesforce_error`].
pub const SALESFORCE: Service = Service::new("Salesforce", salesforce_error);

/// How long to wait after `REQUEST_LIMIT_EXCEEDED`, which comes without Retry-After.
///
/// The same code covers two limits. The daily allocation is a rolling 24-hour window, so
/// capacity comes back continuously as the calls of a day ago age out, not at a reset time;
/// the concurrent long-request limit clears as soon as running requests finish. A minute is
/// short enough to resume promptly in both cases and costs a blocked installation at most one
/// request a minute per waiting job.
pub const REQUEST_LIMIT_BACKOFF_MS: u64 = 60_000;

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One entry of Salesforce's error array.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApiErrorEntry {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// The first error of an error-array body, if the body is one.
pub fn first_error(body: &[u8]) -> Option<ApiErrorEntry> {
    let errors: Vec<ApiErrorEntry> = serde_json::from_slice(body).ok()?;
    errors.into_iter().next()
}

/// Maps an unsuccessful Salesforce response onto the error the host acts on.
pub fn salesforce_error(response: &Response) -> ConnectorError {
    let Some(error) = first_error(&response.body) else {
        return response.status_error();
    };
    let code = error.error_code.as_str();
    let message = format!(
        "Salesforce {} {code}: {}",
        response.status,
        error.message.trim()
    );
    match (response.status, code) {
        // The host refreshes the token and retries once before this reaches the hub.
        (401, _) => ConnectorError::unauthorized(format!(
            "Salesforce refused the session; reconnect the installation ({message})"
        )),
        (403, "REQUEST_LIMIT_EXCEEDED") => {
            ConnectorError::rate_limited(REQUEST_LIMIT_BACKOFF_MS, message)
        }
        (403, _) => ConnectorError::unauthorized(format!(
            "the integration user lacks access; check its profile and permission sets ({message})"
        )),
        (_, "INVALID_CROSS_REFERENCE_KEY" | "ENTITY_IS_DELETED") => {
            ConnectorError::not_found(message)
        }
        (404, _) => ConnectorError::not_found(message),
        (400, _) => {
            let field = error
                .fields
                .first()
                .cloned()
                .unwrap_or_else(|| "request".to_string());
            ConnectorError::invalid(field, message)
        }
        (500..=599, _) => ConnectorError::transient(message),
        _ => response.status_error(),
    }
}

/// A value as one URL path segment.
pub fn path_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// Checks that `id` is a Salesforce id of the object with `prefix` (`500` for Case), so it
/// can go into a path or a query safely.
pub fn record_id(field: &str, id: &str, prefix: &str, object: &str) -> Result<String> {
    let id = id.trim();
    let well_formed = matches!(id.len(), 15 | 18) && id.bytes().all(|c| c.is_ascii_alphanumeric());
    if !well_formed || !id.starts_with(prefix) {
        return Err(ConnectorError::invalid(
            field,
            format!("expected a Salesforce {object} id ({prefix}...), got `{id}`"),
        ));
    }
    Ok(id.to_string())
}

/// Checks an API field name from a setting (`Switchboard_External_Id__c`, `ns__Field__c`), so
/// it can go into a path or a query safely.
pub fn api_name<'a>(setting: &str, name: &'a str) -> Result<&'a str> {
    let name = name.trim();
    let valid = name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && name.len() <= 80;
    if valid {
        Ok(name)
    } else {
        Err(ConnectorError::invalid(
            setting,
            format!("`{name}` is not a Salesforce field API name"),
        ))
    }
}

/// `{"id", "success", "errors", "created"?}` of a create or upsert.
#[derive(Debug, Deserialize)]
pub struct SaveResult {
    pub id: String,
    pub created: Option<bool>,
}

/// What an upsert by external id did.
#[derive(Debug, PartialEq)]
pub enum Upserted {
    Created(String),
    /// An existing record was updated; older API versions (204) don't say which.
    Updated(Option<String>),
}

/// Reads an upsert answer: 201 created, 200 updated, 204 updated (API v45.0 and older), 300
/// several records share the external id.
pub fn upserted(
    response: &Response,
    object: &str,
    field: &str,
    value: &str,
    setting: &str,
) -> Result<Upserted> {
    match response.status {
        201 => Ok(Upserted::Created(SALESFORCE.parse::<SaveResult>(response, "upsert result")?.id)),
        200 => {
            let result: SaveResult = SALESFORCE.parse(response, "upsert result")?;
            Ok(match result.created {
                Some(true) => Upserted::Created(result.id),
                _ => Upserted::Updated(Some(result.id)),
            })
        }
        204 => Ok(Upserted::Updated(None)),
        300 => {
            let urls: Vec<String> = serde_json::from_slice(&response.body).unwrap_or_default();
            Err(ConnectorError::fatal(format!(
                "{} {object} records share {field} = `{value}` ({}); Salesforce cannot tell which \
                 to update. Make {field} a Unique external id and merge the duplicates.",
                urls.len().max(2),
                urls.join(", ")
            )))
        }
        404 if first_error(&response.body).is_some_and(|e| e.message.contains("external ID field")) => {
            Err(ConnectorError::invalid(
                setting,
                format!("{object} has no external id field `{field}`: create it (Text, External ID, Unique) or change the `{setting}` setting"),
            ))
        }
        _ => Err(salesforce_error(response)),
    }
}

/// One batch of a SOQL result.
#[derive(Debug, Deserialize)]
pub struct QueryPage {
    #[serde(default)]
    pub done: bool,
    #[serde(rename = "nextRecordsUrl")]
    pub next_records_url: Option<String>,
    #[serde(default)]
    pub records: Vec<Value>,
}

/// A record field as text.
pub fn text<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `Relationship.Field` of a record, as SOQL nests it.
pub fn related<'a>(record: &'a Value, relationship: &str, field: &str) -> Option<&'a Value> {
    record
        .get(relationship)?
        .get(field)
        .filter(|v| !v.is_null())
}

/// `api-usage=N/M` of `Sforce-Limit-Info`.
pub fn api_usage(response: &Response) -> Option<(u64, u64)> {
    let value = response.header("sforce-limit-info")?;
    let usage = value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// CaseComment bodies are limited to 4,000 bytes.
pub const COMMENT_MAX_BYTES: usize = 4000;
/// Case Subject and Contact LastName lengths.
const SUBJECT_MAX_CHARS: usize = 255;
pub const LAST_NAME_MAX_CHARS: usize = 80;
const DESCRIPTION_MAX_CHARS: usize = 32_000;

/// A SOQL dateTime literal for `ms`, truncated to the second (SOQL takes no fractions).
pub fn soql_datetime(ms: u64) -> String {
    format_rfc3339_secs(ms / 1000)
}

/// The fields of the Case upsert for a new ticket (the external id goes in the URL).
pub fn new_case_body(ticket: &NewTicket, mappings: &Mappings) -> Result<Value> {
    let contact = record_id("requester-id", &ticket.requester_id, "003", "Contact")?;
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        truncate_chars(ticket.subject.trim(), SUBJECT_MAX_CHARS)
    };
    let description = text::with_attachment_links(&ticket.body, &ticket.attachments);
    let mut fields = Map::new();
    fields.insert("Subject".into(), Value::String(subject));
    fields.insert(
        "Description".into(),
        Value::String(truncate_chars(&description, DESCRIPTION_MAX_CHARS)),
    );
    fields.insert("ContactId".into(), Value::String(contact));
    if let Some(status) = ticket.status {
        let value = mappings.statuses.write(status, "status_map")?.to_string();
        fields.insert("Status".into(), Value::String(value));
    }
    if let Some(priority) = ticket.priority {
        if let Some(value) = mappings.priorities.write(priority) {
            fields.insert("Priority".into(), Value::String(value.to_string()));
        }
    }
    if let Some(origin) = mappings.origins.origin(&ticket.channel) {
        fields.insert("Origin".into(), Value::String(origin.to_string()));
    }
    Ok(Value::Object(fields))
}

pub fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Splits `text` into parts of at most `max` bytes, at a line break or space where one is
/// near the end, never inside a character.
pub fn split_bytes(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.len() <= max {
            parts.push(rest.to_string());
            break;
        }
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer a break in the last quarter of the part.
        if let Some(space) = rest[..cut].rfind(['\n', ' ']).filter(|i| *i > max * 3 / 4) {
            cut = space;
        }
        parts.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "ticket:01J".into(),
            external_id: "conv-1".into(),
            requester_id: "0035g0000000001AAA".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["vip".into()],
            priority: Some(TicketPriority::Urgent),
            status: None,
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    #[test]
    fn case_body_maps_values() {
        let defaults = Mappings::parse(
            crate::mapping::DEFAULT_STATUS_MAP,
            crate::mapping::DEFAULT_PRIORITY_MAP,
            crate::mapping::DEFAULT_ORIGIN_MAP,
        )
        .expect("mappings");
        let body = new_case_body(&new_ticket(), &defaults).expect("body");
        assert_eq!(
            body,
            json!({"Subject": "Order late", "Description": "My order is late",
                   "ContactId": "0035g0000000001AAA", "Priority": "High", "Origin": "Web"})
        );
        let mappings = Mappings::parse(
            "Nieuw=new,Open=open",
            crate::mapping::DEFAULT_PRIORITY_MAP,
            "telegram=Telegram",
        )
        .expect("mappings");
        let mut ticket = new_ticket();
        ticket.subject = " ".into();
        ticket.status = Some(TicketStatus::New);
        ticket.priority = None;
        ticket.attachments = vec![Attachment {
            url: "tg-file:1".into(),
            content_type: None,
            name: Some("photo.jpg".into()),
            size_bytes: None,
        }];
        let body = new_case_body(&ticket, &mappings).expect("body");
        assert_eq!(body["Subject"], "My order is late");
        assert_eq!(body["Status"], "Nieuw");
        assert_eq!(body["Origin"], "Telegram");
        assert!(body.get("Priority").is_none());
        assert!(body["Description"]
            .as_str()
            .expect("text")
            .ends_with("- photo.jpg: tg-file:1"));
        ticket.requester_id = "5001".into();
        assert!(matches!(
            new_case_body(&ticket, &mappings),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn long_comments_are_split_on_boundaries() {
        assert_eq!(split_bytes("short", 4000), vec!["short"]);
        assert!(split_bytes("  ", 4000).is_empty());
        let text = "あ".repeat(3000); // 9,000 bytes, no spaces
        let parts = split_bytes(&text, 4000);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 4000));
        assert_eq!(parts.concat(), text);
        let words = "word ".repeat(1000); // 5,000 bytes
        let parts = split_bytes(&words, 4000);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with("word") && parts[1].starts_with("word"));
    }

    #[test]
    fn errors_map_by_status_and_code() {
        let session = salesforce_error(&Response::new(
            401,
            &[],
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        ));
        assert!(
            matches!(session, ConnectorError::Unauthorized(m) if m.contains("INVALID_SESSION_ID"))
        );
        let limit = salesforce_error(&Response::new(
            403,
            &[],
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ));
        assert!(
            matches!(limit, ConnectorError::RateLimited(r) if r.retry_after_ms == REQUEST_LIMIT_BACKOFF_MS)
        );
        let access = salesforce_error(&Response::new(
            403,
            &[],
            r#"[{"message":"insufficient access","errorCode":"INSUFFICIENT_ACCESS_OR_READONLY"}]"#,
        ));
        assert!(matches!(access, ConnectorError::Unauthorized(_)));
        let picklist = salesforce_error(&Response::new(
            400,
            &[],
            r#"[{"message":"Origin: bad value for restricted picklist field: Telegram","errorCode":"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST","fields":["Origin"]}]"#,
        ));
        assert!(
            matches!(&picklist, ConnectorError::InvalidInput(f) if f.field == "Origin" && f.message.contains("Telegram")),
            "{picklist:?}"
        );
        let query = salesforce_error(&Response::new(
            400,
            &[],
            r#"[{"message":"unexpected token","errorCode":"MALFORMED_QUERY"}]"#,
        ));
        assert!(
            matches!(&query, ConnectorError::InvalidInput(f) if f.field == "request" && f.message.contains("MALFORMED_QUERY"))
        );
        let gone = salesforce_error(&Response::new(
            400,
            &[],
            r#"[{"message":"invalid cross reference id","errorCode":"INVALID_CROSS_REFERENCE_KEY","fields":["ParentId"]}]"#,
        ));
        assert!(matches!(gone, ConnectorError::NotFound(_)));
        let missing = salesforce_error(&Response::new(
            404,
            &[],
            r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#,
        ));
        assert!(matches!(missing, ConnectorError::NotFound(_)));
        let down = salesforce_error(&Response::new(
            503,
            &[],
            r#"[{"errorCode":"SERVER_UNAVAILABLE","message":"later"}]"#,
        ));
        assert!(matches!(down, ConnectorError::Transient(_)));
        // Not an error array (a proxy's HTML page): the generic mapping.
        assert!(matches!(
            salesforce_error(&Response::new(502, &[], "<html>")),
            ConnectorError::Transient(_)
        ));
    }

    #[test]
    fn upsert_answers() {
        let created = Response::new(
            201,
            &[],
            r#"{"id":"0035g0000000001AAA","success":true,"errors":[],"created":true}"#,
        );
        assert_eq!(
            upserted(&created, "Contact", "F", "v", "s").ok(),
            Some(Upserted::Created("0035g0000000001AAA".into()))
        );
        let updated = Response::new(
            200,
            &[],
            r#"{"id":"0035g0000000001AAA","success":true,"errors":[],"created":false}"#,
        );
        assert_eq!(
            upserted(&updated, "Contact", "F", "v", "s").ok(),
            Some(Upserted::Updated(Some("0035g0000000001AAA".into())))
        );
        assert_eq!(
            upserted(&Response::new(204, &[], ""), "Contact", "F", "v", "s").ok(),
            Some(Upserted::Updated(None))
        );
        let several = Response::new(
            300,
            &[],
            r#"["/services/data/v60.0/sobjects/Case/500A","/services/data/v60.0/sobjects/Case/500B"]"#,
        );
        assert!(
            matches!(upserted(&several, "Case", "Ext__c", "k", "s"), Err(ConnectorError::Fatal(m)) if m.contains("500B") && m.contains("Ext__c"))
        );
        let no_field = Response::new(
            404,
            &[],
            r#"[{"errorCode":"NOT_FOUND","message":"Provided external ID field does not exist or is not accessible: Ext__c"}]"#,
        );
        assert!(
            matches!(upserted(&no_field, "Case", "Ext__c", "k", "case_external_id_field"), Err(ConnectorError::InvalidInput(f)) if f.field == "case_external_id_field")
        );
    }

    #[test]
    fn ids_names_and_literals() {
        assert_eq!(
            record_id("ticket-id", "5005g0000000001AAA", "500", "Case")
                .ok()
                .as_deref(),
            Some("5005g0000000001AAA")
        );
        assert!(record_id("ticket-id", "5005g0000000001", "500", "Case").is_ok());
        for bad in [
            "0035g0000000001AAA",
            "500",
            "500'; DROP",
            "5005g00000000/1AA",
        ] {
            assert!(
                matches!(record_id("ticket-id", bad, "500", "Case"), Err(ConnectorError::InvalidInput(f)) if f.field == "ticket-id"),
                "{bad}"
            );
        }
        assert_eq!(api_name("s", "ns__Ext_Id__c").ok(), Some("ns__Ext_Id__c"));
        assert!(
            api_name("s", "Ext Id").is_err()
                && api_name("s", "1x").is_err()
                && api_name("s", "").is_err()
        );
        assert_eq!(path_segment("ticket:abc/1 é"), "ticket%3Aabc%2F1%20%C3%A9");
    }

    #[test]
    fn usage_header() {
        let r = Response::new(
            200,
            &[("sforce-limit-info", "api-usage=18/15000; api-bursts=1/750")],
            "",
        );
        assert_eq!(api_usage(&r), Some((18, 15000)));
        assert_eq!(api_usage(&Response::new(200, &[], "")), None);
    }
}
