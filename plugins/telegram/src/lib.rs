//! # Telegram connector for Switchboard
//!
//! Brings messages sent to a Telegram bot into the hub and sends agents' replies back, through
//! the Bot API.
//!
//! - **Inbound**: webhook deliveries (checked against the `X-Telegram-Bot-Api-Secret-Token`
//!   header) or the `updates` stream, which polls `getUpdates`. Telegram refuses `getUpdates`
//!   while a webhook is set, so an installation uses one or the other. Private chats become
//!   direct messages; groups, supergroups and forum topics become public comments. Edits arrive
//!   as new messages marked `[edited]`. Telegram Business chats are supported: their connection
//!   id travels as the reply handle.
//! - **Outbound**: `sendMessage`, threaded with `reply_parameters` when the hub names the
//!   message being answered.
//! - **Ids**: a message is `<chat_id>:<message_id>` (message ids are only unique within a chat),
//!   a thread is `<chat_id>` or `<chat_id>:<topic_id>`.
//! - **Files** travel as metadata with pseudo URLs `tg-file:<file_id>`: a real download URL
//!   would contain the bot token. Fetch them with the Bot API's `getFile`.
//!
//! The plugin never sees the token in a URL it builds: the host adds `/bot<token>` in front of
//! every request path to `api_base`.

mod api;
mod updates;

use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::{
    OutboundMessage, PollPage, SentMessage, SocialConnector, WebhookOutcome,
};

use crate::api::{SentMessageResult, MAX_TEXT_UTF16, UPDATES_LIMIT};
use crate::updates::{BotIdentity, Update};

/// Setting keys.
mod settings {
    pub const BOT_TOKEN: &str = "bot_token";
    pub const API_BASE: &str = "api_base";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const BOT_ID: &str = "bot_id";
}

/// The public Bot API endpoint, used unless `api_base` says otherwise.
const DEFAULT_API_BASE: &str = "https://api.telegram.org";

/// The one pollable stream.
const UPDATES_STREAM: &str = "updates";

/// The header Telegram puts the webhook's `secret_token` in (lower-cased by the host).
const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The Telegram connector.
pub struct Telegram;

impl SocialConnector for Telegram {
    fn describe() -> Manifest {
        manifest()
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        verify_secret_token(ctx.setting(settings::WEBHOOK_SECRET), &request)?;
        let update: Update = serde_json::from_slice(&request.body).map_err(|err| {
            ConnectorError::invalid("body", format!("not a Telegram update: {err}"))
        })?;
        let bot = bot_identity(ctx, update.sent_by_a_bot())?;
        let events: Vec<_> = updates::event_from_update(&update, bot)
            .into_iter()
            .collect();
        log_debug!(
            "Telegram webhook received",
            update_id = update.update_id,
            events = events.len()
        );
        Ok(WebhookOutcome {
            response: webhook::ok(),
            events,
        })
    }

    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != UPDATES_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`; Telegram has only `{UPDATES_STREAM}`"),
            ));
        }
        let offset = cursor.as_deref().map(api::parse_offset).transpose()?;
        let response = api::get_updates_request(&api_base(ctx), offset).send()?;
        let raw_updates: Vec<serde_json::Value> = api::read_result(&response)?;
        let bot = bot_identity(ctx, updates::has_bot_sender(&raw_updates))?;
        let page = updates::page_from_updates(&raw_updates, UPDATES_LIMIT, bot);
        log_debug!(
            "polled Telegram updates",
            updates = raw_updates.len(),
            events = page.events.len(),
            has_more = page.has_more
        );
        Ok(page)
    }

    fn send(ctx: &Context, message: OutboundMessage) -> Result<SentMessage> {
        if !message.attachments.is_empty() {
            // Attachment URLs from a helpdesk are not reachable by Telegram's servers, and the
            // plugin cannot upload bytes it never sees.
            log_warn!(
                "Telegram send: attachments are not forwarded",
                count = message.attachments.len()
            );
        }
        let request = api::send_message_request(&api_base(ctx), &message)?;
        let response = request.send()?;
        let sent: SentMessageResult = api::read_result(&response)?;
        Ok(SentMessage {
            message_ids: vec![sent.key()],
        })
    }
}

switchboard_plugin_sdk::export_social!(Telegram);

/// `api_base` without a trailing slash, so method paths can be appended.
fn api_base(ctx: &Context) -> String {
    ctx.setting_or(settings::API_BASE, DEFAULT_API_BASE)
        .trim_end_matches('/')
        .to_string()
}

/// The bot's own user id, to recognise its own messages: the `bot_id` setting, else asked of
/// `getMe` when `needed` (a message from some bot is at hand). The bot token, whose first part
/// is the id, is the host's to inject: a plugin never sees it.
fn bot_identity(ctx: &Context, needed: bool) -> Result<BotIdentity> {
    let identity = BotIdentity::from_settings(ctx.setting(settings::BOT_ID), None);
    if identity.bot_id.is_some() || !needed {
        return Ok(identity);
    }
    let me: api::User = api::read_result(&api::get_me_request(&api_base(ctx)).send()?)?;
    Ok(BotIdentity {
        bot_id: Some(me.id),
    })
}

/// Checks the secret token Telegram sends with every webhook delivery.
///
/// Without a configured secret anyone who learns the webhook URL could inject messages, so
/// unsigned deliveries are refused rather than trusted.
fn verify_secret_token(expected: Option<&str>, request: &WebhookRequest) -> Result<()> {
    let Some(expected) = expected else {
        return Err(ConnectorError::unauthorized(
            "webhook refused: set the `webhook_secret` setting and pass the same value as \
             `secret_token` to setWebhook",
        ));
    };
    match webhook::header(request, SECRET_TOKEN_HEADER) {
        Some(given) if signature::constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ConnectorError::unauthorized(
            "webhook refused: wrong X-Telegram-Bot-Api-Secret-Token",
        )),
        None => Err(ConnectorError::unauthorized(
            "webhook refused: no X-Telegram-Bot-Api-Secret-Token header",
        )),
    }
}

fn setting(key: &str, label: &str, description: &str) -> SettingSpec {
    SettingSpec {
        key: key.to_string(),
        label: label.to_string(),
        description: description.to_string(),
        secret: false,
        required: false,
        default_value: None,
    }
}

/// What the plugin declares to the host.
fn manifest() -> Manifest {
    let api_base_pattern = format!("{{{}}}", settings::API_BASE);
    Manifest {
        id: "telegram".to_string(),
        name: "Telegram".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Social,
        description: "Messages to a Telegram bot (private chats, groups, forum topics and \
                      Telegram Business chats) become conversations; agents' replies are sent \
                      back with sendMessage."
            .to_string(),
        settings: vec![
            SettingSpec {
                secret: true,
                required: true,
                ..setting(
                    settings::BOT_TOKEN,
                    "Bot token",
                    "The token @BotFather gave for the bot, like `123456:ABC-DEF...`. The \
                     number before the colon is the bot's user id.",
                )
            },
            SettingSpec {
                default_value: Some(DEFAULT_API_BASE.to_string()),
                ..setting(
                    settings::API_BASE,
                    "Bot API base URL",
                    "Where the Bot API is served, as `scheme://host[:port]` without a path \
                     (the host puts `/bot<token>` first in the path). Change it only for a \
                     self-hosted Bot API server or a test double.",
                )
            },
            SettingSpec {
                secret: true,
                ..setting(
                    settings::WEBHOOK_SECRET,
                    "Webhook secret token",
                    "The `secret_token` passed to setWebhook (1-256 characters of A-Z, a-z, \
                     0-9, `_` and `-`). Required to accept webhook deliveries; leave empty \
                     when polling.",
                )
            },
            setting(
                settings::BOT_ID,
                "Bot user id",
                "Optional. The bot's own user id, used to recognise its own messages; asked \
                 of getMe when empty and a bot's message arrives.",
            ),
        ],
        http_hosts: vec![api_base_pattern.clone()],
        credentials: vec![
            CredentialRule {
                host_pattern: api_base_pattern,
                placement: CredentialPlacement::PathPrefix(format!(
                    "/bot{{{}}}",
                    settings::BOT_TOKEN
                )),
            },
            // The secret token of webhook deliveries is compared here; the bot token is not
            // needed by the plugin and stays with the host.
            secret_for_plugin(settings::WEBHOOK_SECRET),
        ],
        streams: vec![StreamSpec {
            name: UPDATES_STREAM.to_string(),
            description: "New and edited messages from getUpdates. Only usable while no \
                          webhook is set for the bot."
                .to_string(),
            default_schedule: "*/10 * * * * *".to_string(),
        }],
        accepts_webhooks: true,
        text_limits: [Visibility::Private, Visibility::Public]
            .into_iter()
            .map(|visibility| TextLimit {
                visibility,
                max_length: MAX_TEXT_UTF16 as u32,
                unit: LengthUnit::Utf16Units,
            })
            .collect(),
        reply_windows: Vec::new(),
        oauth2: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(headers: &[(&str, &str)]) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: br#"{"update_id":1}"#.to_vec(),
        }
    }

    #[test]
    fn webhook_secret_must_match() {
        let good = request_with(&[("x-telegram-bot-api-secret-token", "s3cret_-A")]);
        assert!(verify_secret_token(Some("s3cret_-A"), &good).is_ok());
        assert!(matches!(
            verify_secret_token(Some("other"), &good),
            Err(ConnectorError::Unauthorized(_))
        ));
        assert!(matches!(
            verify_secret_token(Some("s3cret_-A"), &request_with(&[])),
            Err(ConnectorError::Unauthorized(_))
        ));
    }

    #[test]
    fn webhooks_are_refused_without_a_configured_secret() {
        let request = request_with(&[("x-telegram-bot-api-secret-token", "anything")]);
        assert!(matches!(
            verify_secret_token(None, &request),
            Err(ConnectorError::Unauthorized(m)) if m.contains("webhook_secret")
        ));
    }

    #[test]
    fn manifest_declares_token_injection_and_limits() {
        let manifest = manifest();
        assert_eq!(manifest.id, "telegram");
        assert_eq!(manifest.kind, PluginKind::Social);
        assert_eq!(manifest.http_hosts, vec!["{api_base}".to_string()]);
        assert_eq!(
            manifest.credentials,
            vec![
                CredentialRule {
                    host_pattern: "{api_base}".into(),
                    placement: CredentialPlacement::PathPrefix("/bot{bot_token}".into()),
                },
                CredentialRule {
                    host_pattern: "plugin".into(),
                    placement: CredentialPlacement::Header(NamedTemplate {
                        name: "webhook_secret".into(),
                        value: "{webhook_secret}".into(),
                    }),
                },
            ]
        );
        assert_eq!(manifest.streams[0].name, "updates");
        assert_eq!(manifest.streams[0].default_schedule, "*/10 * * * * *");
        assert!(manifest.accepts_webhooks);
        assert_eq!(manifest.text_limits.len(), 2);
        assert!(manifest
            .text_limits
            .iter()
            .all(|l| l.max_length == 4096 && l.unit == LengthUnit::Utf16Units));
        let token = manifest
            .settings
            .iter()
            .find(|s| s.key == "bot_token")
            .expect("bot_token setting");
        assert!(token.secret && token.required);
        let secret = manifest
            .settings
            .iter()
            .find(|s| s.key == "webhook_secret")
            .expect("webhook_secret setting");
        assert!(secret.secret && !secret.required);
    }
}
