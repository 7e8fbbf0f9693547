//! The sandbox: a plugin that loops, over-allocates, reaches outside its grant or traps fails
//! that call with its own clear error, within its deadline, while other calls keep working.

mod common;

use std::time::{Duration, Instant};

use switchboard::runtime::{CallError, CallLimits, Installation};

const MISBEHAVE: &str = "tests/plugins/misbehave";

fn installation(deadline: Duration) -> Installation {
    Installation {
        id: "sandbox-test".into(),
        approved_hosts: vec!["https://allowed.example.com".into()],
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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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

// ----- bounds on what a plugin returns (runtime::bounds) ---------------------------------------

use switchboard::runtime::bindings::types::{ConnectorError, WebhookRequest};
use switchboard::runtime::bounds;

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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
    let runtime = switchboard::runtime::Runtime::new(config).expect("runtime");
    if !runtime.pooling() {
        eprintln!("pooling allocator unavailable here; nothing to check");
        return;
    }
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
        Err(error @ CallError::Capacity(_)) => {
            assert!(error.to_string().contains("capacity"), "{error}")
        }
        other => panic!("expected a capacity error, got {other:?}"),
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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
        std::fs::write(&wasm, common::component(MISBEHAVE)).expect("write component");
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
