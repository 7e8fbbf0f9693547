//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::helpdesk::{initial_lookback_setting, ticket_changes_stream};
use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const INSTANCE_URL: &str = "instance_url";
    pub const LOGIN_URL: &str = "login_url";
    pub const API_VERSION: &str = "api_version";
    pub const CLIENT_NAME: &str = "client_name";
    pub const CONTACT_EXTERNAL_ID_FIELD: &str = "contact_external_id_field";
    pub const CASE_EXTERNAL_ID_FIELD: &str = "case_external_id_field";
    pub const STATUS_MAP: &str = "status_map";
    pub const PRIORITY_MAP: &str = "priority_map";
    pub const ORIGIN_MAP: &str = "origin_map";
    pub const INTEGRATION_USER_ID: &str = "integration_user_id";
    // Read by the host's OAuth code, not by the plugin.
    pub const OAUTH_CLIENT_ID: &str = "oauth_client_id";
    pub const OAUTH_CLIENT_SECRET: &str = "oauth_client_secret";
    pub const OAUTH_JWT_PRIVATE_KEY: &str = "oauth_jwt_private_key";
    pub const OAUTH_JWT_USERNAME: &str = "oauth_jwt_username";
}

pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
pub const DEFAULT_API_VERSION: &str = "v60.0";
pub const DEFAULT_CLIENT_NAME: &str = "switchboard";
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "Switchboard_External_Id__c";

/// The stream's name before every helpdesk used one name. Migration 0007 renames stored jobs;
/// an installation made with an older build of this plugin may still poll by it.
pub const LEGACY_STREAM: &str = "ticket-events";

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let instance = format!("{{{}}}", settings::INSTANCE_URL);
    let login = format!("{{{}}}", settings::LOGIN_URL);
    Manifest {
        description: "Files social conversations as Salesforce Cases (Contacts and Cases upserted \
                      by external id) and syncs agents' CaseComments and status changes back by \
                      polling SOQL."
            .to_string(),
        settings: vec![
            SettingSpec::new(
                settings::INSTANCE_URL,
                "Instance URL",
                "The org's My Domain URL, such as https://acme.my.salesforce.com (the \
                     `instance_url` of the OAuth token answer).",
            )
            .required(),
            SettingSpec::new(
                settings::LOGIN_URL,
                "Login URL",
                "Where OAuth runs: https://login.salesforce.com, https://test.salesforce.com \
                     for sandboxes, or the My Domain URL.",
            )
            .with_default(DEFAULT_LOGIN_URL),
            SettingSpec::new(
                settings::API_VERSION,
                "API version",
                "The REST API version, like v60.0.",
            )
            .with_default(DEFAULT_API_VERSION),
            SettingSpec::new(
                settings::CLIENT_NAME,
                "Client name",
                "Sent as `Sforce-Call-Options: client=<name>` on every call, so the org's \
                     change events show which writes are the hub's.",
            )
            .with_default(DEFAULT_CLIENT_NAME),
            SettingSpec::new(
                settings::CONTACT_EXTERNAL_ID_FIELD,
                "Contact external id field",
                "A Text field on Contact marked External ID and Unique; holds \
                     `<network>:<user id>`.",
            )
            .with_default(DEFAULT_EXTERNAL_ID_FIELD),
            SettingSpec::new(
                settings::CASE_EXTERNAL_ID_FIELD,
                "Case external id field",
                "A Text field on Case marked External ID and Unique; holds the hub's key of \
                     the ticket, which makes creating a case idempotent.",
            )
            .with_default(DEFAULT_EXTERNAL_ID_FIELD),
            SettingSpec::new(
                settings::STATUS_MAP,
                "Status mapping",
                "Case Status values and the hub's statuses (new, open, pending, on-hold, \
                     solved, closed) as `Value=status` pairs, comma-separated. Unlisted values \
                     read as open, or closed when the status closes the case.",
            )
            .with_default(crate::mapping::DEFAULT_STATUS_MAP),
            SettingSpec::new(
                settings::PRIORITY_MAP,
                "Priority mapping",
                "Case Priority values and the hub's priorities (low, normal, high, urgent) \
                     as `Value=priority` pairs.",
            )
            .with_default(crate::mapping::DEFAULT_PRIORITY_MAP),
            SettingSpec::new(
                settings::ORIGIN_MAP,
                "Origin mapping",
                "Case Origin per channel as `channel=Value` pairs (`telegram=Telegram`); \
                     `*` for the rest. The values must exist in the org's Origin picklist.",
            )
            .with_default(crate::mapping::DEFAULT_ORIGIN_MAP),
            SettingSpec::new(
                settings::INTEGRATION_USER_ID,
                "Integration user id",
                "Optional. The id (005...) of the user the hub connects as, whose comments and \
                 edits are the hub's own. Looked up with userinfo when empty.",
            ),
            initial_lookback_setting(),
            SettingSpec::new(
                settings::OAUTH_CLIENT_ID,
                "OAuth consumer key",
                "The connected app's consumer key, for the hub's OAuth flows.",
            ),
            SettingSpec::new(
                settings::OAUTH_CLIENT_SECRET,
                "OAuth consumer secret",
                "The connected app's consumer secret (web server and refresh token flows).",
            )
            .secret(),
            SettingSpec::new(
                settings::OAUTH_JWT_PRIVATE_KEY,
                "JWT private key",
                "For the JWT bearer flow: the PEM private key whose certificate is uploaded \
                     to the connected app.",
            )
            .secret(),
            SettingSpec::new(
                settings::OAUTH_JWT_USERNAME,
                "JWT username",
                "For the JWT bearer flow: the username of the pre-authorized integration user.",
            ),
        ],
        http_hosts: vec![instance.clone()],
        credentials: vec![CredentialRule {
            host_pattern: instance,
            placement: CredentialPlacement::Bearer("{oauth.access-token}".to_string()),
        }],
        streams: vec![ticket_changes_stream(
            "CaseComments and status changes on Cases the hub created, polled with SOQL on \
             SystemModstamp.",
        )],
        oauth2: Some(Oauth2Spec {
            authorize_url: format!("{login}/services/oauth2/authorize"),
            token_url: format!("{login}/services/oauth2/token"),
            scopes: vec!["api".to_string(), "refresh_token".to_string()],
            flows: vec![
                Oauth2Flow::AuthorizationCodePkce,
                Oauth2Flow::RefreshToken,
                Oauth2Flow::JwtBearer,
            ],
        }),
        ..Manifest::new(
            PluginKind::Helpdesk,
            "salesforce",
            "Salesforce Service Cloud",
            env!("CARGO_PKG_VERSION"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_oauth_and_bearer_credentials() {
        let manifest = manifest();
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(manifest.http_hosts, vec!["{instance_url}".to_string()]);
        assert_eq!(
            manifest.credentials,
            vec![CredentialRule {
                host_pattern: "{instance_url}".into(),
                placement: CredentialPlacement::Bearer("{oauth.access-token}".into()),
            }]
        );
        let oauth = manifest.oauth2.as_ref().expect("oauth2");
        assert_eq!(oauth.token_url, "{login_url}/services/oauth2/token");
        assert_eq!(oauth.authorize_url, "{login_url}/services/oauth2/authorize");
        assert_eq!(oauth.scopes, vec!["api", "refresh_token"]);
        assert_eq!(oauth.flows.len(), 3);
        assert!(!manifest.accepts_webhooks);
        let secret = |key: &str| manifest.setting(key).map(|s| (s.secret, s.required));
        assert_eq!(secret("oauth_client_secret"), Some((true, false)));
        assert_eq!(secret("oauth_jwt_private_key"), Some((true, false)));
        assert_eq!(secret("oauth_client_id"), Some((false, false)));
        assert_eq!(secret("oauth_jwt_username"), Some((false, false)));
        assert_eq!(secret("instance_url"), Some((false, true)));
    }
}
