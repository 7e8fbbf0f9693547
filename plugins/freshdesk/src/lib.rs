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

mod api;
mod changes;
mod retry;
mod time;

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket, PollPage,
    Requester, RequesterRequest, TicketChange, TicketRef, TicketState, TicketUpdate,
    WebhookOutcome,
};
use switchboard_plugin_sdk::http;
use switchboard_plugin_sdk::prelude::*;

use crate::api::{
    check, clean_tags, html_body, is_hub_ticket, numeric_id, parse, text_of, Agent, Contact,
    ContactSearch, Conversation, Created, ErrorBody, PollCursor, StatusMapping, Ticket, HUB_TAG,
    NAME_MAX_CHARS,
};
use crate::retry::{ExpectedConversation, ExpectedTicket};

/// Setting keys.
mod settings {
    pub const DOMAIN: &str = "domain";
    pub const API_KEY: &str = "api_key";
    pub const BASE_URL: &str = "base_url";
    pub const SOURCE: &str = "source";
    pub const ON_HOLD_STATUS: &str = "on_hold_status";
    pub const EXTERNAL_ID_FIELD: &str = "external_id_field";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const WEBHOOK_SECRET_HEADER: &str = "webhook_secret_header";
    pub const INTEGRATION_AGENT_ID: &str = "integration_agent_id";
    pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";
}

/// The one pollable stream.
const STREAM: &str = "ticket-changes";
/// How far back the first poll of a new installation looks.
const DEFAULT_LOOKBACK_SECS: u64 = 3600;
/// Chat: the closest of Freshdesk's documented sources to a social conversation.
const DEFAULT_SOURCE: u64 = 7;
const DEFAULT_SECRET_HEADER: &str = "x-switchboard-secret";
/// Tickets per page of the listing. Each changed hub ticket costs one more call for its
/// conversations, so pages stay well below Freshdesk's 100 to fit per-minute budgets.
const TICKETS_PAGE_SIZE: &str = "50";
/// Conversations per page (Freshdesk's maximum).
const CONVERSATIONS_PAGE_SIZE: &str = "100";
/// A guard against a service that keeps sending `Link: rel="next"` (10,000 conversations).
const MAX_CONVERSATION_PAGES: usize = 100;
/// Tickets per page when looking for one an earlier attempt filed: a requester rarely has
/// more than one created in the look-back's minutes.
const LOOK_BACK_PAGE_SIZE: &str = "30";
/// Pages of a requester's newest tickets to look through before giving up (300 tickets).
const MAX_LOOK_BACK_PAGES: usize = 10;

/// The Freshdesk connector.
pub struct Freshdesk;

impl HelpdeskConnector for Freshdesk {
    fn describe() -> Manifest {
        manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let base = base_url(ctx)?;
        let external_id = request.external_id.trim();
        if external_id.is_empty() {
            return Err(ConnectorError::invalid("external-id", "is empty"));
        }
        if let Some(id) = contact_by_external_id(&base, external_id)? {
            return Ok(Requester {
                id: id.to_string(),
                created: false,
            });
        }
        let identity = &request.identity;
        let twitter_id = twitter_id(identity);
        let mut body = json!({
            "name": contact_name(identity, external_id),
            "unique_external_id": external_id,
        });
        if let Some(twitter_id) = &twitter_id {
            body["twitter_id"] = json!(twitter_id);
        }
        let response = http::post(format!("{base}/api/v2/contacts"))
            .json(&body)
            .send()?;
        if response.is_success() {
            let contact: Contact = parse(&response, "contact")?;
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
                None => contact_by_external_id(&base, external_id)?.ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "Freshdesk says a contact has unique_external_id `{external_id}` but \
                         does not list it: it is probably deleted or blocked"
                    ))
                })?,
            },
            // The person is already known from Freshdesk's own X channel.
            "twitter_id" => {
                let twitter_id = twitter_id.unwrap_or_default();
                adopt_twitter_contact(&base, duplicate.holder(), &twitter_id, external_id)?
            }
            _ => return Err(api::freshdesk_error(&response)),
        };
        Ok(Requester {
            id: id.to_string(),
            created: false,
        })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let base = base_url(ctx)?;
        let body = new_ticket_body(ctx, &ticket)?;
        // The description only says where a private message is; the text goes in a private
        // note by the customer.
        let private_note = match ticket.visibility {
            Visibility::Private => Some(first_note(&ticket)?),
            Visibility::Public => None,
        };

        // Freshdesk takes no idempotency key: when an earlier attempt may have filed this
        // ticket, look for it among the requester's newest tickets before filing it again.
        if let Some(earlier) = LookBack::of(ticket.unconfirmed.as_ref()) {
            if let Some(id) = earlier_ticket(&base, &body, earlier)? {
                log_info!("an earlier attempt had created the ticket", ticket_id = id);
                // That attempt may have stopped between the ticket and its note.
                if let Some((note, expected)) = &private_note {
                    if earlier_conversation(&base, id, expected, None)?.is_none() {
                        post_conversation(&base, id, "notes", note)?;
                    }
                }
                return Ok(ticket_ref(ctx, &base, id, false));
            }
        }

        let response = check(
            http::post(format!("{base}/api/v2/tickets"))
                .json(&body)
                .send()?,
        )?;
        let created: Ticket = parse(&response, "ticket")?;
        if let Some((note, _)) = &private_note {
            post_conversation(&base, created.id, "notes", note)?;
        }
        Ok(ticket_ref(ctx, &base, created.id, true))
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let base = base_url(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let body = html_body(&comment.body, &comment.attachments);
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
                None => integration_agent_id(ctx, &base)?,
            };
            let expected = ExpectedConversation {
                user_id,
                private: !public,
                incoming: requester.is_some(),
                source: if endpoint == "reply" {
                    retry::SOURCE_REPLY
                } else {
                    retry::SOURCE_NOTE
                },
                text: text_of(&body),
            };
            if let Some(id) = earlier_conversation(&base, ticket_id, &expected, Some(earlier))? {
                log_info!(
                    "an earlier attempt had added the comment",
                    ticket_id = ticket_id,
                    conversation_id = id
                );
                return Ok(CommentRef { id: id.to_string() });
            }
        }

        let id = post_conversation(&base, ticket_id, endpoint, &payload)?;
        Ok(CommentRef { id: id.to_string() })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let base = base_url(ctx)?;
        let ticket_id = numeric_id("ticket-id", &update.ticket_id)?;
        let statuses = status_mapping(ctx)?;
        let mut changes = serde_json::Map::new();
        if let Some(status) = update.status {
            changes.insert("status".into(), json!(statuses.write(status)));
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
            let current = fetch_ticket(&base, ticket_id)?.tags.unwrap_or_default();
            let tags = merged_tags(&current, &add, &remove);
            if tags != current {
                changes.insert("tags".into(), json!(tags));
            }
        }
        if changes.is_empty() {
            return Self::get_ticket(ctx, &update.ticket_id);
        }
        let response = check(
            http::put(format!("{base}/api/v2/tickets/{ticket_id}"))
                .json(&changes)
                .send()?,
        )?;
        let ticket: Ticket = parse(&response, "ticket")?;
        Ok(ticket.to_state(&statuses, ctx.setting(settings::EXTERNAL_ID_FIELD)))
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let base = base_url(ctx)?;
        let ticket = fetch_ticket(&base, numeric_id("ticket-id", ticket_id)?)?;
        Ok(ticket.to_state(
            &status_mapping(ctx)?,
            ctx.setting(settings::EXTERNAL_ID_FIELD),
        ))
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`; Freshdesk has only `{STREAM}`"),
            ));
        }
        let base = base_url(ctx)?;
        let cursor = match cursor.as_deref() {
            Some(raw) => paging::decode_cursor::<PollCursor>(raw)?,
            None => PollCursor {
                since: (now_ms() / 1000).saturating_sub(lookback_secs(ctx)?),
                page: 1,
            },
        };
        let response = check(
            http::get(format!("{base}/api/v2/tickets"))
                .query("updated_since", time::iso8601(cursor.since))
                .query("order_by", "updated_at")
                .query("order_type", "asc")
                .query("per_page", TICKETS_PAGE_SIZE)
                .query("page", cursor.page.to_string())
                .send()?,
        )?;
        let tickets: Vec<Ticket> = parse(&response, "ticket list")?;
        let more = response
            .header("link")
            .and_then(paging::next_link)
            .is_some();
        let server_now = response.header("date").and_then(time::parse_http_date_secs);
        let last = tickets
            .iter()
            .filter_map(|t| t.updated_at_ms())
            .max()
            .map(|ms| ms / 1000);

        let hub_tickets: Vec<&Ticket> = tickets.iter().filter(|t| is_hub_ticket(t)).collect();
        let mut reader = ChangeReader::new(ctx, &base)?;
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
        verify_secret(ctx, &request)?;
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
        let base = base_url(ctx)?;
        let ticket = match fetch_ticket(&base, ticket_id) {
            Ok(ticket) => Some(ticket),
            // Deleted since; nothing left to report.
            Err(ConnectorError::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let changes = match ticket.filter(is_hub_ticket) {
            Some(ticket) => ChangeReader::new(ctx, &base)?.changes_of(&ticket)?,
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

/// Reads tickets' conversations and maps them to changes, remembering what it looked up
/// (the integration agent, agents' names) for the rest of the call.
struct ChangeReader<'a> {
    ctx: &'a Context,
    base: &'a str,
    statuses: StatusMapping,
    integration_agent: Option<u64>,
    agent_names: HashMap<u64, String>,
    unnamed: Vec<u64>,
}

impl<'a> ChangeReader<'a> {
    fn new(ctx: &'a Context, base: &'a str) -> Result<Self> {
        Ok(Self {
            ctx,
            base,
            statuses: status_mapping(ctx)?,
            integration_agent: None,
            agent_names: HashMap::new(),
            unnamed: Vec::new(),
        })
    }

    fn changes_of(&mut self, ticket: &Ticket) -> Result<Vec<TicketChange>> {
        let conversations = match all_conversations(self.base, ticket.id) {
            Ok(found) => found,
            // Deleted since the listing saw it; failing would retry the page forever.
            Err(ConnectorError::NotFound(reason)) => {
                log_warn!(
                    "skipping a ticket whose conversations are gone",
                    ticket_id = ticket.id,
                    reason = reason
                );
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        if !conversations.is_empty() && self.integration_agent.is_none() {
            self.integration_agent = Some(integration_agent_id(self.ctx, self.base)?);
        }
        for conversation in &conversations {
            if let Some(id) = conversation
                .user_id
                .filter(|_| changes::by_agent(ticket, conversation))
            {
                self.name_agent(id);
            }
        }
        let ctx = changes::Context {
            integration_agent_id: self.integration_agent,
            agent_names: &self.agent_names,
            statuses: self.statuses,
            external_field: self.ctx.setting(settings::EXTERNAL_ID_FIELD),
        };
        Ok(changes::ticket_changes(ticket, &conversations, &ctx))
    }

    /// Looks an agent's name up once per call. Names are a nicety: failures leave it out.
    fn name_agent(&mut self, id: u64) {
        if self.agent_names.contains_key(&id) || self.unnamed.contains(&id) {
            return;
        }
        let name = http::get(format!("{}/api/v2/agents/{id}", self.base))
            .send()
            .and_then(check)
            .and_then(|response| parse::<Agent>(&response, "agent"))
            .map(|agent| agent.contact.and_then(|c| c.name));
        match name {
            Ok(Some(name)) => {
                self.agent_names.insert(id, name);
            }
            Ok(None) => self.unnamed.push(id),
            Err(err) => {
                log_debug!("no name for an agent", agent_id = id, error = err);
                self.unnamed.push(id);
            }
        }
    }
}

/// The body of `POST /api/v2/tickets`.
fn new_ticket_body(ctx: &Context, ticket: &NewTicket) -> Result<serde_json::Value> {
    let requester_id = numeric_id("requester-id", &ticket.requester_id)?;
    let statuses = status_mapping(ctx)?;
    let source = match ctx.setting(settings::SOURCE) {
        Some(raw) => raw.trim().parse::<u64>().map_err(|_| {
            ConnectorError::invalid(
                settings::SOURCE,
                format!("expected a Freshdesk source number, got `{raw}`"),
            )
        })?,
        None => DEFAULT_SOURCE,
    };
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        ticket.subject.clone()
    };
    let subject = if subject.trim().is_empty() {
        format!("Message from {}", ticket.channel)
    } else {
        subject
    };
    let description = match ticket.visibility {
        Visibility::Public => html_body(&ticket.body, &ticket.attachments),
        Visibility::Private => html_body(
            &format!(
                "A private message from {}; its text is in the private note below.",
                ticket.channel
            ),
            &[],
        ),
    };
    let tags = clean_tags(
        [HUB_TAG, ticket.channel.as_str()]
            .into_iter()
            .chain(ticket.tags.iter().map(String::as_str)),
    );
    let mut body = json!({
        "subject": subject.chars().take(255).collect::<String>(),
        "description": description,
        "requester_id": requester_id,
        "status": statuses.write(ticket.status.unwrap_or(
            switchboard_plugin_sdk::helpdesk::TicketStatus::Open,
        )),
        "priority": api::priority_to_freshdesk(ticket.priority.unwrap_or(
            switchboard_plugin_sdk::helpdesk::TicketPriority::Low,
        )),
        "source": source,
        "tags": tags,
    });
    if let Some(field) = ctx.setting(settings::EXTERNAL_ID_FIELD) {
        if !ticket.external_id.is_empty() {
            body["custom_fields"] = json!({ field.trim(): ticket.external_id });
        }
    }
    Ok(body)
}

/// `current` minus `remove`, plus `add`, compared case-insensitively as Freshdesk does.
fn merged_tags(current: &[String], add: &[String], remove: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = current
        .iter()
        .filter(|t| !remove.iter().any(|r| r.eq_ignore_ascii_case(t)))
        .cloned()
        .collect();
    for tag in add {
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.clone());
        }
    }
    tags
}

/// The contact name: the display name, else the handle, else the external id.
fn contact_name(identity: &SocialIdentity, external_id: &str) -> String {
    let name = [identity.display_name.as_deref(), identity.handle.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or(external_id);
    name.chars().take(NAME_MAX_CHARS).collect()
}

/// The X user id, which Freshdesk keeps as `twitter_id` since 2020.
fn twitter_id(identity: &SocialIdentity) -> Option<String> {
    matches!(identity.network.as_str(), "x" | "twitter")
        .then(|| identity.external_id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// The contact with this `unique_external_id`, if any.
fn contact_by_external_id(base: &str, external_id: &str) -> Result<Option<u64>> {
    let response = check(
        http::get(format!("{base}/api/v2/contacts"))
            .query("unique_external_id", external_id)
            .send()?,
    )?;
    let contacts: Vec<Contact> = parse(&response, "contact list")?;
    Ok(contacts.first().map(|c| c.id))
}

/// Uses the contact that already holds the X user id, giving it the hub's external id when it
/// has none so the next lookup finds it directly.
fn adopt_twitter_contact(
    base: &str,
    holder: Option<u64>,
    twitter_id: &str,
    external_id: &str,
) -> Result<u64> {
    let contact = match holder {
        Some(id) => parse::<Contact>(
            &check(http::get(format!("{base}/api/v2/contacts/{id}")).send()?)?,
            "contact",
        )?,
        None => {
            // Search lags behind creates by minutes; a miss is worth retrying later.
            let query = format!("\"twitter_id:'{}'\"", twitter_id.replace('\'', ""));
            let response = check(
                http::get(format!("{base}/api/v2/search/contacts"))
                    .query("query", &query)
                    .send()?,
            )?;
            let found: ContactSearch = parse(&response, "contact search")?;
            found.results.into_iter().next().ok_or_else(|| {
                ConnectorError::transient(
                    "a Freshdesk contact has this X user id but is not searchable yet",
                )
            })?
        }
    };
    if contact.unique_external_id.is_none() {
        let response = http::put(format!("{base}/api/v2/contacts/{}", contact.id))
            .json(&json!({"unique_external_id": external_id}))
            .send()?;
        if response.status == 409 {
            // Another call created the hub's contact meanwhile: use that one.
            if let Some(id) = contact_by_external_id(base, external_id)? {
                return Ok(id);
            }
        }
        check(response)?;
    }
    Ok(contact.id)
}

fn fetch_ticket(base: &str, ticket_id: u64) -> Result<Ticket> {
    let response = check(http::get(format!("{base}/api/v2/tickets/{ticket_id}")).send()?)?;
    parse(&response, "ticket")
}

/// Every conversation of a ticket, following `Link` headers.
fn all_conversations(base: &str, ticket_id: u64) -> Result<Vec<Conversation>> {
    let mut conversations = Vec::new();
    let mut request = http::get(format!("{base}/api/v2/tickets/{ticket_id}/conversations"))
        .query("per_page", CONVERSATIONS_PAGE_SIZE);
    for _ in 0..MAX_CONVERSATION_PAGES {
        let response = check(request.send()?)?;
        let page: Vec<Conversation> = parse(&response, "conversations")?;
        conversations.extend(page);
        match response.header("link").and_then(paging::next_link) {
            Some(next) => request = http::get(next),
            None => return Ok(conversations),
        }
    }
    log_warn!(
        "stopped reading conversations after the page limit",
        ticket_id = ticket_id,
        pages = MAX_CONVERSATION_PAGES
    );
    Ok(conversations)
}

/// The private incoming note a private first message goes into, and how to recognize it.
fn first_note(ticket: &NewTicket) -> Result<(serde_json::Value, ExpectedConversation)> {
    let requester = numeric_id("requester-id", &ticket.requester_id)?;
    let body = html_body(&ticket.body, &ticket.attachments);
    let expected = ExpectedConversation {
        user_id: requester,
        private: true,
        incoming: true,
        source: retry::SOURCE_NOTE,
        text: text_of(&body),
    };
    let note = json!({"body": body, "private": true, "incoming": true, "user_id": requester});
    Ok((note, expected))
}

fn ticket_ref(ctx: &Context, base: &str, id: u64, created: bool) -> TicketRef {
    TicketRef {
        id: id.to_string(),
        created,
        url: Some(format!("{}/a/tickets/{id}", agent_base_url(ctx, base))),
    }
}

/// Posts a reply (`endpoint` `reply`) or note (`notes`) and answers its id.
fn post_conversation(
    base: &str,
    ticket_id: u64,
    endpoint: &str,
    body: &serde_json::Value,
) -> Result<u64> {
    let response = check(
        http::post(format!("{base}/api/v2/tickets/{ticket_id}/{endpoint}"))
            .json(body)
            .send()?,
    )?;
    Ok(parse::<Created>(&response, "conversation")?.id)
}

/// The ticket an earlier attempt filed with `body` (the `POST /tickets` body), if any.
///
/// Lists the requester's tickets newest first, from the database (search lags behind
/// creates), with their descriptions to compare. `updated_since` also lifts the list's
/// default of the last 30 days: a ticket created after the look-back's start was updated
/// after it too.
fn earlier_ticket(
    base: &str,
    body: &serde_json::Value,
    earlier: LookBack<'_>,
) -> Result<Option<u64>> {
    let expected = ExpectedTicket::of(body)
        .ok_or_else(|| ConnectorError::fatal("the ticket body lacks requester, subject or text"))?;
    let since_ms = earlier.since_ms();
    let mut request = http::get(format!("{base}/api/v2/tickets"))
        .query("requester_id", expected.requester_id.to_string())
        .query("updated_since", time::iso8601(since_ms / 1000))
        .query("order_by", "created_at")
        .query("order_type", "desc")
        .query("include", "description")
        .query("per_page", LOOK_BACK_PAGE_SIZE);
    for _ in 0..MAX_LOOK_BACK_PAGES {
        let response = check(request.send()?)?;
        let page: Vec<Ticket> = parse(&response, "ticket list")?;
        for ticket in &page {
            let Some(created_at) = ticket.created_at_ms() else {
                continue;
            };
            if created_at < since_ms {
                // Newest first: the rest are older still.
                return Ok(None);
            }
            if expected.matches(ticket) && earlier.may_be(&ticket.id.to_string(), created_at) {
                return Ok(Some(ticket.id));
            }
        }
        match response.header("link").and_then(paging::next_link) {
            Some(next) => request = http::get(next),
            None => return Ok(None),
        }
    }
    log_warn!(
        "stopped looking for an earlier attempt's ticket after the page limit",
        requester_id = expected.requester_id,
        pages = MAX_LOOK_BACK_PAGES
    );
    Ok(None)
}

/// The newest conversation of the ticket that is `expected` and, with a look-back, that the
/// earlier attempt may have added.
fn earlier_conversation(
    base: &str,
    ticket_id: u64,
    expected: &ExpectedConversation,
    earlier: Option<LookBack<'_>>,
) -> Result<Option<u64>> {
    let conversations = all_conversations(base, ticket_id)?;
    let found = conversations.iter().rev().find(|c| {
        expected.matches(c)
            && earlier.is_none_or(|earlier| {
                c.created_at_ms()
                    .is_some_and(|at| earlier.may_be(&c.id.to_string(), at))
            })
    });
    Ok(found.map(|c| c.id))
}

/// The API key's agent: from the setting, else from `GET /agents/me`.
fn integration_agent_id(ctx: &Context, base: &str) -> Result<u64> {
    if let Some(id) = ctx.setting(settings::INTEGRATION_AGENT_ID) {
        return numeric_id(settings::INTEGRATION_AGENT_ID, id);
    }
    let response = check(http::get(format!("{base}/api/v2/agents/me")).send()?)?;
    Ok(parse::<Agent>(&response, "agent")?.id)
}

/// Freshdesk automation webhooks are not signed: the rule sends a shared secret in a custom
/// header (or as the basic-auth password), compared in constant time.
///
/// Requests are refused when no secret is configured: anyone who learns the URL could
/// otherwise make the hub read tickets on their schedule.
fn verify_secret(ctx: &Context, request: &WebhookRequest) -> Result<()> {
    let Some(secret) = ctx.setting(settings::WEBHOOK_SECRET) else {
        return Err(ConnectorError::unauthorized(
            "webhook refused: set the `webhook_secret` setting and send it from the Freshdesk \
             automation rule",
        ));
    };
    let header_name = ctx.setting_or(settings::WEBHOOK_SECRET_HEADER, DEFAULT_SECRET_HEADER);
    let from_header = webhook::header(request, header_name).map(str::trim);
    let from_basic = webhook::header(request, "authorization").and_then(basic_password);
    let given = [from_header.map(str::to_string), from_basic];
    let matches = given
        .iter()
        .flatten()
        .any(|candidate| signature::constant_time_eq(candidate.as_bytes(), secret.as_bytes()));
    if matches {
        Ok(())
    } else {
        Err(ConnectorError::unauthorized(format!(
            "webhook refused: missing or wrong secret in `{header_name}`"
        )))
    }
}

/// The password of a Basic authorization header.
fn basic_password(value: &str) -> Option<String> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// The API base: `base_url` when set (proxies, tests), else the account's own host.
fn base_url(ctx: &Context) -> Result<String> {
    if let Some(base) = ctx.setting(settings::BASE_URL) {
        return Ok(base.trim().trim_end_matches('/').to_string());
    }
    Ok(format!("https://{}.freshdesk.com", domain(ctx)?))
}

/// The account's domain, checked: `acme`, not `acme.freshdesk.com` (the host pattern adds it).
fn domain(ctx: &Context) -> Result<&str> {
    let domain = ctx.require(settings::DOMAIN)?.trim();
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ConnectorError::invalid(
            settings::DOMAIN,
            format!("expected the account name only, such as `acme` for acme.freshdesk.com, got `{domain}`"),
        ));
    }
    Ok(domain)
}

/// Where agents open tickets: the account's own host, even when the API goes through a proxy.
fn agent_base_url(ctx: &Context, api_base: &str) -> String {
    match domain(ctx) {
        Ok(domain) if ctx.setting(settings::BASE_URL).is_none() => {
            format!("https://{domain}.freshdesk.com")
        }
        _ => api_base.to_string(),
    }
}

fn status_mapping(ctx: &Context) -> Result<StatusMapping> {
    let on_hold = match ctx.setting(settings::ON_HOLD_STATUS) {
        Some(raw) => Some(
            raw.trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 6)
                .ok_or_else(|| {
                    ConnectorError::invalid(
                        settings::ON_HOLD_STATUS,
                        format!("expected the number of a custom status (6 or more), got `{raw}`"),
                    )
                })?,
        ),
        None => None,
    };
    Ok(StatusMapping { on_hold })
}

fn lookback_secs(ctx: &Context) -> Result<u64> {
    match ctx.setting(settings::INITIAL_LOOKBACK_SECS) {
        Some(value) => value.trim().parse().map_err(|_| {
            ConnectorError::invalid(
                settings::INITIAL_LOOKBACK_SECS,
                format!("expected a number of seconds, got `{value}`"),
            )
        }),
        None => Ok(DEFAULT_LOOKBACK_SECS),
    }
}

/// The plain fields of a setting; the struct update syntax fills in the rest.
fn setting(key: &str, label: &str, description: &str) -> SettingSpec {
    SettingSpec {
        key: key.to_string(),
        label: label.to_string(),
        description: description.to_string(),
        secret: false,
        required: false,
        default_value: None,
    }
}

/// What the plugin declares to the host.
fn manifest() -> Manifest {
    let account_host = format!("https://{{{}}}.freshdesk.com", settings::DOMAIN);
    let base_url_host = format!("{{{}}}", settings::BASE_URL);
    // Freshdesk's API key is the Basic user name; the password is ignored, `X` by custom.
    let basic = CredentialPlacement::Basic(BasicCredential {
        username: format!("{{{}}}", settings::API_KEY),
        password: "X".to_string(),
    });
    Manifest {
        id: "freshdesk".to_string(),
        name: "Freshdesk".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Helpdesk,
        description: "Files social conversations as Freshdesk tickets and syncs agents' replies, \
                      private notes and status changes back, by polling the ticket list and \
                      through automation-rule webhooks."
            .to_string(),
        settings: vec![
            SettingSpec {
                required: true,
                ..setting(
                    settings::DOMAIN,
                    "Domain",
                    "The account's name: `acme` for https://acme.freshdesk.com.",
                )
            },
            SettingSpec {
                secret: true,
                required: true,
                ..setting(
                    settings::API_KEY,
                    "API key",
                    "The API key from the profile settings of the agent the hub acts as. \
                     Replies and notes the hub files appear under this agent.",
                )
            },
            setting(
                settings::BASE_URL,
                "API base URL",
                "Optional. Replaces https://<domain>.freshdesk.com for API calls, for a proxy \
                 or a test double.",
            ),
            SettingSpec {
                default_value: Some(DEFAULT_SOURCE.to_string()),
                ..setting(
                    settings::SOURCE,
                    "Ticket source",
                    "The source number new tickets get: 7 (Chat) by default, or a custom \
                     source (101 and up) such as \"Social (hub)\".",
                )
            },
            setting(
                settings::ON_HOLD_STATUS,
                "On-hold status",
                "Optional. The number of the custom status (6 and up) that means on hold; \
                 without it, on hold is written as Pending.",
            ),
            setting(
                settings::EXTERNAL_ID_FIELD,
                "External id field",
                "Optional. The name of a custom single-line text ticket field (such as \
                 `cf_switchboard_id`) that keeps the hub's conversation id. Freshdesk tickets \
                 have no external id of their own.",
            ),
            SettingSpec {
                secret: true,
                ..setting(
                    settings::WEBHOOK_SECRET,
                    "Webhook secret",
                    "A random string the automation rule's webhook sends in the header below \
                     (or as the basic-auth password). Required to accept webhooks; leave empty \
                     when only polling.",
                )
            },
            SettingSpec {
                default_value: Some(DEFAULT_SECRET_HEADER.to_string()),
                ..setting(
                    settings::WEBHOOK_SECRET_HEADER,
                    "Webhook secret header",
                    "The custom header that carries the webhook secret.",
                )
            },
            setting(
                settings::INTEGRATION_AGENT_ID,
                "Integration agent id",
                "Optional. The id of the API key's agent, whose conversations are the hub's \
                 own. Looked up with agents/me when empty.",
            ),
            SettingSpec {
                default_value: Some(DEFAULT_LOOKBACK_SECS.to_string()),
                ..setting(
                    settings::INITIAL_LOOKBACK_SECS,
                    "Initial look-back (seconds)",
                    "How far back the first poll of the ticket-changes stream starts.",
                )
            },
        ],
        http_hosts: vec![account_host.clone(), base_url_host.clone()],
        credentials: vec![
            CredentialRule {
                host_pattern: account_host,
                placement: basic.clone(),
            },
            CredentialRule {
                host_pattern: base_url_host,
                placement: basic,
            },
            // Webhook deliveries are checked here against this secret; the API credentials
            // stay with the host.
            secret_for_plugin(settings::WEBHOOK_SECRET),
        ],
        streams: vec![StreamSpec {
            name: STREAM.to_string(),
            description: "Agents' replies, private notes and status changes on tickets the \
                          hub created, from the ticket list ordered by update time."
                .to_string(),
            default_schedule: "*/30 * * * * *".to_string(),
        }],
        accepts_webhooks: true,
        text_limits: Vec::new(),
        reply_windows: Vec::new(),
        oauth2: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};

    fn ctx(extra: &[(&str, &str)]) -> Context {
        let mut settings = vec![("domain", "acme"), ("api_key", "k")];
        settings.extend_from_slice(extra);
        Context::new("i", settings)
    }

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "ticket:1".into(),
            external_id: "conv-1".into(),
            requester_id: "43000000005".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["VIP customer".into(), "switchboard".into()],
            priority: Some(TicketPriority::High),
            status: None,
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    fn webhook_request(headers: &[(&str, &str)]) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: br#"{"freshdesk_webhook":{"ticket_id":1}}"#.to_vec(),
        }
    }

    #[test]
    fn ticket_body_is_flat_with_requester_source_and_tags() {
        let body = new_ticket_body(&ctx(&[]), &new_ticket()).expect("body");
        assert_eq!(
            body,
            json!({
                "subject": "Order late",
                "description": "My order is late",
                "requester_id": 43000000005_u64,
                "status": 2,
                "priority": 3,
                "source": 7,
                "tags": ["switchboard", "telegram", "VIP customer"],
            })
        );
        let mut ticket = new_ticket();
        ticket.subject = " ".into();
        ticket.status = Some(TicketStatus::OnHold);
        ticket.priority = None;
        let body = new_ticket_body(
            &ctx(&[
                ("source", "101"),
                ("on_hold_status", "7"),
                ("external_id_field", "cf_switchboard_id"),
            ]),
            &ticket,
        )
        .expect("body");
        assert_eq!(body["subject"], "My order is late");
        assert_eq!((&body["status"], &body["priority"]), (&json!(7), &json!(1)));
        assert_eq!(body["source"], 101);
        assert_eq!(
            body["custom_fields"],
            json!({"cf_switchboard_id": "conv-1"})
        );

        ticket.visibility = Visibility::Private;
        let body = new_ticket_body(&ctx(&[]), &ticket).expect("body");
        assert!(!body["description"]
            .as_str()
            .expect("description")
            .contains("late"));
        for (key, value) in [("source", "chat"), ("on_hold_status", "3")] {
            assert!(matches!(
                new_ticket_body(&ctx(&[(key, value)]), &new_ticket()),
                Err(ConnectorError::InvalidInput(f)) if f.field == key
            ));
        }
        ticket.requester_id = "aiko".into();
        assert!(matches!(
            new_ticket_body(&ctx(&[]), &ticket),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn tags_merge_case_insensitively() {
        let current = vec!["switchboard".to_string(), "Telegram".to_string()];
        assert_eq!(
            merged_tags(
                &current,
                &["vip".into(), "SWITCHBOARD".into()],
                &["telegram".into()]
            ),
            vec!["switchboard".to_string(), "vip".to_string()]
        );
    }

    #[test]
    fn contact_names_and_twitter_ids() {
        let identity = |network: &str, name: Option<&str>, handle: Option<&str>| SocialIdentity {
            external_id: "99".into(),
            network: network.into(),
            handle: handle.map(str::to_string),
            display_name: name.map(str::to_string),
        };
        assert_eq!(
            contact_name(&identity("x", Some("Fan"), None), "x:99"),
            "Fan"
        );
        assert_eq!(
            contact_name(&identity("x", Some(" "), Some("fan")), "x:99"),
            "fan"
        );
        assert_eq!(contact_name(&identity("x", None, None), "x:99"), "x:99");
        assert_eq!(
            twitter_id(&identity("x", None, None)).as_deref(),
            Some("99")
        );
        assert_eq!(
            twitter_id(&identity("twitter", None, None)).as_deref(),
            Some("99")
        );
        assert_eq!(twitter_id(&identity("telegram", None, None)), None);
    }

    #[test]
    fn base_url_and_domain() {
        assert_eq!(
            base_url(&ctx(&[])).ok().as_deref(),
            Some("https://acme.freshdesk.com")
        );
        assert_eq!(agent_base_url(&ctx(&[]), "x"), "https://acme.freshdesk.com");
        let proxied = ctx(&[("base_url", "http://127.0.0.1:9/ ")]);
        assert_eq!(
            base_url(&proxied).ok().as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            agent_base_url(&proxied, "http://127.0.0.1:9"),
            "http://127.0.0.1:9"
        );
        let full = Context::new("i", [("domain", "acme.freshdesk.com")]);
        assert!(matches!(
            base_url(&full),
            Err(ConnectorError::InvalidInput(f)) if f.field == "domain"
        ));
    }

    #[test]
    fn webhook_secret_in_a_header_or_basic_auth() {
        let secret = ctx(&[("webhook_secret", "s3cret")]);
        assert!(verify_secret(
            &secret,
            &webhook_request(&[("x-switchboard-secret", "s3cret")])
        )
        .is_ok());
        // base64("freshdesk:s3cret")
        assert!(verify_secret(
            &secret,
            &webhook_request(&[("authorization", "Basic ZnJlc2hkZXNrOnMzY3JldA==")])
        )
        .is_ok());
        for headers in [
            vec![("x-switchboard-secret", "s3cre")],
            vec![("x-other", "s3cret")],
            vec![("authorization", "Bearer s3cret")],
            vec![],
        ] {
            assert!(matches!(
                verify_secret(&secret, &webhook_request(&headers)),
                Err(ConnectorError::Unauthorized(_))
            ));
        }
        let custom = ctx(&[
            ("webhook_secret", "s3cret"),
            ("webhook_secret_header", "X-Hook-Token"),
        ]);
        assert!(verify_secret(&custom, &webhook_request(&[("x-hook-token", "s3cret")])).is_ok());
        assert!(matches!(
            verify_secret(&ctx(&[]), &webhook_request(&[("x-switchboard-secret", "s3cret")])),
            Err(ConnectorError::Unauthorized(m)) if m.contains("webhook_secret")
        ));
        assert_eq!(basic_password("Basic YTpi").as_deref(), Some("b"));
        assert_eq!(basic_password("Basic a*b"), None);
    }

    #[test]
    fn manifest_declares_hosts_and_basic_auth_with_the_key() {
        let manifest = manifest();
        assert_eq!(manifest.id, "freshdesk");
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(
            manifest.http_hosts,
            vec![
                "https://{domain}.freshdesk.com".to_string(),
                "{base_url}".to_string()
            ]
        );
        assert!(manifest
            .credentials
            .contains(&secret_for_plugin("webhook_secret")));
        assert!(manifest
            .credentials
            .iter()
            .filter(|rule| rule.host_pattern != "plugin")
            .all(|rule| rule.placement
                == CredentialPlacement::Basic(BasicCredential {
                    username: "{api_key}".into(),
                    password: "X".into(),
                })));
        assert_eq!(manifest.streams[0].name, "ticket-changes");
        assert!(manifest.accepts_webhooks);
        let key = manifest
            .settings
            .iter()
            .find(|s| s.key == "api_key")
            .expect("api_key");
        assert!(key.secret && key.required);
        let secret = manifest
            .settings
            .iter()
            .find(|s| s.key == "webhook_secret")
            .expect("webhook_secret");
        assert!(secret.secret && !secret.required);
    }
}
