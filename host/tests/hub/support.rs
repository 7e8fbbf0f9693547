//! A hub on a temp dir with the Telegram and Zendesk plugins installed, installations pointed
//! at in-process simulators, and a link between them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::hub::{Hub, HubConfig, LinkSettings, NewInstallation, NewLink, WebhookRequest};
use switchboard_simulators::{telegram, zendesk};
use switchboard_testkit as kit;

pub const TG: &str = "tg";
pub const ZD: &str = "zd";
pub const TG_JOB: &str = "tg:updates";
pub const ZD_JOB: &str = "zd:ticket-changes";
pub const TG_SECRET: &str = "tg-webhook-secret";

pub struct World {
    pub hub: Hub,
    pub tg: telegram::Simulator,
    pub zd: zendesk::Simulator,
    pub zd_base: String,
    http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn fast_config(dir: &std::path::Path) -> HubConfig {
    let mut config = HubConfig::new(
        format!("sqlite://{}", dir.join("hub.db").display()),
        dir,
        [7; 32],
    );
    config.outbox.base_backoff = Duration::from_millis(20);
    config.outbox.max_backoff = Duration::from_millis(200);
    config.outbox.max_attempts = 5;
    config.scheduler_tick = Duration::from_millis(100);
    config.network.allow_private_network = true;
    config
}

/// A world with the default link settings.
pub async fn world() -> World {
    world_with(LinkSettings {
        tags: vec!["vip".into()],
        ..LinkSettings::default()
    })
    .await
}

pub async fn world_with(link: LinkSettings) -> World {
    let tg = telegram::Simulator::new(telegram::Config {
        first_update_id: Some(1000),
        ..telegram::Config::default()
    });
    let (tg_addr, _) = tg
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve telegram");
    let zd = zendesk::Simulator::new(zendesk::Config::default().relaxed());
    let (zd_addr, _) = zd
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve zendesk");
    let zd_base = format!("http://{zd_addr}");

    let dir = tempfile::tempdir().expect("tempdir");
    // Seed the compile cache with both plugins; the second runtime sees both.
    kit::runtime_with_plugin(dir.path(), "plugins/telegram").await;
    let (runtime, _) = kit::runtime_with_plugin(dir.path(), "plugins/zendesk").await;
    let hub = Hub::open_with_runtime(fast_config(dir.path()), Arc::new(runtime))
        .await
        .expect("open hub");
    hub.install_plugin(&kit::component_once("plugins/telegram"), true)
        .await
        .expect("install telegram");
    hub.install_plugin(&kit::component_once("plugins/zendesk"), true)
        .await
        .expect("install zendesk");

    let settings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let tg_base = format!("http://{tg_addr}");
    hub.create_installation(NewInstallation {
        id: TG.into(),
        plugin_id: "telegram".into(),
        settings: settings(&[
            ("bot_token", &tg.config().bot_token),
            ("api_base", &tg_base),
            ("webhook_secret", TG_SECRET),
        ]),
        enabled: None,
        deadline_ms: None,
    })
    .await
    .expect("telegram installation");
    let config = zd.config();
    hub.create_installation(NewInstallation {
        id: ZD.into(),
        plugin_id: "zendesk".into(),
        settings: settings(&[
            ("subdomain", &config.subdomain),
            ("email", &config.agent_email),
            ("api_token", &config.api_token),
            ("base_url", &zd_base),
        ]),
        enabled: None,
        deadline_ms: None,
    })
    .await
    .expect("zendesk installation");
    hub.create_link(NewLink {
        id: "tg-to-zd".into(),
        social_installation: TG.into(),
        helpdesk_installation: ZD.into(),
        settings: link,
    })
    .await
    .expect("link");
    World {
        hub,
        tg,
        zd,
        zd_base,
        http: reqwest::Client::new(),
        dir,
    }
}

impl World {
    /// The customer writes to the bot.
    pub fn customer(&self, chat: i64, name: &str, text: &str) {
        self.tg
            .customer_message(telegram::CustomerMessage::new(chat, name, text));
    }

    /// Polls Telegram, processes, delivers: one full inbound cycle without background workers.
    pub async fn inbound_cycle(&self) {
        let run = self
            .hub
            .run_job_now(TG_JOB)
            .await
            .expect("run telegram job");
        assert_eq!(run.outcome, "ok", "{run:?}");
        self.settle().await;
    }

    /// Polls Zendesk, processes, delivers.
    pub async fn helpdesk_cycle(&self) {
        let run = self.hub.run_job_now(ZD_JOB).await.expect("run zendesk job");
        assert_eq!(run.outcome, "ok", "{run:?}");
        self.settle().await;
    }

    /// Processes stored events and delivers every due outbox row.
    pub async fn settle(&self) {
        switchboard::hub::processor::process_pending(&self.hub)
            .await
            .expect("process");
        switchboard::hub::outbox::deliver_due(&self.hub)
            .await
            .expect("deliver");
    }

    pub fn tickets(&self) -> Vec<Value> {
        let mut tickets = self.zd.tickets();
        tickets.sort_by_key(|t| t["id"].as_u64());
        tickets
    }

    pub fn ticket_id(&self, index: usize) -> u64 {
        self.tickets()[index]["id"].as_u64().expect("ticket id")
    }

    /// Calls the Zendesk simulator's API as the token owner (an admin doing things in Zendesk).
    pub async fn zd_api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let config = self.zd.config();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.zd_base))
            .basic_auth(
                format!("{}/token", config.agent_email),
                Some(&config.api_token),
            );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("zendesk API call");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A human agent (not the hub's integration user, whose comments are echoes).
    pub async fn human_agent(&self) -> u64 {
        let body = json!({"user": {"name": "Hana Agent", "email": "hana@switchboard.example", "role": "agent"}});
        let user = self
            .zd_api(
                reqwest::Method::POST,
                "/api/v2/users/create_or_update",
                Some(body),
            )
            .await;
        user["user"]["id"].as_u64().expect("agent id")
    }

    /// `author` comments on a ticket, publicly or as an internal note.
    pub async fn comment_as(&self, ticket: u64, author: u64, body: &str, public: bool) {
        let update =
            json!({"ticket": {"comment": {"body": body, "public": public, "author_id": author}}});
        self.zd_api(
            reqwest::Method::PUT,
            &format!("/api/v2/tickets/{ticket}"),
            Some(update),
        )
        .await;
    }

    /// The Telegram webhook delivery of the newest pending update, as the server passes it.
    pub fn telegram_webhook(&self, secret: &str) -> WebhookRequest {
        let update = self
            .tg
            .pending_updates()
            .into_iter()
            .last()
            .expect("a pending update");
        WebhookRequest {
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-telegram-bot-api-secret-token".into(), secret.into()),
            ],
            body: serde_json::to_vec(&update).expect("update json"),
        }
    }
}

/// Waits (up to `secs`) until `check` holds.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
