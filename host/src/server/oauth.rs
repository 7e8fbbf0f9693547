//! OAuth2 connections of installations over HTTP.
//!
//! | method and path | hub call |
//! | --- | --- |
//! | `GET /api/v1/installations/{id}/oauth/start[?redirect_uri=]` → 303 to the provider | `oauth_start` |
//! | `POST /api/v1/installations/{id}/oauth/connect` `{"flow"?}` (JWT bearer, client credentials) | `oauth_connect` |
//! | `GET /oauth/callback?code&state` (public: the admin's browser comes back here) | `oauth_callback` |
//!
//! The callback is outside the bearer-auth API: what authorizes it is the single-use,
//! short-lived `state` that `start` recorded for one installation, together with the cookie
//! `start` set in the browser that began the flow (HttpOnly, SameSite=Lax so the provider's
//! top-level redirect carries it, Secure off loopback, scoped to the callback's path). A
//! callback without that cookie is refused, so a leaked `state` is useless elsewhere.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

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
    let callback_url = url::Url::parse(&redirect_uri).map_err(|e| {
        ApiError::bad_request(format!("`redirect_uri` is not a URL ({e}): {redirect_uri}"))
    })?;
    let started = state.hub.oauth_start_in_browser(&id, &redirect_uri).await?;
    let location = HeaderValue::from_str(&started.url)
        .map_err(|_| ApiError::bad_request("the authorization URL is not a valid header value"))?;
    let cookie = binding_cookie(
        &callback_url,
        &started.state,
        &started.binding,
        started.lifetime.as_secs(),
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::bad_request("the callback URL's path cannot be a cookie's path"))?;
    let mut response = (
        StatusCode::SEE_OTHER,
        Json(serde_json::json!({ "authorize_url": started.url, "redirect_uri": redirect_uri })),
    )
        .into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The name of the cookie that binds `state` to a browser: one per flow, so two connections
/// started in one browser do not overwrite each other's.
fn binding_cookie_name(state: &str) -> String {
    let digest = Sha256::digest(state.as_bytes());
    format!("switchboard_oauth_{}", hex::encode(&digest[..8]))
}

/// `Set-Cookie` for the binding: sent back only to the callback's path, never readable by
/// scripts, carried by the provider's top-level redirect (Lax), and only over HTTPS unless the
/// callback is on loopback (where plain http is normal in development).
fn binding_cookie(callback: &url::Url, state: &str, binding: &str, max_age_secs: u64) -> String {
    let loopback = match callback.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let secure = if loopback { "" } else { "; Secure" };
    format!(
        "{}={binding}; Path={}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}",
        binding_cookie_name(state),
        callback.path()
    )
}

/// The value of cookie `name` in the request's `Cookie` headers. Parsed here rather than with a
/// cookie crate: only one name/value pair of a simple, known shape is wanted.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
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
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(oauth_state) = query.state.filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("the callback carries no `state`"));
    };
    let cookie_name = binding_cookie_name(&oauth_state);
    let view = state
        .hub
        .oauth_callback(OAuthCallback {
            browser_binding: cookie_value(&headers, &cookie_name),
            state: oauth_state,
            code: query.code,
            error: query.error,
            error_description: query.error_description,
        })
        .await?;
    let id = html_escape(&view.id);
    let mut response = Html(format!(
        "<!doctype html><meta charset=utf-8><title>Connected</title>\
         <p>Installation <code>{id}</code> is connected. You can close this window.</p>"
    ))
    .into_response();
    // The flow is over: the browser may forget its binding. (Behind a proxy that rewrites the
    // path this misses it, and the cookie expires with its Max-Age instead.)
    let expire = format!("{cookie_name}=; Path={}; Max-Age=0; HttpOnly", uri.path());
    if let Ok(expired) = HeaderValue::from_str(&expire) {
        response.headers_mut().insert(header::SET_COOKIE, expired);
    }
    Ok(response)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
