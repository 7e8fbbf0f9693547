//! sObject Collections, `/composite/sobjects`: create, update, upsert, delete and retrieve of up
//! to 200 records in one call, as jsforce sends every array operation. Each record gets its own
//! result, in request order, and the call answers 200 even when records fail; with `allOrNone`
//! one failure rolls every write of the call back.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Extension;
use serde_json::{json, Map, Value};

use super::{body_object, object_of, ok, selected_fields, ApiError, ApiResult, Ctx, Params};
use crate::salesforce::schema::Object;
use crate::salesforce::store::{Store, Upsert, Writer};
use crate::salesforce::Simulator;

/// Records (or ids) one call may carry.
const MAX_RECORDS: usize = 200;
/// sObject Collections exist from API v42.0; their upsert from v46.0.
const FIRST_VERSION: u32 = 42;
const FIRST_UPSERT_VERSION: u32 = 46;

const ROLLED_BACK: &str = "Record rolled back because not all records were valid and the request was using AllOrNone header";

/// One record's failure: the record id when the request named one, and the error.
struct Failure {
    id: Option<String>,
    error: ApiError,
}

impl Failure {
    fn new(id: Option<String>, status_code: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            error: ApiError::fields(status_code, message, &[]),
        }
    }
}

/// A record error in a collection result: `{statusCode, message, fields}`, where the single
/// calls' error arrays say `errorCode`.
fn error_entry(error: &ApiError) -> Value {
    let first = error.body.get(0).cloned().unwrap_or(Value::Null);
    json!({
        "statusCode": first.get("errorCode").cloned().unwrap_or(json!("UNKNOWN_EXCEPTION")),
        "message": first.get("message").cloned().unwrap_or(json!("")),
        "fields": first.get("fields").cloned().unwrap_or(json!([])),
    })
}

fn failure_json(id: Option<&str>, errors: Vec<Value>) -> Value {
    let mut result = json!({"success": false, "errors": errors});
    if let Some(id) = id {
        result["id"] = json!(id);
    }
    result
}

fn success_json(id: &str, created: Option<bool>) -> Value {
    let mut result = json!({"id": id, "success": true, "errors": []});
    if let Some(created) = created {
        result["created"] = json!(created);
    }
    result
}

fn check_version(ctx: &Ctx, first: u32) -> Result<(), ApiError> {
    if ctx.version_at_least(first) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

fn too_many() -> ApiError {
    ApiError::bad_request(
        "EXCEEDED_ID_LIMIT",
        format!(
            "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        ),
    )
}

/// `{"allOrNone"?, "records": [...]}`.
fn parse_batch(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(bool, Vec<Map<String, Value>>), ApiError> {
    let body = body_object(headers, body)?;
    let all_or_none = match body.get("allOrNone") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::json_parser(format!(
                "Cannot deserialize value of type `boolean` from {other} for allOrNone"
            )))
        }
    };
    let Some(Value::Array(records)) = body.get("records") else {
        return Err(ApiError::json_parser(
            "The request body must hold a records array",
        ));
    };
    if records.len() > MAX_RECORDS {
        return Err(too_many());
    }
    let records = records
        .iter()
        .map(|r| match r {
            Value::Object(map) => Ok(map.clone()),
            _ => Err(ApiError::json_parser(
                "Cannot deserialize instance of SObject from a value that is not an object",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((all_or_none, records))
}

/// The object of `attributes.type`.
fn record_type(record: &Map<String, Value>) -> Result<Object, ApiError> {
    let name = record
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::fields("INVALID_TYPE", "Must send a concrete entity type.", &[])
        })?;
    Object::parse(name).ok_or_else(|| {
        ApiError::fields(
            "INVALID_TYPE",
            format!("sObject type '{name}' is not supported."),
            &[],
        )
    })
}

/// The record's `id` (any case) as given, and the body without it.
fn split_id(record: &Map<String, Value>) -> (Option<String>, Map<String, Value>) {
    let mut rest = record.clone();
    let key = record
        .keys()
        .find(|k| k.eq_ignore_ascii_case("id"))
        .cloned();
    let id = key
        .and_then(|k| rest.remove(&k))
        .and_then(|v| v.as_str().map(str::to_owned));
    (id, rest)
}

/// Runs `write` for each of `count` records under one lock and renders the results. With
/// `all_or_none`, any failure restores the store and reports every other record as rolled back
/// (with its id when `ids_survive`: an updated or deleted record still exists, a created one
/// does not).
fn run(
    store: &mut Store,
    all_or_none: bool,
    ids_survive: bool,
    count: usize,
    mut write: impl FnMut(&mut Store, usize) -> Result<Value, Failure>,
) -> Vec<Value> {
    let snapshot = all_or_none.then(|| store.snapshot_writes());
    let outcomes: Vec<Result<Value, Failure>> = (0..count).map(|i| write(store, i)).collect();
    let failed = outcomes.iter().any(Result::is_err);
    if let (true, Some(snapshot)) = (failed, snapshot) {
        store.roll_back_writes(snapshot);
        return outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Err(f) => failure_json(f.id.as_deref(), vec![error_entry(&f.error)]),
                // A created record's id no longer exists; an updated or deleted one does.
                Ok(done) => failure_json(
                    done["id"].as_str().filter(|_| ids_survive),
                    vec![json!({"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": ROLLED_BACK, "fields": []})],
                ),
            })
            .collect();
    }
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(done) => done,
            Err(f) => failure_json(f.id.as_deref(), vec![error_entry(&f.error)]),
        })
        .collect()
}

/// `POST /composite/sobjects`: creates records of any supported types.
pub(super) async fn create(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    write_batch(
        &sim,
        &ctx,
        &headers,
        &body,
        false,
        |store, record, writer, now| {
            let fail = |error| Failure { id: None, error };
            let object = record_type(record).map_err(fail)?;
            if let (Some(_), _) = split_id(record) {
                return Err(Failure::new(
                    None,
                    "INVALID_FIELD",
                    "cannot specify Id in an insert call",
                ));
            }
            let id = store.insert(object, record, writer, now).map_err(fail)?;
            Ok(success_json(&id, None))
        },
    )
}

/// `PATCH /composite/sobjects`: updates records by `id`.
pub(super) async fn update(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    write_batch(
        &sim,
        &ctx,
        &headers,
        &body,
        true,
        |store, record, writer, now| {
            let (id, fields) = split_id(record);
            let Some(id) = id else {
                return Err(Failure::new(
                    None,
                    "MISSING_ARGUMENT",
                    "Id not specified in an update call",
                ));
            };
            let fail = |error| Failure {
                id: Some(id.clone()),
                error,
            };
            let object = record_type(record).map_err(fail)?;
            let id = store
                .update(object, &id, &fields, writer, now)
                .map_err(fail)?;
            Ok(success_json(&id, None))
        },
    )
}

/// The frame of a composite create or update: the version check, the batch, then `write`
/// (store, record, writer, now) for each record under one lock, answered with the results.
fn write_batch(
    sim: &Simulator,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: &Bytes,
    ids_survive: bool,
    mut write: impl FnMut(&mut Store, &Map<String, Value>, &Writer, i64) -> Result<Value, Failure>,
) -> ApiResult {
    check_version(ctx, FIRST_VERSION)?;
    let (all_or_none, records) = parse_batch(headers, body)?;
    let now = sim.now_ms();
    let writer = ctx.writer();
    let mut store = sim.store();
    let results = run(
        &mut store,
        all_or_none,
        ids_survive,
        records.len(),
        |store, i| write(store, &records[i], &writer, now),
    );
    ok(Value::Array(results))
}

/// `DELETE /composite/sobjects?ids=a,b&allOrNone=true`.
pub(super) async fn delete(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Params,
) -> ApiResult {
    check_version(&ctx, FIRST_VERSION)?;
    let ids: Vec<String> = params
        .get("ids")
        .map(|ids| {
            ids.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "MISSING_ARGUMENT",
            "ids parameter is required",
        ));
    }
    if ids.len() > MAX_RECORDS {
        return Err(too_many());
    }
    let all_or_none = params
        .get("allOrNone")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let now = sim.now_ms();
    let writer = ctx.writer();
    let mut store = sim.store();
    let results = run(&mut store, all_or_none, true, ids.len(), |store, i| {
        let id = &ids[i];
        let fail = |error| Failure {
            id: Some(id.clone()),
            error,
        };
        let Some(object) = store.object_of_id(id) else {
            return Err(Failure::new(
                Some(id.clone()),
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
            ));
        };
        store.delete(object, id, &writer, now).map_err(fail)?;
        let canonical = crate::salesforce::ids::normalize(id).unwrap_or_else(|| id.clone());
        Ok(success_json(&canonical, None))
    });
    ok(Value::Array(results))
}

/// `PATCH /composite/sobjects/{object}/{field}`: upserts records of one type by an external id.
pub(super) async fn upsert(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_version(&ctx, FIRST_UPSERT_VERSION)?;
    let object = object_of(&object)?;
    let (all_or_none, records) = parse_batch(&headers, &body)?;
    let now = sim.now_ms();
    let writer = ctx.writer();
    let mut store = sim.store();
    let field = store.external_field(object, &field)?.name.clone();
    let results = run(&mut store, all_or_none, false, records.len(), |store, i| {
        let record = &records[i];
        let fail = |error| Failure { id: None, error };
        let given = record_type(record).map_err(fail)?;
        if given != object {
            return Err(Failure::new(
                None,
                "INVALID_TYPE",
                format!(
                    "The record type {} does not match the URL's {}",
                    given.name(),
                    object.name()
                ),
            ));
        }
        let value = record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&field))
            .and_then(|(_, v)| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let Some(value) = value else {
            return Err(Failure::new(
                None,
                "MISSING_ARGUMENT",
                format!("{field} not specified"),
            ));
        };
        match store
            .upsert(object, &field, &value, record, false, &writer, now)
            .map_err(fail)?
        {
            Upsert::Created(id) => Ok(success_json(&id, Some(true))),
            Upsert::Updated(id) => Ok(success_json(&id, Some(false))),
            Upsert::Multiple(ids) => Err(Failure::new(
                None,
                "DUPLICATE_EXTERNAL_ID",
                format!(
                    "{field}: more than one record found for external id field: [{}]",
                    ids.join(", ")
                ),
            )),
        }
    });
    ok(Value::Array(results))
}

/// `POST /composite/sobjects/{object}` `{"ids","fields"}` (or `GET ...?ids=&fields=`): the
/// records in order, `null` for an id that names none.
pub(super) async fn retrieve(
    State(sim): State<Simulator>,
    Extension(ctx): Extension<Ctx>,
    Path((_, object)): Path<(String, String)>,
    Query(query): Params,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_version(&ctx, FIRST_VERSION)?;
    let object = object_of(&object)?;
    let (ids, fields): (Vec<String>, Vec<String>) = if body.iter().all(u8::is_ascii_whitespace) {
        let split = |key: &str| -> Vec<String> {
            query
                .get(key)
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default()
        };
        (split("ids"), split("fields"))
    } else {
        let body = body_object(&headers, &body)?;
        let strings = |key: &str| -> Vec<String> {
            body.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        (strings("ids"), strings("fields"))
    };
    if ids.is_empty() || fields.is_empty() {
        return Err(ApiError::bad_request(
            "MISSING_ARGUMENT",
            "ids and fields are required",
        ));
    }
    if ids.len() > 2000 {
        return Err(too_many());
    }
    let store = sim.store();
    let params = HashMap::from([("fields".to_owned(), fields.join(","))]);
    let selected = selected_fields(&store, object, &params)?;
    let records: Vec<Value> = ids
        .iter()
        .map(|id| {
            store.get(object, id).map_or(Value::Null, |r| {
                store.render(r, &ctx.version, selected.as_deref())
            })
        })
        .collect();
    ok(Value::Array(records))
}
