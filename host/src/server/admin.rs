//! The admin JSON API under `/api/v1`. Each handler maps one request onto one [`Hub`] call;
//! the hub validates and [`ApiError`] maps its errors onto statuses.
//!
//! | method and path | hub call |
//! | --- | --- |
//! | `POST /plugins?approve=true` (raw wasm body; `approve=all` too) | `install_plugin` |
//! | `GET /plugins`, `GET /plugins/{id}` | `list_plugins`, `get_plugin` |
//! | `POST /plugins/{id}/versions/{version}/approve` `{"hosts": [...]}` | `approve_plugin` |
//! | `DELETE /plugins/{id}[?version=V]` | `remove_plugin` |
//! | `POST /installations` `{id, plugin_id, settings, enabled?, deadline_ms?}` | `create_installation` |
//! | `GET /installations`, `GET /installations/{id}` | `list_installations`, `get_installation` |
//! | `POST /installations/{id}/test`, `/enable`, `/disable` | `test_installation`, `set_installation_enabled` |
//! | `GET /installations/{id}/billable-calls` | `billable_calls` |
//! | `POST /links`, `GET /links`, `DELETE /links/{id}` | `create_link`, `list_links`, `delete_link` |
//! | `GET /jobs`, `POST /jobs/{id}/run`, `/pause`, `/resume`, `PUT /jobs/{id}/schedule` | jobs |
//! | `PATCH /jobs/{id}` `{schedule?, time_zone?, paused?}` | `set_job_schedule`, `set_job_paused` |
//! | `GET /conversations`, `GET /conversations/{id}` | `list_conversations`, `get_conversation` |
//! | `GET /dead-letters`, `POST /dead-letters/{id}/retry`, `DELETE /dead-letters/{id}` | dead letters |
//! | `GET /health` | `health` |
//!
//! [`Hub`]: crate::hub::Hub

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::hub::{LinkSettings, NewInstallation, NewLink};

/// Largest plugin upload. Components embed a language runtime and are often several MiB.
const PLUGIN_UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/plugins",
            get(list_plugins)
                .post(install_plugin)
                .layer(DefaultBodyLimit::max(PLUGIN_UPLOAD_LIMIT)),
        )
        .route("/plugins/{id}", get(get_plugin).delete(remove_plugin))
        .route(
            "/plugins/{id}/versions/{version}/approve",
            post(approve_plugin),
        )
        .route(
            "/installations",
            get(list_installations).post(create_installation),
        )
        .route("/installations/{id}", get(get_installation))
        .route(
            "/installations/{id}/billable-calls",
            get(installation_billable_calls),
        )
        .route("/installations/{id}/test", post(test_installation))
        .route("/installations/{id}/enable", post(enable_installation))
        .route("/installations/{id}/disable", post(disable_installation))
        .route("/links", get(list_links).post(create_link))
        .route("/links/{id}", axum::routing::delete(delete_link))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}/run", post(run_job))
        .route("/jobs/{id}/pause", post(pause_job))
        .route("/jobs/{id}/resume", post(resume_job))
        .route("/jobs/{id}", axum::routing::patch(update_job))
        .route("/jobs/{id}/schedule", put(set_job_schedule))
        .route("/conversations", get(list_conversations))
        .route("/conversations/{id}", get(get_conversation))
        .route("/dead-letters", get(list_dead_letters))
        .route(
            "/dead-letters/{id}",
            axum::routing::delete(discard_dead_letter),
        )
        .route("/dead-letters/{id}/retry", post(retry_dead_letter))
        .route("/quarantined-events", get(list_quarantined_events))
        .route(
            "/quarantined-events/{id}/retry",
            post(retry_quarantined_event),
        )
        .route("/health", get(health))
}

type ApiResult<T> = Result<T, ApiError>;

fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

// ----- plugins ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallQuery {
    #[serde(default)]
    approve: Approve,
}

/// `?approve=true` (or `all`) approves every host the plugin requests. Without it the plugin is
/// stored with no approved hosts, to be approved by
/// `POST /plugins/{id}/versions/{version}/approve`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Approve {
    #[default]
    #[serde(alias = "false")]
    None,
    #[serde(alias = "true")]
    All,
}

async fn install_plugin(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<InstallQuery>,
    headers: HeaderMap,
    ApiBytes(wasm): ApiBytes,
) -> ApiResult<Response> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !matches!(essence, "application/wasm" | "application/octet-stream") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("upload the component as the raw body with Content-Type: application/wasm, not `{essence}`"),
            ));
        }
    }
    if !wasm.starts_with(b"\0asm") {
        return Err(ApiError::bad_request(format!(
            "the body is not a WebAssembly component ({} bytes without the `\\0asm` header); \
             upload the .wasm file as the raw body",
            wasm.len()
        )));
    }
    let record = state
        .hub
        .install_plugin(&wasm, query.approve == Approve::All)
        .await?;
    Ok(created(record))
}

async fn list_plugins(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_plugins().await?).into_response())
}

async fn get_plugin(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.get_plugin(&id).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// The hosts the admin allows; each must be one the plugin's manifest requests.
    hosts: Vec<String>,
}

async fn approve_plugin(
    State(state): State<AppState>,
    ApiPath((id, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.approve_plugin(&id, &version, body.hosts).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    /// One version to remove; all versions without it.
    version: Option<String>,
}

#[derive(Debug, Serialize)]
struct Removed {
    plugin_id: String,
    removed_versions: u64,
}

async fn remove_plugin(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> ApiResult<Response> {
    let removed_versions = state
        .hub
        .remove_plugin(&id, query.version.as_deref())
        .await?;
    if removed_versions == 0 {
        let what = match &query.version {
            Some(version) => format!("plugin {id} {version} is not installed"),
            None => format!("plugin {id} is not installed"),
        };
        return Err(ApiError::not_found(what));
    }
    Ok(Json(Removed {
        plugin_id: id,
        removed_versions,
    })
    .into_response())
}

// ----- installations ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInstallation {
    id: String,
    plugin_id: String,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    enabled: Option<bool>,
    deadline_ms: Option<u64>,
}

async fn create_installation(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateInstallation>,
) -> ApiResult<Response> {
    let new = NewInstallation {
        id: body.id,
        plugin_id: body.plugin_id,
        settings: body.settings,
        enabled: body.enabled,
        deadline_ms: body.deadline_ms,
    };
    Ok(created(state.hub.create_installation(new).await?))
}

async fn list_installations(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_installations().await?).into_response())
}

async fn get_installation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.get_installation(&id).await?).into_response())
}

async fn installation_billable_calls(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.billable_calls(&id).await?).into_response())
}

/// 200 whether or not the connection works: the report says which, and why.
async fn test_installation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.test_installation(&id).await?).into_response())
}

async fn enable_installation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.set_installation_enabled(&id, true).await?).into_response())
}

async fn disable_installation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.set_installation_enabled(&id, false).await?).into_response())
}

// ----- links -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLink {
    id: String,
    social_installation: String,
    helpdesk_installation: String,
    #[serde(default)]
    settings: LinkSettingsBody,
}

/// `LinkSettings` as the API accepts it: every field optional, unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSettingsBody {
    #[serde(default)]
    reopen_solved: bool,
    #[serde(default)]
    tags: Vec<String>,
    priority: Option<String>,
    #[serde(default)]
    private_replies: bool,
}

async fn create_link(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateLink>,
) -> ApiResult<Response> {
    let new = NewLink {
        id: body.id,
        social_installation: body.social_installation,
        helpdesk_installation: body.helpdesk_installation,
        settings: LinkSettings {
            reopen_solved: body.settings.reopen_solved,
            tags: body.settings.tags,
            priority: body.settings.priority,
            private_replies: body.settings.private_replies,
        },
    };
    Ok(created(state.hub.create_link(new).await?))
}

async fn list_links(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_links().await?).into_response())
}

async fn delete_link(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.hub.delete_link(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- jobs ------------------------------------------------------------------------------------

async fn list_jobs(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_jobs().await?).into_response())
}

/// Runs the job now and answers with the run's record once it finished.
async fn run_job(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.run_job_now(&id).await?).into_response())
}

async fn pause_job(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.set_job_paused(&id, true).await?).into_response())
}

async fn resume_job(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.set_job_paused(&id, false).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    /// 5-field crontab, or 6 fields with seconds first.
    schedule: String,
    /// IANA time zone, e.g. `Europe/Paris`; UTC without it.
    time_zone: Option<String>,
}

async fn set_job_schedule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> ApiResult<Response> {
    Ok(Json(
        state
            .hub
            .set_job_schedule(&id, &body.schedule, body.time_zone.as_deref())
            .await?,
    )
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobPatch {
    schedule: Option<String>,
    time_zone: Option<String>,
    paused: Option<bool>,
}

/// `PATCH /jobs/{id}`: the schedule and the paused flag in one request, for clients that prefer
/// a resource update to the action routes.
async fn update_job(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<JobPatch>,
) -> ApiResult<Response> {
    if patch.schedule.is_none() && patch.time_zone.is_some() {
        return Err(ApiError::bad_request(
            "`time_zone` is set together with `schedule`",
        ));
    }
    let mut view = None;
    if let Some(schedule) = &patch.schedule {
        view = Some(
            state
                .hub
                .set_job_schedule(&id, schedule, patch.time_zone.as_deref())
                .await?,
        );
    }
    if let Some(paused) = patch.paused {
        view = Some(state.hub.set_job_paused(&id, paused).await?);
    }
    match view {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::bad_request(
            "nothing to change: set `schedule` (and `time_zone`) or `paused`",
        )),
    }
}

// ----- conversations ---------------------------------------------------------------------------

async fn list_conversations(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_conversations().await?).into_response())
}

async fn get_conversation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(Json(state.hub.get_conversation(&id).await?).into_response())
}

// ----- dead letters ----------------------------------------------------------------------------

async fn list_dead_letters(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_dead_letters().await?).into_response())
}

/// Puts the dead letter back in the outbox with its attempts reset; 202: delivery follows.
async fn retry_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    state.hub.retry_dead_letter(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "state": "pending" })),
    )
        .into_response())
}

async fn discard_dead_letter(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.hub.discard_dead_letter(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- health ----------------------------------------------------------------------------------

/// The full health report; 503 when the hub is not healthy, so probes need not parse it.
async fn list_quarantined_events(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.hub.list_quarantined_events().await?).into_response())
}

/// Hands a quarantined event back to the processor; 202: processing follows.
async fn retry_quarantined_event(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    state.hub.retry_quarantined_event(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "state": "pending" })),
    )
        .into_response())
}

async fn health(State(state): State<AppState>) -> Response {
    let health = state.hub.health().await;
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}
