//! OAuth2 connections of installations: the client settings a plugin's `oauth2-spec` and the
//! installation's settings make, the stored grant, and [`GrantTokens`], the hub's
//! [`TokenSource`] that renews tokens before they expire and once more after a 401.
//!
//! Renewal is serialized per installation: one async lock per installation is held across
//! the request to the provider and until the new tokens are stored, so a rotating refresh
//! token is sent once, and its successor is persisted before anyone can use it.

pub mod flows;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use url::Url;

use self::flows::{FlowError, Tokens};
use crate::manifest::{expand, oauth_settings, origin_template, OAuth2Spec};
use crate::runtime::{NetworkAccess, TokenError, TokenSource};
use crate::secrets::SecretBox;
use crate::store::{Db, OAuthGrantRow, OAuthTokensUpdate};

/// Longest margin before expiry at which a token is renewed ahead of use.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Timeout of one request to a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

/// How a grant was made, which is how it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    AuthorizationCode,
    JwtBearer,
    ClientCredentials,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::AuthorizationCode => "authorization-code-pkce",
            Flow::JwtBearer => "jwt-bearer",
            Flow::ClientCredentials => "client-credentials",
        }
    }

    /// Also takes the names older hosts stored (`jwtbearer`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.replace('-', "").as_str() {
            "authorizationcodepkce" | "authorizationcode" => Some(Flow::AuthorizationCode),
            "jwtbearer" => Some(Flow::JwtBearer),
            "clientcredentials" => Some(Flow::ClientCredentials),
            _ => None,
        }
    }
}

/// The OAuth2 client of one installation: endpoints from the plugin's spec (templates filled
/// from settings), credentials from the reserved settings. `Debug` hides the secrets.
#[derive(Clone)]
pub struct ClientConfig {
    pub installation_id: String,
    pub authorize_url: Option<Url>,
    pub token_url: Url,
    pub scopes: Vec<String>,
    pub flows: Vec<Flow>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub jwt_private_key: Option<String>,
    pub jwt_username: Option<String>,
    pub jwt_audience: String,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("installation_id", &self.installation_id)
            .field(
                "authorize_url",
                &self.authorize_url.as_ref().map(Url::as_str),
            )
            .field("token_url", &self.token_url.as_str())
            .field("scopes", &self.scopes)
            .field("flows", &self.flows)
            .field("client_id", &self.client_id)
            .field("jwt_username", &self.jwt_username)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// The client of an installation from its plugin's spec and its settings (secrets
    /// decrypted, defaults not yet applied: `defaults` fills them). The endpoints' origins
    /// must be among the `approved` origin templates of the plugin version, and reachable
    /// under `network`.
    pub fn new(
        installation_id: &str,
        spec: &OAuth2Spec,
        settings: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
        approved: &[String],
        network: NetworkAccess,
    ) -> Result<Self, String> {
        let mut values = defaults.clone();
        values.extend(
            settings
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let url = |what: &str, template: &str| -> Result<Url, String> {
            let expanded = expand(template, &values)
                .map_err(|e| format!("oauth2 {what} `{template}`: {e}"))?
                .ok_or_else(|| {
                    format!("oauth2 {what} `{template}` needs settings that are not set")
                })?;
            let parsed = Url::parse(&expanded)
                .map_err(|e| format!("oauth2 {what} `{expanded}` is not a URL: {e}"))?;
            let origin = origin_template(template);
            if !approved.contains(&origin) {
                return Err(format!(
                    "the oauth2 {what}'s origin {} (`{origin}` in the manifest) is not approved; \
                     an admin must approve it with the plugin's other hosts (`switchboard plugin \
                     install --approve`, or the approve API) before the OAuth2 flows use it",
                    parsed.origin().ascii_serialization()
                ));
            }
            check_endpoint(&parsed)
                .map_err(|reason| format!("oauth2 {what} `{expanded}`: {reason}"))?;
            network
                .check_url(&parsed)
                .map_err(|refused| format!("oauth2 {what}: {refused}"))?;
            Ok(parsed)
        };
        let token_url = url("token-url", &spec.token_url)?;
        let authorize_url = if spec.authorize_url.trim().is_empty() {
            None
        } else {
            Some(url("authorize-url", &spec.authorize_url)?)
        };
        let get = |key: &str| values.get(key).cloned();
        let client_id = get(oauth_settings::CLIENT_ID).ok_or_else(|| {
            format!(
                "the setting `{}` (the OAuth2 client id) is not set",
                oauth_settings::CLIENT_ID
            )
        })?;
        Ok(Self {
            installation_id: installation_id.to_string(),
            jwt_audience: get(oauth_settings::JWT_AUDIENCE)
                .unwrap_or_else(|| token_url.origin().ascii_serialization()),
            authorize_url,
            token_url,
            scopes: spec.scopes.clone(),
            flows: spec.flows.iter().filter_map(|f| Flow::parse(f)).collect(),
            client_id,
            client_secret: get(oauth_settings::CLIENT_SECRET),
            jwt_private_key: get(oauth_settings::JWT_PRIVATE_KEY),
            jwt_username: get(oauth_settings::JWT_USERNAME),
        })
    }

    pub fn supports(&self, flow: Flow) -> bool {
        self.flows.contains(&flow)
    }
}

/// Client secrets and codes go to these endpoints: HTTPS, or plain HTTP on loopback only (local
/// simulators and test providers).
fn check_endpoint(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("must be https (plain http only on loopback)".into())
            }
        }
        other => Err(format!("scheme `{other}` is not http(s)")),
    }
}

/// The HTTP client for token endpoints: no redirects (a redirect could carry a secret
/// elsewhere), bounded time, and the same address checks as plugin requests (names are
/// resolved once and the checked address is the one connected to).
pub fn http_client(network: NetworkAccess) -> anyhow::Result<reqwest::Client> {
    Ok(network
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(TOKEN_TIMEOUT)
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A grant in memory. `Debug` hides the tokens.
#[derive(Clone)]
pub struct Grant {
    pub flow: Option<Flow>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
    pub issued_at: i64,
    pub scopes: String,
    pub extras: BTreeMap<String, String>,
    pub generation: i64,
    pub needs_reauth: bool,
    pub error: Option<String>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("flow", &self.flow)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .field("needs_reauth", &self.needs_reauth)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Keys of the sealed token blob.
const ACCESS: &str = "access_token";
const REFRESH: &str = "refresh_token";
const EXTRA_PREFIX: &str = "extra.";

/// The associated data tokens are sealed under: distinct from the installation's settings.
fn owner(installation_id: &str) -> String {
    format!("oauth:{installation_id}")
}

impl Grant {
    /// From fresh tokens; a refresh that returned no refresh token keeps `previous`.
    pub fn from_tokens(
        flow: Flow,
        tokens: Tokens,
        previous_refresh: Option<String>,
        now: i64,
    ) -> Self {
        Grant {
            flow: Some(flow),
            expires_at: tokens
                .expires_in
                .map(|d| now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64)),
            issued_at: now,
            scopes: tokens.scopes.map(|s| s.join(" ")).unwrap_or_default(),
            refresh_token: tokens.refresh_token.or(previous_refresh),
            access_token: tokens.access_token,
            extras: tokens.extras,
            generation: 0,
            needs_reauth: false,
            error: None,
        }
    }

    pub fn seal(&self, secrets: &SecretBox, installation_id: &str) -> anyhow::Result<Vec<u8>> {
        let mut map = BTreeMap::new();
        map.insert(ACCESS.to_string(), self.access_token.clone());
        if let Some(refresh) = &self.refresh_token {
            map.insert(REFRESH.to_string(), refresh.clone());
        }
        for (key, value) in &self.extras {
            map.insert(format!("{EXTRA_PREFIX}{key}"), value.clone());
        }
        Ok(secrets.seal(&owner(installation_id), &map)?)
    }

    pub fn open(secrets: &SecretBox, row: &OAuthGrantRow) -> anyhow::Result<Self> {
        let mut map = match &row.tokens {
            Some(blob) => secrets.open(&owner(&row.installation_id), blob)?,
            None => BTreeMap::new(),
        };
        let access_token = map.remove(ACCESS).unwrap_or_default();
        let refresh_token = map.remove(REFRESH);
        let extras = map
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(EXTRA_PREFIX)?.to_string(), v)))
            .collect();
        let connected = row.tokens.is_some();
        Ok(Grant {
            flow: Flow::parse(&row.flow),
            access_token,
            refresh_token,
            expires_at: row.expires_at,
            issued_at: row.issued_at.unwrap_or(row.updated_at),
            scopes: row.scopes.clone(),
            extras,
            generation: row.generation,
            needs_reauth: row.needs_reauth || !connected,
            error: row.reauth_error.clone(),
        })
    }

    /// Whether the token should be renewed before use: within a margin of its expiry (a
    /// quarter of its lifetime, at most a minute).
    fn expires_soon(&self, now: i64) -> bool {
        let Some(expires_at) = self.expires_at else {
            return false;
        };
        let lifetime = (expires_at - self.issued_at).max(0);
        let margin = (lifetime / 4).min(RENEW_MARGIN.as_millis() as i64);
        now >= expires_at - margin
    }

    pub fn update<'a>(
        &'a self,
        installation_id: &'a str,
        sealed: &'a [u8],
        now: i64,
    ) -> OAuthTokensUpdate<'a> {
        OAuthTokensUpdate {
            installation_id,
            flow: self.flow.map_or("none", Flow::as_str),
            tokens: sealed,
            expires_at: self.expires_at,
            issued_at: self.issued_at,
            scopes: &self.scopes,
            now,
        }
    }
}

/// Told when an installation starts or stops needing reauthorization (for the metrics).
pub type ReauthListener = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// The hub's token source of one installation. One exists per installation per process (see
/// [`Registry`]), so its lock serializes every renewal of that installation here; the grant's
/// generation in the database guards against other processes.
pub struct GrantTokens {
    installation_id: String,
    db: Db,
    secrets: SecretBox,
    http: reqwest::Client,
    config: Mutex<Arc<ClientConfig>>,
    /// `None` until loaded from the database.
    grant: tokio::sync::Mutex<Option<Grant>>,
    /// Non-secret extras of the current grant, readable without waiting for a renewal.
    extras: Mutex<BTreeMap<String, String>>,
    listener: Option<ReauthListener>,
}

impl fmt::Debug for GrantTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantTokens")
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl GrantTokens {
    fn config(&self) -> Arc<ClientConfig> {
        match self.config.lock() {
            Ok(config) => Arc::clone(&config),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_config(&self, config: ClientConfig) {
        if let Ok(mut current) = self.config.lock() {
            *current = Arc::new(config);
        }
    }

    /// Loads the grant from the database: the first time, and whenever the cached one cannot
    /// be used as it is (another process may have reconnected or renewed it).
    async fn load(&self) -> Result<Option<Grant>, TokenError> {
        let row = self
            .db
            .get_oauth_grant(&self.installation_id)
            .await
            .map_err(|e| TokenError::Unavailable(format!("reading the grant: {e}")))?;
        let grant = match row {
            Some(row) => Some(Grant::open(&self.secrets, &row).map_err(|e| {
                TokenError::Unavailable(format!("the stored tokens do not open: {e}"))
            })?),
            None => None,
        };
        if let (Some(grant), Ok(mut extras)) = (&grant, self.extras.lock()) {
            extras.clone_from(&grant.extras);
        }
        Ok(grant)
    }

    /// Drops the cached grant: the next use reads the database.
    pub async fn forget(&self) {
        *self.grant.lock().await = None;
    }

    /// The current grant, loading it when needed; `fresh` forces a read of the database.
    async fn current(&self, cached: &mut Option<Grant>, fresh: bool) -> Result<Grant, TokenError> {
        let usable = cached.as_ref().is_some_and(|g| !g.needs_reauth);
        if fresh || !usable {
            match self.load().await? {
                Some(grant) => *cached = Some(grant),
                None => {
                    let message = "it was never connected; connect it with \
                                   `GET /api/v1/installations/{id}/oauth/start` (browser) or \
                                   `POST /api/v1/installations/{id}/oauth/connect`"
                        .replace("{id}", &self.installation_id);
                    self.mark_reauth(None, &message).await;
                    return Err(TokenError::NeedsReauthorization(message));
                }
            }
        }
        let grant = cached
            .clone()
            .ok_or_else(|| TokenError::Unavailable("no grant".into()))?;
        if grant.needs_reauth {
            return Err(TokenError::NeedsReauthorization(
                grant
                    .error
                    .clone()
                    .unwrap_or_else(|| "the grant was revoked".into()),
            ));
        }
        Ok(grant)
    }

    async fn mark_reauth(&self, generation: Option<i64>, message: &str) {
        match self
            .db
            .mark_oauth_reauth(&self.installation_id, generation, message, now_ms())
            .await
        {
            Ok(true) => {
                tracing::warn!(installation = %self.installation_id, error = %message, "OAuth2 grant needs reauthorization");
                if let Some(listener) = &self.listener {
                    listener(&self.installation_id, true);
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(installation = %self.installation_id, %error, "could not record that the grant needs reauthorization")
            }
        }
    }

    /// Renews the grant at the provider while holding the lock, and stores the result before
    /// the lock is released.
    async fn renew(&self, cached: &mut Option<Grant>, grant: Grant) -> Result<String, TokenError> {
        let config = self.config();
        let now = now_ms();
        let result = match grant.flow {
            Some(Flow::AuthorizationCode) => match &grant.refresh_token {
                Some(refresh) => flows::refresh(&config, &self.http, refresh).await,
                None => Err(FlowError::Refused(
                    "the access token expired and the provider issued no refresh token \
                     (ask for offline access / the refresh_token scope); connect again"
                        .into(),
                )),
            },
            Some(Flow::JwtBearer) => flows::jwt_bearer(&config, &self.http, now / 1000).await,
            Some(Flow::ClientCredentials) => flows::client_credentials(&config, &self.http).await,
            None => Err(FlowError::Refused(
                "the grant's flow is unknown; connect again".into(),
            )),
        };
        let tokens = match result {
            Ok(tokens) => tokens,
            Err(FlowError::Unavailable(message)) => {
                tracing::info!(installation = %self.installation_id, error = %message, "renewing the OAuth2 token failed; will try again");
                return Err(TokenError::Unavailable(message));
            }
            Err(FlowError::Refused(message) | FlowError::Config(message)) => {
                self.mark_reauth(Some(grant.generation), &message).await;
                *cached = None;
                return Err(TokenError::NeedsReauthorization(message));
            }
        };
        let flow = grant.flow.unwrap_or(Flow::AuthorizationCode);
        let mut renewed = Grant::from_tokens(flow, tokens, grant.refresh_token.clone(), now);
        if renewed.extras.is_empty() {
            renewed.extras = grant.extras.clone();
        }
        if renewed.scopes.is_empty() {
            renewed.scopes = grant.scopes.clone();
        }
        let sealed = renewed
            .seal(&self.secrets, &self.installation_id)
            .map_err(|e| TokenError::Unavailable(format!("sealing the tokens: {e}")))?;
        let stored = self
            .db
            .save_oauth_refresh(
                &renewed.update(&self.installation_id, &sealed, now),
                grant.generation,
            )
            .await
            .map_err(|e| TokenError::Unavailable(format!("storing the renewed tokens: {e}")))?;
        match stored {
            Some(generation) => {
                renewed.generation = generation;
                tracing::info!(installation = %self.installation_id, flow = flow.as_str(), "OAuth2 access token renewed");
                if let Ok(mut extras) = self.extras.lock() {
                    extras.clone_from(&renewed.extras);
                }
                let token = renewed.access_token.clone();
                *cached = Some(renewed);
                Ok(token)
            }
            None => {
                // Reconnected or renewed elsewhere meanwhile: that grant wins.
                let grant = self.current(cached, true).await?;
                Ok(grant.access_token)
            }
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for GrantTokens {
    async fn access_token(&self) -> Result<String, TokenError> {
        let mut cached = self.grant.lock().await;
        let grant = self.current(&mut cached, false).await?;
        if !grant.expires_soon(now_ms()) {
            return Ok(grant.access_token);
        }
        // Another process may have renewed it already.
        let grant = self.current(&mut cached, true).await?;
        if !grant.expires_soon(now_ms()) {
            return Ok(grant.access_token);
        }
        self.renew(&mut cached, grant).await
    }

    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, TokenError> {
        let mut cached = self.grant.lock().await;
        let grant = self.current(&mut cached, true).await?;
        if grant.access_token != rejected {
            // Renewed by another call while this one waited.
            return Ok(grant.access_token);
        }
        self.renew(&mut cached, grant).await
    }

    fn extras(&self) -> BTreeMap<String, String> {
        self.extras.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// The token sources of one hub, one per installation.
pub struct Registry {
    db: Db,
    secrets: SecretBox,
    http: reqwest::Client,
    sources: Mutex<HashMap<String, Arc<GrantTokens>>>,
    listener: Option<ReauthListener>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// `http` is the client for token endpoints ([`http_client`]).
    pub fn new(
        db: Db,
        secrets: SecretBox,
        http: reqwest::Client,
        listener: Option<ReauthListener>,
    ) -> Self {
        Self {
            db,
            secrets,
            http,
            sources: Mutex::default(),
            listener,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The installation's token source with `config`, its grant loaded.
    pub async fn source(&self, config: ClientConfig) -> Result<Arc<GrantTokens>, TokenError> {
        let id = config.installation_id.clone();
        let source = {
            let mut sources = self
                .sources
                .lock()
                .map_err(|_| TokenError::Unavailable("token registry poisoned".into()))?;
            match sources.get(&id) {
                Some(source) => {
                    source.set_config(config);
                    Arc::clone(source)
                }
                None => {
                    let source = Arc::new(GrantTokens {
                        installation_id: id.clone(),
                        db: self.db.clone(),
                        secrets: self.secrets.clone(),
                        http: self.http.clone(),
                        config: Mutex::new(Arc::new(config)),
                        grant: tokio::sync::Mutex::new(None),
                        extras: Mutex::default(),
                        listener: self.listener.clone(),
                    });
                    sources.insert(id, Arc::clone(&source));
                    source
                }
            }
        };
        // Extras (such as an API host) are needed at bind time: load the grant once.
        {
            let mut cached = source.grant.lock().await;
            if cached.is_none() {
                *cached = source.load().await?;
            }
        }
        Ok(source)
    }

    /// After a (re)connection: every source of the installation reads the new grant.
    pub async fn forget(&self, installation_id: &str) {
        let source = self
            .sources
            .lock()
            .ok()
            .and_then(|s| s.get(installation_id).cloned());
        if let Some(source) = source {
            source.forget().await;
        }
    }
}

/// Keeps the listener alive without a strong cycle through the hub.
pub fn weak_listener<T: Send + Sync + 'static>(
    target: Weak<T>,
    call: fn(&T, &str, bool),
) -> ReauthListener {
    Arc::new(move |installation: &str, needs: bool| {
        if let Some(target) = target.upgrade() {
            call(&target, installation, needs);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OAuth2Spec {
        OAuth2Spec {
            authorize_url: "{login_url}/auth".into(),
            token_url: "{login_url}/token".into(),
            scopes: vec!["api".into()],
            flows: vec!["authorization-code-pkce".into(), "jwtbearer".into()],
        }
    }

    /// What `plugin install --approve` approves for [`spec`]: the endpoints' origin.
    fn approved() -> Vec<String> {
        vec!["{login_url}".to_string()]
    }

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_fills_templates_and_checks_endpoints() {
        let config = ClientConfig::new(
            "sf",
            &spec(),
            &settings(&[("oauth_client_id", "cid"), ("oauth_client_secret", "shh")]),
            &settings(&[("login_url", "https://login.salesforce.com")]),
            &approved(),
            NetworkAccess::default(),
        )
        .expect("config");
        assert_eq!(
            config.token_url.as_str(),
            "https://login.salesforce.com/token"
        );
        assert_eq!(config.jwt_audience, "https://login.salesforce.com");
        assert_eq!(config.flows, vec![Flow::AuthorizationCode, Flow::JwtBearer]);
        assert!(!format!("{config:?}").contains("shh"));

        let plain = ClientConfig::new(
            "sf",
            &spec(),
            &settings(&[
                ("oauth_client_id", "cid"),
                ("login_url", "http://evil.example"),
            ]),
            &BTreeMap::new(),
            &approved(),
            NetworkAccess::default(),
        )
        .expect_err("plain http off loopback");
        assert!(plain.contains("https"), "{plain}");
        let missing = ClientConfig::new(
            "sf",
            &spec(),
            &settings(&[("login_url", "http://127.0.0.1:9")]),
            &BTreeMap::new(),
            &approved(),
            NetworkAccess {
                allow_private_network: true,
            },
        )
        .expect_err("no client id");
        assert!(missing.contains("oauth_client_id"), "{missing}");

        // A loopback token endpoint without the deployment's permission: refused, naming the
        // host, the address and the setting.
        let loopback = ClientConfig::new(
            "sf",
            &spec(),
            &settings(&[
                ("oauth_client_id", "cid"),
                ("login_url", "http://127.0.0.1:9"),
            ]),
            &BTreeMap::new(),
            &approved(),
            NetworkAccess::default(),
        )
        .expect_err("loopback refused");
        assert!(
            loopback.contains("127.0.0.1") && loopback.contains("allow_private_network"),
            "{loopback}"
        );
    }

    #[test]
    fn an_unapproved_token_or_authorize_origin_is_refused_by_name() {
        let values = settings(&[
            ("oauth_client_id", "cid"),
            ("oauth_client_secret", "shh"),
            ("login_url", "https://login.attacker.example"),
        ]);
        for approved in [vec![], vec!["{api_base}".to_string()]] {
            let error = ClientConfig::new(
                "sf",
                &spec(),
                &values,
                &BTreeMap::new(),
                &approved,
                NetworkAccess::default(),
            )
            .expect_err("not approved");
            assert!(
                error.contains("https://login.attacker.example") && error.contains("not approved"),
                "{error}"
            );
            assert!(!error.contains("shh"), "{error}");
        }
    }

    #[test]
    fn renewal_margin_is_a_quarter_of_the_lifetime_at_most_a_minute() {
        let grant = |issued_at, expires_at| Grant {
            flow: Some(Flow::AuthorizationCode),
            access_token: String::new(),
            refresh_token: None,
            expires_at: Some(expires_at),
            issued_at,
            scopes: String::new(),
            extras: BTreeMap::new(),
            generation: 1,
            needs_reauth: false,
            error: None,
        };
        // One hour: renewed in the last minute.
        let hour = grant(0, 3_600_000);
        assert!(!hour.expires_soon(3_539_000));
        assert!(hour.expires_soon(3_541_000));
        // Eight seconds: renewed in the last two.
        let short = grant(0, 8_000);
        assert!(!short.expires_soon(5_900));
        assert!(short.expires_soon(6_100));
    }

    #[test]
    fn jwt_assertions_are_rs256_with_the_documented_claims() {
        let key = include_str!("../../tests/oauth/support/test_rsa_key.pem");
        let public = include_str!("../../tests/oauth/support/test_rsa_key.pub.pem");
        let mut config = ClientConfig::new(
            "sf",
            &spec(),
            &settings(&[
                ("oauth_client_id", "consumer-key"),
                ("login_url", "https://login.salesforce.com"),
            ]),
            &BTreeMap::new(),
            &approved(),
            NetworkAccess::default(),
        )
        .expect("config");
        config.jwt_private_key = Some(key.into());
        config.jwt_username = Some("bot@acme.example".into());
        let now = chrono::Utc::now().timestamp();
        let jwt = flows::assertion(&config, now).expect("assertion");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://login.salesforce.com"]);
        validation.set_issuer(&["consumer-key"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).expect("public key"),
            &validation,
        )
        .expect("valid assertion");
        assert_eq!(decoded.claims["sub"], "bot@acme.example");
        let exp = decoded.claims["exp"].as_i64().expect("exp");
        assert!(exp > now && exp <= now + 180, "exp at most 3 minutes ahead");

        config.jwt_private_key = Some("not a key".into());
        assert!(matches!(
            flows::assertion(&config, now),
            Err(FlowError::Config(_))
        ));
    }
}
