//! Webhooks as Meta sends them: the verification handshake, the body serialized the way Meta
//! serializes it (non-ASCII as `\uXXXX` with lowercase hex, `/` as `\/`), signed with
//! `X-Hub-Signature-256`, batched, retried and sometimes sent twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use crate::kit::lock;

/// The signature header of every delivery.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Serializes `value` exactly as Meta writes webhook bodies: compact JSON in which every
/// non-ASCII character is escaped as `\uXXXX` (lowercase hex, UTF-16 surrogate pairs above
/// U+FFFF) and every `/` as `\/`. Sign these bytes with [`sign`]; a receiver that re-serializes
/// the parsed JSON gets different bytes for Korean, Japanese or emoji text.
pub fn meta_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len() + plain.len() / 4);
    // serde_json only leaves `/` and non-ASCII unescaped; both occur inside strings only.
    for c in plain.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// `sha256=<lowercase hex HMAC-SHA256 of body with the app secret>`, the value of
/// [`SIGNATURE_HEADER`].
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The handshake URL Meta calls when a callback is configured:
/// `{callback}?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`.
pub fn verification_url(callback: &str, verify_token: &str, challenge: &str) -> String {
    let separator = if callback.contains('?') { '&' } else { '?' };
    format!(
        "{callback}{separator}hub.mode=subscribe&hub.challenge={}&hub.verify_token={}",
        crate::kit::url::encode_component(challenge),
        crate::kit::url::encode_component(verify_token)
    )
}

/// Runs the handshake against `callback`: a GET that must answer 200 with exactly the
/// challenge. `Err` says what the receiver did instead.
pub async fn verify_callback(
    http: &reqwest::Client,
    callback: &str,
    verify_token: &str,
    challenge: &str,
) -> Result<(), String> {
    let url = verification_url(callback, verify_token, challenge);
    let response = http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("the callback could not be reached: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the callback's answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("the callback answered {status}: {body}"));
    }
    if body != challenge {
        return Err(format!(
            "the callback answered {body:?} instead of the challenge {challenge:?}"
        ));
    }
    Ok(())
}

/// One webhook POST as recorded for tests: the exact bytes and signature, and how it went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Sequence number of the delivery (a duplicate has its own).
    pub id: u64,
    /// `page`, `instagram` or `whatsapp_business_account`.
    pub object: String,
    /// The exact body sent.
    pub body: String,
    /// The `X-Hub-Signature-256` value sent.
    pub signature: String,
    /// Requests made, retries included.
    pub attempts: u32,
    /// The last status received; `None` when the callback could not be reached.
    pub last_status: Option<u16>,
    /// True once the callback answered 2xx.
    pub delivered: bool,
    /// True for the second copy of a payload Meta sent twice.
    pub duplicate: bool,
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub delay: Duration,
    pub timeout: Duration,
}

/// Sends one payload, retrying failures with growing delays, and records each attempt in
/// `log[index]`.
pub(crate) async fn deliver(
    http: reqwest::Client,
    callback: String,
    log: Arc<Mutex<Vec<WebhookDelivery>>>,
    index: usize,
    policy: RetryPolicy,
) -> bool {
    let Some((body, signature)) = lock(&log)
        .get(index)
        .map(|d| (d.body.clone(), d.signature.clone()))
    else {
        return false;
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = http
            .post(&callback)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .timeout(policy.timeout)
            .send()
            .await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if let Some(entry) = lock(&log).get_mut(index) {
            entry.attempts = attempt;
            entry.last_status = status;
            entry.delivered = ok;
        }
        if ok {
            return true;
        }
        if attempt > policy.max_retries {
            tracing::debug!(%callback, attempt, "meta webhook delivery given up");
            return false;
        }
        tokio::time::sleep(policy.delay.saturating_mul(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_ascii_is_escaped_with_lowercase_hex_and_slashes_too() {
        let value = json!({"text": "안녕 てすと é 😀", "url": "https://x.example/a"});
        assert_eq!(
            meta_json(&value),
            r#"{"text":"\uc548\ub155 \u3066\u3059\u3068 \u00e9 \ud83d\ude00","url":"https:\/\/x.example\/a"}"#
        );
        // Still the same JSON once parsed.
        let back: Value = serde_json::from_str(&meta_json(&value)).expect("json");
        assert_eq!(back, value);
    }

    #[test]
    fn escapes_already_in_strings_stay_as_they_are() {
        let value = json!({"q": "say \"hi\"\n\\"});
        assert_eq!(meta_json(&value), r#"{"q":"say \"hi\"\n\\"}"#);
    }

    #[test]
    fn signatures_are_lowercase_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_handshake_url_carries_the_hub_parameters() {
        assert_eq!(
            verification_url("http://h/cb?x=1", "tok en", "42"),
            "http://h/cb?x=1&hub.mode=subscribe&hub.challenge=42&hub.verify_token=tok%20en"
        );
    }
}
