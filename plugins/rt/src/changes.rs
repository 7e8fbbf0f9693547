//! Turning RT's ticket transactions into the hub's [`TicketChange`]s.
//!
//! The poll reads `/transactions` with TransactionSQL (`TicketQueue = ... AND id > N`), the
//! same records `/ticket/{id}/history` lists, across the whole queue in id order. Change ids
//! are the transaction's: `comment:<txn>`, `status:<txn>`, `priority:<txn>`; a comment's id is
//! its transaction id, which is also what `add-comment` returns.

use serde::{Deserialize, Serialize};
use switchboard_plugin_sdk::helpdesk::{
    ChangeAuthor, ChangeKind, CommentChange, TicketChange, TicketPriority, TicketStatus,
};
use switchboard_plugin_sdk::prelude::*;

use crate::api::{priority_from_rt, sql_quote, status_from_rt, Part, Transaction};

/// RT's own user, which runs scrips (such as opening a ticket on a reply).
pub const SYSTEM_USER: &str = "RT_System";

/// How old a transaction must be, by the server's clock, before the poll reports it and moves
/// past it. RT writes a transaction's row before its message parts, and database ids are not
/// always visible in order, so the newest second or two is read again on the next poll.
pub const SETTLE_MS: u64 = 2_000;

/// The poll cursor of the `ticket-changes` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The id of the last transaction reported; the next poll reads the ones after it.
    pub after: u64,
}

/// The TransactionSQL of the changes the hub wants in `queue` after transaction `after`.
pub fn transactions_query(queue: &str, after: u64) -> String {
    format!(
        "ObjectType = 'RT::Ticket' AND TicketQueue = {} AND id > {after} AND (Type = 'Correspond' \
         OR Type = 'Comment' OR Type = 'Status' OR (Type = 'Set' AND Field = 'Priority'))",
        sql_quote(queue)
    )
}

/// The TransactionSQL of the replies (public) or comments (private) that `creator` (a login)
/// posted on ticket `ticket_id`.
pub fn messages_query(ticket_id: u64, visibility: Visibility, creator: &str) -> String {
    let kind = match visibility {
        Visibility::Public => "Correspond",
        Visibility::Private => "Comment",
    };
    format!(
        "ObjectType = 'RT::Ticket' AND ObjectId = {ticket_id} AND Type = '{kind}' AND Creator = {}",
        sql_quote(creator.trim())
    )
}

/// How many of `items` (in id order) are old enough to report: those up to the first one
/// created after `cutoff_ms`. A transaction without a date counts as settled.
pub fn settled_len(items: &[Transaction], cutoff_ms: u64) -> usize {
    items
        .iter()
        .position(|txn| txn.created_ms().is_some_and(|at| at > cutoff_ms))
        .unwrap_or(items.len())
}

/// What a transaction means for the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    /// A reply (`Correspond`, public) or a comment (`Comment`, private): read its message.
    Comment(Visibility),
    Status(TicketStatus),
    Priority(TicketPriority),
}

/// The meaning of a transaction, or `None` for those the hub has no use for (statuses of
/// custom lifecycles, `deleted`, cleared priorities).
pub fn meaning(txn: &Transaction) -> Option<Meaning> {
    let new_value = txn.new_value.as_deref().unwrap_or_default();
    match txn.kind.as_str() {
        "Correspond" => Some(Meaning::Comment(Visibility::Public)),
        "Comment" => Some(Meaning::Comment(Visibility::Private)),
        "Status" => status_from_rt(new_value).map(Meaning::Status),
        "Set" if txn.field.as_deref() == Some("Priority") => {
            priority_from_rt(new_value).map(Meaning::Priority)
        }
        _ => None,
    }
}

/// Who made a transaction: its creator's login, as RT names it.
pub fn creator_login(txn: &Transaction) -> Option<&str> {
    txn.creator.as_ref().and_then(|c| c.name.as_deref())
}

/// True when the integration user (`username`) made the transaction.
pub fn is_echo(txn: &Transaction, username: &str) -> bool {
    creator_login(txn).is_some_and(|login| login.eq_ignore_ascii_case(username.trim()))
}

/// True for transactions RT made itself, on nobody's behalf.
pub fn is_system(txn: &Transaction) -> bool {
    creator_login(txn).is_some_and(|login| login == SYSTEM_USER)
}

/// A message for a comment change: the body and the files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub body: String,
    pub attachments: Vec<Attachment>,
}

/// Builds the change for a transaction with its meaning; `message` is the comment's text.
pub fn ticket_change(
    txn: &Transaction,
    meaning: Meaning,
    external_id: Option<String>,
    author: Option<ChangeAuthor>,
    is_echo: bool,
    message: Message,
) -> TicketChange {
    let id = txn.id.0.clone();
    let (change_id, kind) = match meaning {
        Meaning::Comment(visibility) => (
            format!("comment:{id}"),
            ChangeKind::Comment(CommentChange {
                comment_id: id,
                body: message.body,
                visibility,
                attachments: message.attachments,
            }),
        ),
        Meaning::Status(status) => (format!("status:{id}"), ChangeKind::Status(status)),
        Meaning::Priority(priority) => (format!("priority:{id}"), ChangeKind::Priority(priority)),
    };
    TicketChange {
        change_id,
        ticket_id: txn.object_id.0.clone(),
        external_id,
        author,
        is_echo,
        at: txn.created_ms().unwrap_or(0),
        kind,
    }
}

/// The part holding a message's text: the first text/plain part that is not a file, else the
/// first such text/html one (RT's rich-text editor stores only HTML).
pub fn body_part(parts: &[Part]) -> Option<&Part> {
    let text = |wanted: &str| {
        parts.iter().find(|part| {
            !part.is_file()
                && part
                    .content_type
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(wanted))
        })
    };
    text("text/plain").or_else(|| text("text/html"))
}

/// The files attached to a message, as links to their REST 2.0 records.
pub fn files(parts: &[Part], api_root: &str) -> Vec<Attachment> {
    parts
        .iter()
        .filter(|part| part.is_file())
        .map(|part| Attachment {
            url: format!("{api_root}/attachment/{}", part.id),
            content_type: Some(part.content_type.clone()).filter(|t| !t.is_empty()),
            name: part.filename.clone(),
            size_bytes: part.content_length,
        })
        .collect()
}

/// The text of a message part as RT lists it (decoded), flattened when it is HTML.
pub fn message_text(content: &str, content_type: &str) -> String {
    let is_html = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"));
    if is_html {
        text::html_to_text(content)
    } else {
        content.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Page;

    fn transactions() -> Vec<Transaction> {
        let page: Page<Transaction> = serde_json::from_value(serde_json::json!({"items": [
            {"id": "40", "Type": "Correspond", "ObjectId": "1", "Created": "2026-11-25T00:37:04Z",
             "Creator": {"id": 14, "Name": "root", "RealName": "Enoch Root"}},
            {"id": "42", "Type": "Status", "ObjectId": "1", "Created": "2026-11-25T00:37:04Z",
             "Field": "Status", "NewValue": "open",
             "Creator": {"id": 1, "Name": "RT_System"}},
            {"id": "43", "Type": "Correspond", "ObjectId": "1", "Created": "2026-11-25T00:37:05Z",
             "Creator": {"id": 27, "Name": "agent", "RealName": "Hana Agent"}},
            {"id": "45", "Type": "Comment", "ObjectId": "1", "Created": "2026-11-25T00:37:05Z",
             "Creator": {"id": 27, "Name": "agent"}},
            {"id": "46", "Type": "Status", "ObjectId": "1", "Created": "2026-11-25T00:37:06Z",
             "Field": "Status", "NewValue": "stalled", "Creator": {"id": 27, "Name": "agent"}},
            {"id": "47", "Type": "Set", "ObjectId": "1", "Created": "2026-11-25T00:37:07Z",
             "Field": "Priority", "NewValue": "100", "Creator": {"id": 27, "Name": "agent"}},
            {"id": "48", "Type": "Status", "ObjectId": "1", "Created": "2026-11-25T00:37:08Z",
             "Field": "Status", "NewValue": "deleted", "Creator": {"id": 27, "Name": "agent"}}
        ]}))
        .expect("page");
        page.items
    }

    #[test]
    fn transactions_mean_comments_statuses_and_priorities() {
        let txns = transactions();
        let meanings: Vec<Option<Meaning>> = txns.iter().map(meaning).collect();
        assert_eq!(
            meanings,
            vec![
                Some(Meaning::Comment(Visibility::Public)),
                Some(Meaning::Status(TicketStatus::Open)),
                Some(Meaning::Comment(Visibility::Public)),
                Some(Meaning::Comment(Visibility::Private)),
                Some(Meaning::Status(TicketStatus::Pending)),
                Some(Meaning::Priority(TicketPriority::Urgent)),
                None,
            ]
        );
        assert!(is_echo(&txns[0], "Root"));
        assert!(!is_echo(&txns[2], "root"));
        assert!(is_system(&txns[1]));
        assert!(!is_system(&txns[2]));
    }

    #[test]
    fn only_settled_transactions_are_reported() {
        let txns = transactions();
        let at = |s: &str| switchboard_plugin_sdk::time::parse_utc_datetime_ms(s).expect("date");
        assert_eq!(settled_len(&txns, at("2026-11-25T00:37:04Z")), 2);
        assert_eq!(settled_len(&txns, at("2026-11-25T00:37:03Z")), 0);
        assert_eq!(settled_len(&txns, at("2026-11-25T01:00:00Z")), txns.len());
    }

    #[test]
    fn changes_carry_transaction_ids() {
        let txns = transactions();
        let author = ChangeAuthor {
            id: "27".into(),
            name: Some("Hana Agent".into()),
            is_agent: true,
        };
        let reply = ticket_change(
            &txns[2],
            Meaning::Comment(Visibility::Public),
            Some("telegram:5001".into()),
            Some(author),
            false,
            Message {
                body: "It ships today".into(),
                attachments: vec![],
            },
        );
        assert_eq!(reply.change_id, "comment:43");
        assert_eq!(reply.ticket_id, "1");
        assert_eq!(reply.external_id.as_deref(), Some("telegram:5001"));
        assert_eq!(reply.at, 1_795_567_025_000);
        assert!(matches!(&reply.kind,
            ChangeKind::Comment(c) if c.comment_id == "43" && c.body == "It ships today"
                && c.visibility == Visibility::Public));
        let status = ticket_change(
            &txns[4],
            Meaning::Status(TicketStatus::Pending),
            None,
            None,
            false,
            Message::default(),
        );
        assert_eq!(status.change_id, "status:46");
        assert!(matches!(
            status.kind,
            ChangeKind::Status(TicketStatus::Pending)
        ));
    }

    #[test]
    fn the_query_reads_the_queue_after_the_cursor() {
        assert_eq!(
            transactions_query("Support's", 42),
            "ObjectType = 'RT::Ticket' AND TicketQueue = 'Support\\'s' AND id > 42 AND \
             (Type = 'Correspond' OR Type = 'Comment' OR Type = 'Status' OR (Type = 'Set' AND \
             Field = 'Priority'))"
        );
        let cursor = Cursor { after: 42 };
        let encoded = paging::encode_cursor(&cursor);
        assert_eq!(paging::decode_cursor::<Cursor>(&encoded).ok(), Some(cursor));
    }

    #[test]
    fn the_body_is_the_text_part_and_files_are_links() {
        let parts: Vec<Part> = serde_json::from_value(serde_json::json!([
            {"id": "8", "ContentType": "multipart/mixed", "Filename": "", "ContentLength": "0"},
            {"id": "9", "ContentType": "text/html", "Filename": "", "ContentLength": "30"},
            {"id": "10", "ContentType": "text/plain", "Filename": "notes.txt", "ContentLength": "5"},
            {"id": "11", "ContentType": "text/plain", "Filename": "", "ContentLength": "14"},
            {"id": "12", "ContentType": "image/png", "Filename": "a.png", "ContentLength": "2048"}
        ]))
        .expect("parts");
        assert_eq!(body_part(&parts).map(|p| p.id.0.as_str()), Some("11"));
        assert_eq!(body_part(&parts[..3]).map(|p| p.id.0.as_str()), Some("9"));
        assert!(body_part(&parts[2..3]).is_none());
        let files = files(&parts, "http://rt/REST/2.0");
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].url, "http://rt/REST/2.0/attachment/12");
        assert_eq!(files[1].name.as_deref(), Some("a.png"));
        assert_eq!(files[1].size_bytes, Some(2048));
    }

    #[test]
    fn an_earlier_attempt_is_looked_for_among_the_users_messages_of_one_kind() {
        assert_eq!(
            messages_query(7, Visibility::Public, " root "),
            "ObjectType = 'RT::Ticket' AND ObjectId = 7 AND Type = 'Correspond' AND \
             Creator = 'root'"
        );
        assert_eq!(
            messages_query(7, Visibility::Private, "o'brien"),
            "ObjectType = 'RT::Ticket' AND ObjectId = 7 AND Type = 'Comment' AND \
             Creator = 'o\\'brien'"
        );
    }

    #[test]
    fn text_is_kept_and_html_flattened() {
        assert_eq!(
            message_text("It ships today\n\n", "text/plain"),
            "It ships today"
        );
        assert_eq!(
            message_text("<p>注文<br>届きます</p>", "text/html; charset=utf-8"),
            "注文\n届きます"
        );
    }
}
