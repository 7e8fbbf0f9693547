//! Recognizing what an earlier attempt whose outcome is unknown did. Without the idempotency
//! custom field RT keeps no key, so the plugin lists the requester's newest tickets or the
//! ticket's newest messages and picks the one that attempt may have made. Nothing here calls
//! the host: `account.rs` lists, this decides.

use switchboard_plugin_sdk::helpdesk::LookBack;
use switchboard_plugin_sdk::text::same_text;

use crate::api::Ticket;

/// The longest subject RT keeps, in bytes (`Tickets.Subject` is `varchar(200)`).
const SUBJECT_MAX_BYTES: usize = 200;

/// Whether a ticket's subject as RT keeps it (`kept`) is the subject the plugin `sent`. RT
/// drops the line feeds from a new ticket's subject and cuts it to 200 bytes on a character
/// boundary; white space at the ends is not compared.
pub fn is_same_subject(sent: &str, kept: &str) -> bool {
    let mut stored: String = sent.chars().filter(|&c| c != '\n').collect();
    if stored.len() > SUBJECT_MAX_BYTES {
        let mut end = SUBJECT_MAX_BYTES;
        while !stored.is_char_boundary(end) {
            end -= 1;
        }
        stored.truncate(end);
    }
    stored.trim() == kept.trim()
}

/// Whether `ticket` (listed newest first, created at `created_ms`) can be what an earlier
/// attempt filed with `subject` and, where the external-id field applies, `external_id`
/// (`(field, value)`), and the look-back takes it.
pub fn is_earlier_ticket(
    ticket: &Ticket,
    created_ms: u64,
    subject: &str,
    external_id: Option<(&str, &str)>,
    earlier: LookBack<'_>,
) -> bool {
    let same_subject = ticket
        .subject
        .as_deref()
        .is_some_and(|kept| is_same_subject(subject, kept));
    let same_external_id = external_id.is_none_or(|(field, value)| {
        ticket.custom_field(field).as_deref() == Some(value).filter(|v| !v.is_empty())
    });
    same_subject && same_external_id && earlier.may_be(&ticket.id.0, created_ms)
}

/// Whether a message's text as RT keeps it (`kept`, read as `changes::message_text` does) is
/// the text the plugin `sent`: RT changes line endings and trailing white space.
pub fn is_same_message(sent: &str, kept: &str) -> bool {
    same_text(sent, kept)
}

#[cfg(test)]
mod tests {
    use switchboard_plugin_sdk::helpdesk::UnconfirmedAttempt;

    use super::*;

    #[test]
    fn subjects_compare_as_rt_keeps_them() {
        assert!(is_same_subject("Order late", "Order late"));
        assert!(is_same_subject(" Order late ", "Order late"));
        assert!(is_same_subject("Order late\nsecond", "Order latesecond"));
        assert!(!is_same_subject("Order late", "order late"));
        assert!(!is_same_subject("Order late", "Order late again"));
        // 280 bytes in, 199 kept: the 200th byte is inside an `é`.
        let sent = format!("  Ünïcødé subject\r\nline two \t {}tail  ", "é".repeat(120));
        let kept = format!("  Ünïcødé subject\rline two \t {}", "é".repeat(83));
        assert_eq!(kept.len(), 199);
        assert!(is_same_subject(&sent, &kept));
        assert!(!is_same_subject(&sent, &kept[..kept.len() - 2]));
    }

    #[test]
    fn messages_compare_as_rt_keeps_them() {
        let sent = "Aiko Sato <telegram-5001@social.invalid> wrote:\n\nAny news?\n";
        assert!(is_same_message(
            sent,
            "Aiko Sato <telegram-5001@social.invalid> wrote:\r\n\r\nAny news?"
        ));
        assert!(!is_same_message(sent, "Any news?"));
        assert!(!is_same_message("Any news?", "Any news?!"));
    }

    #[test]
    fn an_earlier_ticket_has_the_subject_and_external_id_and_is_new() {
        let ticket: Ticket = serde_json::from_value(serde_json::json!({
            "id": 12, "Subject": "Order late", "Created": "2026-11-25T00:37:04Z",
            "CustomFields": [{"name": "Switchboard External ID", "values": ["conv-1"]}]
        }))
        .expect("ticket");
        let created = ticket.created_ms().expect("created");
        let attempt = UnconfirmedAttempt {
            started_at: created - 1000,
            known_ids: vec!["11".into()],
        };
        let earlier = LookBack::of(Some(&attempt)).expect("unconfirmed");
        let field = Some(("Switchboard External ID", "conv-1"));
        assert!(is_earlier_ticket(
            &ticket,
            created,
            "Order late",
            field,
            earlier
        ));
        assert!(is_earlier_ticket(
            &ticket,
            created,
            "Order late",
            None,
            earlier
        ));
        assert!(!is_earlier_ticket(
            &ticket, created, "Other", field, earlier
        ));
        assert!(!is_earlier_ticket(
            &ticket,
            created,
            "Order late",
            Some(("Switchboard External ID", "conv-2")),
            earlier
        ));
        let known = UnconfirmedAttempt {
            started_at: created - 1000,
            known_ids: vec!["12".into()],
        };
        let earlier = LookBack::of(Some(&known)).expect("unconfirmed");
        assert!(!is_earlier_ticket(
            &ticket,
            created,
            "Order late",
            field,
            earlier
        ));
    }
}
