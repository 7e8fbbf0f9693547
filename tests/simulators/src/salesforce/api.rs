//! HTTP layer: routes, the version/fault/session/limit gate of the REST API, and the handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, MethodRouter};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};

use super::error::{ApiError, OAUTH, REST};
use super::schema::{Field, Kind, Object, Picklist};
use super::store::{Locator, Store, Upsert, Writer};
use super::time::{parse_iso_lenient, sf_datetime};
use super::{oauth, soql, Simulator};
use crate::kit::control::{self, set, ControlError};
use crate::kit::Budget;

mod composite;

type ApiResult = Result<Response, ApiError>;
type Params = Query<HashMap<String, String>>;

/// Shown as the daily allocation when no budget is configured.
const NOMINAL_DAILY_LIMIT: u32 = 100_000;
/// Versions listed by `GET /services/data`.
const LISTED_VERSIONS: [(&str, &str); 4] = [
    ("57.0", "Spring '23"),
    ("58.0", "Summer '23"),
    ("59.0", "Winter '24"),
    ("60.0", "Spring '24"),
];

/// The caller of a REST request, set by the gate.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    user_id: String,
    /// `60.0`.
    version: String,
    /// `client=` of `Sforce-Call-Options`.
    client: Option<String>,
    /// API requests used and allowed, as `Sforce-Limit-Info` reports them.
    usage: (u64, u64),
}

impl Ctx {
    fn writer(&self) -> Writer {
        Writer {
            user_id: self.user_id.clone(),
            client: self.client.clone(),
            api_version: self.version.clone(),
        }
    }

    fn version_at_least(&self, major: u32) -> bool {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= major)
    }
}

/// A method router that answers other methods with Salesforce's 405.
fn methods(router: MethodRouter<Simulator>, allowed: &'static str) -> MethodRouter<Simulator> {
    router.fallback(move |method: Method| async move {
        ApiError::method_not_allowed(method.as_str(), allowed)
    })
}

pub(crate) fn router(sim: Simulator) -> Router {
    let data = "/services/data/{version}";
    let rest = Router::new()
        .route(data, methods(get(resources), "GET,HEAD"))
        .route(&format!("{data}/"), methods(get(resources), "GET,HEAD"))
        .route(&format!("{data}/limits"), methods(get(limits), "GET,HEAD"))
        .route(&format!("{data}/limits/"), methods(get(limits), "GET,HEAD"))
        .route(
            &format!("{data}/sobjects"),
            methods(get(describe_global), "GET,HEAD"),
        )
        .route(
            &format!("{data}/sobjects/"),
            methods(get(describe_global), "GET,HEAD"),
        )
        .route(
            &format!("{data}/sobjects/{{object}}"),
            methods(get(object_info).post(create), "GET,HEAD,POST"),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/"),
            methods(get(object_info).post(create), "GET,HEAD,POST"),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{id}}"),
            methods(
                get(read_record).patch(update_record).delete(delete_record),
                "GET,HEAD,PATCH,DELETE",
            ),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{id}}/"),
            methods(get(read_record), "GET,HEAD"),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/{{field}}/{{value}}"),
            methods(
                get(read_by_external)
                    .patch(upsert)
                    .delete(delete_by_external),
                "GET,HEAD,PATCH,DELETE",
            ),
        )
        .route(
            &format!("{data}/composite/sobjects"),
            methods(
                post(composite::create)
                    .patch(composite::update)
                    .delete(composite::delete),
                "POST,PATCH,DELETE",
            ),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}"),
            methods(
                get(composite::retrieve).post(composite::retrieve),
                "GET,HEAD,POST",
            ),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}/{{field}}"),
            methods(patch(composite::upsert), "PATCH"),
        )
        .route(&format!("{data}/query"), methods(get(query), "GET,HEAD"))
        .route(&format!("{data}/query/"), methods(get(query), "GET,HEAD"))
        .route(
            &format!("{data}/query/{{locator}}"),
            methods(get(query_more), "GET,HEAD"),
        )
        .route(
            &format!("{data}/queryAll"),
            methods(get(query_all), "GET,HEAD"),
        )
        .route(
            &format!("{data}/queryAll/"),
            methods(get(query_all), "GET,HEAD"),
        )
        .route(
            &format!("{data}/queryAll/{{locator}}"),
            methods(get(query_more), "GET,HEAD"),
        )
        .route(
            "/services/data/{version}/{*rest}",
            get(unknown).post(unknown).patch(unknown).delete(unknown),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), gate));

    let oauth_routes = Router::new()
        .route("/services/oauth2/token", post(oauth::token))
        .route("/services/oauth2/authorize", get(oauth::authorize))
        .route(
            "/services/oauth2/revoke",
            post(oauth::revoke).get(oauth::revoke),
        )
        .route(
            "/services/oauth2/userinfo",
            get(oauth::userinfo).post(oauth::userinfo),
        )
        .route(
            "/id/{org}/{user}",
            get(oauth::identity).post(oauth::identity),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), oauth_gate));

    let control = Router::new()
        .route("/_control/contacts", get(control_contacts))
        .route("/_control/change_events", get(control_events))
        .route("/_control/tokens", post(control_issue_token))
        .route("/_control/tokens/revoke", post(control_revoke))
        .merge(control::routes())
        .merge(control::helpdesk_routes());

    Router::new()
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .merge(rest)
        .merge(oauth_routes)
        .merge(control)
        .with_state(sim)
}

// ----- gates ---------------------------------------------------------------------------------

/// `v60.0` -> `60.0`, for any version from 20.0.
fn parse_version(segment: &str) -> Option<String> {
    let number = segment.strip_prefix('v')?;
    let (major, minor) = number.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    if major < 20 || minor != "0" {
        return None;
    }
    Some(number.to_string())
}

fn call_options_client(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("sforce-call-options")?.to_str().ok()?;
    value.split(',').find_map(|option| {
        let (name, value) = option.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("client")
            .then(|| value.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// Version, injected faults, session and daily allocation; stamps `Sforce-Limit-Info`.
async fn gate(State(sim): State<Simulator>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let version = path
        .strip_prefix("/services/data/")
        .and_then(|rest| rest.split('/').next())
        .and_then(parse_version);
    let Some(version) = version else {
        return ApiError::not_found().into_response();
    };
    if let Err(refused) = sim.faults().admit(&path, &REST).await {
        return refused;
    }
    let now = sim.now_ms();
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(|t| t.trim().to_string());
    let user_id = {
        let store = sim.store();
        token
            .as_deref()
            .and_then(|t| store.oauth.check(t, now))
            .map(|t| t.user_id.clone())
    };
    let Some(user_id) = user_id else {
        return ApiError::invalid_session().into_response();
    };
    let budget = sim.faults().check_budget();
    let (used, max) = {
        let mut store = sim.store();
        match budget {
            Budget::Unlimited => {
                store.requests_counted += 1;
                let max = store.config.daily_api_limit.unwrap_or(NOMINAL_DAILY_LIMIT);
                (store.requests_counted, u64::from(max))
            }
            Budget::Allowed {
                limit, remaining, ..
            } => (u64::from(limit - remaining), u64::from(limit)),
            Budget::Exceeded { limit, .. } => (u64::from(limit), u64::from(limit)),
        }
    };
    let mut response = if let Some(refused) = budget.refusal(&REST) {
        refused
    } else {
        let client = call_options_client(request.headers());
        request.extensions_mut().insert(Ctx {
            user_id,
            version,
            client,
            usage: (used, max),
        });
        next.run(request).await
    };
    if let Ok(value) = HeaderValue::from_str(&format!("api-usage={used}/{max}")) {
        response.headers_mut().insert("sforce-limit-info", value);
    }
    response
}

/// Injected faults on the OAuth endpoints, in their error shape.
async fn oauth_gate(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match sim.faults().admit(&path, &OAUTH).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    }
}

// ----- helpers -------------------------------------------------------------------------------

fn object_of(name: &str) -> Result<Object, ApiError> {
    Object::parse(name).ok_or_else(ApiError::not_found)
}

/// A JSON object body. Salesforce reads JSON unless told XML; other types are refused.
fn body_object(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("Content-Type header specified in HTTP request is not supported: {content_type}"),
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::json_parser(
            "The HTTP entity body is required, but this request has no entity body.",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::json_parser(format!(
            "Unexpected character in JSON: {e} at [line:{}, column:{}]",
            e.line(),
            e.column()
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::json_parser(
            "Cannot deserialize instance of SObject from a value that is not an object",
        )),
    }
}

fn ok(body: Value) -> ApiResult {
    Ok(Json(body).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn save_result(status: StatusCode, id: &str, created: Option<bool>) -> Response {
    let mut body = json!({"id": id, "success": true, "errors": []});
    if let Some(created) = created {
        body["created"] = Value::Bool(created);
    }
    (status, Json(body)).into_response()
}

/// 300 Multiple Choices: the URLs of the records an external id matched.
fn multiple_choices(ctx: &Ctx, object: Object, ids: &[String]) -> Response {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| Store::record_url(&ctx.version, object, id))
        .collect();
    (StatusCode::MULTIPLE_CHOICES, Json(urls)).into_response()
}

/// `?fields=A,B`, resolved against the schema.
fn selected_fields<'a>(
    store: &'a Store,
    object: Object,
    params: &HashMap<String, String>,
) -> Result<Option<Vec<&'a Field>>, ApiError> {
    let Some(list) = params.get("fields") else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let field = store
            .schema
            .field(object, name)
            .filter(|f| f.readable)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_FIELD",
                    format!("No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", object.name()),
                )
            })?;
        fields.push(field);
    }
    Ok(Some(fields))
}

// ----- resources -----------------------------------------------------------------------------

async fn versions() -> Response {
    let list: Vec<Value> = LISTED_VERSIONS
        .iter()
        .map(|(v, label)| json!({"label": label, "url": format!("/services/data/v{v}"), "version": v}))
        .collect();
    Json(list).into_response()
}

async fn resources(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
) -> ApiResult {
    let base = format!("/services/data/v{}", ctx.version);
    let identity = format!(
        "{}/id/{}/{}",
        sim.own_url(&headers).trim_end_matches('/'),
        sim.store().config.org_id,
        ctx.user_id
    );
    ok(json!({
        "identity": identity,
        "limits": format!("{base}/limits"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "sobjects": format!("{base}/sobjects"),
    }))
}

async fn limits(Extension(ctx): Extension<Ctx>) -> ApiResult {
    let (used, max) = ctx.usage;
    let remaining = max.saturating_sub(used);
    ok(json!({
        "DailyApiRequests": {"Max": max, "Remaining": remaining},
        "ConcurrentPerOrgLongTxn": {"Max": 25, "Remaining": 25},
    }))
}

fn object_summary(object: Object, version: &str) -> Value {
    let base = format!("/services/data/v{version}/sobjects/{}", object.name());
    json!({
        "name": object.name(),
        "label": object.label(),
        "keyPrefix": object.key_prefix(),
        "createable": object != Object::User,
        "updateable": object != Object::User,
        "queryable": true,
        "urls": {
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        },
    })
}

async fn describe_global(Extension(ctx): Extension<Ctx>) -> ApiResult {
    let objects: Vec<Value> = Object::ALL
        .iter()
        .map(|o| object_summary(*o, &ctx.version))
        .collect();
    ok(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects}))
}

async fn object_info(
    Extension(ctx): Extension<Ctx>,
    Path((_, object)): Path<(String, String)>,
) -> ApiResult {
    let object = object_of(&object)?;
    ok(json!({"objectDescribe": object_summary(object, &ctx.version), "recentItems": []}))
}

fn describe(store: &Store, object: Object, version: &str) -> Value {
    let fields: Vec<Value> = store
        .schema
        .fields(object)
        .iter()
        .map(|f| {
            let (kind, length, reference_to) = match &f.kind {
                Kind::Id => ("id", 18, None),
                Kind::Reference(target) => ("reference", 18, Some(target.name())),
                Kind::Text { max, .. } if *max > 255 => ("textarea", *max, None),
                Kind::Text { max, .. } => ("string", *max, None),
                Kind::Picklist(_) => ("picklist", 255, None),
                Kind::Boolean => ("boolean", 0, None),
                Kind::DateTime => ("datetime", 0, None),
                Kind::AutoNumber => ("string", 30, None),
            };
            let picklist: Vec<Value> = match &f.kind {
                Kind::Picklist(list) => {
                    let default = match list {
                        Picklist::Status => Some(store.config.default_status.as_str()),
                        Picklist::Priority => store.config.default_priority.as_deref(),
                        Picklist::Origin => None,
                    };
                    store
                        .picklist_values(*list)
                        .iter()
                        .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": Some(v.as_str()) == default}))
                        .collect()
                }
                _ => Vec::new(),
            };
            json!({
                "name": f.name,
                "label": f.label,
                "type": kind,
                "length": length,
                "nillable": !f.required && !matches!(f.kind, Kind::Boolean | Kind::Id),
                "createable": f.createable,
                "updateable": f.updateable,
                "externalId": f.external_id,
                "unique": f.unique,
                "idLookup": f.external_id || f.name == "Id",
                "restrictedPicklist": matches!(f.kind, Kind::Picklist(_)),
                "picklistValues": picklist,
                "referenceTo": reference_to.map(|r| vec![r]).unwrap_or_default(),
                "relationshipName": f.relationship,
            })
        })
        .collect();
    let mut summary = object_summary(object, version);
    summary["fields"] = Value::Array(fields);
    summary
}

// ----- records -------------------------------------------------------------------------------

async fn create(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let object = object_of(&object)?;
    let fields = body_object(&headers, &body)?;
    let now = sim.now_ms();
    let id = sim.store().insert(object, &fields, &ctx.writer(), now)?;
    Ok(save_result(StatusCode::CREATED, &id, None))
}

async fn read_record(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, id)): Path<(String, String, String)>,
    Query(params): Params,
) -> ApiResult {
    let object = object_of(&object)?;
    match id.as_str() {
        "describe" => return ok(describe(&sim.store(), object, &ctx.version)),
        "updated" => return replication(&sim, object, &params, false),
        "deleted" => return replication(&sim, object, &params, true),
        _ => {}
    }
    let store = sim.store();
    let record = store.get(object, &id).ok_or_else(ApiError::not_found)?;
    let fields = selected_fields(&store, object, &params)?;
    ok(store.render(record, &ctx.version, fields.as_deref()))
}

async fn update_record(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let object = object_of(&object)?;
    let fields = body_object(&headers, &body)?;
    let now = sim.now_ms();
    sim.store()
        .update(object, &id, &fields, &ctx.writer(), now)?;
    no_content()
}

async fn delete_record(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, id)): Path<(String, String, String)>,
) -> ApiResult {
    let object = object_of(&object)?;
    let now = sim.now_ms();
    sim.store().delete(object, &id, &ctx.writer(), now)?;
    no_content()
}

async fn read_by_external(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, field, value)): Path<(String, String, String, String)>,
    Query(params): Params,
) -> ApiResult {
    let object = object_of(&object)?;
    let store = sim.store();
    let field = store.external_field(object, &field)?.name.clone();
    let ids = store.by_external_id(object, &field, &value);
    match ids.as_slice() {
        [] => Err(ApiError::not_found()),
        [id] => {
            let record = store.get(object, id).ok_or_else(ApiError::not_found)?;
            let fields = selected_fields(&store, object, &params)?;
            ok(store.render(record, &ctx.version, fields.as_deref()))
        }
        several => Ok(multiple_choices(&ctx, object, several)),
    }
}

async fn upsert(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, field, value)): Path<(String, String, String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let object = object_of(&object)?;
    let fields = body_object(&headers, &body)?;
    // `updateOnly` exists from API v61.0.
    let update_only = ctx.version_at_least(61)
        && params
            .get("updateOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let now = sim.now_ms();
    let outcome = sim.store().upsert(
        object,
        &field,
        &value,
        &fields,
        update_only,
        &ctx.writer(),
        now,
    )?;
    // The `created` flag and the 200 answer for updates came with API v46.0; before, 204.
    let modern = ctx.version_at_least(46);
    Ok(match outcome {
        Upsert::Created(id) => save_result(StatusCode::CREATED, &id, modern.then_some(true)),
        Upsert::Updated(id) if modern => save_result(StatusCode::OK, &id, Some(false)),
        Upsert::Updated(_) => StatusCode::NO_CONTENT.into_response(),
        Upsert::Multiple(ids) => multiple_choices(&ctx, object, &ids),
    })
}

async fn delete_by_external(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, field, value)): Path<(String, String, String, String)>,
) -> ApiResult {
    let object = object_of(&object)?;
    let now = sim.now_ms();
    let mut store = sim.store();
    let field = store.external_field(object, &field)?.name.clone();
    let ids = store.by_external_id(object, &field, &value);
    match ids.as_slice() {
        [] => Err(ApiError::not_found()),
        [id] => {
            store.delete(object, id, &ctx.writer(), now)?;
            no_content()
        }
        several => Ok(multiple_choices(&ctx, object, several)),
    }
}

/// getUpdated (`deleted`: getDeleted): changes in `[start, end)`, seconds truncated, at most
/// 30 days back.
fn replication(
    sim: &Simulator,
    object: Object,
    params: &HashMap<String, String>,
    deleted: bool,
) -> ApiResult {
    let invalid = |message: &str| ApiError::bad_request("INVALID_REPLICATION_DATE", message);
    let (Some(start), Some(end)) = (params.get("start"), params.get("end")) else {
        return Err(ApiError::bad_request(
            "MISSING_ARGUMENT",
            "start and end parameters are required",
        ));
    };
    let minute = 60_000;
    let now = sim.now_ms();
    let start = parse_iso_lenient(start)
        .ok_or_else(|| invalid("start must be an ISO-8601 date and time"))?
        / minute
        * minute;
    let end =
        parse_iso_lenient(end).ok_or_else(|| invalid("end must be an ISO-8601 date and time"))?;
    let end = end.min(now) / minute * minute;
    let earliest = now - 30 * 24 * 60 * 60 * 1000;
    if start < earliest {
        return Err(invalid("startDate cannot be more than 30 days ago"));
    }
    if end < start {
        return Err(invalid("endDate cannot be before startDate"));
    }
    let store = sim.store();
    let changed = store.changed_between(object, start, end, deleted);
    if deleted {
        let records: Vec<Value> = changed
            .iter()
            .map(|(id, at)| json!({"id": id, "deletedDate": sf_datetime(*at)}))
            .collect();
        ok(json!({
            "deletedRecords": records,
            "earliestDateAvailable": sf_datetime(earliest / minute * minute),
            "latestDateCovered": sf_datetime(end),
        }))
    } else {
        let ids: Vec<&String> = changed.iter().map(|(id, _)| id).collect();
        ok(json!({"ids": ids, "latestDateCovered": sf_datetime(end)}))
    }
}

// ----- queries -------------------------------------------------------------------------------

async fn query(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult {
    run_query(&sim, &ctx, &params, &headers, false)
}

async fn query_all(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult {
    run_query(&sim, &ctx, &params, &headers, true)
}

/// The batch size `Sforce-Query-Options: batchSize=N` asks for, within the org's bounds.
fn batch_size(store: &Store, headers: &HeaderMap) -> usize {
    let config = &store.config;
    let asked = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|option| {
                let (name, value) = option.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
        });
    asked
        .unwrap_or(config.query_batch_size)
        .clamp(config.min_batch_size.max(1), config.max_batch_size.max(1))
}

fn run_query(
    sim: &Simulator,
    ctx: &Ctx,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    all_rows: bool,
) -> ApiResult {
    let Some(text) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "MALFORMED_QUERY",
            "A query string has to be specified",
        ));
    };
    let now = sim.now_ms();
    let mut store = sim.store();
    let parsed = soql::parse(text, &store)?;
    let rows = soql::run(&store, &parsed, all_rows, &ctx.version);
    let batch = batch_size(&store, headers);
    let locator = (rows.len() > batch).then(|| store.next_query_locator());
    let page = Locator {
        rows,
        next: 0,
        batch,
        last_used_ms: now,
    };
    respond_page(&mut store, ctx, locator, page, now)
}

/// One batch of a result; keeps the rest under `locator` for `nextRecordsUrl`.
fn respond_page(
    store: &mut Store,
    ctx: &Ctx,
    locator: Option<String>,
    mut page: Locator,
    now: i64,
) -> ApiResult {
    let total = page.rows.len();
    let end = (page.next + page.batch).min(total);
    let records: Vec<Value> = page.rows[page.next..end].to_vec();
    let done = end >= total;
    let mut body = json!({"totalSize": total, "done": done, "records": records});
    match locator {
        Some(locator) if !done => {
            body["nextRecordsUrl"] = Value::String(format!(
                "/services/data/v{}/query/{locator}-{end}",
                ctx.version
            ));
            page.next = end;
            page.last_used_ms = now;
            store.locators.insert(locator, page);
        }
        Some(locator) => {
            store.locators.remove(&locator);
        }
        None => {}
    }
    ok(body)
}

async fn query_more(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult {
    let invalid = || ApiError::bad_request("INVALID_QUERY_LOCATOR", "invalid query locator");
    let (locator, offset) = raw.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let now = sim.now_ms();
    let mut store = sim.store();
    let ttl = i64::try_from(store.config.query_locator_ttl.as_millis()).unwrap_or(i64::MAX);
    store.locators.retain(|_, l| now - l.last_used_ms < ttl);
    let mut page = store.locators.remove(locator).ok_or_else(invalid)?;
    if offset > page.rows.len() {
        return Err(invalid());
    }
    page.next = offset;
    respond_page(&mut store, &ctx, Some(locator.to_string()), page, now)
}

async fn unknown() -> ApiResult {
    Err(ApiError::not_found())
}

// ----- control -------------------------------------------------------------------------------

/// A Case with its comments and the Zendesk-style lower-case fields every helpdesk simulator's
/// control API shares.
pub(super) fn control_ticket_json(store: &Store, case: &super::store::Record) -> Value {
    let version = super::ACCESSOR_VERSION;
    let mut value = store.render(case, version, None);
    let comments: Vec<Value> = store
        .list(Object::CaseComment, false)
        .into_iter()
        .filter(|c| c.text("ParentId") == Some(case.id.as_str()))
        .map(|c| {
            let mut v = store.render(c, version, None);
            v["id"] = json!(c.id);
            v["body"] = c.value("CommentBody").clone();
            v["public"] = c.value("IsPublished").clone();
            v["author_id"] = c.value("CreatedById").clone();
            v["created_by_client"] = json!(c.created_client);
            v
        })
        .collect();
    value["id"] = json!(case.id);
    value["subject"] = case.value("Subject").clone();
    value["status"] = case.value("Status").clone();
    value["created_by_client"] = json!(case.created_client);
    value["last_modified_by_client"] = json!(case.modified_client);
    value["comments"] = Value::Array(comments);
    value
}

async fn control_contacts(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"contacts": sim.contacts()}))
}

async fn control_events(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({"events": sim.change_events()}))
}

async fn control_issue_token(State(sim): State<Simulator>, headers: HeaderMap) -> Json<Value> {
    let access = sim.issue_access_token();
    Json(json!({
        "access_token": access,
        "instance_url": sim.instance_url(&headers),
        "token_type": "Bearer",
        "user_id": sim.integration_user_id(),
    }))
}

async fn control_revoke(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let value: Value = control::json_body(&body)?;
    let revoked = match value.get("token").and_then(Value::as_str) {
        Some(token) => sim.store().oauth.revoke(token),
        None => sim.revoke_access_tokens(),
    };
    Ok(Json(json!({"revoked": revoked})))
}

pub(super) fn config_json(sim: &Simulator) -> Value {
    let c = sim.config();
    json!({
        "access_token_lifetime_secs": c.access_token_lifetime.as_secs(),
        "rotate_refresh_tokens": c.rotate_refresh_tokens,
        "daily_api_limit": c.daily_api_limit,
        "query_batch_size": c.query_batch_size,
        "min_batch_size": c.min_batch_size,
        "max_batch_size": c.max_batch_size,
        "status_values": c.status_values,
        "priority_values": c.priority_values,
        "origin_values": c.origin_values,
    })
}

/// `POST /_control/config`: the settings named; a `null` limit lifts that limit.
pub(super) fn apply_config(sim: &Simulator, patch: &control::Patch) -> Result<(), ControlError> {
    let lifetime = patch.number("access_token_lifetime_secs")?;
    let rotate = patch.flag("rotate_refresh_tokens")?;
    let daily = patch.limit("daily_api_limit")?;
    let mut batch_sizes = Vec::new();
    for key in ["query_batch_size", "min_batch_size", "max_batch_size"] {
        batch_sizes.push(patch.number(key)?);
    }
    let statuses = patch.strings("status_values")?;
    let priorities = patch.strings("priority_values")?;
    let origins = patch.strings("origin_values")?;
    sim.update_config(|c| {
        set(
            &mut c.access_token_lifetime,
            lifetime.map(Duration::from_secs),
        );
        set(&mut c.rotate_refresh_tokens, rotate);
        set(&mut c.daily_api_limit, daily);
        let slots = [
            &mut c.query_batch_size,
            &mut c.min_batch_size,
            &mut c.max_batch_size,
        ];
        for (slot, size) in slots.into_iter().zip(batch_sizes) {
            set(
                slot,
                size.map(|n| usize::try_from(n).unwrap_or(usize::MAX).max(1)),
            );
        }
        for (slot, values) in [
            (&mut c.status_values, statuses),
            (&mut c.priority_values, priorities),
            (&mut c.origin_values, origins),
        ] {
            set(slot, values);
        }
    });
    Ok(())
}
