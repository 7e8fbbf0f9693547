//! A plugin's manifest as the host keeps it: converted from the contract's `manifest` record,
//! validated once at load, stored with the plugin and shown to admins.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::runtime::http::OriginPattern;
use crate::runtime::latest as wit;
use crate::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Social,
    Helpdesk,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Social => "social",
            PluginKind::Helpdesk => "helpdesk",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingSpec {
    pub key: String,
    pub label: String,
    pub description: String,
    pub secret: bool,
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Where the host puts a credential. Values are templates over settings, never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum CredentialPlacement {
    Basic { username: String, password: String },
    Bearer { token: String },
    Header { name: String, value: String },
    Query { name: String, value: String },
    PathPrefix { prefix: String },
}

/// Where the host adds a credential: to requests to `host_pattern`, or, when `host_pattern` is
/// [`PLUGIN_ITSELF`], into the plugin's own call context (see there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRule {
    pub host_pattern: String,
    pub placement: CredentialPlacement,
}

/// The `host-pattern` of a credential rule that gives a secret setting to the plugin itself.
///
/// Secret settings reach a plugin's call context only when it asks for them this way, because
/// contract 0.2's `setting-spec` has no field for it and a new contract version would make
/// every built plugin obsolete. A credential rule is the natural carrier: it is what says
/// where a secret goes, and admins review credential rules at install. The rule reads
/// `credential-rule { host-pattern: "plugin", placement: header({ name: "KEY", value: "{KEY}" }) }`:
/// the plugin receives the setting `KEY` under its own name. It exists for the secrets a
/// plugin must compare itself, such as a webhook signing secret. The OAuth2 client secret
/// and JWT private key are never given to a plugin, whatever the manifest says.
pub const PLUGIN_ITSELF: &str = "plugin";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Outbound origins the plugin requests, as `scheme://host[:port]` templates.
    pub http_hosts: Vec<String>,
    pub credentials: Vec<CredentialRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub name: String,
    pub description: String,
    pub default_schedule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextLimit {
    pub visibility: String,
    pub max_length: u32,
    pub unit: String,
    /// Room the plugin keeps in every part of a split reply for text it adds (contract 0.3);
    /// the splitter's limit is `max_length - reserve_per_part`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserve_per_part: u32,
}

impl TextLimit {
    /// The most text of the agent's reply one part may carry.
    pub fn part_length(&self) -> u32 {
        self.max_length.saturating_sub(self.reserve_per_part)
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// The names of message kinds, as the contract spells them.
pub mod kind_names {
    pub const DIRECT_MESSAGE: &str = "direct-message";
    pub const POST: &str = "post";
    pub const COMMENT: &str = "comment";
}

/// A private answer to a public post or comment, and its limits (contract 0.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateReplyRule {
    #[serde(default)]
    pub window_seconds: Option<u64>,
    #[serde(default)]
    pub max_messages: Option<u32>,
    pub note: String,
}

/// What a social network lets the brand do (contract 0.3 `channel-capabilities`); the hub
/// checks a reply against it before sending. Message kinds by their contract names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCapabilities {
    pub public_reply_kinds: Vec<String>,
    pub private_reply_kinds: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_reply_to_public: Option<PrivateReplyRule>,
    pub edits: bool,
    pub deletes: bool,
    /// `None`: no limit declared; `Some(0)`: no attachments.
    #[serde(default)]
    pub max_attachments: Option<u32>,
    pub text_unit: String,
}

/// A kind of call the network bills, which the plugin reports (contract 0.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillableKind {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyWindow {
    pub visibility: String,
    pub seconds: u64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Spec {
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub flows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginManifest {
    pub id: String,
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    pub settings: Vec<SettingSpec>,
    pub capabilities: Capabilities,
    pub streams: Vec<StreamSpec>,
    pub accepts_webhooks: bool,
    pub text_limits: Vec<TextLimit>,
    pub reply_windows: Vec<ReplyWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Spec>,
    /// Social plugins: what the network allows. Plugins built for contract 0.2 get theirs
    /// derived by the runtime's adapter; manifests stored before 0.3 have none (see
    /// [`PluginManifest::channel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelCapabilities>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub billable_kinds: Vec<BillableKind>,
}

/// Everything wrong with a manifest, one problem per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid plugin manifest:\n  - {}", .problems.join("\n  - "))]
pub struct ManifestError {
    pub problems: Vec<String>,
}

fn kind_name(kind: wit::MessageKind) -> String {
    match kind {
        wit::MessageKind::DirectMessage => kind_names::DIRECT_MESSAGE,
        wit::MessageKind::Post => kind_names::POST,
        wit::MessageKind::Comment => kind_names::COMMENT,
    }
    .to_string()
}

fn visibility(v: wit::Visibility) -> String {
    match v {
        wit::Visibility::Public => "public",
        wit::Visibility::Private => "private",
    }
    .to_string()
}

/// The contract's name of a length unit, the one form the host stores and reads.
fn length_unit_name(unit: wit::LengthUnit) -> &'static str {
    use crate::hub::split::unit_names::*;
    match unit {
        wit::LengthUnit::Chars => CHARS,
        wit::LengthUnit::Utf16Units => UTF16_UNITS,
        wit::LengthUnit::Graphemes => GRAPHEMES,
        wit::LengthUnit::Utf8Bytes => UTF8_BYTES,
        wit::LengthUnit::Weighted => WEIGHTED,
    }
}

impl From<wit::Manifest> for PluginManifest {
    fn from(m: wit::Manifest) -> Self {
        let placement = |p: wit::CredentialPlacement| match p {
            wit::CredentialPlacement::Basic(b) => CredentialPlacement::Basic {
                username: b.username,
                password: b.password,
            },
            wit::CredentialPlacement::Bearer(token) => CredentialPlacement::Bearer { token },
            wit::CredentialPlacement::Header(h) => CredentialPlacement::Header {
                name: h.name,
                value: h.value,
            },
            wit::CredentialPlacement::Query(q) => CredentialPlacement::Query {
                name: q.name,
                value: q.value,
            },
            wit::CredentialPlacement::PathPrefix(prefix) => {
                CredentialPlacement::PathPrefix { prefix }
            }
        };
        PluginManifest {
            id: m.id,
            name: m.name,
            version: m.version,
            kind: match m.kind {
                wit::PluginKind::Social => PluginKind::Social,
                wit::PluginKind::Helpdesk => PluginKind::Helpdesk,
            },
            description: m.description,
            settings: m
                .settings
                .into_iter()
                .map(|s| SettingSpec {
                    key: s.key,
                    label: s.label,
                    description: s.description,
                    secret: s.secret,
                    required: s.required,
                    default: s.default_value,
                })
                .collect(),
            capabilities: Capabilities {
                http_hosts: m.http_hosts,
                credentials: m
                    .credentials
                    .into_iter()
                    .map(|c| CredentialRule {
                        host_pattern: c.host_pattern,
                        placement: placement(c.placement),
                    })
                    .collect(),
            },
            streams: m
                .streams
                .into_iter()
                .map(|s| StreamSpec {
                    name: s.name,
                    description: s.description,
                    default_schedule: s.default_schedule,
                })
                .collect(),
            accepts_webhooks: m.accepts_webhooks,
            text_limits: m
                .text_limits
                .into_iter()
                .map(|t| TextLimit {
                    visibility: visibility(t.visibility),
                    max_length: t.max_length,
                    unit: length_unit_name(t.unit).to_string(),
                    reserve_per_part: t.reserve_per_part,
                })
                .collect(),
            reply_windows: m
                .reply_windows
                .into_iter()
                .map(|w| ReplyWindow {
                    visibility: visibility(w.visibility),
                    seconds: w.seconds,
                    note: w.note,
                })
                .collect(),
            oauth2: m.oauth2.map(|o| OAuth2Spec {
                authorize_url: o.authorize_url,
                token_url: o.token_url,
                scopes: o.scopes,
                flows: o
                    .flows
                    .iter()
                    .map(|f| {
                        match f {
                            wit::Oauth2Flow::AuthorizationCodePkce => "authorization-code-pkce",
                            wit::Oauth2Flow::RefreshToken => "refresh-token",
                            wit::Oauth2Flow::JwtBearer => "jwt-bearer",
                            wit::Oauth2Flow::ClientCredentials => "client-credentials",
                        }
                        .to_string()
                    })
                    .collect(),
            }),
            channel: m.channel.map(|c| ChannelCapabilities {
                public_reply_kinds: c.public_reply_kinds.into_iter().map(kind_name).collect(),
                private_reply_kinds: c.private_reply_kinds.into_iter().map(kind_name).collect(),
                private_reply_to_public: c.private_reply_to_public.map(|r| PrivateReplyRule {
                    window_seconds: r.window_seconds,
                    max_messages: r.max_messages,
                    note: r.note,
                }),
                edits: c.edits,
                deletes: c.deletes,
                max_attachments: c.max_attachments,
                text_unit: length_unit_name(c.text_unit).to_string(),
            }),
            billable_kinds: m
                .billable_kinds
                .into_iter()
                .map(|k| BillableKind {
                    name: k.name,
                    description: k.description,
                })
                .collect(),
        }
    }
}

impl PluginManifest {
    /// The channel capabilities: declared, or for a manifest stored before contract 0.3,
    /// what the 0.2 hub did (see `runtime::contract::adapter::derived_channel`).
    pub fn channel(&self) -> ChannelCapabilities {
        self.channel.clone().unwrap_or_else(|| {
            let every_kind = vec![
                kind_names::DIRECT_MESSAGE.to_string(),
                kind_names::POST.to_string(),
                kind_names::COMMENT.to_string(),
            ];
            ChannelCapabilities {
                public_reply_kinds: every_kind.clone(),
                private_reply_kinds: every_kind,
                private_reply_to_public: None,
                edits: false,
                deletes: false,
                max_attachments: None,
                text_unit: self
                    .text_limits
                    .first()
                    .map(|l| l.unit.clone())
                    .unwrap_or_else(|| crate::hub::split::unit_names::CHARS.to_string()),
            }
        })
    }

    pub fn setting(&self, key: &str) -> Option<&SettingSpec> {
        self.settings.iter().find(|s| s.key == key)
    }

    /// The secret settings the manifest asks to see itself ([`PLUGIN_ITSELF`] rules), OAuth2
    /// secrets excluded.
    pub fn plugin_visible_secrets(&self) -> Vec<&str> {
        self.capabilities
            .credentials
            .iter()
            .filter(|rule| rule.host_pattern == PLUGIN_ITSELF)
            .filter_map(|rule| match &rule.placement {
                CredentialPlacement::Header { name, value } if *value == format!("{{{name}}}") => {
                    Some(name.as_str())
                }
                _ => None,
            })
            .filter(|key| !oauth_settings::NEVER_TO_PLUGIN.contains(key))
            .collect()
    }

    /// Whether the setting (or token-response field) `key` goes into the plugin's call
    /// context: everything but secrets, and the secrets it asked for.
    pub fn plugin_sees(&self, key: &str) -> bool {
        if oauth_settings::NEVER_TO_PLUGIN.contains(&key) {
            return false;
        }
        match self.setting(key) {
            Some(spec) if spec.secret => self.plugin_visible_secrets().contains(&key),
            _ => true,
        }
    }

    /// The origins of the OAuth2 endpoints, as templates (`{login_url}`), token URL first.
    /// Client secrets and refresh tokens are sent to them, so an admin approves them like
    /// `http_hosts`.
    pub fn oauth_origins(&self) -> Vec<String> {
        let Some(spec) = &self.oauth2 else {
            return Vec::new();
        };
        let mut origins = vec![origin_template(&spec.token_url)];
        if !spec.authorize_url.trim().is_empty() {
            let authorize = origin_template(&spec.authorize_url);
            if !origins.contains(&authorize) {
                origins.push(authorize);
            }
        }
        origins
    }

    /// Everything an admin approves at install: `http_hosts`, then the OAuth2 origins that
    /// are not among them.
    pub fn requested_origins(&self) -> Vec<String> {
        let mut origins = self.capabilities.http_hosts.clone();
        for origin in self.oauth_origins() {
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        origins
    }

    /// Checks everything the host relies on. `world` is the kind the component's exports say.
    pub fn validate(&self, world: PluginKind) -> Result<(), ManifestError> {
        let mut problems = Vec::new();
        if !is_identifier(&self.id, true) {
            problems.push(format!(
                "id `{}` must be 1-64 chars of a-z, 0-9, `.`, `_`, `-`",
                self.id
            ));
        }
        if self.name.trim().is_empty() {
            problems.push("name is empty".into());
        }
        if semver::Version::parse(&self.version).is_err() {
            problems.push(format!(
                "version `{}` is not semver (like 1.2.3)",
                self.version
            ));
        }
        if self.kind != world {
            problems.push(format!(
                "kind is `{}` but the component implements the `{}` world",
                self.kind.as_str(),
                world.as_str()
            ));
        }
        let mut keys = BTreeSet::new();
        for s in &self.settings {
            if !is_identifier(&s.key, false) {
                problems.push(format!("setting key `{}` must be a-z, 0-9 or `_`", s.key));
            }
            if !keys.insert(s.key.as_str()) {
                problems.push(format!("setting `{}` is declared twice", s.key));
            }
        }
        let check_template =
            |what: &str, template: &str, problems: &mut Vec<String>| match placeholders(template) {
                Ok(names) => {
                    for name in names {
                        if !keys.contains(name.as_str()) && !name.starts_with("oauth.") {
                            problems.push(format!(
                                "{what} `{template}` refers to undeclared setting `{name}`"
                            ));
                        }
                    }
                }
                Err(e) => problems.push(format!("{what} `{template}`: {e}")),
            };
        for host in &self.capabilities.http_hosts {
            check_template("http host", host, &mut problems);
            if placeholders(host).is_ok_and(|p| p.is_empty()) {
                if let Err(e) = OriginPattern::parse(host) {
                    problems.push(e.to_string());
                }
            }
        }
        for rule in &self.capabilities.credentials {
            if rule.host_pattern == PLUGIN_ITSELF {
                self.validate_plugin_rule(rule, &mut problems);
                continue;
            }
            if !self.capabilities.http_hosts.contains(&rule.host_pattern) {
                problems.push(format!(
                    "credential rule for `{}` must name one of the requested http hosts",
                    rule.host_pattern
                ));
            }
            for template in rule.placement.templates() {
                check_template("credential", template, &mut problems);
            }
        }
        if let Some(spec) = &self.oauth2 {
            self.validate_oauth2(spec, &mut problems);
        }
        for limit in &self.text_limits {
            // Replies are split to fit: a tiny limit would make absurd numbers of parts.
            let min = crate::runtime::bounds::MIN_TEXT_LIMIT;
            if limit.max_length < min {
                problems.push(format!(
                    "text limit for `{}` messages is {} {}; the least the host accepts is {min}",
                    limit.visibility, limit.max_length, limit.unit
                ));
            } else if limit.reserve_per_part > 0 && limit.part_length() < min {
                problems.push(format!(
                    "text limit for `{}` messages reserves {} of its {} {} per part, leaving {}; \
                     the least the host accepts is {min}",
                    limit.visibility,
                    limit.reserve_per_part,
                    limit.max_length,
                    limit.unit,
                    limit.part_length()
                ));
            }
        }
        if world == PluginKind::Social && self.channel.is_none() {
            problems.push(
                "a social plugin declares its channel capabilities (`channel`): which messages \
                 it can answer publicly and privately, edits, deletes, attachments"
                    .into(),
            );
        }
        let mut billable = BTreeSet::new();
        for kind in &self.billable_kinds {
            if !is_identifier(&kind.name, true) {
                problems.push(format!(
                    "billable kind `{}` must be 1-64 chars of a-z, 0-9, `.`, `_`, `-`",
                    kind.name
                ));
            }
            if !billable.insert(&kind.name) {
                problems.push(format!("billable kind `{}` is declared twice", kind.name));
            }
        }
        let mut streams = BTreeSet::new();
        for stream in &self.streams {
            if !is_identifier(&stream.name, true) {
                problems.push(format!(
                    "stream name `{}` must be a-z, 0-9, `.`, `_`, `-`",
                    stream.name
                ));
            }
            if !streams.insert(stream.name.as_str()) {
                problems.push(format!("stream `{}` is declared twice", stream.name));
            }
            if let Err(e) = Schedule::parse(&stream.default_schedule, None) {
                problems.push(format!("stream `{}`: {e}", stream.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError { problems })
        }
    }
}

/// Settings an `oauth2-spec` relies on: the client credentials live in installation settings
/// under these keys, which the plugin declares (the secret ones as secret).
pub mod oauth_settings {
    pub const CLIENT_ID: &str = "oauth_client_id";
    pub const CLIENT_SECRET: &str = "oauth_client_secret";
    /// PEM (PKCS#8 or PKCS#1) RSA key that signs JWT bearer assertions (RS256).
    pub const JWT_PRIVATE_KEY: &str = "oauth_jwt_private_key";
    /// The `sub` of JWT bearer assertions: the user the integration acts as.
    pub const JWT_USERNAME: &str = "oauth_jwt_username";
    /// Optional `aud` of JWT bearer assertions; the token URL's origin without it.
    pub const JWT_AUDIENCE: &str = "oauth_jwt_audience";
    /// The settings that never reach a plugin's call context, whatever its manifest says.
    pub const NEVER_TO_PLUGIN: [&str; 2] = [CLIENT_SECRET, JWT_PRIVATE_KEY];
}

impl PluginManifest {
    /// A [`PLUGIN_ITSELF`] rule must name one declared secret setting, as `header(KEY, "{KEY}")`.
    fn validate_plugin_rule(&self, rule: &CredentialRule, problems: &mut Vec<String>) {
        let CredentialPlacement::Header { name, value } = &rule.placement else {
            problems.push(format!(
                "credential rule for `{PLUGIN_ITSELF}` must be a header placement naming the \
                 secret setting the plugin sees, as header(KEY, \"{{KEY}}\")"
            ));
            return;
        };
        if *value != format!("{{{name}}}") {
            problems.push(format!(
                "credential rule for `{PLUGIN_ITSELF}`: the value `{value}` must be `{{{name}}}`"
            ));
        } else if oauth_settings::NEVER_TO_PLUGIN.contains(&name.as_str()) {
            problems.push(format!(
                "credential rule for `{PLUGIN_ITSELF}`: `{name}` is never given to a plugin; \
                 the host runs OAuth2 itself"
            ));
        } else if !self.setting(name).is_some_and(|s| s.secret) {
            problems.push(format!(
                "credential rule for `{PLUGIN_ITSELF}` names `{name}`, which is not a declared \
                 secret setting (non-secret settings reach the plugin anyway)"
            ));
        }
    }

    fn validate_oauth2(&self, spec: &OAuth2Spec, problems: &mut Vec<String>) {
        use oauth_settings::*;
        const FLOWS: [&str; 4] = [
            "authorization-code-pkce",
            "refresh-token",
            "jwt-bearer",
            "client-credentials",
        ];
        for flow in &spec.flows {
            if !FLOWS.contains(&flow.as_str()) {
                problems.push(format!(
                    "oauth2 flow `{flow}` is not one of {}",
                    FLOWS.join(", ")
                ));
            }
        }
        let has = |flow: &str| spec.flows.iter().any(|f| f == flow);
        let mut needed = vec![CLIENT_ID];
        if has("jwt-bearer") {
            needed.extend([JWT_PRIVATE_KEY, JWT_USERNAME]);
        }
        if has("client-credentials") {
            needed.push(CLIENT_SECRET);
        }
        for key in needed {
            if self.setting(key).is_none() {
                problems.push(format!(
                    "oauth2 flows {} need the setting `{key}`",
                    spec.flows.join(", ")
                ));
            }
        }
        for key in [CLIENT_SECRET, JWT_PRIVATE_KEY] {
            if self.setting(key).is_some_and(|s| !s.secret) {
                problems.push(format!("setting `{key}` must be declared secret"));
            }
        }
        if has("authorization-code-pkce") && spec.authorize_url.trim().is_empty() {
            problems.push("oauth2 flow authorization-code-pkce needs an authorize-url".into());
        }
        let mut urls = vec![("token-url", &spec.token_url)];
        if !spec.authorize_url.trim().is_empty() {
            urls.push(("authorize-url", &spec.authorize_url));
        }
        for (what, template) in urls {
            let origin = origin_template(template);
            if placeholders(&origin).is_ok_and(|p| p.is_empty()) {
                if let Err(e) = OriginPattern::parse(&origin) {
                    problems.push(format!("oauth2 {what}: {e}"));
                }
            }
            match placeholders(template) {
                Ok(names) => {
                    for name in names.iter().filter(|n| self.setting(n).is_none()) {
                        problems.push(format!(
                            "oauth2 {what} `{template}` refers to undeclared setting `{name}`"
                        ));
                    }
                }
                Err(e) => problems.push(format!("oauth2 {what} `{template}`: {e}")),
            }
        }
    }
}

impl CredentialPlacement {
    pub fn templates(&self) -> Vec<&str> {
        match self {
            CredentialPlacement::Basic { username, password } => vec![username, password],
            CredentialPlacement::Bearer { token } => vec![token],
            CredentialPlacement::Header { value, .. }
            | CredentialPlacement::Query { value, .. } => vec![value],
            CredentialPlacement::PathPrefix { prefix } => vec![prefix],
        }
    }
}

fn is_identifier(s: &str, allow_punctuation: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || (allow_punctuation && matches!(c, '.' | '-'))
        })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed `{{` in template")]
    Unclosed,
    #[error("empty `{{}}` in template")]
    Empty,
}

/// What differs between the manifest an admin approved and the one a component describes
/// now, as a list of field names (`capabilities.http_hosts, version`); `None` when equal.
pub fn differences(approved: &PluginManifest, described: &PluginManifest) -> Option<String> {
    if approved == described {
        return None;
    }
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(approved),
        serde_json::to_value(described),
    ) else {
        return Some("the whole manifest".into());
    };
    let mut fields = BTreeSet::new();
    for key in a.keys().chain(b.keys()) {
        match (a.get(key), b.get(key)) {
            (Some(serde_json::Value::Object(x)), Some(serde_json::Value::Object(y))) => {
                for sub in x.keys().chain(y.keys()) {
                    if x.get(sub) != y.get(sub) {
                        fields.insert(format!("{key}.{sub}"));
                    }
                }
            }
            (x, y) if x != y => {
                fields.insert(key.clone());
            }
            _ => {}
        }
    }
    Some(fields.into_iter().collect::<Vec<_>>().join(", "))
}

/// The origin part of a URL template: `scheme://authority` when it starts with a scheme,
/// else everything before the path (`{login_url}/services/oauth2/token` gives `{login_url}`).
pub fn origin_template(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    format!("{scheme}{}", &rest[..end])
}

/// The setting names a template refers to, in order.
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or(TemplateError::Unclosed)?;
        if end == 0 {
            return Err(TemplateError::Empty);
        }
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// Fills a template from settings. `None` when a referenced setting is missing or empty, so an
/// optional host pattern (such as a test base URL) simply does not apply.
pub fn expand(
    template: &str,
    values: &BTreeMap<String, String>,
) -> Result<Option<String>, TemplateError> {
    let mut out = template.to_string();
    for name in placeholders(template)? {
        match values.get(&name).filter(|v| !v.is_empty()) {
            Some(value) => out = out.replace(&format!("{{{name}}}"), value),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(credentials: Vec<CredentialRule>) -> PluginManifest {
        let setting = |key: &str, secret: bool| SettingSpec {
            key: key.into(),
            label: key.into(),
            description: String::new(),
            secret,
            required: false,
            default: None,
        };
        PluginManifest {
            id: "acme".into(),
            name: "Acme".into(),
            version: "1.0.0".into(),
            kind: PluginKind::Helpdesk,
            description: String::new(),
            settings: vec![
                setting("login_url", false),
                setting("oauth_client_id", false),
                setting("oauth_client_secret", true),
                setting("api_key", true),
                setting("webhook_secret", true),
            ],
            capabilities: Capabilities {
                http_hosts: vec!["https://api.acme.com".into()],
                credentials,
            },
            streams: vec![],
            accepts_webhooks: true,
            text_limits: vec![],
            reply_windows: vec![],
            oauth2: Some(OAuth2Spec {
                authorize_url: "https://auth.acme.com/authorize".into(),
                token_url: "{login_url}/oauth/token".into(),
                scopes: vec![],
                flows: vec!["authorization-code-pkce".into()],
            }),
            channel: None,
            billable_kinds: vec![],
        }
    }

    fn for_plugin(key: &str) -> CredentialRule {
        CredentialRule {
            host_pattern: PLUGIN_ITSELF.into(),
            placement: CredentialPlacement::Header {
                name: key.into(),
                value: format!("{{{key}}}"),
            },
        }
    }

    #[test]
    fn secrets_reach_the_plugin_only_when_asked_and_never_oauth_ones() {
        let m = manifest(vec![for_plugin("webhook_secret")]);
        assert!(m.validate(PluginKind::Helpdesk).is_ok());
        assert!(m.plugin_sees("login_url"));
        assert!(
            m.plugin_sees("oauth.instance_url"),
            "token-response fields are not secret"
        );
        assert!(m.plugin_sees("webhook_secret"));
        assert!(!m.plugin_sees("api_key"));
        assert!(!m.plugin_sees("oauth_client_secret"));

        // Asking for the OAuth2 client secret: refused at load, and withheld anyway.
        let m = manifest(vec![for_plugin("oauth_client_secret")]);
        let problems = m
            .validate(PluginKind::Helpdesk)
            .expect_err("refused")
            .problems;
        assert!(
            problems.iter().any(|p| p.contains("never given")),
            "{problems:?}"
        );
        assert!(!m.plugin_sees("oauth_client_secret"));
        assert!(!m.plugin_sees("oauth_jwt_private_key"));

        let mut odd = for_plugin("api_key");
        odd.placement = CredentialPlacement::Header {
            name: "api_key".into(),
            value: "{webhook_secret}".into(),
        };
        assert!(manifest(vec![odd]).validate(PluginKind::Helpdesk).is_err());
        assert!(manifest(vec![for_plugin("login_url")])
            .validate(PluginKind::Helpdesk)
            .is_err());
    }

    #[test]
    fn oauth_endpoints_are_requested_origins() {
        assert_eq!(
            origin_template("{login_url}/services/oauth2/token"),
            "{login_url}"
        );
        assert_eq!(
            origin_template("https://{sub}.zendesk.com/oauth/tokens?x=1"),
            "https://{sub}.zendesk.com"
        );
        assert_eq!(origin_template("{token_endpoint}"), "{token_endpoint}");
        let m = manifest(vec![]);
        assert_eq!(
            m.requested_origins(),
            [
                "https://api.acme.com",
                "{login_url}",
                "https://auth.acme.com"
            ]
        );
    }

    #[test]
    fn differences_name_the_fields() {
        let approved = manifest(vec![]);
        assert_eq!(differences(&approved, &approved.clone()), None);
        let mut described = approved.clone();
        described
            .capabilities
            .http_hosts
            .push("https://evil.example".into());
        described.description = "changed".into();
        assert_eq!(
            differences(&approved, &described).as_deref(),
            Some("capabilities.http_hosts, description")
        );
    }

    #[test]
    fn templates_expand_or_skip() {
        let mut values = BTreeMap::new();
        values.insert("subdomain".to_string(), "acme".to_string());
        values.insert("base_url".to_string(), String::new());
        assert_eq!(
            expand("https://{subdomain}.zendesk.com", &values),
            Ok(Some("https://acme.zendesk.com".into()))
        );
        assert_eq!(expand("{base_url}", &values), Ok(None));
        assert_eq!(expand("{missing}", &values), Ok(None));
        assert_eq!(expand("plain", &values), Ok(Some("plain".into())));
        assert_eq!(expand("{oops", &values), Err(TemplateError::Unclosed));
    }

    #[test]
    fn text_limits_below_the_minimum_are_refused() {
        let limit = |max_length| TextLimit {
            visibility: "private".into(),
            max_length,
            unit: "chars".into(),
            reserve_per_part: 0,
        };
        let mut manifest = PluginManifest {
            id: "acme.chat".into(),
            name: "Acme".into(),
            version: "1.0.0".into(),
            kind: PluginKind::Social,
            description: String::new(),
            settings: vec![],
            capabilities: Capabilities {
                http_hosts: vec![],
                credentials: vec![],
            },
            streams: vec![],
            accepts_webhooks: false,
            text_limits: vec![limit(1)],
            reply_windows: vec![],
            oauth2: None,
            channel: None,
            billable_kinds: vec![],
        };
        manifest.channel = Some(manifest.channel());
        let error = manifest
            .validate(PluginKind::Social)
            .expect_err("a limit of 1 is refused");
        assert!(
            error
                .to_string()
                .contains("the least the host accepts is 64"),
            "{error}"
        );
        manifest.text_limits = vec![limit(crate::runtime::bounds::MIN_TEXT_LIMIT)];
        assert!(manifest.validate(PluginKind::Social).is_ok());
        // A reserve per part must leave the minimum.
        manifest.text_limits[0].reserve_per_part = 1;
        let error = manifest
            .validate(PluginKind::Social)
            .expect_err("63 left is refused");
        assert!(
            error.to_string().contains("reserves 1 of its 64"),
            "{error}"
        );
        manifest.text_limits = vec![TextLimit {
            reserve_per_part: 36,
            ..limit(100)
        }];
        assert!(manifest.validate(PluginKind::Social).is_ok());
        // A social plugin says what its channel can do.
        manifest.channel = None;
        let error = manifest
            .validate(PluginKind::Social)
            .expect_err("no channel capabilities");
        assert!(
            error.to_string().contains("channel capabilities"),
            "{error}"
        );
    }
}
