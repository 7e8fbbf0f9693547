//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::helpdesk::{initial_lookback_setting, ticket_changes_stream};
use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const SUBDOMAIN: &str = "subdomain";
    pub const EMAIL: &str = "email";
    pub const API_TOKEN: &str = "api_token";
    pub const BASE_URL: &str = "base_url";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const INTEGRATION_USER_ID: &str = "integration_user_id";
}

/// The stream's name before every helpdesk used one name. Migration 0007 renames stored jobs;
/// an installation made with an older build of this plugin may still poll by it.
pub const LEGACY_STREAM: &str = "ticket-events";

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let account_host = format!("https://{{{}}}.zendesk.com", settings::SUBDOMAIN);
    let base_url_host = format!("{{{}}}", settings::BASE_URL);
    let basic = CredentialPlacement::Basic(BasicCredential {
        username: format!("{{{}}}/token", settings::EMAIL),
        password: format!("{{{}}}", settings::API_TOKEN),
    });
    let mut credentials = CredentialRule::for_hosts([&account_host, &base_url_host], basic);
    // Webhook deliveries are checked here against this secret; the API credentials stay with
    // the host.
    credentials.push(secret_for_plugin(settings::WEBHOOK_SECRET));
    Manifest {
        description: "Files social conversations as Zendesk tickets and syncs agents' public \
                      replies, internal notes and status changes back, by polling the \
                      incremental export and through signed event webhooks."
            .to_string(),
        settings: vec![
            SettingSpec::new(
                settings::SUBDOMAIN,
                "Subdomain",
                "The account's subdomain: `acme` for https://acme.zendesk.com.",
            )
            .required(),
            SettingSpec::new(
                settings::EMAIL,
                "Agent email",
                "Email of the Zendesk user the API token belongs to. Replies and notes the \
                 hub files appear under this user. Polling reads the incremental export, \
                 which needs an admin.",
            )
            .required(),
            SettingSpec::new(
                settings::API_TOKEN,
                "API token",
                "An API token from Admin Center > Apps and integrations > Zendesk API.",
            )
            .secret()
            .required(),
            SettingSpec::new(
                settings::BASE_URL,
                "API base URL",
                "Optional. Replaces https://<subdomain>.zendesk.com for API calls, for a proxy \
                 or a test double.",
            ),
            SettingSpec::new(
                settings::WEBHOOK_SECRET,
                "Webhook signing secret",
                "The signing secret of the Zendesk webhook that posts ticket events here \
                 (subscribe it to ticket comment added and status changed). Required to \
                 accept webhooks; leave empty when only polling.",
            )
            .secret(),
            SettingSpec::new(
                settings::INTEGRATION_USER_ID,
                "Integration user id",
                "Optional. The numeric id of the API token's owner, whose comments are the \
                 hub's own. Looked up with users/me when empty.",
            ),
            initial_lookback_setting(),
        ],
        http_hosts: vec![account_host, base_url_host],
        credentials,
        streams: vec![ticket_changes_stream(
            "Agent replies, internal notes and status changes on tickets the hub created, \
             from the incremental ticket export.",
        )],
        accepts_webhooks: true,
        ..Manifest::new(
            PluginKind::Helpdesk,
            "zendesk",
            "Zendesk Support",
            env!("CARGO_PKG_VERSION"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_hosts_and_basic_auth() {
        let manifest = manifest();
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(
            manifest.http_hosts,
            vec![
                "https://{subdomain}.zendesk.com".to_string(),
                "{base_url}".to_string()
            ]
        );
        assert_eq!(manifest.credentials.len(), 3);
        assert!(manifest
            .credentials
            .contains(&secret_for_plugin("webhook_secret")));
        assert!(manifest
            .credentials
            .iter()
            .filter(|rule| rule.host_pattern != "plugin")
            .all(|rule| rule.placement
                == CredentialPlacement::Basic(BasicCredential {
                    username: "{email}/token".into(),
                    password: "{api_token}".into(),
                })));
        assert_eq!(manifest.streams[0].name, "ticket-changes");
        assert_eq!(manifest.streams[0].default_schedule, "*/30 * * * * *");
        assert!(manifest.accepts_webhooks);
        assert!(manifest.text_limits.is_empty());
        let token = manifest.setting("api_token").expect("api_token");
        assert!(token.secret && token.required);
    }
}
