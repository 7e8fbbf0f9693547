//! The helpdesks a link can file tickets in, seen from outside the hub: how the hub's
//! installation is set up for each, what tickets and comments the helpdesk holds, and what a
//! human agent does there (replies, internal notes, status changes).
//!
//! The demo and the end-to-end tests share it. Zendesk, Freshdesk and Salesforce are the
//! in-process simulators (agents act through their direct accessors); Request Tracker is a real
//! RT 5 started by `scripts/rt.sh`, driven through its REST 2.0 API as the `agent` user.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};
use switchboard_simulators::salesforce::test_keys;
use switchboard_simulators::{freshdesk, salesforce, zendesk};

/// A helpdesk product with a connector plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Helpdesk {
    Zendesk,
    Freshdesk,
    Salesforce,
    Rt,
}

/// The Freshdesk custom ticket field the hub keeps its conversation id in.
pub const FRESHDESK_EXTERNAL_ID_FIELD: &str = "cf_switchboard_id";

impl Helpdesk {
    pub const ALL: [Helpdesk; 4] = [
        Helpdesk::Zendesk,
        Helpdesk::Freshdesk,
        Helpdesk::Salesforce,
        Helpdesk::Rt,
    ];

    /// Lower case, as on the command line and in plugin ids.
    pub fn name(self) -> &'static str {
        match self {
            Helpdesk::Zendesk => "zendesk",
            Helpdesk::Freshdesk => "freshdesk",
            Helpdesk::Salesforce => "salesforce",
            Helpdesk::Rt => "rt",
        }
    }

    /// The product's name, for people.
    pub fn title(self) -> &'static str {
        match self {
            Helpdesk::Zendesk => "Zendesk",
            Helpdesk::Freshdesk => "Freshdesk",
            Helpdesk::Salesforce => "Salesforce",
            Helpdesk::Rt => "Request Tracker",
        }
    }

    /// The plugin crate, relative to the source tree.
    pub fn plugin_dir(self) -> &'static str {
        match self {
            Helpdesk::Zendesk => "plugins/zendesk",
            Helpdesk::Freshdesk => "plugins/freshdesk",
            Helpdesk::Salesforce => "plugins/salesforce",
            Helpdesk::Rt => "plugins/rt",
        }
    }

    /// The plugin's id (its manifest's).
    pub fn plugin_id(self) -> &'static str {
        self.name()
    }

    /// The deadline its installation gets for one plugin call, when the default (5 s) is too
    /// short: a Request Tracker on loaded cores can take longer than that to answer.
    pub fn deadline_ms(self) -> Option<u64> {
        match self {
            Helpdesk::Rt => Some(30_000),
            _ => None,
        }
    }

    /// The plugin's poll stream of ticket changes: one name for every helpdesk.
    pub fn stream(self) -> &'static str {
        "ticket-changes"
    }

    /// Whether the helpdesk can push its changes to the hub (else the hub polls).
    pub fn accepts_webhooks(self) -> bool {
        matches!(self, Helpdesk::Zendesk | Helpdesk::Freshdesk)
    }

    /// Whether tickets carry the hub's tags (Salesforce Cases and RT tickets have none).
    pub fn has_tags(self) -> bool {
        matches!(self, Helpdesk::Zendesk | Helpdesk::Freshdesk)
    }

    /// What the hub reads after an agent sets a ticket [`Desk::set_status`] `solved`:
    /// Salesforce's standard picklist has no solved, only Closed.
    pub fn solved_reads_as(self) -> &'static str {
        match self {
            Helpdesk::Salesforce => "closed",
            _ => "solved",
        }
    }

    /// Whether the hub connects the installation with OAuth2 (JWT bearer) after creating it.
    pub fn oauth_flow(self) -> Option<&'static str> {
        match self {
            Helpdesk::Salesforce => Some("jwt-bearer"),
            _ => None,
        }
    }

    /// Zendesk and Freshdesk number tickets; Salesforce Case ids are text.
    pub fn numeric_ids(self) -> bool {
        !matches!(self, Helpdesk::Salesforce)
    }
}

impl std::fmt::Display for Helpdesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ----- simulator accounts ---------------------------------------------------------------------

/// A Zendesk account with relaxed test settings (no export window, fast webhook retries).
pub fn zendesk_simulator() -> zendesk::Simulator {
    zendesk::Simulator::new(zendesk::Config::default().relaxed())
}

/// A Freshdesk account with the custom field for the hub's conversation id.
pub fn freshdesk_simulator() -> freshdesk::Simulator {
    freshdesk::Simulator::new(
        freshdesk::Config::default().with_custom_field(FRESHDESK_EXTERNAL_ID_FIELD),
    )
}

/// A Salesforce org trusting the bundled throwaway JWT key, with the default external id
/// fields on Contact and Case.
pub fn salesforce_simulator() -> salesforce::Simulator {
    salesforce::Simulator::new(salesforce::Config::default())
}

// ----- Request Tracker --------------------------------------------------------------------------

/// Where `scripts/rt.sh` finds RT's server and database tool once the packages are installed.
pub const RT_SERVER_PATHS: [&str; 2] = [
    "/usr/share/request-tracker5/libexec/rt-server",
    "/usr/sbin/rt-setup-database-5",
];

/// `Ok` when Request Tracker 5 is installed (the files `scripts/rt.sh` runs exist); else says
/// how to install it.
pub fn rt_installed(paths: &[&str]) -> anyhow::Result<()> {
    if let Some(missing) = paths.iter().find(|p| !Path::new(p).exists()) {
        bail!(
            "Request Tracker 5 is not installed ({missing} is missing): install it as root with `scripts/rt.sh install`"
        );
    }
    Ok(())
}

/// A running RT instance, as `scripts/rt.sh start DIR` describes it in `DIR/credentials.env`.
#[derive(Debug, Clone)]
pub struct RtServer {
    /// `http://127.0.0.1:PORT`, RT's web root.
    pub url: String,
    /// `root` is the hub's integration user.
    pub root_password: String,
    /// A privileged user acting as a human agent.
    pub agent_user: String,
    pub agent_password: String,
}

impl RtServer {
    /// Reads `credentials.env` written by `scripts/rt.sh start`.
    pub fn from_credentials(path: &Path) -> anyhow::Result<Self> {
        let env =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value = |key: &str| -> anyhow::Result<String> {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| anyhow!("{key} missing from {}", path.display()))
        };
        Ok(Self {
            url: value("RT_URL")?,
            root_password: value("RT_ROOT_PASSWORD")?,
            agent_user: value("RT_AGENT_USER")?,
            agent_password: value("RT_AGENT_PASSWORD")?,
        })
    }
}

/// One queue of an RT instance, the hub's tickets' home.
#[derive(Debug, Clone)]
pub struct RtQueue {
    pub server: RtServer,
    pub queue: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Copy)]
enum RtUser {
    Root,
    Agent,
}

impl RtQueue {
    /// Creates the queue `queue` (as root) in the instance.
    pub async fn create(server: RtServer, queue: &str) -> anyhow::Result<Self> {
        let rt = Self {
            server,
            queue: queue.to_string(),
            http: client()?,
        };
        let created = rt
            .rest(
                RtUser::Root,
                reqwest::Method::POST,
                "/queue",
                Some(json!({"Name": queue})),
            )
            .await?;
        if !created["id"].is_string() {
            bail!("RT did not create the queue {queue}: {created}");
        }
        Ok(rt)
    }

    async fn rest(
        &self,
        who: RtUser,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (user, password) = match who {
            RtUser::Root => ("root", self.server.root_password.as_str()),
            RtUser::Agent => (
                self.server.agent_user.as_str(),
                self.server.agent_password.as_str(),
            ),
        };
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}/REST/2.0{path}", self.server.url),
            )
            .basic_auth(user, Some(password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("RT {method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("RT {method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.rest(RtUser::Root, reqwest::Method::GET, path, None)
            .await
    }
}

// ----- what the helpdesk holds -----------------------------------------------------------------

/// A ticket, the same shape whatever the helpdesk.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// As the helpdesk (and the hub's conversation detail) names it.
    pub id: String,
    pub subject: String,
    /// The requester's id in the helpdesk.
    pub requester_id: String,
    /// `new`, `open`, `pending`, `solved` or `closed`.
    pub status: String,
    pub tags: Vec<String>,
    /// What links the ticket back to the hub: Zendesk's `external_id`, the Freshdesk custom
    /// field, the Case's external id field, RT's custom field.
    pub external_id: Option<String>,
    /// The helpdesk's own record.
    pub raw: Value,
}

/// One message on a ticket, oldest first: the first message, then every comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub body: String,
    pub public: bool,
}

/// The helpdesk of one link: where the hub reaches it and how the outside world sees it.
#[derive(Debug, Clone)]
pub struct Desk {
    /// Base URL the hub's installation points at.
    pub url: String,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Zendesk(zendesk::Simulator),
    Freshdesk(freshdesk::Simulator),
    Salesforce(salesforce::Simulator),
    Rt(RtQueue),
}

impl Desk {
    pub fn zendesk(sim: zendesk::Simulator, url: &str) -> Self {
        Self::new(Backend::Zendesk(sim), url)
    }

    pub fn freshdesk(sim: freshdesk::Simulator, url: &str) -> Self {
        Self::new(Backend::Freshdesk(sim), url)
    }

    pub fn salesforce(sim: salesforce::Simulator, url: &str) -> Self {
        Self::new(Backend::Salesforce(sim), url)
    }

    /// An RT queue; the hub reaches RT at `url` (RT itself, or a proxy in front of it).
    pub fn rt(queue: RtQueue, url: &str) -> Self {
        Self::new(Backend::Rt(queue), url)
    }

    fn new(backend: Backend, url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            backend,
        }
    }

    pub fn helpdesk(&self) -> Helpdesk {
        match self.backend {
            Backend::Zendesk(_) => Helpdesk::Zendesk,
            Backend::Freshdesk(_) => Helpdesk::Freshdesk,
            Backend::Salesforce(_) => Helpdesk::Salesforce,
            Backend::Rt(_) => Helpdesk::Rt,
        }
    }

    pub fn zendesk_sim(&self) -> Option<&zendesk::Simulator> {
        match &self.backend {
            Backend::Zendesk(sim) => Some(sim),
            _ => None,
        }
    }

    pub fn freshdesk_sim(&self) -> Option<&freshdesk::Simulator> {
        match &self.backend {
            Backend::Freshdesk(sim) => Some(sim),
            _ => None,
        }
    }

    pub fn salesforce_sim(&self) -> Option<&salesforce::Simulator> {
        match &self.backend {
            Backend::Salesforce(sim) => Some(sim),
            _ => None,
        }
    }

    /// The installation's settings, as an admin would enter them.
    pub fn installation_settings(&self) -> Value {
        match &self.backend {
            Backend::Zendesk(sim) => {
                let c = sim.config();
                json!({"subdomain": c.subdomain, "email": c.agent_email, "api_token": c.api_token,
                       "base_url": self.url})
            }
            Backend::Freshdesk(sim) => {
                let c = sim.config();
                json!({"domain": c.domain, "api_key": c.api_key, "base_url": self.url,
                       "external_id_field": FRESHDESK_EXTERNAL_ID_FIELD})
            }
            Backend::Salesforce(sim) => {
                let c = sim.config();
                json!({"instance_url": self.url, "login_url": self.url,
                       "oauth_client_id": c.consumer_key,
                       "oauth_jwt_private_key": test_keys::PRIVATE_KEY_PEM,
                       "oauth_jwt_username": c.integration_username})
            }
            Backend::Rt(rt) => json!({"base_url": self.url, "username": "root",
                                      "password": rt.server.root_password, "queue": rt.queue}),
        }
    }

    /// Makes the helpdesk push its changes to `endpoint` (the hub's webhook URL of the
    /// installation) and returns the settings the installation needs for it; `None` when the
    /// helpdesk has no webhooks.
    pub async fn add_webhook(&self, endpoint: &str) -> anyhow::Result<Option<Value>> {
        match &self.backend {
            Backend::Zendesk(sim) => {
                let secret = zendesk_webhook(sim, &self.url, endpoint).await?;
                Ok(Some(json!({"webhook_secret": secret})))
            }
            Backend::Freshdesk(sim) => {
                // Freshdesk's automation webhooks are unsigned: a custom header carries a
                // shared secret.
                use rand::RngCore as _;
                let mut bytes = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let secret = hex::encode(bytes);
                sim.add_automation(
                    freshdesk::AutomationWebhook::new(endpoint)
                        .events(&["reply_sent", "note_added", "status_changed"])
                        .header("x-switchboard-secret", &secret),
                );
                Ok(Some(json!({"webhook_secret": secret})))
            }
            Backend::Salesforce(_) | Backend::Rt(_) => Ok(None),
        }
    }

    /// Every ticket, oldest first.
    pub async fn tickets(&self) -> anyhow::Result<Vec<Ticket>> {
        let mut tickets = match &self.backend {
            Backend::Zendesk(sim) => sim
                .tickets()
                .into_iter()
                .map(|t| Ticket {
                    id: text(&t["id"]),
                    subject: text(&t["subject"]),
                    requester_id: text(&t["requester_id"]),
                    status: text(&t["status"]),
                    tags: strings(&t["tags"]),
                    external_id: t["external_id"].as_str().map(str::to_string),
                    raw: t,
                })
                .collect(),
            Backend::Freshdesk(sim) => sim
                .tickets()
                .into_iter()
                .map(|t| Ticket {
                    id: text(&t["id"]),
                    subject: text(&t["subject"]),
                    requester_id: text(&t["requester_id"]),
                    status: match t["status"].as_u64() {
                        Some(2) => "open",
                        Some(3) => "pending",
                        Some(4) => "solved",
                        Some(5) => "closed",
                        _ => "other",
                    }
                    .to_string(),
                    tags: strings(&t["tags"]),
                    external_id: t["custom_fields"][FRESHDESK_EXTERNAL_ID_FIELD]
                        .as_str()
                        .map(str::to_string),
                    raw: t,
                })
                .collect(),
            Backend::Salesforce(sim) => sim
                .tickets()
                .into_iter()
                .map(|t| Ticket {
                    id: text(&t["Id"]),
                    subject: text(&t["Subject"]),
                    requester_id: text(&t["ContactId"]),
                    status: match t["Status"].as_str() {
                        Some("New") => "new",
                        Some("Working") => "open",
                        Some("Escalated") => "pending",
                        Some("Closed") => "closed",
                        _ => "other",
                    }
                    .to_string(),
                    tags: Vec::new(),
                    external_id: t[salesforce::DEFAULT_EXTERNAL_ID_FIELD]
                        .as_str()
                        .map(str::to_string),
                    raw: t,
                })
                .collect(),
            Backend::Rt(rt) => rt_tickets(rt).await?,
        };
        if self.helpdesk().numeric_ids() {
            tickets.sort_by_key(|t| t.id.parse::<u64>().unwrap_or(u64::MAX));
        }
        Ok(tickets)
    }

    /// A ticket's messages, oldest first: the first message (Freshdesk's description,
    /// Salesforce's Description, RT's create) and then every comment. A customer's message in
    /// RT is filed under a line naming them (`Aiko <telegram-1@social.invalid> wrote:`); that
    /// line is left out here.
    pub async fn comments(&self, ticket: &str) -> anyhow::Result<Vec<Comment>> {
        let from_json = |c: &Value, body: &str, public: &str| Comment {
            body: c[body].as_str().unwrap_or_default().to_string(),
            public: c[public].as_bool().unwrap_or(false),
        };
        Ok(match &self.backend {
            Backend::Zendesk(sim) => sim
                .comments(numeric(ticket)?)
                .iter()
                .map(|c| from_json(c, "body", "public"))
                .collect(),
            Backend::Freshdesk(sim) => sim
                .comments(numeric(ticket)?)
                .iter()
                .map(|c| from_json(c, "body", "public"))
                .collect(),
            Backend::Salesforce(sim) => {
                let case = sim
                    .tickets()
                    .into_iter()
                    .find(|c| c["Id"] == ticket)
                    .ok_or_else(|| anyhow!("no Case {ticket}"))?;
                let mut all = vec![Comment {
                    body: text(&case["Description"]),
                    public: true,
                }];
                all.extend(
                    sim.comments(ticket)
                        .iter()
                        .map(|c| from_json(c, "CommentBody", "IsPublished")),
                );
                all
            }
            Backend::Rt(rt) => rt_comments(rt, ticket).await?,
        })
    }

    /// The display name of a ticket's requester.
    pub async fn requester_name(&self, ticket: &Ticket) -> anyhow::Result<String> {
        let name = match &self.backend {
            Backend::Zendesk(sim) => sim
                .users()
                .into_iter()
                .find(|u| text(&u["id"]) == ticket.requester_id)
                .map(|u| text(&u["name"])),
            Backend::Freshdesk(sim) => sim
                .contacts()
                .into_iter()
                .find(|c| text(&c["id"]) == ticket.requester_id)
                .map(|c| text(&c["name"])),
            Backend::Salesforce(sim) => sim
                .contacts()
                .into_iter()
                .find(|c| text(&c["Id"]) == ticket.requester_id)
                .map(|c| text(&c["LastName"])),
            Backend::Rt(rt) => {
                let user = rt
                    .get(&format!("/user/{}", path_segment(&ticket.requester_id)))
                    .await?;
                user["RealName"].as_str().map(str::to_string)
            }
        };
        name.ok_or_else(|| {
            anyhow!(
                "no requester {} for ticket {}",
                ticket.requester_id,
                ticket.id
            )
        })
    }

    /// A human agent answers on a ticket: publicly, or as an internal note.
    pub async fn agent_reply(&self, ticket: &str, body: &str, public: bool) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Zendesk(sim) => {
                sim.agent_reply(numeric(ticket)?, body, public);
            }
            Backend::Freshdesk(sim) => {
                sim.agent_reply(numeric(ticket)?, body, public);
            }
            Backend::Salesforce(sim) => {
                sim.agent_reply(ticket, body, public);
            }
            Backend::Rt(rt) => {
                let action = if public { "correspond" } else { "comment" };
                rt.rest(
                    RtUser::Agent,
                    reqwest::Method::POST,
                    &format!("/ticket/{}/{action}", path_segment(ticket)),
                    Some(json!({"Content": body, "ContentType": "text/plain"})),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A human agent sets a ticket's status: `open`, `pending`, `solved` or `closed`.
    pub async fn set_status(&self, ticket: &str, status: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Zendesk(sim) => sim.set_status(numeric(ticket)?, status),
            Backend::Freshdesk(sim) => sim.set_status(numeric(ticket)?, status),
            Backend::Salesforce(sim) => sim.set_status(ticket, status),
            Backend::Rt(rt) => {
                let value = match status {
                    "solved" => "resolved",
                    "pending" | "on-hold" => "stalled",
                    "closed" => "rejected",
                    other => other,
                };
                rt.rest(
                    RtUser::Agent,
                    reqwest::Method::PUT,
                    &format!("/ticket/{}", path_segment(ticket)),
                    Some(json!({ "Status": value })),
                )
                .await?;
            }
        }
        Ok(())
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// A JSON value as text: strings as they are, numbers in decimal, nothing as empty.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn numeric(ticket: &str) -> anyhow::Result<u64> {
    ticket
        .parse()
        .map_err(|_| anyhow!("ticket id {ticket:?} is not a number"))
}

/// `value` safe as one URL path segment.
fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Registers a Zendesk webhook to `endpoint` for comment and status events and returns its
/// signing secret, through the Zendesk API as an admin would.
async fn zendesk_webhook(
    sim: &zendesk::Simulator,
    base: &str,
    endpoint: &str,
) -> anyhow::Result<String> {
    let config = sim.config();
    let http = client()?;
    let user = format!("{}/token", config.agent_email);
    let created: Value = http
        .post(format!("{base}/api/v2/webhooks"))
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
        .get(format!("{base}/api/v2/webhooks/{id}/signing_secret"))
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

/// The queue's tickets, read as root.
async fn rt_tickets(rt: &RtQueue) -> anyhow::Result<Vec<Ticket>> {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &format!("Queue = '{}'", rt.queue))
        .append_pair("fields", "Subject,Status,Requestor,CustomFields")
        .append_pair("orderby", "id")
        .append_pair("per_page", "100")
        .finish();
    let page = rt.get(&format!("/tickets?{query}")).await?;
    let items = page["items"]
        .as_array()
        .ok_or_else(|| anyhow!("RT's ticket search gave no items: {page}"))?;
    Ok(items
        .iter()
        .map(|t| {
            let custom = |name: &str| {
                t["CustomFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|f| f["name"] == name)
                    .and_then(|f| f["values"][0].as_str())
                    .map(str::to_string)
            };
            Ticket {
                id: text(&t["id"]),
                subject: text(&t["Subject"]),
                requester_id: text(&t["Requestor"][0]["id"]),
                status: match t["Status"].as_str().unwrap_or_default() {
                    "resolved" => "solved",
                    "stalled" => "pending",
                    "rejected" => "closed",
                    other => other,
                }
                .to_string(),
                tags: Vec::new(),
                external_id: custom("Switchboard External ID"),
                raw: t.clone(),
            }
        })
        .collect())
}

/// The ticket's create, correspond and comment transactions with their text, oldest first.
async fn rt_comments(rt: &RtQueue, ticket: &str) -> anyhow::Result<Vec<Comment>> {
    let history = rt
        .get(&format!(
            "/ticket/{}/history?fields=Type&per_page=100",
            path_segment(ticket)
        ))
        .await?;
    let mut comments = Vec::new();
    for transaction in history["items"].as_array().into_iter().flatten() {
        let public = match transaction["Type"].as_str() {
            Some("Create" | "Correspond") => true,
            Some("Comment") => false,
            _ => continue,
        };
        let parts = rt
            .get(&format!(
                "/transaction/{}/attachments?fields=Content,ContentType,Filename",
                text(&transaction["id"])
            ))
            .await?;
        let body = parts["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["ContentType"] == "text/plain" && p["Filename"] == "")
            .and_then(|p| p["Content"].as_str())
            .unwrap_or_default();
        comments.push(Comment {
            body: without_rt_byline(body).to_string(),
            public,
        });
    }
    Ok(comments)
}

/// A customer's message without the line the RT plugin puts before it:
/// `Aiko <telegram-1001@social.invalid> wrote:` and a blank line.
fn without_rt_byline(body: &str) -> &str {
    let Some((first, rest)) = body.split_once('\n') else {
        return body;
    };
    if first.ends_with("@social.invalid> wrote:") {
        rest.strip_prefix('\n').unwrap_or(rest)
    } else {
        body
    }
}

/// Settings merged: `extra`'s keys on top of `base`'s.
pub fn merged(base: Value, extra: Option<Value>) -> Value {
    let mut map: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(extra)) = extra {
        map.extend(extra);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rt_is_reported_missing_with_how_to_install() {
        let error = rt_installed(&["/nonexistent/rt-server"]).expect_err("missing");
        let message = error.to_string();
        assert!(message.contains("not installed"), "{message}");
        assert!(message.contains("scripts/rt.sh install"), "{message}");
        assert!(rt_installed(&[]).is_ok());
    }

    #[test]
    fn rt_byline_is_left_out() {
        assert_eq!(
            without_rt_byline("Aiko <telegram-1@social.invalid> wrote:\n\nHello\nthere"),
            "Hello\nthere"
        );
        assert_eq!(without_rt_byline("Agent text\nmore"), "Agent text\nmore");
    }
}
