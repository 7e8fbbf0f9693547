//! A local HTTP server that records what the host sends: a webhook receiver for simulators, or
//! a stand-in API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::runtime::latest::WebhookRequest;

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
