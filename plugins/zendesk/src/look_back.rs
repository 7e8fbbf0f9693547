//! Recognizing what an earlier attempt whose outcome is unknown did. Zendesk keeps an
//! idempotency key for two hours only and takes none on updates, so the plugin lists recent
//! tickets or comments and picks the one that attempt may have made. Nothing here calls the
//! host: `account.rs` lists, this decides.

use switchboard_plugin_sdk::helpdesk::LookBack;
use switchboard_plugin_sdk::text::same_text;

use crate::api::{Comment, Ticket};

impl Comment {
    /// Whether this comment carries `text` as sent. Zendesk may trim or reflow whitespace in
    /// `body`, and `plain_body` is rendered from the HTML, so both are compared loosely.
    pub fn has_text(&self, text: &str) -> bool {
        [&self.body, &self.plain_body]
            .into_iter()
            .flatten()
            .any(|stored| same_text(text, stored))
    }
}

impl Ticket {
    /// Whether this ticket has `subject`, as Zendesk may have trimmed or reflowed it.
    pub fn has_subject(&self, subject: &str) -> bool {
        self.subject
            .as_deref()
            .is_some_and(|s| same_text(subject, s))
    }
}

/// Picks the newest comment `wanted` accepts, whatever order `comments` are in. When they are
/// all of the ticket's (`all`), the oldest is the description and is left out.
pub fn newest_match(
    comments: &[Comment],
    all: bool,
    wanted: impl Fn(&Comment) -> bool,
) -> Option<String> {
    let description = all
        .then(|| comments.iter().min_by_key(|c| c.order_key()))
        .flatten()
        .map(|c| &c.id);
    comments
        .iter()
        .filter(|c| Some(&c.id) != description)
        .filter(|c| wanted(c))
        .max_by_key(|c| c.order_key())
        .map(|c| c.id.0.clone())
}

/// Whether `ticket` can be what an earlier attempt filed for `requester` with `subject`.
pub fn is_earlier_ticket(
    ticket: &Ticket,
    requester: &str,
    subject: &str,
    earlier: LookBack<'_>,
) -> bool {
    ticket
        .requester_id
        .as_ref()
        .is_some_and(|r| r.0 == requester)
        && ticket.has_subject(subject)
        && ticket
            .created_at_ms()
            .is_some_and(|at| earlier.may_be(&ticket.id.0, at))
}

/// The id of the newest of `tickets`, whatever order they came in.
pub fn newest_ticket(tickets: Vec<Ticket>) -> Option<String> {
    tickets
        .into_iter()
        .max_by_key(|t| t.order_key())
        .map(|t| t.id.0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_plugin_sdk::helpdesk::UnconfirmedAttempt;

    use super::*;
    use crate::api::{CommentsPage, TicketsPage};

    #[test]
    fn comments_match_their_text_with_whitespace_reflowed() {
        let comment: Comment = serde_json::from_str(
            r#"{"id":1,"body":"Hi  there\n\nsee below ","plain_body":"Hi there\u00a0see below",
                "author_id":20,"created_at":"2024-05-01T09:10:00Z"}"#,
        )
        .expect("comment");
        assert!(comment.has_text("Hi there\n\nsee below"));
        assert!(comment.has_text(" Hi there see below\n"));
        assert!(!comment.has_text("Hi there, see below"));
        assert!(!comment.has_text(""));
        assert!(comment.public, "public unless said otherwise");
        assert!(comment.is_by("20") && !comment.is_by("2"));
        assert_eq!(comment.created_at_ms(), Some(1_714_554_600_000));
        let plain_only: Comment =
            serde_json::from_str(r#"{"id":2,"plain_body":"ok","public":false}"#).expect("comment");
        assert!(plain_only.has_text("ok") && !plain_only.public);
    }

    #[test]
    fn newest_match_regardless_of_order_never_the_description() {
        let page: CommentsPage = serde_json::from_value(json!({"comments": [
            {"id": 7, "author_id": 20, "created_at": "2024-05-01T09:10:00Z"},
            {"id": 5, "author_id": 20, "created_at": "2024-05-01T09:00:00Z"},
            {"id": 8, "author_id": 20, "created_at": "2024-05-01T09:10:00Z"},
            {"id": 9, "author_id": 30, "created_at": "2024-05-01T09:20:00Z"}
        ]}))
        .expect("page");
        let by = |author: &'static str| move |c: &Comment| c.is_by(author);
        // Same second: the higher id is the newer.
        assert_eq!(
            newest_match(&page.comments, true, by("20")).as_deref(),
            Some("8")
        );
        assert_eq!(newest_match(&page.comments, true, by("40")), None);
        let only_first = |c: &Comment| c.id.0 == "5";
        assert_eq!(
            newest_match(&page.comments, true, only_first),
            None,
            "the oldest of all the comments is the description"
        );
        assert_eq!(
            newest_match(&page.comments, false, only_first).as_deref(),
            Some("5"),
            "older comments exist beyond a partial listing"
        );
    }

    #[test]
    fn an_earlier_ticket_is_the_newest_recent_unknown_match() {
        // 2024-05-01T09:00:00Z
        let started_at = 1_714_554_000_000;
        let attempt = UnconfirmedAttempt {
            started_at,
            known_ids: vec!["3".into()],
        };
        let earlier = LookBack::of(Some(&attempt)).expect("unconfirmed");
        let page: TicketsPage = serde_json::from_value(json!({"tickets": [
            {"id": 1, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T08:58:59Z"},
            {"id": 3, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T09:05:00Z"},
            {"id": 5, "requester_id": 20, "subject": "Order  late ", "created_at": "2024-05-01T09:00:00Z"},
            {"id": 4, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T09:00:00Z"},
            {"id": 6, "requester_id": 21, "subject": "Order late", "created_at": "2024-05-01T09:01:00Z"},
            {"id": 7, "requester_id": 20, "subject": "Other", "created_at": "2024-05-01T09:01:00Z"},
            {"id": 8, "requester_id": 20, "subject": "Order late"}
        ]}))
        .expect("page");
        let found = |tickets: Vec<Ticket>| {
            newest_ticket(
                tickets
                    .into_iter()
                    .filter(|t| is_earlier_ticket(t, "20", "Order late", earlier))
                    .collect(),
            )
        };
        // 1 is older than the look-back, 3 is known, 6 and 7 differ, 8 has no time; of 4 and
        // 5, created in the same second, the higher id is the newer.
        assert_eq!(found(page.tickets.clone()).as_deref(), Some("5"));
        let without_5 = page.tickets.into_iter().filter(|t| t.id.0 != "5").collect();
        assert_eq!(found(without_5).as_deref(), Some("4"));
        assert_eq!(found(Vec::new()), None);
    }
}
