//! The outbound HTTP capability: the only way out of the sandbox.
//!
//! Every request a plugin makes is checked against the origins the plugin requested in its
//! manifest and the admin approved; credentials the host holds are added here, so plugins never
//! need to handle tokens; redirects are not followed (a redirect could leave the grant); bodies
//! are capped.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use url::Url;

use super::bindings::http::{HttpError, Request, Response};

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

/// A credential resolved from settings, ready to be added to matching requests.
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
    /// Checks a plugin's request and adds credentials.
    pub fn authorize(&self, request: &Request) -> Result<Authorized, HttpError> {
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

    pub async fn send(
        &self,
        policy: &HttpPolicy,
        request: Request,
        remaining: Duration,
    ) -> Result<Response, HttpError> {
        let authorized = policy.authorize(&request)?;
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
        if !request.body.is_empty() {
            builder = builder.body(request.body);
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
}
