//! The installation's typed settings, and every call the plugin makes to Zendesk through the
//! host. What to send and how to read the answers is in `api.rs`; which record an earlier
//! attempt made is decided in `look_back.rs`.

use serde::Deserialize;
use switchboard_plugin_sdk::helpdesk::{LookBack, NewTicket};
use switchboard_plugin_sdk::http;
use switchboard_plugin_sdk::ids::{numeric_id, Id};
use switchboard_plugin_sdk::prelude::*;

use crate::api::{
    Comment, CommentsPage, ExportCursor, ExportPage, Ticket, TicketEnvelope, TicketsPage, User,
    UserEnvelope, ZENDESK,
};
use crate::look_back;
use crate::manifest::manifest;

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

/// The settings the plugin reads (the credentials are the host's to add).
#[derive(Debug, Deserialize)]
struct Settings {
    subdomain: Option<String>,
    base_url: Option<String>,
    integration_user_id: Option<String>,
    webhook_secret: Option<String>,
    initial_lookback_secs: u64,
}

/// One Zendesk account, as an installation's settings describe it.
#[derive(Debug)]
pub struct Account {
    /// The API base: `base_url` when set (proxies, tests), else the account's own host. Agents
    /// open tickets under it too.
    base: String,
    integration_user_id: Option<String>,
    webhook_secret: Option<String>,
    initial_lookback_secs: u64,
}

impl Account {
    /// The account of the installation `ctx` is for; bad or missing settings are
    /// `InvalidInput` naming the setting.
    pub fn of(ctx: &Context) -> Result<Self> {
        let settings: Settings = ctx.parse_settings_with_defaults(&manifest().settings)?;
        let base = match (&settings.base_url, &settings.subdomain) {
            (Some(base), _) => base.trim_end_matches('/').to_string(),
            (None, Some(subdomain)) => format!("https://{}.zendesk.com", subdomain.trim()),
            (None, None) => {
                return Err(ConnectorError::invalid(
                    "subdomain",
                    "setting `subdomain` is required",
                ))
            }
        };
        Ok(Account {
            base,
            integration_user_id: settings.integration_user_id.map(|id| id.trim().to_string()),
            webhook_secret: settings.webhook_secret,
            initial_lookback_secs: settings.initial_lookback_secs,
        })
    }

    /// Checks a webhook delivery's signature against the `webhook_secret` setting.
    pub fn verify_webhook(&self, request: &WebhookRequest) -> Result<()> {
        verify_signature(self.webhook_secret.as_deref(), request)
    }

    /// Where agents open ticket `id`.
    pub fn ticket_url(&self, id: &str) -> String {
        format!("{}/agent/tickets/{id}", self.base)
    }

    /// Unix seconds to start the first export from.
    pub fn initial_start_time(&self) -> u64 {
        (now_ms() / 1000).saturating_sub(self.initial_lookback_secs.max(MIN_LOOKBACK_SECS))
    }

    /// The integration user (the API token's owner): from the setting, else from `users/me`.
    pub fn integration_user_id(&self) -> Result<String> {
        if let Some(id) = &self.integration_user_id {
            return Ok(id.clone());
        }
        let me: UserEnvelope =
            ZENDESK.fetch(http::get(format!("{}/api/v2/users/me", self.base)), "user")?;
        // Zendesk answers unauthenticated calls with an anonymous user rather than a 401.
        me.user.id.map(String::from).ok_or_else(|| {
            ConnectorError::unauthorized(
                "Zendesk did not recognise the credentials (users/me is anonymous); check \
                 `email` and `api_token`",
            )
        })
    }

    /// Creates or updates the end user `body` describes; answers its id and whether it is new.
    pub fn create_or_update_user(&self, body: &serde_json::Value) -> Result<(Id, bool)> {
        let response = ZENDESK
            .send(http::post(format!("{}/api/v2/users/create_or_update", self.base)).json(body))?;
        let created = response.status == 201;
        let user: UserEnvelope = ZENDESK.parse(&response, "user")?;
        let id = user
            .user
            .id
            .ok_or_else(|| ConnectorError::fatal("Zendesk returned a user without an id"))?;
        Ok((id, created))
    }

    /// Gives user `id` an identity of `kind`. A nicety for agents (the user shows up under
    /// their X/Facebook account); the requester is usable without it, so a refusal is only
    /// logged.
    pub fn add_identity(&self, id: &Id, kind: &str, value: &str) {
        let added = http::post(format!("{}/api/v2/users/{id}/identities", self.base))
            .json(&serde_json::json!({"identity": {"type": kind, "value": value}}))
            .send()
            .and_then(|response| ZENDESK.check(response));
        if let Err(err) = added {
            log_warn!(
                "could not add the social identity",
                user_id = id,
                error = err
            );
        }
    }

    /// Files a ticket under `idempotency_key`; answers its id and whether this call created it
    /// (not a replay of the key).
    pub fn create_ticket(
        &self,
        idempotency_key: &str,
        body: &serde_json::Value,
    ) -> Result<(String, bool)> {
        let response = ZENDESK.send(
            http::post(format!("{}/api/v2/tickets", self.base))
                .header("Idempotency-Key", idempotency_key)
                .json(body),
        )?;
        // 201 for a new ticket; a replayed key returns the original answer, marked `hit`.
        let replayed = response
            .header("x-idempotency-lookup")
            .is_some_and(|lookup| lookup.eq_ignore_ascii_case("hit"));
        let created = response.status == 201 && !replayed;
        let envelope: TicketEnvelope = ZENDESK.parse(&response, "ticket")?;
        Ok((envelope.ticket.id.0, created))
    }

    /// `PUT /tickets/{id}` with `body`: a comment, or changed fields.
    pub fn update_ticket(
        &self,
        ticket_id: u64,
        body: &serde_json::Value,
    ) -> Result<TicketEnvelope> {
        ZENDESK.fetch(
            http::put(format!("{}/api/v2/tickets/{ticket_id}", self.base)).json(body),
            "ticket update",
        )
    }

    /// Ticket `ticket_id` as it is now.
    pub fn ticket(&self, ticket_id: u64) -> Result<Ticket> {
        let envelope: TicketEnvelope = ZENDESK.fetch(
            http::get(format!("{}/api/v2/tickets/{ticket_id}", self.base)),
            "ticket",
        )?;
        Ok(envelope.ticket)
    }

    /// One page of the cursor-based incremental ticket export, from `cursor` or, on the first
    /// poll, from the initial look-back.
    pub fn export_page(&self, cursor: Option<&ExportCursor>) -> Result<ExportPage> {
        let request = http::get(format!("{}/api/v2/incremental/tickets/cursor", self.base))
            .query("per_page", EXPORT_PAGE_SIZE);
        let request = match cursor {
            Some(cursor) => request.query("cursor", &cursor.after_cursor),
            None => request.query("start_time", self.initial_start_time().to_string()),
        };
        ZENDESK.fetch(request, "incremental export page")
    }

    /// Every comment of a ticket, with the sideloaded authors.
    pub fn all_comments(&self, ticket_id: &str) -> Result<(Vec<Comment>, Vec<User>)> {
        let mut comments = Vec::new();
        let mut users = Vec::new();
        let mut request = http::get(format!("{}/api/v2/tickets/{ticket_id}/comments", self.base))
            .query("include", "users")
            .query("page[size]", COMMENTS_PAGE_SIZE);
        for _ in 0..MAX_COMMENT_PAGES {
            let page: CommentsPage = ZENDESK.fetch(request, "comments page")?;
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

    /// The id of the newest comment on a ticket that `wanted` accepts, among those created at
    /// or after `since_ms` (ms since the epoch; 0 for any). Never the ticket's first comment:
    /// that is its description, which came with the ticket, not with `add_comment`.
    pub fn newest_comment(
        &self,
        ticket_id: u64,
        since_ms: u64,
        wanted: impl Fn(&Comment) -> bool,
    ) -> Result<Option<String>> {
        let mut request = http::get(format!("{}/api/v2/tickets/{ticket_id}/comments", self.base))
            .query("sort", "-created_at")
            .query("page[size]", RECENT_COMMENTS_PAGE_SIZE);
        let mut seen = Vec::new();
        for _ in 0..MAX_COMMENT_PAGES {
            let page: CommentsPage = ZENDESK.fetch(request, "comments page")?;
            // Newest first: past a match, or past `since_ms`, older pages hold nothing better.
            let done = page
                .comments
                .iter()
                .any(|c| wanted(c) || c.created_at_ms().is_some_and(|at| at < since_ms));
            let next = page.next_url().map(str::to_string);
            seen.extend(page.comments);
            match next {
                Some(next) if !done => request = http::get(next),
                Some(_) => return Ok(look_back::newest_match(&seen, false, &wanted)),
                None => return Ok(look_back::newest_match(&seen, true, &wanted)),
            }
        }
        log_warn!(
            "stopped reading comments after the page limit",
            ticket_id = ticket_id,
            pages = MAX_COMMENT_PAGES
        );
        Ok(look_back::newest_match(&seen, false, &wanted))
    }

    /// The ticket an earlier attempt at this create may have filed: among the tickets with its
    /// external id, the newest by the same requester, with the same subject, that the
    /// look-back accepts (recent enough, and none of the conversation's earlier tickets).
    /// `body` is what the create would POST.
    pub fn earlier_ticket(
        &self,
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
        let mut request = http::get(format!("{}/api/v2/tickets", self.base))
            .query("external_id", &ticket.external_id)
            .query("page[size]", TICKETS_PAGE_SIZE);
        let mut candidates = Vec::new();
        for _ in 0..MAX_TICKET_PAGES {
            let page: TicketsPage = ZENDESK.fetch(request, "tickets page")?;
            let next = page.next_url().map(str::to_string);
            candidates.extend(
                page.tickets
                    .into_iter()
                    .filter(|t| look_back::is_earlier_ticket(t, &requester, subject, earlier)),
            );
            match next {
                Some(next) => request = http::get(next),
                None => return Ok(look_back::newest_ticket(candidates)),
            }
        }
        log_warn!(
            "stopped listing tickets by external id after the page limit",
            external_id = ticket.external_id,
            pages = MAX_TICKET_PAGES
        );
        Ok(look_back::newest_ticket(candidates))
    }
}

const SIGNATURE_HEADER: &str = "x-zendesk-webhook-signature";
const SIGNATURE_TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";

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

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::helpdesk::DEFAULT_INITIAL_LOOKBACK_SECS;

    fn signed_request(secret: &str, timestamp: &str, body: &[u8]) -> WebhookRequest {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let mac = signature::hmac_sha256(secret.as_bytes(), &message);
        let signature = base64_encode(&mac);
        webhook::post(
            &[
                (SIGNATURE_HEADER, signature.as_str()),
                (SIGNATURE_TIMESTAMP_HEADER, timestamp),
            ],
            body,
        )
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
    fn base_url_prefers_the_override() {
        let account = Account::of(&Context::new("i", [("subdomain", "acme")])).expect("account");
        assert_eq!(account.base, "https://acme.zendesk.com");
        assert_eq!(
            account.ticket_url("7"),
            "https://acme.zendesk.com/agent/tickets/7"
        );
        let account = Account::of(&Context::new(
            "i",
            [
                ("subdomain", "acme"),
                ("base_url", "http://127.0.0.1:8080/"),
            ],
        ))
        .expect("account");
        assert_eq!(account.base, "http://127.0.0.1:8080");
        assert_eq!(
            account.ticket_url("7"),
            "http://127.0.0.1:8080/agent/tickets/7"
        );
        let missing = Account::of(&Context::new("i", [("email", "a@b.c")]));
        assert!(matches!(
            missing,
            Err(ConnectorError::InvalidInput(f)) if f.field == "subdomain"
        ));
    }

    #[test]
    fn settings_are_typed() {
        let account = Account::of(&Context::new(
            "i",
            [
                ("subdomain", "acme"),
                ("integration_user_id", " 42 "),
                ("initial_lookback_secs", "10"),
            ],
        ))
        .expect("account");
        assert_eq!(account.integration_user_id().ok().as_deref(), Some("42"));
        // Never less than Zendesk's minute.
        let start = account.initial_start_time();
        assert!((now_ms() / 1000).saturating_sub(start) >= MIN_LOOKBACK_SECS);
        let bad = Account::of(&Context::new(
            "i",
            [("subdomain", "acme"), ("initial_lookback_secs", "an hour")],
        ));
        assert!(matches!(
            bad,
            Err(ConnectorError::InvalidInput(f)) if f.field == "initial_lookback_secs"
        ));
        let default = Account::of(&Context::new("i", [("subdomain", "acme")])).expect("account");
        assert_eq!(default.initial_lookback_secs, DEFAULT_INITIAL_LOOKBACK_SECS);
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
}
