//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const SUBDOMAIN: &str = "subdomain";
    pub const EMAIL: &str = "email";
    pub const API_TOKEN: &str = "api_token";
    pub const BASE_URL: &str = "base_url";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const INTEGRATION_USER_ID: &str = "integration_user_id";
    pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";
}

/// The one pollable stream, named as on every helpdesk.
pub const TICKET_CHANGES_STREAM: &str = "ticket-changes";

/// The stream's name before every helpdesk used one name. Migration 0007 renames stored jobs;
/// an installation made with an older build of this plugin may still poll by it.
pub const LEGACY_STREAM: &str = "ticket-events";

/// How far back the first poll of a new installation looks.
pub const DEFAULT_LOOKBACK_SECS: u64 = 3600;

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let account_host = format!("https://{{{}}}.zendesk.com", settings::SUBDOMAIN);
    let base_url_host = format!("{{{}}}", settings::BASE_URL);
    let basic = CredentialPlacement::Basic(BasicCredential {
        username: format!("{{{}}}/token", settings::EMAIL),
        password: format!("{{{}}}", settings::API_TOKEN),
    });
    Manifest {
        id: "zendesk".to_string(),
        name: "Zendesk Support".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Helpdesk,
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
            SettingSpec::new(
                settings::INITIAL_LOOKBACK_SECS,
                "Initial look-back (seconds)",
                "How far back the first poll of the ticket-changes stream starts.",
            )
            .with_default(DEFAULT_LOOKBACK_SECS.to_string()),
        ],
        http_hosts: vec![account_host.clone(), base_url_host.clone()],
        credentials: vec![
            CredentialRule {
                host_pattern: account_host,
                placement: basic.clone(),
            },
            CredentialRule {
                host_pattern: base_url_host,
                placement: basic,
            },
            // Webhook deliveries are checked here against this secret; the API credentials
            // stay with the host.
            secret_for_plugin(settings::WEBHOOK_SECRET),
        ],
        streams: vec![StreamSpec::new(
            TICKET_CHANGES_STREAM,
            "Agent replies, internal notes and status changes on tickets the hub created, \
             from the incremental ticket export.",
            "*/30 * * * * *",
        )],
        accepts_webhooks: true,
        text_limits: Vec::new(),
        reply_windows: Vec::new(),
        oauth2: None,
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
        let token = manifest
            .settings
            .iter()
            .find(|s| s.key == "api_token")
            .expect("api_token");
        assert!(token.secret && token.required);
    }
}
