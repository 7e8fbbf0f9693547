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
            settings: vec![],
            http_hosts: vec![ALLOWED_HOST.into()],
            credentials: vec![],
            streams: [
                "ok",
                "loop",
                "alloc",
                "forbidden-host",
                "trap",
                "log-flood",
                "clock",
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

    fn poll(_ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        match stream {
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
        assert_eq!(manifest.http_hosts, [ALLOWED_HOST]);
        assert!(manifest.credentials.is_empty());
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
