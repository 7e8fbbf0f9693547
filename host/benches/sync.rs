//! Sync benchmark: the real `switchboard serve` binary on SQLite, against the Telegram and
//! Zendesk simulators (in this process). Run with `cargo bench -p switchboard --bench sync`;
//! it prints markdown tables in the format BENCHMARKS.md records:
//!
//! - latency of the hub's webhook endpoint (request sent → 200, i.e. verified by the plugin and
//!   stored durably) at concurrency 1, 8 and 64, with the resulting tickets being created in
//!   the background as in production;
//! - webhook→ticket throughput: many customers' first messages POSTed as fast as the hub takes
//!   them, measured until the last ticket exists in the Zendesk simulator; then the same for
//!   follow-ups, which become comments on those tickets;
//! - a lone message's time from the webhook to the ticket in Zendesk, with nothing else in
//!   flight;
//! - the hub process's peak resident memory (VmHWM).
//!
//! `SWITCHBOARD_BENCH_MESSAGES` sets the number of conversations of the throughput run
//! (default 4000). A plain bench binary, not criterion: the figures asked for are percentiles,
//! rates and memory of another process.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::hub::*;
use futures::stream::{self, StreamExt};

/// Update ids and chat ids handed out so far; each message is new to the hub.
static NEXT_UPDATE: AtomicI64 = AtomicI64::new(1);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Peak resident set size of `pid` in KiB, from /proc (Linux only).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) `pid` has used so far, from /proc (Linux only). On shared,
/// noisy cores this is steadier than throughput: it counts the work, not the waiting.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU per message of the hub and of this process (simulators and client), as table cells.
fn cpu_cells(
    hub: &str,
    hub_before: Option<Duration>,
    own_before: Option<Duration>,
    messages: usize,
) -> String {
    let per = |before: Option<Duration>, pid: &str| match (before, cpu_time(pid)) {
        (Some(before), Some(after)) => {
            format!(
                "{:.0} µs",
                (after - before).as_secs_f64() * 1e6 / messages as f64
            )
        }
        _ => "n/a".into(),
    };
    format!("{} | {}", per(hub_before, hub), per(own_before, "self"))
}

/// Waits until the hub has processed every stored customer message (its tickets, comments and
/// outbox rows exist in the hub), and returns when that was seen.
async fn wait_processed(hub: &HubProcess, timeout: Duration) -> Instant {
    // Read from the hub's database file (read-only): the hub's own health counts the
    // helpdesk's webhooks about the hub's deliveries too, which come in until the last one.
    let url = format!("sqlite://{}?mode=ro", hub.database_path().display());
    let db = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open the hub's database");
    let deadline = Instant::now() + timeout;
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbound_events WHERE processed_at IS NULL AND kind = 'social'",
        )
        .fetch_one(&db)
        .await
        .expect("count pending customer messages");
        if pending == 0 {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "customer messages still pending after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs one message per chat in `chats` (message `n` of each conversation) at `concurrency`,
/// and returns each request's latency. Every answer must be a 2xx.
async fn post_messages(
    hub: &HubProcess,
    chats: &[i64],
    round: usize,
    concurrency: usize,
) -> Vec<Duration> {
    let client = http();
    let url = format!("{}/webhooks/{TELEGRAM}", hub.url);
    stream::iter(chats.iter().copied())
        .map(|chat| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let update_id = NEXT_UPDATE.fetch_add(1, Ordering::Relaxed);
                let text = if round == 0 {
                    format!("Customer {chat} needs help with order {update_id}")
                } else {
                    format!("Follow-up {round} from {chat}")
                };
                let body = telegram_update(update_id, chat, "Bench", &text).to_string();
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
                    .body(body)
                    .send()
                    .await
                    .expect("POST webhook");
                let elapsed = started.elapsed();
                assert!(
                    response.status().is_success(),
                    "webhook answered {}",
                    response.status()
                );
                elapsed
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits until the Zendesk simulator answered `count` successful requests of this kind, and
/// returns when the last of them finished.
async fn wait_zendesk(
    sims: &World,
    method: &str,
    path: &str,
    count: usize,
    timeout: Duration,
) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let done: Vec<Instant> = sims
            .desk_log
            .matching(method, path)
            .into_iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .filter_map(|r| r.finished)
            .collect();
        if done.len() >= count {
            return done.into_iter().max().expect("at least one");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} {method} {path} after {timeout:?}",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run() {
    let conversations: usize = std::env::var("SWITCHBOARD_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000);
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let hub = HubProcess::start_with(dir.path(), &[("RUST_LOG", "warn")]).await;
    connect(&hub, &sims, Inbound::Webhook).await;
    let pid = hub.pid().expect("hub pid");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "hub: {} (pid {pid}), SQLite, {cores} cores shared with the simulators and this client",
        hub.url
    );
    println!();

    // Latency of the webhook endpoint. Each level's conversations are new, so each request
    // also queues a requester and a ticket; the level's tickets are finished before the next
    // level starts, so levels do not measure each other's backlog.
    println!("| webhook latency | requests | p50 | p99 | max | requests/s |");
    println!("|---|---|---|---|---|---|");
    let mut tickets_so_far = 0;
    let mut next_chat = 1_000_000_i64;
    for (concurrency, requests) in [(1, 500), (8, 2000), (64, 4000)] {
        let chats: Vec<i64> = (next_chat..next_chat + requests as i64).collect();
        next_chat += requests as i64;
        let started = Instant::now();
        let mut samples = post_messages(&hub, &chats, 0, concurrency).await;
        let wall = started.elapsed();
        samples.sort();
        println!(
            "| concurrency {concurrency} | {requests} | {} | {} | {} | {:.0} |",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99)),
            ms(*samples.last().expect("samples")),
            requests as f64 / wall.as_secs_f64()
        );
        tickets_so_far += requests;
        wait_zendesk(
            &sims,
            "POST",
            "/api/v2/tickets",
            tickets_so_far,
            Duration::from_secs(600),
        )
        .await;
    }
    println!();

    // A lone message, with nothing else in flight: from the webhook's request to the end of
    // the helpdesk's answer to the ticket it opens.
    const LONE: usize = 50;
    let mut lone = Vec::with_capacity(LONE);
    for _ in 0..LONE {
        let chat = next_chat;
        next_chat += 1;
        let started = Instant::now();
        post_messages(&hub, &[chat], 0, 1).await;
        tickets_so_far += 1;
        let done = wait_zendesk(
            &sims,
            "POST",
            "/api/v2/tickets",
            tickets_so_far,
            Duration::from_secs(60),
        )
        .await;
        lone.push(done.duration_since(started));
    }
    lone.sort();
    println!("| lone message → ticket in Zendesk | messages | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| new conversation, nothing else in flight | {LONE} | {} | {} | {} |",
        ms(percentile(&lone, 0.5)),
        ms(percentile(&lone, 0.99)),
        ms(*lone.last().expect("samples"))
    );
    println!();

    // Throughput: first messages of new conversations, then one follow-up each.
    println!("| webhook→Zendesk throughput | messages | all accepted after | all in hub tickets after (msg/s) | last effect in Zendesk after | messages/s into Zendesk | hub CPU per message | simulators + client CPU per message |");
    println!("|---|---|---|---|---|---|---|---|");
    let chats: Vec<i64> = (next_chat..next_chat + conversations as i64).collect();
    let hub_pid = pid.to_string();
    let (hub_cpu, own_cpu) = (cpu_time(&hub_pid), cpu_time("self"));
    let started = Instant::now();
    post_messages(&hub, &chats, 0, 64).await;
    let accepted = started.elapsed();
    let processed = wait_processed(&hub, Duration::from_secs(900))
        .await
        .duration_since(started);
    let done = wait_zendesk(
        &sims,
        "POST",
        "/api/v2/tickets",
        tickets_so_far + conversations,
        Duration::from_secs(900),
    )
    .await;
    let total = done.duration_since(started);
    println!(
        "| new conversations → tickets | {conversations} | {} | {} ({:.0}) | {} | {:.0} | {} |",
        ms(accepted),
        ms(processed),
        conversations as f64 / processed.as_secs_f64(),
        ms(total),
        conversations as f64 / total.as_secs_f64(),
        cpu_cells(&hub_pid, hub_cpu, own_cpu, conversations)
    );

    let (hub_cpu, own_cpu) = (cpu_time(&hub_pid), cpu_time("self"));
    let started = Instant::now();
    post_messages(&hub, &chats, 1, 64).await;
    let accepted = started.elapsed();
    let processed = wait_processed(&hub, Duration::from_secs(900))
        .await
        .duration_since(started);
    let done = wait_zendesk(
        &sims,
        "PUT",
        "/api/v2/tickets/",
        conversations,
        Duration::from_secs(900),
    )
    .await;
    let total = done.duration_since(started);
    println!(
        "| follow-ups → comments | {conversations} | {} | {} ({:.0}) | {} | {:.0} | {} |",
        ms(accepted),
        ms(processed),
        conversations as f64 / processed.as_secs_f64(),
        ms(total),
        conversations as f64 / total.as_secs_f64(),
        cpu_cells(&hub_pid, hub_cpu, own_cpu, conversations)
    );
    println!();

    match peak_rss_kib(pid) {
        Some(kib) => println!("hub peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("hub peak memory: unavailable (no /proc)"),
    }
    let health = hub.api.health().await;
    println!("hub health after the run: {health}");
}
