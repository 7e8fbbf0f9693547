//! A social connector that misbehaves on purpose, for the host's sandbox tests.
//!
//! `poll(stream, ..)` picks the misbehaviour by stream name:
//!
//! | stream           | what it does                                                        |
//! |------------------|---------------------------------------------------------------------|
//! | `loop`           | spins forever: the host must interrupt it (epoch deadline / fuel)   |
//! | `alloc`          | allocates and touches memory until far past 64 MiB: the host's memory limit must stop it |
//! | `forbidden-host` | GETs loopback and evil.example.com, outside its manifest's only host; returns the host's denial message as `Fatal` |
//! | `trap`           | panics, which aborts into a wasm trap                               |
//! | `log-flood`      | logs `LOG_FLOOD_LINES` lines: the host must rate-limit or cap them  |
//! | `context`        | returns the call context's settings as `key=value` lines in `next_cursor` |
//! | `fetch`          | GETs the URL given as the cursor; returns `status <code>` and the response body in `next_cursor`, or the host's error |
//! | `many-events`    | returns `MANY_EVENTS` events in one page                            |
//! | `huge-text`      | returns one event whose text is `HUGE` bytes                        |
//! | `huge-id`        | returns one event whose message id is `HUGE` bytes                  |
//! | `huge-cursor`    | returns an empty page whose cursor is `HUGE` bytes                  |
//! | `huge-error`     | fails with a `Fatal` message of `HUGE_ERROR` bytes that starts with the secret setting |
//! | `huge-log-keys`  | logs one line whose field keys are `HUGE` / 8 bytes (within the host's per-call log volume), one holding the secret |
//! | `secret-encoded` | logs the secret setting base64-, URL-safe-base64-, percent- and hex-encoded, then fails with its base64 form |
//! | `copy-flood`     | returns one event of `COPY_FLOOD` bytes, past the host's copy budget |
//! | anything else    | returns an empty page                                               |
//!
//! `handle_webhook` misbehaves by request path: `many-headers` answers with
//! `MANY_HEADERS` headers, `huge-body` with a body of `HUGE` x 4 bytes; any other path is
//! answered with a plain 200. `send` behaves, so the plugin is otherwise a valid connector.

use std::hint::black_box;

use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::*;

/// The only origin the manifest asks for; every other host must be denied.
pub const ALLOWED_HOST: &str = "https://allowed.example.com";

/// How many lines `log-flood` writes.
pub const LOG_FLOOD_LINES: u32 = 1_000_000;

/// A second, setting-driven origin (`{target}`), for the host's address checks and credential
/// injection; its credential is an `x-api-key` header from the secret setting `api_key`.
pub const TARGET_HOST: &str = "{target}";

/// Where `alloc` stops if nothing stopped it: 1 GiB, far past any sane plugin memory limit.
const ALLOC_CEILING: usize = 1 << 30;

/// Events of `many-events`.
pub const MANY_EVENTS: usize = 20_000;
/// Size of the oversized strings.
pub const HUGE: usize = 1 << 20;
/// Size of the `huge-error` message.
pub const HUGE_ERROR: usize = 8 << 20;
/// Size of the `copy-flood` text: past the host's copy budget, within a 32 MiB memory cap.
pub const COPY_FLOOD: usize = 20 << 20;
/// Headers of the `many-headers` webhook answer.
pub const MANY_HEADERS: usize = 1_000;
/// The secret setting the leak behaviours put in their output.
pub const SECRET_SETTING: &str = "secret_token";

struct Misbehave;

impl SocialConnector for Misbehave {
    fn describe() -> Manifest {
        Manifest {
            id: "test.misbehave".into(),
            name: "Misbehaving test plugin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Social,
            description: "Misbehaves on purpose in poll(), by stream name; for sandbox tests."
                .into(),
            settings: vec![
                setting("target", false),
                setting("plain", false),
                // Injected into requests to `{target}` only; the plugin never sees it.
                setting("api_key", true),
                // Asked for with `secret_for_plugin`: the plugin sees it.
                setting("webhook_secret", true),
                // Declared like an OAuth2 client secret: never given to a plugin.
                setting("oauth_client_secret", true),
                // The secret the leak behaviours try to get past the redaction; asked for,
                // so the plugin sees it.
                setting(SECRET_SETTING, true),
            ],
            http_hosts: vec![ALLOWED_HOST.into(), TARGET_HOST.into()],
            credentials: vec![
                CredentialRule {
                    host_pattern: TARGET_HOST.into(),
                    placement: CredentialPlacement::Header(NamedTemplate {
                        name: "x-api-key".into(),
                        value: "{api_key}".into(),
                    }),
                },
                secret_for_plugin("webhook_secret"),
                secret_for_plugin(SECRET_SETTING),
            ],
            streams: [
                "ok",
                "loop",
                "alloc",
                "forbidden-host",
                "trap",
                "log-flood",
                "clock",
                "context",
                "fetch",
                "many-events",
                "huge-text",
                "huge-id",
                "huge-cursor",
                "huge-error",
                "huge-log-keys",
                "secret-encoded",
                "copy-flood",
            ]
            .into_iter()
            .map(|name| StreamSpec {
                name: name.into(),
                description: format!("poll() misbehaviour `{name}`"),
                default_schedule: "0 * * * *".into(),
            })
            .collect(),
            accepts_webhooks: true,
            text_limits: vec![],
            reply_windows: vec![],
            oauth2: None,
        }
    }

    fn handle_webhook(_ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        let mut response = webhook::ok();
        match request.path.trim_start_matches('/') {
            "many-headers" => {
                response.headers = (0..MANY_HEADERS)
                    .map(|i| (format!("x-h{i}"), "v".to_string()))
                    .collect()
            }
            "huge-body" => response.body = vec![b'b'; HUGE * 4],
            _ => {}
        }
        Ok(WebhookOutcome {
            response,
            events: vec![],
        })
    }

    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        let secret = ctx.setting(SECRET_SETTING).unwrap_or("").to_string();
        match stream {
            "context" => Ok(PollPage {
                next_cursor: Some(
                    ctx.settings()
                        .map(|(key, value)| format!("{key}={value}\n"))
                        .collect(),
                ),
                ..empty_page()
            }),
            "fetch" => {
                let url = cursor.unwrap_or_default();
                let response = http::get(url).timeout_ms(2000).send()?;
                Ok(PollPage {
                    next_cursor: Some(format!(
                        "status {}\n{}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    )),
                    ..empty_page()
                })
            }
            // For the benchmark of import overhead: call the host clock `cursor` times.
            "clock" => {
                let calls: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
                for _ in 0..calls {
                    black_box(now_ms());
                }
                Ok(empty_page())
            }
            "loop" => spin(),
            "alloc" => allocate(),
            "forbidden-host" => forbidden_host(),
            "trap" => panic!("misbehave: trap requested"),
            "log-flood" => {
                for i in 0..LOG_FLOOD_LINES {
                    log_info!("log flood", line = i);
                }
                Ok(empty_page())
            }
            "many-events" => Ok(page(
                (0..MANY_EVENTS).map(|i| event(&format!("m{i}"), "hi")),
            )),
            "huge-text" => Ok(page([event("m1", &"t".repeat(HUGE))])),
            "huge-id" => Ok(page([event(&"i".repeat(HUGE), "hi")])),
            "huge-cursor" => Ok(PollPage {
                next_cursor: Some("c".repeat(HUGE)),
                ..empty_page()
            }),
            "huge-error" => Err(ConnectorError::fatal(format!(
                "{secret} {}",
                "e".repeat(HUGE_ERROR)
            ))),
            "huge-log-keys" => {
                let huge_key = "k".repeat(HUGE / 8);
                let secret_key = format!("key-{secret}");
                switchboard_plugin_sdk::log::__emit(
                    switchboard_plugin_sdk::log::Level::Info,
                    "huge keys",
                    &[(huge_key.as_str(), &"v"), (secret_key.as_str(), &"v")],
                );
                Ok(empty_page())
            }
            "secret-encoded" => {
                use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
                use base64::Engine as _;
                let standard = STANDARD.encode(&secret);
                let basic = STANDARD.encode(format!("user:{secret}"));
                let url_safe = URL_SAFE_NO_PAD.encode(&secret);
                let percent: String = secret
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
                log_info!(
                    "encoded secret",
                    base64 = standard,
                    basic = basic,
                    url_safe = url_safe,
                    percent = percent,
                    hex = hex
                );
                Err(ConnectorError::fatal(format!(
                    "Authorization: Basic {basic}"
                )))
            }
            "copy-flood" => Ok(page([event("m1", &"f".repeat(COPY_FLOOD))])),
            _ => Ok(empty_page()),
        }
    }

    fn send(_ctx: &Context, message: OutboundMessage) -> Result<SentMessage> {
        Ok(SentMessage {
            message_ids: vec![format!("sent-{}", message.idempotency_key)],
        })
    }
}

fn setting(key: &str, secret: bool) -> SettingSpec {
    SettingSpec {
        key: key.into(),
        label: key.into(),
        description: format!("`{key}`, for the host's tests"),
        secret,
        required: false,
        default_value: None,
    }
}

fn empty_page() -> PollPage {
    PollPage {
        events: vec![],
        next_cursor: None,
        has_more: false,
    }
}

fn page(events: impl IntoIterator<Item = SocialEvent>) -> PollPage {
    PollPage {
        events: events.into_iter().collect(),
        next_cursor: None,
        has_more: false,
    }
}

fn event(id: &str, text: &str) -> SocialEvent {
    SocialEvent {
        message_id: id.to_string(),
        thread_id: "t1".into(),
        parent_id: None,
        kind: MessageKind::DirectMessage,
        visibility: Visibility::Private,
        author: SocialIdentity {
            external_id: "u1".into(),
            network: "misbehave".into(),
            handle: None,
            display_name: None,
        },
        is_echo: false,
        created_at: 0,
        text: text.to_string(),
        attachments: vec![],
        reply_handle: None,
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving the loop pointless.
        n = black_box(n.wrapping_add(1));
    }
}

fn allocate() -> Result<PollPage> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    while total < ALLOC_CEILING {
        // Touch every page so the memory is really committed, not just reserved.
        let chunk = vec![0xA5_u8; 1 << 20];
        total += chunk.len();
        chunks.push(black_box(chunk));
    }
    Err(ConnectorError::fatal(format!(
        "allocated {} MiB without being stopped",
        black_box(&chunks).len()
    )))
}

fn forbidden_host() -> Result<PollPage> {
    for url in ["http://127.0.0.1:9/", "https://evil.example.com/"] {
        // The host must refuse both; the denial message (kept verbatim by the SDK) goes back
        // to the caller, which checks it names the host.
        http::get(url).timeout_ms(2000).send()?;
    }
    Err(ConnectorError::fatal(
        "forbidden hosts were reachable: the sandbox let the requests through",
    ))
}

switchboard_plugin_sdk::export_social!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_grants_only_one_host() {
        let manifest = Misbehave::describe();
        assert_eq!(manifest.http_hosts, [ALLOWED_HOST, TARGET_HOST]);
        assert!(manifest
            .credentials
            .iter()
            .all(|rule| rule.host_pattern != ALLOWED_HOST));
        assert!(manifest.streams.iter().any(|s| s.name == "forbidden-host"));
    }

    #[test]
    fn ordinary_streams_return_an_empty_page() {
        let ctx = Context::new("test", [("unused", "")]);
        assert_eq!(Misbehave::poll(&ctx, "ok", None), Ok(empty_page()));
    }

    #[test]
    fn forbidden_host_reports_the_failure_as_fatal() {
        // Natively there is no host: the SDK's stand-in refuses every request.
        let ctx = Context::new("test", [("unused", "")]);
        assert!(matches!(
            Misbehave::poll(&ctx, "forbidden-host", None),
            Err(ConnectorError::Fatal(_))
        ));
    }
}
