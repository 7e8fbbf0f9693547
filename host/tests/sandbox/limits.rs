//! The sandbox: a plugin that loops, over-allocates, reaches outside its grant or traps fails
//! that call with its own clear error, within its deadline, while other calls keep working.

use std::time::{Duration, Instant};

use switchboard::runtime::{CallError, CallLimits, Installation};
use switchboard_testkit as kit;

const MISBEHAVE: &str = "tests/plugins/misbehave";

fn installation(deadline: Duration) -> Installation {
    Installation {
        id: "sandbox-test".into(),
        // `{target}` is approved too; with no `target` setting it expands to nothing.
        approved_hosts: vec!["https://allowed.example.com".into(), "{target}".into()],
        limits: Some(CallLimits {
            deadline,
            memory_bytes: 32 << 20,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_fails_its_own_call_and_others_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let deadline = Duration::from_secs(2);
    let conn = runtime
        .social(&plugin, &installation(deadline))
        .expect("bind");

    let started = Instant::now();
    let (looped, allocated, forbidden, trapped, ok) = tokio::join!(
        conn.poll("loop", None),
        conn.poll("alloc", None),
        conn.poll("forbidden-host", None),
        conn.poll("trap", None),
        conn.poll("ok", None),
    );

    assert!(
        matches!(looped, Err(CallError::Deadline(d)) if d == deadline),
        "loop: {looped:?}"
    );
    assert!(
        matches!(allocated, Err(CallError::MemoryCap(cap)) if cap == 32 << 20),
        "alloc: {allocated:?}"
    );
    match forbidden {
        Err(CallError::Connector(e)) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("http://127.0.0.1:9"),
                "names the host: {text}"
            );
            assert!(text.contains("http-hosts"), "names the capability: {text}");
        }
        other => panic!("forbidden-host: {other:?}"),
    }
    assert!(
        matches!(&trapped, Err(CallError::Trap(m)) if m.contains("unreachable")),
        "trap: {trapped:?}"
    );
    assert!(
        ok.is_ok(),
        "a well-behaved call in the same host works: {ok:?}"
    );
    // The loop was stopped by its deadline, not left running: everything ended well before a
    // runaway would have (the bound is loose because the machines are shared).
    assert!(
        started.elapsed() < deadline * 10,
        "took {:?}",
        started.elapsed()
    );

    // A trapped instance is never reused: the next call gets a fresh one and succeeds.
    assert!(conn.poll("ok", None).await.is_ok());
}

#[tokio::test]
async fn log_flood_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let conn = runtime
        .social(&plugin, &installation(Duration::from_secs(5)))
        .expect("bind")
        .capture_logs();
    conn.poll("log-flood", None)
        .await
        .expect("log-flood returns normally");
    let kept = conn.take_logs().len();
    let cap = runtime.config().log.max_lines;
    assert!(kept > 0 && kept <= cap, "kept {kept} lines, cap {cap}");
}

#[tokio::test]
async fn unapproved_host_is_denied_even_if_requested() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    // Nothing approved: the manifest's request alone grants nothing.
    let conn = runtime
        .social(
            &plugin,
            &Installation {
                id: "none".into(),
                ..Default::default()
            },
        )
        .expect("bind");
    match conn.poll("forbidden-host", None).await {
        Err(CallError::Connector(e)) => {
            assert!(format!("{e:?}").contains("may not reach"), "{e:?}")
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ----- secrets and addresses ---------------------------------------------------------------------

/// An API on loopback that answers `GET /echo` with the `x-api-key` it got, and counts hits.
async fn key_echo() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            counter.fetch_add(1, Ordering::SeqCst);
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string();
            async move { format!("x-api-key={key}") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// The misbehave plugin with `target` as its second approved origin.
fn target_installation(target: &str, extra: &[(&str, &str)]) -> Installation {
    let mut settings: std::collections::BTreeMap<String, String> =
        [("target".to_string(), target.to_string())].into();
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Installation {
        id: "net-test".into(),
        settings,
        approved_hosts: vec!["{target}".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn secrets_reach_the_plugin_only_when_its_manifest_asks_and_never_oauth_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let (addr, _) = key_echo().await;
    let base = format!("http://{addr}");
    let conn = runtime
        .social(
            &plugin,
            &target_installation(
                &base,
                &[
                    ("plain", "plain-value"),
                    ("api_key", "injected-key-123"),
                    ("webhook_secret", "hook-secret-456"),
                    ("oauth_client_secret", "client-secret-789"),
                ],
            ),
        )
        .expect("bind");
    let seen = conn
        .poll("context", None)
        .await
        .expect("context")
        .next_cursor
        .unwrap_or_default();
    assert!(seen.contains("plain=plain-value"), "{seen}");
    assert!(
        seen.contains("webhook_secret=hook-secret-456"),
        "asked for with secret_for_plugin: {seen}"
    );
    assert!(
        !seen.contains("api_key") && !seen.contains("injected-key-123"),
        "a secret the manifest does not ask for stays with the host: {seen}"
    );
    assert!(
        !seen.contains("oauth_client_secret") && !seen.contains("client-secret-789"),
        "the OAuth2 client secret never reaches a plugin: {seen}"
    );
    // The host still injects the secret the plugin cannot see.
    let fetched = conn
        .poll("fetch", Some(&format!("{base}/echo")))
        .await
        .expect("fetch")
        .next_cursor
        .unwrap_or_default();
    assert_eq!(fetched, "status 200\nx-api-key=injected-key-123");
}

#[tokio::test]
async fn private_addresses_and_plain_http_are_refused_before_connecting_unless_allowed() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let strict = kit::runtime_with_network(dir.path(), false);
    let plugin = kit::load(&strict, &kit::component(MISBEHAVE)).await;
    let (addr, hits) = key_echo().await;
    let port = addr.port();
    // (origin, what the refusal must name). Nothing here is ever connected to: the refusal
    // comes from the URL or the name's resolution. Only loopback is used below when allowed.
    // Loopback comes first so that a host without the check fails the test there, before it
    // could send anything to an address off this machine.
    let refused = [
        (format!("https://127.0.0.1:{port}"), "127.0.0.1"),
        ("https://10.0.0.1".to_string(), "10.0.0.1"),
        ("https://169.254.169.254".to_string(), "169.254.169.254"),
        (format!("https://[::1]:{port}"), "::1"),
        (
            format!("https://[::ffff:7f00:1]:{port}"),
            "::ffff:127.0.0.1",
        ),
        ("https://[fd00::1]".to_string(), "fd00::1"),
        ("https://[fe80::1]".to_string(), "fe80::1"),
        ("https://0.0.0.0".to_string(), "0.0.0.0"),
        // A name that resolves to loopback.
        (format!("https://localhost:{port}"), "localhost"),
        // Plain http, even to a public name.
        ("http://example.com".to_string(), "plain http"),
        (format!("http://127.0.0.1:{port}"), "plain http"),
    ];
    for (origin, named) in &refused {
        let conn = strict
            .social(&plugin, &target_installation(origin, &[]))
            .expect("bind");
        match conn.poll("fetch", Some(&format!("{origin}/echo"))).await {
            Err(CallError::Connector(e)) => {
                let text = format!("{e:?}");
                assert!(text.contains("refused"), "{origin}: {text}");
                assert!(text.contains(named), "{origin} names {named}: {text}");
                assert!(
                    text.contains("allow_private_network"),
                    "{origin} names the setting: {text}"
                );
            }
            other => panic!("{origin} must be refused, got {other:?}"),
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached loopback");

    // With the deployment's permission, loopback (by address and by name) works.
    let allowed = kit::runtime_with_network(dir.path(), true);
    let plugin = kit::load(&allowed, &kit::component(MISBEHAVE)).await;
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let conn = allowed
            .social(&plugin, &target_installation(&origin, &[]))
            .expect("bind");
        let page = conn
            .poll("fetch", Some(&format!("{origin}/echo")))
            .await
            .unwrap_or_else(|e| panic!("{origin} allowed: {e}"));
        assert!(
            page.next_cursor
                .unwrap_or_default()
                .starts_with("status 200"),
            "{origin}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

// ----- bounds on what a plugin returns (runtime::bounds) ---------------------------------------

use switchboard::runtime::bounds;
use switchboard::runtime::latest::{ConnectorError, WebhookRequest};

const SECRET: &str = "sb-Very/Secret+Token?v=1";

fn installation_with_secret() -> Installation {
    Installation {
        settings: [("secret_token".to_string(), SECRET.to_string())].into(),
        ..installation(Duration::from_secs(5))
    }
}

/// Forms of [`SECRET`] that must never reach a log line or a stored error.
fn secret_forms() -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let basic = STANDARD.encode(format!("user:{SECRET}"));
    vec![
        SECRET.to_string(),
        STANDARD.encode(SECRET),
        URL_SAFE_NO_PAD.encode(SECRET),
        // Inside `Basic base64(user:secret)`: a stretch made of the secret's bits alone.
        basic[12..basic.len() - 4].to_string(),
        "sb-Very%2FSecret%2BToken%3Fv%3D1".to_string(),
        hex::encode(SECRET),
    ]
}

fn webhook(path: &str) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_are_refused_with_the_limit_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let conn = runtime
        .social(&plugin, &installation(Duration::from_secs(5)))
        .expect("bind");
    for (stream, constant) in [
        ("many-events", "MAX_EVENTS_PER_CALL"),
        ("huge-text", "MAX_TEXT_BYTES"),
        ("huge-id", "MAX_ID_BYTES"),
        ("huge-cursor", "MAX_CURSOR_BYTES"),
    ] {
        match conn.poll(stream, None).await {
            Err(CallError::OutputLimit(limit)) => {
                assert_eq!(limit.constant, constant, "{stream}: {limit}");
                assert!(
                    CallError::OutputLimit(limit.clone())
                        .to_string()
                        .contains(constant),
                    "{stream}: the error names the limit"
                );
            }
            other => panic!("{stream}: expected an output limit, got {other:?}"),
        }
    }
    for (path, constant) in [
        ("many-headers", "MAX_WEBHOOK_RESPONSE_HEADERS"),
        ("huge-body", "MAX_WEBHOOK_RESPONSE_BODY_BYTES"),
    ] {
        match conn.handle_webhook(webhook(path)).await {
            Err(CallError::OutputLimit(limit)) => assert_eq!(limit.constant, constant, "{limit}"),
            other => panic!("{path}: expected an output limit, got {other:?}"),
        }
    }
    // The copy out of the plugin is stopped before the host holds it, and the error says why
    // (with room in memory for the plugin to build what it returns).
    let roomy = Installation {
        limits: Some(CallLimits {
            deadline: Duration::from_secs(5),
            memory_bytes: 64 << 20,
        }),
        ..installation(Duration::from_secs(5))
    };
    let conn = runtime.social(&plugin, &roomy).expect("bind");
    match conn.poll("copy-flood", None).await {
        Err(error @ CallError::CopyLimit(_)) => {
            assert!(error.to_string().contains("MAX_CALL_COPY_BYTES"), "{error}")
        }
        other => panic!("copy-flood: expected the copy budget, got {other:?}"),
    }
    assert!(conn.poll("ok", None).await.is_ok());
}

#[tokio::test]
async fn plugin_errors_and_logs_are_cut_and_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let conn = runtime
        .social(&plugin, &installation_with_secret())
        .expect("bind")
        .capture_logs();

    let error = conn.poll("huge-error", None).await.expect_err("fails");
    let text = error.to_string();
    assert!(
        text.len() <= bounds::MAX_ERROR_BYTES + 100,
        "the error is cut: {} bytes",
        text.len()
    );
    assert!(text.contains("bytes cut"), "the cut is said");
    assert!(
        !text.contains(SECRET),
        "the secret is redacted: {}",
        &text[..80]
    );
    assert!(matches!(
        error,
        CallError::Connector(ConnectorError::Fatal(_))
    ));

    conn.poll("huge-log-keys", None).await.expect("logs");
    let error = conn.poll("secret-encoded", None).await.expect_err("fails");
    let logs = conn.take_logs();
    let mut seen = format!("{error}\n");
    for line in &logs {
        seen.push_str(&line.message);
        for (key, value) in &line.fields {
            assert!(key.len() <= bounds::MAX_LOG_KEY_BYTES + 40, "key cut");
            seen.push_str(&format!(" {key}={value}"));
        }
        seen.push('\n');
    }
    assert!(seen.contains("key-[redacted]"), "keys are redacted: {seen}");
    for form in secret_forms() {
        assert!(!seen.contains(&form), "`{form}` leaked: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = switchboard::runtime::RuntimeConfig::new(dir.path().join("cache"));
    config.engine.max_instances = 1;
    // A call waits for a free instance (see `runtime::admission`), this long here.
    config.admission.queue_timeout = Duration::from_millis(300);
    let runtime = switchboard::runtime::Runtime::new(config).expect("runtime");
    if !runtime.pooling() {
        eprintln!("pooling allocator unavailable here; nothing to check");
        return;
    }
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let conn = runtime
        .social(&plugin, &installation(Duration::from_secs(3)))
        .expect("bind");
    let (looped, second) = tokio::join!(conn.poll("loop", None), async {
        // The loop holds the only slot for its 3 s deadline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        conn.poll("ok", None).await
    });
    assert!(matches!(looped, Err(CallError::Deadline(_))), "{looped:?}");
    match second {
        Err(error @ CallError::Busy(_)) => {
            let message = error.to_string();
            assert!(
                message.contains("all 1 plugin instances are busy") && message.contains("queue"),
                "{message}"
            )
        }
        other => panic!("expected the pool's refusal, got {other:?}"),
    }
}

/// Resident memory of this process, in MiB (Linux).
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A measurement, not a check: run with `--ignored --nocapture` to see the resident memory
/// before and after rounds of hostile calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn memory_after_hostile_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = kit::runtime(dir.path());
    let plugin = kit::load(&runtime, &kit::component(MISBEHAVE)).await;
    let conn = std::sync::Arc::new(
        runtime
            .social(&plugin, &installation_with_secret())
            .expect("bind"),
    );
    let streams = [
        "alloc",
        "many-events",
        "huge-text",
        "huge-id",
        "huge-cursor",
        "huge-error",
        "huge-log-keys",
        "secret-encoded",
        "copy-flood",
        "log-flood",
        "trap",
    ];
    conn.poll("ok", None).await.expect("warm");
    let before = rss_mib();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    // Copies of the list run at once: more instance slots in use, as in a busy hub.
    let parallel: usize = std::env::var("PARALLEL")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut peak = before;
    for round in 0..rounds {
        let calls = streams
            .iter()
            .cycle()
            .take(streams.len() * parallel)
            .map(|s| {
                let conn = conn.clone();
                async move { conn.poll(s, None).await.map(|_| ()) }
            });
        let _ = futures::future::join_all(calls).await;
        peak = peak.max(rss_mib());
        if round % 5 == 4 {
            eprintln!("after round {}: {} MiB", round + 1, rss_mib());
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "RSS before {before} MiB, peak {peak} MiB, after {rounds} rounds of {} hostile calls: {} MiB",
        streams.len() * parallel,
        rss_mib()
    );
}

/// `switchboard plugin exec` with the misbehaving plugin, in a data dir of its own.
fn exec(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let wasm = dir.join("misbehave.wasm");
    if !wasm.exists() {
        std::fs::write(&wasm, kit::component(MISBEHAVE)).expect("write component");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["plugin", "exec"])
        .arg(&wasm)
        .args(args)
        .env("SWITCHBOARD_DATA_DIR", dir.join("data"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run switchboard");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn plugin_exec_prints_each_log_line_once_and_bodies_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let setting = format!("secret_token={SECRET}");
    let (_, stderr) = exec(
        dir.path(),
        &["poll", "--stream", "secret-encoded", "-s", &setting],
    );
    assert_eq!(
        stderr.matches("encoded secret").count(),
        1,
        "one line per plugin log line: {stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");

    // The answer's body is text, not an array of numbers (which took 2 GB for 50 MB).
    let input = dir.path().join("webhook.json");
    std::fs::write(&input, r#"{"body": "hello"}"#).expect("write input");
    let (stdout, stderr) = exec(
        dir.path(),
        &[
            "handle-webhook",
            "--input",
            &format!("@{}", input.display()),
        ],
    );
    let answer: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(answer["response"]["body"], "", "{answer}");

    // A body over the hub's webhook body limit is refused as the server would refuse it.
    let big = serde_json::json!({ "body": "x".repeat(2 << 20) }).to_string();
    std::fs::write(&input, big).expect("write input");
    let (stdout, stderr) = exec(
        dir.path(),
        &[
            "handle-webhook",
            "--input",
            &format!("@{}", input.display()),
        ],
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("webhook_body_limit"), "{stderr}");
}
