//! Request bodies with attachments: Freshdesk takes `multipart/form-data` on ticket create,
//! reply and note, with each file as an `attachments[]` part and every other field as a text
//! part (`tags[]`/`cc_emails[]` for arrays, `custom_fields[name]` for custom fields). The parts
//! become the same JSON object a JSON body gives, so the model validates both alike.

use std::convert::Infallible;

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::error::ApiError;

/// The most all attachments of one request may add up to (Freshdesk: 20 MB).
pub(crate) const MAX_ATTACHMENTS_BYTES: usize = 20 * 1024 * 1024;

/// Fields Freshdesk types as integers; form parts carry them as text.
const INTEGER_FIELDS: [&str; 13] = [
    "status",
    "priority",
    "source",
    "requester_id",
    "responder_id",
    "group_id",
    "product_id",
    "company_id",
    "email_config_id",
    "internal_agent_id",
    "internal_group_id",
    "parent_id",
    "user_id",
];
/// Fields Freshdesk types as booleans.
const BOOLEAN_FIELDS: [&str; 2] = ["private", "incoming"];

/// One uploaded file.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub name: String,
    pub content_type: String,
    pub content: Bytes,
}

/// A parsed multipart body: the fields as a JSON object, and the files.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub fields: Map<String, Value>,
    pub uploads: Vec<Upload>,
}

fn bad_form(detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(
        "",
        format!("The multipart/form-data body could not be parsed: {detail}"),
        "invalid_value",
    )
}

/// Parses a `multipart/form-data` body with the boundary of `content_type`.
pub(crate) async fn parse(content_type: &str, body: Bytes) -> Result<Form, ApiError> {
    let boundary = multer::parse_boundary(content_type).map_err(bad_form)?;
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    let mut total = 0usize;
    while let Some(field) = multipart.next_field().await.map_err(bad_form)? {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        if name == "attachments[]" || name == "attachments" {
            let file_name = field.file_name().unwrap_or("attachment").to_owned();
            let content_type = field.content_type().map_or_else(
                || "application/octet-stream".to_owned(),
                ToString::to_string,
            );
            let content = field.bytes().await.map_err(bad_form)?;
            total += content.len();
            if total > MAX_ATTACHMENTS_BYTES {
                return Err(ApiError::invalid(
                    "attachments",
                    "The cumulative size of the attachments exceeds the 20 MB limit",
                    "invalid_size",
                ));
            }
            form.uploads.push(Upload {
                name: file_name,
                content_type,
                content,
            });
            continue;
        }
        let text = field.text().await.map_err(bad_form)?;
        form.add_text(&name, text);
    }
    Ok(form)
}

impl Form {
    /// Files the text part `name` into the JSON object, typed as a JSON body would carry it.
    fn add_text(&mut self, name: &str, text: String) {
        if let Some(array) = name.strip_suffix("[]") {
            if let Value::Array(items) = self
                .fields
                .entry(array.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                items.push(Value::String(text));
            }
            return;
        }
        if let Some(inner) = name
            .strip_prefix("custom_fields[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            if let Value::Object(custom) = self
                .fields
                .entry("custom_fields".to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                custom.insert(inner.to_owned(), Value::String(text));
            }
            return;
        }
        let value = if INTEGER_FIELDS.contains(&name) {
            text.trim()
                .parse::<i64>()
                .map_or(Value::String(text), Value::from)
        } else if BOOLEAN_FIELDS.contains(&name) {
            match text.trim() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            }
        } else {
            Value::String(text)
        };
        self.fields.insert(name.to_owned(), value);
    }
}
