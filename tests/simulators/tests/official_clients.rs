//! The vendors' own client libraries against the simulators: node-zendesk, freshdesk-api,
//! jsforce, Meta's facebook-nodejs-business-sdk and python-telegram-bot, each driven by a script under `tests/clients/` that makes the
//! calls a real integration makes and exits non-zero, saying what broke, on any failure.
//!
//! The clients are installed by `scripts/clients.sh` (pinned versions; `scripts/test.sh` runs it
//! first). A missing install fails these tests; `SWITCHBOARD_SKIP_CLIENTS=1` skips them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchboard_simulators::{freshdesk, meta, salesforce, telegram, zendesk};
use tokio::process::Command;

/// How long one client script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients")
}

/// False (after saying so) when the clients are to be skipped; panics when they are missing.
fn clients_ready() -> bool {
    if std::env::var("SWITCHBOARD_SKIP_CLIENTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: official client tests (SWITCHBOARD_SKIP_CLIENTS=1)");
        return false;
    }
    let dir = clients_dir();
    for installed in [
        "node_modules/.switchboard-stamp",
        ".venv/.switchboard-stamp",
    ] {
        assert!(
            dir.join(installed).exists(),
            "the official clients are not installed ({} is missing): run scripts/clients.sh, \
             or set SWITCHBOARD_SKIP_CLIENTS=1 to skip these tests",
            dir.join(installed).display()
        );
    }
    true
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs one client script from `tests/clients/` and fails the test with its output unless it
/// exits 0.
async fn run_client(program: &str, script: &str, args: &[String]) {
    let dir = clients_dir();
    let mut command = Command::new(program);
    command
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("starting {program} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprint!("{stdout}");
}

#[tokio::test]
async fn node_zendesk_against_the_zendesk_simulator() {
    if !clients_ready() {
        return;
    }
    let config = zendesk::Config::default().relaxed();
    let (email, token) = (config.agent_email.clone(), config.api_token.clone());
    let (addr, _server) = zendesk::Simulator::new(config)
        .serve(local())
        .await
        .expect("serve zendesk");
    run_client(
        "node",
        "zendesk.mjs",
        &[format!("http://{addr}"), email, token],
    )
    .await;
}

#[tokio::test]
async fn facebook_business_sdk_against_the_meta_simulator() {
    if !clients_ready() {
        return;
    }
    let config = meta::Config::default();
    let (page, token) = (config.page_id.clone(), config.page_access_token.clone());
    let (addr, _server) = meta::Simulator::new(config)
        .serve(local())
        .await
        .expect("serve meta");
    run_client("node", "meta.mjs", &[format!("http://{addr}"), page, token]).await;
}

#[tokio::test]
async fn freshdesk_api_against_the_freshdesk_simulator() {
    if !clients_ready() {
        return;
    }
    let config = freshdesk::Config::default();
    let key = config.api_key.clone();
    let (addr, _server) = freshdesk::Simulator::new(config)
        .serve(local())
        .await
        .expect("serve freshdesk");
    run_client("node", "freshdesk.mjs", &[format!("http://{addr}"), key]).await;
}

#[tokio::test]
async fn jsforce_against_the_salesforce_simulator() {
    if !clients_ready() {
        return;
    }
    let config = salesforce::Config::default();
    let (key, secret) = (config.consumer_key.clone(), config.consumer_secret.clone());
    let (addr, _server) = salesforce::Simulator::new(config)
        .serve(local())
        .await
        .expect("serve salesforce");
    run_client(
        "node",
        "salesforce.mjs",
        &[format!("http://{addr}"), key, secret],
    )
    .await;
}

#[tokio::test]
async fn python_telegram_bot_against_the_telegram_simulator() {
    if !clients_ready() {
        return;
    }
    const CHAT: i64 = 5_550_001;
    let config = telegram::Config::default();
    let token = config.bot_token.clone();
    let sim = telegram::Simulator::new(config);
    let (addr, _server) = sim.clone().serve(local()).await.expect("serve telegram");
    // A customer writes, blocks the bot and unblocks it again, all before the bot polls.
    sim.customer_message(telegram::CustomerMessage::new(CHAT, "Aiko", "hello"));
    sim.block(CHAT).expect("block");
    sim.unblock(CHAT).expect("unblock");
    let python = clients_dir().join(".venv/bin/python");
    run_client(
        &python.to_string_lossy(),
        "telegram_bot.py",
        &[format!("http://{addr}"), token, CHAT.to_string()],
    )
    .await;
    let sent = sim.sent_messages(Some(CHAT));
    assert_eq!(
        sent.len(),
        1,
        "the bot's reply reached the simulator: {sent:?}"
    );
}
