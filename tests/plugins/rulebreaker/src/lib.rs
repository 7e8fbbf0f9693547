//! The `plugin new` social template (placeholder API) with one acceptance rule broken on
//! demand, for the tests of `switchboard plugin test`: the setting `break` names the rule.
//!
//! | `break`                     | what goes wrong                                        |
//! |-----------------------------|--------------------------------------------------------|
//! | `unauthorized-as-transient` | 401 and 403 become `transient`                         |
//! | `not-found-as-fatal`        | 404 becomes `fatal`                                    |
//! | `conflict-as-fatal`         | 409 becomes `fatal`                                    |
//! | `invalid-as-transient`      | 422 becomes `transient`                                |
//! | `rate-limit-as-transient`   | 429 becomes `transient`                                |
//! | `retry-after-ignored`       | 429 waits 1 s whatever the service asked               |
//! | `server-error-as-fatal`     | 5xx becomes `fatal`                                    |
//! | `timeout-as-fatal`          | a timeout becomes `fatal`                              |
//! | `malformed-as-empty`        | a body that does not parse becomes an empty page / id  |
//! | `duplicate-events`          | a page repeats the event its cursor points at          |
//! | `has-more-always`           | every page says has-more                               |
//! | `cursor-ignored`            | every poll starts from the beginning                   |
//! | `accept-unsigned`           | a delivery without a signature is accepted             |
//! | `accept-forged`             | signatures are not checked at all                      |
//! | `replay-new-ids`            | event ids of a delivery change on every call           |
//! | `handshake-ignored`         | the handshake is answered 200 without the challenge    |
//! | `no-length-check`           | an over-long text is sent to the service               |
//! | `length-check-after-send`   | the length is checked after the service was called     |
//! | `echo-unflagged`            | the brand's own messages are not flagged `is-echo`     |
//! | `key-dropped`               | the idempotency key is not sent                        |

use serde::Deserialize;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::*;

/// Setting keys.
pub mod settings {
    pub const API_BASE: &str = "api_base";
    pub const API_TOKEN: &str = "api_token";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const BREAK: &str = "break";
}

fn broken(ctx: &Context, rule: &str) -> bool {
    ctx.setting(settings::BREAK) == Some(rule)
}

/// Sends a request and judges the answer, wrongly where `break` says so.
fn fetch(ctx: &Context, request: http::Request) -> Result<http::Response> {
    let response = match request.send() {
        Err(ConnectorError::Transient(m)) if broken(ctx, "timeout-as-fatal") => {
            return Err(ConnectorError::Fatal(m))
        }
        other => other?,
    };
    if response.is_success() {
        return Ok(response);
    }
    let error = http::status_error(response.status, &response.headers, &response.body);
    let status = response.status;
    Err(match error {
        ConnectorError::Unauthorized(m) if broken(ctx, "unauthorized-as-transient") => {
            ConnectorError::Transient(m)
        }
        ConnectorError::NotFound(m) if broken(ctx, "not-found-as-fatal") => {
            ConnectorError::Fatal(m)
        }
        ConnectorError::Transient(m) if status == 409 && broken(ctx, "conflict-as-fatal") => {
            ConnectorError::Fatal(m)
        }
        ConnectorError::InvalidInput(f) if broken(ctx, "invalid-as-transient") => {
            ConnectorError::Transient(f.message)
        }
        ConnectorError::RateLimited(r) if broken(ctx, "rate-limit-as-transient") => {
            ConnectorError::Transient(r.message)
        }
        ConnectorError::RateLimited(r) if broken(ctx, "retry-after-ignored") => {
            ConnectorError::rate_limited(1000, r.message)
        }
        ConnectorError::Transient(m) if status >= 500 && broken(ctx, "server-error-as-fatal") => {
            ConnectorError::Fatal(m)
        }
        other => other,
    })
}

fn parse<T: serde::de::DeserializeOwned + Default>(
    ctx: &Context,
    response: &http::Response,
) -> Result<T> {
    match response.json() {
        Err(_) if broken(ctx, "malformed-as-empty") => Ok(T::default()),
        other => other,
    }
}

/// The one stream this connector polls.
pub const MESSAGES_STREAM: &str = "messages";
/// The longest text the API takes, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Messages asked for per poll.
const PAGE_SIZE: &str = "50";
const NETWORK: &str = "rulebreaker";

struct Connector;

impl SocialConnector for Connector {
    fn describe() -> Manifest {
        manifest()
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        if request.method.eq_ignore_ascii_case("GET") {
            // The subscription handshake: echo the challenge.
            if broken(ctx, "handshake-ignored") {
                return Ok(WebhookOutcome {
                    response: webhook::ok(),
                    events: Vec::new(),
                });
            }
            let challenge = webhook::query_param(&request, "challenge")
                .ok_or_else(|| ConnectorError::invalid("challenge", "a GET needs ?challenge="))?;
            return Ok(WebhookOutcome {
                response: webhook::response(200, challenge),
                events: Vec::new(),
            });
        }
        let lenient = broken(ctx, "accept-forged") || broken(ctx, "accept-unsigned");
        let secret = match ctx.setting(settings::WEBHOOK_SECRET) {
            Some(secret) => secret,
            None if lenient => "",
            None => {
                return Err(ConnectorError::unauthorized(
                    "no webhook secret is set: deliveries cannot be verified",
                ))
            }
        };
        let signature = webhook::header(&request, "x-signature");
        let unchecked =
            broken(ctx, "accept-forged") || (signature.is_none() && broken(ctx, "accept-unsigned"));
        let signature = signature.unwrap_or_default();
        if !unchecked && signature.is_empty() {
            return Err(ConnectorError::unauthorized("the delivery is not signed"));
        }
        if !unchecked
            && !signature::verify_hmac_sha256_hex(secret.as_bytes(), &request.body, signature)
        {
            return Err(ConnectorError::unauthorized(
                "the delivery's signature does not match the webhook secret",
            ));
        }
        let delivery: Delivery = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut events: Vec<SocialEvent> = delivery
            .messages
            .into_iter()
            .map(|m| m.into_event(ctx))
            .collect();
        if broken(ctx, "replay-new-ids") {
            // Wait for the next millisecond, so two calls never see the same one.
            let start = now_ms();
            let mut stamp = now_ms();
            while stamp == start {
                stamp = now_ms();
            }
            for event in &mut events {
                event.message_id = format!("{}-{stamp}", event.message_id);
            }
        }
        Ok(WebhookOutcome {
            response: webhook::ok(),
            events,
        })
    }

    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        if stream != MESSAGES_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`"),
            ));
        }
        let base = ctx.require(settings::API_BASE)?;
        let mut request = http::get(format!("{base}/v1/messages"))
            .header("accept", "application/json")
            .query("limit", PAGE_SIZE);
        if let Some(after) = cursor.as_ref().filter(|_| !broken(ctx, "cursor-ignored")) {
            request = request.query("after", after);
        }
        let mut page: MessagePage = parse(ctx, &fetch(ctx, request)?)?;
        if broken(ctx, "duplicate-events") {
            if let (Some(after), Some(first)) = (&cursor, page.messages.first()) {
                page.messages.insert(
                    0,
                    ApiMessage {
                        id: after.clone(),
                        ..first.clone()
                    },
                );
            }
        }
        if broken(ctx, "has-more-always") {
            page.has_more = true;
        }
        log_debug!("polled", count = page.messages.len());
        Ok(PollPage {
            events: page
                .messages
                .into_iter()
                .map(|m| m.into_event(ctx))
                .collect(),
            // No new cursor keeps the one stored: the next poll asks from the same place.
            next_cursor: page.next_after.or(cursor),
            has_more: page.has_more,
        })
    }

    fn send(ctx: &Context, message: OutboundMessage) -> Result<SentMessage> {
        let length = message.text.chars().count();
        let check_first =
            !broken(ctx, "no-length-check") && !broken(ctx, "length-check-after-send");
        if check_first && length > MAX_TEXT_CHARS {
            return Err(ConnectorError::invalid(
                "text",
                format!("{length} characters, over the API's limit of {MAX_TEXT_CHARS}"),
            ));
        }
        let base = ctx.require(settings::API_BASE)?;
        let mut request = http::post(format!(
            "{base}/v1/conversations/{}/messages",
            message.thread_id
        ));
        if !broken(ctx, "key-dropped") {
            request = request.header("idempotency-key", &message.idempotency_key);
        }
        let request = request
            .json(&serde_json::json!({ "text": message.text, "reply_to": message.reply_to }));
        let sent: SentId = parse(ctx, &fetch(ctx, request)?)?;
        if broken(ctx, "length-check-after-send") && length > MAX_TEXT_CHARS {
            return Err(ConnectorError::invalid(
                "text",
                "too long (checked too late)",
            ));
        }
        Ok(SentMessage {
            message_ids: vec![sent.id],
        })
    }
}

switchboard_plugin_sdk::export_social!(Connector);

fn manifest() -> Manifest {
    let api_base = format!("{{{}}}", settings::API_BASE);
    Manifest {
        id: "rulebreaker".into(),
        name: "rulebreaker".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        kind: PluginKind::Social,
        description: "Messages from rulebreaker into the helpdesk, and agents' replies back."
            .into(),
        settings: vec![
            SettingSpec {
                key: settings::API_BASE.into(),
                label: "API base URL".into(),
                description: "Where the API is served, as scheme://host[:port].".into(),
                secret: false,
                required: true,
                default_value: Some("https://api.example.com".into()),
            },
            SettingSpec {
                key: settings::API_TOKEN.into(),
                label: "API token".into(),
                description: "The token the host sends as `Authorization: Bearer`.".into(),
                secret: true,
                required: true,
                default_value: None,
            },
            SettingSpec {
                key: settings::BREAK.into(),
                label: "Rule to break".into(),
                description: "Which acceptance rule to break (see the crate docs).".into(),
                secret: false,
                required: false,
                default_value: None,
            },
            SettingSpec {
                key: settings::WEBHOOK_SECRET.into(),
                label: "Webhook secret".into(),
                description: "Signs webhook deliveries; leave empty when polling.".into(),
                secret: true,
                required: false,
                default_value: None,
            },
        ],
        http_hosts: vec![api_base.clone()],
        credentials: vec![
            CredentialRule {
                host_pattern: api_base,
                placement: CredentialPlacement::Bearer(format!("{{{}}}", settings::API_TOKEN)),
            },
            // The plugin checks webhook signatures itself, so it must see this one secret.
            secret_for_plugin(settings::WEBHOOK_SECRET),
        ],
        streams: vec![StreamSpec {
            name: MESSAGES_STREAM.into(),
            description: "New messages in every conversation.".into(),
            default_schedule: "*/30 * * * * *".into(),
        }],
        accepts_webhooks: true,
        text_limits: [Visibility::Private, Visibility::Public]
            .into_iter()
            .map(|visibility| TextLimit {
                visibility,
                max_length: MAX_TEXT_CHARS as u32,
                unit: LengthUnit::Chars,
            })
            .collect(),
        reply_windows: Vec::new(),
        oauth2: None,
    }
}

#[derive(Debug, Default, Deserialize)]
struct MessagePage {
    messages: Vec<ApiMessage>,
    next_after: Option<String>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Delivery {
    messages: Vec<ApiMessage>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiMessage {
    id: String,
    conversation_id: String,
    author: ApiAuthor,
    #[serde(default)]
    text: String,
    created_at: u64,
    #[serde(default)]
    from_us: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiAuthor {
    id: String,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SentId {
    id: String,
}

impl ApiMessage {
    fn into_event(self, ctx: &Context) -> SocialEvent {
        SocialEvent {
            message_id: self.id,
            thread_id: self.conversation_id,
            parent_id: None,
            kind: MessageKind::DirectMessage,
            visibility: Visibility::Private,
            author: SocialIdentity {
                external_id: self.author.id,
                network: NETWORK.into(),
                handle: None,
                display_name: self.author.name,
            },
            // The hub's own sends come back in polls: flag them so they are not filed again.
            is_echo: self.from_us && !broken(ctx, "echo-unflagged"),
            created_at: self.created_at,
            text: self.text,
            attachments: Vec::new(),
            reply_handle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_plugin_sdk::testkit::{FakeHost, Reply};

    fn ctx(rule: Option<&str>) -> Context {
        let mut settings = vec![(settings::API_BASE, "https://api.example.com")];
        settings.extend(rule.map(|rule| (settings::BREAK, rule)));
        Context::new("test", settings)
    }

    #[test]
    fn a_rule_is_broken_only_when_asked() {
        let host = FakeHost::new();
        host.expect("GET", "https://api.example.com/v1/messages")
            .times(2)
            .reply(Reply::status(401));
        let right = Connector::poll(&ctx(None), MESSAGES_STREAM, None).expect_err("401");
        assert!(
            matches!(right, ConnectorError::Unauthorized(_)),
            "{right:?}"
        );
        let wrong = Connector::poll(
            &ctx(Some("unauthorized-as-transient")),
            MESSAGES_STREAM,
            None,
        )
        .expect_err("401");
        assert!(matches!(wrong, ConnectorError::Transient(_)), "{wrong:?}");
        host.verify();
    }
}
