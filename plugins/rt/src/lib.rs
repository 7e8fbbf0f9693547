//! # Request Tracker 5 connector for Switchboard
//!
//! Files social conversations as RT tickets through REST 2.0 (`<web root>/REST/2.0/`) and
//! brings agents' replies, comments and status changes back to the hub.
//!
//! - **Requesters** are unprivileged RT users named (and addressed) after the social identity,
//!   `telegram-12345@social.invalid`; the hub's external id goes in the user's Comments.
//! - **Tickets** go into one queue (`queue`), with the customer as Requestor and their first
//!   message as the ticket's content. The hub's external id and idempotency key are kept in the
//!   ticket custom fields `Switchboard External ID` and `Switchboard Idempotency Key` when those
//!   apply to the queue; a create retried with the same key finds the first ticket. Without the
//!   key, a retry after an attempt whose outcome is unknown looks among the requester's newest
//!   tickets for the one that attempt may have filed. A private first message is a comment
//!   after the create, so a retry that finds the ticket posts that comment if it is missing.
//! - **Comments**: public ones are replies (`/correspond`), private ones comments (`/comment`).
//!   One RT account cannot write as the customer, so a customer's message is filed by the
//!   integration user under a line naming the customer. RT has no idempotency key for them: a
//!   retry after an attempt whose outcome is unknown first looks in the ticket's history for
//!   the message that attempt may have posted.
//! - **Changes** come from polling the `ticket-changes` stream: the queue's transactions after a
//!   cursor (TransactionSQL), `Correspond` as public comments, `Comment` as private ones, status
//!   and priority changes. The integration user's own transactions are echoes. RT has no
//!   outbound webhooks in core, so the plugin accepts none.
//!
//! Credentials never pass through the plugin's code: the host adds Basic auth
//! (`{username}`, `{password}`) or `Authorization: token {auth_token}` to every request.

mod account;
mod api;
mod changes;
mod look_back;
mod manifest;

use std::collections::HashMap;

use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    ChangeAuthor, CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket,
    PollPage, Requester, RequesterRequest, TicketRef, TicketState, TicketUpdate, WebhookOutcome,
    TICKET_CHANGES_STREAM,
};
use switchboard_plugin_sdk::ids::numeric_id;
use switchboard_plugin_sdk::prelude::*;

use crate::account::{Account, Order};
use crate::changes::{Cursor, Meaning};

/// Authors a poll looks up (whether they are staff) before it ends its page early.
const MAX_AUTHOR_LOOKUPS: usize = 5;

/// The Request Tracker connector.
pub struct Rt;

impl HelpdeskConnector for Rt {
    fn describe() -> Manifest {
        manifest::manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let account = Account::of(ctx)?;
        let identity = &request.identity;
        let person = Some(identity.external_id.trim())
            .filter(|id| !id.is_empty())
            .unwrap_or(request.external_id.trim());
        if person.is_empty() {
            return Err(ConnectorError::invalid(
                "identity.external-id",
                "the requester has no external id",
            ));
        }
        let login = api::requester_login(&identity.network, person);
        if let Some(user) = account.find_user(&login)? {
            return Ok(Requester {
                id: user.id.0,
                created: false,
            });
        }

        let real_name = identity.name_or(&request.external_id);
        let mut body = json!({
            "Name": login,
            "EmailAddress": login,
            "RealName": real_name,
            "Comments": format!(
                "Switchboard requester {} ({} user {person})",
                request.external_id, identity.network
            ),
            // An end user: no access to RT's staff interface.
            "Privileged": 0,
        });
        if let Some(handle) = identity.handle.as_deref().filter(|h| !h.is_empty()) {
            body["NickName"] = json!(handle);
        }
        let response = account.create_user(&body)?;
        if response.status == 201 {
            let id = match response.header("location").and_then(api::id_from_location) {
                Some(id) => id,
                None => account
                    .find_user(&login)?
                    .map(|user| user.id.0)
                    .ok_or_else(|| {
                        ConnectorError::transient(format!(
                            "RT created user {login} but does not find it yet"
                        ))
                    })?,
            };
            return Ok(Requester { id, created: true });
        }
        if response.status == 400 {
            // "Name in use" from a concurrent create, or the address already on another user.
            let existing = match account.find_user(&login)? {
                Some(user) => Some(user),
                None => account.find_user_by_email(&login)?,
            };
            if let Some(user) = existing {
                return Ok(Requester {
                    id: user.id.0,
                    created: false,
                });
            }
        }
        Err(api::rt_error(&response))
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let account = Account::of(ctx)?;
        let requester = account.known_user("requester-id", &ticket.requester_id)?;
        let queue = account.queue()?;
        let external_id_field = account::custom_field(&queue, &account.external_id_field);
        let idempotency_field = account::custom_field(&queue, &account.idempotency_field);

        let text = text::with_attachment_links(&ticket.body, &ticket.attachments);
        if text.trim().is_empty() {
            return Err(ConnectorError::invalid(
                "body",
                "the first message is empty",
            ));
        }
        let subject = if ticket.subject.trim().is_empty() {
            text::first_line(&ticket.body, 80)
        } else {
            ticket.subject.clone()
        };
        // A private first message becomes a comment after the create, so that RT neither
        // shows it as correspondence nor mails it.
        let first_comment =
            (ticket.visibility == Visibility::Private).then(|| api::attributed(&requester, &text));

        let key = ticket.idempotency_key.trim();
        let earlier = match idempotency_field.filter(|_| !key.is_empty()) {
            // The key is stored by the create itself, so any attempt's ticket holds it.
            Some(_) => account.ticket_with_key(key)?,
            None => match LookBack::of(ticket.unconfirmed.as_ref()) {
                Some(earlier) => account.earlier_ticket(
                    &requester,
                    &subject,
                    external_id_field.map(|field| (field, ticket.external_id.as_str())),
                    earlier,
                )?,
                None => None,
            },
        };
        if let Some(id) = earlier {
            // The attempt that filed it may have stopped between the create and the comment.
            if let Some(comment) = &first_comment {
                let ticket_id = numeric_id("ticket-id", &id)?;
                if account
                    .earlier_message(ticket_id, Visibility::Private, comment, None)?
                    .is_none()
                {
                    log_info!(
                        "an earlier attempt had created the ticket but not its first comment",
                        ticket_id = ticket_id
                    );
                    account.post_message(ticket_id, Visibility::Private, comment)?;
                }
            }
            return Ok(TicketRef {
                url: Some(account.ticket_url(&id)),
                id,
                created: false,
            });
        }
        let mut body = json!({
            "Queue": queue.name,
            "Subject": subject,
            "Requestor": requester.id.0,
        });
        if first_comment.is_none() {
            body["Content"] = json!(text);
            body["ContentType"] = json!("text/plain");
        }
        if let Some(status) = ticket.status {
            body["Status"] = json!(api::status_to_rt(status));
        }
        if let Some(priority) = ticket.priority {
            body["Priority"] = json!(api::priority_to_rt(priority));
        }
        let mut fields = serde_json::Map::new();
        if let Some(field) = external_id_field.filter(|_| !ticket.external_id.is_empty()) {
            fields.insert(field.to_string(), json!(ticket.external_id));
        }
        if let Some(field) = idempotency_field.filter(|_| !key.is_empty()) {
            fields.insert(field.to_string(), json!(key));
        }
        if !fields.is_empty() {
            body["CustomFields"] = serde_json::Value::Object(fields);
        }
        let id = account.create_ticket(&body)?;
        if let Some(comment) = &first_comment {
            account.post_message(numeric_id("ticket-id", &id)?, Visibility::Private, comment)?;
        }
        Ok(TicketRef {
            url: Some(account.ticket_url(&id)),
            id,
            created: true,
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let text = text::with_attachment_links(&comment.body, &comment.attachments);
        if text.trim().is_empty() {
            return Err(ConnectorError::invalid("body", "the comment is empty"));
        }
        let text = match &comment.author {
            // RT records every message under the account that posts it: name the customer.
            CommentAuthor::Requester(id) => {
                api::attributed(&account.known_user("author", id)?, &text)
            }
            CommentAuthor::Integration => text,
        };
        if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
            if let Some(id) =
                account.earlier_message(ticket_id, comment.visibility, &text, Some(earlier))?
            {
                log_info!(
                    "an earlier attempt had posted this message",
                    ticket_id = ticket_id,
                    transaction_id = id
                );
                return Ok(CommentRef { id });
            }
        }
        let id = account.post_message(ticket_id, comment.visibility, &text)?;
        Ok(CommentRef { id })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &update.ticket_id)?;
        if !update.add_tags.is_empty() || !update.remove_tags.is_empty() {
            // RT has no tags in core.
            log_debug!("tags ignored: RT tickets have none", ticket_id = ticket_id);
        }
        let mut changes = serde_json::Map::new();
        if let Some(status) = update.status {
            changes.insert("Status".into(), json!(api::status_to_rt(status)));
        }
        if let Some(priority) = update.priority {
            changes.insert("Priority".into(), json!(api::priority_to_rt(priority)));
        }
        if changes.is_empty() {
            return account.ticket_state(&account.ticket(ticket_id)?);
        }
        let said = account.put_ticket(ticket_id, changes)?.join("; ");
        // RT answers 200 even when it refused a change (an invalid status, a lifecycle
        // transition it forbids): compare what it holds now.
        let ticket = account.ticket(ticket_id)?;
        if let Some(status) = update.status {
            let wanted = api::status_to_rt(status);
            if !ticket.status.eq_ignore_ascii_case(wanted) {
                return Err(ConnectorError::invalid(
                    "status",
                    format!(
                        "RT kept ticket {ticket_id} {} instead of {wanted}: {said}",
                        ticket.status
                    ),
                ));
            }
        }
        if let Some(priority) = update.priority {
            if ticket.priority() != Some(priority) {
                return Err(ConnectorError::invalid(
                    "priority",
                    format!("RT did not set the priority of ticket {ticket_id}: {said}"),
                ));
            }
        }
        account.ticket_state(&ticket)
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", ticket_id)?;
        account.ticket_state(&account.ticket(ticket_id)?)
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        paging::check_stream("RT", stream, &[TICKET_CHANGES_STREAM])?;
        let account = Account::of(ctx)?;
        let mut after = match cursor.as_deref() {
            Some(cursor) => paging::decode_cursor::<Cursor>(cursor)?.after,
            None => account.initial_cursor()?,
        };
        let (page, server_now) = account.transactions(
            &changes::transactions_query(&account.queue, after),
            Order::Oldest,
            1,
        )?;
        // The cutoff is on RT's own clock.
        let settled = &page.items
            [..changes::settled_len(&page.items, server_now.saturating_sub(changes::SETTLE_MS))];

        let meanings: Vec<Option<Meaning>> = settled.iter().map(changes::meaning).collect();
        let ticket_ids: Vec<&str> = settled
            .iter()
            .zip(&meanings)
            .filter(|(_, meaning)| meaning.is_some())
            .map(|(txn, _)| txn.object_id.0.as_str())
            .collect();
        let tickets = account.hub_tickets(&ticket_ids)?;

        // Who is staff takes a request per author; past the budget, the page ends early and
        // the rest comes with the next poll.
        let mut agents: HashMap<String, bool> = HashMap::new();
        let mut wanted = Vec::new();
        let mut processed = settled.len();
        for (index, (txn, meaning)) in settled.iter().zip(meanings).enumerate() {
            let (Some(meaning), Some(ticket)) = (meaning, tickets.get(&txn.object_id.0)) else {
                continue;
            };
            let is_echo = changes::is_echo(txn, &account.username);
            let author = match txn.creator.as_ref() {
                // RT's scrips (opening a ticket on a reply) act on nobody's behalf.
                Some(creator) if !changes::is_system(txn) => {
                    let is_agent = if is_echo {
                        true
                    } else if let Some(&known) = agents.get(&creator.id.0) {
                        known
                    } else if agents.len() >= MAX_AUTHOR_LOOKUPS {
                        processed = index;
                        break;
                    } else {
                        let agent = account.is_agent(&creator.id.0);
                        agents.insert(creator.id.0.clone(), agent);
                        agent
                    };
                    Some(ChangeAuthor {
                        id: creator.id.0.clone(),
                        name: creator
                            .real_name
                            .clone()
                            .filter(|n| !n.is_empty())
                            .or_else(|| creator.name.clone()),
                        is_agent,
                    })
                }
                _ => None,
            };
            wanted.push((txn, meaning, ticket, author, is_echo));
        }

        let comment_ids: Vec<String> = wanted
            .iter()
            .filter(|(_, meaning, ..)| matches!(meaning, Meaning::Comment(_)))
            .map(|(txn, ..)| txn.id.0.clone())
            .collect();
        let mut messages = account.messages(&comment_ids)?;
        let changes: Vec<_> = wanted
            .into_iter()
            .map(|(txn, meaning, ticket, author, is_echo)| {
                let message = messages.remove(&txn.id.0).unwrap_or_default();
                changes::ticket_change(
                    txn,
                    meaning,
                    ticket.custom_field(&account.external_id_field),
                    author,
                    is_echo,
                    message,
                )
            })
            .collect();
        if let Some(last) = processed.checked_sub(1).map(|i| &settled[i]) {
            after = last.id.0.parse().map_err(|_| {
                ConnectorError::fatal(format!("RT sent a transaction id `{}`", last.id))
            })?;
        }
        let stopped_early = processed < settled.len();
        let has_more =
            stopped_early || (settled.len() == page.items.len() && page.next_page.is_some());
        log_debug!(
            "polled RT transactions",
            read = page.items.len(),
            settled = settled.len(),
            processed = processed,
            changes = changes.len(),
            after = after
        );
        Ok(PollPage {
            changes,
            next_cursor: Some(paging::encode_cursor(&Cursor { after })),
            has_more,
        })
    }

    fn handle_webhook(_ctx: &Context, _request: WebhookRequest) -> Result<WebhookOutcome> {
        Err(ConnectorError::fatal(
            "RT has no outbound webhooks in core; this connector reads changes by polling the \
             `ticket-changes` stream",
        ))
    }
}

switchboard_plugin_sdk::export_helpdesk!(Rt);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::new(
            "i",
            [
                ("base_url", "http://127.0.0.1:8080/"),
                ("username", "switchboard"),
                ("password", "pw"),
            ],
        )
    }

    #[test]
    fn webhooks_are_refused() {
        let request = WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert!(matches!(
            Rt::handle_webhook(&ctx(), request),
            Err(ConnectorError::Fatal(m)) if m.contains("no outbound webhooks")
        ));
    }
}
