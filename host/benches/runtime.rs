//! Runtime benchmark: instantiation, call and import overhead, cached load, memory per
//! installation. Run with `cargo bench -p switchboard --bench runtime`; results go to stdout
//! in the table format BENCHMARKS.md records.
//!
//! A plain bench binary rather than criterion: the figures asked for are percentiles of single
//! operations and memory deltas, which criterion does not report.

use std::time::{Duration, Instant};

use switchboard::runtime::{CacheOutcome, Installation, Runtime};
use switchboard_testkit as kit;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name} | {:.1} µs | {:.1} µs | {} |",
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

/// Resident set size of this process, from /proc (Linux only).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = kit::component("tests/plugins/misbehave");
    let runtime = kit::runtime(dir.path());
    println!("pooling allocator: {}", runtime.pooling());
    let (plugin, _) = runtime.load(&wasm).await.expect("load");
    let installation = Installation {
        id: "bench".into(),
        ..Default::default()
    };
    let conn = runtime.social(&plugin, &installation).expect("bind");

    println!("| measurement | p50 | p99 | samples |");
    println!("|---|---|---|---|");

    // Warm up the pool slots and caches.
    for _ in 0..200 {
        conn.instantiate_only().await.expect("instantiate");
    }
    let mut samples = Vec::new();
    for _ in 0..5_000 {
        let started = Instant::now();
        conn.instantiate_only().await.expect("instantiate");
        samples.push(started.elapsed());
    }
    report(
        "instantiate from cached InstancePre (fresh store + instance)",
        samples,
    );

    let mut samples = Vec::new();
    for _ in 0..2_000 {
        let started = Instant::now();
        conn.poll("ok", None).await.expect("poll");
        samples.push(started.elapsed());
    }
    report("full call: fresh instance + poll() + teardown", samples);

    // Host→plugin: per-call cost of poll() on one warm instance.
    let mut samples = Vec::new();
    for _ in 0..200 {
        let total = conn
            .bench_warm_polls("ok", None, 100)
            .await
            .expect("warm polls");
        samples.push(total / 100);
    }
    report(
        "host→plugin call on a warm instance (poll, empty page)",
        samples,
    );

    // Plugin→host: clock.now-ms called N times inside one poll, minus the poll itself.
    let calls = 10_000u32;
    let mut samples = Vec::new();
    for _ in 0..100 {
        let with = conn
            .bench_warm_polls("clock", Some(&calls.to_string()), 1)
            .await
            .expect("clock");
        let without = conn
            .bench_warm_polls("clock", Some("0"), 1)
            .await
            .expect("clock");
        samples.push(with.saturating_sub(without) / calls);
    }
    report("plugin→host import (clock.now-ms)", samples);

    // Cached load at start: a new runtime (as after a restart) loading from the disk cache.
    let mut samples = Vec::new();
    for _ in 0..50 {
        let fresh = Runtime::new(runtime.config().clone()).expect("runtime");
        let started = Instant::now();
        let (_, outcome) = fresh.load(&wasm).await.expect("load");
        samples.push(started.elapsed());
        assert_eq!(outcome, CacheOutcome::Hit);
    }
    report(
        "load a cached plugin (deserialize + checks + describe)",
        samples,
    );

    // Memory per idle installation: bound connectors hold settings, grants and policy; no
    // instance lives between calls.
    let before = rss_bytes();
    let idle: Vec<_> = (0..10_000)
        .map(|i| {
            let installation = Installation {
                id: format!("inst-{i}"),
                ..Default::default()
            };
            runtime.social(&plugin, &installation).expect("bind")
        })
        .collect();
    if let (Some(before), Some(after)) = (before, rss_bytes()) {
        println!(
            "\nmemory per idle installation: {:.1} KiB ({} installations, RSS +{:.1} MiB)",
            (after.saturating_sub(before)) as f64 / idle.len() as f64 / 1024.0,
            idle.len(),
            (after.saturating_sub(before)) as f64 / (1 << 20) as f64
        );
    }
    drop(idle);
}
