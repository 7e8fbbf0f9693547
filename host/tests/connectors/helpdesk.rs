//! Requests and checks shared by the helpdesk plugins' tests (`*_plugin.rs`): the contract's
//! records as the hub fills them, and readers of what the plugins answer.

use switchboard::runtime::latest::{
    ChangeKind, CommentAuthor, ConnectorError, NewComment, NewTicket, RequesterRequest,
    SocialIdentity, TicketChange, TicketUpdate, UnconfirmedAttempt, Visibility,
};
use switchboard::runtime::CallError;

/// A Telegram user `@aiko` called `name`, as the hub asks for them.
pub fn requester_request(user_id: &str, name: &str) -> RequesterRequest {
    RequesterRequest {
        identity: SocialIdentity {
            external_id: user_id.into(),
            network: "telegram".into(),
            handle: Some("aiko".into()),
            display_name: Some(name.into()),
        },
        external_id: format!("telegram:{user_id}"),
    }
}

/// A comment without attachments, its idempotency key made from its body.
pub fn comment(
    ticket: &str,
    author: CommentAuthor,
    body: &str,
    visibility: Visibility,
) -> NewComment {
    NewComment {
        idempotency_key: format!("comment:{body}"),
        ticket_id: ticket.into(),
        author,
        body: body.into(),
        visibility,
        attachments: vec![],
        unconfirmed: None,
    }
}

/// What the hub sends with a retry after an attempt that started at `started_at` (ms since
/// the epoch) and whose outcome it never learned; `known_ids` are what it maps elsewhere.
pub fn unconfirmed(started_at: u64, known_ids: &[&str]) -> Option<UnconfirmedAttempt> {
    Some(UnconfirmedAttempt {
        started_at,
        known_ids: known_ids.iter().map(|id| id.to_string()).collect(),
    })
}

/// `comment` as the hub retries it after such an attempt (see [`unconfirmed`]).
pub fn retried(mut comment: NewComment, started_at: u64, known_ids: &[&str]) -> NewComment {
    comment.unconfirmed = unconfirmed(started_at, known_ids);
    comment
}

/// `ticket` as the hub retries it after such an attempt.
pub fn retried_ticket(mut ticket: NewTicket, started_at: u64, known_ids: &[&str]) -> NewTicket {
    ticket.unconfirmed = unconfirmed(started_at, known_ids);
    ticket
}

/// Now, in ms since the epoch: the hub's clock. The simulators and RT run on the same one.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock after 1970")
}

/// An update of `ticket` that changes nothing yet.
pub fn update(ticket: &str) -> TicketUpdate {
    TicketUpdate {
        ticket_id: ticket.into(),
        status: None,
        priority: None,
        add_tags: vec![],
        remove_tags: vec![],
    }
}

/// The connector error of a failed call; anything else fails the test.
pub fn connector_error<T: std::fmt::Debug>(result: Result<T, CallError>) -> ConnectorError {
    match result {
        Err(CallError::Connector(error)) => error,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

/// The comment changes among `changes`: (change, comment id, body, visibility).
pub fn comment_changes(changes: &[TicketChange]) -> Vec<(&TicketChange, &str, &str, Visibility)> {
    changes
        .iter()
        .filter_map(|c| match &c.kind {
            ChangeKind::Comment(comment) => Some((
                c,
                comment.comment_id.as_str(),
                comment.body.as_str(),
                comment.visibility,
            )),
            _ => None,
        })
        .collect()
}
