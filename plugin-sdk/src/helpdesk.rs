//! Helpdesk (ticketing system) connectors (feature `helpdesk`).
//!
//! Implement [`HelpdeskConnector`] and register the type with
//! [`export_helpdesk!`](crate::export_helpdesk):
//!
//! ```ignore
//! use switchboard_plugin_sdk::prelude::*;
//! use switchboard_plugin_sdk::helpdesk::*;
//!
//! struct MyHelpdesk;
//! impl HelpdeskConnector for MyHelpdesk { /* ... */ }
//! switchboard_plugin_sdk::export_helpdesk!(MyHelpdesk);
//! ```

use core::marker::PhantomData;

use crate::bindings::helpdesk::exports::switchboard::connector::helpdesk_connector as wit;
use crate::{CallContext, Context, Manifest, Result, SettingSpec, StreamSpec, WebhookRequest};

pub use wit::{
    ChangeAuthor, ChangeKind, CommentAuthor, CommentChange, CommentRef, NewComment, NewTicket,
    PollPage, Requester, RequesterRequest, TicketChange, TicketPriority, TicketRef, TicketState,
    TicketStatus, TicketUpdate, UnconfirmedAttempt, WebhookOutcome,
};

/// The one pollable stream of every helpdesk connector: agents' replies, notes and ticket
/// changes.
pub const TICKET_CHANGES_STREAM: &str = "ticket-changes";

/// How often [`ticket_changes_stream`] is polled until an admin changes it: every 30 seconds.
pub const TICKET_CHANGES_SCHEDULE: &str = "*/30 * * * * *";

/// The key of the setting that says how far back the first poll of a new installation looks
/// ([`initial_lookback_setting`]).
pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";

/// The first poll's look-back when the admin sets none: an hour.
pub const DEFAULT_INITIAL_LOOKBACK_SECS: u64 = 3600;

/// The manifest's [`TICKET_CHANGES_STREAM`], polled on [`TICKET_CHANGES_SCHEDULE`];
/// `description` says where the connector reads the changes from.
pub fn ticket_changes_stream(description: &str) -> StreamSpec {
    StreamSpec::new(TICKET_CHANGES_STREAM, description, TICKET_CHANGES_SCHEDULE)
}

/// The manifest's [`INITIAL_LOOKBACK_SECS`] setting, [`DEFAULT_INITIAL_LOOKBACK_SECS`] unless
/// the admin says otherwise.
pub fn initial_lookback_setting() -> SettingSpec {
    SettingSpec::new(
        INITIAL_LOOKBACK_SECS,
        "Initial look-back (seconds)",
        "How far back the first poll of the ticket-changes stream starts.",
    )
    .with_default(DEFAULT_INITIAL_LOOKBACK_SECS.to_string())
}

impl TicketStatus {
    /// Every status, in the contract's order: for mapping tables and their round-trip tests.
    pub const ALL: [TicketStatus; 6] = [
        TicketStatus::New,
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::OnHold,
        TicketStatus::Solved,
        TicketStatus::Closed,
    ];
}

impl TicketPriority {
    /// Every priority, lowest first: for mapping tables and their round-trip tests.
    pub const ALL: [TicketPriority; 4] = [
        TicketPriority::Low,
        TicketPriority::Normal,
        TicketPriority::High,
        TicketPriority::Urgent,
    ];
}

/// How far before an unconfirmed attempt's start a look-back searches: the service's clock
/// may differ from the hub's, and many services round timestamps down to the second.
pub const LOOK_BACK_SLACK_MS: u64 = 60_000;

/// What a retried create or comment looks for on a service without an idempotency key, when
/// an earlier attempt may have taken effect (`unconfirmed` on [`NewTicket`] and [`NewComment`]).
///
/// ```ignore
/// if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
///     for found in comments_since(ticket, earlier.since_ms())? {
///         if earlier.may_be(&found.id, found.created_at_ms) && found.body == body {
///             return Ok(CommentRef { id: found.id });
///         }
///     }
/// }
/// // ... nothing found: create it.
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LookBack<'a> {
    attempt: &'a UnconfirmedAttempt,
}

impl<'a> LookBack<'a> {
    /// `None` when every earlier attempt is known to have changed nothing: just act.
    pub fn of(unconfirmed: Option<&'a UnconfirmedAttempt>) -> Option<Self> {
        unconfirmed.map(|attempt| LookBack { attempt })
    }

    /// The earliest creation time (ms since the Unix epoch) a match can have.
    pub fn since_ms(&self) -> u64 {
        self.attempt.started_at.saturating_sub(LOOK_BACK_SLACK_MS)
    }

    /// Whether a record with this id, created at `created_at_ms`, can be the earlier attempt's:
    /// recent enough, and not one the hub already maps to something else. The caller compares
    /// the content (author, text, visibility, subject).
    pub fn may_be(&self, id: &str, created_at_ms: u64) -> bool {
        created_at_ms >= self.since_ms() && !self.attempt.known_ids.iter().any(|known| known == id)
    }
}

/// A connector for a ticketing system.
///
/// The hub files customers' conversations as tickets through
/// [`find_or_create_requester`](Self::find_or_create_requester),
/// [`create_ticket`](Self::create_ticket) and [`add_comment`](Self::add_comment), and learns
/// about agents' replies and status changes through [`poll_changes`](Self::poll_changes) or
/// [`handle_webhook`](Self::handle_webhook). Each call is independent: the plugin keeps no
/// state between calls.
///
/// Writes carry an `idempotency_key` that stays the same on every retry of the same work;
/// send it as the service's idempotency key where there is one, so a retry after a lost
/// response creates nothing twice. Where there is none, the hub says when an earlier attempt
/// may have taken effect (`unconfirmed`): look for its result first, with [`LookBack`].
pub trait HelpdeskConnector {
    /// Describes the plugin: its settings, the hosts it calls, its streams.
    ///
    /// Called at install time and whenever the host loads the plugin; must not call the host.
    fn describe() -> Manifest;

    /// Finds the requester with this external identity, or creates them.
    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester>;

    /// Creates a ticket, or upserts it by `external_id` where the service allows.
    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef>;

    /// Adds a customer message, a public reply or an internal note to a ticket.
    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef>;

    /// Changes a ticket's status, priority or tags.
    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState>;

    /// Reads a ticket's current state.
    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState>;

    /// Reads one page of changes of `stream` after `cursor`: agent replies, notes and status
    /// changes. Mark the hub's own writes with `is_echo` so they are not sent back out.
    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage>;

    /// Verifies a webhook request from the helpdesk and turns it into changes. A request that
    /// fails verification returns `ConnectorError::unauthorized`.
    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome>;
}

#[doc(hidden)]
pub fn __assert_connector<T: HelpdeskConnector>() {}

/// Bridges a [`HelpdeskConnector`] to the generated bindings. Used by `export_helpdesk!`.
#[doc(hidden)]
pub struct __Export<T>(PhantomData<T>);

impl<T: HelpdeskConnector> wit::Guest for __Export<T> {
    fn describe() -> Manifest {
        T::describe()
    }

    fn find_or_create_requester(ctx: CallContext, request: RequesterRequest) -> Result<Requester> {
        T::find_or_create_requester(&ctx.into(), request)
    }

    fn create_ticket(ctx: CallContext, ticket: NewTicket) -> Result<TicketRef> {
        T::create_ticket(&ctx.into(), ticket)
    }

    fn add_comment(ctx: CallContext, comment: NewComment) -> Result<CommentRef> {
        T::add_comment(&ctx.into(), comment)
    }

    fn update_ticket(ctx: CallContext, update: TicketUpdate) -> Result<TicketState> {
        T::update_ticket(&ctx.into(), update)
    }

    fn get_ticket(ctx: CallContext, ticket_id: String) -> Result<TicketState> {
        T::get_ticket(&ctx.into(), &ticket_id)
    }

    fn poll_changes(ctx: CallContext, stream: String, cursor: Option<String>) -> Result<PollPage> {
        T::poll_changes(&ctx.into(), &stream, cursor)
    }

    fn handle_webhook(ctx: CallContext, request: WebhookRequest) -> Result<WebhookOutcome> {
        T::handle_webhook(&ctx.into(), request)
    }
}

/// Exports a [`HelpdeskConnector`](crate::helpdesk::HelpdeskConnector) implementation as the
/// plugin's `helpdesk-connector`. Call it once, at the top level of the plugin crate.
///
/// ```ignore
/// switchboard_plugin_sdk::export_helpdesk!(MyHelpdesk);
/// ```
#[macro_export]
macro_rules! export_helpdesk {
    ($connector:ty) => {
        // Native builds (a plugin's unit tests, workspace checks) only type-check the
        // connector: the component exports' names aren't valid in native linker scripts.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::helpdesk::__assert_connector::<$connector>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a plain identifier.
            type __SwitchboardHelpdeskExport = $crate::helpdesk::__Export<$connector>;
            $crate::__private::helpdesk_bindings::__export_helpdesk_world!(
                __SwitchboardHelpdeskExport with_types_in $crate::__private::helpdesk_bindings
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_stream_and_its_look_back_setting() {
        let stream = ticket_changes_stream("From the ticket list.");
        assert_eq!(stream.name, "ticket-changes");
        assert_eq!(stream.description, "From the ticket list.");
        assert_eq!(stream.default_schedule, "*/30 * * * * *");
        let setting = initial_lookback_setting();
        assert_eq!(setting.key, "initial_lookback_secs");
        assert_eq!(setting.default_value.as_deref(), Some("3600"));
        assert!(!setting.required && !setting.secret);
    }

    #[test]
    fn every_status_and_priority_once() {
        for (i, status) in TicketStatus::ALL.iter().enumerate() {
            assert!(!TicketStatus::ALL[..i].contains(status));
        }
        for (i, priority) in TicketPriority::ALL.iter().enumerate() {
            assert!(!TicketPriority::ALL[..i].contains(priority));
        }
    }

    #[test]
    fn look_back_takes_recent_unknown_records_only() {
        let attempt = UnconfirmedAttempt {
            started_at: 1_000_000,
            known_ids: vec!["7".into()],
        };
        assert!(LookBack::of(None).is_none());
        let look = LookBack::of(Some(&attempt)).expect("unconfirmed");
        assert_eq!(look.since_ms(), 1_000_000 - LOOK_BACK_SLACK_MS);
        assert!(look.may_be("8", 1_000_000));
        // Rounded down to the second, or a service clock a little behind the hub's.
        assert!(look.may_be("8", 1_000_000 - LOOK_BACK_SLACK_MS));
        assert!(!look.may_be("8", 1_000_000 - LOOK_BACK_SLACK_MS - 1));
        assert!(
            !look.may_be("7", 1_000_000),
            "the hub maps 7 to something else"
        );
    }
}
