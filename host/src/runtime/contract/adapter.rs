//! Converts values between contract versions: arguments from the current contract (0.3) down
//! to what a 0.2 component takes, and 0.2 results (and host-import arguments) up to 0.3.
//!
//! Fields 0.3 added take the value that says "the plugin told nothing": no author signals,
//! `addresses-brand` unknown, no referral, `owned: true`, no delivery statuses or ownership
//! changes, no per-part reserve, no billable kinds, and channel capabilities that allow what
//! the 0.2 hub did (answer every conversation in its own visibility, no private reply to a
//! public post). Fields a 0.2 component has no slot for (the part index, the answer's
//! visibility, the customer context of a ticket) are dropped on the way down.

use super::v0_2 as old;
use super::v0_3 as new;

use new::helpdesk::exports::switchboard::connector::helpdesk_connector as new_hd;
use new::social::exports::switchboard::connector::social_connector as new_so;
use old::helpdesk::exports::switchboard::connector::helpdesk_connector as old_hd;
use old::social::exports::switchboard::connector::social_connector as old_so;

/// A value of one contract version turned into the matching value of another.
pub trait Adapt<T> {
    fn adapt(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => {$(
        impl Adapt<$t> for $t {
            fn adapt(self) -> $t {
                self
            }
        }
    )*};
}
same!(String, bool, u8, u16, u32, u64);

impl<A: Adapt<B>, B> Adapt<Vec<B>> for Vec<A> {
    fn adapt(self) -> Vec<B> {
        self.into_iter().map(Adapt::adapt).collect()
    }
}

impl<A: Adapt<B>, B> Adapt<Option<B>> for Option<A> {
    fn adapt(self) -> Option<B> {
        self.map(Adapt::adapt)
    }
}

impl<A: Adapt<C>, B: Adapt<D>, C, D> Adapt<(C, D)> for (A, B) {
    fn adapt(self) -> (C, D) {
        (self.0.adapt(), self.1.adapt())
    }
}

impl<A: Adapt<C>, B: Adapt<D>, C, D> Adapt<Result<C, D>> for Result<A, B> {
    fn adapt(self) -> Result<C, D> {
        match self {
            Ok(value) => Ok(value.adapt()),
            Err(error) => Err(error.adapt()),
        }
    }
}

/// A record whose fields are the same on both sides, each adapted; `+ { field: value }`
/// fills fields only the target has.
macro_rules! record {
    ($from:ty => $to:ty { $($field:ident),* $(,)? } $(+ { $($extra:ident : $value:expr),* $(,)? })?) => {
        impl Adapt<$to> for $from {
            fn adapt(self) -> $to {
                type To = $to;
                To {
                    $($field: self.$field.adapt(),)*
                    $($($extra: $value,)*)?
                }
            }
        }
    };
}

/// An enum or variant whose cases are the same on both sides.
macro_rules! cases {
    ($from:ty => $to:ty { $($case:ident $(($payload:ident))?),* $(,)? }) => {
        impl Adapt<$to> for $from {
            fn adapt(self) -> $to {
                type To = $to;
                match self {
                    $(Self::$case $(($payload))? => To::$case $(($payload.adapt()))?,)*
                }
            }
        }
    };
}

// ----- shared types, both ways --------------------------------------------------------------

macro_rules! both_ways {
    ($($body:tt)*) => {
        mod up {
            #[allow(unused_imports)]
            use super::*;
            use super::old::types as from;
            use super::new::types as to;
            $($body)*
        }
        mod down {
            #[allow(unused_imports)]
            use super::*;
            use super::new::types as from;
            use super::old::types as to;
            $($body)*
        }
    };
}

both_ways! {
    cases!(from::Visibility => to::Visibility { Public, Private });
    record!(from::Attachment => to::Attachment { url, content_type, name, size_bytes });
    record!(from::SocialIdentity => to::SocialIdentity { external_id, network, handle, display_name });
    record!(from::Setting => to::Setting { key, value });
    record!(from::CallContext => to::CallContext { installation_id, settings });
    record!(from::WebhookRequest => to::WebhookRequest { method, path, query, headers, body });
    record!(from::WebhookResponse => to::WebhookResponse { status, headers, body });
    record!(from::RateLimit => to::RateLimit { retry_after_ms, message });
    record!(from::InvalidField => to::InvalidField { field, message });
    record!(from::PolicyViolation => to::PolicyViolation { code, message });
    cases!(from::ConnectorError => to::ConnectorError {
        Unauthorized(m), RateLimited(m), NotFound(m), InvalidInput(m), Policy(m), Transient(m), Fatal(m),
    });
}

// ----- host imports: 0.2 arguments up, 0.3 results down -------------------------------------

record!(old::http::Request => new::http::Request { method, url, headers, body, timeout_ms });
record!(new::http::Response => old::http::Response { status, headers, body });
cases!(new::http::HttpError => old::http::HttpError {
    Denied(m), Timeout(m), InvalidRequest(m), ResponseTooLarge(m), Transport(m),
});
cases!(old::log::Level => new::log::Level { Trace, Debug, Info, Warn, Error });

// ----- the manifest, up -----------------------------------------------------------------------

cases!(old::types::LengthUnit => new::types::LengthUnit { Chars, Utf16Units, Graphemes, Utf8Bytes, Weighted });
record!(old::types::TextLimit => new::types::TextLimit { visibility, max_length, unit } + { reserve_per_part: 0 });
record!(old::types::ReplyWindow => new::types::ReplyWindow { visibility, seconds, note });
record!(old::types::SettingSpec => new::types::SettingSpec { key, label, description, secret, required, default_value });
record!(old::types::BasicCredential => new::types::BasicCredential { username, password });
record!(old::types::NamedTemplate => new::types::NamedTemplate { name, value });
cases!(old::types::CredentialPlacement => new::types::CredentialPlacement {
    Basic(m), Bearer(m), Header(m), Query(m), PathPrefix(m),
});
record!(old::types::CredentialRule => new::types::CredentialRule { host_pattern, placement });
cases!(old::types::Oauth2Flow => new::types::Oauth2Flow {
    AuthorizationCodePkce, RefreshToken, JwtBearer, ClientCredentials,
});
record!(old::types::Oauth2Spec => new::types::Oauth2Spec { authorize_url, token_url, scopes, flows });
record!(old::types::StreamSpec => new::types::StreamSpec { name, description, default_schedule });
cases!(old::types::PluginKind => new::types::PluginKind { Social, Helpdesk });

impl Adapt<new::types::Manifest> for old::types::Manifest {
    fn adapt(self) -> new::types::Manifest {
        let kind: new::types::PluginKind = self.kind.adapt();
        let text_limits: Vec<new::types::TextLimit> = self.text_limits.adapt();
        let channel =
            matches!(kind, new::types::PluginKind::Social).then(|| derived_channel(&text_limits));
        new::types::Manifest {
            id: self.id,
            name: self.name,
            version: self.version,
            kind,
            description: self.description,
            settings: self.settings.adapt(),
            http_hosts: self.http_hosts,
            credentials: self.credentials.adapt(),
            streams: self.streams.adapt(),
            accepts_webhooks: self.accepts_webhooks,
            text_limits,
            reply_windows: self.reply_windows.adapt(),
            oauth2: self.oauth2.adapt(),
            channel,
            billable_kinds: Vec::new(),
        }
    }
}

/// What a 0.2 social plugin could do, as 0.3 capabilities: the 0.2 hub answered every
/// conversation in its own visibility, knew of no private reply to a public post, never edited
/// or deleted, and sent attachments without a declared limit.
pub fn derived_channel(text_limits: &[new::types::TextLimit]) -> new::types::ChannelCapabilities {
    use new::types::MessageKind;
    let every_kind = vec![
        MessageKind::DirectMessage,
        MessageKind::Post,
        MessageKind::Comment,
    ];
    new::types::ChannelCapabilities {
        public_reply_kinds: every_kind.clone(),
        private_reply_kinds: every_kind,
        private_reply_to_public: None,
        edits: false,
        deletes: false,
        max_attachments: None,
        text_unit: text_limits
            .first()
            .map(|l| l.unit)
            .unwrap_or(new::types::LengthUnit::Chars),
    }
}

// ----- social ---------------------------------------------------------------------------------

cases!(old_so::MessageKind => new_so::MessageKind { DirectMessage, Post, Comment });
cases!(new_so::MessageKind => old_so::MessageKind { DirectMessage, Post, Comment });
record!(old_so::SocialEvent => new_so::SocialEvent {
    message_id, thread_id, parent_id, kind, visibility, author, is_echo, created_at, text,
    attachments, reply_handle,
} + {
    author_signals: no_signals(),
    addresses_brand: None,
    referral: None,
    owned: true,
});
record!(old_so::WebhookOutcome => new_so::WebhookOutcome { response, events } + {
    statuses: Vec::new(),
    ownership_changes: Vec::new(),
});
record!(old_so::PollPage => new_so::PollPage { events, next_cursor, has_more } + {
    statuses: Vec::new(),
    ownership_changes: Vec::new(),
});
record!(old_so::SentMessage => new_so::SentMessage { message_ids });
record!(new_so::OutboundMessage => old_so::OutboundMessage {
    idempotency_key, thread_id, reply_to, kind, recipient, text, attachments, last_inbound_at,
    reply_handle,
});

/// Author signals that say nothing.
pub fn no_signals() -> new::types::AuthorSignals {
    new::types::AuthorSignals {
        follower_count: None,
        verified: None,
        verification_kind: None,
    }
}

// ----- helpdesk -------------------------------------------------------------------------------

cases!(old_hd::TicketStatus => new_hd::TicketStatus { New, Open, Pending, OnHold, Solved, Closed });
cases!(new_hd::TicketStatus => old_hd::TicketStatus { New, Open, Pending, OnHold, Solved, Closed });
cases!(old_hd::TicketPriority => new_hd::TicketPriority { Low, Normal, High, Urgent });
cases!(new_hd::TicketPriority => old_hd::TicketPriority { Low, Normal, High, Urgent });
record!(new_hd::RequesterRequest => old_hd::RequesterRequest { identity, external_id });
record!(old_hd::Requester => new_hd::Requester { id, created });
record!(new_hd::UnconfirmedAttempt => old_hd::UnconfirmedAttempt { started_at, known_ids });
record!(new_hd::NewTicket => old_hd::NewTicket {
    idempotency_key, external_id, requester_id, subject, body, visibility, attachments, tags,
    priority, status, channel, unconfirmed,
});
record!(old_hd::TicketRef => new_hd::TicketRef { id, created, url });
cases!(new_hd::CommentAuthor => old_hd::CommentAuthor { Requester(id), Integration });
record!(new_hd::NewComment => old_hd::NewComment {
    idempotency_key, ticket_id, author, body, visibility, attachments, unconfirmed,
});
record!(old_hd::CommentRef => new_hd::CommentRef { id });
record!(new_hd::TicketUpdate => old_hd::TicketUpdate { ticket_id, status, priority, add_tags, remove_tags });
record!(old_hd::TicketState => new_hd::TicketState { id, status, priority, external_id, updated_at });
record!(old_hd::ChangeAuthor => new_hd::ChangeAuthor { id, name, is_agent });
record!(old_hd::CommentChange => new_hd::CommentChange { comment_id, body, visibility, attachments });
cases!(old_hd::ChangeKind => new_hd::ChangeKind { Comment(c), Status(s), Priority(p) });
record!(old_hd::TicketChange => new_hd::TicketChange {
    change_id, ticket_id, external_id, author, is_echo, at, kind,
});
record!(old_hd::PollPage => new_hd::PollPage { changes, next_cursor, has_more });
record!(old_hd::WebhookOutcome => new_hd::WebhookOutcome { response, changes });
