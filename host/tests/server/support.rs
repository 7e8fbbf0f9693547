//! Shared by the `server_*` tests: the hub and its HTTP server running in this process on a
//! real SQLite file and a real TCP port, configured the way `switchboard serve` configures them
//! (through [`Config`]), plus a small HTTP client that reads the API's JSON errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use switchboard::config::{Config, Overrides};
use switchboard::hub::Hub;
use switchboard::server::{self, AppState, ServerOptions};
use tokio_util::sync::CancellationToken;

use switchboard_testkit::hub::SECRET_KEY_B64;

/// The admin token of every test server.
pub const TOKEN: &str = "server-tests-admin-token-0123456789";

/// The hub's HTTP server on `127.0.0.1:<free port>`; stops when dropped.
pub struct TestServer {
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestServer {
    /// A server without background workers: webhooks are stored but not processed, which is
    /// what tests that count stored rows want.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_inner(env, false).await
    }

    /// A server with the scheduler, inbound processor and outbox workers running.
    pub async fn start_with_workers(env: &[(&str, &str)]) -> Self {
        Self::start_inner(env, true).await
    }

    async fn start_inner(env: &[(&str, &str)], workers: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        share_component_cache(&data_dir);
        let mut vars: HashMap<String, String> = HashMap::from([
            ("SWITCHBOARD_ADMIN_TOKEN".to_string(), TOKEN.to_string()),
            (
                "SWITCHBOARD_SECRET_KEY".to_string(),
                SECRET_KEY_B64.to_string(),
            ),
            (
                "SWITCHBOARD_OUTBOX_BASE_BACKOFF_MS".to_string(),
                "100".to_string(),
            ),
            (
                "SWITCHBOARD_OUTBOX_MAX_BACKOFF_MS".to_string(),
                "1000".to_string(),
            ),
            // The simulators listen on loopback over plain http.
            (
                "SWITCHBOARD_ALLOW_PRIVATE_NETWORK".to_string(),
                "true".to_string(),
            ),
        ]);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let overrides = Overrides {
            data_dir: Some(data_dir),
            database_url: Some(format!("sqlite://{}", dir.path().join("hub.db").display())),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides, &|name| vars.get(name).cloned()).expect("config");
        let hub = Hub::open(config.hub_config().expect("hub config"))
            .await
            .expect("open the hub");
        let (token, _) = config.admin_token().expect("admin token");
        let options = ServerOptions::from(&config);
        let state =
            AppState::new(hub.clone(), &token).with_metrics_token(config.metrics_token.as_deref());
        let app = server::router(state, &options);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let serving = shutdown.clone().cancelled_owned();
        tokio::spawn(async move { server::serve_with(listener, app, &options, serving).await });
        if workers {
            let mut tasks = hub.start_workers(shutdown.clone());
            tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        Self {
            url,
            dir,
            http,
            shutdown,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("hub.db")
    }

    /// A request without credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// An admin API request (`path` under `/api/v1`) with the right token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, &format!("/api/v1{path}"))
            .bearer_auth(TOKEN)
    }

    /// An admin API request with a JSON body, sent.
    pub async fn admin_json(&self, method: Method, path: &str, body: Value) -> Reply {
        send(self.admin(method, path).json(&body)).await
    }

    /// An admin API request without a body, sent.
    pub async fn admin_call(&self, method: Method, path: &str) -> Reply {
        send(self.admin(method, path)).await
    }

    /// Uploads a plugin with every requested host approved.
    pub async fn install_plugin(&self, wasm: &[u8]) -> Value {
        self.upload_plugin(wasm, true)
            .await
            .expect(StatusCode::CREATED)
    }

    /// `POST /plugins` with the component as the body.
    pub async fn upload_plugin(&self, wasm: &[u8], approve: bool) -> Reply {
        // One upload at a time per test binary: concurrent first compilations of one component
        // race on the shared cache's temporary file (named after the process only).
        static UPLOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = UPLOADS.lock().await;
        let path = if approve {
            "/plugins?approve=true"
        } else {
            "/plugins"
        };
        send(
            self.admin(Method::POST, path)
                .header("content-type", "application/wasm")
                .body(wasm.to_vec()),
        )
        .await
    }

    /// Rows in `table`, read straight from the SQLite file: what "nothing stored" means.
    pub async fn count(&self, table: &str) -> i64 {
        let url = format!("sqlite://{}", self.database_path().display());
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("open the database");
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count rows");
        pool.close().await;
        count
    }
}

/// An answer: status, headers and body (as JSON when it is JSON, else as a string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The body, after checking the status.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self.body
    }

    /// Checks this is the API's JSON error with `status` and `code`; returns its message.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error content type {content_type:?}: {}",
            self.body
        );
        assert_eq!(
            self.body["error"]["code"], code,
            "error code: {}",
            self.body
        );
        let message = self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !message.is_empty(),
            "the error says what is wrong: {}",
            self.body
        );
        message
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("send request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Makes `data_dir/cache` a link to one directory shared by every server test, so each plugin
/// is compiled to native code once per machine rather than once per test.
fn share_component_cache(data_dir: &Path) {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-component-cache");
    std::fs::create_dir_all(&shared).expect("create shared component cache");
    std::fs::create_dir_all(data_dir).expect("create data dir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&shared, data_dir.join("cache")).expect("link the component cache");
}
