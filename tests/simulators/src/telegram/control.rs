//! `/_control/*`: how tests play the customer and inspect the bot, over HTTP. Each route is
//! a thin wrapper over the matching [`Simulator`] method.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{CustomerMessage, Injected, SentMessage, SimError, Simulator, StateSummary};

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = match self {
            SimError::ChatNotFound(_) | SimError::MessageNotFound { .. } => StatusCode::NOT_FOUND,
            SimError::NotCustomerMessage { .. } => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

pub fn routes() -> Router<Simulator> {
    Router::new()
        .route("/_control/messages", post(customer_message))
        .route("/_control/edits", post(edit_message))
        .route("/_control/sent", get(sent))
        .route("/_control/updates", get(updates))
        .route("/_control/block", post(block))
        .route("/_control/unblock", post(unblock))
        .route("/_control/clock/advance", post(clock))
        .route("/_control/flood", post(flood))
        .route("/_control/state", get(state))
}

async fn customer_message(
    State(sim): State<Simulator>,
    Json(msg): Json<CustomerMessage>,
) -> Json<Injected> {
    Json(sim.inject_customer_message(msg))
}

#[derive(Deserialize)]
struct Edit {
    chat_id: i64,
    message_id: i64,
    text: String,
}

async fn edit_message(
    State(sim): State<Simulator>,
    Json(edit): Json<Edit>,
) -> Result<Json<Injected>, SimError> {
    sim.edit_customer_message(edit.chat_id, edit.message_id, edit.text)
        .map(Json)
}

#[derive(Deserialize)]
struct SentQuery {
    chat_id: Option<i64>,
}

async fn sent(
    State(sim): State<Simulator>,
    Query(query): Query<SentQuery>,
) -> Json<Vec<SentMessage>> {
    Json(sim.sent_messages(query.chat_id))
}

async fn updates(State(sim): State<Simulator>) -> Json<Vec<serde_json::Value>> {
    Json(sim.pending_updates())
}

#[derive(Deserialize)]
struct ChatRef {
    chat_id: i64,
}

async fn block(
    State(sim): State<Simulator>,
    Json(chat): Json<ChatRef>,
) -> Result<StatusCode, SimError> {
    sim.block(chat.chat_id).map(|()| StatusCode::NO_CONTENT)
}

async fn unblock(
    State(sim): State<Simulator>,
    Json(chat): Json<ChatRef>,
) -> Result<StatusCode, SimError> {
    sim.unblock(chat.chat_id).map(|()| StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Advance {
    secs: u64,
}

/// Answers with the simulator's new time, as the Zendesk simulator does.
async fn clock(
    State(sim): State<Simulator>,
    Json(advance): Json<Advance>,
) -> Json<serde_json::Value> {
    sim.advance_clock(Duration::from_secs(advance.secs));
    Json(json!({"now": sim.inner.clock.now_ms() / 1000}))
}

#[derive(Deserialize)]
struct Flood {
    per_chat_interval_ms: Option<u64>,
}

async fn flood(State(sim): State<Simulator>, Json(flood): Json<Flood>) -> StatusCode {
    sim.set_per_chat_interval(flood.per_chat_interval_ms.map(Duration::from_millis));
    StatusCode::NO_CONTENT
}

async fn state(State(sim): State<Simulator>) -> Json<StateSummary> {
    Json(sim.summary())
}
