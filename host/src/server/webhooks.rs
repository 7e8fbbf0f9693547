//! `/webhooks/{installation}`: deliveries from networks and helpdesks.
//!
//! The request goes to the hub as the plugin contract's `WebhookRequest` (lower-case header
//! names, the raw body bytes, the raw query); the plugin verifies it, the hub stores its events
//! durably, and the plugin's own response goes back to the sender as is (a handshake answer such
//! as Meta's `hub.challenge`, or a plain 200). Processing happens after the answer.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::{ApiBytes, ApiError, ApiPath};
use super::{AppState, Verbatim};
use crate::hub::HubError;
use crate::runtime::latest::{WebhookRequest, WebhookResponse};

/// `/webhooks/{installation}`, any method (GET for verification handshakes).
pub(super) async fn receive(
    state: State<AppState>,
    ApiPath(installation): ApiPath<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: ApiBytes,
) -> Result<Response, ApiError> {
    handle(
        state,
        installation,
        String::new(),
        method,
        uri,
        headers,
        body,
    )
    .await
}

/// `/webhooks/{installation}/{*path}`: the rest of the path goes to the plugin.
pub(super) async fn receive_with_path(
    state: State<AppState>,
    ApiPath((installation, path)): ApiPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: ApiBytes,
) -> Result<Response, ApiError> {
    handle(
        state,
        installation,
        format!("/{path}"),
        method,
        uri,
        headers,
        body,
    )
    .await
}

async fn handle(
    State(state): State<AppState>,
    installation: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let request = WebhookRequest {
        method: method.as_str().to_string(),
        path,
        query: uri.query().unwrap_or_default().to_string(),
        // `HeaderName`s are lower-case already, as the contract promises plugins. A value that
        // is not UTF-8 is passed lossily rather than dropped, so a signature check fails loudly.
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    // Admitted as a webhook call: it may not take the plugin instances kept for the outbox and
    // the scheduler.
    let handled =
        crate::runtime::admission::as_webhook(state.hub.handle_webhook(&installation, request))
            .await;
    match handled {
        Ok(response) => Ok(plugin_response(response)),
        // The sender's request was bad (malformed JSON, an unknown update shape): a client error,
        // not an admin's invalid configuration.
        Err(HubError::Invalid(message)) => Err(ApiError::bad_request(message)),
        Err(error) => Err(error.into()),
    }
}

/// The plugin's answer as an HTTP response. Header names or values that HTTP would not carry are
/// dropped (with a log line) instead of failing the delivery the hub already stored, and framing
/// headers are left to the server.
fn plugin_response(answer: WebhookResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or_else(|_| {
        tracing::warn!(
            status = answer.status,
            "plugin answered a webhook with an invalid status; sending 200"
        );
        StatusCode::OK
    });
    let mut response = (status, answer.body).into_response();
    // `(status, Vec<u8>)` sets `application/octet-stream`; the plugin decides the content type.
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_TYPE);
    let mut dropped = 0usize;
    let mut sample = None;
    for (name, value) in answer.headers {
        let parsed = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        );
        match parsed {
            (Ok(name), Ok(value)) => {
                if !is_framing(&name) {
                    response.headers_mut().append(name, value);
                }
            }
            _ => {
                dropped += 1;
                sample.get_or_insert(name);
            }
        }
    }
    if let Some(sample) = sample {
        // One line, with the first name cut short: the names come from the plugin.
        tracing::warn!(
            headers = dropped,
            first = %crate::runtime::bounds::truncate(&sample, 64),
            "plugin answered a webhook with invalid headers; dropped them"
        );
    }
    response.extensions_mut().insert(Verbatim);
    response
}

/// Headers the HTTP server owns: a plugin setting them could desynchronize the connection.
fn is_framing(name: &HeaderName) -> bool {
    use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
    [CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, UPGRADE].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}
