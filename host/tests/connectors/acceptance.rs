//! `switchboard plugin test`, the acceptance suite: every check fails on a connector that
//! breaks its rule (the rule-breaker test plugins, on the `plugin new` templates' fixtures),
//! and the five connectors pass it against their simulators through the real binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use switchboard::acceptance::{self, Options, Outcome, Report, WebhookSample};
use switchboard::exchange::{read_fixtures, DevTap};
use switchboard::manifest::PluginKind;
use switchboard::runtime::Installation;
use switchboard_testkit as common;

use crate::rt_or_skip;

/// Writes the template crate of `kind` named `name` (its fixtures and webhook samples).
fn template(dir: &Path, name: &str, kind: PluginKind) -> PathBuf {
    let crate_dir = dir.join(name);
    switchboard::scaffold::write(&switchboard::scaffold::NewPlugin {
        name: name.into(),
        kind,
        dir: crate_dir.clone(),
        sdk_path: switchboard::scaffold::default_sdk_path().expect("the SDK of this checkout"),
    })
    .expect("template written");
    crate_dir
}

fn sample(path: &Path) -> Option<WebhookSample> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("a webhook sample"))
}

/// Runs the suite in process on a rule-breaker plugin, against its template's fixtures.
async fn run_breaker(crate_dir: &str, template_dir: &Path, rule: Option<&str>) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runtime = common::runtime(dir.path());
    let tap = Arc::new(
        DevTap::new().with_replay(read_fixtures(&template_dir.join("fixtures")).expect("fixtures")),
    );
    runtime.set_http_tap(tap.clone());
    let plugin = common::load(&runtime, &common::component_once(crate_dir)).await;
    let mut settings: BTreeMap<String, String> = [
        ("api_token", "test-token"),
        ("webhook_secret", "test-webhook-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(rule) = rule {
        settings.insert("break".into(), rule.into());
    }
    let installation = Installation {
        id: "acceptance".into(),
        settings,
        approved_hosts: plugin.manifest().requested_origins(),
        ..Default::default()
    };
    let options = Options {
        webhook_delivery: sample(&template_dir.join("webhooks/delivery.json")),
        webhook_handshake: sample(&template_dir.join("webhooks/handshake.json")),
        run_id: "fixture".into(),
        max_pages: 20,
        ..Options::default()
    };
    acceptance::run(&runtime, &plugin, &installation, tap, &options).await
}

fn outcome<'a>(report: &'a Report, group: &str, check_prefix: &str) -> &'a Outcome {
    &report
        .results
        .iter()
        .find(|r| r.group == group && r.check.starts_with(check_prefix))
        .unwrap_or_else(|| panic!("no check {group}/{check_prefix} in\n{report}"))
        .outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn each_social_check_fails_on_a_connector_that_breaks_its_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template_dir = template(dir.path(), "rulebreaker", PluginKind::Social);
    let plugin = "tests/plugins/rulebreaker";

    let clean = run_breaker(plugin, &template_dir, None).await;
    assert!(clean.passed(), "the unbroken template must pass:\n{clean}");
    assert!(
        !clean
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Skip { .. } | Outcome::Warn { .. })),
        "with fixtures and samples every check runs:\n{clean}"
    );

    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "unauthorized-as-transient",
            &[("error-mapping", "401 "), ("error-mapping", "403 ")],
        ),
        ("not-found-as-fatal", &[("error-mapping", "404 ")]),
        ("conflict-as-fatal", &[("error-mapping", "409 ")]),
        ("invalid-as-transient", &[("error-mapping", "422 ")]),
        (
            "rate-limit-as-transient",
            &[
                ("error-mapping", "429 with Retry-After in seconds"),
                ("error-mapping", "429 with Retry-After as an HTTP date"),
                ("error-mapping", "429 with X-RateLimit-Reset"),
                ("error-mapping", "429 with retry_after in the body"),
            ],
        ),
        (
            "retry-after-ignored",
            &[
                ("error-mapping", "429 with Retry-After in seconds"),
                ("error-mapping", "429 with Retry-After as an HTTP date"),
            ],
        ),
        (
            "server-error-as-fatal",
            &[("error-mapping", "500 "), ("error-mapping", "503 ")],
        ),
        ("timeout-as-fatal", &[("error-mapping", "timeout ")]),
        ("malformed-as-empty", &[("error-mapping", "malformed body")]),
        ("duplicate-events", &[("polling", "no-event-twice")]),
        (
            "has-more-always",
            &[
                ("polling", "has-more-honest"),
                ("polling", "empty-at-the-end"),
            ],
        ),
        ("cursor-ignored", &[("polling", "cursor-resumes")]),
        ("accept-unsigned", &[("webhooks", "unsigned-refused")]),
        ("accept-forged", &[("webhooks", "forged-refused")]),
        ("replay-new-ids", &[("webhooks", "replay-same-ids")]),
        ("handshake-ignored", &[("webhooks", "handshake-answered")]),
        ("no-length-check", &[("sending", "over-limit-refused")]),
        (
            "length-check-after-send",
            &[("sending", "over-limit-refused")],
        ),
        ("echo-unflagged", &[("sending", "echo-flagged")]),
    ];
    for (rule, checks) in cases {
        let report = run_breaker(plugin, &template_dir, Some(rule)).await;
        for (group, check) in *checks {
            let Outcome::Fail { rule: why, fix } = outcome(&report, group, check) else {
                panic!("breaking `{rule}` must fail {group}/{check}:\n{report}")
            };
            assert!(!why.is_empty() && !fix.is_empty(), "{report}");
        }
    }

    // A connector that drops the idempotency key is told so, without failing: some services
    // have no place for it.
    let report = run_breaker(plugin, &template_dir, Some("key-dropped")).await;
    assert!(
        matches!(
            outcome(&report, "sending", "idempotency-key-forwarded"),
            Outcome::Warn { .. }
        ),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_helpdesk_check_fails_on_a_connector_that_breaks_its_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template_dir = template(dir.path(), "rulebreaker-desk", PluginKind::Helpdesk);
    let plugin = "tests/plugins/rulebreaker-desk";

    let clean = run_breaker(plugin, &template_dir, None).await;
    assert!(clean.passed(), "the unbroken template must pass:\n{clean}");
    for (rule, check) in [
        ("requester-always-created", "requester-found-not-duplicated"),
        ("ticket-new-id", "ticket-created-once"),
        ("note-read-public", "note-stays-private"),
        ("status-mismatch", "status-round-trips"),
    ] {
        let report = run_breaker(plugin, &template_dir, Some(rule)).await;
        assert!(
            matches!(outcome(&report, "helpdesk", check), Outcome::Fail { .. }),
            "breaking `{rule}` must fail helpdesk/{check}:\n{report}"
        );
        assert_eq!(
            report.failures().len(),
            1,
            "breaking `{rule}` fails only its own check:\n{report}"
        );
    }
}

// ----- the five connectors, through the real binary ----------------------------------------

/// Runs `switchboard plugin test <component> ARGS --json`; returns the report and whether it
/// exited 0.
fn plugin_test(component: &[u8], name: &str, args: &[String]) -> (Value, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, component).expect("write component");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["plugin", "test"])
        .arg(&path)
        .args(args)
        .arg("--json")
        .env("SWITCHBOARD_DATA_DIR", dir.path().join("data"))
        .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORK", "true")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchboard plugin test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: no JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

fn failures(report: &Value) -> Vec<String> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["outcome"] == "fail")
        .map(|r| {
            format!(
                "{}/{}: {} (fix: {})",
                r["group"], r["check"], r["rule"], r["fix"]
            )
        })
        .collect()
}

/// Runs the binary off the async runtime, which keeps serving the simulators meanwhile.
async fn assert_passes(name: &'static str, component: Arc<Vec<u8>>, args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (report, ok) = tokio::task::spawn_blocking(move || plugin_test(&component, name, &args))
        .await
        .expect("joined");
    let failed = failures(&report);
    // What did not run or only warned, for the CI log.
    for result in report["results"].as_array().into_iter().flatten() {
        if result["outcome"] == "skip" || result["outcome"] == "warn" {
            let why = result
                .get("reason")
                .or(result.get("note"))
                .unwrap_or(&Value::Null);
            eprintln!(
                "{name}: {} {}/{}: {why}",
                result["outcome"], result["group"], result["check"]
            );
        }
    }
    assert!(
        ok && failed.is_empty(),
        "{name} must pass the acceptance suite:\n{}",
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn telegram_passes_the_suite_against_its_simulator() {
    use switchboard_simulators::telegram::{Config, CustomerMessage, Simulator};
    const TOKEN: &str = "123456789:AAHsimulatedTelegramBotToken-0123456";
    let sim = Simulator::new(Config::for_token(TOKEN));
    // Customers have written, so polling pages through real updates and sending has a chat.
    for (chat, text) in [
        (4242, "Hello"),
        (4243, "Is my order late?"),
        (4242, "Still there?"),
    ] {
        sim.customer_message(CustomerMessage::new(chat, "Aiko", text));
    }
    let (addr, _) = sim
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve");
    let base = format!("http://{addr}");
    let component = common::component_once("plugins/telegram");
    let bot = format!("bot_token={TOKEN}");
    let api = format!("api_base={base}");
    // A delivery as Telegram makes it, with the secret token set by setWebhook.
    let samples = tempfile::tempdir().expect("tempdir");
    let delivery = samples.path().join("delivery.json");
    let update = serde_json::json!({"update_id": 900_001, "message": {"message_id": 31,
        "date": 1_717_000_000, "chat": {"id": 4244, "type": "private", "first_name": "Ken"},
        "from": {"id": 4244, "is_bot": false, "first_name": "Ken"}, "text": "Hello?"}});
    let sample = serde_json::json!({
        "method": "POST",
        "headers": [["content-type", "application/json"],
                    ["x-telegram-bot-api-secret-token", "acceptance-secret_1"]],
        "body": update.to_string(),
    });
    std::fs::write(&delivery, sample.to_string()).expect("write sample");
    let delivery = delivery.to_str().expect("utf-8");
    assert_passes(
        "telegram",
        component,
        &[
            "-s",
            &bot,
            "-s",
            &api,
            "-s",
            "webhook_secret=acceptance-secret_1",
            "--webhook-delivery",
            delivery,
        ],
    )
    .await;
}

async fn serve<F, Fut>(serve: F) -> String
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<
        Output = anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
    >,
{
    let (addr, _) = serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve simulator");
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn zendesk_passes_the_suite_against_its_simulator() {
    use switchboard_simulators::zendesk::{Config, Simulator};
    let sim = Simulator::new(Config::default());
    let base = serve(|addr| sim.clone().serve(addr)).await;
    let config = sim.config();
    // A status change as Zendesk's event webhooks sign it.
    const SECRET: &str = "acceptance-signing-secret";
    let body = serde_json::json!({
        "type": "zen:event-type:ticket.status_changed", "subject": "zen:ticket:35436",
        "id": "evt-acceptance-1", "time": "2024-05-01T10:00:01Z",
        "detail": {"id": "35436", "status": "PENDING", "updated_at": "2024-05-01T10:00:00Z"},
        "event": {"current": "PENDING", "previous": "OPEN"}
    })
    .to_string();
    let timestamp = "2024-05-01T10:00:01Z";
    let sample = serde_json::json!({
        "method": "POST",
        "headers": [
            ["x-zendesk-webhook-signature",
             switchboard_simulators::zendesk::sign_webhook(SECRET, timestamp, body.as_bytes())],
            ["x-zendesk-webhook-signature-timestamp", timestamp],
            ["content-type", "application/json"]
        ],
        "body": body,
    });
    let samples = tempfile::tempdir().expect("tempdir");
    let delivery = samples.path().join("delivery.json");
    std::fs::write(&delivery, sample.to_string()).expect("write sample");
    let settings = [
        format!("subdomain={}", config.subdomain),
        format!("email={}", config.agent_email),
        format!("api_token={}", config.api_token),
        format!("base_url={base}"),
        format!("webhook_secret={SECRET}"),
    ];
    let mut args = Vec::new();
    for setting in &settings {
        args.extend(["-s", setting.as_str()]);
    }
    args.extend(["--webhook-delivery", delivery.to_str().expect("utf-8")]);
    assert_passes("zendesk", common::component_once("plugins/zendesk"), &args).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freshdesk_passes_the_suite_against_its_simulator() {
    use switchboard_simulators::freshdesk::{Config, Simulator};
    const EXTERNAL_FIELD: &str = "cf_switchboard_external_id";
    let sim = Simulator::new(Config::default().with_custom_field(EXTERNAL_FIELD));
    let base = serve(|addr| sim.clone().serve(addr)).await;
    let config = sim.config();
    let settings = [
        format!("domain={}", config.domain),
        format!("api_key={}", config.api_key),
        format!("base_url={base}"),
        format!("external_id_field={EXTERNAL_FIELD}"),
    ];
    let mut args = Vec::new();
    for setting in &settings {
        args.extend(["-s", setting.as_str()]);
    }
    assert_passes(
        "freshdesk",
        common::component_once("plugins/freshdesk"),
        &args,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_passes_the_suite_against_its_simulator() {
    use switchboard_simulators::salesforce::{Config, Simulator};
    let sim = Simulator::new(Config::default());
    let base = serve(|addr| sim.clone().serve(addr)).await;
    let token = sim.issue_access_token();
    let instance = format!("instance_url={base}");
    let login = format!("login_url={base}");
    let oauth_token = format!("--oauth-token={token}");
    let args = ["-s", &instance, "-s", &login, &oauth_token];
    assert_passes(
        "salesforce",
        common::component_once("plugins/salesforce"),
        &args,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rt_passes_the_suite_against_a_real_request_tracker() {
    let rt = rt_or_skip!();
    let queue = format!("Acceptance {}", std::process::id());
    let created: Value = reqwest::Client::new()
        .post(format!("{}/REST/2.0/queue", rt.url))
        .header("authorization", format!("token {}", rt.root_token))
        .json(&serde_json::json!({"Name": queue}))
        .send()
        .await
        .expect("create queue")
        .json()
        .await
        .expect("queue JSON");
    assert!(created["id"].is_string(), "queue created: {created}");
    let settings = [
        format!("base_url={}", rt.url),
        "username=root".to_string(),
        format!("password={}", rt.root_password),
        format!("queue={queue}"),
    ];
    let mut args = Vec::new();
    for setting in &settings {
        args.extend(["-s", setting.as_str()]);
    }
    assert_passes("rt", common::component_once("plugins/rt"), &args).await;
}

// ----- the development loop -------------------------------------------------------------------

/// `wasm` with a custom section appended: the same plugin, a different digest, as a rebuild
/// gives.
fn rebuilt(wasm: &[u8]) -> Vec<u8> {
    let name = b"rebuilt";
    let payload = b"2";
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchboard");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_rebuilt_component_replaces_its_version_only_in_development_and_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = common::component_once("tests/plugins/rulebreaker");
    let second = rebuilt(&first);
    let first_path = dir.path().join("first.wasm");
    let second_path = dir.path().join("second.wasm");
    std::fs::write(&first_path, first.as_slice()).expect("write");
    std::fs::write(&second_path, &second).expect("write");
    let path = |p: &PathBuf| p.to_str().expect("utf-8").to_string();

    let (ok, out) = cli(
        &data,
        &["plugin", "install", &path(&first_path), "--approve"],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &data,
        &["plugin", "install", &path(&second_path), "--approve"],
    );
    assert!(
        !ok && out.contains("--replace --dev"),
        "a new digest needs a new version: {out}"
    );
    let (ok, out) = cli(
        &data,
        &[
            "plugin",
            "install",
            &path(&second_path),
            "--approve",
            "--replace",
        ],
    );
    assert!(
        !ok && out.contains("development"),
        "--replace alone is refused: {out}"
    );
    let (ok, out) = cli(
        &data,
        &[
            "plugin",
            "install",
            &path(&second_path),
            "--approve",
            "--replace",
            "--dev",
        ],
    );
    assert!(ok && out.contains("replaced rulebreaker 0.1.0"), "{out}");

    let (ok, out) = cli(&data, &["plugin", "history", "rulebreaker", "--json"]);
    assert!(ok, "{out}");
    let history: Value = serde_json::from_str(&out).expect("history JSON");
    let events: Vec<&str> = history
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(events, ["installed", "replaced-dev"]);
    assert_eq!(history[1]["old_sha256"], history[0]["new_sha256"]);
    assert_ne!(history[1]["new_sha256"], history[0]["new_sha256"]);
    let (ok, out) = cli(&data, &["plugin", "list", "--json"]);
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).expect("list JSON");
    assert_eq!(
        listed[0]["sha256"], history[1]["new_sha256"],
        "the new build is installed"
    );
}
