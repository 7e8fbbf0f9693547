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
//! | anything else    | returns an empty page                                               |
//!
//! `send` and `handle_webhook` behave: they answer minimally, so the plugin is otherwise a valid
//! connector.

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

    fn handle_webhook(_ctx: &Context, _request: WebhookRequest) -> Result<WebhookOutcome> {
        Ok(WebhookOutcome {
            response: webhook::ok(),
            events: vec![],
        })
    }

    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
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
