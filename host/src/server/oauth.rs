//! OAuth2 connections of installations over HTTP.
//!
//! | method and path | hub call |
//! | --- | --- |
//! | `GET /api/v1/installations/{id}/oauth/start[?redirect_uri=]` → 303 to the provider | `oauth_start` |
//! | `POST /api/v1/installations/{id}/oauth/connect` `{"flow"?}` (JWT bearer, client credentials) | `oauth_connect` |
//! | `GET /oauth/callback?code&state` (public: the admin's browser comes back here) | `oauth_callback` |
//!
//! The callback is outside the bearer-auth API: what authorizes it is the single-use,
//! short-lived `state` that `start` recorded for one installation.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiBytes, ApiError, ApiPath, ApiQuery};
use super::AppState;
use crate::hub::{OAuthCallback, OAUTH_CALLBACK_PATH};

/// Routes under `/api/v1`, behind the admin token.
pub(super) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/installations/{id}/oauth/start", get(start))
        .route("/installations/{id}/oauth/connect", post(connect))
}

/// The public route the provider redirects to.
pub(super) fn public_routes() -> Router<AppState> {
    Router::new().route(OAUTH_CALLBACK_PATH, get(callback))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartQuery {
    /// This hub's public callback URL, as registered with the provider; without it, the one
    /// the request's `Host` (and `X-Forwarded-Proto`) make.
    redirect_uri: Option<String>,
}

/// The callback URL on the host the admin reached this hub by.
fn default_redirect_uri(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "no Host header: pass `redirect_uri` (this hub's /oauth/callback)",
            )
        })?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    Ok(format!("{scheme}://{host}{OAUTH_CALLBACK_PATH}"))
}

/// 303 to the provider's authorization page; the body has the URL too, for scripts.
async fn start(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let redirect_uri = match query.redirect_uri {
        Some(uri) => uri,
        None => default_redirect_uri(&headers)?,
    };
    let url = state.hub.oauth_start(&id, &redirect_uri).await?;
    let location = HeaderValue::from_str(&url)
        .map_err(|_| ApiError::bad_request("the authorization URL is not a valid header value"))?;
    let mut response = (
        StatusCode::SEE_OTHER,
        Json(serde_json::json!({ "authorize_url": url, "redirect_uri": redirect_uri })),
    )
        .into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    /// `jwt-bearer` or `client-credentials`; chosen from the plugin's flows without it.
    flow: Option<String>,
}

async fn connect(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    // The body is optional: an empty one picks the flow.
    let body: ConnectBody = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid: {e}")))?
    };
    Ok(Json(state.hub.oauth_connect(&id, body.flow.as_deref()).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A small page for the admin's browser; errors are the API's JSON errors.
async fn callback(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("the callback carries no `state`"));
    };
    let view = state
        .hub
        .oauth_callback(OAuthCallback {
            state: oauth_state,
            code: query.code,
            error: query.error,
            error_description: query.error_description,
        })
        .await?;
    let id = html_escape(&view.id);
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>Connected</title>\
         <p>Installation <code>{id}</code> is connected. You can close this window.</p>"
    ))
    .into_response())
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
