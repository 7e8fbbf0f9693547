//! # Freshdesk connector for Switchboard
//!
//! Files social conversations as Freshdesk tickets and brings agents' replies, private notes
//! and status changes back to the hub.
//!
//! - **Requesters** are contacts keyed by `unique_external_id` (`telegram:5001`), looked up
//!   with `GET /contacts?unique_external_id=` and created when missing. X users also get
//!   `twitter_id` (their numeric id); when a contact from Freshdesk's own X channel already
//!   holds it, that contact is used. A create that loses a race (409) takes the winner.
//! - **Tickets** are created with a flat body: the first message as the description, tagged
//!   `switchboard` and with the channel, `source` from the settings (Chat by default). Freshdesk
//!   tickets have no external id: the hub's goes into the custom text field named by
//!   `external_id_field`, when the admin created one.
//! - **Retries**: Freshdesk has no idempotency key. When the hub says an earlier attempt may
//!   have taken effect (`unconfirmed`), the plugin first looks for what it filed: the
//!   requester's newest tickets (`GET /tickets?requester_id=`, read from the database, unlike
//!   search) with the same subject, text and external id, or the ticket's conversations with
//!   the same author, kind and text; [`LookBack`] says which are recent and not the hub's.
//! - **Comments**: a customer's message is a note with `incoming: true` written as the
//!   requester; the hub's public replies go through `/reply`, its private notes through
//!   `/notes`.
//! - **Changes** come from the `ticket-changes` stream (the ticket list ordered by
//!   `updated_at`, then each changed ticket's conversations) and from automation-rule
//!   webhooks, which only name a ticket: it is then read from the API, so both give the same
//!   change ids. Conversations by the API key's agent (`GET /agents/me`) are echoes.
//!
//! Credentials never pass through the plugin's code: the host adds Basic auth (`{api_key}`,
//! `X`) to every request to the account.

mod account;
mod api;
mod changes;
mod look_back;
mod manifest;

use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket, PollPage,
    Requester, RequesterRequest, TicketRef, TicketState, TicketUpdate, WebhookOutcome,
    TICKET_CHANGES_STREAM,
};
use switchboard_plugin_sdk::ids::numeric_id;
use switchboard_plugin_sdk::prelude::*;

use crate::account::{Account, ChangeReader};
use crate::api::{clean_tags, is_hub_ticket, Contact, ErrorBody, PollCursor, Ticket, FRESHDESK};
use crate::look_back::ExpectedConversation;

/// The Freshdesk connector.
pub struct Freshdesk;

impl HelpdeskConnector for Freshdesk {
    fn describe() -> Manifest {
        manifest::manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let account = Account::of(ctx)?;
        let external_id = request.external_id.trim();
        if external_id.is_empty() {
            return Err(ConnectorError::invalid("external-id", "is empty"));
        }
        if let Some(id) = account.contact_by_external_id(external_id)? {
            return Ok(Requester {
                id: id.to_string(),
                created: false,
            });
        }
        let identity = &request.identity;
        let twitter_id = api::twitter_id(identity);
        let mut body = json!({
            "name": api::contact_name(identity, external_id),
            "unique_external_id": external_id,
        });
        if let Some(twitter_id) = &twitter_id {
            body["twitter_id"] = json!(twitter_id);
        }
        let response = account.create_contact(&body)?;
        if response.is_success() {
            let contact: Contact = FRESHDESK.parse(&response, "contact")?;
            return Ok(Requester {
                id: contact.id.to_string(),
                created: true,
            });
        }
        if response.status != 409 {
            return Err(api::freshdesk_error(&response));
        }
        let errors = ErrorBody::of(&response);
        let Some(duplicate) = errors.duplicate() else {
            return Err(api::freshdesk_error(&response));
        };
        let id = match duplicate.field.as_str() {
            // Created meanwhile by another call for the same person.
            "unique_external_id" => match duplicate.holder() {
                Some(id) => id,
                None => account
                    .contact_by_external_id(external_id)?
                    .ok_or_else(|| {
                        ConnectorError::fatal(format!(
                            "Freshdesk says a contact has unique_external_id `{external_id}` but \
                         does not list it: it is probably deleted or blocked"
                        ))
                    })?,
            },
            // The person is already known from Freshdesk's own X channel.
            "twitter_id" => {
                let twitter_id = twitter_id.unwrap_or_default();
                account.adopt_twitter_contact(duplicate.holder(), &twitter_id, external_id)?
            }
            _ => return Err(api::freshdesk_error(&response)),
        };
        Ok(Requester {
            id: id.to_string(),
            created: false,
        })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let account = Account::of(ctx)?;
        let body = api::new_ticket_body(
            &ticket,
            account.source,
            &account.statuses,
            account.external_id_field.as_deref(),
        )?;
        // The description only says where a private message is; the text goes in a private
        // note by the customer.
        let private_note = match ticket.visibility {
            Visibility::Private => Some(api::first_note(&ticket)?),
            Visibility::Public => None,
        };

        // Freshdesk takes no idempotency key: when an earlier attempt may have filed this
        // ticket, look for it among the requester's newest tickets before filing it again.
        if let Some(earlier) = LookBack::of(ticket.unconfirmed.as_ref()) {
            if let Some(id) = account.earlier_ticket(&body, earlier)? {
                log_info!("an earlier attempt had created the ticket", ticket_id = id);
                // That attempt may have stopped between the ticket and its note.
                if let Some((note, expected)) = &private_note {
                    if account.earlier_conversation(id, expected, None)?.is_none() {
                        account.post_conversation(id, "notes", note)?;
                    }
                }
                return Ok(ticket_ref(&account, id, false));
            }
        }

        let created = account.create_ticket(&body)?;
        if let Some((note, _)) = &private_note {
            account.post_conversation(created.id, "notes", note)?;
        }
        Ok(ticket_ref(&account, created.id, true))
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let body = api::html_body(&comment.body, &comment.attachments);
        let public = comment.visibility == Visibility::Public;
        let (endpoint, payload, requester) = match &comment.author {
            // The customer's message, filed as coming from outside.
            CommentAuthor::Requester(id) => {
                let user_id = numeric_id("author", id)?;
                (
                    "notes",
                    json!({"body": body, "private": !public, "incoming": true, "user_id": user_id}),
                    Some(user_id),
                )
            }
            // The hub's own: a reply the customer gets, or a private note.
            CommentAuthor::Integration if public => ("reply", json!({"body": body}), None),
            CommentAuthor::Integration => ("notes", json!({"body": body, "private": true}), None),
        };

        // No idempotency key for conversations either: when an earlier attempt may have added
        // this one, look for it on the ticket first.
        if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
            let user_id = match requester {
                Some(id) => id,
                // Replies and notes without `user_id` are the API key's agent's.
                None => account.integration_agent_id()?,
            };
            let expected = ExpectedConversation {
                user_id,
                private: !public,
                incoming: requester.is_some(),
                source: if endpoint == "reply" {
                    look_back::SOURCE_REPLY
                } else {
                    look_back::SOURCE_NOTE
                },
                text: text::html_to_text(&body),
            };
            if let Some(id) = account.earlier_conversation(ticket_id, &expected, Some(earlier))? {
                log_info!(
                    "an earlier attempt had added the comment",
                    ticket_id = ticket_id,
                    conversation_id = id
                );
                return Ok(CommentRef { id: id.to_string() });
            }
        }

        let id = account.post_conversation(ticket_id, endpoint, &payload)?;
        Ok(CommentRef { id: id.to_string() })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &update.ticket_id)?;
        let mut changes = serde_json::Map::new();
        if let Some(status) = update.status {
            changes.insert("status".into(), json!(account.statuses.write(status)));
        }
        if let Some(priority) = update.priority {
            changes.insert(
                "priority".into(),
                json!(api::priority_to_freshdesk(priority)),
            );
        }
        let add = clean_tags(update.add_tags.iter().map(String::as_str));
        let remove = clean_tags(update.remove_tags.iter().map(String::as_str));
        if !add.is_empty() || !remove.is_empty() {
            // Freshdesk replaces the whole tag list, so start from the current one.
            let current = account.ticket(ticket_id)?.tags.unwrap_or_default();
            let tags = api::merged_tags(&current, &add, &remove);
            if tags != current {
                changes.insert("tags".into(), json!(tags));
            }
        }
        if changes.is_empty() {
            return Self::get_ticket(ctx, &update.ticket_id);
        }
        let ticket = account.update_ticket(ticket_id, &changes)?;
        Ok(ticket.to_state(&account.statuses, account.external_id_field.as_deref()))
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let ticket = account.ticket(numeric_id("ticket-id", ticket_id)?)?;
        Ok(ticket.to_state(&account.statuses, account.external_id_field.as_deref()))
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        paging::check_stream("Freshdesk", stream, &[TICKET_CHANGES_STREAM])?;
        let account = Account::of(ctx)?;
        let cursor = match cursor.as_deref() {
            Some(raw) => paging::decode_cursor::<PollCursor>(raw)?,
            None => account.first_cursor(),
        };
        let (tickets, more, server_now) = account.changed_tickets(&cursor)?;
        let last = tickets
            .iter()
            .filter_map(|t| t.updated_at_ms())
            .max()
            .map(|ms| ms / 1000);

        let hub_tickets: Vec<&Ticket> = tickets.iter().filter(|t| is_hub_ticket(t)).collect();
        let mut reader = ChangeReader::new(&account);
        let mut changes = Vec::new();
        for ticket in &hub_tickets {
            changes.extend(reader.changes_of(ticket)?);
        }
        let (next, has_more) = api::next_cursor(&cursor, last, more, server_now);
        log_debug!(
            "polled Freshdesk tickets",
            listed = tickets.len(),
            hub_tickets = hub_tickets.len(),
            changes = changes.len(),
            has_more = has_more
        );
        Ok(PollPage {
            changes,
            next_cursor: Some(paging::encode_cursor(&next)),
            has_more,
        })
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        let account = Account::of(ctx)?;
        account.verify_webhook(&request)?;
        let body: serde_json::Value = serde_json::from_slice(&request.body).map_err(|err| {
            ConnectorError::invalid("body", format!("not a JSON webhook body: {err}"))
        })?;
        let ticket_id = changes::webhook_ticket_id(&body).ok_or_else(|| {
            ConnectorError::invalid(
                "body",
                "no ticket id: the webhook body needs `ticket_id` (the simple layout's \
                 freshdesk_webhook.ticket_id or {{ticket.id}} in an advanced one)",
            )
        })?;
        // The body is unsigned and only names the ticket: read the ticket itself.
        let ticket = match account.ticket(ticket_id) {
            Ok(ticket) => Some(ticket),
            // Deleted since; nothing left to report.
            Err(ConnectorError::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let changes = match ticket.filter(is_hub_ticket) {
            Some(ticket) => ChangeReader::new(&account).changes_of(&ticket)?,
            None => Vec::new(),
        };
        log_debug!(
            "Freshdesk webhook received",
            ticket_id = ticket_id,
            changes = changes.len()
        );
        Ok(WebhookOutcome {
            response: webhook::ok(),
            changes,
        })
    }
}

switchboard_plugin_sdk::export_helpdesk!(Freshdesk);

/// What `create_ticket` answers for ticket `id`.
fn ticket_ref(account: &Account, id: u64, created: bool) -> TicketRef {
    TicketRef {
        id: id.to_string(),
        created,
        url: Some(account.ticket_url(id)),
    }
}
