//! Webhook signature checks: HMAC-SHA256 and constant-time comparison.
//!
//! Most networks sign a webhook's raw body with a shared secret and send the HMAC in a header:
//! Meta as hex after `sha256=` (`X-Hub-Signature-256`), LINE as base64 (`X-Line-Signature`),
//! Zendesk as base64 over timestamp + body. Always verify over
//! [`WebhookRequest::body`](crate::WebhookRequest) exactly as received, never over re-serialized
//! JSON, and answer a failed check with `ConnectorError::unauthorized`.
//!
//! ```
//! use switchboard_plugin_sdk::signature::{hmac_sha256, verify_hmac_sha256_hex};
//!
//! let body = br#"{"object":"page"}"#;
//! let header = format!("sha256={}", hex::encode(hmac_sha256(b"app-secret", body)));
//! assert!(verify_hmac_sha256_hex(b"app-secret", body, &header));
//! assert!(!verify_hmac_sha256_hex(b"other-secret", body, &header));
//! ```

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Compares two byte strings in time independent of their contents, so that an attacker can't
/// find a valid signature byte by byte by timing the answers. (The length is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a hex-encoded HMAC-SHA256 signature, with or without a `sha256=` prefix.
///
/// Hex digits may be upper or lower case. A malformed signature is simply not valid.
pub fn verify_hmac_sha256_hex(key: &[u8], message: &[u8], signature_hex: &str) -> bool {
    match hex::decode(strip_scheme(signature_hex)) {
        Ok(signature) => constant_time_eq(&hmac_sha256(key, message), &signature),
        Err(_) => false,
    }
}

/// Checks a base64-encoded (standard alphabet) HMAC-SHA256 signature, with or without a
/// `sha256=` prefix (X sends one).
pub fn verify_hmac_sha256_base64(key: &[u8], message: &[u8], signature_b64: &str) -> bool {
    match STANDARD.decode(strip_scheme(signature_b64)) {
        Ok(signature) => constant_time_eq(&hmac_sha256(key, message), &signature),
        Err(_) => false,
    }
}

fn strip_scheme(signature: &str) -> &str {
    let signature = signature.trim();
    match signature.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => &signature[7..],
        _ => signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const MAC_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn rfc4231_vector() {
        assert_eq!(hex::encode(hmac_sha256(KEY, DATA)), MAC_HEX);
        // Test case 6: a key longer than the block size.
        let key = [0xaa_u8; 131];
        assert_eq!(
            hex::encode(hmac_sha256(
                &key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hex_signatures() {
        assert!(verify_hmac_sha256_hex(KEY, DATA, MAC_HEX));
        assert!(verify_hmac_sha256_hex(
            KEY,
            DATA,
            &format!("sha256={MAC_HEX}")
        ));
        assert!(verify_hmac_sha256_hex(
            KEY,
            DATA,
            &format!("SHA256={}", MAC_HEX.to_uppercase())
        ));
        assert!(!verify_hmac_sha256_hex(KEY, b"tampered", MAC_HEX));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, &MAC_HEX[..62]));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, "zz"));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, ""));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, "sha256="));
    }

    #[test]
    fn base64_signatures() {
        let b64 = STANDARD.encode(hmac_sha256(KEY, DATA));
        assert!(verify_hmac_sha256_base64(KEY, DATA, &b64));
        assert!(verify_hmac_sha256_base64(
            KEY,
            DATA,
            &format!("sha256={b64}")
        ));
        assert!(!verify_hmac_sha256_base64(b"other", DATA, &b64));
        assert!(!verify_hmac_sha256_base64(KEY, DATA, "not base64!"));
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
