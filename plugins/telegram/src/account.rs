//! The installation's typed settings, and every call the plugin makes to the Bot API through
//! the host. Requests and the reading of answers are in `api.rs`; updates become events in
//! `events.rs`.

use serde::Deserialize;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::OutboundMessage;

use crate::api::{self, SentMessageResult};
use crate::events::BotIdentity;
use crate::manifest::manifest;

/// The header Telegram puts the webhook's `secret_token` in (lower-cased by the host).
const SECRET_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The settings the plugin reads (the bot token is the host's to add).
#[derive(Debug, Deserialize)]
struct Settings {
    api_base: String,
    webhook_secret: Option<String>,
    bot_id: Option<String>,
}

/// One bot, as an installation's settings describe it.
#[derive(Debug)]
pub struct Account {
    /// `api_base` without a trailing slash, so method paths can be appended.
    api_base: String,
    webhook_secret: Option<String>,
    bot_id: Option<String>,
}

impl Account {
    /// The bot of the installation `ctx` is for.
    pub fn of(ctx: &Context) -> Result<Self> {
        let settings: Settings = ctx.parse_settings_with_defaults(&manifest().settings)?;
        Ok(Account {
            api_base: settings.api_base.trim_end_matches('/').to_string(),
            webhook_secret: settings.webhook_secret,
            bot_id: settings.bot_id,
        })
    }

    /// Checks the secret token of a webhook delivery against the `webhook_secret` setting.
    pub fn verify_webhook(&self, request: &WebhookRequest) -> Result<()> {
        verify_secret_token(self.webhook_secret.as_deref(), request)
    }

    /// The bot's own user id, to recognise its own messages: the `bot_id` setting, else asked
    /// of `getMe` when `needed` (a message from some bot is at hand). The bot token, whose
    /// first part is the id, is the host's to inject: a plugin never sees it.
    pub fn bot_identity(&self, needed: bool) -> Result<BotIdentity> {
        let identity = BotIdentity::from_settings(self.bot_id.as_deref(), None);
        if identity.bot_id.is_some() || !needed {
            return Ok(identity);
        }
        let me: api::User = api::read_result(&api::get_me_request(&self.api_base).send()?)?;
        Ok(BotIdentity {
            bot_id: Some(me.id),
        })
    }

    /// The updates after `offset`, as `getUpdates` lists them.
    pub fn updates(&self, offset: Option<i64>) -> Result<Vec<serde_json::Value>> {
        let response = api::get_updates_request(&self.api_base, offset).send()?;
        api::read_result(&response)
    }

    /// Sends `message` with `sendMessage`.
    pub fn send_message(&self, message: &OutboundMessage) -> Result<SentMessageResult> {
        let response = api::send_message_request(&self.api_base, message)?.send()?;
        api::read_result(&response)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(headers: &[(&str, &str)]) -> WebhookRequest {
        webhook::post(headers, br#"{"update_id":1}"#.as_slice())
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
    fn api_base_loses_its_trailing_slash() {
        let account =
            Account::of(&Context::new("i", [("api_base", "http://127.0.0.1:9/")])).expect("ok");
        assert_eq!(account.api_base, "http://127.0.0.1:9");
        let account = Account::of(&Context::new("i", [("bot_id", "42")])).expect("ok");
        assert_eq!(account.api_base, crate::manifest::DEFAULT_API_BASE);
        assert_eq!(
            account.bot_identity(false).ok().and_then(|b| b.bot_id),
            Some(42)
        );
    }
}
