//! OAuth2 access tokens as the runtime uses them: where a credential template says
//! `{oauth.access-token}`, the token comes from the installation's [`TokenSource`] at the time
//! of each request, so a plugin never sees it and a refreshed token is used at once.
//!
//! The hub's implementation (stored grants, refresh at the provider) lives in
//! [`crate::oauth`]; [`StaticToken`] is a fixed token for tests and `plugin exec`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The placeholder of the access token in credential templates.
pub const ACCESS_TOKEN_PLACEHOLDER: &str = "oauth.access-token";

/// Stands for the token in a credential expanded at bind time; replaced per request. Plugins
/// cannot write it (they never see credentials), and wherever it appears the token goes only
/// to that credential rule's approved host.
pub(crate) const ACCESS_TOKEN_MARKER: &str = "\u{0}oauth-access-token\u{0}";

/// Why no access token could be had. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The grant is gone (revoked or expired refresh token, `invalid_grant`) or was never made:
    /// an admin must connect the installation again.
    #[error("the installation needs OAuth2 reauthorization: {0}")]
    NeedsReauthorization(String),
    /// The token endpoint could not be reached or failed; a later attempt may work.
    #[error("no OAuth2 access token could be obtained: {0}")]
    Unavailable(String),
}

/// Where an installation's OAuth2 access tokens come from.
///
/// Implementations serialize refreshes: while one refresh is under way other callers wait for
/// it instead of starting their own, so a rotating refresh token is used exactly once.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A token that is valid now: refreshed first when it expires soon.
    async fn access_token(&self) -> Result<String, TokenError>;

    /// The API refused `rejected` (HTTP 401): refreshes once, unless another call already
    /// replaced that token, and returns the token to retry with.
    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, TokenError>;

    /// Non-secret fields of the provider's token response, such as Salesforce's
    /// `instance_url`; templates see them as `{oauth.<name>}`.
    fn extras(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// A fixed token, for tests and for trying a plugin by hand. A "refresh" hands out the same
/// token again (and is counted), so a second 401 reaches the plugin.
pub struct StaticToken {
    token: String,
    extras: BTreeMap<String, String>,
    refreshes: AtomicUsize,
    /// Tokens to hand out on the following refreshes, first first.
    next: Mutex<Vec<String>>,
    current: Mutex<String>,
}

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        Self {
            current: Mutex::new(token.clone()),
            token,
            extras: BTreeMap::new(),
            refreshes: AtomicUsize::new(0),
            next: Mutex::new(Vec::new()),
        }
    }

    /// Refreshes hand out these tokens in order (then keep the last one).
    pub fn then(self, tokens: &[&str]) -> Self {
        if let Ok(mut next) = self.next.lock() {
            *next = tokens.iter().rev().map(|t| t.to_string()).collect();
        }
        self
    }

    pub fn with_extra(mut self, key: &str, value: &str) -> Self {
        self.extras.insert(key.to_string(), value.to_string());
        self
    }

    /// How many refreshes were asked for.
    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn current(&self) -> String {
        self.current
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|_| self.token.clone())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &"[redacted]")
            .field("refreshes", &self.refreshes())
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<String, TokenError> {
        Ok(self.current())
    }

    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, TokenError> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| TokenError::Unavailable("token lock poisoned".into()))?;
        if *current != rejected {
            return Ok(current.clone());
        }
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut next) = self.next.lock() {
            if let Some(token) = next.pop() {
                *current = token;
            }
        }
        Ok(current.clone())
    }

    fn extras(&self) -> BTreeMap<String, String> {
        self.extras.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_token_refreshes_once_per_rejected_token() {
        let source = StaticToken::new("a").then(&["b", "c"]);
        assert_eq!(source.access_token().await, Ok("a".into()));
        assert_eq!(source.refresh_after_rejection("a").await, Ok("b".into()));
        // A second caller that saw the old token gets the new one without another refresh.
        assert_eq!(source.refresh_after_rejection("a").await, Ok("b".into()));
        assert_eq!(source.refreshes(), 1);
        assert!(!format!("{:?}", StaticToken::new("s3cr3t")).contains("s3cr3t"));
    }
}
