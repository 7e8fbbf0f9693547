//! A social connector built for contract 0.3, for the host's tests of what 0.3 adds.
//!
//! Its "network" is a test API at the setting `api_base`:
//!
//! - `handle_webhook` takes a JSON body `{"events": [...], "statuses": [...], "ownership":
//!   [...]}` in a small format of its own (see [`Delivery`]) and turns it into 0.3 events with
//!   author signals, referral, ownership, and whether the text mentions `@{brand_handle}`.
//! - `send` prefixes `@{customer handle} ` to the text, as networks that notify by mention
//!   need, and refuses a text that does not fit the network's limit with that prefix: the host
//!   must split replies leaving the manifest's `reserve-per-part` free. It POSTs
//!   `{api_base}/send` with the text, the part (`index/count`) and the visibility, reports one
//!   billable `post-create` call, and answers with the id `sent:{idempotency key}`.
//! - The manifest declares no private reply to public posts, and one attachment at most.

use serde::Deserialize;
use switchboard_plugin_sdk::v0_3::host::switchboard::connector::{http, metering, types};
use switchboard_plugin_sdk::v0_3::social::exports::switchboard::connector::social_connector::{
    DeliveryState, DeliveryStatus, Guest, OutboundMessage, OwnershipChange, PollPage, SentMessage,
    SocialEvent, WebhookOutcome,
};
use types::{
    AuthorSignals, BillableKind, CallContext, ChannelCapabilities, ConnectorError, InvalidField,
    LengthUnit, Manifest, MessageKind, PluginKind, PolicyViolation, Referral, ReferralSource,
    SettingSpec, SocialIdentity, TextLimit, Visibility, WebhookRequest, WebhookResponse,
};

/// The network's own text limit, in chars.
pub const MAX_LENGTH: u32 = 100;
/// Room kept in every part for the `@handle ` prefix.
pub const RESERVE: u32 = 24;
/// The billable kind `send` reports.
pub const POST_CREATE: &str = "post-create";

struct Care;

/// A webhook body.
#[derive(Deserialize)]
struct Delivery {
    #[serde(default)]
    events: Vec<Event>,
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    ownership: Vec<Ownership>,
}

#[derive(Deserialize)]
struct Event {
    id: String,
    thread: String,
    /// `direct-message`, `post` or `comment`.
    kind: String,
    author: Author,
    text: String,
    at: u64,
    #[serde(default = "yes")]
    owned: bool,
    #[serde(default)]
    referral: Option<Ref>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Author {
    id: String,
    handle: Option<String>,
    name: Option<String>,
    followers: Option<u64>,
    verified: Option<bool>,
}

#[derive(Deserialize)]
struct Ref {
    /// `ad`, `post`, `link` or anything else.
    source: String,
    id: Option<String>,
    headline: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    state: String,
    reason: Option<String>,
    at: u64,
}

#[derive(Deserialize)]
struct Ownership {
    thread: String,
    owned: bool,
    owner: Option<String>,
    at: u64,
}

fn setting<'a>(ctx: &'a CallContext, key: &str) -> Result<&'a str, ConnectorError> {
    ctx.settings
        .iter()
        .find(|s| s.key == key)
        .map(|s| s.value.as_str())
        .ok_or_else(|| {
            ConnectorError::InvalidInput(InvalidField {
                field: key.to_string(),
                message: "setting missing".to_string(),
            })
        })
}

fn invalid(field: &str, message: String) -> ConnectorError {
    ConnectorError::InvalidInput(InvalidField {
        field: field.to_string(),
        message,
    })
}

fn kind(name: &str) -> Result<MessageKind, ConnectorError> {
    Ok(match name {
        "direct-message" => MessageKind::DirectMessage,
        "post" => MessageKind::Post,
        "comment" => MessageKind::Comment,
        other => return Err(invalid("kind", format!("unknown kind `{other}`"))),
    })
}

fn event(ctx: &CallContext, e: Event) -> Result<SocialEvent, ConnectorError> {
    let kind = kind(&e.kind)?;
    let brand = format!("@{}", setting(ctx, "brand_handle")?.to_lowercase());
    Ok(SocialEvent {
        addresses_brand: Some(e.text.to_lowercase().contains(&brand)),
        message_id: e.id,
        thread_id: e.thread,
        parent_id: None,
        kind,
        visibility: if kind == MessageKind::DirectMessage {
            Visibility::Private
        } else {
            Visibility::Public
        },
        author: SocialIdentity {
            external_id: e.author.id,
            network: "care".to_string(),
            handle: e.author.handle,
            display_name: e.author.name,
        },
        is_echo: false,
        created_at: e.at,
        text: e.text,
        attachments: Vec::new(),
        reply_handle: None,
        author_signals: AuthorSignals {
            follower_count: e.author.followers,
            verified: e.author.verified,
            verification_kind: e.author.verified.filter(|v| *v).map(|_| "blue".to_string()),
        },
        referral: e.referral.map(|r| Referral {
            source: match r.source.as_str() {
                "ad" => ReferralSource::Ad,
                "post" => ReferralSource::Post,
                "link" => ReferralSource::Link,
                _ => ReferralSource::Other,
            },
            source_id: r.id,
            source_url: None,
            headline: r.headline,
            ref_param: None,
        }),
        owned: e.owned,
    })
}

fn state(name: &str) -> Result<DeliveryState, ConnectorError> {
    Ok(match name {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        other => return Err(invalid("state", format!("unknown state `{other}`"))),
    })
}

impl Guest for Care {
    fn describe() -> Manifest {
        let setting = |key: &str, required: bool| SettingSpec {
            key: key.to_string(),
            label: key.to_string(),
            description: String::new(),
            secret: false,
            required,
            default_value: None,
        };
        Manifest {
            id: "test.care03".to_string(),
            name: "Care 0.3 test network".to_string(),
            version: "0.3.0".to_string(),
            kind: PluginKind::Social,
            description: "A social plugin built for contract 0.3".to_string(),
            settings: vec![setting("api_base", true), setting("brand_handle", true)],
            http_hosts: vec!["{api_base}".to_string()],
            credentials: Vec::new(),
            streams: Vec::new(),
            accepts_webhooks: true,
            text_limits: [Visibility::Public, Visibility::Private]
                .into_iter()
                .map(|visibility| TextLimit {
                    visibility,
                    max_length: MAX_LENGTH,
                    unit: LengthUnit::Chars,
                    reserve_per_part: RESERVE,
                })
                .collect(),
            reply_windows: Vec::new(),
            oauth2: None,
            channel: Some(ChannelCapabilities {
                public_reply_kinds: vec![MessageKind::Post, MessageKind::Comment],
                private_reply_kinds: vec![MessageKind::DirectMessage],
                private_reply_to_public: None,
                edits: false,
                deletes: true,
                max_attachments: Some(1),
                text_unit: LengthUnit::Chars,
            }),
            billable_kinds: vec![BillableKind {
                name: POST_CREATE.to_string(),
                description: "one post or message created".to_string(),
            }],
        }
    }

    fn handle_webhook(
        ctx: CallContext,
        request: WebhookRequest,
    ) -> Result<WebhookOutcome, ConnectorError> {
        let delivery: Delivery = serde_json::from_slice(&request.body)
            .map_err(|e| invalid("body", format!("not a test delivery: {e}")))?;
        let events = delivery
            .events
            .into_iter()
            .map(|e| event(&ctx, e))
            .collect::<Result<Vec<_>, _>>()?;
        let statuses = delivery
            .statuses
            .into_iter()
            .map(|s| {
                Ok(DeliveryStatus {
                    message_id: s.id,
                    state: state(&s.state)?,
                    reason: s.reason,
                    at: s.at,
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        let ownership_changes = delivery
            .ownership
            .into_iter()
            .map(|o| OwnershipChange {
                thread_id: o.thread,
                owned: o.owned,
                owner: o.owner,
                at: o.at,
            })
            .collect();
        Ok(WebhookOutcome {
            response: WebhookResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
            events,
            statuses,
            ownership_changes,
        })
    }

    fn poll(
        _ctx: CallContext,
        _stream: String,
        _cursor: Option<String>,
    ) -> Result<PollPage, ConnectorError> {
        Ok(PollPage {
            events: Vec::new(),
            next_cursor: None,
            has_more: false,
            statuses: Vec::new(),
            ownership_changes: Vec::new(),
        })
    }

    fn send(ctx: CallContext, message: OutboundMessage) -> Result<SentMessage, ConnectorError> {
        let handle = message
            .recipient
            .as_ref()
            .and_then(|r| r.handle.clone())
            .unwrap_or_else(|| "customer".to_string());
        let text = format!("@{handle} {}", message.text);
        let length = text.chars().count();
        if length > MAX_LENGTH as usize {
            // What a network answers to an overlong text.
            return Err(invalid(
                "text",
                format!("{length} chars with the mention; the network takes {MAX_LENGTH}"),
            ));
        }
        if message.visibility == Visibility::Private && message.kind != MessageKind::DirectMessage {
            return Err(ConnectorError::Policy(PolicyViolation {
                code: "no-private-reply".to_string(),
                message: "the network refused a private reply to a public post".to_string(),
            }));
        }
        let body = serde_json::json!({
            "idempotency_key": message.idempotency_key,
            "thread": message.thread_id,
            "text": text,
            "part": format!("{}/{}", message.part.index, message.part.count),
            "visibility": if message.visibility == Visibility::Private { "private" } else { "public" },
            "attachments": message.attachments.len(),
        });
        let response = http::send(&http::Request {
            method: "POST".to_string(),
            url: format!("{}/send", setting(&ctx, "api_base")?),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
            timeout_ms: None,
        })
        .map_err(|e| ConnectorError::Transient(format!("{e:?}")))?;
        metering::report_billable(POST_CREATE, 1).map_err(ConnectorError::Fatal)?;
        if response.status >= 300 {
            return Err(ConnectorError::Transient(format!(
                "the test API answered {}",
                response.status
            )));
        }
        Ok(SentMessage {
            message_ids: vec![format!("sent:{}", message.idempotency_key)],
        })
    }
}

switchboard_plugin_sdk::export_social_v0_3!(Care);
