//! [`Context`]: the installation a call is made for, and its settings.

use std::collections::BTreeMap;

use crate::{CallContext, ConnectorError, Result};

/// What every operation receives: which installation the call is for, and its settings.
///
/// Settings are the values the admin filled in for the [`SettingSpec`](crate::SettingSpec)s of
/// the plugin's manifest. Secret ones are left out, except those the manifest asks to see with
/// [`secret_for_plugin`](crate::secret_for_plugin) (to check a webhook signature): the host
/// puts the others into requests itself. Never log a secret; the host redacts them from plugin
/// logs as a second line of defence.
///
/// An empty value counts as absent: admin forms submit empty strings for fields left blank.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The installation this call is made for; handy as a log field.
    pub installation_id: String,
    settings: BTreeMap<String, String>,
}

impl Context {
    /// Builds a context by hand, for a plugin's own unit tests.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::Context;
    /// let ctx = Context::new("inst-1", [("subdomain", "acme")]);
    /// assert_eq!(ctx.setting("subdomain"), Some("acme"));
    /// ```
    pub fn new<K, V>(
        installation_id: impl Into<String>,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Context {
            installation_id: installation_id.into(),
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of setting `key`, or `None` when it is absent or empty.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of setting `key`, or an `InvalidInput` error naming it.
    ///
    /// Use `?` on it: a missing required setting is the admin's to fix, not worth retrying.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.setting(key)
            .ok_or_else(|| ConnectorError::invalid(key, format!("setting `{key}` is required")))
    }

    /// The value of setting `key`, or `default` when it is absent or empty.
    pub fn setting_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.setting(key).unwrap_or(default)
    }

    /// Every setting the call received, in key order (empty values included).
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl From<CallContext> for Context {
    fn from(ctx: CallContext) -> Self {
        Context {
            installation_id: ctx.installation_id,
            // Later duplicates win, as they would in a form post.
            settings: ctx.settings.into_iter().map(|s| (s.key, s.value)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InvalidField, Setting};

    fn ctx() -> Context {
        CallContext {
            installation_id: "inst".into(),
            settings: vec![
                Setting {
                    key: "token".into(),
                    value: "abc".into(),
                },
                Setting {
                    key: "blank".into(),
                    value: String::new(),
                },
            ],
        }
        .into()
    }

    #[test]
    fn settings_lookup() {
        let ctx = ctx();
        assert_eq!(ctx.installation_id, "inst");
        assert_eq!(ctx.setting("token"), Some("abc"));
        assert_eq!(ctx.setting("blank"), None);
        assert_eq!(ctx.setting("missing"), None);
        assert_eq!(ctx.setting_or("blank", "dflt"), "dflt");
        assert_eq!(ctx.setting_or("token", "dflt"), "abc");
        assert_eq!(ctx.require("token"), Ok("abc"));
    }

    #[test]
    fn require_names_the_setting() {
        assert_eq!(
            ctx().require("blank"),
            Err(ConnectorError::InvalidInput(InvalidField {
                field: "blank".into(),
                message: "setting `blank` is required".into(),
            }))
        );
    }
}
