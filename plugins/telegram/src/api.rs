//! Bot API calls: request building, the `{ok, result | error_code, description}` envelope,
//! and the mapping of Telegram's errors onto [`ConnectorError`]s.
//!
//! Requests name methods without the token: the host inserts `/bot<token>` in front of the
//! path, as declared in the manifest's credential rule.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_plugin_sdk::http::{self, Request, Response};
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::OutboundMessage;

pub(crate) use crate::events::User;
use crate::events::{message_key, BUSINESS_HANDLE_PREFIX};

/// Longest text `sendMessage` accepts, in UTF-16 code units.
pub const MAX_TEXT_UTF16: usize = 4096;

/// Most updates `getUpdates` returns at once.
pub const UPDATES_LIMIT: usize = 100;

/// Every Bot API answer, success or not.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    /// A group was upgraded to a supergroup under this new id.
    migrate_to_chat_id: Option<i64>,
}

/// Reads a Bot API response: the `result` of a successful call, or the error it reports.
pub fn read_result<T: DeserializeOwned>(response: &Response) -> Result<T> {
    let envelope: Envelope<T> = match serde_json::from_slice(&response.body) {
        Ok(envelope) => envelope,
        // Not the Bot API speaking (a proxy's error page?): judge by the status alone.
        Err(_) if !response.is_success() => return Err(response.status_error()),
        Err(err) => {
            return Err(ConnectorError::fatal(format!(
                "Telegram answered with JSON the plugin cannot read: {err}"
            )))
        }
    };
    if envelope.ok && response.is_success() {
        return envelope
            .result
            .ok_or_else(|| ConnectorError::fatal("Telegram answered ok without a result"));
    }
    Err(api_error(
        envelope.error_code.unwrap_or(response.status),
        envelope.description.as_deref().unwrap_or_default(),
        envelope.parameters.as_ref(),
        response,
    ))
}

/// Maps a Bot API failure onto the error the host acts on.
fn api_error(
    code: u16,
    description: &str,
    parameters: Option<&ResponseParameters>,
    response: &Response,
) -> ConnectorError {
    let message = format!("Telegram error {code}: {description}");
    let lower = description.to_ascii_lowercase();
    match code {
        429 => {
            // Flood control names its wait in `parameters.retry_after`.
            let retry_after_ms = response
                .rate_limit_wait_ms()
                .unwrap_or(http::DEFAULT_RETRY_AFTER_MS);
            ConnectorError::rate_limited(retry_after_ms, message)
        }
        // With the token in the path, an unknown or revoked token makes the whole bot path
        // unknown: Telegram answers 404 as well as 401.
        401 | 404 => ConnectorError::unauthorized(format!(
            "Telegram refused the bot token; check the `bot_token` setting ({message})"
        )),
        403 if lower.contains("blocked") => ConnectorError::policy("recipient-blocked", message),
        // Kicked from the group, user deactivated, user never started the bot, ...: about
        // this chat, not the credentials.
        403 => ConnectorError::policy("recipient-unreachable", message),
        409 if lower.contains("webhook") => ConnectorError::policy(
            "webhook-active",
            format!(
                "Telegram refuses getUpdates while a webhook is set. Either delete the webhook \
                 (Bot API deleteWebhook) to poll, or stop scheduling the `updates` stream and \
                 rely on webhook delivery ({message})"
            ),
        ),
        // Another getUpdates call for the same bot is running (a second poller).
        409 => ConnectorError::transient(message),
        400 if lower.contains("message is too long") || lower.contains("text is empty") => {
            ConnectorError::invalid("text", message)
        }
        400 if lower.contains("chat not found") => ConnectorError::not_found(message),
        400 if lower.contains("upgraded to a supergroup") => {
            let hint = parameters
                .and_then(|p| p.migrate_to_chat_id)
                .map(|id| format!("; the new chat id is {id}"))
                .unwrap_or_default();
            ConnectorError::invalid("thread-id", format!("{message}{hint}"))
        }
        400 => ConnectorError::invalid("request", message),
        500..=599 => ConnectorError::transient(message),
        _ => http::status_error(code, &response.headers, &response.body),
    }
}

/// The `getMe` request: who the bot is.
pub fn get_me_request(api_base: &str) -> Request {
    http::get(format!("{api_base}/getMe"))
}

/// The `getUpdates` request for the next page after `offset`.
pub fn get_updates_request(api_base: &str, offset: Option<i64>) -> Request {
    let mut request = http::get(format!("{api_base}/getUpdates"))
        .query("limit", UPDATES_LIMIT.to_string())
        // Short polling: the host schedules the calls and must not sit in a long poll.
        .query("timeout", "0");
    if let Some(offset) = offset {
        request = request.query("offset", offset.to_string());
    }
    request
}

/// Reads a poll cursor: the next `getUpdates` offset, as a decimal string.
pub fn parse_offset(cursor: &str) -> Result<i64> {
    cursor.trim().parse().map_err(|_| {
        ConnectorError::invalid(
            "cursor",
            format!("expected a getUpdates offset (an integer), got `{cursor}`"),
        )
    })
}

/// A `chat_id` as Telegram takes it: the numeric id, or `@username` for public chats.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    Id(i64),
    Username(String),
}

/// The parts of a hub thread id: `<chat_id>` or `<chat_id>:<topic_id>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadAddress {
    pub chat_id: ChatId,
    pub topic_id: Option<i64>,
}

/// Splits a thread id made by this plugin back into chat and forum topic.
pub fn parse_thread_id(thread_id: &str) -> Result<ThreadAddress> {
    let invalid = || {
        ConnectorError::invalid(
            "thread-id",
            format!("expected `<chat_id>` or `<chat_id>:<topic_id>`, got `{thread_id}`"),
        )
    };
    let (chat, topic) = match thread_id.split_once(':') {
        Some((chat, topic)) => (chat, Some(topic.parse::<i64>().map_err(|_| invalid())?)),
        None => (thread_id, None),
    };
    let chat_id = if let Ok(id) = chat.parse::<i64>() {
        ChatId::Id(id)
    } else if chat.starts_with('@') && chat.len() > 1 {
        ChatId::Username(chat.to_string())
    } else {
        return Err(invalid());
    };
    Ok(ThreadAddress {
        chat_id,
        topic_id: topic,
    })
}

/// The Telegram message id inside a hub message id (`<chat_id>:<message_id>[:edit:<date>]`).
pub fn parse_reply_to(message_id: &str) -> Result<i64> {
    message_id
        .split(':')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ConnectorError::invalid(
                "reply-to",
                format!("expected `<chat_id>:<message_id>`, got `{message_id}`"),
            )
        })
}

#[derive(Debug, Serialize)]
struct ReplyParameters {
    message_id: i64,
    /// Still deliver the answer when the customer deleted the message it answers.
    allow_sending_without_reply: bool,
}

#[derive(Debug, Serialize)]
struct SendMessageBody<'a> {
    chat_id: ChatId,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_parameters: Option<ReplyParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_connection_id: Option<&'a str>,
}

/// Checks an outbound message and builds its `sendMessage` request.
pub fn send_message_request(api_base: &str, message: &OutboundMessage) -> Result<Request> {
    if message.text.trim().is_empty() {
        return Err(ConnectorError::invalid(
            "text",
            "Telegram cannot send an empty message",
        ));
    }
    let length = text::utf16_len(&message.text);
    if length > MAX_TEXT_UTF16 {
        return Err(ConnectorError::invalid(
            "text",
            format!("{length} UTF-16 units; Telegram accepts at most {MAX_TEXT_UTF16}"),
        ));
    }
    let address = parse_thread_id(&message.thread_id)?;
    let reply_parameters = message
        .reply_to
        .as_deref()
        .map(parse_reply_to)
        .transpose()?
        .map(|message_id| ReplyParameters {
            message_id,
            allow_sending_without_reply: true,
        });
    let business_connection_id = message
        .reply_handle
        .as_deref()
        .and_then(|handle| handle.strip_prefix(BUSINESS_HANDLE_PREFIX));
    let body = SendMessageBody {
        chat_id: address.chat_id,
        text: &message.text,
        message_thread_id: address.topic_id,
        reply_parameters,
        business_connection_id,
    };
    Ok(http::post(format!("{api_base}/sendMessage")).json(&body))
}

/// The message `sendMessage` returns; only what identifies it is read.
#[derive(Debug, Deserialize)]
pub struct SentMessageResult {
    message_id: i64,
    chat: SentChat,
}

#[derive(Debug, Deserialize)]
struct SentChat {
    id: i64,
}

impl SentMessageResult {
    /// The hub message id of the sent message, the same as its echo would get.
    pub fn key(&self) -> String {
        message_key(self.chat.id, self.message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::social::MessageKind;

    fn error_of(status: u16, body: &str) -> ConnectorError {
        read_result::<serde_json::Value>(&Response::new(status, &[], body)).expect_err("an error")
    }

    fn outbound(thread_id: &str, text: &str) -> OutboundMessage {
        OutboundMessage {
            idempotency_key: "k1".into(),
            thread_id: thread_id.into(),
            reply_to: None,
            kind: MessageKind::DirectMessage,
            recipient: None,
            text: text.into(),
            attachments: Vec::new(),
            last_inbound_at: None,
            reply_handle: None,
        }
    }

    fn body_json(request: &Request) -> serde_json::Value {
        serde_json::from_slice(request.body_bytes()).expect("json body")
    }

    #[test]
    fn ok_envelope_yields_the_result() {
        let result: Vec<serde_json::Value> = read_result(&Response::new(
            200,
            &[],
            r#"{"ok":true,"result":[{"update_id":1}]}"#,
        ))
        .expect("result");
        assert_eq!(result.len(), 1);
    }

    #[test]
    fn flood_control_uses_retry_after_from_the_body() {
        let err = error_of(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 35","parameters":{"retry_after":35}}"#,
        );
        assert!(matches!(err, ConnectorError::RateLimited(r) if r.retry_after_ms == 35_000));
    }

    #[test]
    fn error_kinds() {
        assert!(matches!(
            error_of(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            error_of(
                404,
                r#"{"ok":false,"error_code":404,"description":"Not Found"}"#
            ),
            ConnectorError::Unauthorized(_)
        ));
        assert!(matches!(
            error_of(403, r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#),
            ConnectorError::Policy(p) if p.code == "recipient-blocked"
        ));
        assert!(matches!(
            error_of(403, r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the group chat"}"#),
            ConnectorError::Policy(p) if p.code == "recipient-unreachable"
        ));
        assert!(matches!(
            error_of(409, r#"{"ok":false,"error_code":409,"description":"Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"}"#),
            ConnectorError::Policy(p) if p.code == "webhook-active"
        ));
        assert!(matches!(
            error_of(
                409,
                r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#
            ),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            error_of(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: message is too long"}"#),
            ConnectorError::InvalidInput(f) if f.field == "text"
        ));
        assert!(matches!(
            error_of(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            ),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            error_of(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities"}"#),
            ConnectorError::InvalidInput(f) if f.field == "request"
        ));
        assert!(matches!(
            error_of(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001}}"#),
            ConnectorError::InvalidInput(f) if f.field == "thread-id" && f.message.contains("-1001")
        ));
        assert!(matches!(
            error_of(502, "<html>Bad Gateway</html>"),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            error_of(
                500,
                r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#
            ),
            ConnectorError::Transient(_)
        ));
        assert!(matches!(
            read_result::<serde_json::Value>(&Response::new(200, &[], "not json")),
            Err(ConnectorError::Fatal(_))
        ));
    }

    #[test]
    fn get_updates_asks_for_a_page_from_the_offset_without_long_polling() {
        let request = get_updates_request("http://127.0.0.1:9000", Some(14));
        assert_eq!(request.method(), "GET");
        assert_eq!(
            request.url(),
            "http://127.0.0.1:9000/getUpdates?limit=100&timeout=0&offset=14"
        );
        let first = get_updates_request("https://api.telegram.org", None);
        assert_eq!(
            first.url(),
            "https://api.telegram.org/getUpdates?limit=100&timeout=0"
        );
    }

    #[test]
    fn offsets_parse_or_name_the_cursor() {
        assert_eq!(parse_offset("14").ok(), Some(14));
        assert!(matches!(
            parse_offset("abc"),
            Err(ConnectorError::InvalidInput(f)) if f.field == "cursor"
        ));
    }

    #[test]
    fn thread_ids_split_into_chat_and_topic() {
        assert_eq!(
            parse_thread_id("-100123:7").ok(),
            Some(ThreadAddress {
                chat_id: ChatId::Id(-100_123),
                topic_id: Some(7)
            })
        );
        assert_eq!(
            parse_thread_id("@brand").ok(),
            Some(ThreadAddress {
                chat_id: ChatId::Username("@brand".into()),
                topic_id: None
            })
        );
        assert!(parse_thread_id("chat").is_err());
        assert!(parse_thread_id("1:x").is_err());
    }

    #[test]
    fn send_builds_a_threaded_reply() {
        let mut message = outbound("987654321", "Thanks, we are on it");
        message.reply_to = Some("987654321:42".into());
        let request = send_message_request("http://tg", &message).expect("request");
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "http://tg/sendMessage");
        assert_eq!(
            body_json(&request),
            serde_json::json!({"chat_id": 987_654_321_i64, "text": "Thanks, we are on it",
                "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})
        );
    }

    #[test]
    fn send_targets_topics_and_business_connections() {
        let mut message = outbound("-100:5", "hi");
        message.reply_to = Some("-100:9:edit:1700".into());
        message.reply_handle = Some("business:bc-1".into());
        let body = body_json(&send_message_request("http://tg", &message).expect("request"));
        assert_eq!(body["message_thread_id"], 5);
        assert_eq!(body["reply_parameters"]["message_id"], 9);
        assert_eq!(body["business_connection_id"], "bc-1");
    }

    #[test]
    fn send_rejects_bad_text_and_ids() {
        let too_long = "😀".repeat(2049); // 4098 UTF-16 units.
        assert!(matches!(
            send_message_request("http://tg", &outbound("1", &too_long)),
            Err(ConnectorError::InvalidInput(f)) if f.field == "text"
        ));
        assert!(send_message_request("http://tg", &outbound("1", &"😀".repeat(2048))).is_ok());
        assert!(matches!(
            send_message_request("http://tg", &outbound("1", "  ")),
            Err(ConnectorError::InvalidInput(f)) if f.field == "text"
        ));
        let mut bad_reply = outbound("1", "x");
        bad_reply.reply_to = Some("42".into());
        assert!(matches!(
            send_message_request("http://tg", &bad_reply),
            Err(ConnectorError::InvalidInput(f)) if f.field == "reply-to"
        ));
    }

    #[test]
    fn sent_message_key_matches_inbound_ids() {
        let sent: SentMessageResult = read_result(&Response::new(
            200,
            &[],
            r#"{"ok":true,"result":{"message_id":43,"date":1,"chat":{"id":987654321,"type":"private"},"text":"x"}}"#,
        ))
        .expect("message");
        assert_eq!(sent.key(), "987654321:43");
    }
}
