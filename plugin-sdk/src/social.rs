//! Social network and messenger connectors (feature `social`).
//!
//! Implement [`SocialConnector`] and register the type with
//! [`export_social!`](crate::export_social):
//!
//! ```ignore
//! use switchboard_plugin_sdk::prelude::*;
//! use switchboard_plugin_sdk::social::*;
//!
//! struct MyNetwork;
//! impl SocialConnector for MyNetwork { /* ... */ }
//! switchboard_plugin_sdk::export_social!(MyNetwork);
//! ```

use core::marker::PhantomData;

use crate::bindings::social::exports::switchboard::connector::social_connector as wit;
use crate::{CallContext, Context, Manifest, Result, WebhookRequest};

pub use wit::{MessageKind, OutboundMessage, PollPage, SentMessage, SocialEvent, WebhookOutcome};

/// A connector for a social network or messenger.
///
/// The hub receives customers' messages through [`handle_webhook`](Self::handle_webhook) or
/// [`poll`](Self::poll), files them as tickets, and hands agents' answers to
/// [`send`](Self::send). Each call is independent: the plugin keeps no state between calls.
///
/// Errors are [`ConnectorError`](crate::ConnectorError)s; pick the variant with care, it
/// decides what the host does next (retry, wait, ask the admin, or give up).
pub trait SocialConnector {
    /// Describes the plugin: its settings, the hosts it calls, its streams, its limits.
    ///
    /// Called at install time and whenever the host loads the plugin; must not call the host.
    fn describe() -> Manifest;

    /// Verifies a webhook request from the network, answers handshakes, and turns the request
    /// into events.
    ///
    /// Verify the signature over the raw body first; a request that fails verification returns
    /// `ConnectorError::unauthorized`. The host sends the `response` of the outcome back to the
    /// network as is.
    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome>;

    /// Reads one page of `stream` (one of the manifest's streams) after `cursor`.
    ///
    /// `None` means "from the start the network allows". Return the cursor to continue from in
    /// `next_cursor` (`None` keeps the previous one) and set `has_more` when another poll right
    /// away would return more. The host stores the cursor only after it stored the events, so a
    /// page may be delivered twice but never lost: keep `message_id`s stable.
    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage>;

    /// Posts an agent's reply or sends a private message.
    ///
    /// The host retries with the same `idempotency_key`; pass it on where the network has a
    /// place for it. Check reply windows and text limits and return `ConnectorError::policy`
    /// or `ConnectorError::invalid` instead of letting the network refuse.
    fn send(ctx: &Context, message: OutboundMessage) -> Result<SentMessage>;
}

#[doc(hidden)]
pub fn __assert_connector<T: SocialConnector>() {}

/// Bridges a [`SocialConnector`] to the generated bindings. Used by `export_social!`.
#[doc(hidden)]
pub struct __Export<T>(PhantomData<T>);

impl<T: SocialConnector> wit::Guest for __Export<T> {
    fn describe() -> Manifest {
        T::describe()
    }

    fn handle_webhook(ctx: CallContext, request: WebhookRequest) -> Result<WebhookOutcome> {
        T::handle_webhook(&ctx.into(), request)
    }

    fn poll(ctx: CallContext, stream: String, cursor: Option<String>) -> Result<PollPage> {
        T::poll(&ctx.into(), &stream, cursor)
    }

    fn send(ctx: CallContext, message: OutboundMessage) -> Result<SentMessage> {
        T::send(&ctx.into(), message)
    }
}

/// Exports a [`SocialConnector`](crate::social::SocialConnector) implementation as the
/// plugin's `social-connector`. Call it once, at the top level of the plugin crate.
///
/// ```ignore
/// switchboard_plugin_sdk::export_social!(MyNetwork);
/// ```
#[macro_export]
macro_rules! export_social {
    ($connector:ty) => {
        // Native builds (a plugin's unit tests, workspace checks) only type-check the
        // connector: the component exports' names aren't valid in native linker scripts.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::social::__assert_connector::<$connector>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a plain identifier.
            type __SwitchboardSocialExport = $crate::social::__Export<$connector>;
            $crate::__private::social_bindings::__export_social_world!(
                __SwitchboardSocialExport with_types_in $crate::__private::social_bindings
            );
        };
    };
}
