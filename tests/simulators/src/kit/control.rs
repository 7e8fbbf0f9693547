//! The control API convention: how tests drive every simulator over HTTP.
//!
//! - **Prefix**: everything lives under `/_control/`, beside the vendor's own paths, and needs
//!   no credentials.
//! - **Verbs**: `GET` reads, `POST` acts (inject, advance, reply) or patches settings,
//!   `DELETE` clears.
//! - **Bodies**: JSON objects; an empty body reads as `{}`.
//! - **Answers**: `200` with a JSON object when there is something to tell, `204` otherwise;
//!   a refusal is [`ControlError`]: `{"error": "<what and where>"}` with `400` (bad input),
//!   `404` (no such thing) or the vendor's status when the vendor refused the change, plus
//!   `"details"` with the vendor's own error body when there is one.
//!
//! [`routes`] mounts what every simulator has:
//!
//! | Route | Does |
//! |---|---|
//! | `POST /_control/faults` (a [`FaultSpec`]) | queues a fault → 204 |
//! | `GET /_control/faults` | `{"pending": [FaultSpec…], "budget": {"limit","window_secs"} \| null}` |
//! | `DELETE /_control/faults` | drops queued faults and lifts the budget → 204 |
//! | `POST /_control/rate-limit` `{"limit","window_secs"?}` | request budget per window (default 60 s); `"limit": null` lifts it → 204 |
//! | `GET /_control/clock` | `{"now","now_ms","offset_secs","frozen"}` (`now`: Unix seconds) |
//! | `POST /_control/clock/advance` `{"secs"}` | moves the clock forward → the clock as above |
//! | `POST /_control/clock/freeze` | stops the clock until advanced → the clock |
//! | `GET /_control/state` | the simulator's [`Simulated::control_state`] plus `clock` and `faults` |
//! | `GET /_control/config` | the runtime settings ([`Simulated::control_config`]) |
//! | `POST /_control/config` (a [`Patch`]) | changes the settings named ([`Simulated::patch_config`]); an unknown key is a 400 → the settings |
//!
//! [`helpdesk_routes`] adds the agent's side that every helpdesk simulator shares
//! ([`Helpdesk`]): `GET /_control/tickets`, `POST /_control/tickets/{id}/agent_reply`
//! `{"body","public"?,"status"?}` → `{"comment_id"}`, and `POST /_control/tickets/{id}/status`
//! `{"status"}` → `{"ticket"}`. Vendor-specific routes (Telegram's `/_control/messages`,
//! Freshdesk's `/_control/automations`…) follow the same convention, using [`json_body`] and
//! [`ControlError`].

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::faults::FaultSpec;
use super::{Base, Simulated};

/// A refused control request: `{"error": message, "details"?: vendor body}` with `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlError {
    pub status: StatusCode,
    pub message: String,
    /// The vendor's own error body, when the vendor's rules refused the change.
    pub details: Option<Value>,
}

impl ControlError {
    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// The vendor refused: its status, a summary, and its body as `details`.
    pub fn vendor(status: StatusCode, body: Option<Value>) -> Self {
        let message = match &body {
            Some(body) => format!("the simulated vendor refused ({status}): {body}"),
            None => format!("the simulated vendor refused ({status})"),
        };
        Self {
            status,
            message,
            details: body,
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ControlError {}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (self.status, Json(body)).into_response()
    }
}

/// Reads a control body: JSON of type `T`, an empty (or blank) body as `{}`. A 400 names what
/// was wrong.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_value(json!({}))
    } else {
        serde_json::from_slice(body)
    };
    parsed.map_err(|e| ControlError::bad_request(format!("control request body: {e}")))
}

/// A `POST /_control/config` body: the settings to change, by name. Absent keys stay as they
/// are; a value of the wrong type is a 400 naming the key, never ignored.
#[derive(Debug, Clone)]
pub struct Patch(Map<String, Value>);

impl Patch {
    /// Reads the body: a JSON object (an empty body changes nothing).
    pub fn parse(body: &Bytes) -> Result<Self, ControlError> {
        json_body(body).map(Self)
    }

    fn wrong(key: &str, expected: &str) -> ControlError {
        ControlError::bad_request(format!("config `{key}` must be {expected}"))
    }

    /// Whether the patch names `key`.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// A setting that may be lifted: absent → `None`, `null` → `Some(None)`, a whole number →
    /// `Some(Some(n))`.
    pub fn nullable(&self, key: &str) -> Result<Option<Option<u64>>, ControlError> {
        self.read(key, "a whole number or null", |v| match v {
            Value::Null => Some(None),
            _ => v.as_u64().map(Some),
        })
    }

    /// A request limit that may be lifted, as [`Patch::nullable`], capped at `u32::MAX`.
    pub fn limit(&self, key: &str) -> Result<Option<Option<u32>>, ControlError> {
        Ok(self
            .nullable(key)?
            .map(|v| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX))))
    }

    /// The value of `key` as `read` takes it: absent → `None`, unreadable → 400 naming
    /// `expected`.
    fn read<T>(
        &self,
        key: &str,
        expected: &str,
        read: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Option<T>, ControlError> {
        self.0
            .get(key)
            .map(|v| read(v).ok_or_else(|| Self::wrong(key, expected)))
            .transpose()
    }

    /// A whole number: absent → `None`.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ControlError> {
        self.read(key, "a whole number", Value::as_u64)
    }

    /// `true` or `false`: absent → `None`.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ControlError> {
        self.read(key, "true or false", Value::as_bool)
    }

    /// A list of strings: absent → `None`.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ControlError> {
        self.read(key, "a list of strings", |v| {
            v.as_array().and_then(|items| super::json::strings(items))
        })
    }
}

/// Writes a setting a [`Patch`] read into its slot: `Some` (the patch named it) replaces the
/// value, `None` keeps it. Read every key first, then set them all in one
/// `update_config`, so a bad key changes nothing.
pub fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// The routes every simulator has (see the module docs). Merge them into the simulator's
/// router before `with_state`.
pub fn routes<S: Simulated>() -> Router<S> {
    Router::new()
        .route(
            "/_control/faults",
            get(show_faults::<S>)
                .post(inject_fault::<S>)
                .delete(clear_faults::<S>),
        )
        .route("/_control/rate-limit", post(set_rate_limit::<S>))
        .route("/_control/clock", get(show_clock::<S>))
        .route("/_control/clock/advance", post(advance_clock::<S>))
        .route("/_control/clock/freeze", post(freeze_clock::<S>))
        .route("/_control/state", get(show_state::<S>))
        .route(
            "/_control/config",
            get(show_config::<S>).post(change_config::<S>),
        )
}

async fn show_config<S: Simulated>(State(sim): State<S>) -> Json<Value> {
    Json(sim.control_config())
}

async fn change_config<S: Simulated>(
    State(sim): State<S>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let patch = Patch::parse(&body)?;
    let known = sim.control_config();
    if let Some(unknown) = patch.0.keys().find(|key| known.get(key.as_str()).is_none()) {
        let names: Vec<&String> = known
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        return Err(ControlError::bad_request(format!(
            "no setting `{unknown}`: the settings are {names:?}"
        )));
    }
    sim.patch_config(&patch)?;
    Ok(Json(sim.control_config()))
}

async fn show_faults<S: Simulated>(State(sim): State<S>) -> Json<Value> {
    Json(faults_json(sim.base()))
}

fn faults_json(base: &Base) -> Value {
    let faults = base.faults();
    let budget = faults
        .budget()
        .map(|(limit, window)| json!({"limit": limit, "window_secs": window.as_secs()}));
    json!({"pending": faults.pending(), "budget": budget})
}

async fn inject_fault<S: Simulated>(
    State(sim): State<S>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let spec: FaultSpec = json_body(&body)?;
    if spec.count == 0 {
        return Err(ControlError::bad_request(
            "count must be at least 1: a fault for no request is a test bug",
        ));
    }
    sim.base().faults().inject(spec);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults<S: Simulated>(State(sim): State<S>) -> StatusCode {
    sim.base().faults().clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RateLimit {
    /// Requests per window; absent or null removes the limit.
    limit: Option<u32>,
    #[serde(default = "sixty")]
    window_secs: u64,
}

fn sixty() -> u64 {
    60
}

async fn set_rate_limit<S: Simulated>(
    State(sim): State<S>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let spec: RateLimit = json_body(&body)?;
    if spec.window_secs == 0 {
        return Err(ControlError::bad_request("window_secs must be at least 1"));
    }
    sim.base()
        .faults()
        .set_budget(spec.limit, Duration::from_secs(spec.window_secs));
    Ok(StatusCode::NO_CONTENT)
}

fn clock_json(base: &Base) -> Value {
    let clock = &base.clock;
    json!({
        "now": clock.now_secs(),
        "now_ms": clock.now_ms(),
        "offset_secs": clock.offset_secs(),
        "frozen": clock.is_frozen(),
    })
}

async fn show_clock<S: Simulated>(State(sim): State<S>) -> Json<Value> {
    Json(clock_json(sim.base()))
}

#[derive(Deserialize)]
struct Advance {
    secs: u64,
}

async fn advance_clock<S: Simulated>(
    State(sim): State<S>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let advance: Advance = json_body(&body)?;
    sim.advance_clock(Duration::from_secs(advance.secs));
    Ok(Json(clock_json(sim.base())))
}

async fn freeze_clock<S: Simulated>(State(sim): State<S>) -> Json<Value> {
    sim.base().clock.freeze();
    Json(clock_json(sim.base()))
}

async fn show_state<S: Simulated>(State(sim): State<S>) -> Json<Value> {
    let mut state = match sim.control_state() {
        Value::Object(map) => Value::Object(map),
        other => json!({ "simulator": other }),
    };
    state["clock"] = clock_json(sim.base());
    state["faults"] = faults_json(sim.base());
    Json(state)
}

/// The agent's side of a helpdesk, behind [`helpdesk_routes`]. Ticket ids arrive as text, as
/// in the path; each simulator parses its own.
pub trait Helpdesk: Simulated {
    /// Every ticket, each with its `comments`, for `GET /_control/tickets`. `headers` are the
    /// request's, for URLs that point back at the simulator.
    fn control_tickets(&self, headers: &HeaderMap) -> Vec<Value>;

    /// The human agent answers: a public reply or an internal note, then the status when one
    /// is given. Returns the new comment's id.
    fn control_agent_reply(&self, ticket: &str, reply: AgentReply) -> Result<Value, ControlError>;

    /// The human agent sets the status (Zendesk's names work everywhere; a vendor may accept
    /// its own values too). Returns the ticket as `GET /_control/tickets` shows it.
    fn control_set_status(&self, ticket: &str, status: &str) -> Result<Value, ControlError>;
}

/// `POST /_control/tickets/{id}/agent_reply`.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentReply {
    pub body: String,
    /// A reply the customer sees (default), or an internal note.
    #[serde(default = "yes")]
    pub public: bool,
    /// A status to set along with the reply.
    #[serde(default)]
    pub status: Option<String>,
}

fn yes() -> bool {
    true
}

/// The [`Helpdesk`] routes (see the module docs).
pub fn helpdesk_routes<S: Helpdesk>() -> Router<S> {
    Router::new()
        .route("/_control/tickets", get(tickets::<S>))
        .route("/_control/tickets/{id}/agent_reply", post(agent_reply::<S>))
        .route("/_control/tickets/{id}/status", post(set_status::<S>))
}

async fn tickets<S: Helpdesk>(State(sim): State<S>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"tickets": sim.control_tickets(&headers)}))
}

async fn agent_reply<S: Helpdesk>(
    State(sim): State<S>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let reply: AgentReply = json_body(&body)?;
    if reply.body.trim().is_empty() {
        return Err(ControlError::bad_request("body must not be blank"));
    }
    let comment_id = sim.control_agent_reply(&id, reply)?;
    Ok(Json(json!({"comment_id": comment_id})))
}

async fn set_status<S: Helpdesk>(
    State(sim): State<S>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let value: Value = json_body(&body)?;
    // A number is a vendor's own status id (Freshdesk's 2–5).
    let status = match value.get("status") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ControlError::bad_request("status is required")),
    };
    let ticket = sim.control_set_status(&id, &status)?;
    Ok(Json(json!({"ticket": ticket})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use crate::kit::{lock, Fault};

    /// A simulator with one setting, `speed`.
    #[derive(Clone, Default)]
    struct Toy {
        base: Arc<Base>,
        speed: Arc<Mutex<u64>>,
    }

    impl Simulated for Toy {
        fn base(&self) -> &Base {
            &self.base
        }

        fn control_state(&self) -> Value {
            json!({"widgets": 3})
        }

        fn control_config(&self) -> Value {
            json!({"speed": *lock(&self.speed)})
        }

        fn patch_config(&self, patch: &Patch) -> Result<(), ControlError> {
            if let Some(speed) = patch.number("speed")? {
                *lock(&self.speed) = speed;
            }
            Ok(())
        }
    }

    async fn call(toy: &Toy, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = routes()
            .with_state(toy.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn config_patches_known_settings_and_names_an_unknown_one() {
        let toy = Toy::default();
        let (status, config) = call(&toy, Method::POST, "/_control/config", r#"{"speed":3}"#).await;
        assert_eq!((status, config), (StatusCode::OK, json!({"speed": 3})));
        let (status, refused) = call(&toy, Method::POST, "/_control/config", r#"{"sped":4}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("`sped`")),
            "{refused}"
        );
        let (status, refused) =
            call(&toy, Method::POST, "/_control/config", r#"{"speed":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(*lock(&toy.speed), 3, "a refused patch changes nothing");
    }

    #[tokio::test]
    async fn faults_clock_and_state_follow_the_convention() {
        let toy = Toy::default();
        let drop = r#"{"kind":"drop","path":"/x"}"#;
        assert_eq!(
            call(&toy, Method::POST, "/_control/faults", drop).await.0,
            StatusCode::NO_CONTENT
        );
        let none = r#"{"kind":"drop","count":0}"#;
        let (status, refused) = call(&toy, Method::POST, "/_control/faults", none).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(refused["error"].is_string());
        let (status, bad) = call(&toy, Method::POST, "/_control/faults", "{nope").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let (_, faults) = call(&toy, Method::GET, "/_control/faults", "").await;
        assert_eq!(faults["pending"][0]["kind"], "drop");
        assert_eq!(toy.base.faults().pending()[0].fault, Fault::Drop);

        let (_, before) = call(&toy, Method::GET, "/_control/clock", "").await;
        let (status, after) = call(
            &toy,
            Method::POST,
            "/_control/clock/advance",
            r#"{"secs":90}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(after["offset_secs"], 90);
        assert!(after["now"].as_i64() >= before["now"].as_i64().map(|n| n + 90));
        let (status, _) = call(&toy, Method::POST, "/_control/clock/advance", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "secs is required");

        let (status, state) = call(&toy, Method::GET, "/_control/state", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(state["widgets"], 3);
        assert_eq!(state["clock"]["offset_secs"], 90);
        assert_eq!(state["faults"]["pending"][0]["path"], "/x");

        assert_eq!(
            call(&toy, Method::DELETE, "/_control/faults", "").await.0,
            StatusCode::NO_CONTENT
        );
        assert!(toy.base.faults().pending().is_empty());
        let limit = r#"{"limit":5,"window_secs":0}"#;
        assert_eq!(
            call(&toy, Method::POST, "/_control/rate-limit", limit)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
    }

    fn patch(body: &str) -> Patch {
        Patch::parse(&Bytes::from(body.to_owned())).expect("patch")
    }

    #[test]
    fn a_patch_reads_each_kind_of_setting_and_names_a_wrong_one() {
        let p =
            patch(r#"{"limit": null, "size": 5, "on": true, "names": ["a"], "big": 9999999999}"#);
        assert_eq!(p.limit("limit"), Ok(Some(None)));
        assert_eq!(p.limit("size"), Ok(Some(Some(5))));
        assert_eq!(p.limit("big"), Ok(Some(Some(u32::MAX))));
        assert_eq!(p.number("size"), Ok(Some(5)));
        assert_eq!(p.number("absent"), Ok(None));
        assert_eq!(p.flag("on"), Ok(Some(true)));
        assert_eq!(p.strings("names"), Ok(Some(vec!["a".to_owned()])));
        let wrong = p.number("limit").expect_err("null is no number");
        assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
        assert!(wrong.message.contains("`limit`"), "{}", wrong.message);
        assert!(p.flag("size").is_err());
        assert!(p.strings("on").is_err());
        assert!(Patch::parse(&Bytes::from_static(b"[1]")).is_err());
        assert_eq!(patch("").number("size"), Ok(None));
        assert!(p.nullable("on").is_err());
    }

    #[test]
    fn set_replaces_only_what_the_patch_named() {
        let mut slot = Some(3);
        set(&mut slot, None);
        assert_eq!(slot, Some(3));
        set(&mut slot, Some(None));
        assert_eq!(slot, None);
    }

    #[test]
    fn control_errors_answer_the_convention() {
        let refused = ControlError::vendor(StatusCode::UNPROCESSABLE_ENTITY, Some(json!({"x": 1})));
        assert_eq!(refused.details, Some(json!({"x": 1})));
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
