//! The installation's typed settings, and every call the plugin makes to RT through the
//! host. What to send and how to read the answers is in `api.rs`; which record an earlier
//! attempt made is decided in `look_back.rs`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{LookBack, TicketState, TicketStatus};
use switchboard_plugin_sdk::http::{self, Response};
use switchboard_plugin_sdk::ids::numeric_id;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time;

use crate::api::{self, path_segment, Page, Part, Queue, Ticket, User, RT};
use crate::changes::{self, Message};
use crate::look_back;
use crate::manifest::{manifest, settings};

/// Transactions per poll page. A page costs three more requests (its tickets, its messages'
/// parts and texts) and one per author it names, all within one call's deadline; RT checks
/// the credentials with bcrypt on every request.
const TRANSACTIONS_PAGE_SIZE: &str = "50";

/// The transaction fields a poll reads; the creator is expanded to id, login and name.
const TRANSACTION_FIELDS: &str = "Type,Created,Creator,ObjectId,Field,NewValue";

/// Pages of the integration user's messages on a ticket that a retried comment reads, newest
/// first, while looking for an earlier attempt's.
const LOOK_BACK_PAGES: u32 = 4;

/// Pages of a requester's newest tickets, and tickets per page, that a retried create without
/// an idempotency key reads while looking for an earlier attempt's.
const LOOK_BACK_TICKET_PAGES: u32 = 2;
const LOOK_BACK_TICKETS_PER_PAGE: &str = "20";

/// The settings the plugin reads (the password or token is the host's to add).
#[derive(Debug, Deserialize)]
struct Settings {
    base_url: String,
    web_path: Option<String>,
    queue: String,
    username: String,
    external_id_field: String,
    pub idempotency_field: String,
    initial_lookback_secs: u64,
}

/// Which transactions a page starts with.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    Oldest,
    Newest,
}

/// Where and as whom: the settings every operation needs.
pub struct Account {
    /// `<base_url><web_path>/REST/2.0`.
    pub api: String,
    /// `<base_url><web_path>`, for links agents open.
    web: String,
    pub queue: String,
    pub username: String,
    pub external_id_field: String,
    pub idempotency_field: String,
    initial_lookback_secs: u64,
}

impl Account {
    /// The account of the installation `ctx` is for; bad or missing settings are
    /// `InvalidInput` naming the setting.
    pub fn of(ctx: &Context) -> Result<Self> {
        let settings: Settings = ctx.parse_settings_with_defaults(&manifest().settings)?;
        let base = settings.base_url.trim().trim_end_matches('/');
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
        let web_path = settings
            .web_path
            .as_deref()
            .map(|p| p.trim().trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        // Whether `password` or `auth_token` is set is not the plugin's to see (secrets go to
        // the host's credential rules only): with neither RT answers 401, which says to check
        // the credentials, and with both the host refuses to add two Authorization headers.
        let web = format!("{base}{web_path}");
        Ok(Account {
            api: format!("{web}/REST/2.0"),
            web,
            queue: settings.queue.trim().to_string(),
            username: settings.username.trim().to_string(),
            external_id_field: settings.external_id_field.trim().to_string(),
            idempotency_field: settings.idempotency_field.trim().to_string(),
            initial_lookback_secs: settings.initial_lookback_secs,
        })
    }

    pub fn ticket_url(&self, id: &str) -> String {
        format!("{}/Ticket/Display.html?id={id}", self.web)
    }

    /// A user by numeric id or login; `None` when RT has no such user.
    pub fn find_user(&self, key: &str) -> Result<Option<User>> {
        let response = http::get(format!("{}/user/{}", self.api, path_segment(key))).send()?;
        if response.status == 404 {
            return Ok(None);
        }
        RT.json(response, "user").map(Some)
    }

    /// A user by email address, through a JSON search.
    pub fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let query = json!([{"field": "EmailAddress", "value": email}]);
        let response = RT.send(
            http::post(format!("{}/users", self.api))
                .query("fields", "Name,RealName,EmailAddress")
                .query("per_page", "1")
                .json(&query),
        )?;
        let page: Page<User> = RT.parse(&response, "user search")?;
        Ok(page.items.into_iter().next())
    }

    /// The user the hub names as requester or author: `field` is at fault when RT has none.
    pub fn known_user(&self, field: &str, id: &str) -> Result<User> {
        let id = numeric_id(field, id)?;
        self.find_user(&id.to_string())?
            .ok_or_else(|| ConnectorError::invalid(field, format!("RT has no user with id {id}")))
    }

    pub fn queue(&self) -> Result<Queue> {
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
        RT.json(response, "queue")
    }

    pub fn ticket(&self, id: u64) -> Result<Ticket> {
        let response = RT.send(http::get(format!("{}/ticket/{id}", self.api)))?;
        RT.parse(&response, "ticket")
    }

    /// The ticket as the contract reports it; deleted tickets are not found.
    pub fn ticket_state(&self, ticket: &Ticket) -> Result<TicketState> {
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

    /// One page of a TicketSQL search of the tickets, with further parameters (`orderby`,
    /// `per_page`, `fields`, ...) after the query.
    fn search_tickets<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        params: &[(&str, &str)],
    ) -> Result<Page<T>> {
        let request = params.iter().fold(
            http::get(format!("{}/tickets", self.api)).query("query", query),
            |request, (name, value)| request.query(name, value),
        );
        RT.fetch(request, "ticket search")
    }

    /// The id of a ticket of the queue whose idempotency field holds `key`.
    pub fn ticket_with_key(&self, key: &str) -> Result<Option<String>> {
        let query = format!(
            "Queue = {} AND {} = {}",
            api::sql_quote(&self.queue),
            api::sql_quote(&format!("CF.{{{}}}", self.idempotency_field)),
            api::sql_quote(key)
        );
        let page: Page<api::Created> =
            self.search_tickets(&query, &[("orderby", "id"), ("per_page", "1")])?;
        Ok(page.items.into_iter().next().map(|t| t.id.0))
    }

    /// Posts a reply (`correspond`) or a comment to a ticket; returns the transaction id.
    pub fn post_message(
        &self,
        ticket_id: u64,
        visibility: Visibility,
        text: &str,
    ) -> Result<String> {
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
        let response = RT.check(response)?;
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
    pub fn initial_cursor(&self) -> Result<u64> {
        let lookback = self.initial_lookback_secs;
        let since = now_ms().saturating_sub(lookback.saturating_mul(1000));
        let query = json!([{
            "field": "Created", "operator": "<", "value": time::format_utc_datetime_secs(since / 1000)
        }]);
        let response = RT.send(
            http::post(format!("{}/transactions", self.api))
                .query("orderby", "id")
                .query("order", "DESC")
                .query("per_page", "1")
                .json(&query),
        )?;
        let page: Page<api::Created> = RT.parse(&response, "transaction search")?;
        Ok(page
            .items
            .first()
            .and_then(|t| t.id.0.parse().ok())
            .unwrap_or(0))
    }

    /// One page (from 1) of the ticket transactions that TransactionSQL `query` selects, by
    /// id in `order`, with the fields changes are made of; and RT's clock when it answered
    /// (its `Date` header).
    pub fn transactions(
        &self,
        query: &str,
        order: Order,
        page: u32,
    ) -> Result<(Page<api::Transaction>, u64)> {
        let response = RT.send(
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
                .query("fields[Creator]", "id,Name,RealName"),
        )?;
        let page = RT.parse(&response, "transaction search")?;
        let server_now = response
            .header("date")
            .and_then(time::parse_http_date_secs)
            .and_then(|secs| secs.checked_mul(1000))
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
    pub fn earlier_message(
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
                .is_some_and(|message| look_back::is_same_message(text, &message.body))
        }))
    }

    /// The ticket an earlier attempt at this create may have filed, when no idempotency key
    /// could go with it: among the requester's newest tickets in the queue, the newest with
    /// the same subject and external id (`None` when the external-id field does not apply)
    /// that `earlier` may take.
    pub fn earlier_ticket(
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
            let found: Page<Ticket> = self.search_tickets(
                &query,
                &[
                    ("orderby", "id"),
                    ("order", "DESC"),
                    ("page", &page.to_string()),
                    ("per_page", LOOK_BACK_TICKETS_PER_PAGE),
                    ("fields", "Subject,Created,CustomFields"),
                ],
            )?;
            for ticket in &found.items {
                let Some(created) = ticket.created_ms() else {
                    continue;
                };
                if created < earlier.since_ms() {
                    // Newest first: the rest are older still.
                    return Ok(None);
                }
                if look_back::is_earlier_ticket(ticket, created, subject, external_id, earlier) {
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
    pub fn messages(&self, transaction_ids: &[String]) -> Result<HashMap<String, Message>> {
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
    pub fn hub_tickets(&self, ids: &[&str]) -> Result<HashMap<String, Ticket>> {
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
        let page: Page<Ticket> = self.search_tickets(
            &query,
            &[
                ("per_page", "100"),
                ("fields", "Status,Priority,LastUpdated,CustomFields"),
            ],
        )?;
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
    pub fn is_agent(&self, user_id: &str) -> bool {
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
    pub fn search_all<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        fields: &str,
        query: &[serde_json::Value],
        what: &str,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        for page in 1..=10 {
            let response = RT.send(
                http::post(format!("{}/{collection}", self.api))
                    .query("fields", fields)
                    .query("per_page", "100")
                    .query("page", page.to_string())
                    .json(query),
            )?;
            let found: Page<T> = RT.parse(&response, what)?;
            items.extend(found.items);
            if found.next_page.is_none() {
                return Ok(items);
            }
        }
        log_warn!("stopped reading a search after 10 pages", search = what);
        Ok(items)
    }
}

impl Account {
    /// `POST /user` with `body`; the answer, whatever its status, since a 400 may mean the
    /// user exists already.
    pub fn create_user(&self, body: &serde_json::Value) -> Result<Response> {
        http::post(format!("{}/user", self.api)).json(body).send()
    }

    /// Files a ticket with `body`; answers its id.
    pub fn create_ticket(&self, body: &serde_json::Value) -> Result<String> {
        let response = RT.send(http::post(format!("{}/ticket", self.api)).json(body))?;
        created_id(&response, "ticket")
    }

    /// `PUT /ticket/{id}` with the changed fields; answers RT's messages about them.
    pub fn put_ticket(
        &self,
        ticket_id: u64,
        changes: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<String>> {
        let response = http::put(format!("{}/ticket/{ticket_id}", self.api))
            .json(&serde_json::Value::Object(changes))
            .send()?;
        if response.status == 404 {
            return Err(ConnectorError::not_found(format!(
                "RT has no ticket {ticket_id}"
            )));
        }
        Ok(api::messages(&RT.check(response)?))
    }
}

/// The custom field `name` when it applies to the queue; otherwise `None`, with a warning,
/// since the ticket is then created without it.
pub fn custom_field<'a>(queue: &Queue, name: &'a str) -> Option<&'a str> {
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
    Ok(RT.parse::<api::Created>(response, what)?.id.0)
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
    fn the_account_comes_from_settings() {
        let account = Account::of(&ctx(&[])).expect("account");
        assert_eq!(account.api, "http://127.0.0.1:8080/REST/2.0");
        assert_eq!(account.queue, "General");
        assert_eq!(account.external_id_field, "Switchboard External ID");
        assert_eq!(
            account.ticket_url("7"),
            "http://127.0.0.1:8080/Ticket/Display.html?id=7"
        );
        let account =
            Account::of(&ctx(&[("web_path", "rt/"), ("queue", "Social")])).expect("account");
        assert_eq!(account.api, "http://127.0.0.1:8080/rt/REST/2.0");
        assert_eq!(account.queue, "Social");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let field = |ctx: Context| match Account::of(&ctx) {
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
}
