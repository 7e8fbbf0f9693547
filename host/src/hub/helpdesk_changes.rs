//! The helpdesk mapper: a change on a ticket. Agents' public replies go to the customer (split
//! to the network's text limit), internal notes are only recorded, status changes move the
//! ticket on.

use super::outbox::{to_json, SendMessagePayload};
use super::processor::{visibility_name, Lookups, Outcome};
use super::split::split;
use super::{new_id, LinkSettings};
use crate::runtime::bounds::MAX_REPLY_PARTS;
use crate::runtime::latest::{ChangeKind, TicketChange, TicketPriority, TicketStatus, Visibility};
use crate::store::{InboundEvent, MessageRow, NewOutbox, StoreError, Tx};

/// A change on a ticket: agents' public replies go to the customer, notes are only recorded,
/// status changes move the ticket on.
pub(super) async fn helpdesk_change(
    tx: &mut Tx,
    lookups: &mut Lookups,
    event: &InboundEvent,
    change: &TicketChange,
    now: i64,
) -> Result<Outcome, StoreError> {
    let helpdesk = &event.installation_id;
    let Some(ticket) = tx
        .ticket_by_external_id(helpdesk, &change.ticket_id)
        .await?
    else {
        // Either a ticket the hub did not make, or one whose create the hub has not recorded
        // yet (its answer was lost in a crash and the retry is still waiting). Dropping the
        // change would lose an agent's reply for good, since the change id is deduplicated;
        // it waits for the ticket instead.
        tracing::debug!(ticket = %change.ticket_id, "change about a ticket the hub has not recorded; held for it");
        return Ok(Outcome::held_for_ticket(&change.ticket_id));
    };
    let Some(conversation) = tx.get_conversation_tx(&ticket.conversation_id).await? else {
        return Ok(Outcome::skip("unknown-conversation"));
    };
    tracing::Span::current().record("conversation", conversation.id.as_str());
    match &change.kind {
        ChangeKind::Comment(comment) => {
            if change.is_echo || tx.is_known_id(helpdesk, &comment.comment_id).await? {
                return Ok(Outcome::in_conversation("echo", &conversation.id, false));
            }
            // Comments by end users are the customer's own messages, filed by the hub.
            if !change.author.as_ref().is_some_and(|a| a.is_agent) {
                return Ok(Outcome::in_conversation(
                    "customer-comment",
                    &conversation.id,
                    false,
                ));
            }
            let author_name = change.author.as_ref().and_then(|a| a.name.clone());
            let mut message = MessageRow {
                id: new_id(),
                conversation_id: conversation.id.clone(),
                ticket_id: Some(ticket.id.clone()),
                direction: "outbound".into(),
                visibility: visibility_name(comment.visibility).into(),
                author_name,
                text: comment.body.clone(),
                attachments_json: serde_json::to_string(&comment.attachments)
                    .unwrap_or_else(|_| "[]".into()),
                social_installation_id: conversation.social_installation_id.clone(),
                social_message_id: None,
                helpdesk_installation_id: helpdesk.clone(),
                helpdesk_comment_id: Some(comment.comment_id.clone()),
                state: "pending".into(),
                parts: 1,
                created_at: now,
                delivered_at: None,
            };
            if comment.visibility == Visibility::Private {
                // Internal notes are kept for the record and never leave the helpdesk.
                message.direction = "note".into();
                message.state = "recorded".into();
                tx.insert_message(&message).await?;
                return Ok(Outcome::in_conversation("note", &conversation.id, false));
            }
            let text = comment.body.trim();
            if text.is_empty() {
                message.state = "skipped".into();
                tx.insert_message(&message).await?;
                return Ok(Outcome::in_conversation(
                    "empty-reply",
                    &conversation.id,
                    false,
                ));
            }
            let private_replies = lookups
                .link_for_social(tx, &conversation.social_installation_id)
                .await?
                .is_some_and(|link| LinkSettings::of(&link).private_replies);
            let answer = super::care::answer_visibility(&conversation.visibility, private_replies)
                .to_string();
            let limit = lookups
                .text_limit(tx, &conversation.social_installation_id, &answer)
                .await?;
            let split = match limit {
                Some((max, unit)) => split(text, max, unit, MAX_REPLY_PARTS),
                None => Ok(vec![text.to_string()]),
            };
            let parts = match split {
                Ok(parts) => parts,
                Err(refused) => {
                    // Kept whole, marked dead, and logged: never cut short or sent in part.
                    tracing::warn!(comment = %comment.comment_id, error = %refused, "reply not sent");
                    message.state = "dead".into();
                    tx.insert_message(&message).await?;
                    return Ok(Outcome::in_conversation(
                        format!("reply-too-long: {refused}"),
                        &conversation.id,
                        false,
                    ));
                }
            };
            message.parts = parts.len() as i64;
            if let Err(refused) = super::care::check_reply_in(
                tx,
                &conversation,
                &answer,
                comment.attachments.len(),
                parts.len(),
                now,
            )
            .await?
            {
                // Decided here, from the manifest, rather than learned from the network's
                // refusal: kept as a dead letter that says why, never sent in part.
                tracing::warn!(comment = %comment.comment_id, error = %refused, "reply refused before sending");
                message.state = "dead".into();
                if !tx.insert_message(&message).await? {
                    return Ok(Outcome::in_conversation(
                        "duplicate",
                        &conversation.id,
                        false,
                    ));
                }
                let payload = SendMessagePayload {
                    part: 1,
                    parts: 1,
                    text: text.to_string(),
                    attachments: comment.attachments.clone(),
                    visibility: Some(answer.clone()),
                };
                tx.insert_dead_outbox(
                    &NewOutbox {
                        kind: "send-message",
                        installation_id: conversation.social_installation_id.clone(),
                        conversation_id: conversation.id.clone(),
                        ticket_id: Some(ticket.id.clone()),
                        message_id: Some(message.id.clone()),
                        idempotency_key: format!("send:{}:1", message.id),
                        payload: to_json(&payload),
                        now,
                    },
                    &format!("refused before sending: {refused}"),
                )
                .await?;
                return Ok(Outcome::in_conversation(
                    format!("reply-refused: {refused}"),
                    &conversation.id,
                    false,
                ));
            }
            if !tx.insert_message(&message).await? {
                return Ok(Outcome::in_conversation(
                    "duplicate",
                    &conversation.id,
                    false,
                ));
            }
            let count = parts.len() as u32;
            for (index, part) in parts.into_iter().enumerate() {
                let payload = SendMessagePayload {
                    part: index as u32 + 1,
                    parts: count,
                    text: part,
                    // Files travel with the first part only.
                    attachments: if index == 0 {
                        comment.attachments.clone()
                    } else {
                        Vec::new()
                    },
                    visibility: Some(answer.clone()),
                };
                tx.insert_outbox(&NewOutbox {
                    kind: "send-message",
                    installation_id: conversation.social_installation_id.clone(),
                    conversation_id: conversation.id.clone(),
                    ticket_id: Some(ticket.id.clone()),
                    message_id: Some(message.id.clone()),
                    idempotency_key: format!("send:{}:{}", message.id, index + 1),
                    payload: to_json(&payload),
                    now,
                })
                .await?;
            }
            Ok(Outcome::in_conversation(
                format!("reply in {count} part(s)"),
                &conversation.id,
                true,
            ))
        }
        ChangeKind::Status(status) => {
            let status = status_name(*status);
            let at = change.at as i64;
            if at < ticket.status_at {
                return Ok(Outcome::in_conversation(
                    "stale-status",
                    &conversation.id,
                    false,
                ));
            }
            let is_current = if is_ended(status) {
                false
            } else if ticket.is_current {
                true
            } else {
                // Reopened by an agent: current again if it is the newest and no other is.
                tx.current_ticket(&conversation.id).await?.is_none()
                    && tx
                        .latest_ticket(&conversation.id)
                        .await?
                        .is_some_and(|t| t.id == ticket.id)
            };
            tx.update_ticket_state(&ticket.id, status, at, is_current, now)
                .await?;
            Ok(Outcome::in_conversation(
                format!("status {status}"),
                &conversation.id,
                false,
            ))
        }
        ChangeKind::Priority(_) => Ok(Outcome::in_conversation(
            "priority-ignored",
            &conversation.id,
            false,
        )),
    }
}

/// Solved and closed tickets no longer take the conversation's new messages.
pub(crate) fn is_ended(status: &str) -> bool {
    matches!(status, "solved" | "closed")
}

pub(crate) fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::OnHold => "on-hold",
        TicketStatus::Solved => "solved",
        TicketStatus::Closed => "closed",
    }
}

/// A link's priority setting as the contract's enum.
pub(crate) fn priority(name: &str) -> Option<TicketPriority> {
    match name {
        "low" => Some(TicketPriority::Low),
        "normal" => Some(TicketPriority::Normal),
        "high" => Some(TicketPriority::High),
        "urgent" => Some(TicketPriority::Urgent),
        _ => None,
    }
}
