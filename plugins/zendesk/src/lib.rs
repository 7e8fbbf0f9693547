//! # Zendesk Support connector for Switchboard
//!
//! Files social conversations as Zendesk tickets and brings agents' replies, internal notes
//! and status changes back to the hub.
//!
//! - **Requesters** are end users keyed by `external_id` (`create_or_update` matches on it);
//!   X and Facebook users also get the matching Zendesk identity.
//! - **Tickets** are created with the hub's idempotency key as `Idempotency-Key`, tagged
//!   `switchboard` and with the channel, the first comment written by the requester. Zendesk
//!   keeps the key for two hours only, so a retry after an attempt whose outcome is unknown
//!   first lists the tickets with the same external id for the one that attempt may have filed.
//! - **Comments** go in with `PUT /tickets/{id}`; the new comment's id is read from the audit.
//!   Updates take no idempotency key, so a retry after an attempt whose outcome is unknown
//!   first looks among the ticket's newest comments for the one that attempt may have added.
//! - **Changes** come from the `ticket-changes` stream (cursor-based incremental ticket export,
//!   then each changed ticket's comments) and from Zendesk event webhooks
//!   (`ticket.comment_added`, `ticket.status_changed`, `ticket.priority_changed`), signed with
//!   the webhook's signing secret. Both give the same change ids, so the hub deduplicates them.
//!   Polling looks only at tickets tagged `switchboard`.
//! - **Echoes**: comments by the API token's owner (the integration user) are the hub's own.
//!
//! Credentials never pass through the plugin's code: the host adds Basic auth
//! (`{email}/token`, `{api_token}`) to every request to the account.

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

use crate::account::Account;
use crate::api::{CommentBody, ExportCursor, TicketChanges};
use crate::changes::WebhookEvent;
use crate::manifest::LEGACY_STREAM;

/// The Zendesk Support connector.
pub struct Zendesk;

impl HelpdeskConnector for Zendesk {
    fn describe() -> Manifest {
        manifest::manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let account = Account::of(ctx)?;
        let (id, created) = account.create_or_update_user(&api::requester_body(&request))?;
        if created {
            if let Some((kind, value)) = api::zendesk_identity(&request.identity) {
                account.add_identity(&id, kind, &value);
            }
        }
        Ok(Requester { id: id.0, created })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let account = Account::of(ctx)?;
        let body = api::new_ticket_body(&ticket)?;
        // Zendesk keeps an idempotency key for only two hours, and a retry can come much
        // later (a dead letter retried the next day): when an earlier attempt may have filed
        // the ticket, look for it first.
        if let Some(earlier) = LookBack::of(ticket.unconfirmed.as_ref()) {
            if let Some(id) = account.earlier_ticket(&ticket, &body, earlier)? {
                log_info!("an earlier attempt had filed the ticket", ticket_id = id);
                return Ok(ticket_ref(&account, id, false));
            }
        }
        let (id, created) = account.create_ticket(&ticket.idempotency_key, &body)?;
        Ok(ticket_ref(&account, id, created))
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let author_id = match &comment.author {
            CommentAuthor::Requester(id) => Some(numeric_id("author", id)?),
            // Omitted: the comment is written by the API token's owner.
            CommentAuthor::Integration => None,
        };
        let author = || match author_id {
            Some(id) => Ok(id.to_string()),
            None => account.integration_user_id(),
        };
        let text = text::with_attachment_links(&comment.body, &comment.attachments);
        let public = comment.visibility == Visibility::Public;

        // A ticket update takes no idempotency key: when an earlier attempt may have added
        // this comment, look for it before adding it again.
        if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
            let author = author()?;
            let found = account.newest_comment(ticket_id, earlier.since_ms(), |c| {
                c.is_by(&author)
                    && c.public == public
                    && c.has_text(&text)
                    && c.created_at_ms()
                        .is_some_and(|at| earlier.may_be(&c.id.0, at))
            })?;
            if let Some(id) = found {
                log_info!(
                    "an earlier attempt had added the comment",
                    ticket_id = ticket_id,
                    comment_id = id
                );
                return Ok(CommentRef { id });
            }
        }

        let body = json!({"ticket": {"comment": CommentBody {
            body: text,
            public,
            author_id,
        }}});
        let envelope = account.update_ticket(ticket_id, &body)?;
        if let Some(id) = envelope.created_comment_id() {
            return Ok(CommentRef { id });
        }
        // No audit in the answer: the newest comment by the same author is ours.
        let author = author()?;
        account
            .newest_comment(ticket_id, 0, |c| c.is_by(&author))?
            .map(|id| CommentRef { id })
            .ok_or_else(|| {
                ConnectorError::transient(format!(
                    "comment added to ticket {ticket_id} but not found in its comments yet"
                ))
            })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let ticket_id = numeric_id("ticket-id", &update.ticket_id)?;
        let changes = TicketChanges {
            status: update.status.map(api::status_to_zendesk),
            priority: update.priority.map(api::priority_to_zendesk),
            additional_tags: api::normalize_tags(&update.add_tags),
            remove_tags: api::normalize_tags(&update.remove_tags),
        };
        if changes.is_empty() {
            return Self::get_ticket(ctx, &update.ticket_id);
        }
        account
            .update_ticket(ticket_id, &json!({ "ticket": changes }))?
            .ticket
            .to_state()
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        account
            .ticket(numeric_id("ticket-id", ticket_id)?)?
            .to_state()
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        paging::check_stream("Zendesk", stream, &[TICKET_CHANGES_STREAM, LEGACY_STREAM])?;
        let account = Account::of(ctx)?;
        let cursor: Option<ExportCursor> =
            cursor.as_deref().map(paging::decode_cursor).transpose()?;
        let page = account.export_page(cursor.as_ref())?;

        let tickets = page.hub_tickets();
        let integration_user = if tickets.is_empty() {
            None
        } else {
            Some(account.integration_user_id()?)
        };
        let mut changes = Vec::new();
        for ticket in &tickets {
            let (comments, users) = match account.all_comments(&ticket.id.0) {
                Ok(found) => found,
                // Deleted since the export saw it. Failing the page would retry it forever.
                Err(ConnectorError::NotFound(reason)) => {
                    log_warn!(
                        "skipping a ticket whose comments are gone",
                        ticket_id = ticket.id,
                        reason = reason
                    );
                    (Vec::new(), Vec::new())
                }
                Err(err) => return Err(err),
            };
            changes.extend(changes::ticket_changes(
                ticket,
                &comments,
                &users,
                integration_user.as_deref(),
            ));
        }
        log_debug!(
            "polled Zendesk ticket export",
            exported = page.tickets.len(),
            hub_tickets = tickets.len(),
            changes = changes.len(),
            end_of_stream = page.end_of_stream
        );
        let (next_cursor, has_more) = page.position();
        Ok(PollPage {
            changes,
            next_cursor: next_cursor
                .map(|after_cursor| paging::encode_cursor(&ExportCursor { after_cursor })),
            has_more,
        })
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        let account = Account::of(ctx)?;
        account.verify_webhook(&request)?;
        let event: WebhookEvent = serde_json::from_slice(&request.body).map_err(|err| {
            ConnectorError::invalid("body", format!("not a Zendesk event payload: {err}"))
        })?;
        let integration_user = if event.needs_integration_user() {
            Some(account.integration_user_id()?)
        } else {
            None
        };
        let changes = changes::webhook_changes(&event, integration_user.as_deref(), now_ms())?;
        log_debug!(
            "Zendesk webhook received",
            event_type = event.event_type,
            changes = changes.len()
        );
        Ok(WebhookOutcome {
            response: webhook::ok(),
            changes,
        })
    }
}

/// What `create_ticket` answers for ticket `id`.
fn ticket_ref(account: &Account, id: String, created: bool) -> TicketRef {
    TicketRef {
        url: Some(account.ticket_url(&id)),
        id,
        created,
    }
}

switchboard_plugin_sdk::export_helpdesk!(Zendesk);
