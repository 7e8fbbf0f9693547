//! The org's records and the DML rules: field validation, defaults, audit fields, upsert by
//! external id, and the change-event log (a stand-in for Change Data Capture).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::ids;
use super::oauth::OAuthState;
use super::schema::{Field, Kind, Object, Picklist, Schema};
use super::time::sf_datetime;
use super::Config;

/// One record. Values are keyed by the field's API name; datetimes are kept as epoch ms.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub object: Object,
    pub id: String,
    /// Insertion order, to list records stably.
    pub seq: u64,
    pub values: BTreeMap<String, Value>,
    pub deleted: bool,
    /// `Sforce-Call-Options: client=` of the write that created it, and of the latest write
    /// (`None` for the UI), which real records keep only in CDC's `changeOrigin`.
    pub created_client: Option<String>,
    pub modified_client: Option<String>,
}

impl Record {
    pub(crate) fn value(&self, field: &str) -> &Value {
        self.values.get(field).unwrap_or(&Value::Null)
    }

    pub(crate) fn text(&self, field: &str) -> Option<&str> {
        self.values.get(field).and_then(Value::as_str)
    }

    pub(crate) fn ms(&self, field: &str) -> Option<i64> {
        self.values.get(field).and_then(Value::as_i64)
    }
}

/// Who writes, and through which client (`Sforce-Call-Options: client=`).
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub user_id: String,
    pub client: Option<String>,
    /// `60.0`, for the change events' `changeOrigin`.
    pub api_version: String,
}

pub(crate) enum Upsert {
    Created(String),
    Updated(String),
    Multiple(Vec<String>),
}

/// An open query cursor (`nextRecordsUrl`): the rows of the result not yet handed out.
#[derive(Debug)]
pub(crate) struct Locator {
    pub rows: Vec<Value>,
    pub next: usize,
    pub batch: usize,
    pub last_used_ms: i64,
}

/// The state [`Store::roll_back_writes`] restores (the change-event log only grows, so its
/// length is enough).
pub(crate) struct WriteSnapshot {
    records: HashMap<String, Record>,
    external_ids: HashMap<ExternalKey, BTreeMap<u64, String>>,
    seq: u64,
    counters: HashMap<&'static str, u64>,
    case_number: u64,
    events: usize,
}

/// `(object, lowercased field name, lowercased value)` of an external id.
type ExternalKey = (Object, String, String);

pub(crate) struct Store {
    pub config: Config,
    pub schema: Schema,
    pub records: HashMap<String, Record>,
    /// External id values → the records holding them (deleted ones too), by creation order,
    /// so an upsert or uniqueness check costs no scan of every record.
    external_ids: HashMap<ExternalKey, BTreeMap<u64, String>>,
    seq: u64,
    counters: HashMap<&'static str, u64>,
    case_number: u64,
    pub integration_user_id: String,
    pub human_agent_id: String,
    pub events: Vec<Value>,
    pub oauth: OAuthState,
    pub locators: HashMap<String, Locator>,
    /// API requests served while no budget is configured, for `Sforce-Limit-Info`.
    pub requests_counted: u64,
}

impl Store {
    pub(crate) fn new(config: Config, now_ms: i64) -> Self {
        let schema = Schema::new(&config);
        let mut store = Self {
            schema,
            records: HashMap::new(),
            external_ids: HashMap::new(),
            seq: 0,
            counters: HashMap::new(),
            case_number: 1000,
            integration_user_id: String::new(),
            human_agent_id: String::new(),
            events: Vec::new(),
            oauth: OAuthState::default(),
            locators: HashMap::new(),
            requests_counted: 0,
            config,
        };
        let integration = (
            store.config.integration_username.clone(),
            store.config.integration_user_name.clone(),
        );
        let agent = (
            store.config.agent_username.clone(),
            store.config.agent_name.clone(),
        );
        store.integration_user_id = store.add_user(&integration.0, &integration.1, now_ms);
        store.human_agent_id = store.add_user(&agent.0, &agent.1, now_ms);
        store
    }

    fn add_user(&mut self, username: &str, name: &str, now_ms: i64) -> String {
        let id = self.next_id(Object::User);
        let (first, last) = match name.rsplit_once(' ') {
            Some((first, last)) => (Value::from(first), last),
            None => (Value::Null, name),
        };
        let mut values = BTreeMap::new();
        values.insert("Id".into(), json!(id));
        values.insert("Username".into(), json!(username));
        values.insert("FirstName".into(), first);
        values.insert("LastName".into(), json!(last));
        values.insert("Name".into(), json!(name));
        values.insert("Email".into(), json!(username));
        values.insert("UserType".into(), json!("Standard"));
        values.insert("IsActive".into(), json!(true));
        for f in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
            values.insert(f.into(), json!(now_ms));
        }
        values.insert("CreatedById".into(), json!(id));
        values.insert("LastModifiedById".into(), json!(id));
        values.insert("IsDeleted".into(), json!(false));
        let seq = self.next_seq();
        self.records.insert(
            id.clone(),
            Record {
                object: Object::User,
                id: id.clone(),
                seq,
                values,
                deleted: false,
                created_client: None,
                modified_client: None,
            },
        );
        id
    }

    /// The active user with this username (case-insensitive, as logins are).
    pub(crate) fn user_by_username(&self, username: &str) -> Option<&Record> {
        self.records.values().find(|r| {
            r.object == Object::User
                && r.text("Username")
                    .is_some_and(|u| u.eq_ignore_ascii_case(username))
                && r.value("IsActive") == &Value::Bool(true)
        })
    }

    pub(crate) fn next_id(&mut self, object: Object) -> String {
        let counter = self.counters.entry(object.key_prefix()).or_insert(0);
        *counter += 1;
        ids::make(object.key_prefix(), *counter)
    }

    /// A new query locator id (`01g...`).
    pub(crate) fn next_query_locator(&mut self) -> String {
        let counter = self.counters.entry("01g").or_insert(0);
        *counter += 1;
        ids::make("01g", *counter)
    }

    /// A copy of everything a record write changes, for an all-or-none batch to roll back to.
    pub(crate) fn snapshot_writes(&self) -> WriteSnapshot {
        WriteSnapshot {
            records: self.records.clone(),
            external_ids: self.external_ids.clone(),
            seq: self.seq,
            counters: self.counters.clone(),
            case_number: self.case_number,
            events: self.events.len(),
        }
    }

    /// Undoes every record write since `snapshot` was taken.
    pub(crate) fn roll_back_writes(&mut self, snapshot: WriteSnapshot) {
        self.records = snapshot.records;
        self.external_ids = snapshot.external_ids;
        self.seq = snapshot.seq;
        self.counters = snapshot.counters;
        self.case_number = snapshot.case_number;
        self.events.truncate(snapshot.events);
    }

    /// The object a live or deleted record id belongs to.
    pub(crate) fn object_of_id(&self, raw_id: &str) -> Option<Object> {
        let id = ids::normalize(raw_id)?;
        self.records.get(&id).map(|r| r.object)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A live record of `object` by a 15- or 18-character id.
    pub(crate) fn get(&self, object: Object, raw_id: &str) -> Option<&Record> {
        let id = ids::normalize(raw_id)?;
        self.records
            .get(&id)
            .filter(|r| r.object == object && !r.deleted)
    }

    /// Every record of `object` in creation order; deleted ones only with `all_rows`.
    pub(crate) fn list(&self, object: Object, all_rows: bool) -> Vec<&Record> {
        let mut rows: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.object == object && (all_rows || !r.deleted))
            .collect();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    /// `/services/data/v60.0/sobjects/Case/500...`.
    pub(crate) fn record_url(version: &str, object: Object, id: &str) -> String {
        format!("/services/data/v{version}/sobjects/{}/{id}", object.name())
    }

    pub(crate) fn attributes(version: &str, record: &Record) -> Value {
        json!({
            "type": record.object.name(),
            "url": Self::record_url(version, record.object, &record.id),
        })
    }

    /// A field's value as JSON: datetimes as `2024-05-01T09:14:57.000+0000`.
    pub(crate) fn field_json(field: &Field, value: &Value) -> Value {
        match (&field.kind, value) {
            (Kind::DateTime, Value::Number(n)) => n
                .as_i64()
                .map(|ms| Value::String(sf_datetime(ms)))
                .unwrap_or(Value::Null),
            _ => value.clone(),
        }
    }

    /// The record as `GET /sobjects/{object}/{id}` shows it; `only` limits the fields
    /// (`?fields=`), keeping their order.
    pub(crate) fn render(&self, record: &Record, version: &str, only: Option<&[&Field]>) -> Value {
        let mut out = Map::new();
        out.insert("attributes".into(), Self::attributes(version, record));
        let fields: Vec<&Field> = match only {
            Some(fields) => fields.to_vec(),
            None => self
                .schema
                .fields(record.object)
                .iter()
                .filter(|f| f.readable)
                .collect(),
        };
        for field in fields {
            out.insert(
                field.name.clone(),
                Self::field_json(field, record.value(&field.name)),
            );
        }
        Value::Object(out)
    }

    // ----- writes ------------------------------------------------------------------------

    /// Creates a record from a REST body.
    pub(crate) fn insert(
        &mut self,
        object: Object,
        body: &Map<String, Value>,
        writer: &Writer,
        now_ms: i64,
    ) -> Result<String, ApiError> {
        writable_object(object)?;
        let changes = self.prepare(object, body, None)?;
        Ok(self.create(object, changes, writer, now_ms))
    }

    /// Updates a live record from a REST body.
    pub(crate) fn update(
        &mut self,
        object: Object,
        raw_id: &str,
        body: &Map<String, Value>,
        writer: &Writer,
        now_ms: i64,
    ) -> Result<String, ApiError> {
        writable_object(object)?;
        let id = self.existing_id(object, raw_id)?;
        let changes = self.prepare(object, body, Some(&id))?;
        self.modify(&id, changes, writer, now_ms);
        Ok(id)
    }

    /// `PATCH /sobjects/{object}/{field}/{value}`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upsert(
        &mut self,
        object: Object,
        field_name: &str,
        value: &str,
        body: &Map<String, Value>,
        update_only: bool,
        writer: &Writer,
        now_ms: i64,
    ) -> Result<Upsert, ApiError> {
        writable_object(object)?;
        let field = self.external_field(object, field_name)?.name.clone();
        let mut body = body.clone();
        if let Some((key, given)) = body
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&field))
            .map(|(k, v)| (k.clone(), v.clone()))
        {
            // Allowed when it repeats the URL's value; a different one would be ambiguous.
            if !given
                .as_str()
                .is_some_and(|g| g.eq_ignore_ascii_case(value))
            {
                return Err(ApiError::bad_request(
                    "INVALID_FIELD",
                    format!(
                        "The value of {field} in the request body doesn't match the external ID \
                         value in the URL: {value}"
                    ),
                ));
            }
            body.remove(&key);
        }
        let matches = self.by_external_id(object, &field, value);
        match matches.as_slice() {
            [] if update_only => Err(ApiError::not_found()),
            [] => {
                body.insert(field, Value::String(value.to_string()));
                let changes = self.prepare(object, &body, None)?;
                Ok(Upsert::Created(
                    self.create(object, changes, writer, now_ms),
                ))
            }
            [id] => {
                let id = id.clone();
                let changes = self.prepare(object, &body, Some(&id))?;
                self.modify(&id, changes, writer, now_ms);
                Ok(Upsert::Updated(id))
            }
            several => Ok(Upsert::Multiple(several.to_vec())),
        }
    }

    pub(crate) fn delete(
        &mut self,
        object: Object,
        raw_id: &str,
        writer: &Writer,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        writable_object(object)?;
        let id = self.existing_id(object, raw_id)?;
        let mut deleted = vec![id.clone()];
        if object == Object::Case {
            // A case's comments go with it.
            deleted.extend(
                self.list(Object::CaseComment, false)
                    .into_iter()
                    .filter(|c| c.text("ParentId") == Some(id.as_str()))
                    .map(|c| c.id.clone()),
            );
        }
        for id in &deleted {
            if let Some(record) = self.records.get_mut(id) {
                record.deleted = true;
                record.values.insert("IsDeleted".into(), json!(true));
                record.values.insert("SystemModstamp".into(), json!(now_ms));
                let object = record.object;
                self.event(object, id, "DELETE", Vec::new(), writer, now_ms);
            }
        }
        Ok(())
    }

    /// The id of a record a write addresses: 404 when unknown, `ENTITY_IS_DELETED` when gone.
    fn existing_id(&self, object: Object, raw_id: &str) -> Result<String, ApiError> {
        let id = ids::normalize(raw_id).ok_or_else(ApiError::not_found)?;
        match self.records.get(&id) {
            Some(r) if r.object == object && r.deleted => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "ENTITY_IS_DELETED",
                "entity is deleted",
            )),
            Some(r) if r.object == object => Ok(id),
            _ => Err(ApiError::not_found()),
        }
    }

    /// An external id field of `object`, or Salesforce's 404 for anything else.
    pub(crate) fn external_field(&self, object: Object, name: &str) -> Result<&Field, ApiError> {
        self.schema
            .field(object, name)
            .filter(|f| f.external_id)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!(
                        "Provided external ID field does not exist or is not accessible: {name}"
                    ),
                )
            })
    }

    /// Live records whose external id `field` equals `value` (case-insensitively), oldest
    /// first.
    pub(crate) fn by_external_id(&self, object: Object, field: &str, value: &str) -> Vec<String> {
        let key = (
            object,
            field.to_ascii_lowercase(),
            value.to_ascii_lowercase(),
        );
        self.external_ids
            .get(&key)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|id| self.records.get(*id).is_some_and(|r| !r.deleted))
            .cloned()
            .collect()
    }

    /// Checks a body against the schema and returns the values to store, by API name.
    fn prepare(
        &self,
        object: Object,
        body: &Map<String, Value>,
        existing: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ApiError> {
        let creating = existing.is_none();
        let mut changes: Vec<(String, Value)> = Vec::new();
        for (key, value) in body {
            if key == "attributes" {
                continue;
            }
            let field = self.schema.field(object, key).ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_FIELD",
                    format!(
                        "No such column '{key}' on sobject of type {}",
                        object.name()
                    ),
                )
            })?;
            let allowed = if creating {
                field.createable
            } else {
                field.updateable
            };
            if !allowed {
                return Err(ApiError::fields(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings \
                         of this field and verify that it is read/write for your profile or \
                         permission set.",
                        field.name
                    ),
                    &[&field.name],
                ));
            }
            let value = self.check_value(field, value)?;
            changes.retain(|(name, _)| *name != field.name);
            changes.push((field.name.clone(), value));
        }

        // Required fields: absent on insert, or cleared on update.
        let mut missing: Vec<&str> = Vec::new();
        for field in self.schema.fields(object).iter().filter(|f| f.required) {
            let given = changes
                .iter()
                .find(|(n, _)| *n == field.name)
                .map(|(_, v)| v);
            let absent = match given {
                Some(v) => v.is_null(),
                None => creating,
            };
            if absent {
                missing.push(&field.name);
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::fields(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            ));
        }

        // Status is a required picklist with a default: null is refused, absent is filled.
        if let Some((_, Value::Null)) = changes.iter().find(|(n, _)| n == "Status") {
            if object == Object::Case {
                return Err(ApiError::fields(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "Status: bad value for restricted picklist field: null",
                    &["Status"],
                ));
            }
        }

        // Unique external ids.
        for (name, value) in &changes {
            let Some(field) = self.schema.field(object, name) else {
                continue;
            };
            let Some(text) = value.as_str().filter(|_| field.unique) else {
                continue;
            };
            if let Some(other) = self
                .by_external_id(object, name, text)
                .into_iter()
                .find(|id| Some(id.as_str()) != existing)
            {
                return Err(ApiError::fields(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {name} duplicates value on record with id: {other}"
                    ),
                    &[],
                ));
            }
        }
        Ok(changes)
    }

    /// One field's value, type-checked and normalized (`""` is null, ids 18 characters).
    fn check_value(&self, field: &Field, value: &Value) -> Result<Value, ApiError> {
        let name = field.name.as_str();
        let mismatch = |expected: &str| {
            let (token, shown) = match value {
                Value::Object(_) => ("START_OBJECT", "{".to_string()),
                Value::Array(_) => ("START_ARRAY", "[".to_string()),
                Value::String(s) => ("VALUE_STRING", s.clone()),
                Value::Bool(b) => (if *b { "VALUE_TRUE" } else { "VALUE_FALSE" }, b.to_string()),
                Value::Number(n) => ("VALUE_NUMBER_INT", n.to_string()),
                Value::Null => ("VALUE_NULL", "null".to_string()),
            };
            ApiError::json_parser(format!(
                "Cannot deserialize instance of {expected} from {token} value {shown} or request \
                 may be missing a required field"
            ))
        };
        match &field.kind {
            Kind::Boolean => match value {
                Value::Bool(_) => Ok(value.clone()),
                Value::Null => Ok(Value::Bool(false)),
                _ => Err(mismatch("boolean")),
            },
            Kind::Text { max, bytes } => {
                let text = match value {
                    Value::Null => return Ok(Value::Null),
                    Value::String(s) => s.clone(),
                    // Scalars are read as their text, as Salesforce's JSON reader does.
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(mismatch("string")),
                };
                if text.is_empty() {
                    return Ok(Value::Null);
                }
                let length = if *bytes {
                    text.len()
                } else {
                    text.chars().count()
                };
                if length > *max {
                    let shown: String = text.chars().take(40).collect();
                    return Err(ApiError::fields(
                        "STRING_TOO_LONG",
                        format!(
                            "{}: data value too large: {shown}... (max length={max})",
                            field.label
                        ),
                        &[name],
                    ));
                }
                Ok(Value::String(text))
            }
            Kind::Picklist(list) => {
                let text = match value {
                    Value::Null => return Ok(Value::Null),
                    Value::String(s) if s.is_empty() => return Ok(Value::Null),
                    Value::String(s) => s.clone(),
                    _ => return Err(mismatch("string")),
                };
                if self.picklist_values(*list).contains(&text) {
                    Ok(Value::String(text))
                } else {
                    Err(ApiError::fields(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!(
                            "{}: bad value for restricted picklist field: {text}",
                            field.label
                        ),
                        &[name],
                    ))
                }
            }
            Kind::Reference(target) => {
                let text = match value {
                    Value::Null => return Ok(Value::Null),
                    Value::String(s) if s.is_empty() => return Ok(Value::Null),
                    Value::String(s) => s.clone(),
                    _ => return Err(mismatch("string")),
                };
                let incorrect = |code: &str| {
                    ApiError::fields(
                        code,
                        format!("{}: id value of incorrect type: {text}", field.label),
                        &[name],
                    )
                };
                let id = ids::normalize(&text).ok_or_else(|| incorrect("MALFORMED_ID"))?;
                if !id.starts_with(target.key_prefix()) {
                    return Err(incorrect("FIELD_INTEGRITY_EXCEPTION"));
                }
                if self.get(*target, &id).is_none() {
                    return Err(ApiError::fields(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &[name],
                    ));
                }
                Ok(Value::String(id))
            }
            // Read-only kinds never get here (refused as not createable).
            Kind::Id | Kind::DateTime | Kind::AutoNumber => Err(mismatch("string")),
        }
    }

    pub(crate) fn picklist_values(&self, list: Picklist) -> &[String] {
        match list {
            Picklist::Status => &self.config.status_values,
            Picklist::Priority => &self.config.priority_values,
            Picklist::Origin => &self.config.origin_values,
        }
    }

    fn create(
        &mut self,
        object: Object,
        changes: Vec<(String, Value)>,
        writer: &Writer,
        now_ms: i64,
    ) -> String {
        let id = self.next_id(object);
        let seq = self.next_seq();
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        values.insert("Id".into(), json!(id));
        values.insert("CreatedDate".into(), json!(now_ms));
        values.insert("CreatedById".into(), json!(writer.user_id));
        values.insert("IsDeleted".into(), json!(false));
        match object {
            Object::Case => {
                self.case_number += 1;
                values.insert(
                    "CaseNumber".into(),
                    json!(format!("{:08}", self.case_number)),
                );
                values.insert("Status".into(), json!(self.config.default_status));
                values.insert(
                    "Priority".into(),
                    self.config
                        .default_priority
                        .as_ref()
                        .map_or(Value::Null, |p| json!(p)),
                );
                values.insert("OwnerId".into(), json!(writer.user_id));
                values.insert("IsClosed".into(), json!(false));
                values.insert("ClosedDate".into(), Value::Null);
            }
            Object::Contact => {
                values.insert("OwnerId".into(), json!(writer.user_id));
            }
            Object::CaseComment => {
                values.insert("IsPublished".into(), json!(false));
            }
            Object::User => {}
        }
        self.records.insert(
            id.clone(),
            Record {
                object,
                id: id.clone(),
                seq,
                values,
                deleted: false,
                created_client: writer.client.clone(),
                modified_client: None,
            },
        );
        let fields = self.write(&id, changes, writer, now_ms);
        self.event(object, &id, "CREATE", fields, writer, now_ms);
        self.after_write(&id, writer, now_ms);
        id
    }

    fn modify(&mut self, id: &str, changes: Vec<(String, Value)>, writer: &Writer, now_ms: i64) {
        let fields = self.write(id, changes, writer, now_ms);
        if let Some(object) = self.records.get(id).map(|r| r.object) {
            self.event(object, id, "UPDATE", fields, writer, now_ms);
        }
        self.after_write(id, writer, now_ms);
    }

    /// Stores the values and the derived and audit fields; returns the changed field names.
    fn write(
        &mut self,
        id: &str,
        changes: Vec<(String, Value)>,
        writer: &Writer,
        now_ms: i64,
    ) -> Vec<String> {
        let closed_statuses = self.config.closed_statuses.clone();
        if let Some(record) = self.records.get(id) {
            // Move the external id index entries of the fields that change.
            let (object, seq) = (record.object, record.seq);
            let moves: Vec<(String, Option<String>, Option<String>)> = changes
                .iter()
                .filter(|(name, _)| {
                    self.schema
                        .field(object, name)
                        .is_some_and(|f| f.external_id)
                })
                .map(|(name, value)| {
                    let lower = |v: Option<&str>| v.map(str::to_ascii_lowercase);
                    (
                        name.to_ascii_lowercase(),
                        lower(record.text(name)),
                        lower(value.as_str()),
                    )
                })
                .collect();
            for (field, old, new) in moves {
                if let Some(old) = old {
                    let key = (object, field.clone(), old);
                    if let Some(ids) = self.external_ids.get_mut(&key) {
                        ids.remove(&seq);
                        if ids.is_empty() {
                            self.external_ids.remove(&key);
                        }
                    }
                }
                if let Some(new) = new {
                    self.external_ids
                        .entry((object, field, new))
                        .or_default()
                        .insert(seq, id.to_owned());
                }
            }
        }
        let Some(record) = self.records.get_mut(id) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for (name, value) in changes {
            if record.value(&name) != &value {
                changed.push(name.clone());
            }
            record.values.insert(name, value);
        }
        match record.object {
            Object::Case => {
                let closed = record
                    .text("Status")
                    .is_some_and(|s| closed_statuses.iter().any(|c| c == s));
                let was_closed = record.value("IsClosed") == &Value::Bool(true);
                if closed != was_closed {
                    record.values.insert("IsClosed".into(), json!(closed));
                    let date = if closed { json!(now_ms) } else { Value::Null };
                    record.values.insert("ClosedDate".into(), date);
                    changed.push("IsClosed".into());
                }
            }
            Object::Contact => {
                let name = [record.text("FirstName"), record.text("LastName")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                record.values.insert("Name".into(), json!(name));
            }
            _ => {}
        }
        record
            .values
            .insert("LastModifiedDate".into(), json!(now_ms));
        record
            .values
            .insert("LastModifiedById".into(), json!(writer.user_id));
        record.values.insert("SystemModstamp".into(), json!(now_ms));
        record.modified_client = writer.client.clone();
        changed
    }

    /// Side effects of a write: a Case's `Comments` becomes a private CaseComment.
    fn after_write(&mut self, id: &str, writer: &Writer, now_ms: i64) {
        let Some(record) = self.records.get_mut(id) else {
            return;
        };
        if record.object != Object::Case {
            return;
        }
        let Some(Value::String(text)) = record.values.remove("Comments") else {
            return;
        };
        let comment = vec![
            ("ParentId".to_string(), json!(id)),
            ("CommentBody".to_string(), json!(text)),
            ("IsPublished".to_string(), json!(false)),
        ];
        self.create(Object::CaseComment, comment, writer, now_ms);
    }

    /// Appends a change event as Change Data Capture would publish it.
    fn event(
        &mut self,
        object: Object,
        id: &str,
        change_type: &str,
        changed_fields: Vec<String>,
        writer: &Writer,
        now_ms: i64,
    ) {
        let origin = match &writer.client {
            Some(client) => format!(
                "com/salesforce/api/rest/{};client={client}",
                writer.api_version
            ),
            None => String::new(),
        };
        let sequence = self.events.len() + 1;
        let mut event = Map::new();
        event.insert(
            "ChangeEventHeader".into(),
            json!({
                "entityName": object.name(),
                "recordIds": [id],
                "changeType": change_type,
                "changedFields": changed_fields,
                "commitTimestamp": now_ms,
                "commitUser": writer.user_id,
                "commitNumber": sequence,
                "sequenceNumber": 1,
                "transactionKey": format!("{:016x}-{sequence}", now_ms),
                "changeOrigin": origin,
            }),
        );
        if let Some(record) = self.records.get(id) {
            for name in &changed_fields {
                if let Some(field) = self.schema.field(object, name) {
                    event.insert(name.clone(), Self::field_json(field, record.value(name)));
                }
            }
        }
        self.events.push(Value::Object(event));
    }

    /// getUpdated / getDeleted: ids changed (or deleted) in `[start, end)`.
    pub(crate) fn changed_between(
        &self,
        object: Object,
        start_ms: i64,
        end_ms: i64,
        deleted: bool,
    ) -> Vec<(String, i64)> {
        self.list(object, true)
            .into_iter()
            .filter(|r| r.deleted == deleted)
            .filter_map(|r| Some((r.id.clone(), r.ms("SystemModstamp")?)))
            .filter(|(_, at)| (start_ms..end_ms).contains(at))
            .collect()
    }
}

/// Users are managed in Setup, not through this API.
fn writable_object(object: Object) -> Result<(), ApiError> {
    if object == Object::User {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
        ));
    }
    Ok(())
}
