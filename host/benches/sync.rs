//! Sync benchmark: the real `switchboard serve` binary on SQLite, against the Telegram and
//! Zendesk simulators (in this process). Run with `cargo bench -p switchboard --bench sync`;
//! it prints markdown tables in the format BENCHMARKS.md records:
//!
//! - a bare relay's rate into the same Zendesk simulator, the baseline (see `relay`): this
//!   binary as a Rust relay, and `benches/relay.js` under Node (the relay issue 8 measured
//!   with) when `node` is on the PATH;
//! - latency of the hub's webhook endpoint (request sent → 200, i.e. verified by the plugin and
//!   stored durably) at concurrency 1, 8 and 64, with the resulting tickets being created in
//!   the background as in production;
//! - a lone message's time from the webhook to the ticket in Zendesk, with nothing else in
//!   flight;
//! - webhook→ticket throughput: many customers' first messages POSTed as fast as the hub takes
//!   them, measured until the last ticket exists in the Zendesk simulator; then the same for
//!   follow-ups, which become comments on those tickets;
//! - the drain of a burst queued while deliveries were held back, tenth by tenth: rate, hub
//!   CPU per ticket from the full backlog to an empty queue, WAL and database size (see
//!   `drain`);
//! - the hub process's peak resident memory (VmHWM).
//!
//! On two cores or more the hub (and the relay) run pinned to one core, the simulators and the
//! client to the other. Sizes: `SWITCHBOARD_BENCH_MESSAGES` (throughput run, default 4000),
//! `SWITCHBOARD_BENCH_RELAY_MESSAGES` (default 20000), `SWITCHBOARD_BENCH_BURST` (default
//! 100000; 0 skips the drain). A plain bench binary, not criterion: the figures asked for are
//! percentiles, rates and memory of other processes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use switchboard_testkit::hub::*;

/// Update ids and chat ids handed out so far; each message is new to the hub.
static NEXT_UPDATE: AtomicI64 = AtomicI64::new(1);

fn main() {
    // The bare relay is this same binary, run again in its own process (see `relay`).
    if let Ok(target) = std::env::var(RELAY_ROLE) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio");
        rt.block_on(relay::serve(&target));
        return;
    }
    // Counted before pinning, which leaves this process one core to see.
    CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Before the runtime starts its threads, so that they all inherit the core.
    pin(std::process::id(), BENCH_CORE);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run());
}

/// The machine's cores, as counted before this process pinned itself to one of them.
static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The environment variable that makes this binary the bare relay, with its target.
const RELAY_ROLE: &str = "SWITCHBOARD_BENCH_RELAY_TARGET";
/// With two cores or more, the hub (or the relay) runs on this one ...
const HUB_CORE: usize = 0;
/// ... and the simulators and the client on this one, so that each side has a core of its
/// own and the simulators' work is not counted against the hub's rate.
const BENCH_CORE: usize = 1;

/// Pins every thread of `pid` to `core` (threads it starts later inherit that), unless the
/// machine has a single core or `SWITCHBOARD_BENCH_PIN=0`. `taskset` rather than a libc call:
/// it walks `/proc/<pid>/task` for the threads the process already has.
fn pin(pid: u32, core: usize) {
    let cores = CORES.get().copied().unwrap_or(1);
    if cores < 2 || std::env::var("SWITCHBOARD_BENCH_PIN").is_ok_and(|v| v == "0") {
        return;
    }
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("could not pin pid {pid} to core {core} with taskset; running unpinned");
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
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
    url: &str,
    chats: &[i64],
    round: usize,
    concurrency: usize,
) -> Vec<Duration> {
    let client = http();
    stream::iter(chats.iter().copied())
        .map(|chat| {
            let (client, url) = (client.clone(), url.to_string());
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

/// Waits until the Zendesk simulator answered `count` successful requests of this kind (the
/// path `path_matches`), and returns when the last of them finished.
async fn wait_zendesk(
    sims: &World,
    method: &str,
    path_matches: impl Fn(&str) -> bool,
    count: usize,
    timeout: Duration,
) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, last) = sims.desk_log.count_ok(method, &path_matches);
        if done >= count {
            return last.expect("at least one");
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {count} {method} requests after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Zendesk's ticket create, as the hub and the relay call it.
fn ticket_create(path: &str) -> bool {
    path == "/api/v2/tickets"
}

/// A comment on a ticket (the hub adds follow-ups with a ticket update).
fn ticket_update(path: &str) -> bool {
    path.starts_with("/api/v2/tickets/")
}

async fn run() {
    let conversations = env_count("SWITCHBOARD_BENCH_MESSAGES", 4000);
    let relay_messages = env_count("SWITCHBOARD_BENCH_RELAY_MESSAGES", 20_000);
    let burst = env_count("SWITCHBOARD_BENCH_BURST", 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let sims = World::start(Helpdesk::Zendesk).await;
    let mut next_chat = 1_000_000_i64;
    let cores = CORES.get().copied().unwrap_or(1);
    println!(
        "{cores} cores; the hub or the relay pinned to core {HUB_CORE}, the simulators and this \
         client to core {BENCH_CORE} (SWITCHBOARD_BENCH_PIN=0 unpins)"
    );
    println!();

    // The baseline first, before the hub registers its Zendesk webhook: the relay's tickets
    // then cost the hub nothing.
    let mut relay_rates = Vec::new();
    if relay_messages > 0 {
        for relay in [relay::Relay::Rust, relay::Relay::Node] {
            if let Some(rate) = relay::measure(relay, &sims, relay_messages, &mut next_chat).await {
                relay_rates.push((relay.name(), rate));
            }
        }
    }

    let hub = HubProcess::start_with(dir.path(), &[("RUST_LOG", "warn")]).await;
    connect(&hub, &sims, Inbound::Webhook).await;
    let pid = hub.pid().expect("hub pid");
    pin(pid, HUB_CORE);
    let webhook = format!("{}/webhooks/{TELEGRAM}", hub.url);
    println!("hub: {} (pid {pid}), SQLite", hub.url);
    println!();

    // Latency of the webhook endpoint. Each level's conversations are new, so each request
    // also queues a requester and a ticket; the level's tickets are finished before the next
    // level starts, so levels do not measure each other's backlog.
    println!("| webhook latency | requests | p50 | p99 | max | requests/s |");
    println!("|---|---|---|---|---|---|");
    let mut tickets_so_far = relay_messages * relay_rates.len();
    for (concurrency, requests) in [(1, 500), (8, 2000), (64, 4000)] {
        let chats: Vec<i64> = (next_chat..next_chat + requests as i64).collect();
        next_chat += requests as i64;
        let started = Instant::now();
        let mut samples = post_messages(&webhook, &chats, 0, concurrency).await;
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
            ticket_create,
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
        post_messages(&webhook, &[chat], 0, 1).await;
        tickets_so_far += 1;
        let done = wait_zendesk(
            &sims,
            "POST",
            ticket_create,
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
    next_chat += conversations as i64;
    let hub_pid = pid.to_string();
    let (hub_cpu, own_cpu) = (cpu_time(&hub_pid), cpu_time("self"));
    let started = Instant::now();
    post_messages(&webhook, &chats, 0, 64).await;
    let accepted = started.elapsed();
    let processed = wait_processed(&hub, Duration::from_secs(900))
        .await
        .duration_since(started);
    let done = wait_zendesk(
        &sims,
        "POST",
        ticket_create,
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
    post_messages(&webhook, &chats, 1, 64).await;
    let accepted = started.elapsed();
    let processed = wait_processed(&hub, Duration::from_secs(900))
        .await
        .duration_since(started);
    let done = wait_zendesk(
        &sims,
        "PUT",
        ticket_update,
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

    if burst > 0 {
        let chats: Vec<i64> = (next_chat..next_chat + burst as i64).collect();
        drain::measure(
            &hub,
            &sims,
            &chats,
            tickets_so_far + conversations,
            &relay_rates,
        )
        .await;
    }

    match peak_rss_kib(pid) {
        Some(kib) => println!("hub peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("hub peak memory: unavailable (no /proc)"),
    }
    let health = hub.api.health().await;
    println!("hub health after the run: {health}");
}

/// Size of a file in bytes; 0 when it does not exist (the WAL between truncations).
fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The baseline: a bare relay, which turns each Telegram webhook into one Zendesk ticket
/// create (the requester inline) and answers once Zendesk has. Nothing is stored,
/// deduplicated, ordered, retried or threaded. It runs in a process of its own, on the core
/// the hub gets later, and posts to the same simulator.
mod relay {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::extract::State;
    use axum::http::StatusCode;
    use serde_json::{json, Value};
    use tokio::io::AsyncBufReadExt;

    use super::*;

    /// Which bare relay runs: this binary, or `benches/relay.js` under Node.
    #[derive(Clone, Copy)]
    pub enum Relay {
        Rust,
        Node,
    }

    impl Relay {
        pub fn name(self) -> &'static str {
            match self {
                Relay::Rust => "Rust",
                Relay::Node => "Node",
            }
        }

        fn command(self) -> tokio::process::Command {
            match self {
                Relay::Rust => {
                    tokio::process::Command::new(std::env::current_exe().expect("own path"))
                }
                Relay::Node => {
                    let mut node = tokio::process::Command::new("node");
                    node.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/relay.js"));
                    node
                }
            }
        }
    }

    struct Target {
        tickets_url: String,
        user: String,
        token: String,
        client: reqwest::Client,
    }

    /// Serves the relay (the role of this binary when [`RELAY_ROLE`] is set to
    /// "<zendesk base url> <agent email> <api token>"); prints its port, then runs until
    /// killed.
    pub async fn serve(target: &str) {
        let mut parts = target.split(' ');
        let (Some(url), Some(email), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("{RELAY_ROLE} is not '<url> <email> <token>': {target}");
        };
        let target = Arc::new(Target {
            tickets_url: format!("{url}/api/v2/tickets"),
            user: format!("{email}/token"),
            token: token.to_string(),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route("/webhook", axum::routing::post(forward))
            .with_state(target);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        println!("{}", listener.local_addr().expect("relay address").port());
        axum::serve(listener, app).await.expect("serve the relay");
    }

    async fn forward(State(target): State<Arc<Target>>, body: axum::body::Bytes) -> StatusCode {
        let Ok(update) = serde_json::from_slice::<Value>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let message = &update["message"];
        let chat = message["chat"]["id"].as_i64().unwrap_or_default();
        let name = message["from"]["first_name"].as_str().unwrap_or("Customer");
        let text = message["text"].as_str().unwrap_or_default();
        let ticket = json!({"ticket": {
            "subject": text.chars().take(60).collect::<String>(),
            "comment": {"body": text},
            "requester": {"name": name, "email": format!("telegram-{chat}@relay.example")},
        }});
        let answer = target
            .client
            .post(&target.tickets_url)
            .basic_auth(&target.user, Some(&target.token))
            .json(&ticket)
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status().is_success() => StatusCode::OK,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Sends `messages` new conversations through a relay at concurrency 64, prints its row,
    /// and returns its rate into the simulator (tickets/s); `None` when the relay cannot start
    /// (no `node` on the PATH).
    pub async fn measure(
        relay: Relay,
        sims: &World,
        messages: usize,
        next_chat: &mut i64,
    ) -> Option<f64> {
        let settings = sims.desk.installation_settings();
        let field = |key: &str| settings[key].as_str().expect("zendesk setting").to_string();
        let target = format!(
            "{} {} {}",
            field("base_url"),
            field("email"),
            field("api_token")
        );
        let mut child = match relay
            .command()
            .env(RELAY_ROLE, target)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                println!("(the {} relay did not start: {error})\n", relay.name());
                return None;
            }
        };
        let stdout = child.stdout.take().expect("relay stdout");
        let port = tokio::io::BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("read the relay's port")
            .expect("the relay printed its port");
        let relay_pid = child.id().expect("relay pid");
        pin(relay_pid, HUB_CORE);

        let chats: Vec<i64> = (*next_chat..*next_chat + messages as i64).collect();
        *next_chat += messages as i64;
        let url = format!("http://127.0.0.1:{port}/webhook");
        let pid = relay_pid.to_string();
        let (relay_cpu, own_cpu) = (cpu_time(&pid), cpu_time("self"));
        let started = Instant::now();
        post_messages(&url, &chats, 0, 64).await;
        let done = wait_zendesk(
            sims,
            "POST",
            ticket_create,
            messages,
            Duration::from_secs(600),
        )
        .await
        .duration_since(started);
        let rate = messages as f64 / done.as_secs_f64();
        println!(
            "| bare {} relay → Zendesk | messages | last ticket in Zendesk after | tickets/s | relay CPU per ticket | simulators + client CPU per ticket |",
            relay.name()
        );
        println!("|---|---|---|---|---|---|");
        println!(
            "| new conversations, concurrency 64 | {messages} | {} | {rate:.0} | {} |",
            ms(done),
            cpu_cells(&pid, relay_cpu, own_cpu, messages)
        );
        println!();
        Some(rate)
    }
}

/// The drain of a burst: `chats.len()` new conversations queued in the hub while its Zendesk
/// installation is disabled, then delivered with the whole backlog waiting. Readings every
/// 500 ms give the rate and the hub's CPU per ticket in each tenth of the drain, from the
/// full backlog down to an empty queue, and the size of the database and its WAL.
mod drain {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    #[derive(Clone, Copy)]
    struct Reading {
        tickets: usize,
        hub_cpu: Duration,
        /// This process's: the simulators and the client.
        bench_cpu: Duration,
        at: Instant,
        wal: u64,
        database: u64,
    }

    struct Probe {
        log: RequestLog,
        hub_pid: String,
        database: PathBuf,
        wal: PathBuf,
        /// Tickets the simulator had before the burst.
        base: usize,
    }

    impl Probe {
        fn read(&self) -> Reading {
            let (tickets, _) = self.log.count_ok("POST", ticket_create);
            Reading {
                tickets: tickets.saturating_sub(self.base),
                hub_cpu: cpu_time(&self.hub_pid).unwrap_or_default(),
                bench_cpu: cpu_time("self").unwrap_or_default(),
                at: Instant::now(),
                wal: file_len(&self.wal),
                database: file_len(&self.database),
            }
        }
    }

    /// CPU per ticket between two readings, in ms, of the hub and of this process.
    fn per_ticket(from: &Reading, to: &Reading) -> Option<(f64, f64)> {
        let tickets = to.tickets.checked_sub(from.tickets)?;
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e3 / tickets as f64;
        (tickets > 0).then(|| {
            (
                per(to.hub_cpu - from.hub_cpu),
                per(to.bench_cpu - from.bench_cpu),
            )
        })
    }

    pub async fn measure(
        hub: &HubProcess,
        sims: &World,
        chats: &[i64],
        tickets_before: usize,
        relay_rates: &[(&str, f64)],
    ) {
        let burst = chats.len();
        let database = hub.database_path();
        let probe = Arc::new(Probe {
            log: sims.desk_log.clone(),
            hub_pid: hub.pid().expect("hub pid").to_string(),
            wal: PathBuf::from(format!("{}-wal", database.display())),
            database: database.clone(),
            base: tickets_before,
        });
        let installation = sims.installation();
        let readings = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let (probe, readings) = (probe.clone(), readings.clone());
            tokio::spawn(async move {
                loop {
                    let reading = probe.read();
                    readings.lock().expect("readings").push(reading);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };

        // Queue the burst with deliveries held back.
        hub.api
            .post(&format!("/installations/{installation}/disable"), json!({}))
            .await;
        let start = probe.read();
        post_messages(&format!("{}/webhooks/{TELEGRAM}", hub.url), chats, 0, 64).await;
        let accepted = start.at.elapsed();
        super::wait_processed(hub, Duration::from_secs(1800)).await;
        let queued = probe.read();

        // Drain it.
        hub.api
            .post(&format!("/installations/{installation}/enable"), json!({}))
            .await;
        let drain_start = probe.read();
        wait_zendesk(
            sims,
            "POST",
            ticket_create,
            tickets_before + burst,
            Duration::from_secs(3600),
        )
        .await;
        let end = probe.read();
        sampler.abort();
        let mut readings = std::mem::take(&mut *readings.lock().expect("readings"));
        readings.push(end);
        let wal_max = readings.iter().map(|r| r.wal).max().unwrap_or(0);
        let drain: Vec<Reading> = readings
            .iter()
            .copied()
            .filter(|r| r.at >= drain_start.at)
            .collect();

        println!("| burst of {burst}: drain into Zendesk, by tenth | backlog at start | tickets/s | hub CPU per ticket | simulators + client CPU per ticket | WAL at end | database at end |");
        println!("|---|---|---|---|---|---|---|");
        // The first reading at or past each tenth of the burst.
        let mark = |share: usize| {
            let wanted = burst * share / 10;
            drain
                .iter()
                .find(|r| r.tickets >= wanted)
                .copied()
                .unwrap_or(end)
        };
        let mut tenths = Vec::new();
        for tenth in 0..10 {
            let (from, to) = if tenth == 0 {
                (drain_start, mark(1))
            } else {
                (mark(tenth), mark(tenth + 1))
            };
            let seconds = to.at.duration_since(from.at).as_secs_f64();
            let cpu = per_ticket(&from, &to);
            tenths.push(cpu.map(|(hub, _)| hub));
            println!(
                "| {}–{} % | {} | {:.0} | {} | {} | {} | {} |",
                tenth * 10,
                tenth * 10 + 10,
                burst - from.tickets.min(burst),
                (to.tickets - from.tickets) as f64 / seconds.max(1e-9),
                cpu.map_or("n/a".into(), |(hub, _)| format!("{hub:.2} ms")),
                cpu.map_or("n/a".into(), |(_, bench)| format!("{bench:.2} ms")),
                mib(to.wal),
                mib(to.database),
            );
        }
        println!();

        let drain_time = end.at.duration_since(drain_start.at);
        let rate = burst as f64 / drain_time.as_secs_f64();
        let ms_per = |from: &Reading, to: &Reading| {
            (to.hub_cpu - from.hub_cpu).as_secs_f64() * 1e3 / burst as f64
        };
        println!(
            "- accepted {burst} webhooks in {} ({:.0}/s); all in the hub's tickets after {}",
            ms(accepted),
            burst as f64 / accepted.as_secs_f64(),
            ms(queued.at.duration_since(start.at))
        );
        println!(
            "- drain: {burst} tickets into Zendesk in {} = {rate:.0} tickets/s{}",
            ms(drain_time),
            relay_rates
                .iter()
                .map(|(name, relay)| format!(
                    ", {:.0} % of the {name} relay's {relay:.0}/s",
                    rate / relay * 100.0
                ))
                .collect::<String>()
                + if relay_rates.is_empty() {
                    ""
                } else {
                    " (target ≥ 50 %)"
                }
        );
        println!(
            "- hub CPU per end-to-end ticket: {:.2} ms (taking and processing the webhook {:.2} ms, \
             delivering {:.2} ms; target ≤ 0.5 ms)",
            ms_per(&start, &end),
            ms_per(&start, &queued),
            ms_per(&drain_start, &end)
        );
        if let (Some(Some(first)), Some(Some(last))) = (tenths.first(), tenths.last()) {
            println!(
                "- delivery CPU per ticket, first tenth (full backlog) vs last tenth (empty \
                 queue): {first:.2} vs {last:.2} ms, {:+.0} % (target within ±10 %)",
                (first / last - 1.0) * 100.0
            );
        }
        println!(
            "- WAL at most {} (the hub truncates it past [store] wal_limit_mb, 64 by default); \
             database {} before the burst, {} after it",
            mib(wal_max),
            mib(start.database),
            mib(end.database)
        );
    }
}
