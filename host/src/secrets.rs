//! Encryption at rest of installations' secret settings (API tokens, webhook secrets).
//!
//! Secrets are sealed with XChaCha20-Poly1305 under a 32-byte key from the configuration. The
//! random 24-byte nonce is stored in front of the ciphertext, and the installation id is bound
//! as associated data, so a blob copied onto another installation's row fails to open.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// First byte of every sealed blob, so the format can change without guessing.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Wrong key, a corrupted blob, or a blob that belongs to another installation.
    #[error("secret settings of `{0}` cannot be decrypted: wrong secret key, or corrupted data")]
    Open(String),
    #[error("secret settings of `{0}` are stored in an unknown format")]
    Format(String),
    #[error("encrypting secret settings failed")]
    Seal,
}

/// Seals and opens secret settings. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(********)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Encrypts `secrets` for the installation `owner`.
    pub fn seal(
        &self,
        owner: &str,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, SecretError> {
        let plain = serde_json::to_vec(secrets).map_err(|_| SecretError::Seal)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(FORMAT_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Decrypts what [`Self::seal`] produced for the same `owner`.
    pub fn open(&self, owner: &str, blob: &[u8]) -> Result<BTreeMap<String, String>, SecretError> {
        let (&format, rest) = blob
            .split_first()
            .ok_or_else(|| SecretError::Format(owner.to_string()))?;
        if format != FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err(SecretError::Format(owner.to_string()));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(owner.to_string()))?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Format(owner.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, String> {
        [("api_token".to_string(), "s3cr3t".to_string())]
            .into_iter()
            .collect()
    }

    #[test]
    fn round_trip_and_binding() {
        let sb = SecretBox::new(&[7; 32]);
        let blob = sb.seal("zd", &secrets()).expect("seal");
        assert!(
            !blob.windows(6).any(|w| w == b"s3cr3t"),
            "plaintext must not appear"
        );
        assert_eq!(sb.open("zd", &blob).expect("open"), secrets());
        // Bound to its installation, and to the key.
        assert!(matches!(sb.open("other", &blob), Err(SecretError::Open(_))));
        assert!(matches!(
            SecretBox::new(&[8; 32]).open("zd", &blob),
            Err(SecretError::Open(_))
        ));
        assert!(matches!(
            sb.open("zd", &blob[..5]),
            Err(SecretError::Format(_))
        ));
        // Fresh nonce every time.
        assert_ne!(blob, sb.seal("zd", &secrets()).expect("seal"));
        assert_eq!(format!("{sb:?}"), "SecretBox(********)");
    }
}
