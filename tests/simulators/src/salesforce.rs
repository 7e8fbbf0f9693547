//! Salesforce Service Cloud simulator: the OAuth 2.0 endpoints and the REST API a
//! Case-based helpdesk connector uses.
//!
//! - **OAuth** (`/services/oauth2/*`): `token` for `authorization_code` (PKCE S256 checked),
//!   `refresh_token` (rotation optional; a revoked token gives 400 `invalid_grant` "expired
//!   access/refresh token"), `urn:ietf:params:oauth:grant-type:jwt-bearer` (RS256, checked
//!   against [`Config::jwt_certificate_pem`], `iss` = consumer key, `sub` = username, `aud` =
//!   login URL, `exp` at most 3 minutes ahead) and `client_credentials`; `revoke`; `userinfo`.
//!   Token answers carry `access_token`, `instance_url`, `id` (the identity URL, served here as
//!   `GET /id/{org}/{user}`), `token_type`, `issued_at`,
//!   `signature` (HMAC-SHA256 of `id` + `issued_at` with the consumer secret), `scope`, and a
//!   `refresh_token` for the code flow with the `refresh_token` scope. **Simplification:**
//!   `GET /services/oauth2/authorize` shows no login page; it approves as the integration user
//!   at once and redirects to `redirect_uri` with `code` and `state`.
//! - **REST** under `/services/data/vNN.N/` (any version from 20.0): sObjects `Case`,
//!   `Contact`, `CaseComment` (and read-only `User`): create, read (`?fields=`), update,
//!   delete, upsert by external id (`PATCH /sobjects/{object}/{field}/{value}`: 201 created,
//!   200 `created:false` from v46.0, 204 before, 300 with the matching URLs when several
//!   records match, `?updateOnly=true`), `describe`, getUpdated/getDeleted; SOQL `query` and
//!   `queryAll` (subset in [`soql`]) with `nextRecordsUrl` batches (`Sforce-Query-Options:
//!   batchSize=`); `limits`. Field rules: restricted picklists (Status, Priority, Origin from
//!   the config), required fields, lengths (CommentBody ≤ 4000 bytes), lookups, unique
//!   external ids. Errors are always the JSON array `[{"message","errorCode","fields"?}]`.
//! - **Sessions**: access tokens expire after [`Config::access_token_lifetime`] (simulator
//!   clock) or when revoked; then every call answers 401 `INVALID_SESSION_ID`.
//! - **Limits**: every REST answer with a valid session carries `Sforce-Limit-Info:
//!   api-usage=N/M`; past the daily allocation, 403 `REQUEST_LIMIT_EXCEEDED` with no
//!   Retry-After. The allocation is the kit's fault budget ([`crate::kit::faults`]) over 24 h, set
//!   from [`Config::daily_api_limit`]; its window runs on real time. `DELETE /_control/faults`
//!   lifts it (the header keeps counting against the configured figure).
//! - **Echoes**: every write records `LastModifiedById` (the integration user for API calls)
//!   and the `client=` of `Sforce-Call-Options` in a change-event log shaped like Change Data
//!   Capture (`changeOrigin: com/salesforce/api/rest/60.0;client=...`).
//!
//! Control API (unauthenticated, same shape as the Zendesk simulator's):
//!
//! | Route | Effect |
//! |---|---|
//! | `POST /_control/tickets/{id}/agent_reply` `{"body","public","status"?}` | the human agent adds a CaseComment (`IsPublished` = public), then sets the status if given; answers `{"comment_id"}` |
//! | `POST /_control/tickets/{id}/status` `{"status"}` | the agent sets Status: `new`, `open`, `pending`, `on-hold`, `solved`, `closed` (mapped with [`Config::control_status_map`]) or a picklist value |
//! | `GET /_control/tickets` | every Case with its `comments`, plus lower-case `id`, `subject`, `status` (and `body`, `public`, `author_id` on comments) and the `Sforce-Call-Options` client of the writes (`created_by_client`, `last_modified_by_client`) |
//! | `GET /_control/contacts` | every Contact |
//! | `GET /_control/change_events` | the change-event log, oldest first |
//! | `POST /_control/tokens` | a fresh access (and refresh) token for the integration user |
//! | `POST /_control/tokens/revoke` `{"token"?}` | revokes that token, or every access token |
//! | `GET`/`POST /_control/config` | reads or patches runtime settings |
//! | `/_control/faults`, `/_control/rate-limit`, `/_control/clock…`, `/_control/state` | the kit's, see [`crate::kit::control`] (`{"limit","window_secs":86400}` for a daily allocation) |
//!
//! Injected faults answer in the REST API's shape on `/services/data`, and in the OAuth error
//! shape on the OAuth endpoints (a `rate_limited` fault there is 400 `invalid_grant` "login
//! rate exceeded").

mod api;
mod error;
mod ids;
mod oauth;
mod schema;
pub mod soql;
mod store;
pub mod test_keys;
mod time;

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::kit::control::{AgentReply, ControlError, Helpdesk};
use schema::Object;
use store::{Store, Writer};

/// An external id field the org has defined (`Switchboard_External_Id__c` on Case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdField {
    /// `Case` or `Contact`.
    pub object: String,
    pub field: String,
    /// Unique fields refuse a second record with the same value (`DUPLICATE_VALUE`); with
    /// non-unique ones an upsert can match several records (300).
    pub unique: bool,
}

impl ExternalIdField {
    pub fn new(object: &str, field: &str, unique: bool) -> Self {
        Self {
            object: object.into(),
            field: field.into(),
            unique,
        }
    }
}

/// The default external id field on Contact and Case.
pub const DEFAULT_EXTERNAL_ID_FIELD: &str = "Switchboard_External_Id__c";

/// Org and connected-app settings. [`Config::default`] follows Salesforce's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The 18-character org id (`00D...`).
    pub org_id: String,
    /// The login host the connected app is registered with, accepted as JWT audience.
    /// Identity URLs (`id` of token answers) point at the simulator itself instead.
    pub login_url: String,
    /// `instance_url` of token answers; `None`: the URL the request came to.
    pub instance_url: Option<String>,
    /// The connected app's consumer key (`client_id`) and secret.
    pub consumer_key: String,
    pub consumer_secret: String,
    /// "Require Secret for Web Server Flow" / "for Refresh Token Flow".
    pub require_client_secret: bool,
    /// Allowed callback URLs; empty accepts any `redirect_uri`.
    pub callback_urls: Vec<String>,
    /// Scopes the app may grant.
    pub allowed_scopes: Vec<String>,
    /// The certificate (or public key) PEM uploaded for the JWT bearer flow. Defaults to
    /// [`test_keys::CERTIFICATE_PEM`].
    pub jwt_certificate_pem: Option<String>,
    /// JWT audiences accepted besides `login_url` and the URL the request came to.
    pub jwt_audiences: Vec<String>,
    /// Whether the client credentials flow is on (it runs as the integration user).
    pub client_credentials_enabled: bool,
    /// The API user the hub connects as.
    pub integration_username: String,
    pub integration_user_name: String,
    /// A human agent working cases in the UI (the control API's author).
    pub agent_username: String,
    pub agent_name: String,
    /// Access tokens expire this long after they are issued (Salesforce: the session timeout).
    pub access_token_lifetime: Duration,
    /// Each refresh returns a new refresh token and revokes the old one.
    pub rotate_refresh_tokens: bool,
    /// Daily API requests (rolling 24 h); `None` is unlimited (headers show 100000).
    pub daily_api_limit: Option<u32>,
    /// Case Status picklist; restricted.
    pub status_values: Vec<String>,
    /// Statuses with `IsClosed` (CaseStatus).
    pub closed_statuses: Vec<String>,
    pub default_status: String,
    pub priority_values: Vec<String>,
    pub default_priority: Option<String>,
    pub origin_values: Vec<String>,
    /// Canonical status names (`open`, `solved`, ...) the control API maps to picklist values.
    pub control_status_map: Vec<(String, String)>,
    pub external_id_fields: Vec<ExternalIdField>,
    /// Rows per query batch without `Sforce-Query-Options` (Salesforce: 2000).
    pub query_batch_size: usize,
    /// Bounds of `batchSize` (Salesforce: 200 to 2000); tests lower them to page small sets.
    pub min_batch_size: usize,
    pub max_batch_size: usize,
    /// An unused query locator expires after this long (Salesforce: 15 minutes).
    pub query_locator_ttl: Duration,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            org_id: "00D5g000004SIMxEAG".into(),
            login_url: "https://login.salesforce.com".into(),
            instance_url: None,
            consumer_key: "3MVG9simulatedConsumerKey.switchboard".into(),
            consumer_secret: "sim-consumer-secret".into(),
            require_client_secret: true,
            callback_urls: Vec::new(),
            allowed_scopes: strings(&[
                "api",
                "refresh_token",
                "offline_access",
                "id",
                "openid",
                "web",
                "full",
            ]),
            jwt_certificate_pem: Some(test_keys::CERTIFICATE_PEM.to_string()),
            jwt_audiences: strings(&[
                "https://login.salesforce.com",
                "https://test.salesforce.com",
            ]),
            client_credentials_enabled: true,
            integration_username: "integration@switchboard.example".into(),
            integration_user_name: "Switchboard Integration".into(),
            agent_username: "hana.agent@switchboard.example".into(),
            agent_name: "Hana Agent".into(),
            access_token_lifetime: Duration::from_secs(2 * 60 * 60),
            rotate_refresh_tokens: false,
            daily_api_limit: Some(100_000),
            status_values: strings(&["New", "Working", "Escalated", "Closed"]),
            closed_statuses: strings(&["Closed"]),
            default_status: "New".into(),
            priority_values: strings(&["High", "Medium", "Low"]),
            default_priority: Some("Medium".into()),
            origin_values: strings(&["Phone", "Email", "Web"]),
            control_status_map: [
                ("new", "New"),
                ("open", "Working"),
                ("pending", "Escalated"),
                ("on-hold", "Escalated"),
                ("hold", "Escalated"),
                ("solved", "Closed"),
                ("closed", "Closed"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            external_id_fields: vec![
                ExternalIdField::new("Contact", DEFAULT_EXTERNAL_ID_FIELD, true),
                ExternalIdField::new("Case", DEFAULT_EXTERNAL_ID_FIELD, true),
            ],
            query_batch_size: 2000,
            min_batch_size: 200,
            max_batch_size: 2000,
            query_locator_ttl: Duration::from_secs(15 * 60),
        }
    }
}

// External id fields are read at start only; `update_config` changes the rest.
crate::kit::account_simulator! {
    /// An in-memory Salesforce org behind an axum router. Cloning shares the org.
    name: "salesforce", budget: |c| c.daily_api_limit, window: DAY,
    extra: {},
}

/// The API version the direct accessors render URLs with.
const ACCESSOR_VERSION: &str = "60.0";

/// The window of the daily API allocation.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Simulator {
    /// A fresh org with two users: the integration user and a human agent.
    pub fn new(config: Config) -> Self {
        Self::start(config, |config, base| {
            Store::new(config, base.clock.now_ms())
        })
    }

    /// Every Case, as `GET /sobjects/Case/{id}` shows it, oldest first.
    pub fn tickets(&self) -> Vec<Value> {
        self.records(Object::Case)
    }

    /// Every Contact, oldest first.
    pub fn contacts(&self) -> Vec<Value> {
        self.records(Object::Contact)
    }

    /// The CaseComments of a case, oldest first; empty for an unknown case.
    pub fn comments(&self, case_id: &str) -> Vec<Value> {
        let store = self.store();
        let Some(case) = store.get(Object::Case, case_id) else {
            return Vec::new();
        };
        store
            .list(Object::CaseComment, false)
            .into_iter()
            .filter(|c| c.text("ParentId") == Some(case.id.as_str()))
            .map(|c| store.render(c, ACCESSOR_VERSION, None))
            .collect()
    }

    fn records(&self, object: Object) -> Vec<Value> {
        let store = self.store();
        store
            .list(object, false)
            .into_iter()
            .map(|r| store.render(r, ACCESSOR_VERSION, None))
            .collect()
    }

    /// The change-event log (CDC-shaped), oldest first.
    pub fn change_events(&self) -> Vec<Value> {
        self.store().events.clone()
    }

    /// The id of the user API tokens act as.
    pub fn integration_user_id(&self) -> String {
        self.store().integration_user_id.clone()
    }

    /// The id of the human agent behind [`Self::agent_reply`] and [`Self::set_status`].
    pub fn human_agent_id(&self) -> String {
        self.store().human_agent_id.clone()
    }

    /// An access token for the integration user, as a finished OAuth flow would give
    /// (it expires after [`Config::access_token_lifetime`]).
    pub fn issue_access_token(&self) -> String {
        let now = self.now_ms();
        let mut store = self.store();
        let lifetime = i64::try_from(store.config.access_token_lifetime.as_millis()).ok();
        let org = store.config.org_id.clone();
        let user = store.integration_user_id.clone();
        store.oauth.issue_access(&org, &user, now, lifetime, None)
    }

    /// Revokes every access token: the next REST call answers 401 `INVALID_SESSION_ID`.
    /// Returns how many were revoked.
    pub fn revoke_access_tokens(&self) -> usize {
        self.store().oauth.revoke_all_access()
    }

    /// Revokes one access or refresh token; false when it is unknown.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.store().oauth.revoke(token) > 0
    }

    /// The human agent answers on a case: a CaseComment, published to the customer when
    /// `public`. Returns the comment id.
    ///
    /// # Panics
    /// When the case does not exist (a test bug, not an API outcome).
    pub fn agent_reply(&self, case_id: &str, body: &str, public: bool) -> String {
        match self.try_agent_reply(case_id, body, public) {
            Ok(id) => id,
            Err(e) => panic!("agent_reply on case {case_id}: {}", e.body),
        }
    }

    /// The human agent sets a case's status: a canonical name (`solved`) or a picklist value.
    ///
    /// # Panics
    /// When the case does not exist or the status is unknown.
    pub fn set_status(&self, case_id: &str, status: &str) {
        if let Err(e) = self.try_set_status(case_id, status) {
            panic!("set_status on case {case_id}: {}", e.body);
        }
    }

    // ----- internals shared with the HTTP layer --------------------------------------------

    /// This simulator's own base URL as the client reached it (identity URLs point here).
    fn own_url(&self, headers: &HeaderMap) -> String {
        self.inner
            .base
            .origin(headers)
            .unwrap_or_else(|| "http://localhost".into())
    }

    /// `instance_url` for token answers.
    fn instance_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.store().config.instance_url {
            return url.clone();
        }
        self.own_url(headers)
    }

    fn agent_writer(store: &Store) -> Writer {
        Writer {
            user_id: store.human_agent_id.clone(),
            client: None,
            api_version: ACCESSOR_VERSION.into(),
        }
    }

    fn try_agent_reply(
        &self,
        case_id: &str,
        body: &str,
        public: bool,
    ) -> Result<String, error::ApiError> {
        let now = self.now_ms();
        let mut store = self.store();
        let case_id = store
            .get(Object::Case, case_id)
            .map(|c| c.id.clone())
            .ok_or_else(error::ApiError::not_found)?;
        let writer = Self::agent_writer(&store);
        let mut fields = serde_json::Map::new();
        fields.insert("ParentId".into(), Value::String(case_id));
        fields.insert("CommentBody".into(), Value::String(body.to_string()));
        fields.insert("IsPublished".into(), Value::Bool(public));
        store.insert(Object::CaseComment, &fields, &writer, now)
    }

    fn try_set_status(&self, case_id: &str, status: &str) -> Result<(), error::ApiError> {
        let now = self.now_ms();
        let mut store = self.store();
        let value = store
            .config
            .control_status_map
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(status))
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| status.to_string());
        let writer = Self::agent_writer(&store);
        let mut fields = serde_json::Map::new();
        fields.insert("Status".into(), Value::String(value));
        store.update(Object::Case, case_id, &fields, &writer, now)?;
        Ok(())
    }
}

impl Simulator {
    /// What `GET /_control/state` shows.
    fn counts(&self) -> Value {
        let store = self.store();
        json!({
            "cases": store.list(Object::Case, false).len(),
            "contacts": store.list(Object::Contact, false).len(),
            "case_comments": store.list(Object::CaseComment, false).len(),
            "change_events": store.events.len(),
        })
    }
}

impl From<error::ApiError> for ControlError {
    fn from(e: error::ApiError) -> Self {
        ControlError::vendor(e.status, Some(e.body))
    }
}

impl Helpdesk for Simulator {
    fn control_tickets(&self, _headers: &HeaderMap) -> Vec<Value> {
        let store = self.store();
        store
            .list(Object::Case, false)
            .into_iter()
            .map(|c| api::control_ticket_json(&store, c))
            .collect()
    }

    fn control_agent_reply(&self, ticket: &str, reply: AgentReply) -> Result<Value, ControlError> {
        let comment_id = self.try_agent_reply(ticket, &reply.body, reply.public)?;
        if let Some(status) = &reply.status {
            self.try_set_status(ticket, status)?;
        }
        Ok(json!(comment_id))
    }

    fn control_set_status(&self, ticket: &str, status: &str) -> Result<Value, ControlError> {
        self.try_set_status(ticket, status)?;
        let store = self.store();
        let case = store
            .get(Object::Case, ticket)
            .ok_or_else(|| ControlError::not_found(format!("no case `{ticket}`")))?;
        Ok(api::control_ticket_json(&store, case))
    }
}
