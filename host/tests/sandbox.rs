//! The sandbox: a plugin that loops, over-allocates, reaches outside its grant or traps fails
//! that call with its own clear error, within its deadline, while other calls keep working.

mod common;

use std::time::{Duration, Instant};

use switchboard::runtime::{CallError, CallLimits, Installation};

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
    let runtime = common::runtime(dir.path());
    let plugin = common::load(&runtime, &common::component(MISBEHAVE)).await;
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
    let strict = common::runtime_with_network(dir.path(), false);
    let plugin = common::load(&strict, &common::component(MISBEHAVE)).await;
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
    let allowed = common::runtime_with_network(dir.path(), true);
    let plugin = common::load(&allowed, &common::component(MISBEHAVE)).await;
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
