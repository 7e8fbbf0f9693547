//! Fixtures of the OAuth2 tests: a real authorization server (`oidc-provider` under node, see
//! `provider.mjs`), a hub with the `oauth-helpdesk` test plugin served over HTTP, the browser
//! side of the authorization code flow, and readers of the stored grant.

pub mod mock;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use switchboard::hub::{Hub, HubConfig, NewInstallation};
use switchboard::oauth::Grant;
use switchboard::secrets::SecretBox;
use switchboard::server::{router, AppState, ServerOptions};
use switchboard_testkit as kit;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

pub const PLUGIN_DIR: &str = "tests/plugins/oauth-helpdesk";
pub const PLUGIN_ID: &str = "test.oauth-helpdesk";
pub const ADMIN_TOKEN: &str = "oauth-test-admin-token-0123456789";
pub const SECRET_KEY: [u8; 32] = [9; 32];
pub const CLIENT_ID: &str = "switchboard-test";
pub const CLIENT_SECRET: &str = "switchboard-test-secret-0123456789abcdef";
/// The test plugin's only stream, and its job for installation `id`.
pub const STREAM: &str = "whoami";

pub fn job(installation: &str) -> String {
    format!("{installation}:{STREAM}")
}

// ----- the authorization server ---------------------------------------------------------------

/// `target/oauth-provider`: the provider script with its npm dependencies installed (once).
fn provider_dir() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let support = kit::workspace_root().join("host/tests/oauth/support");
    let dir = kit::workspace_root().join("target/oauth-provider");
    std::fs::create_dir_all(&dir).expect("create target/oauth-provider");
    for file in ["package.json", "package-lock.json", "provider.mjs"] {
        let from = support.join(file);
        let to = dir.join(file);
        let same = std::fs::read(&to).ok() == std::fs::read(&from).ok();
        if !same {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {file}: {e}"));
            if file != "provider.mjs" {
                // A changed lock file: install again.
                let _ = std::fs::remove_dir_all(dir.join("node_modules"));
            }
        }
    }
    if !dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("run npm (node and npm must be installed)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

/// An `oidc-provider` process on loopback; killed when dropped.
pub struct Provider {
    pub issuer: String,
    /// Held for its drop, which kills the process.
    _child: Child,
    http: reqwest::Client,
}

impl Provider {
    /// Starts the provider with its client registered for `redirect_uri`.
    pub async fn start(redirect_uri: &str, access_token_ttl: Duration) -> Provider {
        let dir = provider_dir();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", "0")
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "ACCESS_TOKEN_TTL",
                access_token_ttl.as_secs().max(1).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node provider.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("provider output") {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    return issuer.trim().to_string();
                }
            }
            panic!("the provider exited before listening")
        })
        .await
        .expect("the provider did not start within 30 s");
        // Keep reading so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Provider {
            issuer,
            _child: child,
            http: reqwest::Client::new(),
        }
    }

    /// Revokes a token at the provider's revocation endpoint (RFC 7009).
    pub async fn revoke(&self, token: &str, hint: &str) {
        let response = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .form(&[
                ("token", token),
                ("token_type_hint", hint),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .send()
            .await
            .expect("revocation request");
        assert_eq!(response.status(), StatusCode::OK, "revocation refused");
    }

    /// Ends one access token as its expiry would (the grant and refresh token stay).
    pub async fn expire(&self, access_token: &str) {
        let response = self
            .http
            .post(format!("{}/_test/expire", self.issuer))
            .form(&[("token", access_token)])
            .send()
            .await
            .expect("expire request");
        assert_eq!(
            response.status(),
            StatusCode::NO_CONTENT,
            "unknown access token"
        );
    }

    /// Uses a refresh token directly, as a thief or a buggy client would: the provider's answer.
    pub async fn refresh_directly(&self, refresh_token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .send()
            .await
            .expect("token request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Whether the provider accepts `access_token` at its userinfo endpoint.
    pub async fn accepts(&self, access_token: &str) -> bool {
        self.http
            .get(format!("{}/me", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo request")
            .status()
            .is_success()
    }
}

// ----- the hub ----------------------------------------------------------------------------------

pub fn config(dir: &std::path::Path) -> HubConfig {
    let mut config = HubConfig::new(
        format!("sqlite://{}", dir.join("hub.db").display()),
        dir,
        SECRET_KEY,
    );
    config.outbox.base_backoff = Duration::from_millis(20);
    config.outbox.max_backoff = Duration::from_millis(200);
    config.outbox.max_attempts = 3;
    config.scheduler_tick = Duration::from_millis(100);
    config.network.allow_private_network = true;
    config
}

/// A hub with the test plugin installed (hosts approved), serving its HTTP API on loopback.
pub struct HubServer {
    pub hub: Hub,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    /// The hub's data dir, removed when dropped.
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
    /// The admin's browser's cookies for this hub (`name=value`), as `start` set them, and
    /// the last `Set-Cookie` header it sent.
    hub_cookies: Mutex<Vec<String>>,
    pub last_set_cookie: Mutex<Option<String>>,
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl HubServer {
    pub async fn start() -> HubServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (runtime, _) = kit::runtime_with_plugin(dir.path(), PLUGIN_DIR).await;
        let hub = Hub::open_with_runtime(config(dir.path()), Arc::new(runtime))
            .await
            .expect("open hub");
        hub.install_plugin(&kit::component_once(PLUGIN_DIR), true)
            .await
            .expect("install the test plugin");
        let app = router(
            AppState::new(hub.clone(), ADMIN_TOKEN),
            &ServerOptions::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HubServer {
            hub,
            base,
            // The browser dance follows redirects by hand.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            _dir: dir,
            server,
            hub_cookies: Mutex::default(),
            last_set_cookie: Mutex::default(),
        }
    }

    pub fn callback_url(&self) -> String {
        format!("{}/oauth/callback", self.base)
    }

    /// Creates installation `id` of the test plugin with these settings.
    pub async fn install(&self, id: &str, settings: &[(&str, &str)]) {
        self.hub
            .create_installation(NewInstallation {
                id: id.into(),
                plugin_id: PLUGIN_ID.into(),
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                enabled: None,
                deadline_ms: None,
            })
            .await
            .expect("create installation");
    }

    /// Creates installation `id` against `provider` (its userinfo endpoint is the API).
    pub async fn install_for(&self, id: &str, provider: &Provider) {
        self.install(
            id,
            &[
                ("api_base", &provider.issuer),
                ("login_url", &provider.issuer),
                ("oauth_client_id", CLIENT_ID),
                ("oauth_client_secret", CLIENT_SECRET),
            ],
        )
        .await;
    }

    /// An admin API call; the status and the JSON body.
    pub async fn api(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin API request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn view(&self, id: &str) -> Value {
        let (status, view) = self
            .api(reqwest::Method::GET, &format!("/installations/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view
    }

    /// `GET .../oauth/start`: the provider URL it redirects to.
    pub async fn start_authorization(&self, id: &str) -> Url {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/installations/{id}/oauth/start",
                self.base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("start");
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "start redirects");
        // The browser keeps the binding cookie for the callback.
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let text = set.to_str().expect("cookie").to_string();
            let pair = text
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            self.hub_cookies.lock().expect("cookies").push(pair);
            *self.last_set_cookie.lock().expect("cookie") = Some(text);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .expect("Location")
            .to_string();
        Url::parse(&location).expect("absolute authorization URL")
    }

    /// Plays the admin's browser from the authorization URL: follows the provider's redirects
    /// (login and consent complete by themselves) with a cookie jar, until the provider sends
    /// the browser back to this hub. Returns that callback URL, not yet visited.
    pub async fn browse_to_callback(&self, authorize: Url) -> Url {
        let mut jar: HashMap<String, String> = HashMap::new();
        let mut url = authorize;
        for _ in 0..12 {
            if url.as_str().starts_with(&self.callback_url()) {
                return url;
            }
            let cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let response = self
                .http
                .get(url.clone())
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .expect("browser request");
            for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let text = set.to_str().unwrap_or_default();
                let pair = text.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || text.contains("expires=Thu, 01 Jan 1970") {
                        jar.remove(name.trim());
                    } else {
                        jar.insert(name.trim().to_string(), value.to_string());
                    }
                }
            }
            let status = response.status();
            let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
                let body = response.text().await.unwrap_or_default();
                panic!("the provider answered {status} without a redirect at {url}: {body}");
            };
            url = url
                .join(location.to_str().expect("location"))
                .expect("redirect URL");
        }
        panic!("too many redirects; last at {url}");
    }

    /// Visits the callback as the browser that started the flow (with its cookies): the status
    /// and body.
    pub async fn visit(&self, url: &Url) -> (StatusCode, String) {
        let cookies = self.hub_cookies.lock().expect("cookies").join("; ");
        self.visit_with_cookie(url, &cookies).await
    }

    /// Visits the callback with this `Cookie` header (empty: none), as another browser would.
    pub async fn visit_with_cookie(&self, url: &Url, cookie: &str) -> (StatusCode, String) {
        let mut request = self.http.get(url.clone());
        if !cookie.is_empty() {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        let response = request.send().await.expect("callback");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// The whole browser flow; panics unless the hub says connected.
    pub async fn connect_by_browser(&self, id: &str) {
        let authorize = self.start_authorization(id).await;
        let callback = self.browse_to_callback(authorize).await;
        let (status, body) = self.visit(&callback).await;
        assert_eq!(status, StatusCode::OK, "callback: {body}");
        assert!(body.contains("is connected"), "{body}");
    }

    /// The stored grant, decrypted as the hub would.
    pub async fn grant(&self, id: &str) -> Grant {
        let row = self
            .hub
            .db()
            .get_oauth_grant(id)
            .await
            .expect("read grant")
            .expect("a grant row");
        Grant::open(&SecretBox::new(&SECRET_KEY), &row).expect("open grant")
    }

    /// The raw sealed tokens as stored.
    pub async fn sealed_tokens(&self, id: &str) -> Vec<u8> {
        self.hub
            .db()
            .get_oauth_grant(id)
            .await
            .expect("read grant")
            .and_then(|g| g.tokens)
            .expect("sealed tokens")
    }

    /// Runs the installation's polling job now: its outcome and error.
    pub async fn run_job(&self, id: &str) -> (String, Option<String>) {
        let run = self.hub.run_job_now(&job(id)).await.expect("run job");
        let run = serde_json::to_value(&run).expect("run json");
        (
            run["outcome"].as_str().unwrap_or_default().to_string(),
            run["error"].as_str().map(String::from),
        )
    }

    /// The value of `switchboard_installation_needs_reauth` for `id`, if exposed.
    pub fn needs_reauth_gauge(&self, id: &str) -> Option<i64> {
        let prefix = format!("switchboard_installation_needs_reauth{{installation=\"{id}\"}} ");
        self.hub
            .render_metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().ok()))
            .flatten()
    }

    /// Whether the installation's job would be started by the scheduler (far in the future).
    pub async fn job_is_scheduled(&self, id: &str) -> bool {
        let later = chrono::Utc::now().timestamp_millis() + 3_600_000;
        self.hub
            .db()
            .due_jobs(later)
            .await
            .expect("due jobs")
            .iter()
            .any(|j| j.id == job(id))
    }
}

/// Settings as a map.
pub fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
