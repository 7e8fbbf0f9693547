//! `switchboard demo`: the whole product on one machine, in one process.
//!
//! The demo builds the Telegram plugin and the chosen helpdesk's plugin (`--helpdesk`: Zendesk
//! by default, Freshdesk, Salesforce or Request Tracker) from the source tree, starts the
//! Telegram simulator and the helpdesk (its simulator; for RT a real RT 5 through
//! `scripts/rt.sh`) and the hub (on a fresh SQLite file in a temp dir), then sets things up the
//! way an admin would, through the admin API over HTTP: it uploads the plugins, creates the two
//! installations (connecting Salesforce with OAuth2's JWT bearer flow), links them, and points
//! Telegram's webhook at the hub. Then it plays a scripted conversation both ways, printing
//! each step and the effect the hub produced as soon as it shows up in the services.
//!
//! With `--once` it then checks the services hold exactly what the script expects (tickets,
//! public and private comments, messages sent, nothing for the internal note, no duplicates),
//! prints a last line starting with `demo ok:` or `demo FAILED:`, and exits 0 or 1. Without it,
//! everything keeps running for a person to poke at until Ctrl-C.

pub mod desk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use switchboard_simulators::telegram;
use tokio_util::sync::CancellationToken;

use self::desk::{Desk, Helpdesk, RtQueue, RtServer};
use crate::hub::{Hub, HubConfig};
use crate::plugin_build::{build_plugin, BuildOptions};
use crate::server::{self, AppState, ServerOptions};

/// `switchboard demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Play the script once, check every expected effect, and exit: 0 when all were seen.
    #[arg(long)]
    pub once: bool,
    /// The helpdesk tickets are filed in. `rt` needs Request Tracker 5 installed
    /// (`scripts/rt.sh install`, as root).
    #[arg(long, value_enum, default_value_t = Helpdesk::Zendesk)]
    pub helpdesk: Helpdesk,
    /// The Switchboard source tree, holding `plugins/telegram` and the helpdesk's plugin.
    /// Defaults to the tree this binary was built from.
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Where the hub listens. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// The tree this binary was compiled from (`host/`'s parent).
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The Telegram installation's id; the helpdesk's is `<helpdesk>-demo`, the link's
/// `telegram-to-<helpdesk>`.
const TELEGRAM: &str = "telegram-demo";

/// The simulated bot's token, and the secret Telegram sends with each webhook delivery.
const BOT_TOKEN: &str = "5550001111:AAHdemoBotTokenForTheSwitchboardDemo";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";

/// How long the demo waits for one effect before calling it missing. Effects normally show up
/// within a second or two; polls run every two (RT only reports changes two seconds old).
const EFFECT_TIMEOUT: Duration = Duration::from_secs(30);

fn helpdesk_installation(helpdesk: Helpdesk) -> String {
    format!("{}-demo", helpdesk.name())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let mut running = Running::default();
    let outcome = play(&args, &shutdown, &mut running).await;
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
    // The hub first (it would poll a stopped RT), then RT, then their files.
    if let Some(hub) = running.hub.take() {
        hub.stopped().await;
    }
    drop(running.rt.take());
    drop(running.workdir.take());
    Ok(code)
}

/// What the demo started, stopped by [`run`] in order whatever happened.
#[derive(Default)]
struct Running {
    hub: Option<RunningHub>,
    rt: Option<RtProcess>,
    workdir: Option<WorkDir>,
}

/// Builds, starts and sets up everything, plays the script, and then either checks the result
/// (`--once`: `Some(summary or problems)`) or keeps running until Ctrl-C (`None`). What it
/// starts is left in `running`, so the caller stops it whatever happened.
async fn play(
    args: &DemoArgs,
    shutdown: &CancellationToken,
    running: &mut Running,
) -> anyhow::Result<Option<Result<String, Vec<String>>>> {
    let helpdesk = args.helpdesk;
    let source = source_tree(args.source_dir.as_deref(), helpdesk)?;
    if helpdesk == Helpdesk::Rt {
        desk::rt_installed(&desk::RT_SERVER_PATHS)?;
    }
    let workdir = running.workdir.insert(WorkDir::create()?).path.clone();

    step("Building the connector plugins");
    let telegram_wasm = build(&source, "plugins/telegram").await?;
    let helpdesk_wasm = build(&source, helpdesk.plugin_dir()).await?;

    step(if helpdesk == Helpdesk::Rt {
        "Starting the Telegram simulator and Request Tracker"
    } else {
        "Starting the simulators"
    });
    let services = Services::start(helpdesk, &source, &workdir, &mut running.rt).await?;
    say(&format!(
        "Telegram Bot API simulator: {}",
        services.telegram_url
    ));
    say(&format!(
        "{} {}: {}",
        helpdesk.title(),
        if helpdesk == Helpdesk::Rt {
            "5 (real, on SQLite)"
        } else {
            "simulator"
        },
        services.desk.url
    ));

    step("Starting the hub");
    let hub = running
        .hub
        .insert(start_hub(&workdir, args.listen, shutdown.clone()).await?);
    say(&format!(
        "hub: {} (SQLite file {})",
        hub.url,
        workdir.join("hub.db").display()
    ));
    let admin = Admin::new(&hub.url, &hub.admin_token);

    step("Setting up, as an admin would, through the admin API");
    setup(&admin, &services, &hub.url, &telegram_wasm, &helpdesk_wasm).await?;
    let mut script = Script {
        admin: &admin,
        services: &services,
        started: Instant::now(),
    };
    script.play().await?;
    if args.once {
        return Ok(Some(verify(&admin, &services).await));
    }
    keep_running(hub, &services).await;
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
fn source_tree(given: Option<&Path>, helpdesk: Helpdesk) -> anyhow::Result<PathBuf> {
    let dir = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(BUILT_FROM));
    let dir = dir.canonicalize().unwrap_or(dir);
    let plugin = helpdesk.plugin_dir();
    if !dir.join("plugins/telegram/Cargo.toml").is_file()
        || !dir.join(plugin).join("Cargo.toml").is_file()
    {
        bail!(
            "{} is not a Switchboard source tree (no plugins/telegram and {plugin}): pass --source-dir",
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
        crate::config::create_data_dir(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ----- the services -------------------------------------------------------------------------

/// The Telegram simulator and the helpdesk.
struct Services {
    telegram: telegram::Simulator,
    telegram_url: String,
    desk: Desk,
}

impl Services {
    /// Starts the Telegram simulator and the helpdesk: its simulator, or for RT a fresh
    /// instance under `workdir` (kept in `rt_slot`, so it is stopped when the demo ends).
    async fn start(
        helpdesk: Helpdesk,
        source: &Path,
        workdir: &Path,
        rt_slot: &mut Option<RtProcess>,
    ) -> anyhow::Result<Self> {
        let telegram = telegram::Simulator::new(telegram::Config::for_token(BOT_TOKEN));
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let (telegram_addr, _) = telegram.clone().serve(local).await?;
        let served = |addr: SocketAddr| format!("http://{addr}");
        let desk = match helpdesk {
            Helpdesk::Zendesk => {
                let sim = desk::zendesk_simulator();
                let (addr, _) = sim.clone().serve(local).await?;
                Desk::zendesk(sim, &served(addr))
            }
            Helpdesk::Freshdesk => {
                let sim = desk::freshdesk_simulator();
                let (addr, _) = sim.clone().serve(local).await?;
                Desk::freshdesk(sim, &served(addr))
            }
            Helpdesk::Salesforce => {
                let sim = desk::salesforce_simulator();
                let (addr, _) = sim.clone().serve(local).await?;
                Desk::salesforce(sim, &served(addr))
            }
            Helpdesk::Rt => {
                let rt = rt_slot.insert(RtProcess::start(source, &workdir.join("rt")).await?);
                let queue = RtQueue::create(rt.server.clone(), "Social").await?;
                say(&format!(
                    "RT queue Social; agents log in at {} (user {}, password {})",
                    rt.server.url, rt.server.agent_user, rt.server.agent_password
                ));
                Desk::rt(queue, &rt.server.url)
            }
        };
        Ok(Self {
            telegram,
            telegram_url: served(telegram_addr),
            desk,
        })
    }

    /// What the bot sent to a chat, oldest first.
    fn sent_to(&self, chat: i64) -> Vec<String> {
        self.telegram
            .sent_messages(Some(chat))
            .into_iter()
            .map(|m| m.text)
            .collect()
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

/// A Request Tracker instance started with `scripts/rt.sh start`; stopped when dropped.
struct RtProcess {
    script: PathBuf,
    dir: PathBuf,
    server: RtServer,
}

impl RtProcess {
    async fn start(source: &Path, dir: &Path) -> anyhow::Result<Self> {
        let script = source.join("scripts/rt.sh");
        let started = Instant::now();
        // --watch-pid: RT goes away with this process even if the demo is killed.
        let output = tokio::process::Command::new(&script)
            .arg("start")
            .arg(dir)
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!(
                "{} start failed ({}): {}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let server = RtServer::from_credentials(&dir.join("credentials.env"))?;
        say(&format!(
            "Request Tracker started in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(Self {
            script,
            dir: dir.to_path_buf(),
            server,
        })
    }
}

impl Drop for RtProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
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
    let mut config = HubConfig::new(database_url, dir, secret_key);
    // The demo's simulators listen on loopback over plain http.
    config.network.allow_private_network = true;
    let hub = Hub::open(config).await.context("opening the hub")?;
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

/// Uploads and approves the plugins, creates the installations (connecting Salesforce through
/// OAuth2), links them, and chooses how messages travel: Telegram by webhook; the helpdesk by
/// webhook where it has them, with a poll every two seconds as a safety net (the only way for
/// Salesforce and RT).
async fn setup(
    admin: &Admin,
    services: &Services,
    hub_url: &str,
    telegram_wasm: &[u8],
    helpdesk_wasm: &[u8],
) -> anyhow::Result<()> {
    let desk = &services.desk;
    let helpdesk = desk.helpdesk();
    let title = helpdesk.title();
    let installation = helpdesk_installation(helpdesk);
    let link = format!("telegram-to-{}", helpdesk.name());
    for wasm in [telegram_wasm, helpdesk_wasm] {
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
                "api_base": services.telegram_url,
                "webhook_secret": WEBHOOK_SECRET,
            }}),
        )
        .await?;
    say(&format!(
        "installation {TELEGRAM}: the bot, on the Telegram simulator"
    ));
    let hook = format!("{hub_url}/webhooks/{installation}");
    let webhook_settings = desk.add_webhook(&hook).await?;
    let pushed = webhook_settings.is_some();
    let settings = desk::merged(desk.installation_settings(), webhook_settings);
    admin
        .post(
            "/installations",
            json!({"id": installation, "plugin_id": helpdesk.plugin_id(), "settings": settings,
            "deadline_ms": helpdesk.deadline_ms()}),
        )
        .await?;
    say(&format!(
        "installation {installation}: the account, at {}{}",
        desk.url,
        if pushed {
            format!(" (webhook to {hook})")
        } else {
            String::new()
        }
    ));
    if let Some(flow) = helpdesk.oauth_flow() {
        let connected = admin
            .post(
                &format!("/installations/{installation}/oauth/connect"),
                json!({ "flow": flow }),
            )
            .await?;
        say(&format!(
            "connected through OAuth2: the {} flow, signed with the bundled throwaway test key",
            connected["oauth"]["flow"].as_str().unwrap_or(flow)
        ));
    }
    admin
        .post(
            "/links",
            json!({"id": link, "social_installation": TELEGRAM, "helpdesk_installation": installation, "settings": {"tags": ["demo"]}}),
        )
        .await?;
    say(&format!(
        "link {link}: Telegram conversations become {title} tickets{}",
        if helpdesk.has_tags() {
            " tagged `demo`"
        } else {
            ""
        }
    ));

    let webhook = format!("{hub_url}/webhooks/{TELEGRAM}");
    services.set_telegram_webhook(&webhook).await?;
    // Telegram refuses getUpdates while a webhook is set: that job would only fail.
    let telegram_job = admin.job_id(TELEGRAM, "updates").await?;
    admin
        .post(&format!("/jobs/{telegram_job}/pause"), json!({}))
        .await?;
    say(&format!(
        "Telegram webhook set to {webhook} (with a secret token); its poll job paused"
    ));
    let helpdesk_job = admin.job_id(&installation, helpdesk.stream()).await?;
    admin
        .patch(
            &format!("/jobs/{helpdesk_job}"),
            json!({"schedule": "*/2 * * * * *"}),
        )
        .await?;
    say(&if pushed {
        format!("{title} ticket changes are also polled every 2 seconds (duplicates of webhook events are dropped)")
    } else {
        format!("{title} ticket changes are polled every 2 seconds ({title} has no webhooks)")
    });
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
    services: &'a Services,
    started: Instant,
}

impl Script<'_> {
    async fn play(&mut self) -> anyhow::Result<()> {
        let desk = &self.services.desk;
        let title = desk.helpdesk().title();
        self.started = Instant::now();
        step("Scene 1: three customers write to the bot");
        let aiko = self.customer_opens(&AIKO, AIKO_FIRST).await?;
        let bruno = self.customer_opens(&BRUNO, BRUNO_FIRST).await?;
        let chen = self.customer_opens(&CHEN, CHEN_FIRST).await?;

        step("Scene 2: a follow-up lands on the same ticket");
        self.customer_follows_up(&AIKO, &aiko, AIKO_FOLLOW_UP, 2)
            .await?;

        step(&format!("Scene 3: agents answer in {title}"));
        self.agent_replies(&AIKO, &aiko, AIKO_REPLY, 1).await?;
        say(&format!(
            "agent adds an internal note on #{bruno}: {}",
            quote(BRUNO_NOTE)
        ));
        desk.agent_reply(&bruno, BRUNO_NOTE, false).await?;
        self.agent_replies(&BRUNO, &bruno, BRUNO_REPLY, 1).await?;
        say(&format!(
            "✓ the internal note was not sent: {} got only the public reply",
            BRUNO.name
        ));
        self.agent_replies(&CHEN, &chen, CHEN_REPLY, 1).await?;

        step("Scene 4: the conversation goes on");
        self.customer_follows_up(&BRUNO, &bruno, BRUNO_SECOND, 4)
            .await?;

        step("Scene 5: a solved ticket, then a new message");
        say(&format!("agent marks #{aiko} solved"));
        desk.set_status(&aiko, "solved").await?;
        let seen = desk.helpdesk().solved_reads_as();
        self.wait(
            &format!("the hub to learn the ticket is {seen}"),
            || async { hub_sees_status(self.admin, &aiko, seen).await },
        )
        .await?;
        say(&format!("✓ the hub knows #{aiko} is {seen} {}", self.at()));
        say(&format!(
            "{} → bot: {}",
            AIKO.name,
            quote(AIKO_AFTER_SOLVED)
        ));
        self.services
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                AIKO.chat,
                AIKO.name,
                AIKO_AFTER_SOLVED,
            ));
        let subject = first_line(AIKO_AFTER_SOLVED);
        let fresh = self
            .wait("a new ticket", || async {
                let tickets = desk.tickets().await?;
                Ok(tickets
                    .into_iter()
                    .find(|t| t.subject == subject)
                    .map(|t| t.id))
            })
            .await?;
        say(&format!(
            "✓ new ticket #{fresh} for {} (#{aiko} is {seen}, so a new ticket) {}",
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
        // RT is a real server on the same two cores: ask it less often.
        let pause = if self.services.desk.helpdesk() == Helpdesk::Rt {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(50)
        };
        loop {
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("gave up waiting {}s for {what}", EFFECT_TIMEOUT.as_secs());
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// A customer's first message; returns the ticket it became.
    async fn customer_opens(&self, customer: &Customer, text: &str) -> anyhow::Result<String> {
        let desk = &self.services.desk;
        say(&format!("{} → bot: {}", customer.name, quote(text)));
        self.services
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                customer.chat,
                customer.name,
                text,
            ));
        let subject = first_line(text);
        let ticket = self
            .wait(&format!("a ticket for {}", customer.name), || async {
                Ok(desk
                    .tickets()
                    .await?
                    .into_iter()
                    .find(|t| t.subject == subject))
            })
            .await?;
        let requester = desk.requester_name(&ticket).await?;
        let tags = if desk.helpdesk().has_tags() {
            format!(", tags {}", ticket.tags.join(" "))
        } else {
            String::new()
        };
        say(&format!(
            "✓ {} ticket #{} {:?}, requester {requester}{tags} {}",
            desk.helpdesk().title(),
            ticket.id,
            subject,
            self.at()
        ));
        Ok(ticket.id)
    }

    /// A customer writes again; waits for the ticket to have `comments` comments.
    async fn customer_follows_up(
        &self,
        customer: &Customer,
        ticket: &str,
        text: &str,
        comments: usize,
    ) -> anyhow::Result<()> {
        say(&format!("{} → bot: {}", customer.name, quote(text)));
        self.services
            .telegram
            .customer_message(telegram::CustomerMessage::new(
                customer.chat,
                customer.name,
                text,
            ));
        self.wait("the comment", || async {
            let all = self.services.desk.comments(ticket).await?;
            Ok((all.len() >= comments && all.iter().any(|c| c.body == text)).then_some(()))
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
        ticket: &str,
        text: &str,
        sent: usize,
    ) -> anyhow::Result<()> {
        say(&format!("agent replies on #{ticket}: {}", quote(text)));
        self.services.desk.agent_reply(ticket, text, true).await?;
        self.wait(&format!("the reply to reach {}", customer.name), || async {
            let messages = self.services.sent_to(customer.chat);
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

/// Whether the hub's record of the helpdesk ticket `ticket` has `status`.
async fn hub_sees_status(admin: &Admin, ticket: &str, status: &str) -> anyhow::Result<Option<()>> {
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
            .any(|t| t["external_id"] == ticket && t["status"] == status);
        if known {
            return Ok(Some(()));
        }
    }
    Ok(None)
}

// ----- checking -----------------------------------------------------------------------------------

/// Checks the services hold exactly what the script should have produced, once the hub has
/// nothing left to do. Returns a summary, or every difference found.
async fn verify(admin: &Admin, services: &Services) -> Result<String, Vec<String>> {
    let desk = &services.desk;
    let helpdesk = desk.helpdesk();
    // Let the hub finish anything still queued (a late duplicate would show up here).
    let mut problems = Vec::new();
    if let Err(error) = idle(admin).await {
        problems.push(format!("{error:#}"));
    }
    // One more poll of the helpdesk, which sees every comment the hub wrote: none may come
    // back.
    if let Ok(job) = admin
        .job_id(&helpdesk_installation(helpdesk), helpdesk.stream())
        .await
    {
        if let Err(error) = admin.post(&format!("/jobs/{job}/run"), json!({})).await {
            problems.push(format!("running the {} poll: {error:#}", helpdesk.title()));
        }
    }
    if let Err(error) = idle(admin).await {
        problems.push(format!("{error:#}"));
    }

    let tickets = match desk.tickets().await {
        Ok(tickets) => tickets,
        Err(error) => return Err(vec![format!("reading the tickets: {error:#}")]),
    };
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
        let matching: Vec<_> = tickets.iter().filter(|t| t.subject == subject).collect();
        let [ticket] = matching.as_slice() else {
            problems.push(format!(
                "{} tickets titled {subject:?}, expected 1",
                matching.len()
            ));
            continue;
        };
        let id = &ticket.id;
        let got: Vec<(String, bool)> = match desk.comments(id).await {
            Ok(comments) => comments.into_iter().map(|c| (c.body, c.public)).collect(),
            Err(error) => {
                problems.push(format!("reading the comments of #{id}: {error:#}"));
                continue;
            }
        };
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
        let got = services.sent_to(*chat);
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

/// Waits until the hub has nothing left to deliver.
async fn idle(admin: &Admin) -> anyhow::Result<()> {
    let deadline = Instant::now() + EFFECT_TIMEOUT;
    loop {
        let health = admin.get("/health").await?;
        if health["outbox_pending"] == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the outbox did not drain: {health}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints where everything is and waits for Ctrl-C.
async fn keep_running(hub: &RunningHub, services: &Services) {
    let desk = &services.desk;
    step("The demo keeps running; press Ctrl-C to stop");
    say(&format!("hub:           {}", hub.url));
    say(&format!(
        "admin API:     {}/api/v1 (Authorization: Bearer {})",
        hub.url, hub.admin_token
    ));
    say(&format!(
        "metrics:       {}/metrics (the same bearer token)",
        hub.url
    ));
    say(&format!("Telegram sim:  {}", services.telegram_url));
    say(&format!("{}: {}", desk.helpdesk().title(), desk.url));
    say("try:");
    say(&format!(
        "  curl -s {}/_control/messages -H 'content-type: application/json' -d '{{\"chat_id\":7004,\"from\":{{\"id\":7004,\"first_name\":\"Dana\"}},\"text\":\"Hello!\"}}'",
        services.telegram_url
    ));
    if desk.helpdesk() == Helpdesk::Rt {
        say(&format!(
            "  open {} and log in as the agent shown above to answer tickets in the Social queue",
            desk.url
        ));
    } else {
        // The simulators share one control API shape.
        say(&format!("  curl -s {}/_control/tickets", desk.url));
        let second = desk
            .tickets()
            .await
            .ok()
            .and_then(|t| t.get(1).map(|t| t.id.clone()))
            .unwrap_or_else(|| "2".into());
        say(&format!(
            "  curl -s {}/_control/tickets/{second}/agent_reply -H 'content-type: application/json' -d '{{\"body\":\"Hi again!\",\"public\":true}}'",
            desk.url
        ));
    }
    say(&format!(
        "  curl -s {}/_control/sent?chat_id=7002",
        services.telegram_url
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
