//! `/_control/*`: how tests play the customer and inspect the bot, over HTTP. Each route is
//! a thin wrapper over the matching [`Simulator`] method; the clock, faults and state routes
//! are the kit's ([`crate::kit::control`]), whose conventions these follow.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{CustomerMessage, Injected, SentMessage, SimError, Simulator};
use crate::kit::control::{json_body, ControlError};

impl From<SimError> for ControlError {
    fn from(error: SimError) -> Self {
        let status = match error {
            SimError::ChatNotFound(_) | SimError::MessageNotFound { .. } => StatusCode::NOT_FOUND,
            SimError::NotCustomerMessage { .. } => StatusCode::BAD_REQUEST,
        };
        ControlError::new(status, error.to_string())
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        ControlError::from(self).into_response()
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
        .route("/_control/flood", post(flood))
}

async fn customer_message(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Injected>, ControlError> {
    let msg: CustomerMessage = json_body(&body)?;
    Ok(Json(sim.inject_customer_message(msg)))
}

#[derive(Deserialize)]
struct Edit {
    chat_id: i64,
    message_id: i64,
    text: String,
}

async fn edit_message(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Injected>, ControlError> {
    let edit: Edit = json_body(&body)?;
    let injected = sim.edit_customer_message(edit.chat_id, edit.message_id, edit.text)?;
    Ok(Json(injected))
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

async fn block(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let chat: ChatRef = json_body(&body)?;
    sim.block(chat.chat_id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unblock(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let chat: ChatRef = json_body(&body)?;
    sim.unblock(chat.chat_id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Flood {
    per_chat_interval_ms: Option<u64>,
}

async fn flood(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ControlError> {
    let flood: Flood = json_body(&body)?;
    sim.set_per_chat_interval(flood.per_chat_interval_ms.map(Duration::from_millis));
    Ok(StatusCode::NO_CONTENT)
}
