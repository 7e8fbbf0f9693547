//! Checks of the manifest alone: what the host and the admin rely on before any call.

use std::collections::BTreeSet;

use super::CheckResult;
use crate::manifest::{placeholders, PluginKind, PluginManifest, PLUGIN_ITSELF};
use crate::runtime::bounds::MIN_TEXT_LIMIT;
use crate::schedule::Schedule;

const GROUP: &str = "manifest";

/// Longest text limit that makes sense: past this the hub would never split.
pub const MAX_TEXT_LIMIT: u32 = 1_000_000;
/// Longest reply window that makes sense: a year.
pub const MAX_REPLY_WINDOW_SECONDS: u64 = 366 * 24 * 3600;

/// Words in a setting key that say it holds a secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
];

/// Key endings that say a setting names something rather than holding it.
const NOT_SECRET_SUFFIXES: &[&str] = &["_header", "_name", "_field", "_param", "_url"];

pub fn check(manifest: &PluginManifest) -> Vec<CheckResult> {
    vec![
        id_and_version(manifest),
        secret_settings(manifest),
        host_patterns(manifest),
        streams(manifest),
        text_limits(manifest),
        reply_windows(manifest),
    ]
}

fn result(check: &str, problems: Vec<String>, fix: &str) -> CheckResult {
    if problems.is_empty() {
        CheckResult::pass(GROUP, check)
    } else {
        CheckResult::fail(GROUP, check, problems.join("; "), fix)
    }
}

fn id_and_version(manifest: &PluginManifest) -> CheckResult {
    let mut problems = Vec::new();
    let id_ok = !manifest.id.is_empty()
        && manifest.id.len() <= 64
        && manifest
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        problems.push(format!(
            "id `{}` must be 1-64 characters of a-z, 0-9, `.`, `_`, `-`",
            manifest.id
        ));
    }
    if semver::Version::parse(&manifest.version).is_err() {
        problems.push(format!(
            "version `{}` is not semantic (MAJOR.MINOR.PATCH)",
            manifest.version
        ));
    }
    if manifest.name.trim().is_empty() {
        problems.push("name is empty".into());
    }
    result(
        "id-and-version",
        problems,
        "give the manifest a lower-case id, a display name, and a semver version such as \
         `env!(\"CARGO_PKG_VERSION\")`",
    )
}

fn templates_of(manifest: &PluginManifest) -> Vec<(String, &str)> {
    let mut templates: Vec<(String, &str)> = manifest
        .capabilities
        .http_hosts
        .iter()
        .map(|h| ("http host".to_string(), h.as_str()))
        .collect();
    for rule in &manifest.capabilities.credentials {
        if rule.host_pattern == PLUGIN_ITSELF {
            continue;
        }
        for template in rule.placement.templates() {
            templates.push((format!("credential for `{}`", rule.host_pattern), template));
        }
    }
    templates
}

fn secret_settings(manifest: &PluginManifest) -> CheckResult {
    let mut problems = Vec::new();
    for setting in manifest.settings.iter().filter(|s| !s.secret) {
        let key = setting.key.to_ascii_lowercase();
        // `webhook_secret_header` names where a secret travels; it holds none.
        if NOT_SECRET_SUFFIXES
            .iter()
            .any(|suffix| key.ends_with(suffix))
        {
            continue;
        }
        if let Some(word) = SECRET_WORDS.iter().find(|w| key.contains(*w)) {
            problems.push(format!(
                "setting `{}` looks like a secret (`{word}`) but is not marked secret",
                setting.key
            ));
        }
    }
    for rule in &manifest.capabilities.credentials {
        if rule.host_pattern == PLUGIN_ITSELF {
            continue;
        }
        let used: Vec<String> = rule
            .placement
            .templates()
            .into_iter()
            .filter_map(|t| placeholders(t).ok())
            .flatten()
            .collect();
        let any_secret = used.iter().any(|key| {
            key.starts_with("oauth.") || manifest.setting(key).is_some_and(|s| s.secret)
        });
        if !any_secret {
            problems.push(format!(
                "the credential for `{}` uses no secret setting ({}), so the credential is \
                 stored and shown in clear",
                rule.host_pattern,
                if used.is_empty() {
                    "it is a constant".to_string()
                } else {
                    used.join(", ")
                }
            ));
        }
    }
    result(
        "secret-settings-marked",
        problems,
        "set `secret: true` on every setting that holds a token, password or key; the host \
         encrypts secret settings and never shows or logs them",
    )
}

fn host_patterns(manifest: &PluginManifest) -> CheckResult {
    let declared: BTreeSet<&str> = manifest.settings.iter().map(|s| s.key.as_str()).collect();
    let mut problems = Vec::new();
    for (what, template) in templates_of(manifest) {
        match placeholders(template) {
            Ok(names) => {
                for name in names {
                    if !declared.contains(name.as_str()) && !name.starts_with("oauth.") {
                        problems.push(format!(
                            "{what} `{template}` uses `{{{name}}}`, which is not a declared setting"
                        ));
                    }
                }
            }
            Err(error) => problems.push(format!("{what} `{template}`: {error}")),
        }
    }
    if manifest.capabilities.http_hosts.is_empty() {
        problems.push("no http hosts: the plugin could reach no service".into());
    }
    result(
        "host-patterns-use-declared-settings",
        problems,
        "declare every `{setting}` a host pattern or credential uses in `settings`, or write \
         the origin out",
    )
}

fn streams(manifest: &PluginManifest) -> CheckResult {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for stream in &manifest.streams {
        if !names.insert(stream.name.as_str()) {
            problems.push(format!("stream `{}` is declared twice", stream.name));
        }
        if let Err(error) = Schedule::parse(&stream.default_schedule, None) {
            problems.push(format!("stream `{}`: {error}", stream.name));
        }
    }
    if manifest.streams.is_empty() && !manifest.accepts_webhooks {
        problems
            .push("no streams and no webhooks: nothing could ever come in from the service".into());
    }
    result(
        "streams-have-valid-schedules",
        problems,
        "give each stream a unique name and a cron schedule of 5 fields, or 6 with seconds \
         first, such as `*/30 * * * * *`",
    )
}

fn text_limits(manifest: &PluginManifest) -> CheckResult {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for limit in &manifest.text_limits {
        if !seen.insert(limit.visibility.as_str()) {
            problems.push(format!(
                "two text limits for `{}` messages",
                limit.visibility
            ));
        }
        if !(MIN_TEXT_LIMIT..=MAX_TEXT_LIMIT).contains(&limit.max_length) {
            problems.push(format!(
                "the text limit for `{}` messages is {} {}; it must be {MIN_TEXT_LIMIT} to \
                 {MAX_TEXT_LIMIT}",
                limit.visibility, limit.max_length, limit.unit
            ));
        }
    }
    if manifest.kind == PluginKind::Social && manifest.text_limits.is_empty() {
        problems.push(
            "a social plugin declares no text limit, so the hub never splits a long reply and \
             the network refuses it"
                .into(),
        );
    }
    result(
        "text-limits-make-sense",
        problems,
        "declare one `text-limit` per visibility the network has, with its real maximum and \
         the unit the network counts in",
    )
}

fn reply_windows(manifest: &PluginManifest) -> CheckResult {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for window in &manifest.reply_windows {
        if !seen.insert(window.visibility.as_str()) {
            problems.push(format!(
                "two reply windows for `{}` messages",
                window.visibility
            ));
        }
        if window.seconds == 0 || window.seconds > MAX_REPLY_WINDOW_SECONDS {
            problems.push(format!(
                "the reply window for `{}` messages is {} s; it must be 1 s to a year",
                window.visibility, window.seconds
            ));
        }
        if window.note.trim().is_empty() {
            problems.push(format!(
                "the reply window for `{}` messages has no note telling agents why",
                window.visibility
            ));
        }
    }
    result(
        "reply-windows-make-sense",
        problems,
        "declare a reply window only where the network has one, once per visibility, with \
         its length in seconds and a note for agents",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{
        Capabilities, CredentialPlacement, CredentialRule, ReplyWindow, SettingSpec, StreamSpec,
        TextLimit,
    };

    fn setting(key: &str, secret: bool) -> SettingSpec {
        SettingSpec {
            key: key.into(),
            label: key.into(),
            description: String::new(),
            secret,
            required: true,
            default: None,
        }
    }

    fn good() -> PluginManifest {
        PluginManifest {
            id: "acme".into(),
            name: "Acme".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Social,
            description: String::new(),
            settings: vec![setting("api_base", false), setting("api_token", true)],
            capabilities: Capabilities {
                http_hosts: vec!["{api_base}".into()],
                credentials: vec![CredentialRule {
                    host_pattern: "{api_base}".into(),
                    placement: CredentialPlacement::Bearer {
                        token: "{api_token}".into(),
                    },
                }],
            },
            streams: vec![StreamSpec {
                name: "messages".into(),
                description: String::new(),
                default_schedule: "*/30 * * * * *".into(),
            }],
            accepts_webhooks: false,
            text_limits: vec![TextLimit {
                visibility: "private".into(),
                max_length: 4096,
                unit: "chars".into(),
                reserve_per_part: 0,
            }],
            reply_windows: vec![ReplyWindow {
                visibility: "private".into(),
                seconds: 86_400,
                note: "24 hours after the customer's last message".into(),
            }],
            oauth2: None,
            channel: None,
            billable_kinds: Vec::new(),
        }
    }

    fn failed(manifest: &PluginManifest) -> Vec<String> {
        check(manifest)
            .into_iter()
            .filter(CheckResult::failed)
            .map(|r| r.check)
            .collect()
    }

    #[test]
    fn a_good_manifest_passes() {
        assert_eq!(failed(&good()), Vec::<String>::new());
        let mut naming = good();
        naming
            .settings
            .push(setting("webhook_secret_header", false));
        assert_eq!(
            failed(&naming),
            Vec::<String>::new(),
            "it names a header, holds no secret"
        );
    }

    #[test]
    fn each_rule_fails_on_a_manifest_that_breaks_it() {
        type Breaks = Box<dyn Fn(&mut PluginManifest)>;
        let cases: Vec<(&str, Breaks)> = vec![
            ("id-and-version", Box::new(|m| m.version = "1.0".into())),
            ("id-and-version", Box::new(|m| m.id = "Acme Chat".into())),
            (
                "secret-settings-marked",
                Box::new(|m| m.settings[1].secret = false),
            ),
            (
                "secret-settings-marked",
                Box::new(|m| m.settings.push(setting("webhook_secret", false))),
            ),
            (
                "secret-settings-marked",
                Box::new(|m| {
                    m.capabilities.credentials[0].placement = CredentialPlacement::Bearer {
                        token: "fixed-token".into(),
                    }
                }),
            ),
            (
                "host-patterns-use-declared-settings",
                Box::new(|m| {
                    m.capabilities
                        .http_hosts
                        .push("https://{region}.acme.com".into())
                }),
            ),
            (
                "streams-have-valid-schedules",
                Box::new(|m| m.streams[0].default_schedule = "every minute".into()),
            ),
            (
                "streams-have-valid-schedules",
                Box::new(|m| m.streams.push(m.streams[0].clone())),
            ),
            (
                "text-limits-make-sense",
                Box::new(|m| m.text_limits[0].max_length = 10),
            ),
            (
                "text-limits-make-sense",
                Box::new(|m| m.text_limits.clear()),
            ),
            (
                "reply-windows-make-sense",
                Box::new(|m| m.reply_windows[0].seconds = 0),
            ),
            (
                "reply-windows-make-sense",
                Box::new(|m| m.reply_windows.push(m.reply_windows[0].clone())),
            ),
        ];
        for (rule, breaks) in cases {
            let mut manifest = good();
            breaks(&mut manifest);
            let failed = failed(&manifest);
            assert_eq!(failed, vec![rule.to_string()], "breaking {rule}");
            let report = check(&manifest);
            let result = report.iter().find(|r| r.check == rule).expect("checked");
            let super::super::Outcome::Fail { rule: why, fix } = &result.outcome else {
                panic!("{rule} must fail")
            };
            assert!(!why.is_empty() && !fix.is_empty());
        }
    }
}
