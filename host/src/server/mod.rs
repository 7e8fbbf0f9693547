//! The HTTP server: webhooks from the networks and helpdesks, the admin JSON API, metrics.
//!
//! Handlers are thin: they parse the request, call the [`Hub`], and shape the answer. They never
//! touch the database or a plugin themselves.
//!
//! Routes:
//! - `POST|GET /webhooks/{installation}[/{*path}]`: a body size limit, answered by the plugin.
//! - `/api/v1/...`: the admin API ([`admin`]), behind `Authorization: Bearer <token>`, with a
//!   request timeout.
//! - `GET /oauth/callback`: where an OAuth2 provider sends the admin's browser back
//!   ([`oauth`]); authorized by its single-use `state`, not by the admin token.
//! - `GET /metrics`: Prometheus text; `GET /health`: liveness for load balancers.

mod admin;
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
use tower_http::timeout::TimeoutLayer;
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
}

impl AppState {
    pub fn new(hub: Hub, admin_token: &str) -> Self {
        Self {
            hub,
            admin_token_digest: Arc::new(Sha256::digest(admin_token.as_bytes()).into()),
        }
    }

    fn token_matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(self.admin_token_digest.as_ref()).into()
    }
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest webhook body accepted, in bytes; larger ones get 413 and are not stored.
    pub webhook_body_limit: usize,
    /// Deadline of one admin API request.
    pub request_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            webhook_body_limit: crate::config::DEFAULT_WEBHOOK_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
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
        .layer(axum::extract::DefaultBodyLimit::disable());

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
        .route("/metrics", get(metrics::render))
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

/// Serves `router` on `listener` until `shutdown` resolves, then waits for in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Rejects admin requests without the right bearer token.
async fn require_admin_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
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
