//! The HTTP server: webhooks from the networks and helpdesks, the admin JSON API, metrics.
//!
//! Handlers are thin: they parse the request, call the [`Hub`], and shape the answer. They never
//! touch the database or a plugin themselves.
//!
//! Routes:
//! - `POST|GET /webhooks/{installation}[/{*path}]`: a body size limit and a body-read timeout,
//!   answered by the plugin.
//! - `/api/v1/...`: the admin API ([`admin`]), behind `Authorization: Bearer <token>`, with a
//!   request timeout.
//! - `GET /oauth/callback`: where an OAuth2 provider sends the admin's browser back
//!   ([`oauth`]); authorized by its single-use `state` and the cookie that binds it to the
//!   browser that started the flow, not by the admin token.
//! - `GET /metrics`: Prometheus text, behind the metrics token or the admin token (it names
//!   every installation); `GET /health`: liveness for load balancers.
//!
//! Connections are served by [`serve_with`] ([`conn`]): a header-read timeout, a connection
//! limit and a deadline on graceful shutdown.

mod admin;
mod conn;
pub mod error;
mod metrics;
mod oauth;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::hub::Hub;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    /// The admin token, kept as its SHA-256 digest: comparing fixed-size digests in constant
    /// time reveals neither the token's content nor its length through timing.
    admin_token_digest: Arc<[u8; 32]>,
    /// The token that reads `/metrics` only (for a scraper), as its digest; the admin token
    /// reads it too.
    metrics_token_digest: Option<Arc<[u8; 32]>>,
}

impl AppState {
    pub fn new(hub: Hub, admin_token: &str) -> Self {
        Self {
            hub,
            admin_token_digest: Arc::new(digest(admin_token)),
            metrics_token_digest: None,
        }
    }

    /// Lets `token` read `/metrics` (and nothing else).
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token_digest = token.map(|token| Arc::new(digest(token)));
        self
    }

    fn token_matches(&self, presented: &str) -> bool {
        digest(presented)
            .ct_eq(self.admin_token_digest.as_ref())
            .into()
    }

    fn metrics_token_matches(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let metrics = self
            .metrics_token_digest
            .as_ref()
            .is_some_and(|expected| bool::from(presented.ct_eq(expected.as_ref())));
        let admin: bool = presented.ct_eq(self.admin_token_digest.as_ref()).into();
        metrics | admin
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest webhook body accepted, in bytes; larger ones get 413 and are not stored.
    pub webhook_body_limit: usize,
    /// Deadline of one admin API request.
    pub request_timeout: Duration,
    /// How long a client has to send a request head (and how long a keep-alive connection may
    /// sit idle) before it is disconnected.
    pub header_read_timeout: Duration,
    /// How long a webhook's body may take to arrive; a slower one gets 408.
    pub body_read_timeout: Duration,
    /// Connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long requests in flight get to finish after shutdown was asked for.
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            webhook_body_limit: crate::config::DEFAULT_WEBHOOK_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: crate::config::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: crate::config::DEFAULT_BODY_READ_TIMEOUT,
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: crate::config::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl From<&crate::config::Config> for ServerOptions {
    fn from(config: &crate::config::Config) -> Self {
        Self {
            webhook_body_limit: config.webhook_body_limit,
            request_timeout: config.request_timeout,
            header_read_timeout: config.server.header_read_timeout,
            body_read_timeout: config.server.body_read_timeout,
            max_connections: config.server.max_connections,
            shutdown_timeout: config.server.shutdown_timeout,
        }
    }
}

/// The whole application.
pub fn router(state: AppState, options: &ServerOptions) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/{installation}", any(webhooks::receive))
        .route(
            "/webhooks/{installation}/{*path}",
            any(webhooks::receive_with_path),
        )
        // The limit layer answers 413 from Content-Length before the handler runs, and cuts off
        // a chunked body that grows past it; axum's own default limit is lifted so the
        // configured one is the only one.
        .layer(RequestBodyLimitLayer::new(options.webhook_body_limit))
        .layer(axum::extract::DefaultBodyLimit::disable())
        // A sender that stops halfway through its body holds a connection and a task; reading
        // it fails after this long (408, see `error::ApiBytes`).
        .layer(RequestBodyTimeoutLayer::new(options.body_read_timeout));

    let api = admin::routes()
        .merge(oauth::api_routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        ))
        // Outside the auth check, so a slow client cannot hold a request open unauthenticated
        // either. 503 rather than 408: the hub, not the client, was too slow.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            options.request_timeout,
        ));

    Router::new()
        .merge(webhooks)
        .nest("/api/v1", api)
        .merge(oauth::public_routes())
        .route(
            "/metrics",
            get(metrics::render).layer(middleware::from_fn_with_state(
                state.clone(),
                require_metrics_token,
            )),
        )
        .route("/health", get(public_health))
        .fallback(not_found)
        .layer(middleware::map_response(json_errors))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The path only: query strings of webhooks may carry verification tokens.
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state)
}

/// Serves `router` on `listener` with the default [`ServerOptions`] until `shutdown` resolves,
/// then lets in-flight requests finish (within the default shutdown deadline).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, &ServerOptions::default(), shutdown).await
}

/// [`serve`] with these connection limits and timeouts.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve_connections(listener, router, options, shutdown).await
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Rejects `/metrics` requests without the metrics token or the admin token: the metrics name
/// every installation and show the traffic of each.
async fn require_metrics_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match bearer_token(&request) {
        None => ApiError::unauthorized(
            "missing `Authorization: Bearer <token>` header: /metrics needs the metrics token              (`[server] metrics_token`) or the admin token",
        )
        .into_response(),
        Some(token) if !state.metrics_token_matches(token) => {
            ApiError::unauthorized("the token is wrong for /metrics").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// Rejects admin requests without the right bearer token.
async fn require_admin_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = bearer_token(&request);
    match presented {
        None => ApiError::unauthorized("missing `Authorization: Bearer <admin token>` header")
            .into_response(),
        Some(token) if !state.token_matches(token) => {
            ApiError::unauthorized("the admin token is wrong").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// `GET /health`, public: only whether the hub is up, so it reveals nothing to strangers.
async fn public_health(State(state): State<AppState>) -> Response {
    let health = state.hub.health().await;
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "ok": health.ok }))).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Marks a response whose body belongs to someone else (a plugin's webhook answer), so
/// [`json_errors`] leaves it as it is.
#[derive(Debug, Clone, Copy)]
struct Verbatim;

/// Gives error responses that layers and the router wrote without a JSON body (413 from the
/// body limit, 503 from the timeout, 405 from method routing) the API's error shape.
async fn json_errors(mut response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Verbatim>().is_some()
    {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let error = ApiError::from_status(status);
    let headers = std::mem::take(response.headers_mut());
    let mut replaced = error.into_response();
    // Keep headers such as `Allow` (405) and `WWW-Authenticate`, but not the old body's framing.
    for (name, value) in headers.iter() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            replaced.headers_mut().append(name, value.clone());
        }
    }
    replaced.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    replaced
}
