//! The social mapper: a customer's message becomes a conversation's message, filed in its
//! current ticket or in a new one, with the outbox row that carries it to the helpdesk.

use super::helpdesk_changes::is_ended;
use super::outbox::{to_json, AddCommentPayload, CreateTicketPayload};
use super::processor::{visibility_name, Lookups, Outcome};
use super::{new_id, LinkSettings};
use crate::runtime::latest::{Attachment, MessageKind, SocialEvent};
use crate::store::{
    ConversationRow, IdentityInput, InboundEvent, MessageRow, NewOutbox, StoreError, TicketRow, Tx,
};

/// A customer's message: into the conversation's current ticket, or a new one.
pub(super) async fn social_event(
    tx: &mut Tx,
    lookups: &mut Lookups,
    event: &InboundEvent,
    ev: &SocialEvent,
    now: i64,
) -> Result<Outcome, StoreError> {
    let installation = &event.installation_id;
    if ev.is_echo {
        return Ok(Outcome::skip("echo"));
    }
    if tx.is_known_id(installation, &ev.message_id).await? {
        return Ok(Outcome::skip("echo-or-duplicate"));
    }
    let Some(link) = lookups.link_for_social(tx, installation).await? else {
        // Logged once per transaction with a count (see `Lookups::log_unlinked`): a page of
        // thousands of events must not write thousands of lines.
        lookups
            .unlinked
            .entry(installation.clone())
            .or_insert_with(|| (0, ev.message_id.clone()))
            .0 += 1;
        return Ok(Outcome::skip("unlinked"));
    };
    let settings = LinkSettings::of(&link);
    let helpdesk = &link.helpdesk_installation_id;

    let author = &ev.author;
    let contact_id = tx
        .upsert_identity(
            &IdentityInput {
                network: &author.network,
                external_id: &author.external_id,
                handle: author.handle.as_deref(),
                display_name: author.display_name.as_deref(),
            },
            &new_id(),
            now,
        )
        .await?;
    let existing = tx.find_conversation(installation, &ev.thread_id).await?;
    let is_new = existing.is_none();
    let conversation = match existing {
        Some(conversation) => conversation,
        None => {
            let row = ConversationRow {
                id: new_id(),
                social_installation_id: installation.clone(),
                thread_id: ev.thread_id.clone(),
                contact_id: contact_id.clone(),
                channel: author.network.clone(),
                message_kind: kind_name(ev.kind).to_string(),
                visibility: visibility_name(ev.visibility).to_string(),
                reply_handle: ev.reply_handle.clone(),
                last_inbound_at: Some(ev.created_at as i64),
                created_at: now,
                updated_at: now,
            };
            tx.insert_conversation(&row).await?;
            row
        }
    };
    tracing::Span::current().record("conversation", conversation.id.as_str());
    // A new conversation was just written with this message's time and handle, and has no
    // ticket yet.
    let mut ticket = None;
    if !is_new {
        tx.touch_conversation(
            &conversation.id,
            ev.created_at as i64,
            ev.reply_handle.as_deref(),
            now,
        )
        .await?;
        // Which ticket: the current open one; else the last solved one when the link
        // reopens; else a new one.
        ticket = tx.current_ticket(&conversation.id).await?;
    }
    if let Some(current) = &ticket {
        if current.helpdesk_installation_id != *helpdesk || is_ended(&current.status) {
            // Linked to another helpdesk since, or ended without the flag being cleared.
            tx.update_ticket_state(&current.id, &current.status, current.status_at, false, now)
                .await?;
            ticket = None;
        }
    }
    if !is_new && ticket.is_none() && settings.reopen_solved {
        if let Some(last) = tx.latest_ticket(&conversation.id).await? {
            if last.status == "solved" && last.helpdesk_installation_id == *helpdesk {
                // The helpdesk reopens a solved ticket when the requester comments.
                tx.update_ticket_state(&last.id, "open", last.status_at, true, now)
                    .await?;
                ticket = Some(last);
            }
        }
    }
    let creating = ticket.is_none();
    let ticket = match ticket {
        Some(ticket) => ticket,
        None => {
            let row = new_ticket_row(&conversation.id, helpdesk, now);
            tx.insert_ticket(&row).await?;
            row
        }
    };

    let message = MessageRow {
        id: new_id(),
        conversation_id: conversation.id.clone(),
        ticket_id: Some(ticket.id.clone()),
        direction: "inbound".into(),
        visibility: visibility_name(ev.visibility).into(),
        author_name: author
            .display_name
            .clone()
            .or_else(|| author.handle.clone()),
        text: ev.text.clone(),
        attachments_json: serde_json::to_string(&ev.attachments).unwrap_or_else(|_| "[]".into()),
        social_installation_id: installation.clone(),
        social_message_id: Some(ev.message_id.clone()),
        helpdesk_installation_id: helpdesk.clone(),
        helpdesk_comment_id: None,
        state: "pending".into(),
        parts: 1,
        created_at: now,
        delivered_at: None,
    };
    if !tx.insert_message(&message).await? {
        return Ok(Outcome::in_conversation(
            "duplicate",
            &conversation.id,
            false,
        ));
    }
    super::care::apply_event_ownership(tx, installation, ev).await?;
    let context = super::care::MessageContext::of(ev);
    if let Some(context) = &context {
        tx.set_message_context(&message.id, &to_json(context))
            .await?;
    }

    let (kind, key, payload) = if creating {
        let mut payload = CreateTicketPayload::first_message(
            &conversation,
            &settings,
            &ev.text,
            author.display_name.as_deref().or(author.handle.as_deref()),
            ev.attachments.clone(),
            &contact_id,
        );
        payload.context = context;
        (
            "create-ticket",
            format!("ticket:{}", ticket.id),
            to_json(&payload),
        )
    } else {
        let payload = AddCommentPayload {
            body: ev.text.clone(),
            public: true,
            attachments: ev.attachments.clone(),
            contact_id: contact_id.clone(),
            channel: conversation.channel.clone(),
        };
        (
            "add-comment",
            format!("comment:{}", message.id),
            to_json(&payload),
        )
    };
    tx.insert_outbox(&NewOutbox {
        kind,
        installation_id: helpdesk.clone(),
        conversation_id: conversation.id.clone(),
        ticket_id: Some(ticket.id.clone()),
        message_id: Some(message.id.clone()),
        idempotency_key: key,
        payload,
        now,
    })
    .await?;
    let label = if creating {
        format!("new-ticket {}", ticket.id)
    } else {
        format!("comment {}", ticket.id)
    };
    Ok(Outcome::in_conversation(label, &conversation.id, true))
}

/// A conversation's new ticket, not yet filed in the helpdesk.
pub(crate) fn new_ticket_row(conversation_id: &str, helpdesk: &str, now: i64) -> TicketRow {
    TicketRow {
        id: new_id(),
        conversation_id: conversation_id.to_string(),
        helpdesk_installation_id: helpdesk.to_string(),
        external_id: None,
        url: None,
        status: "new".into(),
        // Only the helpdesk's own times order status changes; 0 = none seen yet.
        status_at: 0,
        is_current: true,
        created_at: now,
        updated_at: now,
    }
}

impl CreateTicketPayload {
    /// The ticket a customer's message opens.
    pub(crate) fn first_message(
        conversation: &ConversationRow,
        settings: &LinkSettings,
        text: &str,
        author: Option<&str>,
        attachments: Vec<Attachment>,
        contact_id: &str,
    ) -> Self {
        let mut tags = vec![conversation.channel.clone()];
        tags.extend(settings.tags.iter().cloned());
        CreateTicketPayload {
            subject: subject_of(text, author),
            body: text.to_string(),
            // A customer's message is a public comment on the ticket, whatever the network.
            public: true,
            attachments,
            tags,
            priority: settings.priority.clone(),
            channel: conversation.channel.clone(),
            external_id: conversation.id.clone(),
            contact_id: contact_id.to_string(),
            context: None,
        }
    }
}

/// The ticket subject: the message's first non-empty line, shortened to 80 characters.
pub(crate) fn subject_of(text: &str, author: Option<&str>) -> String {
    const MAX: usize = 80;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        return match author {
            Some(name) => format!("Message from {name}"),
            None => "New message".to_string(),
        };
    }
    if line.chars().count() <= MAX {
        return line.to_string();
    }
    let cut: String = line.chars().take(MAX - 1).collect();
    format!("{}…", cut.trim_end())
}

pub(crate) fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::DirectMessage => "direct-message",
        MessageKind::Post => "post",
        MessageKind::Comment => "comment",
    }
}

pub(crate) fn kind_from_name(name: &str) -> MessageKind {
    match name {
        "post" => MessageKind::Post,
        "comment" => MessageKind::Comment,
        _ => MessageKind::DirectMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(subject_of("\n  Order late \nmore", None), "Order late");
        assert_eq!(subject_of("", Some("Aiko")), "Message from Aiko");
        let long = "x".repeat(200);
        let subject = subject_of(&long, None);
        assert_eq!(subject.chars().count(), 80);
        assert!(subject.ends_with('…'));
    }
}
