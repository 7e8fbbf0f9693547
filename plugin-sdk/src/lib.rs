//! # Switchboard plugin SDK
//!
//! Write a Switchboard connector — a sandboxed WebAssembly plugin that connects one social
//! network or one helpdesk to the hub — in plain Rust.
//!
//! A connector is a type that implements `social::SocialConnector` (feature `social`) or
//! `helpdesk::HelpdeskConnector` (feature `helpdesk`), registered with `export_social!` or
//! `export_helpdesk!`.
//! The host calls it once per operation; it keeps no state between calls. Everything it needs
//! arrives in a [`Context`] (the installation's settings), and anything it wants remembered goes
//! back in its result (poll cursors).
//!
//! A plugin can reach the outside world only through the host:
//!
//! - [`http`] sends requests. The host allows only the origins the plugin's [`Manifest`] lists and
//!   the admin approved, and adds credentials itself, so the plugin usually never touches a token.
//! - [`log_info!`] and friends write structured logs into the host's logs.
//! - [`now_ms`] reads the host's clock.
//!
//! The rest of the crate is helpers for the chores every connector has: mapping HTTP statuses
//! to [`ConnectorError`]s ([`http::status_error`], [`http::Service`]), rate limits
//! ([`http::rate_limit_wait_ms`]), typed settings ([`Context::parse_settings`]), ids that come
//! as numbers or strings ([`ids`]), pagination ([`paging`]), timestamps ([`time`]), webhook
//! signatures ([`signature`]), webhook answers ([`webhook`]) and text ([`text`]: lengths, HTML
//! to and from plain text, the loose comparison of stored text).
//!
//! ## Example
//!
//! ```ignore
//! use switchboard_plugin_sdk::prelude::*;
//! use switchboard_plugin_sdk::social::*;
//!
//! struct Echo;
//!
//! impl SocialConnector for Echo {
//!     fn describe() -> Manifest { /* id, settings, http-hosts, streams, ... */ }
//!     fn handle_webhook(_ctx: &Context, _req: WebhookRequest) -> Result<WebhookOutcome> {
//!         Ok(WebhookOutcome { response: webhook::ok(), events: vec![] })
//!     }
//!     fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
//!         let base = ctx.require("api_base")?;
//!         let items: Vec<serde_json::Value> = http::get(format!("{base}/messages"))
//!             .query("since", cursor.as_deref().unwrap_or("0"))
//!             .send()?
//!             .error_for_status()?
//!             .json()?;
//!         log_info!("polled", stream = stream, count = items.len());
//!         Ok(PollPage { events: vec![], next_cursor: None, has_more: false })
//!     }
//!     fn send(_ctx: &Context, _msg: OutboundMessage) -> Result<SentMessage> {
//!         Err(ConnectorError::fatal("sending is not supported"))
//!     }
//! }
//!
//! switchboard_plugin_sdk::export_social!(Echo);
//! ```
//!
//! ## Features
//!
//! Enable exactly one of `social` or `helpdesk` in a plugin: it selects the world the plugin
//! exports. (Both may be on together in a native build, for documentation and workspace checks,
//! but such a build is not a valid plugin.)
//!
//! ## Outside the host
//!
//! The host interfaces exist only inside the Switchboard runtime. When a plugin's code runs
//! natively, in its own unit tests, the SDK substitutes harmless stand-ins: logs go to stderr,
//! [`now_ms`] reads the system clock, and every HTTP request fails with a `Fatal` error, unless
//! the test installs a fake host (`testkit::FakeHost`, feature `testkit`): scripted exchanges,
//! recorded fixtures and assertions on what the plugin sent.

#![warn(missing_docs)]

// Lets the generated bindings name the SDK by its public path, which also works when their
// export macros expand inside a plugin's crate.
extern crate self as switchboard_plugin_sdk;

// Undocumented fields in the WIT would otherwise warn in every plugin build.
#[allow(missing_docs)]
mod bindings;
mod context;
mod error;
pub mod http;
pub mod ids;
#[doc(hidden)]
pub mod log;
mod manifest;
pub mod paging;
mod settings;
pub mod signature;
#[cfg(all(feature = "testkit", not(target_arch = "wasm32")))]
pub mod testkit;
pub mod text;
pub mod time;
mod types;
pub mod webhook;

/// Contract 0.3 bindings (features `social-v0_3`, `helpdesk-v0_3`).
#[cfg(feature = "v0_3")]
#[allow(missing_docs)]
pub mod v0_3;

#[cfg(feature = "helpdesk")]
pub mod helpdesk;
#[cfg(feature = "social")]
pub mod social;

pub use context::Context;

/// The shared types of the contract (WIT interface `types`).
pub use bindings::host::switchboard::connector::types::{
    Attachment, BasicCredential, CallContext, ConnectorError, CredentialPlacement, CredentialRule,
    InvalidField, LengthUnit, Manifest, NamedTemplate, Oauth2Flow, Oauth2Spec, PluginKind,
    PolicyViolation, RateLimit, ReplyWindow, Setting, SettingSpec, SocialIdentity, StreamSpec,
    TextLimit, TimestampMs, Visibility, WebhookRequest, WebhookResponse,
};

/// The result type of every connector operation.
pub type Result<T, E = ConnectorError> = core::result::Result<T, E>;

/// The host's wall clock, in milliseconds since the Unix epoch (UTC).
///
/// Use it rather than `std::time::SystemTime`, which is not available to a plugin. Tests of the
/// host may freeze this clock. Outside the host (native unit tests) it reads the system clock.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::host::switchboard::connector::clock::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        #[cfg(feature = "testkit")]
        if let Some(frozen) = testkit::frozen_now_ms() {
            return frozen;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The `host-pattern` of a credential rule that gives a secret setting to the plugin itself
/// (see [`secret_for_plugin`]).
pub const PLUGIN_ITSELF: &str = "plugin";

/// A credential rule that lets the plugin itself see the secret setting `key` in its
/// [`Context`]; put it in the manifest's `credentials`.
///
/// The host gives a plugin no secret setting unless it asks this way: secrets go to the
/// credentials the host adds to requests, and to OAuth2, which the host runs. Ask only for a
/// secret the plugin must compare itself, such as a webhook signing secret. Admins see the
/// request at install. The OAuth2 client secret and JWT private key are never given to a
/// plugin (the manifest check refuses such a rule).
///
/// ```
/// # use switchboard_plugin_sdk::{secret_for_plugin, CredentialPlacement};
/// let rule = secret_for_plugin("webhook_secret");
/// assert_eq!(rule.host_pattern, "plugin");
/// assert!(matches!(rule.placement, CredentialPlacement::Header(h) if h.value == "{webhook_secret}"));
/// ```
pub fn secret_for_plugin(key: &str) -> CredentialRule {
    CredentialRule {
        host_pattern: PLUGIN_ITSELF.to_string(),
        placement: CredentialPlacement::Header(NamedTemplate {
            name: key.to_string(),
            value: format!("{{{key}}}"),
        }),
    }
}

/// Everything a connector usually needs: `use switchboard_plugin_sdk::prelude::*;`.
///
/// It brings in the shared types, [`Result`], [`Context`], the helper modules (`http`, `paging`,
/// `signature`, `webhook`, `text`), [`now_ms`], the logging macros and the connector trait of
/// the enabled world. The world-specific types (`PollPage`, `NewTicket`, ...) live in `social`
/// and `helpdesk`; import them from there, by name or with a glob.
pub mod prelude {
    pub use crate::{
        http, ids, log_debug, log_error, log_info, log_trace, log_warn, now_ms, paging,
        secret_for_plugin, signature, text, webhook, Attachment, BasicCredential, CallContext,
        ConnectorError, Context, CredentialPlacement, CredentialRule, InvalidField, LengthUnit,
        Manifest, NamedTemplate, Oauth2Flow, Oauth2Spec, PluginKind, PolicyViolation, RateLimit,
        ReplyWindow, Result, SettingSpec, SocialIdentity, StreamSpec, TextLimit, TimestampMs,
        Visibility, WebhookRequest, WebhookResponse,
    };

    #[cfg(feature = "helpdesk")]
    pub use crate::helpdesk::HelpdeskConnector;
    #[cfg(feature = "social")]
    pub use crate::social::SocialConnector;
}

/// Implementation details used by the export macros. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    #[cfg(feature = "helpdesk")]
    pub use crate::bindings::helpdesk as helpdesk_bindings;
    #[cfg(feature = "social")]
    pub use crate::bindings::social as social_bindings;
}

/// Compiles the README's example as a doctest, so the guide stays true to the API.
#[cfg(all(doctest, feature = "social"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
