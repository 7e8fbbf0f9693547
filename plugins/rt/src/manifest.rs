//! What the plugin declares to the host: its setting keys, its stream and `describe()`.

use switchboard_plugin_sdk::helpdesk::{initial_lookback_setting, ticket_changes_stream};
use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const BASE_URL: &str = "base_url";
    pub const WEB_PATH: &str = "web_path";
    pub const QUEUE: &str = "queue";
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const AUTH_TOKEN: &str = "auth_token";
    pub const EXTERNAL_ID_FIELD: &str = "external_id_field";
    pub const IDEMPOTENCY_FIELD: &str = "idempotency_field";
}

pub const DEFAULT_QUEUE: &str = "General";
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "Switchboard External ID";
pub const DEFAULT_IDEMPOTENCY_FIELD: &str = "Switchboard Idempotency Key";

/// What the plugin declares to the host.
pub fn manifest() -> Manifest {
    let host = format!("{{{}}}", settings::BASE_URL);
    Manifest {
        description: "Files social conversations as Request Tracker 5 tickets through REST 2.0 \
                      and syncs agents' replies, comments and status changes back by polling \
                      the queue's transactions."
            .to_string(),
        settings: vec![
            SettingSpec::new(
                settings::BASE_URL,
                "RT address",
                "Scheme, host and port of RT's web server, such as https://rt.example.com.",
            )
            .required(),
            SettingSpec::new(
                settings::WEB_PATH,
                "Web path",
                "RT's $WebPath when it is served below the root, such as /rt.",
            ),
            SettingSpec::new(
                settings::QUEUE,
                "Queue",
                "The queue tickets are filed in and changes are read from.",
            )
            .with_default(DEFAULT_QUEUE),
            SettingSpec::new(
                settings::USERNAME,
                "Integration user",
                "Login of the privileged RT user the hub works as; its own transactions \
                     are the hub's echoes. It needs SeeQueue, CreateTicket, ShowTicket, \
                     ShowTicketComments, ReplyToTicket, CommentOnTicket, ModifyTicket and \
                     SeeCustomField/ModifyCustomField on the queue, and AdminUsers to find \
                     and create requesters.",
            )
            .required(),
            SettingSpec::new(
                settings::PASSWORD,
                "Password",
                "The integration user's password (HTTP Basic auth). Set this or an auth \
                     token.",
            )
            .secret(),
            SettingSpec::new(
                settings::AUTH_TOKEN,
                "Auth token",
                "An auth token of the integration user (Logged in as > Settings > Auth \
                     Tokens), sent as `Authorization: token ...`. Set this or a password.",
            )
            .secret(),
            SettingSpec::new(
                settings::EXTERNAL_ID_FIELD,
                "External id custom field",
                "A single-value ticket custom field, applied to the queue, that keeps the \
                     hub's id of the conversation. Tickets without a value are not the hub's \
                     and are skipped when polling.",
            )
            .with_default(DEFAULT_EXTERNAL_ID_FIELD),
            SettingSpec::new(
                settings::IDEMPOTENCY_FIELD,
                "Idempotency custom field",
                "A single-value ticket custom field, applied to the queue, that makes \
                     ticket creation safe to retry.",
            )
            .with_default(DEFAULT_IDEMPOTENCY_FIELD),
            initial_lookback_setting(),
        ],
        http_hosts: vec![host.clone()],
        // Each rule applies only when its settings are filled in.
        credentials: vec![
            CredentialRule {
                host_pattern: host.clone(),
                placement: CredentialPlacement::Basic(BasicCredential {
                    username: format!("{{{}}}", settings::USERNAME),
                    password: format!("{{{}}}", settings::PASSWORD),
                }),
            },
            CredentialRule {
                host_pattern: host,
                placement: CredentialPlacement::Header(NamedTemplate {
                    name: "Authorization".to_string(),
                    value: format!("token {{{}}}", settings::AUTH_TOKEN),
                }),
            },
        ],
        streams: vec![ticket_changes_stream(
            "Agents' replies and comments and status and priority changes in the queue, from \
             RT's ticket transactions.",
        )],
        ..Manifest::new(
            PluginKind::Helpdesk,
            "rt",
            "Request Tracker",
            env!("CARGO_PKG_VERSION"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_one_host_and_both_credentials() {
        let manifest = manifest();
        assert_eq!(manifest.id, "rt");
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(manifest.http_hosts, vec!["{base_url}".to_string()]);
        assert!(!manifest.accepts_webhooks);
        assert_eq!(manifest.streams[0].name, "ticket-changes");
        assert!(matches!(
            &manifest.credentials[0].placement,
            CredentialPlacement::Basic(b) if b.username == "{username}" && b.password == "{password}"
        ));
        assert!(matches!(
            &manifest.credentials[1].placement,
            CredentialPlacement::Header(h) if h.name == "Authorization" && h.value == "token {auth_token}"
        ));
        let secret: Vec<&str> = manifest
            .settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(secret, ["password", "auth_token"]);
    }
}
