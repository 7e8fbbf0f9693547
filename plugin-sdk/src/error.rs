//! Constructors and trait impls for [`ConnectorError`], the typed failure of every operation.
//!
//! The variant matters more than the message: the host decides from it whether to retry with
//! backoff (`Transient`), wait (`RateLimited`), ask the admin to reconnect (`Unauthorized`), or
//! dead-letter the work (`Fatal`, `InvalidInput`, `Policy`, `NotFound`).
//!
//! `Display` and `std::error::Error` come with the generated type (`Display` prints the variant
//! and its fields as with `Debug`), so `?` works into `anyhow` and `Box<dyn Error>` too.

use crate::{ConnectorError, InvalidField, PolicyViolation, RateLimit};

impl ConnectorError {
    /// The service (or the plugin) rejected `field` of the request: `invalid("text", "too long")`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::InvalidInput(InvalidField {
            field: field.into(),
            message: message.into(),
        })
    }

    /// The operation can never succeed as asked; the host dead-letters it.
    pub fn fatal(message: impl Into<String>) -> Self {
        ConnectorError::Fatal(message.into())
    }

    /// A passing failure (5xx, timeout, reset); the host retries with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        ConnectorError::Transient(message.into())
    }

    /// The service refused the credentials; the host asks the admin to reconnect.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ConnectorError::Unauthorized(message.into())
    }

    /// The addressed object does not exist (any more).
    pub fn not_found(message: impl Into<String>) -> Self {
        ConnectorError::NotFound(message.into())
    }

    /// A rule of the network forbids the operation. `code` is stable and machine-readable,
    /// such as `outside-reply-window`.
    pub fn policy(code: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::Policy(PolicyViolation {
            code: code.into(),
            message: message.into(),
        })
    }

    /// The service asked to slow down; the host retries after `retry_after_ms`.
    pub fn rate_limited(retry_after_ms: u64, message: impl Into<String>) -> Self {
        ConnectorError::RateLimited(RateLimit {
            retry_after_ms,
            message: message.into(),
        })
    }

    /// The human-readable message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            ConnectorError::Unauthorized(m)
            | ConnectorError::NotFound(m)
            | ConnectorError::Transient(m)
            | ConnectorError::Fatal(m) => m,
            ConnectorError::RateLimited(r) => &r.message,
            ConnectorError::InvalidInput(i) => &i.message,
            ConnectorError::Policy(p) => &p.message,
        }
    }

    /// True for the errors the host retries on its own (`Transient`, `RateLimited`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Transient(_) | ConnectorError::RateLimited(_)
        )
    }
}

/// JSON the plugin cannot parse came from the service: a contract break that retrying won't fix.
impl From<serde_json::Error> for ConnectorError {
    fn from(err: serde_json::Error) -> Self {
        ConnectorError::Fatal(format!("invalid JSON from service: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_pick_the_variant() {
        assert_eq!(
            ConnectorError::invalid("text", "too long"),
            ConnectorError::InvalidInput(InvalidField {
                field: "text".into(),
                message: "too long".into()
            })
        );
        assert_eq!(
            ConnectorError::policy("outside-reply-window", "24 h passed"),
            ConnectorError::Policy(PolicyViolation {
                code: "outside-reply-window".into(),
                message: "24 h passed".into()
            })
        );
        assert_eq!(
            ConnectorError::rate_limited(1500, "slow down"),
            ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 1500,
                message: "slow down".into()
            })
        );
        assert!(ConnectorError::transient("x").is_retryable());
        assert!(!ConnectorError::fatal("x").is_retryable());
    }

    #[test]
    fn message_and_display() {
        assert_eq!(ConnectorError::invalid("cursor", "bad").message(), "bad");
        assert_eq!(ConnectorError::rate_limited(5, "wait").message(), "wait");
        let err: Box<dyn std::error::Error> = Box::new(ConnectorError::unauthorized("revoked"));
        assert!(err.to_string().contains("revoked"));
    }

    #[test]
    fn json_errors_are_fatal() {
        let err: ConnectorError = serde_json::from_str::<u32>("nope").unwrap_err().into();
        match err {
            ConnectorError::Fatal(m) => assert!(m.starts_with("invalid JSON from service: ")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
