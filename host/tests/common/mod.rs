//! Shared test fixtures: plugin components built from source, and runtimes on temp dirs.
#![allow(dead_code)] // each test binary uses a different subset

pub mod helpdesk;
pub mod hub;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use switchboard::plugin_build::{build_plugin, BuildOptions};
use switchboard::runtime::latest::WebhookRequest;
use switchboard::runtime::{Plugin, Runtime, RuntimeConfig};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The component of the plugin crate at `crate_dir` (relative to the workspace root), built
/// with `switchboard plugin build`'s code. `SWITCHBOARD_PLUGIN_DIR`, when set, points at
/// components built beforehand (as `scripts/test.sh` does), named `<crate-dir-name>.wasm`.
pub fn component(crate_dir: &str) -> Vec<u8> {
    let name = Path::new(crate_dir)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("crate dir name");
    if let Ok(dir) = std::env::var("SWITCHBOARD_PLUGIN_DIR") {
        let path = Path::new(&dir).join(format!("{name}.wasm"));
        if path.is_file() {
            return std::fs::read(&path).expect("read prebuilt component");
        }
    }
    let built = build_plugin(
        &workspace_root().join(crate_dir),
        &BuildOptions::default(),
        &mut |line| eprintln!("{line}"),
    )
    .unwrap_or_else(|e| panic!("building {crate_dir}: {e:#}"));
    std::fs::read(&built.component_path).expect("read built component")
}

/// A runtime whose plugins may reach loopback over plain http, where the simulators are.
pub fn runtime(dir: &Path) -> Runtime {
    runtime_with_network(dir, true)
}

/// A runtime with the deployment's `allow_private_network` as given.
pub fn runtime_with_network(dir: &Path, allow_private_network: bool) -> Runtime {
    let mut config = RuntimeConfig::new(dir.join("cache"));
    config.network.allow_private_network = allow_private_network;
    Runtime::new(config).expect("runtime")
}

pub async fn load(runtime: &Runtime, wasm: &[u8]) -> Plugin {
    runtime
        .load(wasm)
        .await
        .unwrap_or_else(|e| panic!("load: {e:#}"))
        .0
}

// ----- plugins against simulators ------------------------------------------------------------

/// [`component`], built once per test binary however many tests ask for it.
pub fn component_once(crate_dir: &str) -> Arc<Vec<u8>> {
    static BUILT: OnceLock<Mutex<BTreeMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    // Held during the build, so concurrent tests wait for one build rather than start several.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(crate_dir.to_string())
        .or_insert_with(|| Arc::new(component(crate_dir)))
        .clone()
}

/// A runtime of its own on `dir`, with the plugin at `crate_dir` loaded.
pub async fn runtime_with_plugin(dir: &Path, crate_dir: &str) -> (Runtime, Plugin) {
    let runtime = runtime(dir);
    let plugin = load(&runtime, &component_once(crate_dir)).await;
    (runtime, plugin)
}

/// One HTTP request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Lower-case names, as the host passes webhook headers to plugins.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request as the host hands a webhook delivery to a plugin.
    pub fn webhook_request(&self) -> WebhookRequest {
        WebhookRequest {
            method: self.method.clone(),
            path: String::new(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

/// A local HTTP server that records every request and answers each with the same canned JSON:
/// a webhook receiver for simulators, or a stand-in API that shows what the host really sent.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub async fn start(status: u16, answer: serde_json::Value) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};

        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (log, notify) = (requests.clone(), arrived.clone());
        let status = StatusCode::from_u16(status).expect("status");
        let router = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, notify, answer) = (log.clone(), notify.clone(), answer.clone());
                async move {
                    let recorded = Recorded {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or_default().to_string(),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        body: body.to_vec(),
                    };
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(recorded);
                    notify.notify_waiters();
                    (status, axum::Json(answer))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("recorder address")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            requests,
            arrived,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (up to 10 s) until at least `count` requests arrived, and returns all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {count} requests at {}, got {}: {requests:#?}",
                    self.url,
                    requests.len()
                );
            }
        }
    }
}
