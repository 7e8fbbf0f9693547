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
//! - **Changes** come from the `ticket-events` stream (cursor-based incremental ticket export,
//!   then each changed ticket's comments) and from Zendesk event webhooks
//!   (`ticket.comment_added`, `ticket.status_changed`, `ticket.priority_changed`), signed with
//!   the webhook's signing secret. Both give the same change ids, so the hub deduplicates them.
//!   Polling looks only at tickets tagged `switchboard`.
//! - **Echoes**: comments by the API token's owner (the integration user) are the hub's own.
//!
//! Credentials never pass through the plugin's code: the host adds Basic auth
//! (`{email}/token`, `{api_token}`) to every request to the account.

mod api;
mod changes;
mod time;

use serde::Serialize;
use serde_json::json;
use switchboard_plugin_sdk::helpdesk::{
    CommentAuthor, CommentRef, HelpdeskConnector, LookBack, NewComment, NewTicket, PollPage,
    Requester, RequesterRequest, TicketRef, TicketState, TicketUpdate, WebhookOutcome,
};
use switchboard_plugin_sdk::http;
use switchboard_plugin_sdk::prelude::*;

use crate::api::{
    check, numeric_id, parse, CommentsPage, ExportCursor, ExportPage, TicketEnvelope, TicketsPage,
    UserEnvelope, HUB_TAG,
};
use crate::changes::WebhookEvent;

/// Setting keys.
mod settings {
    pub const SUBDOMAIN: &str = "subdomain";
    pub const EMAIL: &str = "email";
    pub const API_TOKEN: &str = "api_token";
    pub const BASE_URL: &str = "base_url";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const INTEGRATION_USER_ID: &str = "integration_user_id";
    pub const INITIAL_LOOKBACK_SECS: &str = "initial_lookback_secs";
}

/// The one pollable stream.
const TICKET_EVENTS_STREAM: &str = "ticket-events";

/// How far back the first poll of a new installation looks.
const DEFAULT_LOOKBACK_SECS: u64 = 3600;

/// Zendesk refuses export start times less than a minute old.
const MIN_LOOKBACK_SECS: u64 = 60;

/// Tickets per export page. Every changed ticket costs a comments request, so pages are kept
/// well below Zendesk's maximum of 1000.
const EXPORT_PAGE_SIZE: &str = "100";

/// Comments per page (Zendesk's maximum for cursor pagination).
const COMMENTS_PAGE_SIZE: &str = "100";

/// Comments per page when looking for a recent one, newest first: it is rarely far down.
const RECENT_COMMENTS_PAGE_SIZE: &str = "20";

/// A guard against a service that keeps answering `has_more` (10,000 comments).
const MAX_COMMENT_PAGES: usize = 100;

/// Tickets per page when listing a conversation's tickets by external id (Zendesk's maximum
/// for cursor pagination); a conversation rarely has more than a few.
const TICKETS_PAGE_SIZE: &str = "100";

/// The same guard for that listing.
const MAX_TICKET_PAGES: usize = 100;

const SIGNATURE_HEADER: &str = "x-zendesk-webhook-signature";
const SIGNATURE_TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";

/// The Zendesk Support connector.
pub struct Zendesk;

impl HelpdeskConnector for Zendesk {
    fn describe() -> Manifest {
        manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let base = base_url(ctx)?;
        let identity = &request.identity;
        let name = identity
            .display_name
            .as_deref()
            .or(identity.handle.as_deref())
            .filter(|name| !name.trim().is_empty())
            .unwrap_or(&request.external_id);
        let body = json!({"user": {
            "name": name,
            "external_id": request.external_id,
            "role": "end-user",
            // Social users have no email; never mail them a verification link.
            "skip_verify_email": true,
        }});
        let response = check(
            http::post(format!("{base}/api/v2/users/create_or_update"))
                .json(&body)
                .send()?,
        )?;
        let created = response.status == 201;
        let user: UserEnvelope = parse(&response, "user")?;
        let id = user
            .user
            .id
            .ok_or_else(|| ConnectorError::fatal("Zendesk returned a user without an id"))?;

        if created {
            if let Some((kind, value)) = zendesk_identity(identity) {
                // A nicety for agents (the user shows up under their X/Facebook account); the
                // requester is usable without it, so a refusal is only logged.
                let added = http::post(format!("{base}/api/v2/users/{id}/identities"))
                    .json(&json!({"identity": {"type": kind, "value": value}}))
                    .send()
                    .and_then(check);
                if let Err(err) = added {
                    log_warn!(
                        "could not add the social identity",
                        user_id = id,
                        error = err
                    );
                }
            }
        }
        Ok(Requester { id: id.0, created })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let base = base_url(ctx)?;
        let body = new_ticket_body(&ticket)?;
        // Zendesk keeps an idempotency key for only two hours, and a retry can come much
        // later (a dead letter retried the next day): when an earlier attempt may have filed
        // the ticket, look for it first.
        if let Some(earlier) = LookBack::of(ticket.unconfirmed.as_ref()) {
            if let Some(id) = earlier_ticket(&base, &ticket, &body, earlier)? {
                log_info!("an earlier attempt had filed the ticket", ticket_id = id);
                return Ok(ticket_ref(ctx, &base, id, false));
            }
        }
        let response = check(
            http::post(format!("{base}/api/v2/tickets"))
                .header("Idempotency-Key", ticket.idempotency_key.as_str())
                .json(&body)
                .send()?,
        )?;
        // 201 for a new ticket; a replayed key returns the original answer, marked `hit`.
        let replayed = response
            .header("x-idempotency-lookup")
            .is_some_and(|lookup| lookup.eq_ignore_ascii_case("hit"));
        let created = response.status == 201 && !replayed;
        let envelope: TicketEnvelope = parse(&response, "ticket")?;
        Ok(ticket_ref(ctx, &base, envelope.ticket.id.0, created))
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let base = base_url(ctx)?;
        let ticket_id = numeric_id("ticket-id", &comment.ticket_id)?;
        let author_id = match &comment.author {
            CommentAuthor::Requester(id) => Some(numeric_id("author", id)?),
            // Omitted: the comment is written by the API token's owner.
            CommentAuthor::Integration => None,
        };
        let author = || match author_id {
            Some(id) => Ok(id.to_string()),
            None => integration_user_id(ctx, &base),
        };
        let text = api::body_with_attachments(&comment.body, &comment.attachments);
        let public = comment.visibility == Visibility::Public;

        // A ticket update takes no idempotency key: when an earlier attempt may have added
        // this comment, look for it before adding it again.
        if let Some(earlier) = LookBack::of(comment.unconfirmed.as_ref()) {
            let author = author()?;
            let found = newest_comment(&base, ticket_id, earlier.since_ms(), |c| {
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
        let response = check(
            http::put(format!("{base}/api/v2/tickets/{ticket_id}"))
                .json(&body)
                .send()?,
        )?;
        let envelope: TicketEnvelope = parse(&response, "ticket update")?;
        if let Some(id) = envelope.created_comment_id() {
            return Ok(CommentRef { id });
        }
        // No audit in the answer: the newest comment by the same author is ours.
        let author = author()?;
        newest_comment(&base, ticket_id, 0, |c| c.is_by(&author))?
            .map(|id| CommentRef { id })
            .ok_or_else(|| {
                ConnectorError::transient(format!(
                    "comment added to ticket {ticket_id} but not found in its comments yet"
                ))
            })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        let base = base_url(ctx)?;
        let ticket_id = numeric_id("ticket-id", &update.ticket_id)?;
        let changes = TicketChanges {
            status: update.status.map(api::status_to_zendesk),
            priority: update.priority.map(api::priority_to_zendesk),
            additional_tags: normalize_tags(&update.add_tags),
            remove_tags: normalize_tags(&update.remove_tags),
        };
        if changes.is_empty() {
            return Self::get_ticket(ctx, &update.ticket_id);
        }
        let response = check(
            http::put(format!("{base}/api/v2/tickets/{ticket_id}"))
                .json(&json!({ "ticket": changes }))
                .send()?,
        )?;
        parse::<TicketEnvelope>(&response, "ticket")?
            .ticket
            .to_state()
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        let base = base_url(ctx)?;
        let ticket_id = numeric_id("ticket-id", ticket_id)?;
        let response = check(http::get(format!("{base}/api/v2/tickets/{ticket_id}")).send()?)?;
        parse::<TicketEnvelope>(&response, "ticket")?
            .ticket
            .to_state()
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != TICKET_EVENTS_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`; Zendesk has only `{TICKET_EVENTS_STREAM}`"),
            ));
        }
        let base = base_url(ctx)?;
        let cursor: Option<ExportCursor> =
            cursor.as_deref().map(paging::decode_cursor).transpose()?;
        let mut request = http::get(format!("{base}/api/v2/incremental/tickets/cursor"))
            .query("per_page", EXPORT_PAGE_SIZE);
        request = match &cursor {
            Some(cursor) => request.query("cursor", &cursor.after_cursor),
            None => request.query("start_time", initial_start_time(ctx)?.to_string()),
        };
        let response = check(request.send()?)?;
        let page: ExportPage = parse(&response, "incremental export page")?;

        let tickets = page.hub_tickets();
        let integration_user = if tickets.is_empty() {
            None
        } else {
            Some(integration_user_id(ctx, &base)?)
        };
        let mut changes = Vec::new();
        for ticket in &tickets {
            let (comments, users) = match all_comments(&base, &ticket.id.0) {
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
        verify_signature(ctx.setting(settings::WEBHOOK_SECRET), &request)?;
        let event: WebhookEvent = serde_json::from_slice(&request.body).map_err(|err| {
            ConnectorError::invalid("body", format!("not a Zendesk event payload: {err}"))
        })?;
        let integration_user = if event.needs_integration_user() {
            Some(integration_user_id(ctx, &base_url(ctx)?)?)
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

switchboard_plugin_sdk::export_helpdesk!(Zendesk);

#[derive(Serialize)]
struct CommentBody {
    body: String,
    public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    author_id: Option<u64>,
}

/// The fields of a ticket update; absent ones are left alone by Zendesk.
#[derive(Serialize)]
struct TicketChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additional_tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remove_tags: Vec<String>,
}

impl TicketChanges {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.priority.is_none()
            && self.additional_tags.is_empty()
            && self.remove_tags.is_empty()
    }
}

fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut normalized: Vec<String> = Vec::new();
    for tag in tags.iter().map(|t| api::normalize_tag(t)) {
        if !tag.is_empty() && !normalized.contains(&tag) {
            normalized.push(tag);
        }
    }
    normalized
}

/// The body of `POST /api/v2/tickets` for a new ticket.
fn new_ticket_body(ticket: &NewTicket) -> Result<serde_json::Value> {
    let requester_id = numeric_id("requester-id", &ticket.requester_id)?;
    let mut tags = vec![HUB_TAG.to_string()];
    tags.extend(normalize_tags(std::slice::from_ref(&ticket.channel)));
    tags.extend(normalize_tags(&ticket.tags));
    let tags = normalize_tags(&tags);
    let subject = if ticket.subject.trim().is_empty() {
        text::first_line(&ticket.body, 80)
    } else {
        ticket.subject.clone()
    };
    let mut fields = json!({
        "subject": subject,
        "comment": CommentBody {
            body: api::body_with_attachments(&ticket.body, &ticket.attachments),
            public: ticket.visibility == Visibility::Public,
            author_id: Some(requester_id),
        },
        "requester_id": requester_id,
        "tags": tags,
    });
    if !ticket.external_id.is_empty() {
        fields["external_id"] = json!(ticket.external_id);
    }
    if let Some(priority) = ticket.priority {
        fields["priority"] = json!(api::priority_to_zendesk(priority));
    }
    if let Some(status) = ticket.status {
        fields["status"] = json!(api::status_to_zendesk(status));
    }
    Ok(json!({ "ticket": fields }))
}

/// What `create_ticket` answers for ticket `id`.
fn ticket_ref(ctx: &Context, base: &str, id: String, created: bool) -> TicketRef {
    TicketRef {
        url: Some(format!("{}/agent/tickets/{id}", agent_base_url(ctx, base))),
        id,
        created,
    }
}

/// The ticket an earlier attempt at this create may have filed: among the tickets with its
/// external id, the newest by the same requester, with the same subject, that the look-back
/// accepts (recent enough, and none of the conversation's earlier tickets). `body` is what the
/// create would POST.
fn earlier_ticket(
    base: &str,
    ticket: &NewTicket,
    body: &serde_json::Value,
    earlier: LookBack<'_>,
) -> Result<Option<String>> {
    if ticket.external_id.is_empty() {
        // Nothing to list by; the idempotency key is all there is.
        log_warn!("cannot look for an earlier attempt's ticket without an external id");
        return Ok(None);
    }
    let requester = numeric_id("requester-id", &ticket.requester_id)?.to_string();
    let subject = body["ticket"]["subject"].as_str().unwrap_or_default();
    // List Tickets reads the database, unlike search: a ticket filed a moment ago is there.
    let mut request = http::get(format!("{base}/api/v2/tickets"))
        .query("external_id", &ticket.external_id)
        .query("page[size]", TICKETS_PAGE_SIZE);
    let mut candidates = Vec::new();
    for _ in 0..MAX_TICKET_PAGES {
        let response = check(request.send()?)?;
        let page: TicketsPage = parse(&response, "tickets page")?;
        let next = page.next_url().map(str::to_string);
        candidates.extend(
            page.tickets
                .into_iter()
                .filter(|t| is_earlier_ticket(t, &requester, subject, earlier)),
        );
        match next {
            Some(next) => request = http::get(next),
            None => return Ok(newest_ticket(candidates)),
        }
    }
    log_warn!(
        "stopped listing tickets by external id after the page limit",
        external_id = ticket.external_id,
        pages = MAX_TICKET_PAGES
    );
    Ok(newest_ticket(candidates))
}

/// Whether `ticket` can be what an earlier attempt filed for `requester` with `subject`.
fn is_earlier_ticket(
    ticket: &api::Ticket,
    requester: &str,
    subject: &str,
    earlier: LookBack<'_>,
) -> bool {
    ticket
        .requester_id
        .as_ref()
        .is_some_and(|r| r.0 == requester)
        && ticket.has_subject(subject)
        && ticket
            .created_at_ms()
            .is_some_and(|at| earlier.may_be(&ticket.id.0, at))
}

/// The id of the newest of `tickets`, whatever order they came in.
fn newest_ticket(tickets: Vec<api::Ticket>) -> Option<String> {
    tickets
        .into_iter()
        .max_by_key(|t| t.order_key())
        .map(|t| t.id.0)
}

/// The Zendesk identity type and value for a social identity, where Zendesk has one.
fn zendesk_identity(identity: &SocialIdentity) -> Option<(&'static str, String)> {
    match identity.network.as_str() {
        // Zendesk keys X users by screen name.
        "x" | "twitter" => identity.handle.clone().map(|handle| ("twitter", handle)),
        "facebook" => Some(("facebook", identity.external_id.clone())),
        _ => None,
    }
}

/// The API base: `base_url` when set (proxies, tests), else the account's own host.
fn base_url(ctx: &Context) -> Result<String> {
    if let Some(base) = ctx.setting(settings::BASE_URL) {
        return Ok(base.trim_end_matches('/').to_string());
    }
    let subdomain = ctx.require(settings::SUBDOMAIN)?;
    Ok(format!("https://{}.zendesk.com", subdomain.trim()))
}

/// Where agents open tickets: the account's own host, even when the API goes through a proxy.
fn agent_base_url(ctx: &Context, api_base: &str) -> String {
    match ctx.setting(settings::SUBDOMAIN) {
        Some(subdomain) if ctx.setting(settings::BASE_URL).is_none() => {
            format!("https://{}.zendesk.com", subdomain.trim())
        }
        _ => api_base.to_string(),
    }
}

/// Unix seconds to start the first export from.
fn initial_start_time(ctx: &Context) -> Result<u64> {
    let lookback = match ctx.setting(settings::INITIAL_LOOKBACK_SECS) {
        Some(value) => value.trim().parse::<u64>().map_err(|_| {
            ConnectorError::invalid(
                settings::INITIAL_LOOKBACK_SECS,
                format!("expected a number of seconds, got `{value}`"),
            )
        })?,
        None => DEFAULT_LOOKBACK_SECS,
    };
    Ok((now_ms() / 1000).saturating_sub(lookback.max(MIN_LOOKBACK_SECS)))
}

/// The integration user (the API token's owner): from the setting, else from `users/me`.
fn integration_user_id(ctx: &Context, base: &str) -> Result<String> {
    if let Some(id) = ctx.setting(settings::INTEGRATION_USER_ID) {
        return Ok(id.trim().to_string());
    }
    let response = check(http::get(format!("{base}/api/v2/users/me")).send()?)?;
    let me: UserEnvelope = parse(&response, "user")?;
    // Zendesk answers unauthenticated calls with an anonymous user rather than a 401.
    me.user.id.map(|id| id.0).ok_or_else(|| {
        ConnectorError::unauthorized(
            "Zendesk did not recognise the credentials (users/me is anonymous); check `email` \
             and `api_token`",
        )
    })
}

/// Every comment of a ticket, with the sideloaded authors.
fn all_comments(base: &str, ticket_id: &str) -> Result<(Vec<api::Comment>, Vec<api::User>)> {
    let mut comments = Vec::new();
    let mut users = Vec::new();
    let mut request = http::get(format!("{base}/api/v2/tickets/{ticket_id}/comments"))
        .query("include", "users")
        .query("page[size]", COMMENTS_PAGE_SIZE);
    for _ in 0..MAX_COMMENT_PAGES {
        let response = check(request.send()?)?;
        let page: CommentsPage = parse(&response, "comments page")?;
        comments.extend(page.comments.iter().cloned());
        users.extend(page.users.iter().cloned());
        match page.next_url() {
            Some(next) => request = http::get(next),
            None => return Ok((comments, users)),
        }
    }
    log_warn!(
        "stopped reading comments after the page limit",
        ticket_id = ticket_id,
        pages = MAX_COMMENT_PAGES
    );
    Ok((comments, users))
}

/// The id of the newest comment on a ticket that `wanted` accepts, among those created at or
/// after `since_ms` (ms since the epoch; 0 for any). Never the ticket's first comment: that is
/// its description, which came with the ticket, not with `add_comment`.
fn newest_comment(
    base: &str,
    ticket_id: u64,
    since_ms: u64,
    wanted: impl Fn(&api::Comment) -> bool,
) -> Result<Option<String>> {
    let mut request = http::get(format!("{base}/api/v2/tickets/{ticket_id}/comments"))
        .query("sort", "-created_at")
        .query("page[size]", RECENT_COMMENTS_PAGE_SIZE);
    let mut seen = Vec::new();
    for _ in 0..MAX_COMMENT_PAGES {
        let response = check(request.send()?)?;
        let page: CommentsPage = parse(&response, "comments page")?;
        // Newest first: past a match, or past `since_ms`, older pages hold nothing better.
        let done = page
            .comments
            .iter()
            .any(|c| wanted(c) || c.created_at_ms().is_some_and(|at| at < since_ms));
        let next = page.next_url().map(str::to_string);
        seen.extend(page.comments);
        match next {
            Some(next) if !done => request = http::get(next),
            Some(_) => return Ok(newest_match(&seen, false, &wanted)),
            None => return Ok(newest_match(&seen, true, &wanted)),
        }
    }
    log_warn!(
        "stopped reading comments after the page limit",
        ticket_id = ticket_id,
        pages = MAX_COMMENT_PAGES
    );
    Ok(newest_match(&seen, false, &wanted))
}

/// Picks the newest comment `wanted` accepts, whatever order `comments` are in. When they are
/// all of the ticket's (`all`), the oldest is the description and is left out.
fn newest_match(
    comments: &[api::Comment],
    all: bool,
    wanted: impl Fn(&api::Comment) -> bool,
) -> Option<String> {
    let description = all
        .then(|| comments.iter().min_by_key(|c| c.order_key()))
        .flatten()
        .map(|c| &c.id);
    comments
        .iter()
        .filter(|c| Some(&c.id) != description)
        .filter(|c| wanted(c))
        .max_by_key(|c| c.order_key())
        .map(|c| c.id.0.clone())
}

/// Checks a webhook's signature: base64 of HMAC-SHA256 over the timestamp header followed by
/// the raw body, keyed with the webhook's signing secret.
///
/// Unsigned deliveries are refused even when no secret is configured: anyone who learns the
/// URL could otherwise forge agent replies.
fn verify_signature(secret: Option<&str>, request: &WebhookRequest) -> Result<()> {
    let Some(secret) = secret else {
        return Err(ConnectorError::unauthorized(
            "webhook refused: set the `webhook_secret` setting to the Zendesk webhook's signing \
             secret",
        ));
    };
    let (Some(signature_b64), Some(timestamp)) = (
        webhook::header(request, SIGNATURE_HEADER),
        webhook::header(request, SIGNATURE_TIMESTAMP_HEADER),
    ) else {
        return Err(ConnectorError::unauthorized(
            "webhook refused: missing X-Zendesk-Webhook-Signature or its timestamp",
        ));
    };
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(&request.body);
    if signature::verify_hmac_sha256_base64(secret.as_bytes(), &signed, signature_b64.trim()) {
        Ok(())
    } else {
        Err(ConnectorError::unauthorized(
            "webhook refused: invalid X-Zendesk-Webhook-Signature",
        ))
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
    let account_host = format!("https://{{{}}}.zendesk.com", settings::SUBDOMAIN);
    let base_url_host = format!("{{{}}}", settings::BASE_URL);
    let basic = CredentialPlacement::Basic(BasicCredential {
        username: format!("{{{}}}/token", settings::EMAIL),
        password: format!("{{{}}}", settings::API_TOKEN),
    });
    Manifest {
        id: "zendesk".to_string(),
        name: "Zendesk Support".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PluginKind::Helpdesk,
        description: "Files social conversations as Zendesk tickets and syncs agents' public \
                      replies, internal notes and status changes back, by polling the \
                      incremental export and through signed event webhooks."
            .to_string(),
        settings: vec![
            SettingSpec {
                required: true,
                ..setting(
                    settings::SUBDOMAIN,
                    "Subdomain",
                    "The account's subdomain: `acme` for https://acme.zendesk.com.",
                )
            },
            SettingSpec {
                required: true,
                ..setting(
                    settings::EMAIL,
                    "Agent email",
                    "Email of the Zendesk user the API token belongs to. Replies and notes the \
                     hub files appear under this user. Polling reads the incremental export, \
                     which needs an admin.",
                )
            },
            SettingSpec {
                secret: true,
                required: true,
                ..setting(
                    settings::API_TOKEN,
                    "API token",
                    "An API token from Admin Center > Apps and integrations > Zendesk API.",
                )
            },
            setting(
                settings::BASE_URL,
                "API base URL",
                "Optional. Replaces https://<subdomain>.zendesk.com for API calls, for a proxy \
                 or a test double.",
            ),
            SettingSpec {
                secret: true,
                ..setting(
                    settings::WEBHOOK_SECRET,
                    "Webhook signing secret",
                    "The signing secret of the Zendesk webhook that posts ticket events here \
                     (subscribe it to ticket comment added and status changed). Required to \
                     accept webhooks; leave empty when only polling.",
                )
            },
            setting(
                settings::INTEGRATION_USER_ID,
                "Integration user id",
                "Optional. The numeric id of the API token's owner, whose comments are the \
                 hub's own. Looked up with users/me when empty.",
            ),
            SettingSpec {
                default_value: Some(DEFAULT_LOOKBACK_SECS.to_string()),
                ..setting(
                    settings::INITIAL_LOOKBACK_SECS,
                    "Initial look-back (seconds)",
                    "How far back the first poll of the ticket-events stream starts.",
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
            name: TICKET_EVENTS_STREAM.to_string(),
            description: "Agent replies, internal notes and status changes on tickets the hub \
                          created, from the incremental ticket export."
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
    use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus, UnconfirmedAttempt};

    fn new_ticket() -> NewTicket {
        NewTicket {
            idempotency_key: "telegram:5:42".into(),
            external_id: "telegram:5".into(),
            requester_id: "20".into(),
            subject: "Order late".into(),
            body: "My order is late".into(),
            visibility: Visibility::Public,
            attachments: Vec::new(),
            tags: vec!["VIP customer".into(), "switchboard".into()],
            priority: Some(TicketPriority::High),
            status: Some(TicketStatus::New),
            channel: "telegram".into(),
            unconfirmed: None,
        }
    }

    fn signed_request(secret: &str, timestamp: &str, body: &[u8]) -> WebhookRequest {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let mac = signature::hmac_sha256(secret.as_bytes(), &message);
        WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: vec![
                (SIGNATURE_HEADER.into(), base64_encode(&mac)),
                (SIGNATURE_TIMESTAMP_HEADER.into(), timestamp.into()),
            ],
            body: body.to_vec(),
        }
    }

    /// Standard base64, so the test does not depend on the verifier's own encoder.
    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn ticket_body_has_requester_comment_tags_and_values() {
        let body = new_ticket_body(&new_ticket()).expect("body");
        assert_eq!(
            body,
            json!({"ticket": {
                "subject": "Order late",
                "comment": {"body": "My order is late", "public": true, "author_id": 20},
                "requester_id": 20,
                "external_id": "telegram:5",
                "tags": ["switchboard", "telegram", "vip_customer"],
                "priority": "high",
                "status": "new",
            }})
        );
    }

    #[test]
    fn private_first_message_and_missing_subject() {
        let mut ticket = new_ticket();
        ticket.visibility = Visibility::Private;
        ticket.subject = " ".into();
        ticket.priority = None;
        ticket.status = None;
        let body = new_ticket_body(&ticket).expect("body");
        assert_eq!(body["ticket"]["comment"]["public"], false);
        assert_eq!(body["ticket"]["subject"], "My order is late");
        assert!(body["ticket"].get("priority").is_none());
        ticket.requester_id = "abc".into();
        assert!(matches!(
            new_ticket_body(&ticket),
            Err(ConnectorError::InvalidInput(f)) if f.field == "requester-id"
        ));
    }

    #[test]
    fn ticket_changes_serialize_only_what_changes() {
        let changes = TicketChanges {
            status: Some("hold"),
            priority: None,
            additional_tags: normalize_tags(&["Escalated".into(), "escalated".into()]),
            remove_tags: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&changes).expect("json"),
            json!({"status": "hold", "additional_tags": ["escalated"]})
        );
        assert!(TicketChanges {
            status: None,
            priority: None,
            additional_tags: Vec::new(),
            remove_tags: Vec::new()
        }
        .is_empty());
    }

    #[test]
    fn integration_comments_omit_the_author() {
        let body = serde_json::to_value(CommentBody {
            body: "note".into(),
            public: false,
            author_id: None,
        })
        .expect("json");
        assert_eq!(body, json!({"body": "note", "public": false}));
    }

    #[test]
    fn identities_exist_for_x_and_facebook_only() {
        let identity = |network: &str, handle: Option<&str>| SocialIdentity {
            external_id: "123".into(),
            network: network.into(),
            handle: handle.map(str::to_string),
            display_name: None,
        };
        assert_eq!(
            zendesk_identity(&identity("x", Some("acme"))),
            Some(("twitter", "acme".to_string()))
        );
        assert_eq!(
            zendesk_identity(&identity("facebook", None)),
            Some(("facebook", "123".to_string()))
        );
        assert_eq!(zendesk_identity(&identity("telegram", Some("a"))), None);
        assert_eq!(zendesk_identity(&identity("x", None)), None);
    }

    #[test]
    fn base_url_prefers_the_override() {
        let ctx = Context::new("i", [("subdomain", "acme")]);
        assert_eq!(
            base_url(&ctx).ok().as_deref(),
            Some("https://acme.zendesk.com")
        );
        assert_eq!(agent_base_url(&ctx, "x"), "https://acme.zendesk.com");
        let ctx = Context::new(
            "i",
            [
                ("subdomain", "acme"),
                ("base_url", "http://127.0.0.1:8080/"),
            ],
        );
        assert_eq!(
            base_url(&ctx).ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            agent_base_url(&ctx, "http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        let missing = Context::new("i", [("email", "a@b.c")]);
        assert!(matches!(
            base_url(&missing),
            Err(ConnectorError::InvalidInput(f)) if f.field == "subdomain"
        ));
    }

    #[test]
    fn newest_match_regardless_of_order_never_the_description() {
        let page: CommentsPage = serde_json::from_value(json!({"comments": [
            {"id": 7, "author_id": 20, "created_at": "2024-05-01T09:10:00Z"},
            {"id": 5, "author_id": 20, "created_at": "2024-05-01T09:00:00Z"},
            {"id": 8, "author_id": 20, "created_at": "2024-05-01T09:10:00Z"},
            {"id": 9, "author_id": 30, "created_at": "2024-05-01T09:20:00Z"}
        ]}))
        .expect("page");
        let by = |author: &'static str| move |c: &api::Comment| c.is_by(author);
        // Same second: the higher id is the newer.
        assert_eq!(
            newest_match(&page.comments, true, by("20")).as_deref(),
            Some("8")
        );
        assert_eq!(newest_match(&page.comments, true, by("40")), None);
        let only_first = |c: &api::Comment| c.id.0 == "5";
        assert_eq!(
            newest_match(&page.comments, true, only_first),
            None,
            "the oldest of all the comments is the description"
        );
        assert_eq!(
            newest_match(&page.comments, false, only_first).as_deref(),
            Some("5"),
            "older comments exist beyond a partial listing"
        );
    }

    #[test]
    fn an_earlier_ticket_is_the_newest_recent_unknown_match() {
        // 2024-05-01T09:00:00Z
        let started_at = 1_714_554_000_000;
        let attempt = UnconfirmedAttempt {
            started_at,
            known_ids: vec!["3".into()],
        };
        let earlier = LookBack::of(Some(&attempt)).expect("unconfirmed");
        let page: TicketsPage = serde_json::from_value(json!({"tickets": [
            {"id": 1, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T08:58:59Z"},
            {"id": 3, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T09:05:00Z"},
            {"id": 5, "requester_id": 20, "subject": "Order  late ", "created_at": "2024-05-01T09:00:00Z"},
            {"id": 4, "requester_id": 20, "subject": "Order late", "created_at": "2024-05-01T09:00:00Z"},
            {"id": 6, "requester_id": 21, "subject": "Order late", "created_at": "2024-05-01T09:01:00Z"},
            {"id": 7, "requester_id": 20, "subject": "Other", "created_at": "2024-05-01T09:01:00Z"},
            {"id": 8, "requester_id": 20, "subject": "Order late"}
        ]}))
        .expect("page");
        let found = |tickets: Vec<api::Ticket>| {
            newest_ticket(
                tickets
                    .into_iter()
                    .filter(|t| is_earlier_ticket(t, "20", "Order late", earlier))
                    .collect(),
            )
        };
        // 1 is older than the look-back, 3 is known, 6 and 7 differ, 8 has no time; of 4 and
        // 5, created in the same second, the higher id is the newer.
        assert_eq!(found(page.tickets.clone()).as_deref(), Some("5"));
        let without_5 = page.tickets.into_iter().filter(|t| t.id.0 != "5").collect();
        assert_eq!(found(without_5).as_deref(), Some("4"));
        assert_eq!(found(Vec::new()), None);
    }

    #[test]
    fn webhook_signature_over_timestamp_and_raw_body() {
        let body =
            "{\"type\":\"zen:event-type:ticket.status_changed\",\"detail\":{\"subject\":\"注文\"}}";
        let request = signed_request("shh", "2021-03-25T05:09:27Z", body.as_bytes());
        assert!(verify_signature(Some("shh"), &request).is_ok());
        assert!(matches!(
            verify_signature(Some("other"), &request),
            Err(ConnectorError::Unauthorized(_))
        ));

        let mut tampered = request.clone();
        tampered.body = body.replace("注文", "x").into_bytes();
        assert!(verify_signature(Some("shh"), &tampered).is_err());

        let mut other_time = request.clone();
        other_time.headers[1].1 = "2021-03-25T05:09:28Z".into();
        assert!(verify_signature(Some("shh"), &other_time).is_err());

        let mut unsigned = request.clone();
        unsigned.headers.clear();
        assert!(verify_signature(Some("shh"), &unsigned).is_err());

        assert!(matches!(
            verify_signature(None, &request),
            Err(ConnectorError::Unauthorized(m)) if m.contains("webhook_secret")
        ));
    }

    #[test]
    fn manifest_declares_hosts_and_basic_auth() {
        let manifest = manifest();
        assert_eq!(manifest.kind, PluginKind::Helpdesk);
        assert_eq!(
            manifest.http_hosts,
            vec![
                "https://{subdomain}.zendesk.com".to_string(),
                "{base_url}".to_string()
            ]
        );
        assert_eq!(manifest.credentials.len(), 3);
        assert!(manifest
            .credentials
            .contains(&secret_for_plugin("webhook_secret")));
        assert!(manifest
            .credentials
            .iter()
            .filter(|rule| rule.host_pattern != "plugin")
            .all(|rule| rule.placement
                == CredentialPlacement::Basic(BasicCredential {
                    username: "{email}/token".into(),
                    password: "{api_token}".into(),
                })));
        assert_eq!(manifest.streams[0].name, "ticket-events");
        assert_eq!(manifest.streams[0].default_schedule, "*/30 * * * * *");
        assert!(manifest.accepts_webhooks);
        assert!(manifest.text_limits.is_empty());
        let token = manifest
            .settings
            .iter()
            .find(|s| s.key == "api_token")
            .expect("api_token");
        assert!(token.secret && token.required);
    }
}
