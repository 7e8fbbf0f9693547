//! The contract version the host speaks, under short names.
//!
//! Code outside the runtime (the hub, its outbox and scheduler, the store, the server, the
//! tests) names the contract's types through this module and never through the generated
//! paths, so this is the one place that says which version is current. A new contract version
//! is a folder under `wit/`, its generated bindings beside [`super::bindings`], and an adapter
//! from the older version's types to the ones re-exported here.

use super::bindings::helpdesk::exports::switchboard::connector::helpdesk_connector as helpdesk;
use super::bindings::social::exports::switchboard::connector::social_connector as social;

/// The contract, as plugins name it (`package@version`).
pub use super::bindings::CONTRACT;

/// Types shared by both worlds: errors, attachments, identities, webhooks, the manifest.
pub use super::bindings::types::{
    Attachment, AuthorSignals, BasicCredential, BillableKind, CallContext, ChannelCapabilities,
    ConnectorError, CredentialPlacement, CredentialRule, CustomerContext, InvalidField, LengthUnit,
    Manifest, NamedTemplate, Oauth2Flow, Oauth2Spec, PluginKind, PolicyViolation, PrivateReplyRule,
    RateLimit, Referral, ReferralSource, ReplyWindow, Setting, SettingSpec, SocialIdentity,
    StreamSpec, TextLimit, Visibility, WebhookRequest, WebhookResponse,
};

/// What a social connector exchanges with the hub.
pub use self::social::{
    DeliveryState, DeliveryStatus, MessageKind, MessagePart, OutboundMessage, OwnershipChange,
    PollPage as SocialPollPage, SentMessage, SocialEvent, WebhookOutcome as SocialWebhookOutcome,
};

/// What a helpdesk connector exchanges with the hub.
pub use self::helpdesk::{
    ChangeAuthor, ChangeKind, CommentAuthor, CommentChange, CommentRef, NewComment, NewTicket,
    PollPage as HelpdeskPollPage, Requester, RequesterRequest, TicketChange, TicketPriority,
    TicketRef, TicketState, TicketStatus, TicketUpdate, UnconfirmedAttempt,
    WebhookOutcome as HelpdeskWebhookOutcome,
};
