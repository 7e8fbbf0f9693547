//! What the facade takes and returns: the admin API's JSON shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::iso;
use crate::store::{
    ConversationRow, InboundEvent, JobRow, JobRunRow, LinkRow, MessageRow, OutboxRow, TicketRow,
};

/// An installation to create. Its `Debug` shows setting keys only: values may be secrets.
#[derive(Clone, Deserialize)]
pub struct NewInstallation {
    /// Admin-chosen slug: a-z, 0-9 and `-`.
    pub id: String,
    pub plugin_id: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Defaults to enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Deadline of one plugin call for this installation, HTTP included, in ms: for a
    /// helpdesk that answers slowly. The runtime's default (5 s) when absent.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

impl std::fmt::Debug for NewInstallation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewInstallation")
            .field("id", &self.id)
            .field("plugin_id", &self.plugin_id)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("deadline_ms", &self.deadline_ms)
            .field("enabled", &self.enabled)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallationView {
    pub id: String,
    pub plugin_id: String,
    /// The version in use: the pinned one, or the plugin's active version.
    pub plugin_version: String,
    /// True when the installation stays on `plugin_version` whatever version is active.
    pub pinned: bool,
    pub kind: String,
    pub enabled: bool,
    /// Secret settings are shown as `********`.
    pub settings: BTreeMap<String, String>,
    /// Where the network or helpdesk should post webhooks: `/webhooks/{id}`.
    pub webhook_path: String,
    /// This installation's deadline for one plugin call, when it has its own.
    pub deadline_ms: Option<i64>,
    pub created_at: String,
    /// The OAuth2 grant must be connected again (revoked, expired, never connected): the
    /// installation's jobs are skipped and its deliveries wait until then.
    pub needs_reauthorization: bool,
    /// The OAuth2 connection, for plugins that declare OAuth2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthView>,
}

/// An installation's OAuth2 connection. Tokens are never shown.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthView {
    pub connected: bool,
    /// How the grant was made and is renewed: `authorization-code-pkce`, `jwt-bearer` or
    /// `client-credentials`.
    pub flow: Option<String>,
    pub scopes: Vec<String>,
    /// When the current access token expires, if the provider said.
    pub expires_at: Option<String>,
    pub connected_at: Option<String>,
    pub needs_reauthorization: bool,
    /// Why it needs reauthorization (the provider's error, such as `invalid_grant`).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub ok: bool,
    pub detail: String,
}

/// How a link files conversations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkSettings {
    /// A message after the ticket was solved reopens it instead of opening a new one.
    pub reopen_solved: bool,
    /// Added to every ticket, after the channel tag.
    pub tags: Vec<String>,
    /// Priority of new tickets: low, normal, high or urgent.
    pub priority: Option<String>,
    /// Agents' replies to public posts and comments go out as private replies, where the
    /// network has them (contract 0.3 channel capabilities); otherwise they are refused.
    pub private_replies: bool,
}

impl LinkSettings {
    /// The settings a stored link files conversations with. The hub wrote them itself (checked
    /// at creation); unreadable ones fall back to the defaults so messages still flow.
    pub(crate) fn of(link: &LinkRow) -> Self {
        serde_json::from_str(&link.settings_json).unwrap_or_default()
    }
}

/// A link to create.
#[derive(Debug, Clone, Deserialize)]
pub struct NewLink {
    pub id: String,
    pub social_installation: String,
    pub helpdesk_installation: String,
    #[serde(default)]
    pub settings: LinkSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub id: String,
    pub social_installation: String,
    pub helpdesk_installation: String,
    pub settings: LinkSettings,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// `<installation>:<stream>`.
    pub id: String,
    pub installation_id: String,
    pub stream: String,
    pub schedule: String,
    pub time_zone: String,
    pub paused: bool,
    pub next_run_at: Option<String>,
    /// True while a run is in progress.
    pub running: bool,
    pub last_run: Option<JobRunView>,
}

impl JobView {
    pub(crate) fn new(job: JobRow, last_run: Option<JobRunView>) -> Self {
        Self {
            running: job.running_since.is_some(),
            id: job.id,
            installation_id: job.installation_id,
            stream: job.stream,
            schedule: job.schedule,
            time_zone: job.time_zone,
            paused: job.paused,
            next_run_at: job.next_run_at.map(iso),
            last_run,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRunView {
    pub id: i64,
    pub job_id: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `ok` or `error`.
    pub outcome: String,
    pub pages: i64,
    pub events_stored: i64,
    pub error: Option<String>,
}

impl From<JobRunRow> for JobRunView {
    fn from(run: JobRunRow) -> Self {
        Self {
            id: run.id,
            job_id: run.job_id,
            trigger: run.trigger,
            started_at: iso(run.started_at),
            finished_at: run.finished_at.map(iso),
            outcome: run.outcome,
            pages: run.pages,
            events_stored: run.events_stored,
            error: run.error,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    /// The hub's id.
    pub id: String,
    pub helpdesk_installation_id: String,
    /// The helpdesk's id; `None` until the ticket has been created there.
    pub external_id: Option<String>,
    pub url: Option<String>,
    /// new, open, pending, on-hold, solved or closed.
    pub status: String,
    /// True for the ticket new messages of the conversation go to.
    pub is_current: bool,
    pub created_at: String,
}

impl From<TicketRow> for TicketView {
    fn from(t: TicketRow) -> Self {
        Self {
            id: t.id,
            helpdesk_installation_id: t.helpdesk_installation_id,
            external_id: t.external_id,
            url: t.url,
            status: t.status,
            is_current: t.is_current,
            created_at: iso(t.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub id: String,
    pub social_installation_id: String,
    pub thread_id: String,
    pub channel: String,
    pub contact_id: String,
    pub current_ticket: Option<TicketView>,
    pub last_inbound_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ConversationView {
    pub(crate) fn new(c: ConversationRow, current_ticket: Option<TicketView>) -> Self {
        Self {
            id: c.id,
            social_installation_id: c.social_installation_id,
            thread_id: c.thread_id,
            channel: c.channel,
            contact_id: c.contact_id,
            current_ticket,
            last_inbound_at: c.last_inbound_at.map(iso),
            created_at: iso(c.created_at),
            updated_at: iso(c.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub ticket_id: Option<String>,
    /// `inbound` (customer to helpdesk), `outbound` (agent reply to customer) or `note`
    /// (internal note, never sent).
    pub direction: String,
    pub visibility: String,
    pub author_name: Option<String>,
    pub text: String,
    pub social_message_id: Option<String>,
    pub helpdesk_comment_id: Option<String>,
    /// pending, delivered, dead, discarded, recorded (notes) or skipped.
    pub state: String,
    /// How many network messages an outbound reply was split into.
    pub parts: i64,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// Inbound messages: what the network said about the author and the message's origin
    /// (followers, verification, whether it addresses the brand, referral).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<super::care::MessageContext>,
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> Self {
        Self {
            id: m.id,
            ticket_id: m.ticket_id,
            direction: m.direction,
            visibility: m.visibility,
            author_name: m.author_name,
            text: m.text,
            social_message_id: m.social_message_id,
            helpdesk_comment_id: m.helpdesk_comment_id,
            state: m.state,
            parts: m.parts,
            created_at: iso(m.created_at),
            delivered_at: m.delivered_at.map(iso),
            context: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub tickets: Vec<TicketView>,
    pub messages: Vec<MessageView>,
    /// Whether the hub owns the conversation (contract 0.3); replies wait while it does not.
    pub ownership: super::care::OwnershipView,
    /// The parts of agents' replies sent (or waiting) to the network, with their delivery
    /// status.
    pub deliveries: Vec<super::care::DeliveryView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    /// create-ticket, add-comment or send-message.
    pub kind: String,
    pub installation_id: String,
    pub conversation_id: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub idempotency_key: String,
    pub created_at: String,
    /// Set when an attempt's outcome is unknown (a crash, a timeout, a 5xx): the effect may
    /// already be in the service. A retry has the plugin look for it before acting again.
    pub unconfirmed_since: Option<String>,
}

impl From<OutboxRow> for DeadLetterView {
    fn from(row: OutboxRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            installation_id: row.installation_id,
            conversation_id: row.conversation_id,
            attempts: row.attempts,
            last_error: row.last_error,
            idempotency_key: row.idempotency_key,
            created_at: iso(row.created_at),
            unconfirmed_since: row.unconfirmed_since.map(iso),
        }
    }
}

/// An inbound event set aside after failing every try at processing it.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedEventView {
    pub id: i64,
    pub installation_id: String,
    /// The network's message id, or the helpdesk's change id.
    pub external_id: String,
    /// social or helpdesk.
    pub kind: String,
    pub received_at: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl From<InboundEvent> for QuarantinedEventView {
    fn from(event: InboundEvent) -> Self {
        Self {
            id: event.id,
            installation_id: event.installation_id,
            external_id: event.external_id,
            kind: event.kind,
            received_at: iso(event.received_at),
            attempts: event.attempts,
            last_error: event.last_error,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    pub database: bool,
    /// Stored events not yet turned into conversations, tickets and outbox rows.
    pub inbound_pending: u64,
    /// Stored events set aside after failing every try (`/api/v1/quarantined-events`).
    pub inbound_quarantined: u64,
    /// Side effects not yet delivered.
    pub outbox_pending: u64,
    pub dead_letters: u64,
}
