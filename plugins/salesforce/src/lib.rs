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
//!   not found there (`retry.rs`).
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

mod api;
mod changes;
mod mapping;
mod retry;
mod time;

use serde_json::{json, Map, Value};
use switchboard_plugin_sdk::helpdesk::{
    CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket, PollPage,
    Requester, RequesterRequest, TicketChange, TicketPriority, TicketRef, TicketState,
    TicketStatus, TicketUpdate, WebhookOutcome,
};
use switchboard_plugin_sdk::http::{self, Request, Response};
use switchboard_plugin_sdk::prelude::*;

use crate::api::{check, parse, path_segment, record_id, QueryPage, Upserted};
use crate::changes::{Cursor, Mark, Reading};
use crate::mapping::{OriginMap, PicklistMap};

/// Setting keys.
mod settings {
    pub const INSTANCE_URL: &str = "instance_url";
    pub const LOGIN_URL: &str = "login_url";
    pub const API_VERSION: &str = "api_version";
    pub const CLIENT_NAME: &str = "client_name";
    pub const CONTACT_EXTERNAL_ID_FIELD: &str = "contact_external_id_field";
    pub const CASE_EXTERNAL_ID_FIELD: &str = "case_external_id_field";
    pub const STATUS_MAP: &str = "status_map";
    pub const PRIORITY_MAP: &str = "priority_map";
    pub const ORIGIN_MAP: &str = "origin_map";
    pub const INTEGRATION_USER_ID: &str = "integration_user_id";
    pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";
    // Read by the host's OAuth code, not by the plugin.
    pub const OAUTH_CLIENT_ID: &str = "oauth_client_id";
    pub const OAUTH_CLIENT_SECRET: &str = "oauth_client_secret";
    pub const OAUTH_JWT_PRIVATE_KEY: &str = "oauth_jwt_private_key";
    pub const OAUTH_JWT_USERNAME: &str = "oauth_jwt_username";
}

const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
const DEFAULT_API_VERSION: &str = "v60.0";
const DEFAULT_CLIENT_NAME: &str = "switchboard";
const DEFAULT_EXTERNAL_ID_FIELD: &str = "Switchboard_External_Id__c";
const DEFAULT_LOOKBACK_SECS: u64 = 3600;

/// The one pollable stream.
const TICKET_EVENTS_STREAM: &str = "ticket-events";

/// Rows per query batch: a batch of long CaseComments stays well under the host's response
/// cap (200 × 4 KB), where Salesforce's default of 2,000 might not.
const QUERY_BATCH_SIZE: &str = "batchSize=200";

/// CaseComment bodies are limited to 4,000 bytes.
const COMMENT_MAX_BYTES: usize = 4000;
/// Case Subject and Contact LastName lengths.
const SUBJECT_MAX_CHARS: usize = 255;
const LAST_NAME_MAX_CHARS: usize = 80;
const DESCRIPTION_MAX_CHARS: usize = 32_000;

/// Warn when the day's API allocation is this full (percent).
const USAGE_WARNING_PERCENT: u64 = 90;

/// The Salesforce Service Cloud connector.
pub struct Salesforce;

/// An installation's settings, checked once per call.
struct Org {
    instance: String,
    version: String,
    client: String,
    contact_field: String,
    case_field: String,
}

impl Org {
    fn from(ctx: &Context) -> Result<Self> {
        let instance = ctx
            .require(settings::INSTANCE_URL)?
            .trim()
            .trim_end_matches('/');
        if !(instance.starts_with("https://") || instance.starts_with("http://")) {
            return Err(ConnectorError::invalid(
                settings::INSTANCE_URL,
                format!("`{instance}` is not a URL like https://acme.my.salesforce.com"),
            ));
        }
        let raw_version = ctx
            .setting_or(settings::API_VERSION, DEFAULT_API_VERSION)
            .trim();
        let number = raw_version.trim_start_matches(['v', 'V']);
        let valid = number.split_once('.').is_some_and(|(major, minor)| {
            major.parse::<u32>().is_ok_and(|m| m >= 20) && minor.parse::<u32>().is_ok()
        });
        if !valid {
            return Err(ConnectorError::invalid(
                settings::API_VERSION,
                format!("`{raw_version}` is not an API version like v60.0"),
            ));
        }
        let field = |key: &str| -> Result<String> {
            Ok(api::api_name(key, ctx.setting_or(key, DEFAULT_EXTERNAL_ID_FIELD))?.to_string())
        };
        Ok(Self {
            instance: instance.to_string(),
            version: format!("v{number}"),
            client: ctx
                .setting_or(settings::CLIENT_NAME, DEFAULT_CLIENT_NAME)
                .trim()
                .to_string(),
            contact_field: field(settings::CONTACT_EXTERNAL_ID_FIELD)?,
            case_field: field(settings::CASE_EXTERNAL_ID_FIELD)?,
        })
    }

    /// `{instance}/services/data/v60.0{path}`.
    fn url(&self, path: &str) -> String {
        format!("{}/services/data/{}{path}", self.instance, self.version)
    }

    /// Every request names the client, so Salesforce (and CDC's `changeOrigin`) can tell the
    /// hub's writes apart.
    fn request(&self, request: Request) -> Request {
        request
            .header("Accept", "application/json")
            .header("Sforce-Call-Options", format!("client={}", self.client))
    }

    fn send(&self, request: Request) -> Result<Response> {
        let response = self.request(request).send()?;
        if let Some((used, max)) = api::api_usage(&response) {
            if max > 0 && used * 100 >= max * USAGE_WARNING_PERCENT {
                log_warn!(
                    "Salesforce daily API allocation nearly used",
                    used = used,
                    max = max
                );
            }
        }
        Ok(response)
    }

    fn statuses(ctx: &Context) -> Result<PicklistMap<TicketStatus>> {
        PicklistMap::statuses(
            settings::STATUS_MAP,
            ctx.setting_or(settings::STATUS_MAP, mapping::DEFAULT_STATUS_MAP),
        )
    }

    fn priorities(ctx: &Context) -> Result<PicklistMap<TicketPriority>> {
        PicklistMap::priorities(
            settings::PRIORITY_MAP,
            ctx.setting_or(settings::PRIORITY_MAP, mapping::DEFAULT_PRIORITY_MAP),
        )
    }

    /// Upserts `object` by its external id field; returns the record id and whether it was
    /// created.
    fn upsert(
        &self,
        object: &str,
        field: &str,
        setting: &str,
        value: &str,
        body: &Value,
    ) -> Result<(String, bool)> {
        let path = format!("/sobjects/{object}/{field}/{}", path_segment(value));
        let response = self.send(http::patch(self.url(&path)).json(body))?;
        match api::upserted(&response, object, field, value, setting)? {
            Upserted::Created(id) => Ok((id, true)),
            Upserted::Updated(Some(id)) => Ok((id, false)),
            // API v45.0 and older answer 204 without the id: read it by the external id.
            Upserted::Updated(None) => {
                let read = check(self.send(http::get(self.url(&format!("{path}?fields=Id"))))?)?;
                let record: Value = parse(&read, object)?;
                let id = api::text(&record, "Id").ok_or_else(|| {
                    ConnectorError::fatal(format!("Salesforce returned a {object} without an Id"))
                })?;
                Ok((id.to_string(), false))
            }
        }
    }

    fn case_state(&self, ctx: &Context, case_id: &str) -> Result<TicketState> {
        let fields = format!(
            "Id,Status,IsClosed,Priority,SystemModstamp,{}",
            self.case_field
        );
        let response = check(self.send(http::get(
            self.url(&format!("/sobjects/Case/{case_id}?fields={fields}")),
        ))?)?;
        let record: Value = parse(&response, "Case")?;
        let statuses = Self::statuses(ctx)?;
        let priorities = Self::priorities(ctx)?;
        Ok(TicketState {
            id: api::text(&record, "Id").unwrap_or(case_id).to_string(),
            status: statuses.read(
                api::text(&record, "Status"),
                record.get("IsClosed").and_then(Value::as_bool),
            ),
            priority: priorities.read(api::text(&record, "Priority")),
            external_id: api::text(&record, &self.case_field).map(str::to_string),
            updated_at: api::text(&record, "SystemModstamp")
                .and_then(time::parse_ms)
                .unwrap_or(0),
        })
    }

    /// The integration user's id: the setting, else the token's user from userinfo.
    fn integration_user(&self, ctx: &Context) -> Result<String> {
        if let Some(id) = ctx.setting(settings::INTEGRATION_USER_ID) {
            return record_id(settings::INTEGRATION_USER_ID, id, "005", "User");
        }
        let response = self.send(http::get(format!(
            "{}/services/oauth2/userinfo",
            self.instance
        )))?;
        if response.status == 401 || response.status == 403 {
            return Err(ConnectorError::unauthorized(
                "Salesforce did not accept the session for userinfo; reconnect the installation",
            ));
        }
        let info: Value = parse(&check(response)?, "userinfo")?;
        api::text(&info, "user_id")
            .map(str::to_string)
            .ok_or_else(|| ConnectorError::fatal("Salesforce userinfo has no user_id"))
    }

    /// Every row of a query, batch by batch.
    fn query_all(&self, soql: &str) -> Result<Vec<Value>> {
        let request = http::get(self.url("/query"))
            .query("q", soql)
            .header("Sforce-Query-Options", QUERY_BATCH_SIZE);
        let mut page: QueryPage = parse(&check(self.send(request)?)?, "query result")?;
        let mut records = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            let response = self.send(http::get(format!("{}{next}", self.instance)))?;
            page = parse(&check(response)?, "query batch")?;
            records.append(&mut page.records);
        }
        Ok(records)
    }

    /// One batch of a query: the next batch of a running one, else a new one.
    fn query_batch(&self, mark: &mut Mark, soql: impl Fn(&str) -> String) -> Result<QueryPage> {
        if let Some(next) = mark.next.clone() {
            let response = self.send(http::get(format!("{}{next}", self.instance)))?;
            // An idle locator expires after 15 minutes: start over from the mark.
            let expired = response.status == 400
                && api::first_error(&response.body)
                    .is_some_and(|e| e.error_code == "INVALID_QUERY_LOCATOR");
            if !expired {
                return parse(&check(response)?, "query batch");
            }
            log_info!("query locator expired; querying again");
            mark.next = None;
        }
        let request = http::get(self.url("/query"))
            .query("q", soql(&mark.start_literal()))
            .header("Sforce-Query-Options", QUERY_BATCH_SIZE);
        parse(&check(self.send(request)?)?, "query result")
    }
}

impl HelpdeskConnector for Salesforce {
    fn describe() -> Manifest {
        manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let org = Org::from(ctx)?;
        if request.external_id.trim().is_empty() {
            return Err(ConnectorError::invalid(
                "external-id",
                "the requester has no external id",
            ));
        }
        let identity = &request.identity;
        let name = identity
            .display_name
            .as_deref()
            .or(identity.handle.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or(&request.external_id);
        let body = json!({"LastName": truncate_chars(name, LAST_NAME_MAX_CHARS)});
        let (id, created) = org.upsert(
            "Contact",
            &org.contact_field,
            settings::CONTACT_EXTERNAL_ID_FIELD,
            &request.external_id,
            &body,
        )?;
        Ok(Requester { id, created })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let org = Org::from(ctx)?;
        let body = new_case_body(ctx, &ticket)?;
        let key = ticket.idempotency_key.trim();
        if key.is_empty() {
            return Err(ConnectorError::invalid("idempotency-key", "empty"));
        }
        let (id, created) = org.upsert(
            "Case",
            &org.case_field,
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
            url: Some(format!("{}/lightning/r/Case/{id}/view", org.instance)),
            id,
            created,
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let org = Org::from(ctx)?;
        let case_id = record_id("ticket-id", &comment.ticket_id, "500", "Case")?;
        if let CommentAuthor::Requester(id) = &comment.author {
            // Only users write CaseComments: the integration user files the customer's words.
            log_debug!(
                "filing a customer comment as the integration user",
                requester = id
            );
        }
        let text = body_with_attachments(&comment.body, &comment.attachments);
        let parts = split_bytes(&text, COMMENT_MAX_BYTES);
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
                    &org.integration_user(ctx)?,
                    "005",
                    "User",
                )?;
                let soql = retry::comments_since_query(&case_id, &user, earlier.since_ms());
                let records = org.query_all(&soql)?;
                let found = retry::posted_parts(&records, &parts, public, &earlier);
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
            let body = json!({
                "ParentId": case_id,
                "CommentBody": part,
                "IsPublished": public,
            });
            let response =
                check(org.send(http::post(org.url("/sobjects/CaseComment")).json(&body))?)?;
            let saved: api::SaveResult = parse(&response, "CaseComment")?;
            *id = Some(saved.id);
        }
        // The hub knows a comment by its first part.
        ids.into_iter()
            .next()
            .flatten()
            .map(|id| CommentRef { id })
            .ok_or_else(|| ConnectorError::fatal("no CaseComment id for the first part"))
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let org = Org::from(ctx)?;
        let case_id = record_id("ticket-id", &update.ticket_id, "500", "Case")?;
        let mut fields = Map::new();
        if let Some(status) = update.status {
            let value = Org::statuses(ctx)?
                .write(status, settings::STATUS_MAP)?
                .to_string();
            fields.insert("Status".into(), Value::String(value));
        }
        if let Some(priority) = update.priority {
            if let Some(value) = Org::priorities(ctx)?.write(priority) {
                fields.insert("Priority".into(), Value::String(value.to_string()));
            }
        }
        if !update.add_tags.is_empty() || !update.remove_tags.is_empty() {
            log_debug!("Cases have no tags; ignoring tag changes");
        }
        if !fields.is_empty() {
            check(
                org.send(
                    http::patch(org.url(&format!("/sobjects/Case/{case_id}")))
                        .json(&Value::Object(fields)),
                )?,
            )?;
        }
        org.case_state(ctx, &case_id)
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let org = Org::from(ctx)?;
        let case_id = record_id("ticket-id", ticket_id, "500", "Case")?;
        org.case_state(ctx, &case_id)
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != TICKET_EVENTS_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`; Salesforce has only `{TICKET_EVENTS_STREAM}`"),
            ));
        }
        let org = Org::from(ctx)?;
        let statuses = Org::statuses(ctx)?;
        let mut cursor = match cursor {
            Some(raw) => paging::decode_cursor::<Cursor>(&raw)?,
            None => {
                let since = initial_since(ctx)?;
                Cursor {
                    comments: Mark::starting_at(since),
                    cases: Mark::starting_at(since),
                }
            }
        };
        let field = org.case_field.clone();
        let comments = org.query_batch(&mut cursor.comments, |from| {
            changes::comments_query(&field, from)
        })?;
        let cases =
            org.query_batch(&mut cursor.cases, |from| changes::cases_query(&field, from))?;

        let integration_user = if comments.records.is_empty() && cases.records.is_empty() {
            String::new()
        } else {
            org.integration_user(ctx)?
        };
        let reading = Reading {
            case_field: &org.case_field,
            integration_user: &integration_user,
            statuses: &statuses,
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

/// The fields of the Case upsert for a new ticket (the external id goes in the URL).
fn new_case_body(ctx: &Context, ticket: &NewTicket) -> Result<Value> {
    let contact = record_id("requester-id", &ticket.requester_id, "003", "Contact")?;
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        truncate_chars(ticket.subject.trim(), SUBJECT_MAX_CHARS)
    };
    let description = body_with_attachments(&ticket.body, &ticket.attachments);
    let mut fields = Map::new();
    fields.insert("Subject".into(), Value::String(subject));
    fields.insert(
        "Description".into(),
        Value::String(truncate_chars(&description, DESCRIPTION_MAX_CHARS)),
    );
    fields.insert("ContactId".into(), Value::String(contact));
    if let Some(status) = ticket.status {
        let value = Org::statuses(ctx)?
            .write(status, settings::STATUS_MAP)?
            .to_string();
        fields.insert("Status".into(), Value::String(value));
    }
    if let Some(priority) = ticket.priority {
        if let Some(value) = Org::priorities(ctx)?.write(priority) {
            fields.insert("Priority".into(), Value::String(value.to_string()));
        }
    }
    let origins = OriginMap::parse(
        settings::ORIGIN_MAP,
        ctx.setting_or(settings::ORIGIN_MAP, mapping::DEFAULT_ORIGIN_MAP),
    )?;
    if let Some(origin) = origins.origin(&ticket.channel) {
        fields.insert("Origin".into(), Value::String(origin.to_string()));
    }
    Ok(Value::Object(fields))
}

/// Epoch ms the first poll starts from.
fn initial_since(ctx: &Context) -> Result<u64> {
    let lookback = match ctx.setting(settings::INITIAL_LOOKBACK_SECS) {
        Some(value) => value.trim().parse::<u64>().map_err(|_| {
            ConnectorError::invalid(
                settings::INITIAL_LOOKBACK_SECS,
                format!("expected a number of seconds, got `{value}`"),
            )
        })?,
        None => DEFAULT_LOOKBACK_SECS,
    };
    Ok(now_ms().saturating_sub(lookback.saturating_mul(1000)))
}

fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The text with the attachments listed after it: the hub passes links it never downloads.
fn body_with_attachments(body: &str, attachments: &[Attachment]) -> String {
    if attachments.is_empty() {
        return body.to_string();
    }
    let mut text = body.trim_end().to_string();
    text.push_str("\n\nAttachments:");
    for attachment in attachments {
        let name = attachment.name.as_deref().unwrap_or("file");
        text.push_str(&format!("\n- {name}: {}", attachment.url));
    }
    text
}

/// Splits `text` into parts of at most `max` bytes, at a line break or space where one is
/// near the end, never inside a character.
fn split_bytes(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.len() <= max {
            parts.push(rest.to_string());
            break;
        }
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer a break in the last quarter of the part.
        if let Some(space) = rest[..cut].rfind(['\n', ' ']).filter(|i| *i > max * 3 / 4) {
            cut = space;
        }
        parts.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    parts
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

fn with_default(spec: SettingSpec, value: &str) -> SettingSpec {
    SettingSpec {
        default_value: Some(value.to_string()),
        ..spec
    }
}

/// What the plugin declares to the host.
fn manifest() -> Manifest {
    let instance = format!("{{{}}}", settings::INSTANCE_URL);
    let login = format!("{{{}}}", settings::LOGIN_URL);
    Manifest {
        id: "salesforce".to_string(),
        name: "Salesforce Service Cloud".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Helpdesk,
        description: "Files social conversations as Salesforce Cases (Contacts and Cases upserted \
                      by external id) and syncs agents' CaseComments and status changes back by \
                      polling SOQL."
            .to_string(),
        settings: vec![
            SettingSpec {
                required: true,
                ..setting(
                    settings::INSTANCE_URL,
                    "Instance URL",
                    "The org's My Domain URL, such as https://acme.my.salesforce.com (the \
                     `instance_url` of the OAuth token answer).",
                )
            },
            with_default(
                setting(
                    settings::LOGIN_URL,
                    "Login URL",
                    "Where OAuth runs: https://login.salesforce.com, https://test.salesforce.com \
                     for sandboxes, or the My Domain URL.",
                ),
                DEFAULT_LOGIN_URL,
            ),
            with_default(
                setting(
                    settings::API_VERSION,
                    "API version",
                    "The REST API version, like v60.0.",
                ),
                DEFAULT_API_VERSION,
            ),
            with_default(
                setting(
                    settings::CLIENT_NAME,
                    "Client name",
                    "Sent as `Sforce-Call-Options: client=<name>` on every call, so the org's \
                     change events show which writes are the hub's.",
                ),
                DEFAULT_CLIENT_NAME,
            ),
            with_default(
                setting(
                    settings::CONTACT_EXTERNAL_ID_FIELD,
                    "Contact external id field",
                    "A Text field on Contact marked External ID and Unique; holds \
                     `<network>:<user id>`.",
                ),
                DEFAULT_EXTERNAL_ID_FIELD,
            ),
            with_default(
                setting(
                    settings::CASE_EXTERNAL_ID_FIELD,
                    "Case external id field",
                    "A Text field on Case marked External ID and Unique; holds the hub's key of \
                     the ticket, which makes creating a case idempotent.",
                ),
                DEFAULT_EXTERNAL_ID_FIELD,
            ),
            with_default(
                setting(
                    settings::STATUS_MAP,
                    "Status mapping",
                    "Case Status values and the hub's statuses (new, open, pending, on-hold, \
                     solved, closed) as `Value=status` pairs, comma-separated. Unlisted values \
                     read as open, or closed when the status closes the case.",
                ),
                mapping::DEFAULT_STATUS_MAP,
            ),
            with_default(
                setting(
                    settings::PRIORITY_MAP,
                    "Priority mapping",
                    "Case Priority values and the hub's priorities (low, normal, high, urgent) \
                     as `Value=priority` pairs.",
                ),
                mapping::DEFAULT_PRIORITY_MAP,
            ),
            with_default(
                setting(
                    settings::ORIGIN_MAP,
                    "Origin mapping",
                    "Case Origin per channel as `channel=Value` pairs (`telegram=Telegram`); \
                     `*` for the rest. The values must exist in the org's Origin picklist.",
                ),
                mapping::DEFAULT_ORIGIN_MAP,
            ),
            setting(
                settings::INTEGRATION_USER_ID,
                "Integration user id",
                "Optional. The id (005...) of the user the hub connects as, whose comments and \
                 edits are the hub's own. Looked up with userinfo when empty.",
            ),
            with_default(
                setting(
                    settings::INITIAL_LOOKBACK_SECS,
                    "Initial look-back (seconds)",
                    "How far back the first poll of the ticket-events stream starts.",
                ),
                &DEFAULT_LOOKBACK_SECS.to_string(),
            ),
            setting(
                settings::OAUTH_CLIENT_ID,
                "OAuth consumer key",
                "The connected app's consumer key, for the hub's OAuth flows.",
            ),
            SettingSpec {
                secret: true,
                ..setting(
                    settings::OAUTH_CLIENT_SECRET,
                    "OAuth consumer secret",
                    "The connected app's consumer secret (web server and refresh token flows).",
                )
            },
            SettingSpec {
                secret: true,
                ..setting(
                    settings::OAUTH_JWT_PRIVATE_KEY,
                    "JWT private key",
                    "For the JWT bearer flow: the PEM private key whose certificate is uploaded \
                     to the connected app.",
                )
            },
            setting(
                settings::OAUTH_JWT_USERNAME,
                "JWT username",
                "For the JWT bearer flow: the username of the pre-authorized integration user.",
            ),
        ],
        http_hosts: vec![instance.clone()],
        credentials: vec![CredentialRule {
            host_pattern: instance,
            placement: CredentialPlacement::Bearer("{oauth.access-token}".to_string()),
        }],
        streams: vec![StreamSpec {
            name: TICKET_EVENTS_STREAM.to_string(),
            description: "CaseComments and status changes on Cases the hub created, polled with \
                          SOQL on SystemModstamp."
                .to_string(),
            default_schedule: "*/30 * * * * *".to_string(),
        }],
        accepts_webhooks: false,
        text_limits: Vec::new(),
        reply_windows: Vec::new(),
        oauth2: Some(Oauth2Spec {
            authorize_url: format!("{login}/services/oauth2/authorize"),
            token_url: format!("{login}/services/oauth2/token"),
            scopes: vec!["api".to_string(), "refresh_token".to_string()],
            flows: vec![
                Oauth2Flow::AuthorizationCodePkce,
                Oauth2Flow::RefreshToken,
                Oauth2Flow::JwtBearer,
            ],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "ticket:01J".into(),
            external_id: "conv-1".into(),
            requester_id: "0035g0000000001AAA".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["vip".into()],
            priority: Some(TicketPriority::Urgent),
            status: None,
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    #[test]
    fn case_body_maps_values() {
        let ctx = Context::new("i", [("instance_url", "https://acme.my.salesforce.com")]);
        let body = new_case_body(&ctx, &new_ticket()).expect("body");
        assert_eq!(
            body,
            json!({"Subject": "Order late", "Description": "My order is late",
                   "ContactId": "0035g0000000001AAA", "Priority": "High", "Origin": "Web"})
        );
        let ctx = Context::new(
            "i",
            [
                ("origin_map", "telegram=Telegram"),
                ("status_map", "Nieuw=new,Open=open"),
            ],
        );
        let mut ticket = new_ticket();
        ticket.subject = " ".into();
        ticket.status = Some(TicketStatus::New);
        ticket.priority = None;
        ticket.attachments = vec![Attachment {
            url: "tg-file:1".into(),
            content_type: None,
            name: Some("photo.jpg".into()),
            size_bytes: None,
        }];
        let body = new_case_body(&ctx, &ticket).expect("body");
        assert_eq!(body["Subject"], "My order is late");
        assert_eq!(body["Status"], "Nieuw");
        assert_eq!(body["Origin"], "Telegram");
        assert!(body.get("Priority").is_none());
        assert!(body["Description"]
            .as_str()
            .expect("text")
            .ends_with("- photo.jpg: tg-file:1"));
        ticket.requester_id = "5001".into();
        assert!(matches!(
            new_case_body(&ctx, &ticket),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn settings_are_checked() {
        let org = Org::from(&Context::new(
            "i",
            [
                ("instance_url", "https://acme.my.salesforce.com/"),
                ("api_version", "61.0"),
            ],
        ))
        .expect("org");
        assert_eq!(
            org.url("/query"),
            "https://acme.my.salesforce.com/services/data/v61.0/query"
        );
        assert_eq!(org.case_field, "Switchboard_External_Id__c");
        for (key, value) in [
            ("instance_url", "acme.my.salesforce.com"),
            ("api_version", "latest"),
            ("case_external_id_field", "Bad Field"),
        ] {
            let mut settings =
                std::collections::BTreeMap::from([("instance_url", "https://x.example")]);
            settings.insert(key, value);
            let ctx = Context::new("i", settings);
            assert!(
                matches!(Org::from(&ctx), Err(ConnectorError::InvalidInput(f)) if f.field == key),
                "{key}={value}"
            );
        }
        assert!(matches!(
            Org::from(&Context::new("i", [("login_url", "x")])),
            Err(ConnectorError::InvalidInput(f)) if f.field == "instance_url"
        ));
    }

    #[test]
    fn long_comments_are_split_on_boundaries() {
        assert_eq!(split_bytes("short", 4000), vec!["short"]);
        assert!(split_bytes("  ", 4000).is_empty());
        let text = "あ".repeat(3000); // 9,000 bytes, no spaces
        let parts = split_bytes(&text, 4000);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 4000));
        assert_eq!(parts.concat(), text);
        let words = "word ".repeat(1000); // 5,000 bytes
        let parts = split_bytes(&words, 4000);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with("word") && parts[1].starts_with("word"));
    }

    #[test]
    fn manifest_declares_oauth_and_bearer_credentials() {
        let manifest = manifest();
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(manifest.http_hosts, vec!["{instance_url}".to_string()]);
        assert_eq!(
            manifest.credentials,
            vec![CredentialRule {
                host_pattern: "{instance_url}".into(),
                placement: CredentialPlacement::Bearer("{oauth.access-token}".into()),
            }]
        );
        let oauth = manifest.oauth2.expect("oauth2");
        assert_eq!(oauth.token_url, "{login_url}/services/oauth2/token");
        assert_eq!(oauth.authorize_url, "{login_url}/services/oauth2/authorize");
        assert_eq!(oauth.scopes, vec!["api", "refresh_token"]);
        assert_eq!(oauth.flows.len(), 3);
        assert!(!manifest.accepts_webhooks);
        let secret = |key: &str| {
            manifest
                .settings
                .iter()
                .find(|s| s.key == key)
                .map(|s| (s.secret, s.required))
        };
        assert_eq!(secret("oauth_client_secret"), Some((true, false)));
        assert_eq!(secret("oauth_jwt_private_key"), Some((true, false)));
        assert_eq!(secret("oauth_client_id"), Some((false, false)));
        assert_eq!(secret("oauth_jwt_username"), Some((false, false)));
        assert_eq!(secret("instance_url"), Some((false, true)));
    }
}
