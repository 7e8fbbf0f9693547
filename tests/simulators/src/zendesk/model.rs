//! The in-memory account: users, tickets, comments, audits, and the rules that change them.
//!
//! Everything here is synchronous and runs under the simulator's one lock; the HTTP layer
//! parses requests, calls in, and renders the result.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::error::{ApiError, Details};
use super::util::{html_from_text, iso8601, strip_html};
use super::webhooks::Webhook;
use super::Config;
use crate::kit::control::set;
use crate::kit::json;

pub(crate) const STATUSES: [&str; 6] = ["new", "open", "pending", "hold", "solved", "closed"];
pub(crate) const PRIORITIES: [&str; 4] = ["urgent", "high", "normal", "low"];
pub(crate) const TYPES: [&str; 4] = ["problem", "incident", "question", "task"];
pub(crate) const ROLES: [&str; 3] = ["end-user", "agent", "admin"];
pub(crate) const IDENTITY_TYPES: [&str; 6] = [
    "email",
    "twitter",
    "facebook",
    "google",
    "phone_number",
    "agent_forwarding",
];

/// Comment, audit and event ids share one sequence, far from user and ticket ids, so a client
/// that mixes them up fails loudly.
const FIRST_EVENT_ID: u64 = 10_000_001;

/// Where a change came from: the REST API or the agent UI (the control API plays the agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Api,
    Web,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Web => "web",
        }
    }

    pub(crate) fn via(self) -> Value {
        json!({"channel": self.name(), "source": {"from": {}, "to": {}, "rel": null}})
    }

    /// The channel name used in event-subscription payloads.
    fn event_name(self) -> &'static str {
        match self {
            Channel::Api => "web_service",
            Channel::Web => "web_form",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub id: u64,
    pub kind: String,
    pub value: String,
    pub primary: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub role: String,
    pub identities: Vec<Identity>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    pub(crate) fn is_staff(&self) -> bool {
        self.role != "end-user"
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub id: u64,
    pub author_id: u64,
    pub body: String,
    pub html_body: String,
    pub public: bool,
    pub channel: Channel,
    pub created_at: i64,
    pub audit_id: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub id: u64,
    pub external_id: Option<String>,
    pub subject: Option<String>,
    pub description: String,
    pub status: String,
    pub priority: Option<String>,
    pub kind: Option<String>,
    pub requester_id: u64,
    pub submitter_id: u64,
    pub assignee_id: Option<u64>,
    pub group_id: Option<u64>,
    pub tags: Vec<String>,
    pub channel: Channel,
    pub created_at: i64,
    pub updated_at: i64,
    /// Position of the ticket's latest change in the account-wide change sequence; the
    /// incremental cursor export orders by it.
    pub seq: u64,
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone)]
pub(crate) enum AuditEvent {
    Comment {
        comment_id: u64,
    },
    Create {
        id: u64,
        field: &'static str,
        value: Value,
    },
    Change {
        id: u64,
        field: &'static str,
        value: Value,
        previous: Value,
    },
}

/// One ticket update: who, when, and what changed.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub id: u64,
    pub ticket_id: u64,
    pub author_id: u64,
    pub created_at: i64,
    pub channel: Channel,
    pub events: Vec<AuditEvent>,
}

/// An event to publish to webhooks, with the ticket snapshot taken when it happened.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub event_type: &'static str,
    pub ticket_id: u64,
    pub detail: Value,
    pub event: Value,
}

/// A cached `POST /tickets` answer for an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub(crate) struct IdempotentResponse {
    pub request: Value,
    pub response: Value,
    pub ticket_id: u64,
    pub stored_at_ms: i64,
}

/// A comment to add to a ticket.
#[derive(Debug, Clone)]
pub(crate) struct NewComment {
    pub body: String,
    pub html_body: String,
    pub public: bool,
    pub author_id: u64,
}

/// The changes of one ticket update. `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes {
    pub comment: Option<NewComment>,
    pub status: Option<String>,
    pub priority: Option<Option<String>>,
    pub kind: Option<Option<String>>,
    pub subject: Option<Option<String>>,
    pub external_id: Option<Option<String>>,
    pub assignee_id: Option<Option<u64>>,
    pub group_id: Option<Option<u64>>,
    pub tags: Option<Vec<String>>,
}

/// The whole account.
#[derive(Debug)]
pub(crate) struct Store {
    pub config: Config,
    pub agent_id: u64,
    /// The human agent who answers through the control API.
    pub human_agent_id: u64,
    next_user_id: u64,
    next_ticket_id: u64,
    next_event_id: u64,
    next_identity_id: u64,
    pub next_webhook_id: u64,
    change_seq: u64,
    pub users: BTreeMap<u64, User>,
    /// Indexes over `users`, so lookups cost no scan however many users the account holds
    /// (benchmarks drain 100k tickets through it). Keys are ASCII-lowercased, as Zendesk
    /// matches both case-insensitively: `(identity type, value)` → owner, and external id →
    /// user (external ids are unique per account).
    identity_owners: HashMap<(String, String), u64>,
    external_id_owners: HashMap<String, u64>,
    pub tickets: BTreeMap<u64, Ticket>,
    /// Indexes over `tickets`: external id → tickets (not unique in Zendesk), and the
    /// change sequence → ticket, the order of the incremental exports.
    tickets_by_external_id: HashMap<String, BTreeSet<u64>>,
    ticket_by_seq: BTreeMap<u64, u64>,
    /// Every audit in creation order (ids and timestamps both ascend).
    pub audits: Vec<Audit>,
    idempotency: HashMap<String, IdempotentResponse>,
    /// Idempotency keys in the order they were stored, so that expiring them costs nothing
    /// per request (a sweep of the whole map on every create made a long run quadratic).
    idempotency_order: VecDeque<(i64, String)>,
    /// Successful updates per (user, ticket), for the 30-per-10-minutes limit.
    update_log: HashMap<(u64, u64), VecDeque<i64>>,
    /// Incremental export calls, for the per-minute export limit.
    export_log: VecDeque<i64>,
    pub webhooks: BTreeMap<String, Webhook>,
    /// Events waiting to be handed to the webhook dispatcher.
    pub outbox: Vec<Notice>,
}

/// Reads optional typed fields out of a JSON object, reporting type errors into [`Details`].
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>) -> Self {
        Self { map }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// Absent → `None`; null → `Some(None)`; string → `Some(Some(s))`; numbers are accepted as
    /// their decimal string, as Zendesk does for `external_id`.
    pub(crate) fn nullable_str(&self, key: &str, d: &mut Details) -> Option<Option<String>> {
        match self.map.get(key)? {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            Value::Number(n) => Some(Some(n.to_string())),
            _ => {
                d.add(
                    key,
                    "InvalidValue",
                    format!("{}: must be a string", label(key)),
                );
                None
            }
        }
    }

    pub(crate) fn str(&self, key: &str, d: &mut Details) -> Option<String> {
        self.nullable_str(key, d).flatten()
    }

    /// Ids may come as numbers or numeric strings.
    pub(crate) fn nullable_id(&self, key: &str, d: &mut Details) -> Option<Option<u64>> {
        match self.map.get(key)? {
            Value::Null => Some(None),
            Value::Number(n) if n.as_u64().is_some() => Some(n.as_u64()),
            Value::String(s) if s.parse::<u64>().is_ok() => Some(s.parse().ok()),
            _ => {
                d.add(key, "InvalidValue", format!("{}: is invalid", label(key)));
                None
            }
        }
    }

    pub(crate) fn id(&self, key: &str, d: &mut Details) -> Option<u64> {
        self.nullable_id(key, d).flatten()
    }

    pub(crate) fn bool(&self, key: &str, d: &mut Details) -> Option<bool> {
        match self.map.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
            Value::Null => None,
            _ => {
                d.add(
                    key,
                    "InvalidValue",
                    format!("{}: must be true or false", label(key)),
                );
                None
            }
        }
    }

    /// A tag list: an array of strings or one space-separated string.
    pub(crate) fn tags(&self, key: &str, d: &mut Details) -> Option<Vec<String>> {
        let raw: Vec<String> = match self.map.get(key)? {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => match json::strings(items) {
                Some(out) => out,
                None => {
                    d.add(
                        key,
                        "InvalidValue",
                        format!("{}: must be strings", label(key)),
                    );
                    return None;
                }
            },
            _ => {
                d.add(
                    key,
                    "InvalidValue",
                    format!("{}: must be a list of strings", label(key)),
                );
                return None;
            }
        };
        Some(normalize_tags(raw))
    }

    /// A nullable enum value checked against `allowed`.
    pub(crate) fn choice(
        &self,
        key: &str,
        allowed: &[&str],
        d: &mut Details,
    ) -> Option<Option<String>> {
        let value = self.nullable_str(key, d)?;
        match value {
            Some(v) if !allowed.contains(&v.as_str()) => {
                d.add(
                    key,
                    "InvalidValue",
                    format!("{}: {v} is not a valid value", label(key)),
                );
                None
            }
            other => Some(other),
        }
    }
}

/// `priority` → `Priority`, `requester_id` → `Requester`, as Zendesk prefixes its messages.
fn label(key: &str) -> String {
    let key = key.trim_end_matches("_id").replace('_', " ");
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Zendesk tags are lowercase, have no spaces (a space separates tags), and are unique.
fn normalize_tags(raw: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in raw.iter().flat_map(|t| t.split_whitespace()) {
        let tag = tag.to_lowercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

impl Store {
    /// The response stored under an idempotency key, once entries older than `ttl_ms` at
    /// `now_ms` are forgotten.
    pub(crate) fn idempotent_response(
        &mut self,
        key: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Option<&IdempotentResponse> {
        while let Some((stored_at, _)) = self.idempotency_order.front() {
            if now_ms - *stored_at < ttl_ms {
                break;
            }
            if let Some((stored_at, old)) = self.idempotency_order.pop_front() {
                // A key stored again after it expired has a newer entry: keep that one.
                if self
                    .idempotency
                    .get(&old)
                    .is_some_and(|e| e.stored_at_ms == stored_at)
                {
                    self.idempotency.remove(&old);
                }
            }
        }
        self.idempotency.get(key)
    }

    pub(crate) fn store_idempotent_response(&mut self, key: String, entry: IdempotentResponse) {
        self.idempotency_order
            .push_back((entry.stored_at_ms, key.clone()));
        self.idempotency.insert(key, entry);
    }

    pub(crate) fn new(config: Config, now: i64) -> Self {
        let mut store = Self {
            agent_id: 1,
            human_agent_id: 2,
            next_user_id: 1,
            next_ticket_id: 1,
            next_event_id: FIRST_EVENT_ID,
            next_identity_id: 1,
            next_webhook_id: 1,
            change_seq: 0,
            users: BTreeMap::new(),
            identity_owners: HashMap::new(),
            external_id_owners: HashMap::new(),
            tickets: BTreeMap::new(),
            tickets_by_external_id: HashMap::new(),
            ticket_by_seq: BTreeMap::new(),
            audits: Vec::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            update_log: HashMap::new(),
            export_log: VecDeque::new(),
            webhooks: BTreeMap::new(),
            outbox: Vec::new(),
            config,
        };
        let role = if store.config.admin { "admin" } else { "agent" };
        let (name, email) = (
            store.config.agent_name.clone(),
            store.config.agent_email.clone(),
        );
        store.agent_id = store.insert_user(name, Some(email), None, role, now);
        store.human_agent_id = store.insert_user(
            "Sam Agent".to_owned(),
            Some(format!("sam.agent@{}.example", store.config.subdomain)),
            None,
            "agent",
            now,
        );
        store
    }

    fn next_event_id(&mut self) -> u64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        id
    }

    // ----- users -------------------------------------------------------------------------

    fn insert_user(
        &mut self,
        name: String,
        email: Option<String>,
        external_id: Option<String>,
        role: &str,
        now: i64,
    ) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        if let Some(external_id) = &external_id {
            self.external_id_owners
                .insert(external_id.to_ascii_lowercase(), id);
        }
        let mut user = User {
            id,
            name,
            email: None,
            external_id,
            role: role.to_owned(),
            identities: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        if let Some(email) = email {
            self.attach_identity(&mut user, "email", &email, now);
            user.email = Some(email);
        }
        self.users.insert(id, user);
        id
    }

    fn attach_identity(&mut self, user: &mut User, kind: &str, value: &str, now: i64) -> u64 {
        if let Some(existing) = user
            .identities
            .iter()
            .find(|i| i.kind == kind && i.value.eq_ignore_ascii_case(value))
        {
            return existing.id;
        }
        let id = self.next_identity_id;
        self.next_identity_id += 1;
        self.identity_owners
            .insert((kind.to_owned(), value.to_ascii_lowercase()), user.id);
        let primary = !user.identities.iter().any(|i| i.kind == kind);
        user.identities.push(Identity {
            id,
            kind: kind.to_owned(),
            value: value.to_owned(),
            primary,
            created_at: now,
        });
        id
    }

    /// The user with this address (case-insensitive). A user's primary `email` is always one
    /// of its email identities, so the identity index answers for both.
    pub(crate) fn user_by_email(&self, email: &str) -> Option<u64> {
        self.identity_owner("email", email)
    }

    pub(crate) fn user_by_external_id(&self, external_id: &str) -> Option<u64> {
        self.external_id_owners
            .get(&external_id.to_ascii_lowercase())
            .copied()
    }

    fn identity_owner(&self, kind: &str, value: &str) -> Option<u64> {
        self.identity_owners
            .get(&(kind.to_owned(), value.to_ascii_lowercase()))
            .copied()
    }

    /// Changes a user's external id and keeps the index in step.
    fn set_user_external_id(&mut self, user: &mut User, external_id: Option<String>) {
        if let Some(old) = user.external_id.take() {
            let key = old.to_ascii_lowercase();
            if self.external_id_owners.get(&key) == Some(&user.id) {
                self.external_id_owners.remove(&key);
            }
        }
        if let Some(new) = &external_id {
            self.external_id_owners
                .insert(new.to_ascii_lowercase(), user.id);
        }
        user.external_id = external_id;
    }

    /// `POST /users/create_or_update`: matches on external_id, then email (both
    /// case-insensitive). Returns the user id and whether it was created.
    pub(crate) fn create_or_update_user(
        &mut self,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<(u64, bool), ApiError> {
        let f = Fields::new(input);
        let mut d = Details::default();
        let name = f.str("name", &mut d);
        let email = f.str("email", &mut d);
        let external_id = f.nullable_str("external_id", &mut d);
        let role = f.choice("role", &ROLES, &mut d).flatten();
        let _ = f.bool("skip_verify_email", &mut d);
        let identities = parse_identities(f.raw("identities"), &mut d);
        if let Some(email) = &email {
            if !valid_email(email) {
                d.add(
                    "email",
                    "InvalidFormat",
                    format!("Email: {email} is not properly formatted"),
                );
            }
        }
        let identity_email = identities
            .iter()
            .find(|(k, _)| k == "email")
            .map(|(_, v)| v.clone());
        let matched = external_id
            .as_ref()
            .and_then(|e| e.as_deref())
            .and_then(|e| self.user_by_external_id(e))
            .or_else(|| {
                email
                    .as_deref()
                    .or(identity_email.as_deref())
                    .and_then(|e| self.user_by_email(e))
            });
        if matched.is_none() && name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            d.add(
                "name",
                "BlankValue",
                "Name: is too short (minimum one character)",
            );
        }
        // An address or identity already held by someone else would merge two people.
        if let (Some(m), Some(e)) = (matched, email.as_deref()) {
            if self.user_by_email(e).is_some_and(|owner| owner != m) {
                d.add(
                    "email",
                    "DuplicateValue",
                    format!("Email: {e} is already being used by another user"),
                );
            }
        }
        for (kind, value) in &identities {
            if let Some(owner) = self.identity_owner(kind, value) {
                if Some(owner) != matched {
                    d.add(
                        "identities",
                        "DuplicateValue",
                        format!("Value: {value} is already being used by another user"),
                    );
                }
            }
        }
        d.check()?;

        let (id, created) = match matched {
            Some(id) => (id, false),
            None => {
                let id = self.insert_user(
                    name.clone().unwrap_or_default(),
                    None,
                    external_id.clone().flatten(),
                    role.as_deref().unwrap_or("end-user"),
                    now,
                );
                (id, true)
            }
        };
        let Some(mut user) = self.users.remove(&id) else {
            return Err(ApiError::not_found());
        };
        if !created {
            if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
                user.name = name;
            }
            if let Some(external_id) = external_id {
                self.set_user_external_id(&mut user, external_id);
            }
            set(&mut user.role, role);
            user.updated_at = now;
        }
        if let Some(email) = email {
            self.attach_identity(&mut user, "email", &email, now);
            if user.email.is_none() {
                user.email = Some(email);
            }
        }
        for (kind, value) in identities {
            self.attach_identity(&mut user, &kind, &value, now);
            if kind == "email" && user.email.is_none() {
                user.email = Some(value);
            }
        }
        self.users.insert(id, user);
        Ok((id, created))
    }

    /// `POST /users/{id}/identities`. Returns the identity id.
    pub(crate) fn add_identity(
        &mut self,
        user_id: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<u64, ApiError> {
        if !self.users.contains_key(&user_id) {
            return Err(ApiError::not_found());
        }
        let f = Fields::new(input);
        let mut d = Details::default();
        let kind = f.choice("type", &IDENTITY_TYPES, &mut d);
        if !f.has("type") || matches!(kind, Some(None)) {
            d.add("type", "BlankValue", "Type: cannot be blank");
        }
        let kind = kind.flatten();
        let value = f.str("value", &mut d);
        match value.as_deref() {
            None | Some("") => d.add("value", "BlankValue", "Value: cannot be blank"),
            Some(v) => {
                if kind.as_deref() == Some("email") && !valid_email(v) {
                    d.add(
                        "value",
                        "InvalidFormat",
                        format!("Value: {v} is not properly formatted"),
                    );
                }
                if let Some(k) = &kind {
                    if self
                        .identity_owner(k, v)
                        .is_some_and(|owner| owner != user_id)
                    {
                        d.add(
                            "value",
                            "DuplicateValue",
                            format!("Value: {v} is already being used by another user"),
                        );
                    }
                }
            }
        }
        d.check()?;
        let (Some(kind), Some(value)) = (kind, value) else {
            // Unreachable: validation above reported the missing part.
            let mut d = Details::default();
            d.add("value", "BlankValue", "Value: cannot be blank");
            return Err(d.into_error());
        };
        let Some(mut user) = self.users.remove(&user_id) else {
            return Err(ApiError::not_found());
        };
        let id = self.attach_identity(&mut user, &kind, &value, now);
        if kind == "email" && user.email.is_none() {
            user.email = Some(value);
        }
        user.updated_at = now;
        self.users.insert(user_id, user);
        Ok(id)
    }

    // ----- tickets -----------------------------------------------------------------------

    /// `POST /tickets`: validates, creates an inline requester if needed, and files the first
    /// comment. Returns the new ticket id.
    pub(crate) fn create_ticket(
        &mut self,
        actor: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<u64, ApiError> {
        let f = Fields::new(input);
        let mut d = Details::default();

        let comment = match f.raw("comment") {
            Some(Value::Object(c)) => parse_comment(c, &mut d),
            Some(Value::Null) | None => None,
            Some(_) => {
                d.add("comment", "InvalidValue", "Comment: must be an object");
                None
            }
        };
        if comment.is_none() && d.is_empty() {
            d.add("base", "BlankValue", "Description: cannot be blank");
        }
        let subject = f.str("subject", &mut d);
        let priority = f.choice("priority", &PRIORITIES, &mut d).flatten();
        let kind = f.choice("type", &TYPES, &mut d).flatten();
        let mut status = f.choice("status", &STATUSES, &mut d).flatten();
        if status.as_deref() == Some("closed") {
            d.add(
                "status",
                "InvalidValue",
                "Status: closed is not valid for a new ticket",
            );
            status = None;
        }
        let external_id = f.str("external_id", &mut d);
        let tags = f.tags("tags", &mut d).unwrap_or_default();
        let group_id = f.id("group_id", &mut d);

        let requester_id = f.id("requester_id", &mut d);
        let mut inline_requester: Option<(String, Option<String>)> = None;
        if let Some(id) = requester_id {
            if !self.users.contains_key(&id) {
                d.add("requester", "InvalidValue", "Requester: is invalid");
            }
        } else if let Some(raw) = f.raw("requester") {
            match raw {
                Value::Object(r) => {
                    let rf = Fields::new(r);
                    let name = rf.str("name", &mut d);
                    let email = rf.str("email", &mut d);
                    if let Some(e) = &email {
                        if !valid_email(e) {
                            d.add(
                                "requester",
                                "InvalidFormat",
                                format!("Requester: Email: {e} is not properly formatted"),
                            );
                        }
                    }
                    match (name, email) {
                        (None, None) => d.add(
                            "requester",
                            "BlankValue",
                            "Requester: Name: is too short (minimum one character)",
                        ),
                        // Zendesk names an email-only requester after the address.
                        (name, email) => {
                            inline_requester =
                                Some((name.or_else(|| email.clone()).unwrap_or_default(), email))
                        }
                    }
                }
                _ => d.add("requester", "InvalidValue", "Requester: is invalid"),
            }
        }
        let check_user = |key: &str, id: Option<u64>, d: &mut Details| {
            if let Some(id) = id {
                if !self.users.contains_key(&id) {
                    d.add(key, "InvalidValue", format!("{}: is invalid", label(key)));
                }
            }
        };
        let submitter_id = f.id("submitter_id", &mut d);
        check_user("submitter_id", submitter_id, &mut d);
        let assignee_id = f.id("assignee_id", &mut d);
        check_user("assignee_id", assignee_id, &mut d);
        if let Some(a) = assignee_id.and_then(|a| self.users.get(&a)) {
            if !a.is_staff() {
                d.add("assignee", "InvalidValue", "Assignee: is not an agent");
            }
        }
        if let Some(c) = &comment {
            check_user("author_id", c.author, &mut d);
        }
        d.check()?;

        let requester_id = match (requester_id, inline_requester) {
            (Some(id), _) => id,
            (None, Some((name, email))) => {
                match email.as_deref().and_then(|e| self.user_by_email(e)) {
                    Some(id) => id,
                    None => self.insert_user(name, email, None, "end-user", now),
                }
            }
            (None, None) => actor,
        };
        let Some(comment) = comment else {
            // Unreachable: validation above reported the missing comment.
            let mut d = Details::default();
            d.add("base", "BlankValue", "Description: cannot be blank");
            return Err(d.into_error());
        };
        // The submitter is the first comment's author; both default to the requester.
        let submitter_id = submitter_id.or(comment.author).unwrap_or(requester_id);
        let author_id = comment.author.unwrap_or(submitter_id);
        let status = match status.as_deref() {
            None | Some("new") if assignee_id.is_some() => "open".to_owned(),
            None => "new".to_owned(),
            Some(s) => s.to_owned(),
        };

        let id = self.next_ticket_id;
        self.next_ticket_id += 1;
        self.change_seq += 1;
        let audit_id = self.next_event_id();
        let comment_id = self.next_event_id();
        let ticket = Ticket {
            id,
            external_id,
            subject,
            description: comment.body.clone(),
            status,
            priority,
            kind,
            requester_id,
            submitter_id,
            assignee_id,
            group_id,
            tags,
            channel: Channel::Api,
            created_at: now,
            updated_at: now,
            seq: self.change_seq,
            comments: vec![Comment {
                id: comment_id,
                author_id,
                body: comment.body,
                html_body: comment.html_body,
                public: comment.public,
                channel: Channel::Api,
                created_at: now,
                audit_id,
            }],
        };
        let mut events = vec![AuditEvent::Comment { comment_id }];
        let created: [(&'static str, Value); 7] = [
            ("subject", json!(ticket.subject)),
            ("status", json!(ticket.status)),
            ("priority", json!(ticket.priority)),
            ("type", json!(ticket.kind)),
            ("requester_id", json!(ticket.requester_id.to_string())),
            (
                "assignee_id",
                json!(ticket.assignee_id.map(|a| a.to_string())),
            ),
            ("tags", json!(ticket.tags)),
        ];
        for (field, value) in created {
            if !value.is_null() {
                let event_id = self.next_event_id();
                events.push(AuditEvent::Create {
                    id: event_id,
                    field,
                    value,
                });
            }
        }
        self.put_ticket(ticket);
        self.audits.push(Audit {
            id: audit_id,
            ticket_id: id,
            author_id,
            created_at: now,
            channel: Channel::Api,
            events,
        });
        self.notify("zen:event-type:ticket.created", id, actor, json!({}));
        Ok(id)
    }

    /// Parses a `PUT /tickets/{id}` body into [`Changes`], checking enums and references.
    pub(crate) fn parse_update(
        &self,
        actor: u64,
        ticket: &Ticket,
        input: &Map<String, Value>,
    ) -> Result<Changes, ApiError> {
        let f = Fields::new(input);
        let mut d = Details::default();
        let comment = match f.raw("comment") {
            Some(Value::Object(c)) => parse_comment(c, &mut d).map(|c| NewComment {
                author_id: c.author.unwrap_or(actor),
                body: c.body,
                html_body: c.html_body,
                public: c.public,
            }),
            Some(Value::Null) | None => None,
            Some(_) => {
                d.add("comment", "InvalidValue", "Comment: must be an object");
                None
            }
        };
        let mut changes = Changes {
            comment,
            ..Changes::default()
        };
        if let Some(c) = &changes.comment {
            if !self.users.contains_key(&c.author_id) {
                d.add("author_id", "InvalidValue", "Author: is invalid");
            }
        }
        changes.status = f.choice("status", &STATUSES, &mut d).flatten();
        if changes.status.as_deref() == Some("new") && ticket.status != "new" {
            d.add(
                "status",
                "InvalidValue",
                format!("Status: cannot be changed from {} to new", ticket.status),
            );
        }
        changes.priority = f.choice("priority", &PRIORITIES, &mut d);
        changes.kind = f.choice("type", &TYPES, &mut d);
        changes.subject = f.nullable_str("subject", &mut d);
        changes.external_id = f.nullable_str("external_id", &mut d);
        changes.group_id = f.nullable_id("group_id", &mut d);
        changes.assignee_id = f.nullable_id("assignee_id", &mut d);
        if let Some(Some(a)) = changes.assignee_id {
            if !self.users.get(&a).is_some_and(User::is_staff) {
                d.add("assignee", "InvalidValue", "Assignee: is not an agent");
            }
        }
        let set = f.tags("tags", &mut d);
        let add = f.tags("additional_tags", &mut d);
        let remove = f.tags("remove_tags", &mut d);
        if set.is_some() || add.is_some() || remove.is_some() {
            let mut tags = set.unwrap_or_else(|| ticket.tags.clone());
            for t in add.unwrap_or_default() {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            let remove = remove.unwrap_or_default();
            tags.retain(|t| !remove.contains(t));
            changes.tags = Some(tags);
        }
        d.check()?;
        Ok(changes)
    }

    /// Counts one successful update by `user` on `ticket` against the per-ticket limit, or
    /// says how long to wait.
    pub(crate) fn check_update_limit(
        &mut self,
        user: u64,
        ticket: u64,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let Some(limit) = self.config.ticket_update_limit else {
            return Ok(());
        };
        const WINDOW_MS: i64 = 600_000;
        let log = self.update_log.entry((user, ticket)).or_default();
        while log.front().is_some_and(|t| now_ms - t >= WINDOW_MS) {
            log.pop_front();
        }
        if log.len() >= limit as usize {
            let oldest = log.front().copied().unwrap_or(now_ms);
            let wait = (oldest + WINDOW_MS - now_ms).max(1000) as u64;
            return Err(ApiError::endpoint_rate_limited(
                wait.div_ceil(1000),
                "Number of allowed updates of this ticket per 10 minutes exceeded",
            ));
        }
        log.push_back(now_ms);
        Ok(())
    }

    /// Counts one incremental export call against the per-minute export limit.
    pub(crate) fn check_export_limit(&mut self, now_ms: i64) -> Result<(), ApiError> {
        let Some(limit) = self.config.export_rate_limit_per_minute else {
            return Ok(());
        };
        const WINDOW_MS: i64 = 60_000;
        while self
            .export_log
            .front()
            .is_some_and(|t| now_ms - t >= WINDOW_MS)
        {
            self.export_log.pop_front();
        }
        if self.export_log.len() >= limit as usize {
            let oldest = self.export_log.front().copied().unwrap_or(now_ms);
            let wait = (oldest + WINDOW_MS - now_ms).max(1000) as u64;
            return Err(ApiError::endpoint_rate_limited(
                wait.div_ceil(1000),
                "Number of allowed incremental export API requests per minute exceeded",
            ));
        }
        self.export_log.push_back(now_ms);
        Ok(())
    }

    /// Applies one update as one audit. Returns the audit id, or `None` when nothing changed.
    pub(crate) fn apply(
        &mut self,
        ticket_id: u64,
        actor: u64,
        channel: Channel,
        mut changes: Changes,
        now: i64,
    ) -> Result<Option<u64>, ApiError> {
        let Some(ticket) = self.tickets.get(&ticket_id) else {
            return Err(ApiError::not_found());
        };
        if ticket.status == "closed" {
            let mut d = Details::default();
            d.add("status", "InvalidValue", "closed prevents ticket update");
            return Err(d.into_error());
        }
        // Zendesk's implicit transitions: an agent's comment opens a new ticket; a
        // requester's reply reopens a pending or solved one.
        if changes.status.is_none() {
            if let Some(c) = &changes.comment {
                let staff = self.users.get(&c.author_id).is_some_and(User::is_staff);
                changes.status = match ticket.status.as_str() {
                    "new" if staff => Some("open".to_owned()),
                    "pending" | "solved" if !staff => Some("open".to_owned()),
                    _ => None,
                };
            }
        }
        let mut ticket = ticket.clone();
        let audit_id = self.next_event_id();
        let mut events = Vec::new();
        let mut status_change = None;
        let mut priority_change = None;
        let mut comment_added = None;

        if let Some(c) = changes.comment {
            let comment_id = self.next_event_id();
            ticket.comments.push(Comment {
                id: comment_id,
                author_id: c.author_id,
                body: c.body,
                html_body: c.html_body,
                public: c.public,
                channel,
                created_at: now,
                audit_id,
            });
            events.push(AuditEvent::Comment { comment_id });
            comment_added = Some(comment_id);
        }
        let mut change = |store: &mut Self, field: &'static str, value: Value, previous: Value| {
            if value != previous {
                let id = store.next_event_id();
                events.push(AuditEvent::Change {
                    id,
                    field,
                    value,
                    previous,
                });
                true
            } else {
                false
            }
        };
        if let Some(status) = changes.status {
            if change(self, "status", json!(status), json!(ticket.status)) {
                status_change = Some(std::mem::replace(&mut ticket.status, status));
            }
        }
        if let Some(priority) = changes.priority {
            if change(self, "priority", json!(priority), json!(ticket.priority)) {
                priority_change = Some(std::mem::replace(&mut ticket.priority, priority));
            }
        }
        if let Some(kind) = changes.kind {
            if change(self, "type", json!(kind), json!(ticket.kind)) {
                ticket.kind = kind;
            }
        }
        if let Some(subject) = changes.subject {
            if change(self, "subject", json!(subject), json!(ticket.subject)) {
                ticket.subject = subject;
            }
        }
        if let Some(external_id) = changes.external_id {
            if change(
                self,
                "external_id",
                json!(external_id),
                json!(ticket.external_id),
            ) {
                ticket.external_id = external_id;
            }
        }
        if let Some(assignee) = changes.assignee_id {
            let as_str = |a: Option<u64>| json!(a.map(|a| a.to_string()));
            if change(
                self,
                "assignee_id",
                as_str(assignee),
                as_str(ticket.assignee_id),
            ) {
                ticket.assignee_id = assignee;
            }
        }
        if let Some(group) = changes.group_id {
            let as_str = |g: Option<u64>| json!(g.map(|g| g.to_string()));
            if change(self, "group_id", as_str(group), as_str(ticket.group_id)) {
                ticket.group_id = group;
            }
        }
        if let Some(tags) = changes.tags {
            if change(self, "tags", json!(tags), json!(ticket.tags)) {
                ticket.tags = tags;
            }
        }
        if events.is_empty() {
            return Ok(None);
        }
        self.change_seq += 1;
        ticket.seq = self.change_seq;
        ticket.updated_at = now;
        let author_id = ticket
            .comments
            .last()
            .filter(|c| Some(c.id) == comment_added)
            .map_or(actor, |c| c.author_id);
        self.put_ticket(ticket);
        self.audits.push(Audit {
            id: audit_id,
            ticket_id,
            author_id,
            created_at: now,
            channel,
            events,
        });

        if let Some(comment_id) = comment_added {
            let event = self.comment_event(ticket_id, comment_id);
            self.notify(
                "zen:event-type:ticket.comment_added",
                ticket_id,
                author_id,
                event,
            );
        }
        if let Some(previous) = status_change {
            let current = self
                .tickets
                .get(&ticket_id)
                .map(|t| t.status.to_uppercase());
            let event = json!({"current": current, "previous": previous.to_uppercase()});
            self.notify(
                "zen:event-type:ticket.status_changed",
                ticket_id,
                author_id,
                event,
            );
        }
        if let Some(previous) = priority_change {
            let current = self
                .tickets
                .get(&ticket_id)
                .and_then(|t| t.priority.as_ref().map(|p| p.to_uppercase()));
            let event = json!({"current": current, "previous": previous.map(|p| p.to_uppercase())});
            self.notify(
                "zen:event-type:ticket.priority_changed",
                ticket_id,
                author_id,
                event,
            );
        }
        Ok(Some(audit_id))
    }

    fn comment_event(&self, ticket_id: u64, comment_id: u64) -> Value {
        let Some(c) = self
            .tickets
            .get(&ticket_id)
            .and_then(|t| t.comments.iter().find(|c| c.id == comment_id))
        else {
            return json!({});
        };
        let author = self.users.get(&c.author_id);
        json!({"comment": {
            "id": c.id.to_string(),
            "body": c.body,
            "is_public": c.public,
            "attachments": [],
            "author": {
                "id": c.author_id.to_string(),
                "is_staff": author.is_some_and(User::is_staff),
                "name": author.map(|a| a.name.as_str()),
            },
        }})
    }

    /// Queues a webhook event with the ticket's current snapshot.
    fn notify(&mut self, event_type: &'static str, ticket_id: u64, actor: u64, event: Value) {
        if self.webhooks.is_empty() {
            return;
        }
        let Some(t) = self.tickets.get(&ticket_id) else {
            return;
        };
        let upper = |v: &Option<String>| v.as_ref().map(|s| s.to_uppercase());
        let detail = json!({
            "actor_id": actor.to_string(),
            "assignee_id": t.assignee_id.map(|a| a.to_string()),
            "brand_id": null,
            "created_at": iso8601(t.created_at),
            "custom_status": null,
            "description": t.description,
            "external_id": t.external_id,
            "form_id": null,
            "group_id": t.group_id.map(|g| g.to_string()),
            "id": t.id.to_string(),
            "is_public": t.comments.iter().any(|c| c.public),
            "organization_id": null,
            "priority": upper(&t.priority),
            "requester_id": t.requester_id.to_string(),
            "status": t.status.to_uppercase(),
            "subject": t.subject,
            "submitter_id": t.submitter_id.to_string(),
            "tags": t.tags,
            "type": upper(&t.kind),
            "updated_at": iso8601(t.updated_at),
            "via": {"channel": t.channel.event_name()},
        });
        self.outbox.push(Notice {
            event_type,
            ticket_id,
            detail,
            event,
        });
    }

    // ----- rendering ---------------------------------------------------------------------

    pub(crate) fn ticket_json(&self, t: &Ticket, base: &str) -> Value {
        json!({
            "url": format!("{base}/api/v2/tickets/{}.json", t.id),
            "id": t.id,
            "external_id": t.external_id,
            "via": t.channel.via(),
            "created_at": iso8601(t.created_at),
            "updated_at": iso8601(t.updated_at),
            "generated_timestamp": t.updated_at,
            "type": t.kind,
            "subject": t.subject,
            "raw_subject": t.subject,
            "description": t.description,
            "priority": t.priority,
            "status": t.status,
            "recipient": null,
            "requester_id": t.requester_id,
            "submitter_id": t.submitter_id,
            "assignee_id": t.assignee_id,
            "organization_id": null,
            "group_id": t.group_id,
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "has_incidents": false,
            "is_public": t.comments.iter().any(|c| c.public),
            "due_at": null,
            "tags": t.tags,
            "custom_fields": [],
            "satisfaction_rating": null,
            "sharing_agreement_ids": [],
            "followup_ids": [],
            "brand_id": null,
            "allow_channelback": false,
            "allow_attachments": true,
            "from_messaging_channel": false,
        })
    }

    pub(crate) fn comment_json(&self, c: &Comment) -> Value {
        let mut v = comment_fields(c);
        v["metadata"] = json!({
            "system": {"client": "switchboard-simulator", "ip_address": "127.0.0.1", "location": "", "latitude": null, "longitude": null},
            "custom": {},
        });
        v
    }

    pub(crate) fn user_json(&self, u: &User, base: &str) -> Value {
        json!({
            "id": u.id,
            "url": format!("{base}/api/v2/users/{}.json", u.id),
            "name": u.name,
            "email": u.email,
            "external_id": u.external_id,
            "role": u.role,
            "role_type": null,
            "verified": u.email.is_some(),
            "active": true,
            "suspended": false,
            "shared": false,
            "shared_agent": false,
            "moderator": u.is_staff(),
            "only_private_comments": false,
            "restricted_agent": false,
            "ticket_restriction": if u.is_staff() { Value::Null } else { json!("requested") },
            "locale": "en-US",
            "locale_id": 1,
            "time_zone": "UTC",
            "iana_time_zone": "Etc/UTC",
            "phone": u.identities.iter().find(|i| i.kind == "phone_number").map(|i| i.value.clone()),
            "photo": null,
            "organization_id": null,
            "default_group_id": null,
            "tags": [],
            "alias": null,
            "details": "",
            "notes": "",
            "signature": null,
            "user_fields": {},
            "last_login_at": null,
            "created_at": iso8601(u.created_at),
            "updated_at": iso8601(u.updated_at),
        })
    }

    pub(crate) fn identity_json(&self, user_id: u64, i: &Identity, base: &str) -> Value {
        json!({
            "url": format!("{base}/api/v2/users/{user_id}/identities/{}.json", i.id),
            "id": i.id,
            "user_id": user_id,
            "type": i.kind,
            "value": i.value,
            "verified": i.kind != "email" || i.primary,
            "primary": i.primary,
            "undeliverable_count": 0,
            "deliverable_state": "deliverable",
            "created_at": iso8601(i.created_at),
            "updated_at": iso8601(i.created_at),
        })
    }

    fn comment_by_id(&self, ticket_id: u64, comment_id: u64) -> Option<&Comment> {
        self.tickets
            .get(&ticket_id)?
            .comments
            .iter()
            .find(|c| c.id == comment_id)
    }

    /// An audit as `GET /tickets/{id}/audits` shows it.
    pub(crate) fn audit_json(&self, a: &Audit) -> Value {
        let events: Vec<Value> = a
            .events
            .iter()
            .map(|e| match e {
                AuditEvent::Comment { comment_id } => {
                    self.comment_by_id(a.ticket_id, *comment_id).map_or(Value::Null, |c| self.comment_json(c))
                }
                AuditEvent::Create { id, field, value } => {
                    json!({"id": id, "type": "Create", "field_name": field, "value": value})
                }
                AuditEvent::Change { id, field, value, previous } => {
                    json!({"id": id, "type": "Change", "field_name": field, "value": value, "previous_value": previous})
                }
            })
            .collect();
        json!({
            "id": a.id,
            "ticket_id": a.ticket_id,
            "author_id": a.author_id,
            "created_at": iso8601(a.created_at),
            "via": a.channel.via(),
            "metadata": {"system": {"client": "switchboard-simulator"}, "custom": {}},
            "events": events,
        })
    }

    /// An audit as `GET /incremental/ticket_events` shows it. Without `include_comments`,
    /// comments are reduced to the `comment_present` / `comment_public` flags.
    pub(crate) fn ticket_event_json(&self, a: &Audit, include_comments: bool) -> Value {
        let via = a.channel.name();
        let mut children = Vec::new();
        let mut comment_present = false;
        let mut comment_public = false;
        for e in &a.events {
            match e {
                AuditEvent::Comment { comment_id } => {
                    let Some(c) = self.comment_by_id(a.ticket_id, *comment_id) else {
                        continue;
                    };
                    comment_present = true;
                    comment_public |= c.public;
                    if include_comments {
                        let mut child = comment_fields(c);
                        child["event_type"] = json!("Comment");
                        children.push(child);
                    }
                }
                AuditEvent::Create { id, field, value } => {
                    let mut child = json!({"id": id, "event_type": "Create", "type": "Create", "via": via,
                        "field_name": field, "value": value});
                    child[*field] = value.clone();
                    children.push(child);
                }
                AuditEvent::Change {
                    id,
                    field,
                    value,
                    previous,
                } => {
                    // Zendesk keys the new value by the field name; `field_name`/`value` mirror
                    // the audits API so either style of client can read it.
                    let mut child = json!({"id": id, "event_type": "Change", "type": "Change", "via": via,
                        "field_name": field, "value": value, "previous_value": previous});
                    child[*field] = value.clone();
                    children.push(child);
                }
            }
        }
        let mut event = json!({
            "id": a.id,
            "ticket_id": a.ticket_id,
            "timestamp": a.created_at,
            "created_at": iso8601(a.created_at),
            "updater_id": a.author_id,
            "via": via,
            "system": {"client": "switchboard-simulator"},
            "event_type": "Audit",
            "child_events": children,
        });
        if !include_comments {
            event["comment_present"] = json!(comment_present);
            event["comment_public"] = json!(comment_public);
        }
        event
    }

    /// Tickets in change order (for the cursor export).
    /// Every ticket in change order (the order of the incremental exports).
    pub(crate) fn tickets_by_seq(&self) -> impl Iterator<Item = &Ticket> {
        self.ticket_by_seq
            .values()
            .filter_map(|id| self.tickets.get(id))
    }

    /// The tickets whose external id is `external_id`, by id.
    pub(crate) fn tickets_with_external_id(&self, external_id: &str) -> Vec<&Ticket> {
        self.tickets_by_external_id
            .get(external_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tickets.get(id))
            .collect()
    }

    /// Stores a new or changed ticket and moves its index entries.
    fn put_ticket(&mut self, ticket: Ticket) {
        let (id, seq, external_id) = (ticket.id, ticket.seq, ticket.external_id.clone());
        if let Some(old) = self.tickets.insert(id, ticket) {
            self.ticket_by_seq.remove(&old.seq);
            if let Some(old_external) = old.external_id {
                if let Some(ids) = self.tickets_by_external_id.get_mut(&old_external) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.tickets_by_external_id.remove(&old_external);
                    }
                }
            }
        }
        self.ticket_by_seq.insert(seq, id);
        if let Some(external_id) = external_id {
            self.tickets_by_external_id
                .entry(external_id)
                .or_default()
                .insert(id);
        }
    }
}

/// The fields of a `comment` object before defaults are applied.
pub(crate) struct ParsedComment {
    pub body: String,
    pub html_body: String,
    pub public: bool,
    pub author: Option<u64>,
}

fn parse_comment(c: &Map<String, Value>, d: &mut Details) -> Option<ParsedComment> {
    let f = Fields::new(c);
    let body = f.str("body", d).filter(|b| !b.trim().is_empty());
    let html = f.str("html_body", d).filter(|b| !b.trim().is_empty());
    let public = f.bool("public", d).unwrap_or(true);
    let author = f.id("author_id", d);
    match (body, html) {
        (Some(body), html) => Some(ParsedComment {
            html_body: html.unwrap_or_else(|| html_from_text(&body)),
            body,
            public,
            author,
        }),
        (None, Some(html)) => Some(ParsedComment {
            body: strip_html(&html),
            html_body: html,
            public,
            author,
        }),
        (None, None) => {
            d.add("comment", "BlankValue", "Comment: body cannot be blank");
            None
        }
    }
}

fn parse_identities(raw: Option<&Value>, d: &mut Details) -> Vec<(String, String)> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let Some(items) = raw.as_array() else {
        d.add("identities", "InvalidValue", "Identities: must be a list");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let kind = item.get("type").and_then(Value::as_str);
        let value = item.get("value").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        match (kind, value) {
            (Some(k), Some(v)) if IDENTITY_TYPES.contains(&k) && !v.is_empty() => {
                out.push((k.to_owned(), v))
            }
            (Some(k), _) if !IDENTITY_TYPES.contains(&k) => d.add(
                "identities",
                "InvalidValue",
                format!("Type: {k} is not a valid identity type"),
            ),
            _ => d.add(
                "identities",
                "BlankValue",
                "Identities: type and value are required",
            ),
        }
    }
    out
}

/// Loose check, like Zendesk's: something@something.something.
fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

/// What a comment shows both in the comments list and as a `ticket_events` child (JSON
/// objects keep their keys sorted, so adding fields later changes no order).
fn comment_fields(c: &Comment) -> Value {
    json!({
        "id": c.id,
        "type": "Comment",
        "author_id": c.author_id,
        "body": c.body,
        "html_body": c.html_body,
        "plain_body": c.body,
        "public": c.public,
        "attachments": [],
        "audit_id": c.audit_id,
        "via": c.channel.via(),
        "created_at": iso8601(c.created_at),
    })
}
