//! Constructors for the parts of a [`Manifest`](crate::Manifest) that every connector writes.

use crate::{SettingSpec, StreamSpec};

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
}
