//! The installation's typed settings, and every call the plugin makes to Freshdesk through
//! the host. What to send and how to read the answers is in `api.rs`; which record an earlier
//! attempt made is decided in `look_back.rs`.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{LookBack, TicketChange};
use switchboard_plugin_sdk::http::{self, Response};
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time::{format_rfc3339_secs, parse_http_date_secs};

use crate::api::{
    Agent, Contact, ContactSearch, Conversation, Created, PollCursor, StatusMapping, Ticket,
    FRESHDESK,
};
use crate::changes;
use crate::look_back::{ExpectedConversation, ExpectedTicket};
use crate::manifest::{manifest, settings};

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

/// The settings the plugin reads (the API key is the host's to add).
#[derive(Debug, Deserialize)]
struct Settings {
    domain: Option<String>,
    base_url: Option<String>,
    source: u64,
    on_hold_status: Option<u64>,
    external_id_field: Option<String>,
    webhook_secret: Option<String>,
    webhook_secret_header: String,
    integration_agent_id: Option<u64>,
    initial_lookback_secs: u64,
}

/// One Freshdesk account, as an installation's settings describe it.
#[derive(Debug)]
pub struct Account {
    /// The API base: `base_url` when set (proxies, tests), else the account's own host. Agents
    /// open tickets under it too.
    base: String,
    /// The source number new tickets get.
    pub source: u64,
    pub statuses: StatusMapping,
    /// The custom field that keeps the hub's external id, when the admin made one.
    pub external_id_field: Option<String>,
    webhook_secret: Option<String>,
    webhook_secret_header: String,
    integration_agent_id: Option<u64>,
    initial_lookback_secs: u64,
}

impl Account {
    /// The account of the installation `ctx` is for; bad or missing settings are
    /// `InvalidInput` naming the setting.
    pub fn of(ctx: &Context) -> Result<Self> {
        let settings: Settings = ctx.parse_settings_with_defaults(&manifest().settings)?;
        let base = match &settings.base_url {
            Some(base) => base.trim().trim_end_matches('/').to_string(),
            None => format!(
                "https://{}.freshdesk.com",
                domain(settings.domain.as_deref())?
            ),
        };
        let on_hold = match settings.on_hold_status {
            Some(status) if status < 6 => {
                return Err(ConnectorError::invalid(
                    settings::ON_HOLD_STATUS,
                    format!("expected the number of a custom status (6 or more), got `{status}`"),
                ))
            }
            on_hold => on_hold,
        };
        Ok(Account {
            base,
            source: settings.source,
            statuses: StatusMapping { on_hold },
            external_id_field: settings
                .external_id_field
                .map(|field| field.trim().to_string()),
            webhook_secret: settings.webhook_secret,
            webhook_secret_header: settings.webhook_secret_header,
            integration_agent_id: settings.integration_agent_id,
            initial_lookback_secs: settings.initial_lookback_secs,
        })
    }

    /// Where agents open ticket `id`.
    pub fn ticket_url(&self, id: u64) -> String {
        format!("{}/a/tickets/{id}", self.base)
    }

    /// The poll cursor of a first poll: the initial look-back from now.
    pub fn first_cursor(&self) -> PollCursor {
        PollCursor {
            since: (now_ms() / 1000).saturating_sub(self.initial_lookback_secs),
            page: 1,
        }
    }

    /// Freshdesk automation webhooks are not signed: the rule sends a shared secret in a
    /// custom header (or as the basic-auth password), compared in constant time.
    ///
    /// Requests are refused when no secret is configured: anyone who learns the URL could
    /// otherwise make the hub read tickets on their schedule.
    pub fn verify_webhook(&self, request: &WebhookRequest) -> Result<()> {
        let Some(secret) = &self.webhook_secret else {
            return Err(ConnectorError::unauthorized(
                "webhook refused: set the `webhook_secret` setting and send it from the \
                 Freshdesk automation rule",
            ));
        };
        let header_name = self.webhook_secret_header.as_str();
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

    /// The API key's agent: from the setting, else from `GET /agents/me`.
    pub fn integration_agent_id(&self) -> Result<u64> {
        if let Some(id) = self.integration_agent_id {
            return Ok(id);
        }
        let agent: Agent = FRESHDESK.fetch(
            http::get(format!("{}/api/v2/agents/me", self.base)),
            "agent",
        )?;
        Ok(agent.id)
    }

    /// The contact with this `unique_external_id`, if any.
    pub fn contact_by_external_id(&self, external_id: &str) -> Result<Option<u64>> {
        let contacts: Vec<Contact> = FRESHDESK.fetch(
            http::get(format!("{}/api/v2/contacts", self.base))
                .query("unique_external_id", external_id),
            "contact list",
        )?;
        Ok(contacts.first().map(|c| c.id))
    }

    /// `POST /contacts` with `body`; the answer, whatever its status, since a 409 says who
    /// holds the id already.
    pub fn create_contact(&self, body: &serde_json::Value) -> Result<Response> {
        http::post(format!("{}/api/v2/contacts", self.base))
            .json(body)
            .send()
    }

    /// Uses the contact that already holds the X user id, giving it the hub's external id when
    /// it has none so the next lookup finds it directly.
    pub fn adopt_twitter_contact(
        &self,
        holder: Option<u64>,
        twitter_id: &str,
        external_id: &str,
    ) -> Result<u64> {
        let base = &self.base;
        let contact: Contact = match holder {
            Some(id) => {
                FRESHDESK.fetch(http::get(format!("{base}/api/v2/contacts/{id}")), "contact")?
            }
            None => {
                // Search lags behind creates by minutes; a miss is worth retrying later.
                let query = format!("\"twitter_id:'{}'\"", twitter_id.replace('\'', ""));
                let found: ContactSearch = FRESHDESK.fetch(
                    http::get(format!("{base}/api/v2/search/contacts")).query("query", &query),
                    "contact search",
                )?;
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
                if let Some(id) = self.contact_by_external_id(external_id)? {
                    return Ok(id);
                }
            }
            FRESHDESK.check(response)?;
        }
        Ok(contact.id)
    }

    /// Files a ticket with `body`.
    pub fn create_ticket(&self, body: &serde_json::Value) -> Result<Ticket> {
        FRESHDESK.fetch(
            http::post(format!("{}/api/v2/tickets", self.base)).json(body),
            "ticket",
        )
    }

    /// Ticket `ticket_id` as it is now.
    pub fn ticket(&self, ticket_id: u64) -> Result<Ticket> {
        FRESHDESK.fetch(
            http::get(format!("{}/api/v2/tickets/{ticket_id}", self.base)),
            "ticket",
        )
    }

    /// `PUT /tickets/{id}` with the changed fields.
    pub fn update_ticket(
        &self,
        ticket_id: u64,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Ticket> {
        FRESHDESK.fetch(
            http::put(format!("{}/api/v2/tickets/{ticket_id}", self.base)).json(changes),
            "ticket",
        )
    }

    /// One page of the ticket list ordered by update time, from `cursor`; with whether a next
    /// page exists and Freshdesk's clock (its `Date`, in Unix seconds).
    pub fn changed_tickets(&self, cursor: &PollCursor) -> Result<(Vec<Ticket>, bool, Option<u64>)> {
        let response = FRESHDESK.send(
            http::get(format!("{}/api/v2/tickets", self.base))
                .query("updated_since", format_rfc3339_secs(cursor.since))
                .query("order_by", "updated_at")
                .query("order_type", "asc")
                .query("per_page", TICKETS_PAGE_SIZE)
                .query("page", cursor.page.to_string()),
        )?;
        let tickets: Vec<Ticket> = FRESHDESK.parse(&response, "ticket list")?;
        let more = response
            .header("link")
            .and_then(paging::next_link)
            .is_some();
        let server_now = response.header("date").and_then(parse_http_date_secs);
        Ok((tickets, more, server_now))
    }

    /// Every conversation of a ticket, following `Link` headers.
    pub fn all_conversations(&self, ticket_id: u64) -> Result<Vec<Conversation>> {
        let mut conversations = Vec::new();
        let mut request = http::get(format!(
            "{}/api/v2/tickets/{ticket_id}/conversations",
            self.base
        ))
        .query("per_page", CONVERSATIONS_PAGE_SIZE);
        for _ in 0..MAX_CONVERSATION_PAGES {
            let response = FRESHDESK.send(request)?;
            let page: Vec<Conversation> = FRESHDESK.parse(&response, "conversations")?;
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

    /// Posts a reply (`endpoint` `reply`) or note (`notes`) and answers its id.
    pub fn post_conversation(
        &self,
        ticket_id: u64,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> Result<u64> {
        let created: Created = FRESHDESK.fetch(
            http::post(format!(
                "{}/api/v2/tickets/{ticket_id}/{endpoint}",
                self.base
            ))
            .json(body),
            "conversation",
        )?;
        Ok(created.id)
    }

    /// The ticket an earlier attempt filed with `body` (the `POST /tickets` body), if any.
    ///
    /// Lists the requester's tickets newest first, from the database (search lags behind
    /// creates), with their descriptions to compare. `updated_since` also lifts the list's
    /// default of the last 30 days: a ticket created after the look-back's start was updated
    /// after it too.
    pub fn earlier_ticket(
        &self,
        body: &serde_json::Value,
        earlier: LookBack<'_>,
    ) -> Result<Option<u64>> {
        let expected = ExpectedTicket::of(body).ok_or_else(|| {
            ConnectorError::fatal("the ticket body lacks requester, subject or text")
        })?;
        let since_ms = earlier.since_ms();
        let mut request = http::get(format!("{}/api/v2/tickets", self.base))
            .query("requester_id", expected.requester_id.to_string())
            .query("updated_since", format_rfc3339_secs(since_ms / 1000))
            .query("order_by", "created_at")
            .query("order_type", "desc")
            .query("include", "description")
            .query("per_page", LOOK_BACK_PAGE_SIZE);
        for _ in 0..MAX_LOOK_BACK_PAGES {
            let response = FRESHDESK.send(request)?;
            let page: Vec<Ticket> = FRESHDESK.parse(&response, "ticket list")?;
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

    /// The newest conversation of the ticket that is `expected` and, with a look-back, that
    /// the earlier attempt may have added.
    pub fn earlier_conversation(
        &self,
        ticket_id: u64,
        expected: &ExpectedConversation,
        earlier: Option<LookBack<'_>>,
    ) -> Result<Option<u64>> {
        let conversations = self.all_conversations(ticket_id)?;
        Ok(expected.newest_in(&conversations, earlier))
    }

    /// The agent's name, for the changes an agent wrote. Names are a nicety: failures leave it
    /// out.
    fn agent_name(&self, id: u64) -> Option<String> {
        let agent: Result<Agent> = FRESHDESK.fetch(
            http::get(format!("{}/api/v2/agents/{id}", self.base)),
            "agent",
        );
        match agent {
            Ok(agent) => agent.contact.and_then(|c| c.name),
            Err(err) => {
                log_debug!("no name for an agent", agent_id = id, error = err);
                None
            }
        }
    }
}

/// The account's domain, checked: `acme`, not `acme.freshdesk.com` (the host pattern adds it).
fn domain(domain: Option<&str>) -> Result<&str> {
    let Some(domain) = domain.map(str::trim) else {
        return Err(ConnectorError::invalid(
            settings::DOMAIN,
            "setting `domain` is required",
        ));
    };
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ConnectorError::invalid(
            settings::DOMAIN,
            format!(
                "expected the account name only, such as `acme` for acme.freshdesk.com, got \
                 `{domain}`"
            ),
        ));
    }
    Ok(domain)
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

/// Reads tickets' conversations and maps them to changes, remembering what it looked up
/// (the integration agent, agents' names) for the rest of the call.
pub struct ChangeReader<'a> {
    account: &'a Account,
    integration_agent: Option<u64>,
    agent_names: HashMap<u64, String>,
    unnamed: Vec<u64>,
}

impl<'a> ChangeReader<'a> {
    pub fn new(account: &'a Account) -> Self {
        Self {
            account,
            integration_agent: None,
            agent_names: HashMap::new(),
            unnamed: Vec::new(),
        }
    }

    pub fn changes_of(&mut self, ticket: &Ticket) -> Result<Vec<TicketChange>> {
        let conversations = match self.account.all_conversations(ticket.id) {
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
            self.integration_agent = Some(self.account.integration_agent_id()?);
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
            statuses: self.account.statuses,
            external_field: self.account.external_id_field.as_deref(),
        };
        Ok(changes::ticket_changes(ticket, &conversations, &ctx))
    }

    /// Looks an agent's name up once per call.
    fn name_agent(&mut self, id: u64) {
        if self.agent_names.contains_key(&id) || self.unnamed.contains(&id) {
            return;
        }
        match self.account.agent_name(id) {
            Some(name) => {
                self.agent_names.insert(id, name);
            }
            None => self.unnamed.push(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DEFAULT_SOURCE;

    fn webhook_request(headers: &[(&str, &str)]) -> WebhookRequest {
        webhook::post(headers, br#"{"ticket_id": 5}"#.as_slice())
    }

    fn account(extra: &[(&str, &str)]) -> Result<Account> {
        let mut settings = vec![("domain", "acme")];
        settings.extend_from_slice(extra);
        Account::of(&Context::new("i", settings))
    }

    fn invalid_field(result: Result<Account>) -> String {
        match result {
            Err(ConnectorError::InvalidInput(f)) => f.field,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn base_url_and_domain() {
        let plain = account(&[]).expect("account");
        assert_eq!(plain.base, "https://acme.freshdesk.com");
        assert_eq!(
            plain.ticket_url(7),
            "https://acme.freshdesk.com/a/tickets/7"
        );
        let proxied = account(&[("base_url", "http://127.0.0.1:9/ ")]).expect("account");
        assert_eq!(proxied.base, "http://127.0.0.1:9");
        assert_eq!(proxied.ticket_url(7), "http://127.0.0.1:9/a/tickets/7");
        let full = Account::of(&Context::new("i", [("domain", "acme.freshdesk.com")]));
        assert_eq!(invalid_field(full), "domain");
        assert_eq!(
            invalid_field(Account::of(&Context::new("i", [("x", "y")]))),
            "domain"
        );
    }

    #[test]
    fn settings_are_typed_and_checked() {
        let defaults = account(&[]).expect("account");
        assert_eq!(defaults.source, DEFAULT_SOURCE);
        assert_eq!(defaults.statuses.on_hold, None);
        assert_eq!(
            defaults.initial_lookback_secs,
            switchboard_plugin_sdk::helpdesk::DEFAULT_INITIAL_LOOKBACK_SECS
        );
        let set = account(&[
            ("source", "101"),
            ("on_hold_status", "7"),
            ("integration_agent_id", "9"),
            ("external_id_field", " cf_hub "),
        ])
        .expect("account");
        assert_eq!(set.source, 101);
        assert_eq!(set.statuses.on_hold, Some(7));
        assert_eq!(set.integration_agent_id().ok(), Some(9));
        assert_eq!(set.external_id_field.as_deref(), Some("cf_hub"));
        assert_eq!(invalid_field(account(&[("source", "chat")])), "source");
        assert_eq!(
            invalid_field(account(&[("on_hold_status", "3")])),
            "on_hold_status"
        );
        assert_eq!(
            invalid_field(account(&[("on_hold_status", "x")])),
            "on_hold_status"
        );
        assert_eq!(
            invalid_field(account(&[("initial_lookback_secs", "-1")])),
            "initial_lookback_secs"
        );
    }

    #[test]
    fn webhook_secret_in_a_header_or_basic_auth() {
        let secret = account(&[("webhook_secret", "s3cret")]).expect("account");
        assert!(secret
            .verify_webhook(&webhook_request(&[("x-switchboard-secret", "s3cret")]))
            .is_ok());
        // base64("freshdesk:s3cret")
        assert!(secret
            .verify_webhook(&webhook_request(&[(
                "authorization",
                "Basic ZnJlc2hkZXNrOnMzY3JldA=="
            )]))
            .is_ok());
        for headers in [
            vec![("x-switchboard-secret", "s3cre")],
            vec![("x-other", "s3cret")],
            vec![("authorization", "Bearer s3cret")],
            vec![],
        ] {
            assert!(matches!(
                secret.verify_webhook(&webhook_request(&headers)),
                Err(ConnectorError::Unauthorized(_))
            ));
        }
        let custom = account(&[
            ("webhook_secret", "s3cret"),
            ("webhook_secret_header", "X-Hook-Token"),
        ])
        .expect("account");
        assert!(custom
            .verify_webhook(&webhook_request(&[("x-hook-token", "s3cret")]))
            .is_ok());
        assert!(matches!(
            account(&[])
                .expect("account")
                .verify_webhook(&webhook_request(&[("x-switchboard-secret", "s3cret")])),
            Err(ConnectorError::Unauthorized(m)) if m.contains("webhook_secret")
        ));
        assert_eq!(basic_password("Basic YTpi").as_deref(), Some("b"));
        assert_eq!(basic_password("Basic a*b"), None);
    }
}
