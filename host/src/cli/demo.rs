//! `switchboard demo`: the whole product on one machine, in one process.
//!
//! The demo builds the Telegram and Zendesk plugins from the source tree, starts the Telegram
//! and Zendesk simulators and the hub (on a fresh SQLite file in a temp dir), then sets things
//! up the way an admin would, through the admin API over HTTP: it uploads the plugins, creates
//! the two installations pointed at the simulators, links them, and points Telegram's webhook
//! at the hub. Then it plays a scripted conversation both ways, printing each step and the
//! effect the hub produced as soon as it shows up in the simulators.
//!
//! With `--once` it then checks the simulators hold exactly what the script expects (tickets,
//! public and private comments, messages sent, nothing for the internal note, no duplicates),
//! prints a last line starting with `demo ok:` or `demo FAILED:`, and exits 0 or 1. Without it,
//! everything keeps running for a person to poke at until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use switchboard_simulators::{telegram, zendesk};
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, HubConfig};
use crate::plugin_build::{build_plugin, BuildOptions};
use crate::server::{self, AppState, ServerOptions};

/// `switchboard demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Play the script once, check every expected effect, and exit: 0 when all were seen.
    #[arg(long)]
    pub once: bool,
    /// The Switchboard source tree, holding `plugins/telegram` and `plugins/zendesk`. Defaults
    /// to the tree this binary was built from.
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Where the hub listens. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// The tree this binary was compiled from (`host/`'s parent).
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Installation and link ids the demo creates.
const TELEGRAM: &str = "telegram-demo";
const ZENDESK: &str = "zendesk-demo";
const LINK: &str = "telegram-to-zendesk";

/// The simulated bot's token, and the secret Telegram sends with each webhook delivery.
const BOT_TOKEN: &str = "5550001111:AAHdemoBotTokenForTheSwitchboardDemo";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";

/// How long the demo waits for one effect before calling it missing. Effects normally show up
/// within a second; polls run every two.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let mut hub = None;
    let outcome = play(&args, &shutdown, &mut hub).await;
    // Every way out of `--once` ends with the one summary line scripts look for.
    let code = match outcome {
        Err(error) => {
            println!("demo FAILED: {error:#}");
            ExitCode::FAILURE
        }
        Ok(Some(Err(problems))) => {
            println!("demo FAILED: {}", problems.join("; "));
            ExitCode::FAILURE
        }
        Ok(Some(Ok(summary))) => {
            println!(
                "demo ok: {summary} in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
    };
    shutdown.cancel();
    if let Some(hub) = hub {
        hub.stopped().await;
    }
    Ok(code)
}

/// Builds, starts and sets up everything, plays the script, and then either checks the result
/// (`--once`: `Some(summary or problems)`) or keeps running until Ctrl-C (`None`). The hub is
/// left in `hub_slot`, so the caller stops it whatever happened.
async fn play(
    args: &DemoArgs,
    shutdown: &CancellationToken,
    hub_slot: &mut Option<RunningHub>,
) -> anyhow::Result<Option<Result<String, Vec<String>>>> {
    let source = source_tree(args.source_dir.as_deref())?;
    let workdir = WorkDir::create()?;

    step("Building the connector plugins");
    let telegram_wasm = build(&source, "plugins/telegram").await?;
    let zendesk_wasm = build(&source, "plugins/zendesk").await?;

    step("Starting the simulators");
    let sims = Simulators::start().await?;
    say(&format!(
        "Telegram Bot API simulator: {}",
        sims.telegram_url
    ));
    say(&format!("Zendesk Support simulator:  {}", sims.zendesk_url));

    step("Starting the hub");
    let hub = hub_slot.insert(start_hub(&workdir.path, args.listen, shutdown.clone()).await?);
    say(&format!(
        "hub: {} (SQLite file {})",
        hub.url,
        workdir.path.join("hub.db").display()
    ));
    let admin = Admin::new(&hub.url, &hub.admin_token);

    step("Setting up, as an admin would, through the admin API");
    setup(&admin, &sims, &hub.url, &telegram_wasm, &zendesk_wasm).await?;
    let mut script = Script {
        admin: &admin,
        sims: &sims,
        started: Instant::now(),
    };
    script.play().await?;
    if args.once {
        return Ok(Some(verify(&admin, &sims).await));
    }
    keep_running(hub, &sims).await;
    Ok(None)
}

// ----- output ---------------------------------------------------------------------------------

fn step(title: &str) {
    println!("\n==> {title}");
}

fn say(line: &str) {
    println!("    {line}");
}

/// A message shortened to one line for the transcript.
fn quote(text: &str) -> String {
    let one_line = text.replace('\n', " / ");
    if one_line.chars().count() > 60 {
        format!("\"{}…\"", one_line.chars().take(59).collect::<String>())
    } else {
        format!("\"{one_line}\"")
    }
}

// ----- building -------------------------------------------------------------------------------

/// The source tree to build the plugins from: `--source-dir`, else the tree the binary was
/// built from.
fn source_tree(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(BUILT_FROM));
    let dir = dir.canonicalize().unwrap_or(dir);
    if !dir.join("plugins/telegram/Cargo.toml").is_file()
        || !dir.join("plugins/zendesk/Cargo.toml").is_file()
    {
        bail!(
            "{} is not a Switchboard source tree (no plugins/telegram and plugins/zendesk): pass --source-dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Builds the plugin crate at `crate_dir` (relative to `source`) and returns its component.
async fn build(source: &Path, crate_dir: &str) -> anyhow::Result<Vec<u8>> {
    let started = Instant::now();
    let path = source.join(crate_dir);
    let built = tokio::task::spawn_blocking(move || {
        build_plugin(&path, &BuildOptions::default(), &mut |line| {
            tracing::debug!("{line}")
        })
    })
    .await
    .context("the plugin build task failed")?
    .with_context(|| format!("building {crate_dir}"))?;
    let wasm = std::fs::read(&built.component_path)
        .with_context(|| format!("reading {}", built.component_path.display()))?;
    say(&format!(
        "{crate_dir}: {} KiB component in {:.1}s",
        wasm.len().div_ceil(1024),
        started.elapsed().as_secs_f64()
    ));
    Ok(wasm)
}

/// A private temp dir for the hub's database and caches, removed when the demo ends.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("switchboard-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ----- the simulators -------------------------------------------------------------------------

struct Simulators {
    telegram: telegram::Simulator,
    zendesk: zendesk::Simulator,
    telegram_url: String,
    zendesk_url: String,
}

impl Simulators {
    async fn start() -> anyhow::Result<Self> {
        let telegram = telegram::Simulator::new(telegram::Config::for_token(BOT_TOKEN));
        let zendesk = zendesk::Simulator::new(zendesk::Config::default().relaxed());
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let (telegram_addr, _) = telegram.clone().serve(local).await?;
        let (zendesk_addr, _) = zendesk.clone().serve(local).await?;
        Ok(Self {
            telegram,
            zendesk,
            telegram_url: format!("http://{telegram_addr}"),
            zendesk_url: format!("http://{zendesk_addr}"),
        })
    }

    /// Tickets, oldest first.
    fn tickets(&self) -> Vec<Value> {
        let mut tickets = self.zendesk.tickets();
        tickets.sort_by_key(|t| t["id"].as_u64());
        tickets
    }

    /// A ticket's comments as (body, public), oldest first.
    fn comments(&self, ticket: u64) -> Vec<(String, bool)> {
        self.zendesk
            .comments(ticket)
            .iter()
            .map(|c| {
                (
                    c["body"].as_str().unwrap_or_default().to_string(),
                    c["public"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// What the bot sent to a chat, oldest first.
    fn sent_to(&self, chat: i64) -> Vec<String> {
        self.telegram
            .sent_messages(Some(chat))
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    fn user_name(&self, user_id: u64) -> String {
        self.zendesk
            .users()
            .into_iter()
            .find(|u| u["id"].as_u64() == Some(user_id))
            .and_then(|u| u["name"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("user {user_id}"))
    }

    /// Registers a Zendesk webhook to `endpoint` for comment and status events and returns its
    /// signing secret.
    async fn add_zendesk_webhook(&self, endpoint: &str) -> anyhow::Result<String> {
        let config = self.zendesk.config();
        let http = client()?;
        let user = format!("{}/token", config.agent_email);
        let created: Value = http
            .post(format!("{}/api/v2/webhooks", self.zendesk_url))
            .basic_auth(&user, Some(&config.api_token))
            .json(&json!({"webhook": {
                "name": "Switchboard",
                "endpoint": endpoint,
                "http_method": "POST",
                "request_format": "json",
                "status": "active",
                "subscriptions": ["zen:event-type:ticket.comment_added", "zen:event-type:ticket.status_changed"],
            }}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["webhook"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no webhook id in {created}"))?;
        let secret: Value = http
            .get(format!(
                "{}/api/v2/webhooks/{id}/signing_secret",
                self.zendesk_url
            ))
            .basic_auth(&user, Some(&config.api_token))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        secret["signing_secret"]["secret"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no signing secret in {secret}"))
    }

    /// Telegram's `setWebhook`, as a bot owner would call it.
    async fn set_telegram_webhook(&self, url: &str) -> anyhow::Result<()> {
        let answer: Value = client()?
            .post(format!("{}/bot{BOT_TOKEN}/setWebhook", self.telegram_url))
            .json(&json!({"url": url, "secret_token": WEBHOOK_SECRET}))
            .send()
            .await?
            .json()
            .await?;
        if answer["ok"] != true {
            bail!("setWebhook refused: {answer}");
        }
        Ok(())
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?)
}

// ----- the hub ----------------------------------------------------------------------------------

/// The hub, running in this process.
struct RunningHub {
    url: String,
    admin_token: String,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningHub {
    /// Waits for the server and the workers to stop after the shutdown token was cancelled.
    async fn stopped(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

/// Opens the hub on a fresh SQLite file in `dir` with a random secret key and admin token,
/// starts its workers and serves its HTTP API on `listen`, all until `shutdown` is cancelled.
async fn start_hub(
    dir: &Path,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningHub> {
    use rand::RngCore as _;
    let mut secret_key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret_key);
    let mut token = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut token);
    let admin_token = hex::encode(token);

    let database_url = format!("sqlite://{}", dir.join("hub.db").display());
    let hub = Hub::open(HubConfig::new(database_url, dir, secret_key))
        .await
        .context("opening the hub")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let mut tasks = hub.start_workers(shutdown.clone());
    let app = server::router(AppState::new(hub, &admin_token), &ServerOptions::default());
    tasks.spawn(async move {
        if let Err(error) = server::serve(listener, app, shutdown.cancelled_owned()).await {
            tracing::error!(%error, "the demo hub's HTTP server stopped");
        }
    });
    Ok(RunningHub {
        url: format!("http://{addr}"),
        admin_token,
        tasks,
    })
}

// ----- the admin API ------------------------------------------------------------------------------

/// The few admin API calls the demo makes, over HTTP like any admin tool.
struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(hub_url: &str, token: &str) -> Self {
        let http = client().unwrap_or_else(|_| reqwest::Client::new());
        Self {
            base: format!("{hub_url}/api/v1"),
            token: token.to_string(),
            http,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| what.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: the admin API answered {status}: {text}");
        }
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| what.to_string())?
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.get(format!("{}{path}", self.base)),
            &format!("GET {path}"),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            &format!("POST {path}"),
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http.patch(format!("{}{path}", self.base)).json(&body),
            &format!("PATCH {path}"),
        )
        .await
    }

    async fn install_plugin(&self, wasm: &[u8]) -> anyhow::Result<Value> {
        let request = self
            .http
            .post(format!("{}/plugins?approve=all", self.base))
            .header("content-type", "application/wasm")
            .body(wasm.to_vec());
        self.send(request, "uploading a plugin").await
    }

    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        Ok(match self.get(path).await? {
            Value::Array(items) => items,
            Value::Object(map) => map
                .into_iter()
                .find_map(|(_, v)| v.as_array().cloned())
                .unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// The id of the job polling `stream` of `installation`.
    async fn job_id(&self, installation: &str, stream: &str) -> anyhow::Result<String> {
        let jobs = self.list("/jobs").await?;
        let job = jobs
            .iter()
            .find(|j| j["installation_id"] == installation && j["stream"] == stream)
            .ok_or_else(|| anyhow!("no job for {installation}/{stream}"))?;
        Ok(match &job["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Uploads and approves the plugins, creates the installations on the simulators, links them,
/// and chooses how messages travel: Telegram by webhook, Zendesk by webhook with a poll every
/// two seconds as a safety net.
async fn setup(
    admin: &Admin,
    sims: &Simulators,
    hub_url: &str,
    telegram_wasm: &[u8],
    zendesk_wasm: &[u8],
) -> anyhow::Result<()> {
    for wasm in [telegram_wasm, zendesk_wasm] {
        let plugin = admin.install_plugin(wasm).await?;
        say(&format!(
            "installed plugin {} {} (hosts approved: {})",
            plugin["plugin_id"].as_str().unwrap_or("?"),
            plugin["version"].as_str().unwrap_or("?"),
            plugin["approved_hosts"]
        ));
    }
    admin
        .post(
            "/installations",
            json!({"id": TELEGRAM, "plugin_id": "telegram", "settings": {
                "bot_token": BOT_TOKEN,
                "api_base": sims.telegram_url,
                "webhook_secret": WEBHOOK_SECRET,
            }}),
        )
        .await?;
    say(&format!(
        "installation {TELEGRAM}: the bot, on the Telegram simulator"
    ));
    let zendesk_secret = sims
        .add_zendesk_webhook(&format!("{hub_url}/webhooks/{ZENDESK}"))
        .await?;
    let account = sims.zendesk.config();
    admin
        .post(
            "/installations",
            json!({"id": ZENDESK, "plugin_id": "zendesk", "settings": {
                "subdomain": account.subdomain,
                "email": account.agent_email,
                "api_token": account.api_token,
                "base_url": sims.zendesk_url,
                "webhook_secret": zendesk_secret,
            }}),
        )
        .await?;
    say(&format!("installation {ZENDESK}: the account, on the Zendesk simulator (webhook to {hub_url}/webhooks/{ZENDESK})"));
    admin
        .post(
            "/links",
            json!({"id": LINK, "social_installation": TELEGRAM, "helpdesk_installation": ZENDESK, "settings": {"tags": ["demo"]}}),
        )
        .await?;
    say(&format!(
        "link {LINK}: Telegram conversations become Zendesk tickets tagged `demo`"
    ));

    let webhook = format!("{hub_url}/webhooks/{TELEGRAM}");
    sims.set_telegram_webhook(&webhook).await?;
    // Telegram refuses getUpdates while a webhook is set: that job would only fail.
    let telegram_job = admin.job_id(TELEGRAM, "updates").await?;
    admin
        .post(&format!("/jobs/{telegram_job}/pause"), json!({}))
        .await?;
    say(&format!(
        "Telegram webhook set to {webhook} (with a secret token); its poll job paused"
    ));
    let zendesk_job = admin.job_id(ZENDESK, "ticket-events").await?;
    admin
        .patch(
            &format!("/jobs/{zendesk_job}"),
            json!({"schedule": "*/2 * * * * *"}),
        )
        .await?;
    say("Zendesk ticket events are also polled every 2 seconds (duplicates of webhook events are dropped)");
    Ok(())
}

// ----- the script ---------------------------------------------------------------------------------

struct Customer {
    chat: i64,
    name: &'static str,
}

const AIKO: Customer = Customer {
    chat: 7001,
    name: "Aiko",
};
const BRUNO: Customer = Customer {
    chat: 7002,
    name: "Bruno",
};
const CHEN: Customer = Customer {
    chat: 7003,
    name: "Chen",
};

const AIKO_FIRST: &str = "My order never arrived\nOrder #1234 was due on Friday.";
const AIKO_FOLLOW_UP: &str = "I'm home all day today, if that helps.";
const AIKO_REPLY: &str = "Sorry about that, Aiko! A replacement ships today, tracking to follow.";
const AIKO_AFTER_SOLVED: &str = "Got it, thank you! Is there a warranty on it?";
const BRUNO_FIRST: &str = "Can I change my delivery address?";
const BRUNO_NOTE: &str = "Internal: address changes are fine before dispatch.";
const BRUNO_REPLY: &str = "Yes! Just send us the new address here.";
const BRUNO_SECOND: &str = "12 Harbour Street, Leith. Thanks!";
const CHEN_FIRST: &str = "Refund request\nThe blender broke after two days.";
const CHEN_REPLY: &str = "We're sorry, Chen. Your refund is on its way.";

struct Script<'a> {
    admin: &'a Admin,
    sims: &'a Simulators,
    started: Instant,
}

impl Script<'_> {
    async fn play(&mut self) -> anyhow::Result<()> {
        self.started = Instant::now();
        step("Scene 1: three customers write to the bot");
        let aiko = self.customer_opens(&AIKO, AIKO_FIRST).await?;
        let bruno = self.customer_opens(&BRUNO, BRUNO_FIRST).await?;
        let chen = self.customer_opens(&CHEN, CHEN_FIRST).await?;

        step("Scene 2: a follow-up lands on the same ticket");
        self.customer_follows_up(&AIKO, aiko, AIKO_FOLLOW_UP, 2)
            .await?;

        step("Scene 3: agents answer in Zendesk");
        self.agent_replies(&AIKO, aiko, AIKO_REPLY, 1).await?;
        say(&format!(
            "agent adds an internal note on #{bruno}: {}",
            quote(BRUNO_NOTE)
        ));
        self.sims.zendesk.agent_reply(bruno, BRUNO_NOTE, false);
        self.agent_replies(&BRUNO, bruno, BRUNO_REPLY, 1).await?;
        say(&format!(
            "✓ the internal note was not sent: {} got only the public reply",
            BRUNO.name
        ));
        self.agent_replies(&CHEN, chen, CHEN_REPLY, 1).await?;

        step("Scene 4: the conversation goes on");
        self.customer_follows_up(&BRUNO, bruno, BRUNO_SECOND, 4)
            .await?;

        step("Scene 5: a solved ticket, then a new message");
        say(&format!("agent marks #{aiko} solved"));
        self.sims.zendesk.set_status(aiko, "solved");
        self.wait("the hub to learn the ticket is solved", || async {
            hub_sees_status(self.admin, aiko, "solved").await
        })
        .await?;
        say(&format!("✓ the hub knows #{aiko} is solved {}", self.at()));
        say(&format!(
            "{} → bot: {}",
            AIKO.name,
            quote(AIKO_AFTER_SOLVED)
        ));
        self.sims
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                AIKO.chat,
                AIKO.name,
                AIKO_AFTER_SOLVED,
            ));
        let fresh = self
            .wait("a new ticket", || async {
                let tickets = self.sims.tickets();
                Ok(tickets
                    .iter()
                    .find(|t| t["subject"] == first_line(AIKO_AFTER_SOLVED))
                    .and_then(|t| t["id"].as_u64()))
            })
            .await?;
        say(&format!(
            "✓ new ticket #{fresh} for {} (#{aiko} is solved, so a new ticket) {}",
            AIKO.name,
            self.at()
        ));
        Ok(())
    }

    /// Elapsed time since the scene started, for the transcript.
    fn at(&self) -> String {
        format!("[{:.1}s]", self.started.elapsed().as_secs_f64())
    }

    async fn wait<T, F, Fut>(&self, what: &str, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        loop {
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("gave up waiting {}s for {what}", EFFECT_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A customer's first message; returns the ticket it became.
    async fn customer_opens(&self, customer: &Customer, text: &str) -> anyhow::Result<u64> {
        say(&format!("{} → bot: {}", customer.name, quote(text)));
        self.sims
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                customer.chat,
                customer.name,
                text,
            ));
        let subject = first_line(text);
        let ticket = self
            .wait(&format!("a ticket for {}", customer.name), || async {
                Ok(self
                    .sims
                    .tickets()
                    .into_iter()
                    .find(|t| t["subject"] == subject.as_str()))
            })
            .await?;
        let id = ticket["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("ticket without id: {ticket}"))?;
        let requester = self
            .sims
            .user_name(ticket["requester_id"].as_u64().unwrap_or_default());
        let tags: Vec<&str> = ticket["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        say(&format!(
            "✓ Zendesk ticket #{id} {:?}, requester {requester}, tags {} {}",
            subject,
            tags.join(" "),
            self.at()
        ));
        Ok(id)
    }

    /// A customer writes again; waits for the ticket to have `comments` comments.
    async fn customer_follows_up(
        &self,
        customer: &Customer,
        ticket: u64,
        text: &str,
        comments: usize,
    ) -> anyhow::Result<()> {
        say(&format!("{} → bot: {}", customer.name, quote(text)));
        self.sims
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                customer.chat,
                customer.name,
                text,
            ));
        self.wait("the comment", || async {
            let all = self.sims.comments(ticket);
            Ok((all.len() >= comments && all.iter().any(|(body, _)| body == text)).then_some(()))
        })
        .await?;
        say(&format!(
            "✓ added to ticket #{ticket} as a public comment {}",
            self.at()
        ));
        Ok(())
    }

    /// An agent answers publicly; waits for the customer's `sent`-th message from the bot.
    async fn agent_replies(
        &self,
        customer: &Customer,
        ticket: u64,
        text: &str,
        sent: usize,
    ) -> anyhow::Result<()> {
        say(&format!("agent replies on #{ticket}: {}", quote(text)));
        self.sims.zendesk.agent_reply(ticket, text, true);
        self.wait(&format!("the reply to reach {}", customer.name), || async {
            let messages = self.sims.sent_to(customer.chat);
            Ok((messages.len() >= sent && messages.iter().any(|m| m == text)).then_some(()))
        })
        .await?;
        say(&format!(
            "✓ bot → {}: {} {}",
            customer.name,
            quote(text),
            self.at()
        ));
        Ok(())
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Whether the hub's record of the Zendesk ticket `ticket` has `status`.
async fn hub_sees_status(admin: &Admin, ticket: u64, status: &str) -> anyhow::Result<Option<()>> {
    let wanted = ticket.to_string();
    for conversation in admin.list("/conversations").await? {
        let id = match &conversation["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let detail = admin.get(&format!("/conversations/{id}")).await?;
        let known = detail["tickets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["external_id"] == wanted.as_str() && t["status"] == status);
        if known {
            return Ok(Some(()));
        }
    }
    Ok(None)
}

// ----- checking -----------------------------------------------------------------------------------

/// Checks the simulators hold exactly what the script should have produced, once the hub has
/// nothing left to do. Returns a summary, or every difference found.
async fn verify(admin: &Admin, sims: &Simulators) -> Result<String, Vec<String>> {
    // Let the hub finish anything still queued (a late duplicate would show up here).
    let idle = async {
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        loop {
            let health = admin.get("/health").await?;
            if health["outbox_pending"] == 0 {
                return Ok::<_, anyhow::Error>(health);
            }
            if Instant::now() >= deadline {
                bail!("the outbox did not drain: {health}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut problems = Vec::new();
    if let Err(error) = idle.await {
        problems.push(format!("{error:#}"));
    }
    // One more poll of Zendesk, which sees every comment the hub wrote: none may come back.
    if let Ok(job) = admin.job_id(ZENDESK, "ticket-events").await {
        if let Err(error) = admin.post(&format!("/jobs/{job}/run"), json!({})).await {
            problems.push(format!("running the Zendesk poll: {error:#}"));
        }
    }

    let tickets = sims.tickets();
    let expected: [(&str, Vec<(&str, bool)>); 4] = [
        (
            AIKO_FIRST,
            vec![
                (AIKO_FIRST, true),
                (AIKO_FOLLOW_UP, true),
                (AIKO_REPLY, true),
            ],
        ),
        (
            BRUNO_FIRST,
            vec![
                (BRUNO_FIRST, true),
                (BRUNO_NOTE, false),
                (BRUNO_REPLY, true),
                (BRUNO_SECOND, true),
            ],
        ),
        (CHEN_FIRST, vec![(CHEN_FIRST, true), (CHEN_REPLY, true)]),
        (AIKO_AFTER_SOLVED, vec![(AIKO_AFTER_SOLVED, true)]),
    ];
    if tickets.len() != expected.len() {
        problems.push(format!(
            "{} tickets, expected {}",
            tickets.len(),
            expected.len()
        ));
    }
    let mut comment_count = 0;
    for (first, comments) in &expected {
        let subject = first_line(first);
        let matching: Vec<&Value> = tickets
            .iter()
            .filter(|t| t["subject"] == subject.as_str())
            .collect();
        let [ticket] = matching.as_slice() else {
            problems.push(format!(
                "{} tickets titled {subject:?}, expected 1",
                matching.len()
            ));
            continue;
        };
        let id = ticket["id"].as_u64().unwrap_or_default();
        let got = sims.comments(id);
        let want: Vec<(String, bool)> = comments.iter().map(|(b, p)| (b.to_string(), *p)).collect();
        if got != want {
            problems.push(format!(
                "ticket #{id} has comments {got:?}, expected {want:?}"
            ));
        }
        comment_count += got.len();
    }
    let sent = [
        (AIKO.chat, vec![AIKO_REPLY]),
        (BRUNO.chat, vec![BRUNO_REPLY]),
        (CHEN.chat, vec![CHEN_REPLY]),
    ];
    let mut sent_count = 0;
    for (chat, want) in &sent {
        let got = sims.sent_to(*chat);
        if got != *want {
            problems.push(format!("chat {chat} received {got:?}, expected {want:?}"));
        }
        sent_count += got.len();
    }
    match admin.list("/dead-letters").await {
        Ok(dead) if dead.is_empty() => {}
        Ok(dead) => problems.push(format!("{} dead letters: {dead:?}", dead.len())),
        Err(error) => problems.push(format!("listing dead letters: {error:#}")),
    }
    if problems.is_empty() {
        Ok(format!(
            "{} tickets, {comment_count} comments (1 internal note, not sent), {sent_count} replies delivered to Telegram, no duplicates, no dead letters",
            tickets.len()
        ))
    } else {
        Err(problems)
    }
}

/// Prints where everything is and waits for Ctrl-C.
async fn keep_running(hub: &RunningHub, sims: &Simulators) {
    step("The demo keeps running; press Ctrl-C to stop");
    say(&format!("hub:           {}", hub.url));
    say(&format!(
        "admin API:     {}/api/v1 (Authorization: Bearer {})",
        hub.url, hub.admin_token
    ));
    say(&format!("metrics:       {}/metrics", hub.url));
    say(&format!("Telegram sim:  {}", sims.telegram_url));
    say(&format!("Zendesk sim:   {}", sims.zendesk_url));
    say("try:");
    say(&format!(
        "  curl -s {}/_control/messages -H 'content-type: application/json' -d '{{\"chat_id\":7004,\"from\":{{\"id\":7004,\"first_name\":\"Dana\"}},\"text\":\"Hello!\"}}'",
        sims.telegram_url
    ));
    say(&format!("  curl -s {}/_control/tickets", sims.zendesk_url));
    say(&format!(
        "  curl -s {}/_control/tickets/2/agent_reply -H 'content-type: application/json' -d '{{\"body\":\"Hi again!\",\"public\":true}}'",
        sims.zendesk_url
    ));
    say(&format!(
        "  curl -s {}/_control/sent?chat_id=7002",
        sims.telegram_url
    ));
    say(&format!(
        "  curl -s -H 'Authorization: Bearer {}' {}/api/v1/conversations",
        hub.admin_token, hub.url
    ));
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "could not wait for Ctrl-C");
    }
    println!("\nstopping");
}
