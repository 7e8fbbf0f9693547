//! Bounds on everything a plugin hands back to the host, in one place.
//!
//! A plugin is untrusted: any string or list it returns can be huge or malicious. Results
//! over a limit are refused with [`OutputLimit`], which names the limit, because truncating an
//! event, an id or a cursor would change what it means (a cut cursor re-reads or skips a page).
//! Free text that only informs (error messages, log lines) is truncated and redacted instead,
//! see [`Redactor`].

use std::fmt::Write as _;

use base64::Engine as _;

use super::bindings::helpdesk::exports::switchboard::connector::helpdesk_connector as hd;
use super::bindings::social::exports::switchboard::connector::social_connector as so;
use super::bindings::types::{
    Attachment, ConnectorError, Manifest, SocialIdentity, WebhookResponse,
};

/// Most data one call may copy out of the plugin (wasmtime's "hostcall fuel", which also
/// bounds what one import call such as `log` or `http.send` may pass in). Wasmtime's default
/// is 128 MiB; a legitimate result is far smaller than this.
pub const MAX_CALL_COPY_BYTES: usize = 16 << 20;
/// Events (social) or changes (helpdesk) in one poll page or one webhook outcome. Real pages
/// hold up to a few thousand (a Zendesk export page of 100 tickets with their comments).
pub const MAX_EVENTS_PER_CALL: usize = 5_000;
/// A message or comment text, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 256 << 10;
/// Any id, handle, name, network, content type or reply handle.
pub const MAX_ID_BYTES: usize = 1_024;
/// An attachment URL.
pub const MAX_URL_BYTES: usize = 8 << 10;
/// Attachments of one message.
pub const MAX_ATTACHMENTS: usize = 32;
/// Ids in one `sent-message` answer.
pub const MAX_IDS_PER_ANSWER: usize = 100;
/// A poll cursor.
pub const MAX_CURSOR_BYTES: usize = 16 << 10;
/// The manifest, as the JSON the host stores.
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
/// The body of a webhook answer.
pub const MAX_WEBHOOK_RESPONSE_BODY_BYTES: usize = 1 << 20;
/// Headers of a webhook answer.
pub const MAX_WEBHOOK_RESPONSE_HEADERS: usize = 64;
/// One header (name plus value) of a webhook answer.
pub const MAX_WEBHOOK_RESPONSE_HEADER_BYTES: usize = 8 << 10;
/// A plugin's error message (and any other plugin text that reaches a log line, a stored
/// error or an API answer), after redaction; longer text is cut with a note.
pub const MAX_ERROR_BYTES: usize = 2 << 10;
/// One log line's message, after redaction.
pub const MAX_LOG_MESSAGE_BYTES: usize = 8 << 10;
/// One log field key, after redaction.
pub const MAX_LOG_KEY_BYTES: usize = 128;
/// One log field value, after redaction.
pub const MAX_LOG_VALUE_BYTES: usize = 2 << 10;
/// The smallest text limit (`max-length`) a manifest may declare: below it, splitting a reply
/// would produce absurd numbers of parts.
pub const MIN_TEXT_LIMIT: u32 = 64;
/// Most parts a reply may be split into; a longer reply is refused, not cut.
pub const MAX_REPLY_PARTS: usize = 32;

/// A plugin result over one of the limits above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {actual}, over the limit of {limit} ({constant})")]
pub struct OutputLimit {
    /// Where in the result, e.g. `events[3].text (bytes)`.
    pub what: String,
    pub actual: usize,
    pub limit: usize,
    /// The constant's name, so an operator can find it.
    pub constant: &'static str,
}

type Checked = Result<(), OutputLimit>;

fn over(what: impl Into<String>, actual: usize, limit: usize, constant: &'static str) -> Checked {
    if actual > limit {
        Err(OutputLimit {
            what: what.into(),
            actual,
            limit,
            constant,
        })
    } else {
        Ok(())
    }
}

fn id(what: &str, value: &str) -> Checked {
    over(
        format!("{what} (bytes)"),
        value.len(),
        MAX_ID_BYTES,
        "MAX_ID_BYTES",
    )
}

fn opt_id(what: &str, value: &Option<String>) -> Checked {
    value.as_deref().map_or(Ok(()), |v| id(what, v))
}

fn text(what: &str, value: &str) -> Checked {
    over(
        format!("{what} (bytes)"),
        value.len(),
        MAX_TEXT_BYTES,
        "MAX_TEXT_BYTES",
    )
}

fn cursor(value: &Option<String>) -> Checked {
    over(
        "next-cursor (bytes)",
        value.as_deref().map_or(0, str::len),
        MAX_CURSOR_BYTES,
        "MAX_CURSOR_BYTES",
    )
}

fn events_count(what: &str, count: usize) -> Checked {
    over(
        format!("{what} (count)"),
        count,
        MAX_EVENTS_PER_CALL,
        "MAX_EVENTS_PER_CALL",
    )
}

fn attachments(what: &str, list: &[Attachment]) -> Checked {
    over(
        format!("{what}.attachments (count)"),
        list.len(),
        MAX_ATTACHMENTS,
        "MAX_ATTACHMENTS",
    )?;
    for (i, a) in list.iter().enumerate() {
        over(
            format!("{what}.attachments[{i}].url (bytes)"),
            a.url.len(),
            MAX_URL_BYTES,
            "MAX_URL_BYTES",
        )?;
        opt_id(
            &format!("{what}.attachments[{i}].content-type"),
            &a.content_type,
        )?;
        opt_id(&format!("{what}.attachments[{i}].name"), &a.name)?;
    }
    Ok(())
}

fn identity(what: &str, who: &SocialIdentity) -> Checked {
    id(&format!("{what}.external-id"), &who.external_id)?;
    id(&format!("{what}.network"), &who.network)?;
    opt_id(&format!("{what}.handle"), &who.handle)?;
    opt_id(&format!("{what}.display-name"), &who.display_name)
}

fn social_events(what: &str, events: &[so::SocialEvent]) -> Checked {
    events_count(what, events.len())?;
    for (i, e) in events.iter().enumerate() {
        let at = format!("{what}[{i}]");
        id(&format!("{at}.message-id"), &e.message_id)?;
        id(&format!("{at}.thread-id"), &e.thread_id)?;
        opt_id(&format!("{at}.parent-id"), &e.parent_id)?;
        opt_id(&format!("{at}.reply-handle"), &e.reply_handle)?;
        identity(&format!("{at}.author"), &e.author)?;
        text(&format!("{at}.text"), &e.text)?;
        attachments(&at, &e.attachments)?;
        opt_id(
            &format!("{at}.author-signals.verification-kind"),
            &e.author_signals.verification_kind,
        )?;
        if let Some(referral) = &e.referral {
            opt_id(&format!("{at}.referral.source-id"), &referral.source_id)?;
            opt_id(&format!("{at}.referral.headline"), &referral.headline)?;
            opt_id(&format!("{at}.referral.ref-param"), &referral.ref_param)?;
            if let Some(url) = &referral.source_url {
                over(
                    format!("{at}.referral.source-url (bytes)"),
                    url.len(),
                    MAX_URL_BYTES,
                    "MAX_URL_BYTES",
                )?;
            }
        }
    }
    Ok(())
}

/// Delivery statuses and ownership changes (contract 0.3), counted with the events.
fn social_reports(statuses: &[so::DeliveryStatus], ownership: &[so::OwnershipChange]) -> Checked {
    events_count("statuses", statuses.len())?;
    for (i, s) in statuses.iter().enumerate() {
        id(&format!("statuses[{i}].message-id"), &s.message_id)?;
        opt_id(&format!("statuses[{i}].reason"), &s.reason)?;
    }
    events_count("ownership-changes", ownership.len())?;
    for (i, o) in ownership.iter().enumerate() {
        id(&format!("ownership-changes[{i}].thread-id"), &o.thread_id)?;
        opt_id(&format!("ownership-changes[{i}].owner"), &o.owner)?;
    }
    Ok(())
}

fn ticket_changes(what: &str, changes: &[hd::TicketChange]) -> Checked {
    events_count(what, changes.len())?;
    for (i, c) in changes.iter().enumerate() {
        let at = format!("{what}[{i}]");
        id(&format!("{at}.change-id"), &c.change_id)?;
        id(&format!("{at}.ticket-id"), &c.ticket_id)?;
        opt_id(&format!("{at}.external-id"), &c.external_id)?;
        if let Some(author) = &c.author {
            id(&format!("{at}.author.id"), &author.id)?;
            opt_id(&format!("{at}.author.name"), &author.name)?;
        }
        if let hd::ChangeKind::Comment(comment) = &c.kind {
            id(&format!("{at}.comment-id"), &comment.comment_id)?;
            text(&format!("{at}.body"), &comment.body)?;
            attachments(&at, &comment.attachments)?;
        }
    }
    Ok(())
}

fn webhook_response(response: &WebhookResponse) -> Checked {
    over(
        "response.body (bytes)",
        response.body.len(),
        MAX_WEBHOOK_RESPONSE_BODY_BYTES,
        "MAX_WEBHOOK_RESPONSE_BODY_BYTES",
    )?;
    over(
        "response.headers (count)",
        response.headers.len(),
        MAX_WEBHOOK_RESPONSE_HEADERS,
        "MAX_WEBHOOK_RESPONSE_HEADERS",
    )?;
    for (i, (name, value)) in response.headers.iter().enumerate() {
        over(
            format!("response.headers[{i}] (bytes)"),
            name.len() + value.len(),
            MAX_WEBHOOK_RESPONSE_HEADER_BYTES,
            "MAX_WEBHOOK_RESPONSE_HEADER_BYTES",
        )?;
    }
    Ok(())
}

/// A plugin result that the host checks against the limits before using it.
pub trait Bounded {
    fn check_bounds(&self) -> Checked;
}

impl Bounded for so::PollPage {
    fn check_bounds(&self) -> Checked {
        cursor(&self.next_cursor)?;
        social_reports(&self.statuses, &self.ownership_changes)?;
        social_events("events", &self.events)
    }
}

impl Bounded for so::WebhookOutcome {
    fn check_bounds(&self) -> Checked {
        webhook_response(&self.response)?;
        social_reports(&self.statuses, &self.ownership_changes)?;
        social_events("events", &self.events)
    }
}

impl Bounded for so::SentMessage {
    fn check_bounds(&self) -> Checked {
        over(
            "message-ids (count)",
            self.message_ids.len(),
            MAX_IDS_PER_ANSWER,
            "MAX_IDS_PER_ANSWER",
        )?;
        for (i, m) in self.message_ids.iter().enumerate() {
            id(&format!("message-ids[{i}]"), m)?;
        }
        Ok(())
    }
}

impl Bounded for hd::PollPage {
    fn check_bounds(&self) -> Checked {
        cursor(&self.next_cursor)?;
        ticket_changes("changes", &self.changes)
    }
}

impl Bounded for hd::WebhookOutcome {
    fn check_bounds(&self) -> Checked {
        webhook_response(&self.response)?;
        ticket_changes("changes", &self.changes)
    }
}

impl Bounded for hd::Requester {
    fn check_bounds(&self) -> Checked {
        id("id", &self.id)
    }
}

impl Bounded for hd::TicketRef {
    fn check_bounds(&self) -> Checked {
        id("id", &self.id)?;
        match &self.url {
            Some(url) => over("url (bytes)", url.len(), MAX_URL_BYTES, "MAX_URL_BYTES"),
            None => Ok(()),
        }
    }
}

impl Bounded for hd::CommentRef {
    fn check_bounds(&self) -> Checked {
        id("id", &self.id)
    }
}

impl Bounded for hd::TicketState {
    fn check_bounds(&self) -> Checked {
        id("id", &self.id)?;
        opt_id("external-id", &self.external_id)
    }
}

impl Bounded for Manifest {
    fn check_bounds(&self) -> Checked {
        // Measured as the JSON the host stores; a count of the pieces would miss none of it.
        let size = serde_json::to_vec(self).map_or(usize::MAX, |json| json.len());
        over(
            "the manifest (JSON bytes)",
            size,
            MAX_MANIFEST_BYTES,
            "MAX_MANIFEST_BYTES",
        )
    }
}

/// The typed error with its texts redacted and cut to [`MAX_ERROR_BYTES`], so that it can go
/// to a log line, `job_runs`, an outbox row or an API answer as is.
pub fn sanitize_error(error: ConnectorError, redactor: &Redactor) -> ConnectorError {
    let clean = |text: String| redactor.redact_bounded(&text, MAX_ERROR_BYTES);
    match error {
        ConnectorError::Unauthorized(m) => ConnectorError::Unauthorized(clean(m)),
        ConnectorError::RateLimited(mut r) => {
            r.message = clean(r.message);
            ConnectorError::RateLimited(r)
        }
        ConnectorError::NotFound(m) => ConnectorError::NotFound(clean(m)),
        ConnectorError::InvalidInput(mut f) => {
            f.field = redactor.redact_bounded(&f.field, MAX_ID_BYTES);
            f.message = clean(f.message);
            ConnectorError::InvalidInput(f)
        }
        ConnectorError::Policy(mut p) => {
            p.code = redactor.redact_bounded(&p.code, MAX_ID_BYTES);
            p.message = clean(p.message);
            ConnectorError::Policy(p)
        }
        ConnectorError::Transient(m) => ConnectorError::Transient(clean(m)),
        ConnectorError::Fatal(m) => ConnectorError::Fatal(clean(m)),
    }
}

/// The largest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix_at_most(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes plus a note of how much was cut.
pub fn truncate(text: &str, max: usize) -> String {
    let kept = prefix_at_most(text, max);
    if kept.len() == text.len() {
        return text.to_string();
    }
    let mut out = String::with_capacity(kept.len() + 32);
    out.push_str(kept);
    let _ = write!(out, "… [{} bytes cut]", text.len() - kept.len());
    out
}

/// What replaces a secret, or an encoding of one, in text from a plugin.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are masked only verbatim: their encodings are so short that
/// masking them would garble ordinary text.
const MIN_ENCODED_SECRET_BYTES: usize = 6;

/// Masks secret values in text from a plugin: verbatim, and in the encodings a plugin (or a
/// library it uses) commonly puts them in: standard and URL-safe base64 (with or without
/// padding, at any alignment inside a longer base64 string, as in `Basic` credentials),
/// percent-encoding (upper and lower case, `+` or `%20` for spaces) and hex.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    patterns: Vec<String>,
    longest: usize,
}

impl Redactor {
    pub fn new(secrets: &[String]) -> Self {
        let mut patterns = Vec::new();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            patterns.push(secret.clone());
            if secret.len() >= MIN_ENCODED_SECRET_BYTES {
                patterns.extend(encodings(secret.as_bytes()));
            }
        }
        patterns.sort();
        patterns.dedup();
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        Self { patterns, longest }
    }

    /// `text` with every secret form replaced, cut to about `max` bytes (at most one marker
    /// more, plus a note of what was cut).
    ///
    /// Only the first `max` bytes of `text` are emitted, and matches are searched in the first
    /// `max` + longest-pattern bytes, so a secret that straddles the cut is masked whole rather
    /// than leaking its first part; the work is bounded by `max`, not by the length of `text`.
    pub fn redact_bounded(&self, text: &str, max: usize) -> String {
        let emit_end = prefix_at_most(text, max).len();
        let window = prefix_at_most(text, max.saturating_add(self.longest));
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.patterns {
            ranges.extend(
                window
                    .match_indices(pattern.as_str())
                    .map(|(at, m)| (at, at + m.len()))
                    .filter(|&(start, _)| start < emit_end),
            );
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(emit_end.min(max) + 32);
        let mut at = 0;
        for (start, end) in ranges {
            if end <= at {
                continue;
            }
            if start > at {
                out.push_str(&window[at..start]);
            }
            if start >= at || !out.ends_with(REDACTED) {
                out.push_str(REDACTED);
            }
            at = end;
        }
        if at < emit_end {
            out.push_str(&window[at..emit_end]);
        }
        let cut = text.len().saturating_sub(at.max(emit_end));
        // Markers may be longer than what they replace: room for one at the cut.
        let cap = max.saturating_add(REDACTED.len());
        if out.len() > cap {
            let kept = prefix_at_most(&out, cap).len();
            let dropped = out.len() - kept;
            out.truncate(kept);
            let _ = write!(out, "… [{} bytes cut]", cut + dropped);
        } else if cut > 0 {
            let _ = write!(out, "… [{cut} bytes cut]");
        }
        out
    }

    /// `text` with every secret form replaced, not cut.
    pub fn redact(&self, text: &str) -> String {
        self.redact_bounded(text, usize::MAX)
    }
}

/// The forms of `secret` to mask besides the secret itself.
fn encodings(secret: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = Vec::new();
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        // The secret may start at any of the 3 byte offsets of a base64 group. Characters that
        // also carry bits of the bytes before or after it differ with context, so only the
        // characters made of the secret's bits alone are matched; padding is then irrelevant.
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret);
            let encoded = engine.encode(&bytes);
            let skip = [0, 2, 3][offset];
            let end = if bytes.len() % 3 == 0 {
                encoded.len()
            } else {
                encoded.len() - 1
            };
            if end > skip + 4 {
                forms.push(encoded[skip..end].to_string());
            }
        }
    }
    let text = String::from_utf8_lossy(secret);
    forms.push(url::form_urlencoded::byte_serialize(secret).collect());
    let upper = percent_encode(secret, true);
    forms.push(upper.replace("%20", "+"));
    forms.push(upper);
    forms.push(percent_encode(secret, false));
    if text.contains(' ') {
        forms.push(text.replace(' ', "+"));
    }
    forms.push(hex::encode(secret));
    forms.push(hex::encode_upper(secret));
    forms.retain(|f| f.as_bytes() != secret);
    forms
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(bytes: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if upper {
            let _ = write!(out, "%{b:02X}");
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &str = "s3cr3t/Key+with?odd=chars& ok";

    fn redactor() -> Redactor {
        Redactor::new(&[SECRET.to_string()])
    }

    #[test]
    fn verbatim_and_encoded_secrets_are_masked() {
        let r = redactor();
        let cases = [
            SECRET.to_string(),
            STANDARD.encode(SECRET),
            URL_SAFE.encode(SECRET),
            STANDARD_NO_PAD_ENCODE(SECRET),
            // Inside a longer base64 value, at each alignment: `Basic base64(user:secret)`.
            STANDARD.encode(format!("user:{SECRET}")),
            STANDARD.encode(format!("u:{SECRET}")),
            STANDARD.encode(format!("us:{SECRET}")),
            URL_SAFE.encode(format!("ab{SECRET}cd")),
            url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect(),
            percent_encode(SECRET.as_bytes(), true),
            percent_encode(SECRET.as_bytes(), false),
            hex::encode(SECRET),
            hex::encode_upper(SECRET),
        ];
        for case in cases {
            let line = format!("token={case} end");
            let out = r.redact(&line);
            assert!(out.contains(REDACTED), "not masked: {line} -> {out}");
            assert!(!out.contains("s3cr3t"), "{out}");
            // Nothing long of the encoded form survives.
            let core = &case[case.len() / 4..case.len() * 3 / 4];
            assert!(!out.contains(core), "{case}: {out}");
        }
    }

    #[allow(non_snake_case)]
    fn STANDARD_NO_PAD_ENCODE(s: &str) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(s)
    }

    #[test]
    fn a_secret_straddling_the_cut_is_masked_whole() {
        let r = redactor();
        let text = format!("{}{SECRET}{}", "x".repeat(95), "y".repeat(1000));
        let out = r.redact_bounded(&text, 100);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains(REDACTED));
        assert!(out.contains("bytes cut"));
        assert!(out.len() < 140, "{}", out.len());
    }

    #[test]
    fn bounded_redaction_cuts_long_text_and_keeps_short_text() {
        let r = Redactor::new(&[]);
        assert_eq!(r.redact_bounded("short", 10), "short");
        let out = r.redact_bounded(&"é".repeat(100_000), 1_001);
        assert!(out.starts_with("éé"));
        assert!(out.len() < 1_050);
        assert!(out.ends_with("bytes cut]"));
    }

    #[test]
    fn short_secrets_are_masked_only_verbatim() {
        let r = Redactor::new(&["abcd".to_string()]);
        assert_eq!(r.redact("x abcd y"), "x [redacted] y");
        // Its base64 form is too short to mask without garbling ordinary text.
        assert_eq!(r.redact("YWJjZA=="), "YWJjZA==");
    }

    #[test]
    fn limits_name_themselves() {
        let page = so::PollPage {
            events: vec![],
            next_cursor: Some("c".repeat(MAX_CURSOR_BYTES + 1)),
            has_more: false,
            statuses: vec![],
            ownership_changes: vec![],
        };
        let error = page.check_bounds().expect_err("cursor over the limit");
        assert!(error.to_string().contains("MAX_CURSOR_BYTES"), "{error}");
        assert!(error.to_string().contains("next-cursor"), "{error}");
    }
}
