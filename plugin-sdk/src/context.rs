//! [`Context`]: the installation a call is made for, and its settings.

use std::collections::BTreeMap;

use crate::settings::{SettingsDeserializer, SettingsError};
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

    /// Reads the settings into a typed struct `T` (`#[derive(Deserialize)]`, fields named
    /// like the setting keys).
    ///
    /// Each value is parsed from its string into the field's type: numbers, `bool` (`true`,
    /// `false`, `yes`, `no`, `on`, `off`, `1`, `0`), `Vec`s from comma-separated lists, and
    /// unit-variant enums by name. An empty setting counts as absent: an `Option` field is
    /// `None`, a field with `#[serde(default)]` takes its default, any other field is
    /// required. Unknown settings are ignored.
    ///
    /// A missing or unreadable setting is an `InvalidInput` error whose field is the setting's
    /// key, so the host can point the admin at it.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::{Context, ConnectorError};
    /// #[derive(serde::Deserialize)]
    /// struct Settings {
    ///     subdomain: String,
    ///     base_url: Option<String>,
    ///     #[serde(default = "hour")]
    ///     initial_lookback_secs: u64,
    /// }
    /// fn hour() -> u64 { 3600 }
    ///
    /// let ctx = Context::new("inst", [("subdomain", "acme"), ("base_url", "")]);
    /// let settings: Settings = ctx.parse_settings().unwrap();
    /// assert_eq!((settings.base_url, settings.initial_lookback_secs), (None, 3600));
    ///
    /// let ctx = Context::new("inst", [("subdomain", "acme"), ("initial_lookback_secs", "soon")]);
    /// let err = ctx.parse_settings::<Settings>().err().unwrap();
    /// assert!(matches!(err, ConnectorError::InvalidInput(f) if f.field == "initial_lookback_secs"));
    /// ```
    pub fn parse_settings<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.parse_settings_with_defaults(&[])
    }

    /// Like [`parse_settings`](Self::parse_settings), but a setting left empty takes the
    /// `default_value` its spec in `specs` (the manifest's settings) declares, as the host does
    /// when it calls the plugin. The default the admin form shows is then the one the plugin
    /// uses, written once in the manifest rather than again as a `#[serde(default)]` function.
    ///
    /// ```
    /// # use switchboard_plugin_sdk::{Context, SettingSpec};
    /// #[derive(serde::Deserialize)]
    /// struct Settings { queue: String, initial_lookback_secs: u64 }
    ///
    /// let specs = [
    ///     SettingSpec::new("queue", "Queue", "").with_default("General"),
    ///     SettingSpec::new("initial_lookback_secs", "Look-back", "").with_default("3600"),
    /// ];
    /// let ctx = Context::new("inst", [("queue", "")]);
    /// let settings: Settings = ctx.parse_settings_with_defaults(&specs).unwrap();
    /// assert_eq!((settings.queue.as_str(), settings.initial_lookback_secs), ("General", 3600));
    /// ```
    pub fn parse_settings_with_defaults<T: serde::de::DeserializeOwned>(
        &self,
        specs: &[crate::SettingSpec],
    ) -> Result<T> {
        let defaults = specs.iter().filter_map(|spec| {
            let value = spec.default_value.as_deref()?;
            self.setting(&spec.key)
                .is_none()
                .then_some((spec.key.as_str(), value))
        });
        let entries = self
            .settings
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .chain(defaults)
            .filter(|(_, value)| !value.is_empty())
            .collect();
        T::deserialize(SettingsDeserializer { entries }).map_err(|err| {
            let SettingsError { key, message } = err;
            ConnectorError::invalid(key.unwrap_or_else(|| "settings".to_string()), message)
        })
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

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Poll,
        Webhook,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Typed {
        token: String,
        blank: Option<String>,
        #[serde(default)]
        limit: u32,
        ratio: Option<f64>,
        enabled: Option<bool>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        ids: Vec<u64>,
        mode: Option<Mode>,
    }

    fn typed(pairs: &[(&str, &str)]) -> Result<Typed> {
        Context::new("inst", pairs.iter().copied()).parse_settings()
    }

    fn bad_field<T: std::fmt::Debug>(result: Result<T>) -> (String, String) {
        match result {
            Err(ConnectorError::InvalidInput(f)) => (f.field, f.message),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn typed_settings_parse_each_type() {
        let settings = typed(&[
            ("token", "abc"),
            ("blank", ""),
            ("limit", " 25 "),
            ("ratio", "0.5"),
            ("enabled", "Yes"),
            ("tags", "a, b,,c "),
            ("ids", "1,2"),
            ("mode", "webhook"),
            ("unknown", "ignored"),
        ])
        .expect("settings");
        assert_eq!(
            settings,
            Typed {
                token: "abc".into(),
                blank: None,
                limit: 25,
                ratio: Some(0.5),
                enabled: Some(true),
                tags: vec!["a".into(), "b".into(), "c".into()],
                ids: vec![1, 2],
                mode: Some(Mode::Webhook),
            }
        );
        let defaults = typed(&[("token", "t")]).expect("settings");
        assert_eq!(
            (defaults.limit, defaults.enabled, defaults.mode),
            (0, None, None)
        );
        assert_eq!(
            typed(&[("token", "t"), ("enabled", "off"), ("mode", "poll")])
                .map(|s| (s.enabled, s.mode))
                .ok(),
            Some((Some(false), Some(Mode::Poll)))
        );
    }

    #[test]
    fn typed_settings_name_the_missing_or_bad_one() {
        assert_eq!(
            bad_field(typed(&[("limit", "1")])),
            ("token".into(), "setting `token` is required".into())
        );
        // Empty is absent, for required settings too.
        assert_eq!(bad_field(typed(&[("token", "")])).0, "token");
        let (field, message) = bad_field(typed(&[("token", "t"), ("limit", "-3")]));
        assert_eq!(field, "limit");
        assert!(message.contains("setting `limit`"), "{message}");
        assert!(message.contains("a whole number"), "{message}");
        assert!(message.contains("`-3`"), "{message}");
        assert_eq!(
            bad_field(typed(&[("token", "t"), ("enabled", "maybe")])).0,
            "enabled"
        );
        assert_eq!(bad_field(typed(&[("token", "t"), ("ids", "1,x")])).0, "ids");
        assert_eq!(
            bad_field(typed(&[("token", "t"), ("mode", "push")])).0,
            "mode"
        );
        assert_eq!(
            bad_field(typed(&[("token", "t"), ("ratio", "NaNx")])).0,
            "ratio"
        );
    }

    #[test]
    fn defaults_come_from_the_specs() {
        #[derive(Debug, serde::Deserialize)]
        struct WithDefaults {
            queue: String,
            lookback: u64,
            note: Option<String>,
        }
        let specs = [
            crate::SettingSpec::new("queue", "Queue", "").with_default("General"),
            crate::SettingSpec::new("lookback", "Look-back", "").with_default("3600"),
            crate::SettingSpec::new("note", "Note", ""),
        ];
        let read = |pairs: &[(&str, &str)]| {
            Context::new("i", pairs.iter().copied())
                .parse_settings_with_defaults::<WithDefaults>(&specs)
        };
        let given =
            read(&[("queue", "Tier 2"), ("lookback", "60"), ("note", "n")]).expect("settings");
        assert_eq!(
            (given.queue.as_str(), given.lookback, given.note.as_deref()),
            ("Tier 2", 60, Some("n"))
        );
        // Absent or empty: the spec's default; no default and optional: None.
        let defaults = read(&[("queue", "")]).expect("settings");
        assert_eq!(
            (defaults.queue.as_str(), defaults.lookback, defaults.note),
            ("General", 3600, None)
        );
        // A bad value the admin gave is still an error naming the setting.
        assert_eq!(bad_field(read(&[("lookback", "soon")])).0, "lookback");
        // Without specs, nothing is filled in.
        assert_eq!(
            bad_field(Context::new("i", [("lookback", "1")]).parse_settings::<WithDefaults>()).0,
            "queue"
        );
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
