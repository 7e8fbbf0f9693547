//! Constructors for the parts of a [`Manifest`](crate::Manifest) that every connector writes.

use crate::{CredentialPlacement, CredentialRule, Manifest, PluginKind, SettingSpec, StreamSpec};

impl Manifest {
    /// A manifest with its identity and nothing else: no description, settings, hosts,
    /// credentials or streams, no webhooks, text limits, reply windows or OAuth2. Fill in the
    /// rest with struct update syntax, so that what a connector leaves out needs no line:
    ///
    /// ```
    /// # use switchboard_plugin_sdk::{Manifest, PluginKind, StreamSpec};
    /// let manifest = Manifest {
    ///     description: "Direct messages from Acme Chat".into(),
    ///     streams: vec![StreamSpec::new("messages", "New messages", "*/30 * * * * *")],
    ///     ..Manifest::new(PluginKind::Social, "acme-chat", "Acme Chat", "0.1.0")
    /// };
    /// assert!(!manifest.accepts_webhooks && manifest.oauth2.is_none());
    /// ```
    pub fn new(kind: PluginKind, id: &str, name: &str, version: &str) -> Self {
        Manifest {
            id: id.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            kind,
            description: String::new(),
            settings: Vec::new(),
            http_hosts: Vec::new(),
            credentials: Vec::new(),
            streams: Vec::new(),
            accepts_webhooks: false,
            text_limits: Vec::new(),
            reply_windows: Vec::new(),
            oauth2: None,
        }
    }

    /// The setting with this key, if the manifest declares one.
    pub fn setting(&self, key: &str) -> Option<&SettingSpec> {
        self.settings.iter().find(|spec| spec.key == key)
    }
}

impl CredentialRule {
    /// The same credential for each of `host_patterns`, such as a service's own host and a
    /// `{base_url}` setting that may replace it.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::{CredentialPlacement, CredentialRule};
    /// let rules = CredentialRule::for_hosts(
    ///     ["https://{subdomain}.acme.example", "{base_url}"],
    ///     CredentialPlacement::Bearer("{api_token}".into()),
    /// );
    /// assert_eq!(rules.len(), 2);
    /// assert_eq!(rules[1].host_pattern, "{base_url}");
    /// ```
    pub fn for_hosts<I>(host_patterns: I, placement: CredentialPlacement) -> Vec<Self>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        host_patterns
            .into_iter()
            .map(|host| CredentialRule {
                host_pattern: host.into(),
                placement: placement.clone(),
            })
            .collect()
    }
}

impl SettingSpec {
    /// An optional, non-secret setting without a default; chain [`required`](Self::required),
    /// [`secret`](Self::secret) or [`with_default`](Self::with_default) to change that.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::SettingSpec;
    /// let token = SettingSpec::new("api_token", "API token", "From the admin console.")
    ///     .required()
    ///     .secret();
    /// assert!(token.required && token.secret && token.default_value.is_none());
    /// ```
    pub fn new(key: &str, label: &str, description: &str) -> Self {
        SettingSpec {
            key: key.to_string(),
            label: label.to_string(),
            description: description.to_string(),
            secret: false,
            required: false,
            default_value: None,
        }
    }

    /// The admin must fill it in.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Its value is a secret: encrypted at rest, never shown again, and given to the plugin
    /// only when the manifest asks with [`secret_for_plugin`](crate::secret_for_plugin).
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The value the admin form starts with.
    pub fn with_default(mut self, value: impl Into<String>) -> Self {
        self.default_value = Some(value.into());
        self
    }
}

impl StreamSpec {
    /// A pollable stream named `name`, polled on `default_schedule` (a cron expression with
    /// seconds, such as `*/30 * * * * *`) until an admin changes it.
    pub fn new(name: &str, description: &str, default_schedule: &str) -> Self {
        StreamSpec {
            name: name.to_string(),
            description: description.to_string(),
            default_schedule: default_schedule.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_builders() {
        let plain = SettingSpec::new("k", "Label", "What it is");
        assert_eq!(
            plain,
            SettingSpec {
                key: "k".into(),
                label: "Label".into(),
                description: "What it is".into(),
                secret: false,
                required: false,
                default_value: None,
            }
        );
        let built = plain.clone().required().with_default("3600");
        assert!(built.required && !built.secret);
        assert_eq!(built.default_value.as_deref(), Some("3600"));
        assert!(plain.secret().secret);
        let stream = StreamSpec::new("ticket-changes", "Changes", "*/30 * * * * *");
        assert_eq!(stream.name, "ticket-changes");
        assert_eq!(stream.default_schedule, "*/30 * * * * *");
    }

    #[test]
    fn manifest_starts_empty_and_finds_settings() {
        let manifest = Manifest {
            settings: vec![SettingSpec::new("k", "K", "").required()],
            ..Manifest::new(PluginKind::Helpdesk, "acme", "Acme", "1.2.3")
        };
        assert_eq!(
            (manifest.id.as_str(), manifest.name.as_str()),
            ("acme", "Acme")
        );
        assert_eq!(manifest.version, "1.2.3");
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert!(manifest.description.is_empty() && manifest.http_hosts.is_empty());
        assert!(manifest.credentials.is_empty() && manifest.streams.is_empty());
        assert!(manifest.text_limits.is_empty() && manifest.reply_windows.is_empty());
        assert!(!manifest.accepts_webhooks && manifest.oauth2.is_none());
        assert!(manifest.setting("k").is_some_and(|s| s.required));
        assert!(manifest.setting("other").is_none());
    }

    #[test]
    fn one_credential_for_several_hosts() {
        let placement = CredentialPlacement::Bearer("{t}".into());
        let rules = CredentialRule::for_hosts(["a", "b"], placement.clone());
        assert_eq!(
            rules,
            vec![
                CredentialRule {
                    host_pattern: "a".into(),
                    placement: placement.clone()
                },
                CredentialRule {
                    host_pattern: "b".into(),
                    placement
                },
            ]
        );
    }
}
