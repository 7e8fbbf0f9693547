//! The `plugin new` helpdesk template (placeholder API) with one acceptance rule broken on
//! demand, for the tests of `switchboard plugin test`: the setting `break` names the rule.
//!
//! | `break`                    | what goes wrong                                           |
//! |----------------------------|-----------------------------------------------------------|
//! | `requester-always-created` | find-or-create never looks the requester up               |
//! | `ticket-new-id`            | a retried create-ticket answers a new id                   |
//! | `note-read-public`         | comments read back from poll-changes are all public        |
//! | `status-mismatch`          | the helpdesk's `pending` is read as on-hold                |

use serde::Deserialize;
use switchboard_plugin_sdk::helpdesk::*;
use switchboard_plugin_sdk::prelude::*;

/// Setting keys.
pub mod settings {
    pub const API_BASE: &str = "api_base";
    pub const API_TOKEN: &str = "api_token";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const BREAK: &str = "break";
}

/// Which rule the installation asked to break; read once per call into a thread-local so
/// the parsing helpers need no context.
fn broken(ctx: &Context, rule: &str) -> bool {
    ctx.setting(settings::BREAK) == Some(rule)
}

std::thread_local! {
    static BREAK: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn remember(ctx: &Context) {
    BREAK.with(|b| *b.borrow_mut() = ctx.setting_or(settings::BREAK, "").to_string());
}

fn breaking(rule: &str) -> bool {
    BREAK.with(|b| *b.borrow() == rule)
}

/// The one stream this connector polls.
pub const CHANGES_STREAM: &str = "changes";
const PAGE_SIZE: &str = "50";

struct Connector;

impl HelpdeskConnector for Connector {
    fn describe() -> Manifest {
        manifest()
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        let base = ctx.require(settings::API_BASE)?;
        let found = if broken(ctx, "requester-always-created") {
            UserList { users: Vec::new() }
        } else {
            http::get(format!("{base}/v1/users"))
                .query("external_id", &request.external_id)
                .send()?
                .error_for_status()?
                .json()?
        };
        if let Some(user) = found.users.into_iter().next() {
            return Ok(Requester {
                id: user.id,
                created: false,
            });
        }
        let name = request
            .identity
            .display_name
            .or(request.identity.handle)
            .unwrap_or_else(|| request.identity.external_id.clone());
        let created: IdOnly = http::post(format!("{base}/v1/users"))
            .json(&serde_json::json!({ "external_id": request.external_id, "name": name }))
            .send()?
            .error_for_status()?
            .json()?;
        Ok(Requester {
            id: created.id,
            created: true,
        })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let base = ctx.require(settings::API_BASE)?;
        // The idempotency key makes a retry answer the ticket the first attempt created.
        let response = http::post(format!("{base}/v1/tickets"))
            .header("idempotency-key", &ticket.idempotency_key)
            .json(&serde_json::json!({
                "external_id": ticket.external_id,
                "requester_id": ticket.requester_id,
                "subject": ticket.subject,
                "body": ticket.body,
                "public": ticket.visibility == Visibility::Public,
                "tags": ticket.tags,
                "priority": ticket.priority.map(priority_name),
                "status": ticket.status.map(status_name),
                "channel": ticket.channel,
            }))
            .send()?
            .error_for_status()?;
        let created = response.status == 201;
        let mut body: CreatedTicket = response.json()?;
        if broken(ctx, "ticket-new-id") && ticket.unconfirmed.is_some() {
            let start = now_ms();
            let mut stamp = now_ms();
            while stamp == start {
                stamp = now_ms();
            }
            body.id = format!("{}-{stamp}", body.id);
        }
        Ok(TicketRef {
            id: body.id,
            created,
            url: body.url,
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        let base = ctx.require(settings::API_BASE)?;
        let author_id = match &comment.author {
            CommentAuthor::Requester(id) => Some(id.clone()),
            CommentAuthor::Integration => None,
        };
        let created: IdOnly =
            http::post(format!("{base}/v1/tickets/{}/comments", comment.ticket_id))
                .header("idempotency-key", &comment.idempotency_key)
                .json(&serde_json::json!({
                    "body": comment.body,
                    // A private comment is an internal note: the customer never sees it.
                    "public": comment.visibility == Visibility::Public,
                    "author_id": author_id,
                }))
                .send()?
                .error_for_status()?
                .json()?;
        Ok(CommentRef { id: created.id })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        remember(ctx);
        let base = ctx.require(settings::API_BASE)?;
        let ticket: ApiTicket = http::patch(format!("{base}/v1/tickets/{}", update.ticket_id))
            .json(&serde_json::json!({
                "status": update.status.map(status_name),
                "priority": update.priority.map(priority_name),
                "add_tags": update.add_tags,
                "remove_tags": update.remove_tags,
            }))
            .send()?
            .error_for_status()?
            .json()?;
        ticket.into_state()
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        remember(ctx);
        let base = ctx.require(settings::API_BASE)?;
        let ticket: ApiTicket = http::get(format!("{base}/v1/tickets/{ticket_id}"))
            .send()?
            .error_for_status()?
            .json()?;
        ticket.into_state()
    }

    fn poll_changes(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        remember(ctx);
        if stream != CHANGES_STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`"),
            ));
        }
        let base = ctx.require(settings::API_BASE)?;
        let mut request = http::get(format!("{base}/v1/changes")).query("limit", PAGE_SIZE);
        if let Some(after) = &cursor {
            request = request.query("after", after);
        }
        let page: ChangePage = request.send()?.error_for_status()?.json()?;
        let changes = page
            .changes
            .into_iter()
            .map(ApiChange::into_change)
            .collect::<Result<Vec<_>>>()?;
        Ok(PollPage {
            changes,
            next_cursor: page.next_after.or(cursor),
            has_more: page.has_more,
        })
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        webhook::verify_hmac_sha256_hex(
            &request,
            "x-signature",
            ctx.setting(settings::WEBHOOK_SECRET),
        )?;
        let delivery: Delivery = serde_json::from_slice(&request.body)?;
        Ok(WebhookOutcome {
            response: webhook::ok(),
            changes: delivery
                .changes
                .into_iter()
                .map(ApiChange::into_change)
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

switchboard_plugin_sdk::export_helpdesk!(Connector);

fn manifest() -> Manifest {
    let api_base = format!("{{{}}}", settings::API_BASE);
    Manifest {
        id: "rulebreaker-desk".into(),
        name: "rulebreaker-desk".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        kind: PluginKind::Helpdesk,
        description: "Conversations filed as rulebreaker-desk tickets, agents' replies read back."
            .into(),
        settings: vec![
            SettingSpec {
                key: settings::API_BASE.into(),
                label: "API base URL".into(),
                description: "Where the API is served, as scheme://host[:port].".into(),
                secret: false,
                required: true,
                default_value: Some("https://api.example.com".into()),
            },
            SettingSpec {
                key: settings::API_TOKEN.into(),
                label: "API token".into(),
                description: "The token the host sends as `Authorization: Bearer`.".into(),
                secret: true,
                required: true,
                default_value: None,
            },
            SettingSpec {
                key: settings::BREAK.into(),
                label: "Rule to break".into(),
                description: "Which acceptance rule to break (see the crate docs).".into(),
                secret: false,
                required: false,
                default_value: None,
            },
            SettingSpec {
                key: settings::WEBHOOK_SECRET.into(),
                label: "Webhook secret".into(),
                description: "Signs webhook deliveries; leave empty when polling.".into(),
                secret: true,
                required: false,
                default_value: None,
            },
        ],
        http_hosts: vec![api_base.clone()],
        credentials: vec![
            CredentialRule {
                host_pattern: api_base,
                placement: CredentialPlacement::Bearer(format!("{{{}}}", settings::API_TOKEN)),
            },
            secret_for_plugin(settings::WEBHOOK_SECRET),
        ],
        streams: vec![StreamSpec {
            name: CHANGES_STREAM.into(),
            description: "Agents' replies, notes and status changes on every ticket.".into(),
            default_schedule: "*/30 * * * * *".into(),
        }],
        accepts_webhooks: true,
        text_limits: Vec::new(),
        reply_windows: Vec::new(),
        oauth2: None,
    }
}

fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::OnHold => "on-hold",
        TicketStatus::Solved => "solved",
        TicketStatus::Closed => "closed",
    }
}

fn parse_status(name: &str) -> Result<TicketStatus> {
    Ok(match name {
        "new" => TicketStatus::New,
        "open" => TicketStatus::Open,
        "pending" if breaking("status-mismatch") => TicketStatus::OnHold,
        "pending" => TicketStatus::Pending,
        "on-hold" => TicketStatus::OnHold,
        "solved" => TicketStatus::Solved,
        "closed" => TicketStatus::Closed,
        other => {
            return Err(ConnectorError::fatal(format!(
                "unknown ticket status `{other}`"
            )))
        }
    })
}

fn priority_name(priority: TicketPriority) -> &'static str {
    match priority {
        TicketPriority::Low => "low",
        TicketPriority::Normal => "normal",
        TicketPriority::High => "high",
        TicketPriority::Urgent => "urgent",
    }
}

fn parse_priority(name: &str) -> Result<TicketPriority> {
    Ok(match name {
        "low" => TicketPriority::Low,
        "normal" => TicketPriority::Normal,
        "high" => TicketPriority::High,
        "urgent" => TicketPriority::Urgent,
        other => return Err(ConnectorError::fatal(format!("unknown priority `{other}`"))),
    })
}

#[derive(Debug, Deserialize)]
struct UserList {
    users: Vec<IdOnly>,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Debug, Deserialize)]
struct CreatedTicket {
    id: String,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiTicket {
    id: String,
    status: String,
    priority: Option<String>,
    external_id: Option<String>,
    updated_at: u64,
}

impl ApiTicket {
    fn into_state(self) -> Result<TicketState> {
        Ok(TicketState {
            id: self.id,
            status: parse_status(&self.status)?,
            priority: self.priority.as_deref().map(parse_priority).transpose()?,
            external_id: self.external_id,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, Deserialize)]
struct ChangePage {
    changes: Vec<ApiChange>,
    next_after: Option<String>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, Deserialize)]
struct Delivery {
    changes: Vec<ApiChange>,
}

#[derive(Debug, Deserialize)]
struct ApiChange {
    id: String,
    ticket_id: String,
    external_id: Option<String>,
    author: Option<ApiAuthor>,
    #[serde(default)]
    from_us: bool,
    at: u64,
    #[serde(rename = "type")]
    kind: String,
    comment: Option<ApiComment>,
    status: Option<String>,
    priority: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiAuthor {
    id: String,
    name: Option<String>,
    #[serde(default)]
    is_agent: bool,
}

#[derive(Debug, Deserialize)]
struct ApiComment {
    id: String,
    body: String,
    public: bool,
}

impl ApiChange {
    fn into_change(self) -> Result<TicketChange> {
        let missing =
            |what: &str| ConnectorError::fatal(format!("change {} has no {what}", self.id));
        let kind = match self.kind.as_str() {
            "comment" => {
                let comment = self.comment.as_ref().ok_or_else(|| missing("comment"))?;
                ChangeKind::Comment(CommentChange {
                    comment_id: comment.id.clone(),
                    body: comment.body.clone(),
                    visibility: if comment.public || breaking("note-read-public") {
                        Visibility::Public
                    } else {
                        Visibility::Private
                    },
                    attachments: Vec::new(),
                })
            }
            "status" => ChangeKind::Status(parse_status(
                self.status.as_deref().ok_or_else(|| missing("status"))?,
            )?),
            "priority" => ChangeKind::Priority(parse_priority(
                self.priority
                    .as_deref()
                    .ok_or_else(|| missing("priority"))?,
            )?),
            other => {
                return Err(ConnectorError::fatal(format!(
                    "unknown change type `{other}`"
                )))
            }
        };
        Ok(TicketChange {
            change_id: self.id,
            ticket_id: self.ticket_id,
            external_id: self.external_id,
            author: self.author.map(|a| ChangeAuthor {
                id: a.id,
                name: a.name,
                is_agent: a.is_agent,
            }),
            // The hub's own comments come back here: flag them so they are not sent twice.
            is_echo: self.from_us,
            at: self.at,
            kind,
        })
    }
}
