//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::prelude::*;

use crate::api::MAX_TEXT_UTF16;

/// Setting keys.
pub mod settings {
    pub const BOT_TOKEN: &str = "bot_token";
    pub const API_BASE: &str = "api_base";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const BOT_ID: &str = "bot_id";
}

/// The public Bot API endpoint, used unless `api_base` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";

/// The one pollable stream.
pub const UPDATES_STREAM: &str = "updates";

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let api_base_pattern = format!("{{{}}}", settings::API_BASE);
    Manifest {
        description: "Messages to a Telegram bot (private chats, groups, forum topics and \
                      Telegram Business chats) become conversations; agents' replies are sent \
                      back with sendMessage."
            .to_string(),
        settings: vec![
            SettingSpec::new(
                settings::BOT_TOKEN,
                "Bot token",
                "The token @BotFather gave for the bot, like `123456:ABC-DEF...`. The \
                     number before the colon is the bot's user id.",
            )
            .secret()
            .required(),
            SettingSpec::new(
                settings::API_BASE,
                "Bot API base URL",
                "Where the Bot API is served, as `scheme://host[:port]` without a path \
                     (the host puts `/bot<token>` first in the path). Change it only for a \
                     self-hosted Bot API server or a test double.",
            )
            .with_default(DEFAULT_API_BASE),
            SettingSpec::new(
                settings::WEBHOOK_SECRET,
                "Webhook secret token",
                "The `secret_token` passed to setWebhook (1-256 characters of A-Z, a-z, \
                     0-9, `_` and `-`). Required to accept webhook deliveries; leave empty \
                     when polling.",
            )
            .secret(),
            SettingSpec::new(
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
        streams: vec![StreamSpec::new(
            UPDATES_STREAM,
            "New and edited messages from getUpdates. Only usable while no webhook is set for \
             the bot.",
            "*/10 * * * * *",
        )],
        accepts_webhooks: true,
        text_limits: [Visibility::Private, Visibility::Public]
            .into_iter()
            .map(|visibility| TextLimit {
                visibility,
                max_length: MAX_TEXT_UTF16 as u32,
                unit: LengthUnit::Utf16Units,
            })
            .collect(),
        ..Manifest::new(
            PluginKind::Social,
            "telegram",
            "Telegram",
            env!("CARGO_PKG_VERSION"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let token = manifest.setting("bot_token").expect("bot_token setting");
        assert!(token.secret && token.required);
        let secret = manifest
            .setting("webhook_secret")
            .expect("webhook_secret setting");
        assert!(secret.secret && !secret.required);
    }
}
