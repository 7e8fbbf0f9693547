//! OAuth2 connections of installations whose plugin declares an `oauth2-spec`: the admin
//! operations (start and finish the browser flow, connect without a browser), the token source
//! bound into every plugin call, and the outbox's wait while a grant needs reauthorization.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{iso, now_ms, Hub, HubError, InstallationView, OAuthView};
use crate::manifest::PluginManifest;
use crate::oauth::flows::{self, FlowError, Tokens};
use crate::oauth::{ClientConfig, Flow, Grant};
use crate::runtime::TokenSource;
use crate::store::{InstallationRow, OAuthStateRow, OutboxRow, StoreError};

/// How long an admin has to finish the provider's login and consent.
const STATE_LIFETIME: Duration = Duration::from_secs(600);

/// The route the provider sends the admin's browser back to.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// What the provider sent back to the callback.
#[derive(Debug, Clone, Default)]
pub struct OAuthCallback {
    pub state: String,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The binding the browser presented (from the cookie set at start), if any.
    pub browser_binding: Option<String>,
}

/// A browser flow started by [`Hub::oauth_start_in_browser`]: send the browser to `url` with
/// `binding` in a cookie, which the callback must present with `state`.
#[derive(Clone)]
pub struct BrowserStart {
    pub url: String,
    pub state: String,
    /// A random secret only the starting browser holds; the sealed state row keeps it too.
    pub binding: String,
    /// How long the flow may take; the cookie should not outlive it.
    pub lifetime: Duration,
}

/// Key of the binding in a state's sealed map.
const BINDING_KEY: &str = "browser_binding";

fn flow_error(error: FlowError) -> HubError {
    match error {
        FlowError::Refused(m) => HubError::Invalid(format!("the provider refused: {m}")),
        FlowError::Unavailable(m) => {
            HubError::Invalid(format!("the provider could not be used: {m}"))
        }
        FlowError::Config(m) => HubError::Invalid(m),
    }
}

impl Hub {
    /// The OAuth2 client of an installation from its plugin's spec and decrypted settings;
    /// `None` when the plugin declares no OAuth2. Its endpoints must be among `approved`.
    pub(crate) fn oauth_client(
        &self,
        installation_id: &str,
        manifest: &PluginManifest,
        settings: &BTreeMap<String, String>,
        approved: &[String],
    ) -> Result<Option<ClientConfig>, HubError> {
        let Some(spec) = &manifest.oauth2 else {
            return Ok(None);
        };
        let defaults = manifest
            .settings
            .iter()
            .filter_map(|s| Some((s.key.clone(), s.default.clone()?)))
            .collect();
        let network = self.inner.runtime.config().network;
        ClientConfig::new(
            installation_id,
            spec,
            settings,
            &defaults,
            approved,
            network,
        )
        .map(Some)
        .map_err(|e| HubError::Invalid(format!("installation `{installation_id}`: {e}")))
    }

    /// The token source bound into the installation's plugin calls, when its plugin declares
    /// OAuth2.
    pub(crate) async fn oauth_token_source(
        &self,
        installation_id: &str,
        manifest: &PluginManifest,
        settings: &BTreeMap<String, String>,
        approved: &[String],
    ) -> Result<Option<Arc<dyn TokenSource>>, HubError> {
        let Some(config) = self.oauth_client(installation_id, manifest, settings, approved)? else {
            return Ok(None);
        };
        let source = self
            .inner
            .oauth
            .source(config)
            .await
            .map_err(|e| HubError::Internal(anyhow::anyhow!("{e}")))?;
        Ok(Some(source))
    }

    /// The token source of an installation, for tools and tests that call the provider the
    /// way plugin calls do.
    pub async fn token_source(
        &self,
        installation_id: &str,
    ) -> Result<Arc<dyn TokenSource>, HubError> {
        self.bind(installation_id)
            .await?
            .runtime_installation
            .token_source
            .clone()
            .ok_or_else(|| {
                HubError::Invalid(format!(
                    "installation `{installation_id}`: its plugin declares no OAuth2"
                ))
            })
    }

    /// The OAuth2 client of a stored installation; `Invalid` when its plugin has none.
    async fn oauth_client_of(&self, installation_id: &str) -> Result<ClientConfig, HubError> {
        let bound = self.bind(installation_id).await?;
        self.oauth_client(
            installation_id,
            bound.manifest(),
            &bound.runtime_installation.settings,
            &bound.runtime_installation.approved_hosts,
        )?
        .ok_or_else(|| {
            HubError::Invalid(format!(
                "installation `{installation_id}`: its plugin ({}) declares no OAuth2",
                bound.installation.plugin_id
            ))
        })
    }

    /// Starts the browser flow (authorization code with PKCE): records a single-use state
    /// bound to the installation, and returns the provider's authorization URL to send the
    /// admin to. `redirect_uri` is this hub's public `/oauth/callback`.
    ///
    /// The state is not bound to a browser: this is for the CLI, which prints the URL for an
    /// admin to open. The HTTP API uses [`Hub::oauth_start_in_browser`].
    pub async fn oauth_start(
        &self,
        installation_id: &str,
        redirect_uri: &str,
    ) -> Result<String, HubError> {
        let (url, _state) = self
            .start_authorization(installation_id, redirect_uri, None)
            .await?;
        Ok(url)
    }

    /// [`Hub::oauth_start`], with the state bound to the browser that starts the flow: the
    /// callback is refused unless it presents the returned binding (a cookie), so a state that
    /// leaks (in a log, a referrer, a shared link) cannot connect the installation to another
    /// account from another browser.
    pub async fn oauth_start_in_browser(
        &self,
        installation_id: &str,
        redirect_uri: &str,
    ) -> Result<BrowserStart, HubError> {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let binding = hex::encode(bytes);
        let (url, state) = self
            .start_authorization(installation_id, redirect_uri, Some(&binding))
            .await?;
        Ok(BrowserStart {
            url,
            state,
            binding,
            lifetime: STATE_LIFETIME,
        })
    }

    /// Records a state (and the browser binding, sealed with the PKCE verifier); returns the
    /// authorization URL and the state.
    async fn start_authorization(
        &self,
        installation_id: &str,
        redirect_uri: &str,
        binding: Option<&str>,
    ) -> Result<(String, String), HubError> {
        let config = self.oauth_client_of(installation_id).await?;
        if !config.supports(Flow::AuthorizationCode) {
            return Err(HubError::Invalid(format!(
                "installation `{installation_id}`: its plugin does not offer the \
                 authorization-code-pkce flow; connect it with POST \
                 /api/v1/installations/{installation_id}/oauth/connect"
            )));
        }
        let (url, state, verifier) =
            flows::authorize_url(&config, redirect_uri).map_err(flow_error)?;
        let mut sealed = BTreeMap::from([("verifier".to_string(), verifier)]);
        if let Some(binding) = binding {
            sealed.insert(BINDING_KEY.to_string(), binding.to_string());
        }
        let sealed = self.inner.secrets.seal(&state_owner(&state), &sealed)?;
        let now = now_ms();
        self.inner
            .db
            .insert_oauth_state(&OAuthStateRow {
                state: state.clone(),
                installation_id: installation_id.to_string(),
                verifier: sealed,
                redirect_uri: redirect_uri.to_string(),
                created_at: now,
                expires_at: now + STATE_LIFETIME.as_millis() as i64,
            })
            .await?;
        tracing::info!(
            installation = %installation_id,
            bound_to_browser = binding.is_some(),
            "OAuth2 authorization started"
        );
        Ok((url.to_string(), state))
    }

    /// Finishes the browser flow: takes the state (once), exchanges the code with its PKCE
    /// verifier, and stores the grant.
    pub async fn oauth_callback(
        &self,
        callback: OAuthCallback,
    ) -> Result<InstallationView, HubError> {
        let row = self
            .inner
            .db
            .take_oauth_state(&callback.state, now_ms())
            .await?
            .ok_or_else(|| {
                HubError::Invalid(
                    "unknown, already used or expired OAuth2 state; start the connection again"
                        .into(),
                )
            })?;
        let id = row.installation_id.clone();
        let mut sealed = self
            .inner
            .secrets
            .open(&state_owner(&row.state), &row.verifier)?;
        // Checked before anything else, the provider's own error included. The state is used up
        // either way: one presented without its browser's cookie must be taken as leaked.
        if let Some(expected) = sealed.remove(BINDING_KEY) {
            let presented = callback.browser_binding.as_deref().unwrap_or_default();
            let matches: bool =
                subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes()).into();
            if !matches {
                tracing::warn!(installation = %id, "OAuth2 callback refused: not from the browser that started it");
                return Err(HubError::Unauthorized(format!(
                    "installation `{id}`: this OAuth2 callback does not come from the browser \
                     that started the connection (its cookie is missing or wrong); start the \
                     connection again, in this browser"
                )));
            }
        }
        if let Some(error) = &callback.error {
            let detail = callback
                .error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(HubError::Invalid(format!(
                "installation `{id}`: the provider did not authorize: {error}{detail}"
            )));
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| HubError::Invalid("the callback carries no `code`".into()))?;
        let verifier = sealed.remove("verifier").ok_or_else(|| {
            HubError::Internal(anyhow::anyhow!("the stored state has no verifier"))
        })?;
        let config = self.oauth_client_of(&id).await?;
        let tokens = flows::exchange_code(
            &config,
            self.inner.oauth.http(),
            &code,
            &verifier,
            &row.redirect_uri,
        )
        .await
        .map_err(flow_error)?;
        self.store_connection(&id, Flow::AuthorizationCode, tokens)
            .await
    }

    /// Connects without a browser: the JWT bearer or client credentials flow. Without `flow`,
    /// JWT bearer when the plugin offers it and a key is set, else client credentials.
    pub async fn oauth_connect(
        &self,
        installation_id: &str,
        flow: Option<&str>,
    ) -> Result<InstallationView, HubError> {
        let config = self.oauth_client_of(installation_id).await?;
        let flow = match flow {
            Some(name) => match Flow::parse(name) {
                Some(Flow::AuthorizationCode) => {
                    return Err(HubError::Invalid(format!(
                        "the authorization code flow needs a browser: GET \
                         /api/v1/installations/{installation_id}/oauth/start"
                    )))
                }
                Some(flow) => flow,
                None => {
                    return Err(HubError::Invalid(format!(
                        "flow `{name}` is not jwt-bearer or client-credentials"
                    )))
                }
            },
            None if config.supports(Flow::JwtBearer) && config.jwt_private_key.is_some() => {
                Flow::JwtBearer
            }
            None if config.supports(Flow::ClientCredentials) => Flow::ClientCredentials,
            None => {
                return Err(HubError::Invalid(format!(
                    "installation `{installation_id}`: no flow without a browser is available \
                     (the plugin offers {}; jwt-bearer also needs `oauth_jwt_private_key`); use \
                     GET /api/v1/installations/{installation_id}/oauth/start",
                    config
                        .flows
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        if !config.supports(flow) {
            return Err(HubError::Invalid(format!(
                "installation `{installation_id}`: its plugin does not offer the {} flow",
                flow.as_str()
            )));
        }
        let http = self.inner.oauth.http();
        let tokens = match flow {
            Flow::JwtBearer => flows::jwt_bearer(&config, http, now_ms() / 1000).await,
            Flow::ClientCredentials => flows::client_credentials(&config, http).await,
            Flow::AuthorizationCode => Err(FlowError::Config("needs a browser".into())),
        }
        .map_err(flow_error)?;
        self.store_connection(installation_id, flow, tokens).await
    }

    /// Stores a new grant: reauthorization is cleared, waiting deliveries go again.
    async fn store_connection(
        &self,
        installation_id: &str,
        flow: Flow,
        tokens: Tokens,
    ) -> Result<InstallationView, HubError> {
        let now = now_ms();
        let grant = Grant::from_tokens(flow, tokens, None, now);
        let sealed = grant
            .seal(&self.inner.secrets, installation_id)
            .map_err(HubError::Internal)?;
        self.inner
            .db
            .save_oauth_connection(&grant.update(installation_id, &sealed, now))
            .await?;
        self.inner.oauth.forget(installation_id).await;
        self.forget_bindings();
        self.inner.metrics.set_needs_reauth(installation_id, false);
        self.inner.outbox.notify_one();
        tracing::info!(installation = %installation_id, flow = flow.as_str(), "OAuth2 connected");
        self.get_installation(installation_id).await
    }

    /// The OAuth2 part of an installation's view; `None` when its plugin declares no OAuth2.
    pub(crate) async fn oauth_view(
        &self,
        row: &InstallationRow,
    ) -> Result<Option<OAuthView>, HubError> {
        let record = match self
            .inner
            .db
            .plugin_record(&row.plugin_id, row.plugin_version.as_deref())
            .await
        {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if record.manifest.oauth2.is_none() {
            return Ok(None);
        }
        let grant = self.inner.db.get_oauth_grant(&row.id).await?;
        Ok(Some(match grant {
            Some(grant) => OAuthView {
                connected: grant.tokens.is_some(),
                flow: Flow::parse(&grant.flow).map(|f| f.as_str().to_string()),
                scopes: grant.scopes.split_whitespace().map(String::from).collect(),
                expires_at: grant.expires_at.map(iso),
                connected_at: grant.connected_at.map(iso),
                needs_reauthorization: grant.needs_reauth,
                error: grant.reauth_error.filter(|_| grant.needs_reauth),
            },
            None => OAuthView {
                connected: false,
                flow: None,
                scopes: Vec::new(),
                expires_at: None,
                connected_at: None,
                needs_reauthorization: true,
                error: Some("not connected yet".into()),
            },
        }))
    }
}

/// Associated data of a sealed PKCE verifier: bound to its state.
fn state_owner(state: &str) -> String {
    format!("oauth-state:{state}")
}

/// For the outbox: a delivery that failed while its installation needs OAuth2 reauthorization
/// waits for the reconnection, its attempt not counted, instead of running out of attempts.
/// True when the row was put back.
pub(crate) async fn park_if_needs_reauth(hub: &Hub, row: &OutboxRow, error: &str) -> bool {
    match hub.inner.db.get_oauth_grant(&row.installation_id).await {
        Ok(Some(grant)) if grant.needs_reauth => {}
        _ => return false,
    }
    let now = now_ms();
    match hub.inner.db.park_outbox_row(row.id, error, now, now).await {
        Ok(()) => {
            tracing::warn!(%error, "delivery waits until the installation is reauthorized");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not put the delivery back to wait for reauthorization");
            false
        }
    }
}
