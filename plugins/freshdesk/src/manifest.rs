//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::helpdesk::{initial_lookback_setting, ticket_changes_stream};
use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const DOMAIN: &str = "domain";
    pub const API_KEY: &str = "api_key";
    pub const BASE_URL: &str = "base_url";
    pub const SOURCE: &str = "source";
    pub const ON_HOLD_STATUS: &str = "on_hold_status";
    pub const EXTERNAL_ID_FIELD: &str = "external_id_field";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const WEBHOOK_SECRET_HEADER: &str = "webhook_secret_header";
    pub const INTEGRATION_AGENT_ID: &str = "integration_agent_id";
}

/// Chat: the closest of Freshdesk's documented sources to a social conversation.
pub const DEFAULT_SOURCE: u64 = 7;
pub const DEFAULT_SECRET_HEADER: &str = "x-switchboard-secret";

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let account_host = format!("https://{{{}}}.freshdesk.com", settings::DOMAIN);
    let base_url_host = format!("{{{}}}", settings::BASE_URL);
    // Freshdesk's API key is the Basic user name; the password is ignored, `X` by custom.
    let basic = CredentialPlacement::Basic(BasicCredential {
        username: format!("{{{}}}", settings::API_KEY),
        password: "X".to_string(),
    });
    let mut credentials = CredentialRule::for_hosts([&account_host, &base_url_host], basic);
    // Webhook deliveries are checked here against this secret; the API credentials stay with
    // the host.
    credentials.push(secret_for_plugin(settings::WEBHOOK_SECRET));
    Manifest {
        description: "Files social conversations as Freshdesk tickets and syncs agents' replies, \
                      private notes and status changes back, by polling the ticket list and \
                      through automation-rule webhooks."
            .to_string(),
        settings: vec![
            SettingSpec::new(
                settings::DOMAIN,
                "Domain",
                "The account's name: `acme` for https://acme.freshdesk.com.",
            )
            .required(),
            SettingSpec::new(
                settings::API_KEY,
                "API key",
                "The API key from the profile settings of the agent the hub acts as. \
                 Replies and notes the hub files appear under this agent.",
            )
            .secret()
            .required(),
            SettingSpec::new(
                settings::BASE_URL,
                "API base URL",
                "Optional. Replaces https://<domain>.freshdesk.com for API calls, for a proxy \
                 or a test double.",
            ),
            SettingSpec::new(
                settings::SOURCE,
                "Ticket source",
                "The source number new tickets get: 7 (Chat) by default, or a custom \
                 source (101 and up) such as \"Social (hub)\".",
            )
            .with_default(DEFAULT_SOURCE.to_string()),
            SettingSpec::new(
                settings::ON_HOLD_STATUS,
                "On-hold status",
                "Optional. The number of the custom status (6 and up) that means on hold; \
                 without it, on hold is written as Pending.",
            ),
            SettingSpec::new(
                settings::EXTERNAL_ID_FIELD,
                "External id field",
                "Optional. The name of a custom single-line text ticket field (such as \
                 `cf_switchboard_id`) that keeps the hub's conversation id. Freshdesk tickets \
                 have no external id of their own.",
            ),
            SettingSpec::new(
                settings::WEBHOOK_SECRET,
                "Webhook secret",
                "A random string the automation rule's webhook sends in the header below \
                 (or as the basic-auth password). Required to accept webhooks; leave empty \
                 when only polling.",
            )
            .secret(),
            SettingSpec::new(
                settings::WEBHOOK_SECRET_HEADER,
                "Webhook secret header",
                "The custom header that carries the webhook secret.",
            )
            .with_default(DEFAULT_SECRET_HEADER),
            SettingSpec::new(
                settings::INTEGRATION_AGENT_ID,
                "Integration agent id",
                "Optional. The id of the API key's agent, whose conversations are the hub's \
                 own. Looked up with agents/me when empty.",
            ),
            initial_lookback_setting(),
        ],
        http_hosts: vec![account_host, base_url_host],
        credentials,
        streams: vec![ticket_changes_stream(
            "Agents' replies, private notes and status changes on tickets the hub created, \
             from the ticket list ordered by update time.",
        )],
        accepts_webhooks: true,
        ..Manifest::new(
            PluginKind::Helpdesk,
            "freshdesk",
            "Freshdesk",
            env!("CARGO_PKG_VERSION"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_hosts_and_basic_auth_with_the_key() {
        let manifest = manifest();
        assert_eq!(manifest.id, "freshdesk");
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(
            manifest.http_hosts,
            vec![
                "https://{domain}.freshdesk.com".to_string(),
                "{base_url}".to_string()
            ]
        );
        assert!(manifest
            .credentials
            .contains(&secret_for_plugin("webhook_secret")));
        assert!(manifest
            .credentials
            .iter()
            .filter(|rule| rule.host_pattern != "plugin")
            .all(|rule| rule.placement
                == CredentialPlacement::Basic(BasicCredential {
                    username: "{api_key}".into(),
                    password: "X".into(),
                })));
        assert_eq!(manifest.streams[0].name, "ticket-changes");
        assert!(manifest.accepts_webhooks);
        let key = manifest.setting("api_key").expect("api_key");
        assert!(key.secret && key.required);
        let secret = manifest.setting("webhook_secret").expect("webhook_secret");
        assert!(secret.secret && !secret.required);
    }
}
