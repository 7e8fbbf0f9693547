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

mod api;
mod changes;
mod time;

use std::collections::HashMap;

use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    ChangeAuthor, CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket,
    PollPage, Requester, RequesterRequest, TicketRef, TicketState, TicketStatus, TicketUpdate,
    WebhookOutcome,
};
use switchboard_plugin_sdk::http::{self, Response};
use switchboard_plugin_sdk::prelude::*;

use crate::api::{check, numeric_id, parse, path_segment, Page, Part, Queue, Ticket, User};
use crate::changes::{Cursor, Meaning, Message};

/// Setting keys.
mod settings {
    pub const BASE_URL: &str = "base_url";
    pub const WEB_PATH: &str = "web_path";
    pub const QUEUE: &str = "queue";
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const AUTH_TOKEN: &str = "auth_token";
    pub const EXTERNAL_ID_FIELD: &str = "external_id_field";
    pub const IDEMPOTENCY_FIELD: &str = "idempotency_field";
    pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";
}

const DEFAULT_QUEUE: &str = "General";
const DEFAULT_EXTERNAL_ID_FIELD: &str = "Switchboard External ID";
const DEFAULT_IDEMPOTENCY_FIELD: &str = "Switchboard Idempotency Key";

/// The one pollable stream.
const CHANGES_STREAM: &str = "ticket-changes";

/// How far back the first poll of a new installation looks.
const DEFAULT_LOOKBACK_SECS: u64 = 3600;

/// Transactions per poll page. A page costs three more requests (its tickets, its messages'
/// parts and texts) and one per author it names, all within one call's deadline; RT checks
/// the credentials with bcrypt on every request.
const TRANSACTIONS_PAGE_SIZE: &str = "50";

/// Authors a poll looks up (whether they are staff) before it ends its page early.
const MAX_AUTHOR_LOOKUPS: usize = 5;

/// The transaction fields a poll reads; the creator is expanded to id, login and name.
const TRANSACTION_FIELDS: &str = "Type,Created,Creator,ObjectId,Field,NewValue";

/// Pages of the integration user's messages on a ticket that a retried comment reads, newest
/// first, while looking for an earlier attempt's.
const LOOK_BACK_PAGES: u32 = 4;

/// Pages of a requester's newest tickets, and tickets per page, that a retried create without
/// an idempotency key reads while looking for an earlier attempt's.
const LOOK_BACK_TICKET_PAGES: u32 = 2;
const LOOK_BACK_TICKETS_PER_PAGE: &str = "20";

/// Which transactions a page starts with.
#[derive(Debug, Clone, Copy)]
enum Order {
    Oldest,
    Newest,
}

/// The Request Tracker connector.
pub struct Rt;

/// Where and as whom: the settings every operation needs.
struct Site {
    /// `<base_url><web_path>/REST/2.0`.
    api: String,
    /// `<base_url><web_path>`, for links agents open.
    web: String,
    queue: String,
    username: String,
    external_id_field: String,
    idempotency_field: String,
}

impl Site {
    fn from(ctx: &Context) -> Result<Self> {
        let base = ctx
            .require(settings::BASE_URL)?
            .trim()
            .trim_end_matches('/');
        let origin = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or_else(|| {
                ConnectorError::invalid(
                    settings::BASE_URL,
                    format!("expected http(s)://host[:port], got `{base}`"),
                )
            })?;
        if origin.is_empty() || origin.contains(['/', '?', '#', '@']) {
            return Err(ConnectorError::invalid(
                settings::BASE_URL,
                format!(
                    "expected only scheme, host and port, got `{base}`; put a path such as /rt \
                     in `web_path`"
                ),
            ));
        }
        let web_path = ctx
            .setting(settings::WEB_PATH)
            .map(|p| p.trim().trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        let username = ctx.require(settings::USERNAME)?.trim().to_string();
        // Whether `password` or `auth_token` is set is not the plugin's to see (secrets go to
        // the host's credential rules only): with neither RT answers 401, which says to check
        // the credentials, and with both the host refuses to add two Authorization headers.
        let web = format!("{base}{web_path}");
        Ok(Site {
            api: format!("{web}/REST/2.0"),
            web,
            queue: ctx
                .setting_or(settings::QUEUE, DEFAULT_QUEUE)
                .trim()
                .to_string(),
            username,
            external_id_field: ctx
                .setting_or(settings::EXTERNAL_ID_FIELD, DEFAULT_EXTERNAL_ID_FIELD)
                .trim()
                .to_string(),
            idempotency_field: ctx
                .setting_or(settings::IDEMPOTENCY_FIELD, DEFAULT_IDEMPOTENCY_FIELD)
                .trim()
                .to_string(),
        })
    }

    fn ticket_url(&self, id: &str) -> String {
        format!("{}/Ticket/Display.html?id={id}", self.web)
    }

    /// A user by numeric id or login; `None` when RT has no such user.
    fn find_user(&self, key: &str) -> Result<Option<User>> {
        let response = http::get(format!("{}/user/{}", self.api, path_segment(key))).send()?;
        if response.status == 404 {
            return Ok(None);
        }
        parse(&check(response)?, "user").map(Some)
    }

    /// A user by email address, through a JSON search.
    fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let query = json!([{"field": "EmailAddress", "value": email}]);
        let response = check(
            http::post(format!("{}/users", self.api))
                .query("fields", "Name,RealName,EmailAddress")
                .query("per_page", "1")
                .json(&query)
                .send()?,
        )?;
        let page: Page<User> = parse(&response, "user search")?;
        Ok(page.items.into_iter().next())
    }

    /// The user the hub names as requester or author: `field` is at fault when RT has none.
    fn known_user(&self, field: &str, id: &str) -> Result<User> {
        let id = numeric_id(field, id)?;
        self.find_user(&id.to_string())?
            .ok_or_else(|| ConnectorError::invalid(field, format!("RT has no user with id {id}")))
    }

    fn queue(&self) -> Result<Queue> {
        let response =
            http::get(format!("{}/queue/{}", self.api, path_segment(&self.queue))).send()?;
        if response.status == 404 {
            return Err(ConnectorError::invalid(
                settings::QUEUE,
                format!(
                    "RT has no queue `{}` that the integration user may see",
                    self.queue
                ),
            ));
        }
        parse(&check(response)?, "queue")
    }

    fn ticket(&self, id: u64) -> Result<Ticket> {
        let response = check(http::get(format!("{}/ticket/{id}", self.api)).send()?)?;
        parse(&response, "ticket")
    }

    /// The ticket as the contract reports it; deleted tickets are not found.
    fn ticket_state(&self, ticket: &Ticket) -> Result<TicketState> {
        if ticket.status.eq_ignore_ascii_case("deleted") {
            return Err(ConnectorError::not_found(format!(
                "RT ticket {} is deleted",
                ticket.id
            )));
        }
        let status = api::status_from_rt(&ticket.status).unwrap_or_else(|| {
            // A custom lifecycle's status: the ticket exists and is being worked on.
            log_warn!(
                "RT status outside the default lifecycle, reported as open",
                ticket_id = ticket.id,
                status = ticket.status
            );
            TicketStatus::Open
        });
        Ok(TicketState {
            id: ticket.id.0.clone(),
            status,
            priority: ticket.priority(),
            external_id: ticket.custom_field(&self.external_id_field),
            updated_at: ticket.updated_at_ms(),
        })
    }

    /// The id of a ticket of the queue whose idempotency field holds `key`.
    fn ticket_with_key(&self, key: &str) -> Result<Option<String>> {
        let query = format!(
            "Queue = {} AND {} = {}",
            api::sql_quote(&self.queue),
            api::sql_quote(&format!("CF.{{{}}}", self.idempotency_field)),
            api::sql_quote(key)
        );
        let response = check(
            http::get(format!("{}/tickets", self.api))
                .query("query", query)
                .query("orderby", "id")
                .query("per_page", "1")
                .send()?,
        )?;
        let page: Page<api::Created> = parse(&response, "ticket search")?;
        Ok(page.items.into_iter().next().map(|t| t.id.0))
    }

    /// Posts a reply (`correspond`) or a comment to a ticket; returns the transaction id.
    fn post_message(&self, ticket_id: u64, visibility: Visibility, text: &str) -> Result<String> {
        let endpoint = match visibility {
            Visibility::Public => "correspond",
            Visibility::Private => "comment",
        };
        let response = http::post(format!("{}/ticket/{ticket_id}/{endpoint}", self.api))
            .json(&json!({"Content": text, "ContentType": "text/plain"}))
            .send()?;
        if response.status == 400 {
            // RT answers a message to a missing ticket with 400 "Message could not be
            // recorded": tell that case apart.
            let missing = http::get(format!("{}/ticket/{ticket_id}", self.api)).send()?;
            if missing.status == 404 {
                return Err(ConnectorError::not_found(format!(
                    "RT has no ticket {ticket_id}"
                )));
            }
        }
        let response = check(response)?;
        response
            .header("location")
            .and_then(api::id_from_location)
            .ok_or_else(|| {
                ConnectorError::fatal(format!(
                    "RT recorded the {endpoint} on ticket {ticket_id} without saying which \
                     transaction it is"
                ))
            })
    }

    /// The transaction id to start the first poll after: the newest one older than the
    /// look-back. A JSON search compares dates as RT stores them (UTC), unlike TicketSQL,
    /// which reads them in the user's time zone.
    fn initial_cursor(&self, ctx: &Context) -> Result<u64> {
        let lookback = match ctx.setting(settings::INITIAL_LOOKBACK_SECS) {
            Some(value) => value.trim().parse::<u64>().map_err(|_| {
                ConnectorError::invalid(
                    settings::INITIAL_LOOKBACK_SECS,
                    format!("expected a number of seconds, got `{value}`"),
                )
            })?,
            None => DEFAULT_LOOKBACK_SECS,
        };
        let since = now_ms().saturating_sub(lookback.saturating_mul(1000));
        let query = json!([{
            "field": "Created", "operator": "<", "value": time::format_db_datetime(since)
        }]);
        let response = check(
            http::post(format!("{}/transactions", self.api))
                .query("orderby", "id")
                .query("order", "DESC")
                .query("per_page", "1")
                .json(&query)
                .send()?,
        )?;
        let page: Page<api::Created> = parse(&response, "transaction search")?;
        Ok(page
            .items
            .first()
            .and_then(|t| t.id.0.parse().ok())
            .unwrap_or(0))
    }

    /// One page (from 1) of the ticket transactions that TransactionSQL `query` selects, by
    /// id in `order`, with the fields changes are made of; and RT's clock when it answered
    /// (its `Date` header).
    fn transactions(
        &self,
        query: &str,
        order: Order,
        page: u32,
    ) -> Result<(Page<api::Transaction>, u64)> {
        let response = check(
            http::get(format!("{}/transactions", self.api))
                .query("query", query)
                .query("orderby", "id")
                .query(
                    "order",
                    match order {
                        Order::Oldest => "ASC",
                        Order::Newest => "DESC",
                    },
                )
                .query("page", page.to_string())
                .query("per_page", TRANSACTIONS_PAGE_SIZE)
                .query("fields", TRANSACTION_FIELDS)
                .query("fields[Creator]", "id,Name,RealName")
                .send()?,
        )?;
        let page = parse(&response, "transaction search")?;
        let server_now = response
            .header("date")
            .and_then(time::parse_http_date_ms)
            .unwrap_or_else(now_ms);
        Ok((page, server_now))
    }

    /// The message an earlier attempt at this one may have posted on the ticket: a reply or
    /// comment (as `visibility` says) by the integration user, with the same text, that
    /// `earlier` may take; the oldest when several do. RT keeps no idempotency key on
    /// messages, so the ticket's history is the only record of that attempt.
    ///
    /// Without a look-back (`None`) any such message counts, read from the oldest on: that is
    /// for the first message of a ticket a retried create found, which nothing but an attempt
    /// at that create posts (a create's look-back names tickets, not messages).
    fn earlier_message(
        &self,
        ticket_id: u64,
        visibility: Visibility,
        text: &str,
        earlier: Option<LookBack<'_>>,
    ) -> Result<Option<String>> {
        let query = changes::messages_query(ticket_id, visibility, &self.username);
        let order = match earlier {
            Some(_) => Order::Newest,
            None => Order::Oldest,
        };
        let mut candidates = Vec::new();
        for page in 1..=LOOK_BACK_PAGES {
            let (found, _) = self.transactions(&query, order, page)?;
            let mut reached_older = false;
            for txn in &found.items {
                let Some(earlier) = earlier else {
                    candidates.push(txn.id.0.clone());
                    continue;
                };
                let Some(created) = txn.created_ms() else {
                    continue;
                };
                if created < earlier.since_ms() {
                    reached_older = true;
                } else if earlier.may_be(&txn.id.0, created) {
                    candidates.push(txn.id.0.clone());
                }
            }
            if reached_older || found.next_page.is_none() {
                break;
            }
        }
        if candidates.is_empty() {
            return Ok(None);
        }
        let messages = self.messages(&candidates)?;
        if earlier.is_some() {
            // Read newest first; the oldest match is the answer.
            candidates.reverse();
        }
        Ok(candidates.into_iter().find(|id| {
            messages
                .get(id)
                .is_some_and(|message| changes::is_same_text(text, &message.body))
        }))
    }

    /// The ticket an earlier attempt at this create may have filed, when no idempotency key
    /// could go with it: among the requester's newest tickets in the queue, the newest with
    /// the same subject and external id (`None` when the external-id field does not apply)
    /// that `earlier` may take.
    fn earlier_ticket(
        &self,
        requester: &User,
        subject: &str,
        external_id: Option<(&str, &str)>,
        earlier: LookBack<'_>,
    ) -> Result<Option<String>> {
        // TicketSQL reads date literals in the user's time zone: the time bound is checked on
        // the dates RT returns (UTC) instead.
        let query = format!(
            "Queue = {} AND Requestor.id = {}",
            api::sql_quote(&self.queue),
            api::sql_quote(&requester.id.0)
        );
        for page in 1..=LOOK_BACK_TICKET_PAGES {
            let response = check(
                http::get(format!("{}/tickets", self.api))
                    .query("query", query.as_str())
                    .query("orderby", "id")
                    .query("order", "DESC")
                    .query("page", page.to_string())
                    .query("per_page", LOOK_BACK_TICKETS_PER_PAGE)
                    .query("fields", "Subject,Created,CustomFields")
                    .send()?,
            )?;
            let found: Page<Ticket> = parse(&response, "ticket search")?;
            for ticket in &found.items {
                let Some(created) = ticket.created_ms() else {
                    continue;
                };
                if created < earlier.since_ms() {
                    // Newest first: the rest are older still.
                    return Ok(None);
                }
                let same_subject = ticket
                    .subject
                    .as_deref()
                    .is_some_and(|kept| api::is_same_subject(subject, kept));
                let same_external_id = external_id.is_none_or(|(field, value)| {
                    ticket.custom_field(field).as_deref() == Some(value).filter(|v| !v.is_empty())
                });
                if same_subject && same_external_id && earlier.may_be(&ticket.id.0, created) {
                    return Ok(Some(ticket.id.0.clone()));
                }
            }
            if found.next_page.is_none() {
                return Ok(None);
            }
        }
        log_warn!(
            "stopped looking for an earlier attempt's ticket after the page limit",
            requester_id = requester.id,
            pages = LOOK_BACK_TICKET_PAGES
        );
        Ok(None)
    }

    /// The messages of comment transactions: each one's text and files, by transaction id.
    fn messages(&self, transaction_ids: &[String]) -> Result<HashMap<String, Message>> {
        let mut messages = HashMap::new();
        if transaction_ids.is_empty() {
            return Ok(messages);
        }
        // Conditions on one field are OR-ed: all the parts of all these transactions.
        let query: Vec<_> = transaction_ids
            .iter()
            .map(|id| json!({"field": "TransactionId", "value": id}))
            .collect();
        let parts: Vec<Part> = self.search_all(
            "attachments",
            "TransactionId,ContentType,Filename,ContentLength",
            &query,
            "message parts",
        )?;
        let mut by_txn: HashMap<&str, Vec<Part>> = HashMap::new();
        for part in &parts {
            by_txn
                .entry(part.transaction_id.0.as_str())
                .or_default()
                .push(part.clone());
        }
        let bodies: Vec<&Part> = by_txn
            .values()
            .filter_map(|parts| changes::body_part(parts))
            .collect();
        let query: Vec<_> = bodies
            .iter()
            .map(|part| json!({"field": "id", "value": part.id.0}))
            .collect();
        let contents: Vec<Part> = if query.is_empty() {
            Vec::new()
        } else {
            self.search_all("attachments", "Content,ContentType", &query, "message text")?
        };
        let text_of: HashMap<&str, String> = contents
            .iter()
            .map(|part| {
                let text = changes::message_text(
                    part.content.as_deref().unwrap_or_default(),
                    &part.content_type,
                );
                (part.id.0.as_str(), text)
            })
            .collect();
        for (txn, parts) in &by_txn {
            let body = changes::body_part(parts)
                .and_then(|part| text_of.get(part.id.0.as_str()).cloned())
                .unwrap_or_default();
            messages.insert(
                txn.to_string(),
                Message {
                    body,
                    attachments: changes::files(parts, &self.api),
                },
            );
        }
        Ok(messages)
    }

    /// The tickets among `ids` whose changes concern the hub, by id, from one search: not
    /// deleted (searches leave those out), and holding an external id where the external-id
    /// field applies (tickets agents open in RT directly have none).
    fn hub_tickets(&self, ids: &[&str]) -> Result<HashMap<String, Ticket>> {
        let mut unique: Vec<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        unique.sort_unstable();
        unique.dedup();
        if unique.is_empty() {
            return Ok(HashMap::new());
        }
        let query = unique
            .iter()
            .map(|id| format!("id = {id}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let response = check(
            http::get(format!("{}/tickets", self.api))
                .query("query", query)
                .query("per_page", "100")
                .query("fields", "Status,Priority,LastUpdated,CustomFields")
                .send()?,
        )?;
        let page: Page<Ticket> = parse(&response, "ticket search")?;
        Ok(page
            .items
            .into_iter()
            .filter(|ticket| !ticket.status.eq_ignore_ascii_case("deleted"))
            .filter(|ticket| {
                !ticket.has_custom_field(&self.external_id_field)
                    || ticket.custom_field(&self.external_id_field).is_some()
            })
            .map(|ticket| (ticket.id.0.clone(), ticket))
            .collect())
    }

    /// True when the user is staff (privileged). Users the integration user may not look up
    /// count as staff: customers reach RT only through the hub, under `.invalid` addresses.
    fn is_agent(&self, user_id: &str) -> bool {
        match self.find_user(user_id) {
            Ok(Some(user)) => user.privileged.is_none_or(|p| p > 0),
            Ok(None) => true,
            Err(err) => {
                log_debug!(
                    "could not look up a change's author",
                    user_id = user_id,
                    error = err
                );
                true
            }
        }
    }

    /// Every page of a JSON search of `collection` (at most 10 pages of 100).
    fn search_all<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        fields: &str,
        query: &[serde_json::Value],
        what: &str,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        for page in 1..=10 {
            let response = check(
                http::post(format!("{}/{collection}", self.api))
                    .query("fields", fields)
                    .query("per_page", "100")
                    .query("page", page.to_string())
                    .json(query)
                    .send()?,
            )?;
            let found: Page<T> = parse(&response, what)?;
            items.extend(found.items);
            if found.next_page.is_none() {
                return Ok(items);
            }
        }
        log_warn!("stopped reading a search after 10 pages", search = what);
        Ok(items)
    }
}

impl HelpdeskConnector for Rt {
    fn describe() -> Manifest {
        manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let site = Site::from(ctx)?;
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
        if let Some(user) = site.find_user(&login)? {
            return Ok(Requester {
                id: user.id.0,
                created: false,
            });
        }

        let real_name = identity
            .display_name
            .as_deref()
            .or(identity.handle.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or(&request.external_id);
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
        let response = http::post(format!("{}/user", site.api))
            .json(&body)
            .send()?;
        if response.status == 201 {
            let id = match response.header("location").and_then(api::id_from_location) {
                Some(id) => id,
                None => site
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
            let existing = match site.find_user(&login)? {
                Some(user) => Some(user),
                None => site.find_user_by_email(&login)?,
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
        let site = Site::from(ctx)?;
        let requester = site.known_user("requester-id", &ticket.requester_id)?;
        let queue = site.queue()?;
        let external_id_field = custom_field(&queue, &site.external_id_field);
        let idempotency_field = custom_field(&queue, &site.idempotency_field);

        let text = api::body_with_attachments(&ticket.body, &ticket.attachments);
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
            Some(_) => site.ticket_with_key(key)?,
            None => match LookBack::of(ticket.unconfirmed.as_ref()) {
                Some(earlier) => site.earlier_ticket(
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
                if site
                    .earlier_message(ticket_id, Visibility::Private, comment, None)?
                    .is_none()
                {
                    log_info!(
                        "an earlier attempt had created the ticket but not its first comment",
                        ticket_id = ticket_id
                    );
                    site.post_message(ticket_id, Visibility::Private, comment)?;
                }
            }
            return Ok(TicketRef {
                url: Some(site.ticket_url(&id)),
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
        let response = check(
            http::post(format!("{}/ticket", site.api))
                .json(&body)
                .send()?,
        )?;
        let id = created_id(&response, "ticket")?;
        if let Some(comment) = &first_comment {
            site.post_message(numeric_id("ticket-id", &id)?, Visibility::Private, comment)?;
        }
        Ok(TicketRef {
            url: Some(site.ticket_url(&id)),
            id,
            created: true,
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let site = Site::from(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let text = api::body_with_attachments(&comment.body, &comment.attachments);
        if text.trim().is_empty() {
            return Err(ConnectorError::invalid("body", "the comment is empty"));
        }
        let text = match &comment.author {
            // RT records every message under the account that posts it: name the customer.
            CommentAuthor::Requester(id) => api::attributed(&site.known_user("author", id)?, &text),
            CommentAuthor::Integration => text,
        };
        if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
            if let Some(id) =
                site.earlier_message(ticket_id, comment.visibility, &text, Some(earlier))?
            {
                log_info!(
                    "an earlier attempt had posted this message",
                    ticket_id = ticket_id,
                    transaction_id = id
                );
                return Ok(CommentRef { id });
            }
        }
        let id = site.post_message(ticket_id, comment.visibility, &text)?;
        Ok(CommentRef { id })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let site = Site::from(ctx)?;
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
            return site.ticket_state(&site.ticket(ticket_id)?);
        }
        let response = http::put(format!("{}/ticket/{ticket_id}", site.api))
            .json(&serde_json::Value::Object(changes))
            .send()?;
        if response.status == 404 {
            return Err(ConnectorError::not_found(format!(
                "RT has no ticket {ticket_id}"
            )));
        }
        let response = check(response)?;
        let said = api::messages(&response).join("; ");
        // RT answers 200 even when it refused a change (an invalid status, a lifecycle
        // transition it forbids): compare what it holds now.
        let ticket = site.ticket(ticket_id)?;
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
        site.ticket_state(&ticket)
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let site = Site::from(ctx)?;
        let ticket_id = numeric_id("ticket-id", ticket_id)?;
        site.ticket_state(&site.ticket(ticket_id)?)
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != CHANGES_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`; RT has only `{CHANGES_STREAM}`"),
            ));
        }
        let site = Site::from(ctx)?;
        let mut after = match cursor.as_deref() {
            Some(cursor) => paging::decode_cursor::<Cursor>(cursor)?.after,
            None => site.initial_cursor(ctx)?,
        };
        let (page, server_now) = site.transactions(
            &changes::transactions_query(&site.queue, after),
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
        let tickets = site.hub_tickets(&ticket_ids)?;

        // Who is staff takes a request per author; past the budget, the page ends early and
        // the rest comes with the next poll.
        let mut agents: HashMap<String, bool> = HashMap::new();
        let mut wanted = Vec::new();
        let mut processed = settled.len();
        for (index, (txn, meaning)) in settled.iter().zip(meanings).enumerate() {
            let (Some(meaning), Some(ticket)) = (meaning, tickets.get(&txn.object_id.0)) else {
                continue;
            };
            let is_echo = changes::is_echo(txn, &site.username);
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
                        let agent = site.is_agent(&creator.id.0);
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
        let mut messages = site.messages(&comment_ids)?;
        let changes: Vec<_> = wanted
            .into_iter()
            .map(|(txn, meaning, ticket, author, is_echo)| {
                let message = messages.remove(&txn.id.0).unwrap_or_default();
                changes::ticket_change(
                    txn,
                    meaning,
                    ticket.custom_field(&site.external_id_field),
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

/// The custom field `name` when it applies to the queue; otherwise `None`, with a warning,
/// since the ticket is then created without it.
fn custom_field<'a>(queue: &Queue, name: &'a str) -> Option<&'a str> {
    if name.is_empty() {
        return None;
    }
    if queue.has_custom_field(name) {
        Some(name)
    } else {
        log_warn!(
            "custom field does not apply to the queue; tickets go without it",
            field = name,
            queue = queue.name
        );
        None
    }
}

/// The id RT gave a new record: the `Location` header, else the body's `id`.
fn created_id(response: &Response, what: &str) -> Result<String> {
    if let Some(id) = response.header("location").and_then(api::id_from_location) {
        return Ok(id);
    }
    Ok(parse::<api::Created>(response, what)?.id.0)
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
    let host = format!("{{{}}}", settings::BASE_URL);
    Manifest {
        id: "rt".to_string(),
        name: "Request Tracker".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Helpdesk,
        description: "Files social conversations as Request Tracker 5 tickets through REST 2.0 \
                      and syncs agents' replies, comments and status changes back by polling \
                      the queue's transactions."
            .to_string(),
        settings: vec![
            SettingSpec {
                required: true,
                ..setting(
                    settings::BASE_URL,
                    "RT address",
                    "Scheme, host and port of RT's web server, such as https://rt.example.com.",
                )
            },
            setting(
                settings::WEB_PATH,
                "Web path",
                "RT's $WebPath when it is served below the root, such as /rt.",
            ),
            SettingSpec {
                default_value: Some(DEFAULT_QUEUE.to_string()),
                ..setting(
                    settings::QUEUE,
                    "Queue",
                    "The queue tickets are filed in and changes are read from.",
                )
            },
            SettingSpec {
                required: true,
                ..setting(
                    settings::USERNAME,
                    "Integration user",
                    "Login of the privileged RT user the hub works as; its own transactions \
                     are the hub's echoes. It needs SeeQueue, CreateTicket, ShowTicket, \
                     ShowTicketComments, ReplyToTicket, CommentOnTicket, ModifyTicket and \
                     SeeCustomField/ModifyCustomField on the queue, and AdminUsers to find \
                     and create requesters.",
                )
            },
            SettingSpec {
                secret: true,
                ..setting(
                    settings::PASSWORD,
                    "Password",
                    "The integration user's password (HTTP Basic auth). Set this or an auth \
                     token.",
                )
            },
            SettingSpec {
                secret: true,
                ..setting(
                    settings::AUTH_TOKEN,
                    "Auth token",
                    "An auth token of the integration user (Logged in as > Settings > Auth \
                     Tokens), sent as `Authorization: token ...`. Set this or a password.",
                )
            },
            SettingSpec {
                default_value: Some(DEFAULT_EXTERNAL_ID_FIELD.to_string()),
                ..setting(
                    settings::EXTERNAL_ID_FIELD,
                    "External id custom field",
                    "A single-value ticket custom field, applied to the queue, that keeps the \
                     hub's id of the conversation. Tickets without a value are not the hub's \
                     and are skipped when polling.",
                )
            },
            SettingSpec {
                default_value: Some(DEFAULT_IDEMPOTENCY_FIELD.to_string()),
                ..setting(
                    settings::IDEMPOTENCY_FIELD,
                    "Idempotency custom field",
                    "A single-value ticket custom field, applied to the queue, that makes \
                     ticket creation safe to retry.",
                )
            },
            SettingSpec {
                default_value: Some(DEFAULT_LOOKBACK_SECS.to_string()),
                ..setting(
                    settings::INITIAL_LOOKBACK_SECS,
                    "Initial look-back (seconds)",
                    "How far back the first poll of the ticket-changes stream starts.",
                )
            },
        ],
        http_hosts: vec![host.clone()],
        // Each rule applies only when its settings are filled in.
        credentials: vec![
            CredentialRule {
                host_pattern: host.clone(),
                placement: CredentialPlacement::Basic(BasicCredential {
                    username: format!("{{{}}}", settings::USERNAME),
                    password: format!("{{{}}}", settings::PASSWORD),
                }),
            },
            CredentialRule {
                host_pattern: host,
                placement: CredentialPlacement::Header(NamedTemplate {
                    name: "Authorization".to_string(),
                    value: format!("token {{{}}}", settings::AUTH_TOKEN),
                }),
            },
        ],
        streams: vec![StreamSpec {
            name: CHANGES_STREAM.to_string(),
            description: "Agents' replies and comments and status and priority changes in the \
                          queue, from RT's ticket transactions."
                .to_string(),
            default_schedule: "*/30 * * * * *".to_string(),
        }],
        accepts_webhooks: false,
        text_limits: Vec::new(),
        reply_windows: Vec::new(),
        oauth2: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(extra: &[(&str, &str)]) -> Context {
        let mut settings = vec![
            ("base_url", "http://127.0.0.1:8080/"),
            ("username", "switchboard"),
            ("password", "pw"),
        ];
        settings.extend_from_slice(extra);
        Context::new("i", settings)
    }

    #[test]
    fn the_site_comes_from_settings() {
        let site = Site::from(&ctx(&[])).expect("site");
        assert_eq!(site.api, "http://127.0.0.1:8080/REST/2.0");
        assert_eq!(site.queue, "General");
        assert_eq!(site.external_id_field, "Switchboard External ID");
        assert_eq!(
            site.ticket_url("7"),
            "http://127.0.0.1:8080/Ticket/Display.html?id=7"
        );
        let site = Site::from(&ctx(&[("web_path", "rt/"), ("queue", "Social")])).expect("site");
        assert_eq!(site.api, "http://127.0.0.1:8080/rt/REST/2.0");
        assert_eq!(site.queue, "Social");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let field = |ctx: Context| match Site::from(&ctx) {
            Err(ConnectorError::InvalidInput(f)) => f.field,
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            field(ctx(&[("base_url", "https://rt.example.com/rt")])),
            "base_url"
        );
        assert_eq!(field(ctx(&[("base_url", "rt.example.com")])), "base_url");
        assert_eq!(
            field(Context::new(
                "i",
                [("base_url", "http://rt"), ("password", "p")]
            )),
            "username"
        );
    }

    #[test]
    fn manifest_declares_one_host_and_both_credentials() {
        let manifest = manifest();
        assert_eq!(manifest.id, "rt");
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(manifest.http_hosts, vec!["{base_url}".to_string()]);
        assert!(!manifest.accepts_webhooks);
        assert_eq!(manifest.streams[0].name, "ticket-changes");
        assert!(matches!(
            &manifest.credentials[0].placement,
            CredentialPlacement::Basic(b) if b.username == "{username}" && b.password == "{password}"
        ));
        assert!(matches!(
            &manifest.credentials[1].placement,
            CredentialPlacement::Header(h) if h.name == "Authorization" && h.value == "token {auth_token}"
        ));
        let secret: Vec<&str> = manifest
            .settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(secret, ["password", "auth_token"]);
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
            Rt::handle_webhook(&ctx(&[]), request),
            Err(ConnectorError::Fatal(m)) if m.contains("no outbound webhooks")
        ));
    }
}
