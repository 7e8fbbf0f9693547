//! The outbound HTTP capability: the only way out of the sandbox.
//!
//! Every request a plugin makes is checked against the origins the plugin requested in its
//! manifest and the admin approved; credentials the host holds are added here, so plugins never
//! need to handle tokens; redirects are not followed (a redirect could leave the grant); bodies
//! are capped. Before connecting, the address a request would reach is checked
//! ([`NetworkAccess`]): loopback, private and link-local addresses, and plain `http`, are
//! refused unless the deployment allows them, and the checked address is the one connected to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use url::Url;

use super::bindings::http::{HttpError, Request, Response};
use super::oauth::{TokenError, TokenSource, ACCESS_TOKEN_MARKER};

/// Headers a plugin may not set: they belong to the transport, not to the plugin.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// An allowed origin, `scheme://host[:port]`, where the host may start with a `*.` wildcard
/// label. A missing port means the scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    wildcard: bool,
    port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{pattern}` is not an origin pattern like `https://api.example.com[:port]`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl OriginPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| fail("missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(fail("scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(fail("only scheme, host and port are allowed"));
        }
        // An IPv6 host is bracketed and holds colons itself: the port follows the `]`.
        let port_at = match authority.strip_prefix('[') {
            Some(_) => authority
                .find(']')
                .map(|end| end + 1)
                .filter(|&end| authority[end..].starts_with(':')),
            None => authority.rfind(':'),
        };
        let (host, port) = match port_at {
            Some(at) => {
                let port = authority[at + 1..]
                    .parse::<u16>()
                    .map_err(|_| fail("port must be a number"))?;
                (&authority[..at], port)
            }
            None => (authority, default_port),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if host.is_empty() || host.contains('*') {
            return Err(fail(
                "`*` is only allowed as the first label, as in `*.example.com`",
            ));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }

    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        url.scheme() == self.scheme && host_ok && url.port_or_known_default() == Some(self.port)
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.wildcard { "*." } else { "" };
        write!(f, "{}://{}{}:{}", self.scheme, star, self.host, self.port)
    }
}

/// A credential resolved from settings, ready to be added to matching requests. A value may
/// hold the OAuth2 access token's marker, replaced by the current token per request.
#[derive(Clone)]
pub enum Credential {
    Header { name: String, value: String },
    Query { name: String, value: String },
    PathPrefix(String),
}

impl Credential {
    pub fn basic(username: &str, password: &str) -> Self {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Credential::Header {
            name: "authorization".into(),
            value: format!("Basic {token}"),
        }
    }

    pub fn bearer(token: &str) -> Self {
        Credential::Header {
            name: "authorization".into(),
            value: format!("Bearer {token}"),
        }
    }
}

// Credentials hold secrets: never print them.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Header { name, .. } => write!(f, "Header({name}: [redacted])"),
            Credential::Query { name, .. } => write!(f, "Query({name}=[redacted])"),
            Credential::PathPrefix(_) => write!(f, "PathPrefix([redacted])"),
        }
    }
}

/// What one installation's plugin may reach, and how.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Shown in denial messages.
    pub plugin_id: String,
    pub allowed: Vec<OriginPattern>,
    /// Requested by the manifest but not approved; named in denial messages.
    pub unapproved: Vec<String>,
    pub credentials: Vec<(OriginPattern, Credential)>,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Where `{oauth.access-token}` in credentials comes from.
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// The installation's secret values, masked wherever a URL the plugin wrote is quoted.
    pub secrets: Arc<[String]>,
}

// Token sources hold secrets: show only that there is one.
impl fmt::Debug for dyn TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource([redacted])")
    }
}

impl Credential {
    fn value(&self) -> &str {
        match self {
            Credential::Header { value, .. } | Credential::Query { value, .. } => value,
            Credential::PathPrefix(prefix) => prefix,
        }
    }

    fn uses_token(&self) -> bool {
        self.value().contains(ACCESS_TOKEN_MARKER)
    }
}

/// A request after the policy accepted it: the URL and headers to send.
#[derive(Debug)]
pub struct Authorized {
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// The URL as the plugin wrote it, safe to log: credentials are added after, secrets are
    /// masked and the length is capped ([`quoted`]).
    pub display_url: String,
}

impl HttpPolicy {
    /// `text` (from the plugin) made fit for a log line or an error: see [`quoted`].
    pub fn quoted(&self, text: &str) -> String {
        quoted(text, &self.secrets)
    }

    /// Checks a plugin's request and adds credentials that need no OAuth2 token.
    pub fn authorize(&self, request: &Request) -> Result<Authorized, HttpError> {
        self.authorize_with_token(request, None)
    }

    /// Whether a credential for `url` needs the OAuth2 access token.
    pub fn needs_token(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return false;
        };
        self.credentials
            .iter()
            .any(|(pattern, credential)| credential.uses_token() && pattern.matches(&url))
    }

    /// Checks a plugin's request and adds credentials, with `token` for `{oauth.access-token}`.
    pub fn authorize_with_token(
        &self,
        request: &Request,
        token: Option<&str>,
    ) -> Result<Authorized, HttpError> {
        let mut url = Url::parse(&request.url).map_err(|e| {
            HttpError::InvalidRequest(format!("invalid URL `{}`: {e}", self.quoted(&request.url)))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "unsupported scheme in `{}`",
                self.quoted(&request.url)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "credentials in the URL are not allowed; declare them in the manifest's `credentials`".into(),
            ));
        }
        if reqwest::Method::from_bytes(request.method.as_bytes()).is_err() {
            return Err(HttpError::InvalidRequest(format!(
                "invalid method `{}`",
                self.quoted(&request.method)
            )));
        }
        let origin = self.quoted(&url.origin().ascii_serialization());
        if !self.allowed.iter().any(|p| p.matches(&url)) {
            let hint = if self.unapproved.is_empty() {
                format!("request the capability `{origin}` in the plugin's manifest (`http-hosts`) and have an admin approve it")
            } else {
                format!(
                    "an admin must approve the capability (requested but not approved: {}), or the manifest must request `{origin}`",
                    self.unapproved.join(", ")
                )
            };
            return Err(HttpError::Denied(format!(
                "plugin `{}` may not reach {origin}: it is not among the approved hosts; {hint}",
                self.plugin_id
            )));
        }
        let display_url = self.quoted(&request.url);
        let mut headers = Vec::with_capacity(request.headers.len() + 1);
        for (name, value) in &request.headers {
            let name = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&name.as_str()) {
                return Err(HttpError::InvalidRequest(format!(
                    "header `{name}` is set by the host"
                )));
            }
            headers.push((name, value.clone()));
        }
        let mut host_added: Vec<String> = Vec::new();
        for (pattern, credential) in &self.credentials {
            if !pattern.matches(&url) {
                continue;
            }
            let filled;
            let credential = if credential.uses_token() {
                let token = token.ok_or_else(|| {
                    HttpError::Denied(format!(
                        "plugin `{}` needs the installation's OAuth2 access token for {origin}, \
                         but the installation has no OAuth2 connection",
                        self.plugin_id
                    ))
                })?;
                filled = fill_token(credential, token);
                &filled
            } else {
                credential
            };
            match credential {
                Credential::Header { name, value } => {
                    if host_added.contains(name) {
                        // Settings are given only to credentials, so the plugin cannot tell
                        // which are set: say it here.
                        return Err(HttpError::InvalidRequest(format!(
                            "two of the manifest's credential rules for {origin} set the header \
                             `{name}`, because the installation's settings fill both; set only \
                             one of the settings they use"
                        )));
                    }
                    host_added.push(name.clone());
                    if headers.iter().any(|(n, _)| n == name) {
                        return Err(HttpError::InvalidRequest(format!(
                            "header `{name}` is added by the host for {origin}; the plugin must not set it"
                        )));
                    }
                    headers.push((name.clone(), value.clone()));
                }
                Credential::Query { name, value } => {
                    url.query_pairs_mut().append_pair(name, value);
                }
                Credential::PathPrefix(prefix) => {
                    let path = format!("{}{}", prefix.trim_end_matches('/'), url.path());
                    url.set_path(&path);
                }
            }
        }
        Ok(Authorized {
            url,
            headers,
            display_url,
        })
    }
}

fn fill_token(credential: &Credential, token: &str) -> Credential {
    match credential {
        Credential::Header { name, value } => Credential::Header {
            name: name.clone(),
            value: value.replace(ACCESS_TOKEN_MARKER, token),
        },
        Credential::Query { name, value } => Credential::Query {
            name: name.clone(),
            value: value.replace(ACCESS_TOKEN_MARKER, token),
        },
        Credential::PathPrefix(prefix) => {
            Credential::PathPrefix(prefix.replace(ACCESS_TOKEN_MARKER, token))
        }
    }
}

/// What the plugin sees when no token could be had: the admin's part (reauthorize) as a denial,
/// an unreachable token endpoint as a transport failure it may retry.
fn token_error(error: TokenError) -> HttpError {
    match error {
        TokenError::NeedsReauthorization(_) => HttpError::Denied(error.to_string()),
        TokenError::Unavailable(_) => HttpError::Transport(error.to_string()),
    }
}

/// Sees every request a plugin makes, and may answer one in place of the network: the
/// developer tools (`plugin exec --trace-http` and `--record`, `plugin test`'s scripted
/// faults and fixture replay) use it. The hub never sets one.
pub trait HttpTap: Send + Sync {
    /// The answer to give instead of sending `request` (as the plugin wrote it, before the
    /// host added credentials); `None` sends it. The origin is checked against the policy
    /// either way. `secrets` are the installation's secret values.
    fn answer(&self, request: &Request, secrets: &[String]) -> Option<Result<Response, HttpError>>;
    /// Called once per request with what the plugin got back.
    fn observe(&self, exchange: &TappedExchange<'_>);
}

/// One request of a plugin and its outcome, as an [`HttpTap`] sees it.
pub struct TappedExchange<'a> {
    /// As the plugin wrote it: credentials the host adds are not in it.
    pub request: &'a Request,
    pub result: &'a Result<Response, HttpError>,
    pub elapsed: Duration,
    /// How the host authenticated the request, one line per credential, values left out.
    pub credentials: Vec<String>,
    /// The installation's secret values, to mask wherever the exchange is shown or stored.
    pub secrets: &'a [String],
    /// Whether the tap answered it rather than the network.
    pub scripted: bool,
}

impl fmt::Debug for dyn HttpTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpTap")
    }
}

impl HttpPolicy {
    /// How the host authenticates a request to `url`: one line per matching credential rule,
    /// without the values.
    pub fn credential_kinds(&self, url: &str) -> Vec<String> {
        let Ok(url) = Url::parse(url) else {
            return Vec::new();
        };
        self.credentials
            .iter()
            .filter(|(pattern, _)| pattern.matches(&url))
            .map(|(_, credential)| match credential {
                Credential::Header { name, .. } => format!("header `{name}`"),
                Credential::Query { name, .. } => format!("query parameter `{name}`"),
                Credential::PathPrefix(_) => "path prefix".to_string(),
            })
            .collect()
    }
}

/// Sends authorized requests. One client is shared by all plugins; redirects are returned to the
/// plugin rather than followed.
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    network: NetworkAccess,
    tap: Option<Arc<dyn HttpTap>>,
}

impl HttpSender {
    pub fn new(network: NetworkAccess) -> anyhow::Result<Self> {
        let client = network
            .client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            network,
            tap: None,
        })
    }

    /// Shows every request to `tap`, which may answer in place of the network.
    pub fn set_tap(&mut self, tap: Arc<dyn HttpTap>) {
        self.tap = Some(tap);
    }

    /// Sends a plugin's request within `remaining`, through the tap when there is one.
    pub async fn send(
        &self,
        policy: &HttpPolicy,
        request: Request,
        remaining: Duration,
    ) -> Result<Response, HttpError> {
        let Some(tap) = &self.tap else {
            return self.send_checked(policy, request, remaining).await;
        };
        let started = Instant::now();
        let seen = request.clone();
        let answer = tap.answer(&seen, &policy.secrets);
        let scripted = answer.is_some();
        let result = match answer {
            // The token's value does not matter here: only the origin and headers are checked.
            Some(answer) => policy.authorize_with_token(&seen, Some("")).and(answer),
            None => self.send_checked(policy, request, remaining).await,
        };
        tap.observe(&TappedExchange {
            request: &seen,
            result: &result,
            elapsed: started.elapsed(),
            credentials: policy.credential_kinds(&seen.url),
            secrets: &policy.secrets,
            scripted,
        });
        result
    }

    /// Sends a plugin's request within `remaining`. A request that carried the OAuth2 token and
    /// got 401 is sent once more with a refreshed token; the plugin sees only the final answer.
    async fn send_checked(
        &self,
        policy: &HttpPolicy,
        mut request: Request,
        remaining: Duration,
    ) -> Result<Response, HttpError> {
        let started = Instant::now();
        let source = match &policy.token_source {
            Some(source) if policy.needs_token(&request.url) => Arc::clone(source),
            _ => {
                let authorized = policy.authorize(&request)?;
                let body = std::mem::take(&mut request.body);
                return self
                    .send_once(policy, &request, authorized, body, remaining)
                    .await;
            }
        };
        let deadline = |what: &str| {
            HttpError::Timeout(format!(
                "{what} took longer than the call's remaining {} ms",
                remaining.as_millis()
            ))
        };
        let token = tokio::time::timeout(remaining, source.access_token())
            .await
            .map_err(|_| deadline("getting the OAuth2 access token"))?
            .map_err(token_error)?;
        let authorized = policy.authorize_with_token(&request, Some(&token))?;
        let left = remaining.saturating_sub(started.elapsed());
        let response = self
            .send_once(policy, &request, authorized, request.body.clone(), left)
            .await?;
        if response.status != 401 {
            return Ok(response);
        }
        let left = remaining.saturating_sub(started.elapsed());
        let refreshed =
            match tokio::time::timeout(left, source.refresh_after_rejection(&token)).await {
                Ok(Ok(refreshed)) if refreshed != token => refreshed,
                Ok(Ok(_)) => return Ok(response),
                // The API's own 401 says more to the plugin than the refresh failure; the hub
                // records the failure (needs reauthorization) on its side.
                Ok(Err(error)) => {
                    tracing::info!(%error, "refreshing the OAuth2 token after a 401 failed");
                    return Ok(response);
                }
                Err(_) => return Err(deadline("refreshing the OAuth2 access token")),
            };
        let authorized = policy.authorize_with_token(&request, Some(&refreshed))?;
        let left = remaining.saturating_sub(started.elapsed());
        let body = std::mem::take(&mut request.body);
        self.send_once(policy, &request, authorized, body, left)
            .await
    }

    async fn send_once(
        &self,
        policy: &HttpPolicy,
        request: &Request,
        authorized: Authorized,
        body: Vec<u8>,
        remaining: Duration,
    ) -> Result<Response, HttpError> {
        let mut timeout = policy.timeout.min(remaining);
        if let Some(ms) = request.timeout_ms {
            timeout = timeout.min(Duration::from_millis(u64::from(ms)));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            HttpError::InvalidRequest(format!(
                "invalid method `{}`",
                policy.quoted(&request.method)
            ))
        })?;
        // Refused before connecting: nothing reaches a restricted address, not even a SYN.
        self.network
            .check_url(&authorized.url)
            .map_err(|refused| HttpError::Denied(refused.to_string()))?;
        let mut builder = self.client.request(method, authorized.url).timeout(timeout);
        for (name, value) in &authorized.headers {
            builder = builder.header(name, value);
        }
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let display_url = &authorized.display_url;
        let mut response = builder
            .send()
            .await
            .map_err(|e| transport_error(e, display_url, timeout))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let limit = policy.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(HttpError::ResponseTooLarge(limit as u64));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(e, display_url, timeout))?
        {
            if body.len() + chunk.len() > limit {
                return Err(HttpError::ResponseTooLarge(limit as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn transport_error(error: reqwest::Error, url: &str, timeout: Duration) -> HttpError {
    if let Some(refused) = network_refusal(&error) {
        return HttpError::Denied(refused.to_string());
    }
    if error.is_timeout() {
        HttpError::Timeout(format!(
            "no response from {url} within {} ms",
            timeout.as_millis()
        ))
    } else {
        // reqwest's message can contain the full URL, credentials included: describe it ourselves.
        let kind = if error.is_connect() {
            "could not connect"
        } else {
            "transport error"
        };
        HttpError::Transport(format!("{kind} for {url}"))
    }
}

/// Longest piece of a plugin-supplied URL, host or method quoted in a log line or an error.
pub const MAX_QUOTED_BYTES: usize = 256;

/// A plugin-supplied string made fit for a log line or an error: secrets masked, cut to
/// [`MAX_QUOTED_BYTES`] (on a character boundary) with the original length said.
pub fn quoted(text: &str, secrets: &[String]) -> String {
    let mut text = std::borrow::Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = std::borrow::Cow::Owned(text.replace(secret.as_str(), "[redacted]"));
        }
    }
    if text.len() <= MAX_QUOTED_BYTES {
        return text.into_owned();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

// ----- which addresses outbound requests may reach ----------------------------------------------

/// The deployment's rule for the addresses outbound requests (plugins', and the OAuth2 token
/// endpoints') may reach. By default only public addresses over https: a plugin, or a setting
/// an installation was given, must not reach the hub's own machine, its network, or a cloud
/// metadata service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkAccess {
    /// Allow loopback, private, link-local and unspecified addresses, and plain `http`
    /// (`[runtime] allow_private_network`, for tests, the demo and simulators on loopback).
    pub allow_private_network: bool,
}

/// How to allow what [`NetworkAccess`] refuses; quoted in every refusal.
const ALLOW_HINT: &str = "set `[runtime] allow_private_network = true` in the config file (or \
                          SWITCHBOARD_ALLOW_PRIVATE_NETWORK=true) to allow it, for tests and \
                          local simulators only";

/// A request [`NetworkAccess`] refused, before any connection was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefused {
    #[error(
        "refused to connect to {host}: it resolves to {address}, a {kind} address; {hint}",
        hint = ALLOW_HINT
    )]
    Address {
        host: String,
        address: IpAddr,
        kind: String,
    },
    #[error(
        "refused plain http to {host}: only https is allowed; {hint}",
        hint = ALLOW_HINT
    )]
    PlainHttp { host: String },
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn restricted_kind(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4).map(str::to_string),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothes (`::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
            // reaches the IPv4 address: judge that one.
            let nat64 = v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                nat64.then(|| {
                    let o = v6.octets();
                    Ipv4Addr::new(o[12], o[13], o[14], o[15])
                })
            });
            match embedded {
                Some(v4) => restricted_v4(v4).map(|kind| format!("IPv4-mapped {kind}")),
                None => restricted_v6(v6).map(str::to_string),
            }
        }
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("link-local (cloud metadata)")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 0 || ip.is_broadcast() {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        // 100.64.0.0/10: internal to a provider's network (and some clouds' metadata).
        Some("shared (carrier-grade NAT)")
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local (private)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local (private)")
    } else {
        None
    }
}

impl NetworkAccess {
    /// Checks what can be checked from the URL alone: the scheme, and a host written as an IP
    /// address (those are never resolved, so [`PinnedResolver`] does not see them).
    pub fn check_url(&self, url: &Url) -> Result<(), NetworkRefused> {
        if self.allow_private_network {
            return Ok(());
        }
        let host = quoted(url.host_str().unwrap_or_default(), &[]);
        if url.scheme() != "https" {
            return Err(NetworkRefused::PlainHttp { host });
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        match restricted_kind(ip) {
            Some(kind) => Err(NetworkRefused::Address {
                host,
                address: ip,
                kind,
            }),
            None => Ok(()),
        }
    }

    /// A client builder that connects only where this rule allows: names are resolved once
    /// per connection by [`PinnedResolver`], which refuses restricted addresses and hands the
    /// connector only the addresses it checked, so a DNS answer that changes between the check
    /// and the connection (rebinding) cannot move it. Proxies from the environment are not
    /// used: through a proxy the address would be the proxy's to choose.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().no_proxy();
        if self.allow_private_network {
            builder
        } else {
            builder.dns_resolver(Arc::new(PinnedResolver))
        }
    }
}

/// Resolves a host name with the system resolver and returns its addresses only when none
/// is restricted; the connection is then made to exactly these addresses.
#[derive(Debug, Clone, Copy)]
pub struct PinnedResolver;

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((address, kind)) = addresses
                .iter()
                .find_map(|a| restricted_kind(a.ip()).map(|kind| (a.ip(), kind)))
            {
                return Err(Box::new(NetworkRefused::Address {
                    host: quoted(&host, &[]),
                    address,
                    kind,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The [`NetworkRefused`] behind a client error, if that is why it failed.
pub fn network_refusal(error: &(dyn std::error::Error + 'static)) -> Option<NetworkRefused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<NetworkRefused>() {
            return Some(refused.clone());
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
            timeout_ms: None,
        }
    }

    fn policy(allowed: &[&str], credentials: Vec<(OriginPattern, Credential)>) -> HttpPolicy {
        HttpPolicy {
            plugin_id: "demo".into(),
            allowed: allowed
                .iter()
                .map(|p| OriginPattern::parse(p).expect("pattern"))
                .collect(),
            unapproved: vec![],
            credentials,
            timeout: Duration::from_secs(5),
            max_response_bytes: 1024,
            token_source: None,
            secrets: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn patterns_parse_and_match() {
        let p = OriginPattern::parse("https://*.zendesk.com").expect("parse");
        assert!(p.matches(&Url::parse("https://acme.zendesk.com/api/v2/tickets").expect("url")));
        assert!(!p.matches(&Url::parse("https://zendesk.com/").expect("url")));
        assert!(!p.matches(&Url::parse("https://evilzendesk.com/").expect("url")));
        assert!(!p.matches(&Url::parse("http://acme.zendesk.com/").expect("url")));
        let p = OriginPattern::parse("http://127.0.0.1:8081/").expect("parse");
        assert!(p.matches(&Url::parse("http://127.0.0.1:8081/x").expect("url")));
        assert!(!p.matches(&Url::parse("http://127.0.0.1:8082/x").expect("url")));
        let p = OriginPattern::parse("https://[fd00::1]").expect("IPv6 without a port");
        assert!(p.matches(&Url::parse("https://[fd00::1]/x").expect("url")));
        let p = OriginPattern::parse("http://[::1]:8081").expect("IPv6 with a port");
        assert!(p.matches(&Url::parse("http://[::1]:8081/x").expect("url")));
        assert!(OriginPattern::parse("https://[::1]:x").is_err());
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("https://a.com/path").is_err());
        assert!(OriginPattern::parse("https://a.*.com").is_err());
        assert!(OriginPattern::parse("api.example.com").is_err());
    }

    #[test]
    fn denial_names_the_origin_and_the_capability() {
        let err = policy(&["https://api.telegram.org"], vec![])
            .authorize(&request("http://127.0.0.1:9/steal"))
            .expect_err("denied");
        let HttpError::Denied(message) = err else {
            panic!("expected denied, got {err:?}")
        };
        assert!(message.contains("http://127.0.0.1:9"), "{message}");
        assert!(message.contains("http-hosts"), "{message}");
    }

    #[test]
    fn credentials_are_injected_for_matching_origins_only() {
        let tg = OriginPattern::parse("https://api.telegram.org").expect("parse");
        let zd = OriginPattern::parse("https://acme.zendesk.com").expect("parse");
        let p = policy(
            &["https://api.telegram.org", "https://acme.zendesk.com"],
            vec![
                (tg, Credential::PathPrefix("/bot123:abc".into())),
                (zd, Credential::basic("a@b.c/token", "t0k")),
            ],
        );
        let out = p
            .authorize(&request("https://api.telegram.org/getUpdates?offset=5"))
            .expect("ok");
        assert_eq!(
            out.url.as_str(),
            "https://api.telegram.org/bot123:abc/getUpdates?offset=5"
        );
        assert_eq!(
            out.display_url,
            "https://api.telegram.org/getUpdates?offset=5"
        );
        assert!(out.headers.is_empty());
        let out = p
            .authorize(&request("https://acme.zendesk.com/api/v2/users/me"))
            .expect("ok");
        assert_eq!(out.headers.len(), 1);
        assert!(out.headers[0].1.starts_with("Basic "));
    }

    #[test]
    fn plugin_cannot_override_injected_or_transport_headers() {
        let zd = OriginPattern::parse("https://acme.zendesk.com").expect("parse");
        let p = policy(
            &["https://acme.zendesk.com"],
            vec![(zd, Credential::bearer("x"))],
        );
        let mut r = request("https://acme.zendesk.com/");
        r.headers
            .push(("Authorization".into(), "Bearer mine".into()));
        assert!(matches!(p.authorize(&r), Err(HttpError::InvalidRequest(_))));
        let mut r = request("https://acme.zendesk.com/");
        r.headers.push(("Host".into(), "evil.com".into()));
        assert!(matches!(p.authorize(&r), Err(HttpError::InvalidRequest(_))));
        assert!(matches!(
            p.authorize(&request("https://user:pw@acme.zendesk.com/")),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn restricted_addresses_are_recognised_in_every_form() {
        let kind = |ip: &str| restricted_kind(ip.parse().expect("ip"));
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "100.100.100.200",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(kind(ip).is_some(), "{ip} must be refused");
        }
        assert_eq!(
            kind("169.254.169.254").as_deref(),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(
            kind("::ffff:127.0.0.1").as_deref(),
            Some("IPv4-mapped loopback")
        );
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(kind(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let strict = NetworkAccess::default();
        let check = |url: &str| strict.check_url(&Url::parse(url).expect("url"));
        assert!(
            check("https://api.example.com/x").is_ok(),
            "names go to the resolver"
        );
        let refused = check("https://169.254.169.254/latest/meta-data").expect_err("metadata");
        let message = refused.to_string();
        assert!(
            message.contains("169.254.169.254") && message.contains("allow_private_network"),
            "{message}"
        );
        assert!(matches!(
            check("http://api.example.com/"),
            Err(NetworkRefused::PlainHttp { .. })
        ));
        assert!(check("https://[::ffff:a00:1]/").is_err());
        let open = NetworkAccess {
            allow_private_network: true,
        };
        assert!(open
            .check_url(&Url::parse("http://127.0.0.1:1/").expect("url"))
            .is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let error = match PinnedResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error,
        };
        let refused = network_refusal(error.as_ref()).expect("a NetworkRefused");
        let message = refused.to_string();
        assert!(
            message.contains("localhost") && message.contains("loopback"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_refused_name_never_gets_a_connection() {
        use std::sync::atomic::Ordering;
        let (base, hits) = api().await;
        let port = base.rsplit(':').next().expect("port");
        let url = format!("https://localhost:{port}/echo");
        let p = policy(&[&format!("https://localhost:{port}")], vec![]);
        let sender = HttpSender::new(NetworkAccess::default()).expect("sender");
        let err = sender
            .send(&p, post(url), Duration::from_secs(5))
            .await
            .expect_err("refused");
        let HttpError::Denied(message) = err else {
            panic!("expected denied, got {err:?}")
        };
        assert!(
            message.contains("localhost") && message.contains("127.0.0.1"),
            "{message}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn urls_from_the_plugin_are_cut_and_masked_where_quoted() {
        let mut p = policy(&["https://api.telegram.org"], vec![]);
        p.secrets = Arc::from(vec!["hook-secret".to_string()]);
        let huge = format!("not a url {}", "x".repeat(100_000));
        let HttpError::InvalidRequest(message) = p.authorize(&request(&huge)).expect_err("bad")
        else {
            panic!("expected invalid request")
        };
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert!(message.contains("(100010 bytes)"), "says how long it was");
        let long = format!(
            "https://api.telegram.org/x?s=hook-secret&pad={}",
            "é".repeat(10_000)
        );
        let out = p.authorize(&request(&long)).expect("allowed");
        assert!(out.display_url.len() < 400, "{}", out.display_url.len());
        assert!(
            !out.display_url.contains("hook-secret"),
            "{}",
            out.display_url
        );
        assert!(out.display_url.contains("[redacted]"));
        let denied = p
            .authorize(&request(&format!("https://{}.example/", "a".repeat(5_000))))
            .expect_err("denied");
        assert!(format!("{denied:?}").len() < 2_000);
    }

    #[test]
    fn two_credentials_for_one_header_say_so() {
        let rt = OriginPattern::parse("https://rt.example.com").expect("parse");
        let p = policy(
            &["https://rt.example.com"],
            vec![
                (rt.clone(), Credential::basic("u", "pw")),
                (
                    rt,
                    Credential::Header {
                        name: "authorization".into(),
                        value: "token t".into(),
                    },
                ),
            ],
        );
        let err = p
            .authorize(&request("https://rt.example.com/REST/2.0/queues"))
            .expect_err("refused");
        assert!(format!("{err:?}").contains("set only one"), "{err:?}");
    }

    #[test]
    fn credential_debug_never_shows_the_secret() {
        let shown = format!("{:?}", Credential::bearer("supersecret"));
        assert!(!shown.contains("supersecret"));
    }

    /// An API on loopback that accepts only `Bearer good` and echoes the body it got; counts
    /// requests.
    async fn api() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use axum::http::{HeaderMap, StatusCode};
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    if auth == "Bearer good" {
                        (StatusCode::OK, body)
                    } else {
                        (StatusCode::UNAUTHORIZED, "bad token".to_string())
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), hits)
    }

    fn oauth_policy(base: &str, source: Option<Arc<dyn TokenSource>>) -> HttpPolicy {
        let pattern = OriginPattern::parse(base).expect("pattern");
        let mut p = policy(
            &[base],
            vec![(pattern, Credential::bearer(super::ACCESS_TOKEN_MARKER))],
        );
        p.token_source = source;
        p
    }

    fn post(url: String) -> Request {
        Request {
            method: "POST".into(),
            url,
            headers: vec![],
            body: b"payload".to_vec(),
            timeout_ms: None,
        }
    }

    #[tokio::test]
    async fn a_401_refreshes_once_and_retries_with_the_body() {
        use crate::runtime::oauth::StaticToken;
        let (base, hits) = api().await;
        let source = Arc::new(StaticToken::new("stale").then(&["good"]));
        let p = oauth_policy(&base, Some(source.clone()));
        let sender = HttpSender::new(NetworkAccess {
            allow_private_network: true,
        })
        .expect("sender");
        let response = sender
            .send(&p, post(format!("{base}/echo")), Duration::from_secs(5))
            .await
            .expect("sent");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body, b"payload",
            "the retry carries the body again"
        );
        assert_eq!(source.refreshes(), 1);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A token that stays refused: one refresh, one retry, then the plugin gets the 401.
        let source = Arc::new(StaticToken::new("stale").then(&["also-bad"]));
        let p = oauth_policy(&base, Some(source.clone()));
        let response = sender
            .send(&p, post(format!("{base}/echo")), Duration::from_secs(5))
            .await
            .expect("sent");
        assert_eq!(response.status, 401);
        assert_eq!(source.refreshes(), 1);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_token_credential_without_a_source_is_refused_before_sending() {
        let (base, hits) = api().await;
        let p = oauth_policy(&base, None);
        let err = HttpSender::new(NetworkAccess {
            allow_private_network: true,
        })
        .expect("sender")
        .send(&p, post(format!("{base}/echo")), Duration::from_secs(5))
        .await
        .expect_err("refused");
        let HttpError::Denied(message) = err else {
            panic!("expected denied, got {err:?}")
        };
        assert!(message.contains("OAuth2"), "{message}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn policy_debug_hides_the_token_source() {
        use crate::runtime::oauth::StaticToken;
        let p = oauth_policy(
            "http://127.0.0.1:1",
            Some(Arc::new(StaticToken::new("s3cr3t-token"))),
        );
        let shown = format!("{p:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
    }
}
