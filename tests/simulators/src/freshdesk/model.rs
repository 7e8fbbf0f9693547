//! The in-memory account: agents, contacts, tickets, conversations, and the rules that change
//! them.
//!
//! Everything here is synchronous and runs under the simulator's one lock; the HTTP layer
//! parses requests, calls in, and renders the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use super::error::{ApiError, Errors};
use super::util::{html_body, iso8601, text_of};
use super::Config;
use crate::kit::control::set;
use crate::kit::json;

pub(crate) const OPEN: u64 = 2;
pub(crate) const PENDING: u64 = 3;
pub(crate) const RESOLVED: u64 = 4;
pub(crate) const CLOSED: u64 = 5;
/// The default statuses with their agent labels.
pub(crate) const STATUSES: [(u64, &str); 4] = [
    (OPEN, "Open"),
    (PENDING, "Pending"),
    (RESOLVED, "Resolved"),
    (CLOSED, "Closed"),
];
pub(crate) const PRIORITIES: [(u64, &str); 4] =
    [(1, "Low"), (2, "Medium"), (3, "High"), (4, "Urgent")];
/// The ticket sources Freshdesk documents for API creates.
pub(crate) const DOCUMENTED_SOURCES: [(u64, &str); 6] = [
    (1, "Email"),
    (2, "Portal"),
    (3, "Phone"),
    (7, "Chat"),
    (9, "Feedback Widget"),
    (10, "Outbound Email"),
];
/// Conversation `source`: an agent's reply, or a note.
pub(crate) const SOURCE_REPLY: u64 = 0;
pub(crate) const SOURCE_NOTE: u64 = 2;
/// Freshdesk refuses longer tags.
const TAG_MAX_CHARS: usize = 32;
const STRING_MAX_CHARS: usize = 255;

/// Freshdesk user ids are large numbers; starting there catches clients that assume small or
/// 32-bit ids. Conversations get a range of their own.
const FIRST_USER_ID: u64 = 43_000_000_001;
const FIRST_CONVERSATION_ID: u64 = 43_100_000_001;

#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Contact {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub twitter_id: Option<String>,
    pub unique_external_id: Option<String>,
    /// Set only through [`super::Simulator::add_social_contact`]: the API cannot create one, as in
    /// Freshdesk, where Facebook contacts come from the Facebook channel.
    pub facebook_id: Option<String>,
    pub job_title: Option<String>,
    pub description: Option<String>,
    pub address: Option<String>,
    pub language: String,
    pub time_zone: String,
    pub tags: Vec<String>,
    pub other_emails: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub id: u64,
    pub ticket_id: u64,
    /// HTML.
    pub body: String,
    pub incoming: bool,
    pub private: bool,
    pub source: u64,
    pub user_id: u64,
    pub from_email: Option<String>,
    pub cc_emails: Vec<String>,
    pub bcc_emails: Vec<String>,
    pub notify_emails: Vec<String>,
    pub created_at: i64,
    pub attachments: Vec<Attachment>,
}

/// A file attached through a multipart request. The content is kept so the control API can
/// hand it back.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub id: u64,
    pub name: String,
    pub content_type: String,
    pub content: axum::body::Bytes,
    /// Where the control API serves the content (`/_control/attachments/{id}`).
    pub url: String,
    pub created_at: i64,
}

impl Attachment {
    pub(crate) fn json(&self) -> Value {
        let at = iso8601(self.created_at);
        json!({
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": self.content.len(),
            "attachment_url": self.url,
            "created_at": at,
            "updated_at": at,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub id: u64,
    pub subject: String,
    /// HTML.
    pub description: String,
    pub status: u64,
    pub priority: u64,
    pub source: u64,
    pub kind: Option<String>,
    pub requester_id: u64,
    pub responder_id: Option<u64>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub cc_emails: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub status_updated_at: i64,
    pub first_responded_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub conversations: Vec<Conversation>,
    pub attachments: Vec<Attachment>,
}

/// Who made a change, as automation rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Performer {
    Agent,
    Requester,
    System,
}

/// Something that happened to a ticket, for automation webhooks.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    /// `ticket_created`, `reply_sent`, `note_added`, `status_changed`, `priority_changed`.
    pub event: &'static str,
    pub ticket_id: u64,
    pub performer: Performer,
}

/// The whole account.
#[derive(Debug)]
pub(crate) struct Store {
    pub config: Config,
    /// The agent who owns the API key.
    pub api_agent_id: u64,
    /// The human agent who answers through the control API.
    pub human_agent_id: u64,
    next_user_id: u64,
    next_ticket_id: u64,
    next_conversation_id: u64,
    next_attachment_id: u64,
    pub agents: BTreeMap<u64, Agent>,
    pub contacts: BTreeMap<u64, Contact>,
    /// `(field, value)` → the contacts holding it, so lookups and uniqueness checks cost no
    /// scan of every contact. Values of the case-insensitive fields (email, twitter_id,
    /// unique_external_id: MySQL's default collation in Freshdesk) are lowercased; `other_email` holds the secondary addresses.
    contact_keys: HashMap<(&'static str, String), BTreeSet<u64>>,
    pub tickets: BTreeMap<u64, Ticket>,
    /// Events waiting to be handed to the automation webhooks.
    pub outbox: Vec<Notice>,
}

// ----- request body fields -------------------------------------------------------------------

/// The JSON type name Freshdesk uses in `datatype_mismatch` messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "Integer",
        Value::Number(_) => "Float",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "key/value pair",
    }
}

fn mismatch(errors: &mut Errors, field: &str, value: &Value, expected: &str) {
    errors.add(
        field,
        format!(
            "Value set is of type {}.It should be a/an {expected}",
            type_name(value)
        ),
        "datatype_mismatch",
    );
}

fn one_of(values: impl IntoIterator<Item = String>) -> String {
    format!(
        "It should be one of these values: '{}'",
        values.into_iter().collect::<Vec<_>>().join(",")
    )
}

/// Reads typed fields of a flat request body, collecting problems into [`Errors`].
pub(crate) struct Body<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Body<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>) -> Self {
        Self { map }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Unknown attributes are `invalid_field`; known ones the simulator does not model are
    /// refused unless null, so a client never believes they took effect.
    pub(crate) fn check_fields(&self, modelled: &[&str], unmodelled: &[&str], e: &mut Errors) {
        for (key, value) in self.map {
            if modelled.contains(&key.as_str()) {
                continue;
            }
            if unmodelled.contains(&key.as_str()) {
                if !value.is_null() {
                    e.add(
                        key,
                        "Not supported by the Freshdesk simulator",
                        "invalid_value",
                    );
                }
                continue;
            }
            e.add(key, "Unexpected/invalid field in request", "invalid_field");
        }
    }

    /// A string field; null counts as absent. Strings longer than 255 characters are refused.
    pub(crate) fn string(&self, key: &str, e: &mut Errors) -> Option<String> {
        self.text(key, STRING_MAX_CHARS, e)
    }

    /// A string field of any length (HTML bodies).
    pub(crate) fn long_string(&self, key: &str, e: &mut Errors) -> Option<String> {
        self.text(key, usize::MAX, e)
    }

    fn text(&self, key: &str, max: usize, e: &mut Errors) -> Option<String> {
        match self.map.get(key)? {
            Value::Null => None,
            Value::String(s) if s.chars().count() > max => {
                e.add(
                    key,
                    format!(
                        "Has {} characters, it can have maximum of {max} characters",
                        s.chars().count()
                    ),
                    "invalid_value",
                );
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                mismatch(e, key, other, "String");
                None
            }
        }
    }

    /// A mandatory, non-blank string.
    pub(crate) fn required_string(&self, key: &str, long: bool, e: &mut Errors) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                e.add(key, "It should be a/an String", "missing_field");
                None
            }
            Some(_) => {
                let value = if long {
                    self.long_string(key, e)
                } else {
                    self.string(key, e)
                }?;
                if value.trim().is_empty() {
                    e.add(
                        key,
                        "It should not be blank as this is a mandatory field",
                        "missing_field",
                    );
                    return None;
                }
                Some(value)
            }
        }
    }

    pub(crate) fn integer(&self, key: &str, e: &mut Errors) -> Option<u64> {
        match self.map.get(key)? {
            Value::Null => None,
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                mismatch(e, key, other, "Positive Integer");
                None
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str, e: &mut Errors) -> Option<bool> {
        match self.map.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            other => {
                mismatch(e, key, other, "Boolean");
                None
            }
        }
    }

    /// An integer that must be one of `allowed`.
    pub(crate) fn choice(&self, key: &str, allowed: &[u64], e: &mut Errors) -> Option<u64> {
        let value = self.integer(key, e)?;
        if !allowed.contains(&value) {
            e.add(
                key,
                one_of(allowed.iter().map(u64::to_string)),
                "invalid_value",
            );
            return None;
        }
        Some(value)
    }

    pub(crate) fn string_array(&self, key: &str, e: &mut Errors) -> Option<Vec<String>> {
        match self.map.get(key)? {
            Value::Null => None,
            Value::Array(items) => {
                let out = json::strings(items);
                if out.is_none() {
                    e.add(
                        key,
                        "It should contain elements of type String only",
                        "datatype_mismatch",
                    );
                }
                out
            }
            other => {
                mismatch(e, key, other, "Array");
                None
            }
        }
    }

    /// A list of email addresses.
    pub(crate) fn emails(&self, key: &str, e: &mut Errors) -> Option<Vec<String>> {
        let list = self.string_array(key, e)?;
        if list.iter().any(|m| !valid_email(m)) {
            e.add(
                key,
                "It should contain elements that are in the 'valid email address' format",
                "invalid_value",
            );
            return None;
        }
        Some(list)
    }

    /// Tags: strings of at most 32 characters without commas; duplicates collapse.
    pub(crate) fn tags(&self, key: &str, e: &mut Errors) -> Option<Vec<String>> {
        let raw = self.string_array(key, e)?;
        if raw.iter().any(|t| t.chars().count() > TAG_MAX_CHARS) {
            e.add(
                key,
                format!(
                    "It should only contain elements that have maximum of {TAG_MAX_CHARS} characters"
                ),
                "invalid_value",
            );
            return None;
        }
        if raw.iter().any(|t| t.contains(',')) {
            e.add(
                key,
                "It should not have strings containing the special characters: ','",
                "invalid_value",
            );
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for tag in raw.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(tag)) {
                out.push(tag.to_owned());
            }
        }
        Some(out)
    }

    /// `structured_body` (web chat and SDK tickets): the text parts joined.
    pub(crate) fn structured_body(&self, e: &mut Errors) -> Option<String> {
        let raw = self.map.get("structured_body")?;
        let parts = raw
            .get("body_contents")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.pointer("/data/content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        match parts {
            Some(text) if !text.trim().is_empty() => Some(text),
            _ => {
                e.add(
                    "structured_body",
                    "It should contain body_contents with text content",
                    "invalid_value",
                );
                None
            }
        }
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }
}

pub(crate) fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
}

// ----- the account ---------------------------------------------------------------------------

impl Store {
    pub(crate) fn new(config: Config, now: i64) -> Self {
        let mut store = Self {
            api_agent_id: 0,
            human_agent_id: 0,
            next_user_id: FIRST_USER_ID,
            next_ticket_id: 1,
            next_conversation_id: FIRST_CONVERSATION_ID,
            next_attachment_id: 0,
            agents: BTreeMap::new(),
            contacts: BTreeMap::new(),
            contact_keys: HashMap::new(),
            tickets: BTreeMap::new(),
            outbox: Vec::new(),
            config,
        };
        let (name, email) = (
            store.config.agent_name.clone(),
            store.config.agent_email.clone(),
        );
        store.api_agent_id = store.insert_agent(name, email, now);
        let human_email = format!("sam.agent@{}.example", store.config.domain);
        store.human_agent_id = store.insert_agent("Sam Agent".into(), human_email, now);
        store
    }

    fn next_user(&mut self) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        id
    }

    fn insert_agent(&mut self, name: String, email: String, now: i64) -> u64 {
        let id = self.next_user();
        self.agents.insert(
            id,
            Agent {
                id,
                name,
                email,
                created_at: now,
            },
        );
        id
    }

    pub(crate) fn is_user(&self, id: u64) -> bool {
        self.agents.contains_key(&id) || self.contacts.contains_key(&id)
    }

    pub(crate) fn user_name(&self, id: u64) -> Option<&str> {
        self.agents
            .get(&id)
            .map(|a| a.name.as_str())
            .or_else(|| self.contacts.get(&id).map(|c| c.name.as_str()))
    }

    fn user_email(&self, id: u64) -> Option<&str> {
        self.agents
            .get(&id)
            .map(|a| a.email.as_str())
            .or_else(|| self.contacts.get(&id).and_then(|c| c.email.as_deref()))
    }

    pub(crate) fn custom_statuses(&self) -> Vec<u64> {
        self.config
            .custom_statuses
            .iter()
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn statuses(&self) -> Vec<u64> {
        let mut all: Vec<u64> = STATUSES.iter().map(|(id, _)| *id).collect();
        all.extend(self.custom_statuses());
        all
    }

    pub(crate) fn status_label(&self, status: u64) -> String {
        STATUSES
            .iter()
            .map(|(id, name)| (*id, (*name).to_owned()))
            .chain(self.config.custom_statuses.iter().cloned())
            .find(|(id, _)| *id == status)
            .map(|(_, name)| name)
            .unwrap_or_else(|| status.to_string())
    }

    pub(crate) fn source_label(&self, source: u64) -> String {
        self.config
            .sources
            .iter()
            .find(|(id, _)| *id == source)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| source.to_string())
    }

    // ----- contacts ----------------------------------------------------------------------

    /// The index keys of a contact.
    fn contact_index_keys(c: &Contact) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        let mut add = |field: &'static str, value: &Option<String>, fold: bool| {
            if let Some(v) = value {
                keys.push((field, if fold { v.to_lowercase() } else { v.clone() }));
            }
        };
        add("email", &c.email, true);
        add("twitter_id", &c.twitter_id, true);
        add("unique_external_id", &c.unique_external_id, true);
        add("phone", &c.phone, false);
        add("mobile", &c.mobile, false);
        add("facebook_id", &c.facebook_id, false);
        for other in &c.other_emails {
            keys.push(("other_email", other.to_lowercase()));
        }
        keys
    }

    /// Stores a new or changed contact and moves its index entries.
    pub(crate) fn put_contact(&mut self, contact: Contact) {
        let id = contact.id;
        let keys = Self::contact_index_keys(&contact);
        if let Some(old) = self.contacts.insert(id, contact) {
            for key in Self::contact_index_keys(&old) {
                if let Some(ids) = self.contact_keys.get_mut(&key) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.contact_keys.remove(&key);
                    }
                }
            }
        }
        for key in keys {
            self.contact_keys.entry(key).or_default().insert(id);
        }
    }

    /// The contacts holding `value` in `field` (already folded as the index keeps it).
    fn contacts_with(&self, field: &'static str, value: String) -> impl Iterator<Item = u64> + '_ {
        self.contact_keys
            .get(&(field, value))
            .into_iter()
            .flatten()
            .copied()
    }

    /// The user (contact or agent) holding a unique value, other than `except`.
    fn holder(&self, field: &str, value: &str, except: Option<u64>) -> Option<u64> {
        let folded = value.to_lowercase();
        let mut holders: Vec<u64> = match field {
            "email" => self
                .contacts_with("email", folded.clone())
                .chain(self.contacts_with("other_email", folded))
                .collect(),
            "twitter_id" => self.contacts_with("twitter_id", folded).collect(),
            "unique_external_id" => self.contacts_with("unique_external_id", folded).collect(),
            _ => Vec::new(),
        };
        holders.sort_unstable();
        let contact = holders.into_iter().find(|id| Some(*id) != except);
        contact.or_else(|| {
            (field == "email")
                .then(|| {
                    self.agents
                        .values()
                        .find(|a| Some(a.id) != except && a.email.eq_ignore_ascii_case(value))
                        .map(|a| a.id)
                })
                .flatten()
        })
    }

    /// The first contact (by id) whose `field` is `value`: case-insensitively for the unique
    /// fields, exactly for phone numbers and Facebook ids.
    pub(crate) fn contact_by(&self, field: &str, value: &str) -> Option<u64> {
        let mut found = match field {
            "email" => self.contacts_with("email", value.to_lowercase()),
            "twitter_id" => self.contacts_with("twitter_id", value.to_lowercase()),
            "unique_external_id" => self.contacts_with("unique_external_id", value.to_lowercase()),
            "phone" => self.contacts_with("phone", value.to_owned()),
            "mobile" => self.contacts_with("mobile", value.to_owned()),
            "facebook_id" => self.contacts_with("facebook_id", value.to_owned()),
            _ => return None,
        };
        found.next()
    }

    /// `POST /api/v2/contacts` and `PUT /api/v2/contacts/{id}` (`existing`).
    pub(crate) fn save_contact(
        &mut self,
        input: &Map<String, Value>,
        existing: Option<u64>,
        now: i64,
    ) -> Result<u64, ApiError> {
        const MODELLED: [&str; 12] = [
            "name",
            "email",
            "phone",
            "mobile",
            "twitter_id",
            "unique_external_id",
            "address",
            "description",
            "job_title",
            "language",
            "tags",
            "other_emails",
        ];
        const UNMODELLED: [&str; 9] = [
            "time_zone",
            "company_id",
            "view_all_tickets",
            "other_companies",
            "avatar",
            "avatar_id",
            "custom_fields",
            "lookup_parameter",
            "social_handler",
        ];
        let body = Body::new(input);
        let mut e = Errors::default();
        if existing.is_some() && body.is_empty() {
            return Err(missing_params());
        }
        body.check_fields(&MODELLED, &UNMODELLED, &mut e);
        let name = if existing.is_none() || body.has("name") {
            body.required_string("name", false, &mut e)
        } else {
            None
        };
        let email = body.string("email", &mut e);
        if email.as_deref().is_some_and(|m| !valid_email(m)) {
            e.add(
                "email",
                "It should be in the 'valid email address' format",
                "invalid_value",
            );
        }
        let phone = body.string("phone", &mut e);
        let mobile = body.string("mobile", &mut e);
        let twitter_id = body.string("twitter_id", &mut e);
        let external = body.string("unique_external_id", &mut e);
        let tags = body.tags("tags", &mut e);
        let other_emails = body.emails("other_emails", &mut e);
        let (address, description, job_title, language) = (
            body.string("address", &mut e),
            body.string("description", &mut e),
            body.string("job_title", &mut e),
            body.string("language", &mut e),
        );
        let current = existing.and_then(|id| self.contacts.get(&id).cloned());
        let identified = [&email, &phone, &mobile, &twitter_id, &external]
            .iter()
            .any(|v| v.is_some())
            || current.as_ref().is_some_and(|c| {
                c.email.is_some()
                    || c.phone.is_some()
                    || c.mobile.is_some()
                    || c.twitter_id.is_some()
                    || c.unique_external_id.is_some()
            });
        if e.is_empty() && !identified {
            e.add(
                "email",
                "Please fill at least 1 of email, mobile, phone, twitter_id, unique_external_id fields",
                "missing_field",
            );
        }
        e.check()?;
        let mut conflicts = Errors::default();
        for (field, value) in [
            ("email", &email),
            ("twitter_id", &twitter_id),
            ("unique_external_id", &external),
        ] {
            if let Some(holder) = value
                .as_deref()
                .and_then(|v| self.holder(field, v, existing))
            {
                conflicts.duplicate(field, holder);
            }
        }
        conflicts.check()?;

        let mut contact = current.unwrap_or_else(|| Contact {
            id: self.next_user(),
            language: "en".into(),
            time_zone: self.config.time_zone.clone(),
            created_at: now,
            ..Contact::default()
        });
        set(&mut contact.name, name);
        set(&mut contact.language, language);
        set(&mut contact.tags, tags);
        set(&mut contact.other_emails, other_emails);
        let set_if_given = |slot: &mut Option<String>, value: Option<String>, given: bool| {
            if given {
                *slot = value;
            }
        };
        set_if_given(
            &mut contact.email,
            email.map(|m| m.to_lowercase()),
            body.has("email"),
        );
        set_if_given(&mut contact.phone, phone, body.has("phone"));
        set_if_given(&mut contact.mobile, mobile, body.has("mobile"));
        set_if_given(&mut contact.twitter_id, twitter_id, body.has("twitter_id"));
        set_if_given(
            &mut contact.unique_external_id,
            external,
            body.has("unique_external_id"),
        );
        set_if_given(&mut contact.address, address, body.has("address"));
        set_if_given(
            &mut contact.description,
            description,
            body.has("description"),
        );
        set_if_given(&mut contact.job_title, job_title, body.has("job_title"));
        contact.updated_at = now;
        let id = contact.id;
        self.put_contact(contact);
        Ok(id)
    }

    /// A contact made implicitly by a ticket create (email, phone, twitter_id or
    /// unique_external_id nobody holds yet).
    fn auto_contact(&mut self, name: String, field: &str, value: &str, now: i64) -> u64 {
        let id = self.next_user();
        let mut contact = Contact {
            id,
            name,
            language: "en".into(),
            time_zone: self.config.time_zone.clone(),
            created_at: now,
            updated_at: now,
            ..Contact::default()
        };
        let value = Some(value.to_owned());
        match field {
            "email" => contact.email = value.map(|v| v.to_lowercase()),
            "phone" => contact.phone = value,
            "twitter_id" => contact.twitter_id = value,
            _ => contact.unique_external_id = value,
        }
        self.put_contact(contact);
        id
    }

    // ----- tickets -----------------------------------------------------------------------

    /// `POST /api/v2/tickets`. Returns the new ticket's id.
    pub(crate) fn create_ticket(
        &mut self,
        actor: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<u64, ApiError> {
        const MODELLED: [&str; 17] = [
            "name",
            "requester_id",
            "email",
            "facebook_id",
            "phone",
            "twitter_id",
            "unique_external_id",
            "subject",
            "type",
            "status",
            "priority",
            "description",
            "responder_id",
            "cc_emails",
            "custom_fields",
            "source",
            "tags",
        ];
        let body = Body::new(input);
        let mut e = Errors::default();
        body.check_fields(&MODELLED, &UNMODELLED_TICKET_FIELDS, &mut e);
        let name = body.string("name", &mut e);
        let subject = body.required_string("subject", false, &mut e);
        let description = body.required_string("description", true, &mut e);
        let fields = self.ticket_fields(&body, &mut e);
        let requester = self.requester(&body, name, &mut e);
        e.check()?;
        let (Some(subject), Some(description), Some(requester)) = (subject, description, requester)
        else {
            return Err(ApiError::invalid("", "Validation failed", "invalid_value"));
        };
        let requester = match requester {
            Requester::Existing(id) => id,
            Requester::Create { name, field, value } => self.auto_contact(name, field, &value, now),
        };
        let id = self.next_ticket_id;
        self.next_ticket_id += 1;
        let status = fields.status.unwrap_or(OPEN);
        let mut ticket = Ticket {
            id,
            subject,
            description: html_body(&description),
            status,
            priority: fields.priority.unwrap_or(1),
            source: fields.source.unwrap_or(2),
            kind: fields.kind,
            requester_id: requester,
            responder_id: fields.responder_id,
            tags: fields.tags.unwrap_or_default(),
            custom_fields: self
                .config
                .ticket_custom_fields
                .iter()
                .map(|name| (name.clone(), Value::Null))
                .collect(),
            cc_emails: fields.cc_emails.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            status_updated_at: now,
            first_responded_at: None,
            resolved_at: None,
            closed_at: None,
            attachments: Vec::new(),
            conversations: Vec::new(),
        };
        if let Some(custom) = fields.custom_fields {
            ticket.custom_fields.extend(custom);
        }
        mark_status_times(&mut ticket, status, now);
        self.tickets.insert(id, ticket);
        let performer = self.performer(actor, requester);
        self.notify("ticket_created", id, performer);
        Ok(id)
    }

    /// Resolves the requester of a new ticket from the first identifier given.
    fn requester(
        &self,
        body: &Body<'_>,
        name: Option<String>,
        e: &mut Errors,
    ) -> Option<Requester> {
        if let Some(id) = body.integer("requester_id", e) {
            if self.is_user(id) {
                return Some(Requester::Existing(id));
            }
            e.add(
                "requester_id",
                "There is no contact matching the given requester_id",
                "invalid_value",
            );
            return None;
        }
        if body.has("requester_id") && !body.raw("requester_id").is_some_and(Value::is_null) {
            return None;
        }
        if let Some(email) = body.string("email", e) {
            if !valid_email(&email) {
                e.add(
                    "email",
                    "It should be in the 'valid email address' format",
                    "invalid_value",
                );
                return None;
            }
            if let Some(id) = self.holder("email", &email, None) {
                return Some(Requester::Existing(id));
            }
            let local = email.split('@').next().unwrap_or_default().to_owned();
            return Some(Requester::Create {
                name: name.unwrap_or(local),
                field: "email",
                value: email,
            });
        }
        if let Some(facebook) = body.string("facebook_id", e) {
            return match self.contact_by("facebook_id", &facebook) {
                Some(id) => Some(Requester::Existing(id)),
                None => {
                    e.add(
                        "facebook_id",
                        "There is no record matching the facebook_id provided",
                        "invalid_value",
                    );
                    None
                }
            };
        }
        if let Some(phone) = body.string("phone", e) {
            if let Some(id) = self.contact_by("phone", &phone) {
                return Some(Requester::Existing(id));
            }
            let Some(name) = name else {
                e.add(
                    "name",
                    "It should not be blank if phone is only given",
                    "missing_field",
                );
                return None;
            };
            return Some(Requester::Create {
                name,
                field: "phone",
                value: phone,
            });
        }
        for field in ["twitter_id", "unique_external_id"] {
            if let Some(value) = body.string(field, e) {
                if let Some(id) = self.contact_by(field, &value) {
                    return Some(Requester::Existing(id));
                }
                return Some(Requester::Create {
                    name: name.unwrap_or_else(|| value.clone()),
                    field,
                    value,
                });
            }
        }
        e.add(
            "requester_id",
            "Please fill at least 1 of requester_id, phone, email, twitter_id, facebook_id, unique_external_id fields",
            "missing_field",
        );
        None
    }

    /// The ticket properties shared by create and update.
    fn ticket_fields(&self, body: &Body<'_>, e: &mut Errors) -> TicketFields {
        let statuses = self.statuses();
        let sources: Vec<u64> = self.config.sources.iter().map(|(id, _)| *id).collect();
        let priorities: Vec<u64> = PRIORITIES.iter().map(|(id, _)| *id).collect();
        let kind = body.string("type", e);
        if let Some(kind) = &kind {
            if !self.config.ticket_types.contains(kind) {
                e.add(
                    "type",
                    one_of(self.config.ticket_types.iter().cloned()),
                    "invalid_value",
                );
            }
        }
        let responder_id = body.integer("responder_id", e);
        if responder_id.is_some_and(|id| !self.agents.contains_key(&id)) {
            e.add(
                "responder_id",
                "There is no agent matching the given responder_id",
                "invalid_value",
            );
        }
        TicketFields {
            status: body.choice("status", &statuses, e),
            priority: body.choice("priority", &priorities, e),
            source: body.choice("source", &sources, e),
            kind,
            responder_id,
            tags: body.tags("tags", e),
            cc_emails: body.emails("cc_emails", e),
            custom_fields: self.custom_fields(body, e),
        }
    }

    /// `custom_fields`: keys are the account's field names (`cf_...`), values text.
    fn custom_fields(&self, body: &Body<'_>, e: &mut Errors) -> Option<BTreeMap<String, Value>> {
        let raw = body.raw("custom_fields")?;
        let Some(map) = raw.as_object() else {
            if !raw.is_null() {
                mismatch(e, "custom_fields", raw, "key/value pair");
            }
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in map {
            if !self.config.ticket_custom_fields.contains(key) {
                e.add(key, "Unexpected/invalid field in request", "invalid_field");
                continue;
            }
            match value {
                Value::Null => {
                    out.insert(key.clone(), Value::Null);
                }
                Value::String(s) if s.chars().count() <= STRING_MAX_CHARS => {
                    out.insert(key.clone(), value.clone());
                }
                Value::String(_) => e.add(
                    key,
                    format!("It can have maximum of {STRING_MAX_CHARS} characters"),
                    "invalid_value",
                ),
                other => mismatch(e, key, other, "String"),
            }
        }
        Some(out)
    }

    /// `PUT /api/v2/tickets/{id}`.
    pub(crate) fn update_ticket(
        &mut self,
        actor: u64,
        id: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<(), ApiError> {
        const MODELLED: [&str; 11] = [
            "subject",
            "description",
            "status",
            "priority",
            "source",
            "type",
            "responder_id",
            "tags",
            "custom_fields",
            "cc_emails",
            "requester_id",
        ];
        const IDENTITY: [&str; 6] = [
            "name",
            "email",
            "facebook_id",
            "phone",
            "twitter_id",
            "unique_external_id",
        ];
        if !self.tickets.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        let body = Body::new(input);
        if body.is_empty() {
            return Err(missing_params());
        }
        let mut e = Errors::default();
        let unmodelled: Vec<&str> = UNMODELLED_TICKET_FIELDS
            .iter()
            .chain(IDENTITY.iter())
            .copied()
            .collect();
        body.check_fields(&MODELLED, &unmodelled, &mut e);
        let subject = if body.has("subject") {
            body.required_string("subject", false, &mut e)
        } else {
            None
        };
        let description = if body.has("description") {
            body.required_string("description", true, &mut e)
        } else {
            None
        };
        let requester = body.integer("requester_id", &mut e);
        if requester.is_some_and(|r| !self.is_user(r)) {
            e.add(
                "requester_id",
                "There is no contact matching the given requester_id",
                "invalid_value",
            );
        }
        let fields = self.ticket_fields(&body, &mut e);
        e.check()?;

        let Some(ticket) = self.tickets.get_mut(&id) else {
            return Err(ApiError::not_found());
        };
        let before = (ticket.status, ticket.priority);
        set(&mut ticket.subject, subject);
        if let Some(description) = description {
            ticket.description = html_body(&description);
        }
        set(&mut ticket.requester_id, requester);
        set(&mut ticket.status, fields.status);
        set(&mut ticket.priority, fields.priority);
        set(&mut ticket.source, fields.source);
        if body.has("type") {
            ticket.kind = fields.kind;
        }
        if body.has("responder_id") {
            ticket.responder_id = fields.responder_id;
        }
        set(&mut ticket.tags, fields.tags);
        set(&mut ticket.cc_emails, fields.cc_emails);
        if let Some(custom) = fields.custom_fields {
            ticket.custom_fields.extend(custom);
        }
        ticket.updated_at = now;
        if ticket.status != before.0 {
            ticket.status_updated_at = now;
            let status = ticket.status;
            mark_status_times(ticket, status, now);
        }
        let (status_changed, priority_changed) =
            (ticket.status != before.0, ticket.priority != before.1);
        let performer = self.performer(actor, self.tickets[&id].requester_id);
        if status_changed {
            self.notify("status_changed", id, performer);
        }
        if priority_changed {
            self.notify("priority_changed", id, performer);
        }
        Ok(())
    }

    /// A status change made in the agent UI (the control API), by the human agent.
    pub(crate) fn set_status(&mut self, id: u64, status: u64, now: i64) -> Result<(), ApiError> {
        if !self.statuses().contains(&status) {
            return Err(ApiError::invalid(
                "status",
                one_of(self.statuses().iter().map(u64::to_string)),
                "invalid_value",
            ));
        }
        let ticket = self.tickets.get_mut(&id).ok_or_else(ApiError::not_found)?;
        let changed = ticket.status != status;
        ticket.status = status;
        ticket.updated_at = now;
        if changed {
            ticket.status_updated_at = now;
            mark_status_times(ticket, status, now);
            self.notify("status_changed", id, Performer::Agent);
        }
        Ok(())
    }

    // ----- conversations -----------------------------------------------------------------

    fn next_conversation(&mut self) -> u64 {
        let id = self.next_conversation_id;
        self.next_conversation_id += 1;
        id
    }

    /// The body of a reply or note: `body` or `structured_body`, one of them mandatory.
    fn conversation_body(body: &Body<'_>, e: &mut Errors) -> Option<String> {
        if body.has("structured_body") && !body.has("body") {
            return body.structured_body(e);
        }
        body.required_string("body", true, e)
    }

    /// The part of a reply or note request both read: the ticket must exist, the attributes
    /// are `body`, `structured_body`, `user_id` and the endpoint's `own` ones. Returns the
    /// reader and the body text.
    fn conversation_request<'a>(
        &self,
        ticket_id: u64,
        input: &'a Map<String, Value>,
        own: [&str; 3],
        e: &mut Errors,
    ) -> Result<(Body<'a>, Option<String>), ApiError> {
        if !self.tickets.contains_key(&ticket_id) {
            return Err(ApiError::not_found());
        }
        let body = Body::new(input);
        let [a, b, c] = own;
        let fields = ["body", "structured_body", "user_id", a, b, c];
        body.check_fields(&fields, &["attachments", "cloud_files"], e);
        let text = Self::conversation_body(&body, e);
        Ok((body, text))
    }

    /// `POST /api/v2/tickets/{id}/reply`: a public reply by an agent.
    pub(crate) fn add_reply(
        &mut self,
        actor: u64,
        ticket_id: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<u64, ApiError> {
        let mut e = Errors::default();
        let own = ["from_email", "cc_emails", "bcc_emails"];
        let (body, text) = self.conversation_request(ticket_id, input, own, &mut e)?;
        let user_id = body.integer("user_id", &mut e).unwrap_or(actor);
        if !self.agents.contains_key(&user_id) {
            e.add(
                "user_id",
                "There is no agent matching the given user_id",
                "invalid_value",
            );
        }
        let from_email = body.string("from_email", &mut e);
        let cc_emails = body.emails("cc_emails", &mut e).unwrap_or_default();
        let bcc_emails = body.emails("bcc_emails", &mut e).unwrap_or_default();
        e.check()?;
        let text = text.unwrap_or_default();
        let support = format!("support@{}.freshdesk.com", self.config.domain);
        let id = self.next_conversation();
        let ticket = self
            .tickets
            .get_mut(&ticket_id)
            .ok_or_else(ApiError::not_found)?;
        ticket.conversations.push(Conversation {
            id,
            ticket_id,
            body: html_body(&text),
            incoming: false,
            private: false,
            source: SOURCE_REPLY,
            user_id,
            from_email: Some(from_email.unwrap_or(support)),
            cc_emails,
            bcc_emails,
            notify_emails: Vec::new(),
            created_at: now,
            attachments: Vec::new(),
        });
        ticket.updated_at = now;
        ticket.first_responded_at.get_or_insert(now);
        self.notify("reply_sent", ticket_id, Performer::Agent);
        Ok(id)
    }

    /// `POST /api/v2/tickets/{id}/notes`: private unless `private: false`; `incoming: true`
    /// makes it look as if it came from outside.
    pub(crate) fn add_note(
        &mut self,
        actor: u64,
        ticket_id: u64,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<u64, ApiError> {
        let mut e = Errors::default();
        let own = ["private", "incoming", "notify_emails"];
        let (body, text) = self.conversation_request(ticket_id, input, own, &mut e)?;
        let user_id = body.integer("user_id", &mut e).unwrap_or(actor);
        if !self.is_user(user_id) {
            e.add(
                "user_id",
                "There is no user matching the given user_id",
                "invalid_value",
            );
        }
        let private = body.boolean("private", &mut e).unwrap_or(true);
        let incoming = body.boolean("incoming", &mut e).unwrap_or(false);
        let notify_emails = body.emails("notify_emails", &mut e).unwrap_or_default();
        e.check()?;
        let text = text.unwrap_or_default();
        let id = self.next_conversation();
        let reopen = self.config.reopen_on_customer_reply;
        let requester = self
            .tickets
            .get(&ticket_id)
            .map(|t| t.requester_id)
            .unwrap_or_default();
        let ticket = self
            .tickets
            .get_mut(&ticket_id)
            .ok_or_else(ApiError::not_found)?;
        ticket.conversations.push(Conversation {
            id,
            ticket_id,
            body: html_body(&text),
            incoming,
            private,
            source: SOURCE_NOTE,
            user_id,
            from_email: None,
            cc_emails: Vec::new(),
            bcc_emails: Vec::new(),
            notify_emails,
            created_at: now,
            attachments: Vec::new(),
        });
        ticket.updated_at = now;
        // A customer writing again reopens a ticket that waits on them or was resolved.
        let reopened =
            reopen && incoming && !private && [PENDING, RESOLVED, CLOSED].contains(&ticket.status);
        if reopened {
            ticket.status = OPEN;
            ticket.status_updated_at = now;
        }
        let performer = self.performer(user_id, requester);
        self.notify("note_added", ticket_id, performer);
        if reopened {
            self.notify("status_changed", ticket_id, Performer::System);
        }
        Ok(id)
    }

    fn performer(&self, actor: u64, requester: u64) -> Performer {
        if actor == requester || self.contacts.contains_key(&actor) {
            Performer::Requester
        } else {
            Performer::Agent
        }
    }

    fn notify(&mut self, event: &'static str, ticket_id: u64, performer: Performer) {
        self.outbox.push(Notice {
            event,
            ticket_id,
            performer,
        });
    }

    // ----- rendering ---------------------------------------------------------------------

    pub(crate) fn agent_json(&self, a: &Agent) -> Value {
        let at = iso8601(a.created_at);
        json!({
            "available": true,
            "occasional": false,
            "id": a.id,
            "ticket_scope": 1,
            "signature": null,
            "group_ids": [],
            "role_ids": [],
            "skill_ids": [],
            "available_since": null,
            "type": "support_agent",
            "focus_mode": true,
            "created_at": at,
            "updated_at": at,
            "last_active_at": at,
            "contact": {
                "active": true,
                "email": a.email,
                "job_title": null,
                "language": "en",
                "last_login_at": at,
                "mobile": null,
                "name": a.name,
                "phone": null,
                "time_zone": self.config.time_zone,
                "created_at": at,
                "updated_at": at,
            },
        })
    }

    pub(crate) fn contact_json(&self, c: &Contact) -> Value {
        json!({
            "active": false,
            "address": c.address,
            "company_id": null,
            "view_all_tickets": false,
            "deleted": false,
            "description": c.description,
            "email": c.email,
            "id": c.id,
            "contact_type": "contact",
            "job_title": c.job_title,
            "language": c.language,
            "mobile": c.mobile,
            "name": c.name,
            "phone": c.phone,
            "time_zone": c.time_zone,
            "twitter_id": c.twitter_id,
            "unique_external_id": c.unique_external_id,
            "social_handler": [],
            "other_emails": c.other_emails,
            "other_companies": [],
            "custom_fields": {},
            "tags": c.tags,
            "avatar": null,
            "created_at": iso8601(c.created_at),
            "updated_at": iso8601(c.updated_at),
        })
    }

    /// A ticket as `GET /tickets/{id}` shows it; `listing` leaves out what the list endpoint
    /// only gives with `include=description`.
    pub(crate) fn ticket_json(&self, t: &Ticket, listing: bool) -> Value {
        let mut v = json!({
            "cc_emails": t.cc_emails,
            "fwd_emails": [],
            "reply_cc_emails": t.cc_emails,
            "ticket_cc_emails": t.cc_emails,
            "fr_escalated": false,
            "spam": false,
            "email_config_id": null,
            "group_id": null,
            "priority": t.priority,
            "requester_id": t.requester_id,
            "responder_id": t.responder_id,
            "source": t.source,
            "company_id": null,
            "status": t.status,
            "subject": t.subject,
            "association_type": null,
            "support_email": null,
            "to_emails": null,
            "product_id": null,
            "id": t.id,
            "type": t.kind,
            "due_by": iso8601(t.created_at + 3 * 86_400),
            "fr_due_by": iso8601(t.created_at + 86_400),
            "is_escalated": false,
            "custom_fields": t.custom_fields,
            "created_at": iso8601(t.created_at),
            "updated_at": iso8601(t.updated_at),
            "tags": t.tags,
        });
        if !listing {
            v["description"] = json!(t.description);
            v["description_text"] = json!(text_of(&t.description));
            v["attachments"] = attachments_json(&t.attachments);
        }
        v
    }

    pub(crate) fn add_description(&self, v: &mut Value, t: &Ticket) {
        v["description"] = json!(t.description);
        v["description_text"] = json!(text_of(&t.description));
    }

    pub(crate) fn stats_json(&self, t: &Ticket) -> Value {
        let agent_responded = t
            .conversations
            .iter()
            .rev()
            .find(|c| c.source == SOURCE_REPLY)
            .map(|c| iso8601(c.created_at));
        let requester_responded = t
            .conversations
            .iter()
            .rev()
            .find(|c| c.incoming)
            .map(|c| iso8601(c.created_at));
        json!({
            "agent_responded_at": agent_responded,
            "requester_responded_at": requester_responded,
            "first_responded_at": t.first_responded_at.map(iso8601),
            "status_updated_at": iso8601(t.status_updated_at),
            "reopened_at": null,
            "resolved_at": t.resolved_at.map(iso8601),
            "closed_at": t.closed_at.map(iso8601),
            "pending_since": (t.status == PENDING).then(|| iso8601(t.status_updated_at)),
        })
    }

    pub(crate) fn requester_json(&self, t: &Ticket) -> Value {
        let id = t.requester_id;
        match self.contacts.get(&id) {
            Some(c) => {
                json!({"email": c.email, "id": id, "mobile": c.mobile, "name": c.name, "phone": c.phone})
            }
            None => json!({
                "email": self.user_email(id), "id": id, "mobile": null,
                "name": self.user_name(id), "phone": null,
            }),
        }
    }

    /// A conversation as `GET /tickets/{id}/conversations` lists it.
    pub(crate) fn conversation_json(&self, c: &Conversation) -> Value {
        let at = iso8601(c.created_at);
        let to_emails: Vec<String> = if c.source == SOURCE_REPLY {
            self.tickets
                .get(&c.ticket_id)
                .and_then(|t| self.user_email(t.requester_id))
                .map(str::to_owned)
                .into_iter()
                .collect()
        } else {
            c.notify_emails.clone()
        };
        json!({
            "body": c.body,
            "body_text": text_of(&c.body),
            "id": c.id,
            "incoming": c.incoming,
            "private": c.private,
            "user_id": c.user_id,
            "support_email": (c.source == SOURCE_REPLY).then(|| c.from_email.clone()).flatten(),
            "source": c.source,
            "ticket_id": c.ticket_id,
            "to_emails": to_emails,
            "from_email": c.from_email,
            "cc_emails": c.cc_emails,
            "bcc_emails": c.bcc_emails,
            "attachments": attachments_json(&c.attachments),
            "created_at": at,
            "updated_at": at,
            "last_edited_at": null,
            "last_edited_user_id": null,
        })
    }

    /// The answer of `POST /tickets/{id}/reply`.
    pub(crate) fn reply_json(&self, c: &Conversation) -> Value {
        let at = iso8601(c.created_at);
        let replied_to: Vec<String> = self
            .tickets
            .get(&c.ticket_id)
            .and_then(|t| self.user_email(t.requester_id))
            .map(str::to_owned)
            .into_iter()
            .collect();
        json!({
            "body_text": text_of(&c.body),
            "body": c.body,
            "id": c.id,
            "user_id": c.user_id,
            "from_email": c.from_email,
            "cc_emails": c.cc_emails,
            "bcc_emails": c.bcc_emails,
            "ticket_id": c.ticket_id,
            "replied_to": replied_to,
            "attachments": attachments_json(&c.attachments),
            "created_at": at,
            "updated_at": at,
        })
    }

    /// The answer of `POST /tickets/{id}/notes`.
    pub(crate) fn note_json(&self, c: &Conversation) -> Value {
        let at = iso8601(c.created_at);
        json!({
            "body_text": text_of(&c.body),
            "body": c.body,
            "id": c.id,
            "incoming": c.incoming,
            "private": c.private,
            "user_id": c.user_id,
            "support_email": null,
            "ticket_id": c.ticket_id,
            "notified_to": c.notify_emails,
            "attachments": attachments_json(&c.attachments),
            "created_at": at,
            "updated_at": at,
        })
    }

    /// Files uploads on a ticket (`conversation: None`) or one of its conversations, with
    /// `url(id)` as each one's `attachment_url`.
    pub(crate) fn attach(
        &mut self,
        ticket_id: u64,
        conversation: Option<u64>,
        uploads: Vec<super::form::Upload>,
        url: impl Fn(u64) -> String,
        now: i64,
    ) -> Result<(), ApiError> {
        let mut files = Vec::with_capacity(uploads.len());
        for upload in uploads {
            self.next_attachment_id += 1;
            let id = self.next_attachment_id;
            files.push(Attachment {
                id,
                name: upload.name,
                content_type: upload.content_type,
                content: upload.content,
                url: url(id),
                created_at: now,
            });
        }
        let ticket = self
            .tickets
            .get_mut(&ticket_id)
            .ok_or_else(ApiError::not_found)?;
        let target = match conversation {
            None => &mut ticket.attachments,
            Some(id) => {
                &mut ticket
                    .conversations
                    .iter_mut()
                    .find(|c| c.id == id)
                    .ok_or_else(ApiError::not_found)?
                    .attachments
            }
        };
        target.extend(files);
        Ok(())
    }

    /// An attachment by id, wherever it hangs.
    pub(crate) fn attachment(&self, id: u64) -> Option<&Attachment> {
        self.tickets.values().find_map(|t| {
            t.attachments
                .iter()
                .chain(t.conversations.iter().flat_map(|c| c.attachments.iter()))
                .find(|a| a.id == id)
        })
    }

    pub(crate) fn conversation(&self, ticket_id: u64, id: u64) -> Option<&Conversation> {
        self.tickets
            .get(&ticket_id)?
            .conversations
            .iter()
            .find(|c| c.id == id)
    }
}

/// Known ticket attributes the simulator does not model.
const UNMODELLED_TICKET_FIELDS: [&str; 12] = [
    "attachments",
    "due_by",
    "fr_due_by",
    "email_config_id",
    "group_id",
    "parent_id",
    "product_id",
    "company_id",
    "internal_agent_id",
    "internal_group_id",
    "lookup_parameter",
    "related_ticket_ids",
];

enum Requester {
    Existing(u64),
    Create {
        name: String,
        field: &'static str,
        value: String,
    },
}

struct TicketFields {
    status: Option<u64>,
    priority: Option<u64>,
    source: Option<u64>,
    kind: Option<String>,
    responder_id: Option<u64>,
    tags: Option<Vec<String>>,
    cc_emails: Option<Vec<String>>,
    custom_fields: Option<BTreeMap<String, Value>>,
}

fn mark_status_times(ticket: &mut Ticket, status: u64, now: i64) {
    match status {
        RESOLVED => ticket.resolved_at = Some(now),
        CLOSED => {
            ticket.resolved_at.get_or_insert(now);
            ticket.closed_at = Some(now);
        }
        _ => {}
    }
}

/// An update without any attribute.
fn missing_params() -> ApiError {
    ApiError::request(
        axum::http::StatusCode::BAD_REQUEST,
        "missing_params",
        "Your update call does not have any parameter. Atleast one parameter is required.",
    )
}

fn attachments_json(attachments: &[Attachment]) -> Value {
    Value::Array(attachments.iter().map(Attachment::json).collect())
}
