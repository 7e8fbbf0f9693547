//! The outbound HTTP capability: the only way out of the sandbox.
//!
//! Every request a plugin makes is checked against the origins the plugin requested in its
//! manifest and the admin approved; credentials the host holds are added here, so plugins never
//! need to handle tokens; redirects are not followed (a redirect could leave the grant); bodies
//! are capped.

use std::fmt;
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
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| fail("port must be a number"))?;
                (host, port)
            }
            _ => (authority, default_port),
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
    /// The URL as the plugin wrote it, safe to log (credentials are added after).
    pub display_url: String,
}

impl HttpPolicy {
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
            HttpError::InvalidRequest(format!("invalid URL `{}`: {e}", request.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "unsupported scheme in `{}`",
                request.url
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
                request.method
            )));
        }
        let origin = url.origin().ascii_serialization();
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
        let display_url = request.url.clone();
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

/// Sends authorized requests. One client is shared by all plugins; redirects are returned to the
/// plugin rather than followed.
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
}

impl HttpSender {
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// Sends a plugin's request within `remaining`. A request that carried the OAuth2 token and
    /// got 401 is sent once more with a refreshed token; the plugin sees only the final answer.
    pub async fn send(
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
            HttpError::InvalidRequest(format!("invalid method `{}`", request.method))
        })?;
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
        let sender = HttpSender::new().expect("sender");
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
        let err = HttpSender::new()
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
