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
