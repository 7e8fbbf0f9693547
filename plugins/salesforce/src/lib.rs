//! # Salesforce Service Cloud connector for Switchboard
//!
//! Files social conversations as Salesforce Cases and brings agents' CaseComments and status
//! changes back to the hub.
//!
//! - **Requesters** are Contacts upserted by an external id field
//!   (`contact_external_id_field`, default `Switchboard_External_Id__c`) holding
//!   `<network>:<user id>`; `LastName` (required by Salesforce) is the display name or handle.
//! - **Tickets** are Cases upserted by an external id field (`case_external_id_field`) holding
//!   the hub's idempotency key, so a retried create updates the Case it already made (upsert
//!   answers 200/204) instead of making a second one. The key, not the conversation id, is
//!   the value: a conversation can have several cases over time. The first message is the
//!   Description; Status, Priority and Origin go through the `*_map` settings.
//! - **Comments** are CaseComments, `IsPublished` for public replies; bodies over 4,000 bytes
//!   are split in several comments (the id of the first is returned). CaseComments have no
//!   idempotency key: a retry after an attempt that may have taken effect (`unconfirmed`)
//!   first queries the case's recent comments by the integration user and posts only the parts
//!   not found there (`look_back.rs`).
//! - **Changes** come from polling SOQL on `SystemModstamp` (CaseComments, then Cases), batch
//!   by batch through `nextRecordsUrl`. Outbound Messages (SOAP, unsigned) and Change Data
//!   Capture (a gRPC/CometD subscription) don't fit a webhook, so webhooks are not accepted.
//! - **Echoes**: every write carries `Sforce-Call-Options: client=<client_name>`, and what the
//!   integration user wrote (`CreatedById` / `LastModifiedById`) is the hub's own. Connect with
//!   a dedicated integration user, or agents' replies would count as echoes.
//!
//! Credentials never pass through the plugin: the host holds the OAuth 2.0 grant (web server
//! flow with PKCE, refresh token, or JWT bearer), adds `Authorization: Bearer` to requests to
//! `instance_url`, and refreshes and retries once on a 401.

mod account;
mod api;
mod changes;
mod look_back;
mod manifest;
mod mapping;

use serde_json::{json, Map, Value};
use switchboard_plugin_sdk::helpdesk::{
    CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket, PollPage,
    Requester, RequesterRequest, TicketChange, TicketRef, TicketState, TicketUpdate,
    WebhookOutcome, TICKET_CHANGES_STREAM,
};
use switchboard_plugin_sdk::prelude::*;

use crate::account::Account;
use crate::api::record_id;
use crate::changes::{Cursor, Mark, Reading};
use crate::manifest::{settings, LEGACY_STREAM};

/// The Salesforce Service Cloud connector.
pub struct Salesforce;

impl HelpdeskConnector for Salesforce {
    fn describe() -> Manifest {
        manifest::manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let account = Account::of(ctx)?;
        if request.external_id.trim().is_empty() {
            return Err(ConnectorError::invalid(
                "external-id",
                "the requester has no external id",
            ));
        }
        let identity = &request.identity;
        let name = identity.name_or(&request.external_id);
        let body = json!({"LastName": api::truncate_chars(name, api::LAST_NAME_MAX_CHARS)});
        let (id, created) = account.upsert(
            "Contact",
            &account.contact_field,
            settings::CONTACT_EXTERNAL_ID_FIELD,
            &request.external_id,
            &body,
        )?;
        Ok(Requester { id, created })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let account = Account::of(ctx)?;
        let body = api::new_case_body(&ticket, &account.mappings)?;
        let key = ticket.idempotency_key.trim();
        if key.is_empty() {
            return Err(ConnectorError::invalid("idempotency-key", "empty"));
        }
        let (id, created) = account.upsert(
            "Case",
            &account.case_field,
            settings::CASE_EXTERNAL_ID_FIELD,
            key,
            &body,
        )?;
        if !ticket.tags.is_empty() {
            log_debug!(
                "Cases have no tags; ignoring them",
                count = ticket.tags.len()
            );
        }
        Ok(TicketRef {
            url: Some(account.case_url(&id)),
            id,
            created,
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let account = Account::of(ctx)?;
        let case_id = record_id("ticket-id", &comment.ticket_id, "500", "Case")?;
        if let CommentAuthor::Requester(id) = &comment.author {
            // Only users write CaseComments: the integration user files the customer's words.
            log_debug!(
                "filing a customer comment as the integration user",
                requester = id
            );
        }
        let text = text::with_attachment_links(&comment.body, &comment.attachments);
        let parts = api::split_bytes(&text, api::COMMENT_MAX_BYTES);
        if parts.is_empty() {
            return Err(ConnectorError::invalid("body", "the comment is empty"));
        }
        let public = comment.visibility == Visibility::Public;
        // No idempotency key for CaseComments: after an attempt that may have taken effect,
        // post only the parts it did not.
        let mut ids = match LookBack::of(comment.unconfirmed.as_ref()) {
            Some(earlier) => {
                let user = record_id(
                    settings::INTEGRATION_USER_ID,
                    &account.integration_user()?,
                    "005",
                    "User",
                )?;
                let soql = look_back::comments_since_query(&case_id, &user, earlier.since_ms());
                let records = account.query_all(&soql)?;
                let found = look_back::posted_parts(&records, &parts, public, &earlier);
                log_info!(
                    "retrying a comment whose earlier attempt may have taken effect",
                    parts = parts.len(),
                    already_posted = found.iter().flatten().count()
                );
                found
            }
            None => vec![None; parts.len()],
        };
        for (part, id) in parts.iter().zip(ids.iter_mut()) {
            if id.is_some() {
                continue;
            }
            *id = Some(account.post_comment(&case_id, part, public)?);
        }
        // The hub knows a comment by its first part.
        ids.into_iter()
            .next()
            .flatten()
            .map(|id| CommentRef { id })
            .ok_or_else(|| ConnectorError::fatal("no CaseComment id for the first part"))
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let case_id = record_id("ticket-id", &update.ticket_id, "500", "Case")?;
        let mut fields = Map::new();
        if let Some(status) = update.status {
            let value = account
                .mappings
                .statuses
                .write(status, settings::STATUS_MAP)?
                .to_string();
            fields.insert("Status".into(), Value::String(value));
        }
        if let Some(priority) = update.priority {
            if let Some(value) = account.mappings.priorities.write(priority) {
                fields.insert("Priority".into(), Value::String(value.to_string()));
            }
        }
        if !update.add_tags.is_empty() || !update.remove_tags.is_empty() {
            log_debug!("Cases have no tags; ignoring tag changes");
        }
        if !fields.is_empty() {
            account.update_case(&case_id, fields)?;
        }
        account.case_state(&case_id)
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let account = Account::of(ctx)?;
        let case_id = record_id("ticket-id", ticket_id, "500", "Case")?;
        account.case_state(&case_id)
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        paging::check_stream(
            "Salesforce",
            stream,
            &[TICKET_CHANGES_STREAM, LEGACY_STREAM],
        )?;
        let account = Account::of(ctx)?;
        let mut cursor = match cursor {
            Some(raw) => paging::decode_cursor::<Cursor>(&raw)?,
            None => {
                let since = account.initial_since();
                Cursor {
                    comments: Mark::starting_at(since),
                    cases: Mark::starting_at(since),
                }
            }
        };
        let field = account.case_field.clone();
        let comments = account.query_batch(&mut cursor.comments, |from| {
            changes::comments_query(&field, from)
        })?;
        let cases =
            account.query_batch(&mut cursor.cases, |from| changes::cases_query(&field, from))?;

        let integration_user = if comments.records.is_empty() && cases.records.is_empty() {
            String::new()
        } else {
            account.integration_user()?
        };
        let reading = Reading {
            case_field: &account.case_field,
            integration_user: &integration_user,
            statuses: &account.mappings.statuses,
        };
        let mut found: Vec<TicketChange> = Vec::new();
        for (page, mark, to_change) in [
            (
                &comments,
                &mut cursor.comments,
                changes::comment_change as fn(&Value, &Reading) -> Option<TicketChange>,
            ),
            (&cases, &mut cursor.cases, changes::status_change),
        ] {
            for record in &page.records {
                let (Some(id), Some(modstamp)) =
                    (api::text(record, "Id"), changes::modstamp(record))
                else {
                    log_warn!("skipping a record without Id or SystemModstamp");
                    continue;
                };
                if mark.admit(id, modstamp) {
                    found.extend(to_change(record, &reading));
                }
            }
            mark.next = if page.done {
                None
            } else {
                page.next_records_url.clone()
            };
        }
        // Comments and statuses in the order they happened.
        found.sort_by_key(|c| c.at);
        let has_more = cursor.comments.next.is_some() || cursor.cases.next.is_some();
        log_debug!(
            "polled Salesforce",
            comments = comments.records.len(),
            cases = cases.records.len(),
            changes = found.len(),
            has_more = has_more
        );
        Ok(PollPage {
            changes: found,
            next_cursor: Some(paging::encode_cursor(&cursor)),
            has_more,
        })
    }

    fn handle_webhook(_ctx: &Context, _request: WebhookRequest) -> Result<WebhookOutcome> {
        // Outbound Messages are unsigned SOAP and CDC is a subscription, not a webhook.
        Ok(WebhookOutcome {
            response: webhook::response(
                404,
                "This Salesforce installation does not accept webhooks; it polls for changes.",
            ),
            changes: Vec::new(),
        })
    }
}

switchboard_plugin_sdk::export_helpdesk!(Salesforce);
