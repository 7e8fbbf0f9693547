//! Helpers for answering webhook requests.

use crate::{signature, ConnectorError, Result, WebhookRequest, WebhookResponse};

/// A plain `200 OK` with an empty body: what most networks expect once a delivery is taken.
pub fn ok() -> WebhookResponse {
    response(200, Vec::new())
}

/// A response with `status` and `body`, such as the challenge echo of a verification handshake.
///
/// ```
/// # use switchboard_plugin_sdk::webhook;
/// let answer = webhook::response(200, "challenge-token");
/// assert_eq!(answer.body, b"challenge-token");
/// ```
pub fn response(status: u16, body: impl Into<Vec<u8>>) -> WebhookResponse {
    WebhookResponse {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A `POST` delivery with these headers and body, as the host hands one to `handle_webhook`:
/// for a plugin's unit tests of its webhook checks and parsing.
///
/// ```
/// # use switchboard_plugin_sdk::webhook;
/// let delivery = webhook::post(&[("X-Signature", "abc")], r#"{"id":1}"#);
/// assert_eq!(webhook::header(&delivery, "x-signature"), Some("abc"));
/// assert_eq!(delivery.method, "POST");
/// ```
pub fn post(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> WebhookRequest {
    WebhookRequest {
        method: "POST".to_string(),
        path: String::new(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        body: body.into(),
    }
}

/// The first value of header `name` in a webhook request, compared case-insensitively.
pub fn header<'a>(req: &'a WebhookRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Checks a delivery signed the common way: header `name` holds the hex HMAC-SHA256 of the
/// raw body under `secret`, with or without a `sha256=` prefix (Meta's
/// `X-Hub-Signature-256`, for one). No secret, no header or a wrong signature is
/// `unauthorized`, saying which; the comparison is constant-time.
///
/// ```
/// # use switchboard_plugin_sdk::{signature, webhook};
/// let body = br#"{"messages":[]}"#;
/// let signed = format!("sha256={}", hex::encode(signature::hmac_sha256(b"s3cret", body)));
/// let delivery = webhook::post(&[("X-Signature", signed.as_str())], body.to_vec());
/// assert!(webhook::verify_hmac_sha256_hex(&delivery, "x-signature", Some("s3cret")).is_ok());
/// assert!(webhook::verify_hmac_sha256_hex(&delivery, "x-signature", Some("other")).is_err());
/// assert!(webhook::verify_hmac_sha256_hex(&delivery, "x-signature", None).is_err());
/// ```
pub fn verify_hmac_sha256_hex(
    request: &WebhookRequest,
    name: &str,
    secret: Option<&str>,
) -> Result<()> {
    let secret = secret.ok_or_else(|| {
        ConnectorError::unauthorized("no webhook secret is set: deliveries cannot be verified")
    })?;
    let signed = header(request, name)
        .ok_or_else(|| ConnectorError::unauthorized("the delivery is not signed"))?;
    if !signature::verify_hmac_sha256_hex(secret.as_bytes(), &request.body, signed) {
        return Err(ConnectorError::unauthorized(
            "the delivery's signature does not match the webhook secret",
        ));
    }
    Ok(())
}

/// The first value of query parameter `name`, percent-decoded (`+` counts as a space, as in
/// forms). Handshakes such as Meta's `hub.challenge` arrive this way.
pub fn query_param(req: &WebhookRequest, name: &str) -> Option<String> {
    req.query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(key) == name).then(|| decode_component(value))
    })
}

fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WebhookRequest {
        WebhookRequest {
            method: "GET".into(),
            path: String::new(),
            query: "hub.mode=subscribe&hub.challenge=a%20b+c&flag".into(),
            headers: vec![("x-hub-signature-256".into(), "sha256=00".into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn responses() {
        assert_eq!(
            ok(),
            WebhookResponse {
                status: 200,
                headers: vec![],
                body: vec![]
            }
        );
        assert_eq!(response(403, "no").status, 403);
    }

    #[test]
    fn request_lookups() {
        let req = request();
        assert_eq!(header(&req, "X-Hub-Signature-256"), Some("sha256=00"));
        assert_eq!(header(&req, "missing"), None);
        assert_eq!(query_param(&req, "hub.challenge").as_deref(), Some("a b c"));
        assert_eq!(query_param(&req, "flag").as_deref(), Some(""));
        assert_eq!(query_param(&req, "nope"), None);
    }
}
