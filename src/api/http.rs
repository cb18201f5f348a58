//! The HTTP API (axum): targets, tasks, status reports, courts, health and metrics, and its
//! OpenAPI document (`docs/openapi.json`, kept honest by `tests/interface.rs`).
//!
//! Errors are JSON `{"error": "<reason>", "detail": "..."}` with a 4xx status for the
//! client's mistakes; internal errors are logged in full and answered with a generic 500.
//!
//! Everything but the probes (`/healthz`, `/readyz`) and the OpenAPI document sits behind the bearer-token middleware
//! (`api::auth`); the routes of targets and tasks also behind the audit middleware
//! (`api::audit`). Each handler checks its caller's scope. The event stream (`api::events`)
//! writes its own audit row, once per stream opened.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::audit;
use crate::api::auth::{self as scope, require_token};
use crate::api::events;
pub use crate::api::shared::{ApiError, ApiResult, AppState, AuditNote};
use crate::app::auth::Principal;
use crate::app::locate::{self, LocateError, SearchTask};
use crate::app::status;
use crate::app::sweep::{self, Area, SweepError};
use crate::app::targets::{self, Upserted};
use crate::contract::model::{Target, TargetStatus};
use crate::contract::task::{StatusReport, TaskStatus};
use crate::geo::locate::JurisdictionIndex;
use crate::store::StatusOutcome;

/// The router, apart from serving, so tests and the service build it the same way.
pub fn app(state: AppState) -> Router {
    let audited = Router::new()
        .route("/api/v1/targets", get(list_targets))
        .route("/api/v1/targets:batch", post(put_targets_batch))
        .route(
            "/api/v1/targets/{target_id}",
            put(put_target).get(get_target).delete(withdraw_target),
        )
        .route("/api/v1/tasks", get(list_tasks))
        .route("/api/v1/tasks/{task_id}", get(get_task))
        .route("/api/v1/tasks/{task_id}/status", post(post_status))
        .route("/api/v1/locate-requests", post(locate_request))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ));
    let authenticated = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/courts", get(courts))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/events", get(events::stream))
        .merge(audited)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(authenticated)
        .with_state(state)
}

/// Wraps `router` (and whatever layers it has) so that every client error it answers has the
/// contract's JSON shape: axum answers a body over its limit, an unknown route or method, or
/// a path segment that is not UTF-8 in plain text or with an empty body, and the timeout
/// layer with an empty 408.
pub fn with_json_errors(router: Router) -> Router {
    router.layer(axum::middleware::map_response(json_client_error))
}

/// Longest plain-text error body carried over into `detail`.
const MAX_DETAIL_BYTES: usize = 1024;

async fn json_client_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (error, default_detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is larger than the limit"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed here"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request was not complete in time"),
        _ => ("bad_request", "the request was refused"),
    };
    let text = axum::body::to_bytes(response.into_body(), MAX_DETAIL_BYTES)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty());
    let detail = text.unwrap_or_else(|| default_detail.to_string());
    (status, Json(json!({"error": error, "detail": detail}))).into_response()
}

/// Longest id accepted in a path, in characters: above every id the service takes (targets'
/// 128, status reports' task ids 200), so longer ones are refused before any lookup.
const MAX_PATH_ID_CHARS: usize = 200;

/// A path's id as the handlers may look it up: 1 to [`MAX_PATH_ID_CHARS`] characters, none
/// of them a control character (PostgreSQL refuses text holding NUL with an error, which
/// would otherwise surface as a 500).
fn path_id(what: &str, id: String) -> ApiResult<String> {
    let printable = !id.is_empty()
        && id.chars().count() <= MAX_PATH_ID_CHARS
        && !id.chars().any(char::is_control);
    if printable {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} in the path must be 1 to {MAX_PATH_ID_CHARS} printable characters"
        )))
    }
}

/// The API described for machines (OpenAPI 3.1), as shipped in the repository; open like the
/// probes, since it says nothing a caller could not read in the docs.
const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// Longest `/readyz` waits for the database before it says "not ready".
const READY_DATABASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(state): State<AppState>) -> Response {
    // A database that answers a ping can still hold the pipeline (a half-open connection of
    // the group commit): what counts is whether messages are being acked.
    let oldest = state.pending.oldest_age();
    crate::metrics::set_oldest_unacked(oldest);
    let pipeline = oldest <= state.max_unacked_age;
    let broker = state.ingest.is_connected();
    // Bounded below the pool's acquire timeout (5 s): a probe must answer promptly even
    // when the server does not.
    let database = matches!(
        tokio::time::timeout(READY_DATABASE_TIMEOUT, state.app.store.ping()).await,
        Ok(Ok(()))
    );
    crate::metrics::set_database_up(database);
    let body = Json(json!({"broker": broker, "database": database, "pipeline": pipeline}));
    if broker && database && pipeline {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
) -> ApiResult<impl IntoResponse> {
    scope::require_ops(&caller)?;
    // Read now: a stuck pipeline is exactly when nothing else would update it.
    crate::metrics::set_oldest_unacked(state.pending.oldest_age());
    crate::metrics::collect_process();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    ))
}

async fn courts(State(state): State<AppState>) -> Json<Value> {
    let data = state.app.index.data();
    let courts: Vec<Value> = data
        .courts
        .iter()
        .map(|c| {
            let area = data.jurisdictions.iter().find(|j| j.court_id == c.court_id);
            let bbox = area.and_then(|j| geo::BoundingRect::bounding_rect(&j.area));
            json!({
                "court_id": c.court_id,
                "court_name": c.court_name,
                "adcode": c.adcode,
                "command_center": {"lat": c.command_center.y, "lon": c.command_center.x, "datum": "wgs84"},
                "supervisor_court_id": c.supervisor_court_id,
                "participating": c.participating,
                "jurisdiction": area.map(|j| json!({
                    "name": j.name,
                    "bbox": bbox.map(|b| [b.min().x, b.min().y, b.max().x, b.max().y]),
                })),
            })
        })
        .collect();
    Json(json!({"courts": courts}))
}

/// Parses and validates a target on `today`, including that its courts exist.
fn parse_target(
    value: Value,
    index: &JurisdictionIndex,
    today: chrono::NaiveDate,
) -> Result<Target, String> {
    let target: Target =
        serde_json::from_value(value).map_err(|e| format!("not a valid Target: {e}"))?;
    target.validate_at(today).map_err(|e| e.to_string())?;
    target
        .check_courts(index.data())
        .map_err(|e| e.to_string())?;
    Ok(target)
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))
}

async fn put_target(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(target_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    scope::require_admin(&caller, "change targets")?;
    let target_id = path_id("target_id", target_id)?;
    let mut value = parse_json(&body)?;
    match value.get("target_id") {
        None => value["target_id"] = Value::String(target_id.clone()),
        Some(Value::String(id)) if *id == target_id => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "target_id in the body ({other}) differs from the path ({target_id:?})"
            )));
        }
    }
    let today = state.app.now().date_naive();
    let target = parse_target(value, &state.app.index, today).map_err(ApiError::BadRequest)?;
    let status = match targets::upsert(&state.app, &target).await? {
        Upserted::Created => StatusCode::CREATED,
        Upserted::Replaced => StatusCode::OK,
    };
    Ok((status, Json(target)).into_response())
}

async fn put_targets_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    scope::require_admin(&caller, "change targets")?;
    let Value::Array(items) = parse_json(&body)? else {
        return Err(ApiError::BadRequest(
            "body must be a JSON array of targets".into(),
        ));
    };
    let mut parsed = Vec::with_capacity(items.len());
    let today = state.app.now().date_naive();
    for (i, item) in items.into_iter().enumerate() {
        parsed.push(
            parse_target(item, &state.app.index, today)
                .map_err(|e| ApiError::BadRequest(format!("item {i}: {e}")))?,
        );
    }
    let ids: Vec<String> = parsed.iter().map(|t| t.target_id.clone()).collect();
    let count = targets::upsert_all(&state.app, parsed).await?;
    let mut response = Json(json!({"upserted": count})).into_response();
    // One row for the batch; its targets in the detail (a batch may hold thousands).
    response.extensions_mut().insert(AuditNote {
        detail: Some(format!("{count} target(s): {}", ids.join(","))),
        ..AuditNote::default()
    });
    Ok(response)
}

/// A target, with `expired` and, when it shares its plate or identity number with targets
/// of other courts, the `linked` cases and courts.
#[derive(Debug, Deserialize)]
struct LookupQuery {
    /// Why the caller looks the target up; kept in the audit log.
    purpose: Option<String>,
}

async fn get_target(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(target_id): Path<String>,
    Query(q): Query<LookupQuery>,
) -> ApiResult<Json<Value>> {
    scope::require_admin(&caller, "read targets")?;
    if q.purpose.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(ApiError::BadRequest(
            "a target look-up needs purpose=<why> (it is kept in the audit log)".into(),
        ));
    }
    let target_id = path_id("target_id", target_id)?;
    let view = targets::describe(&state.app, &target_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no target {target_id:?}")))?;
    let mut value =
        serde_json::to_value(&view.target).map_err(|e| ApiError::Internal(e.to_string()))?;
    value["expired"] = json!(view.expired);
    if let Some(link) = view.linked {
        value["linked"] =
            serde_json::to_value(link).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(Json(value))
}

async fn withdraw_target(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(target_id): Path<String>,
) -> ApiResult<Json<Value>> {
    scope::require_admin(&caller, "withdraw targets")?;
    let target_id = path_id("target_id", target_id)?;
    let withdrawal = targets::withdraw(&state.app, &target_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no target {target_id:?}")))?;
    let cancelled = withdrawal.cancelled_tasks;
    Ok(Json(
        json!({"target_id": target_id, "status": TargetStatus::Withdrawn, "cancelled_tasks": cancelled}),
    ))
}

#[derive(Debug, Deserialize)]
struct TargetQuery {
    court_id: Option<String>,
    /// `lat,lon` (WGS-84).
    near: Option<String>,
    radius_km: Option<f64>,
}

/// Active targets whose known locations lie in a court's area and/or within a radius
/// (sweep planning), with their cases and amounts.
async fn list_targets(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Query(mut q): Query<TargetQuery>,
) -> ApiResult<Json<Value>> {
    // A court sweeps its own area (a radius only within it).
    q.court_id = scope::own_court(&caller, q.court_id.take(), "sweep")?;
    let area = sweep_area(&q)?;
    let targets = sweep::live(&state.app, &area).map_err(|e| match e {
        SweepError::UnknownCourt(_) => ApiError::BadRequest(e.to_string()),
        SweepError::Store(e) => e.into(),
    })?;
    Ok(Json(json!({"targets": targets, "count": targets.len()})))
}

/// The area a sweep query asks for.
fn sweep_area(q: &TargetQuery) -> ApiResult<Area> {
    let near =
        match &q.near {
            None => None,
            Some(text) => {
                let parsed = text
                    .split_once(',')
                    .and_then(|(lat, lon)| {
                        Some((
                            lat.trim().parse::<f64>().ok()?,
                            lon.trim().parse::<f64>().ok()?,
                        ))
                    })
                    .filter(|(lat, lon)| {
                        (-90.0..=90.0).contains(lat) && (-180.0..=180.0).contains(lon)
                    });
                Some(parsed.ok_or_else(|| {
                    ApiError::BadRequest(format!("near={text:?}: expected lat,lon"))
                })?)
            }
        };
    let near = match (near, q.radius_km) {
        (Some((lat, lon)), Some(r)) if r.is_finite() && r > 0.0 => Some((lat, lon, r)),
        (Some(_), _) => {
            return Err(ApiError::BadRequest(
                "near needs a positive radius_km".into(),
            ));
        }
        (None, Some(_)) => return Err(ApiError::BadRequest("radius_km needs near=lat,lon".into())),
        (None, None) => None,
    };
    Ok(Area {
        court_id: q.court_id.clone(),
        near,
    })
}

#[derive(Debug, Deserialize)]
struct TaskQuery {
    court_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Query(mut q): Query<TaskQuery>,
) -> ApiResult<Json<Value>> {
    q.court_id = scope::own_court(&caller, q.court_id.take(), "list tasks")?;
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            TaskStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown status {s:?}")))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let tasks = state
        .app
        .store
        .list_tasks(q.court_id.as_deref(), status, limit)
        .await?;
    Ok(Json(json!({"tasks": tasks, "count": tasks.len()})))
}

async fn get_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(task_id): Path<String>,
) -> ApiResult<Response> {
    scope::court_of(&caller, "read tasks")?;
    let task_id = path_id("task_id", task_id)?;
    let task = state
        .app
        .store
        .get_task(&task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {task_id:?}")))?;
    scope::may_see_task(&caller, &task)?;
    let target_id = task.target_id.clone();
    let history = state.app.store.task_history(&task_id).await?;
    let mut value = serde_json::to_value(&task).map_err(|e| ApiError::Internal(e.to_string()))?;
    value["history"] =
        serde_json::to_value(history).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Json(value).into_response();
    response.extensions_mut().insert(AuditNote {
        target_id: Some(target_id),
        ..AuditNote::default()
    });
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    /// The reporting court; when given (here or as `X-Court-Id`), it must hold the task.
    court_id: Option<String>,
}

async fn post_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Path(task_id): Path<String>,
    Query(q): Query<StatusQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    scope::court_of(&caller, "report a task's status")?;
    let task_id = path_id("task_id", task_id)?;
    let mut value = parse_json(&body)?;
    if value.get("task_id").is_none() {
        value["task_id"] = Value::String(task_id.clone());
    }
    let report: StatusReport = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("not a StatusReport: {e}")))?;
    report
        .validate(state.app.now(), &state.app.status_limits)
        .map_err(ApiError::BadRequest)?;
    if report.task_id != task_id {
        return Err(ApiError::BadRequest(
            "task_id in the body differs from the path".into(),
        ));
    }
    let named = q.court_id.or_else(|| {
        headers
            .get("x-court-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let court = scope::own_court(&caller, named, "report a status")?;
    let Some(task) = state.app.store.get_task(&task_id).await? else {
        return Err(ApiError::NotFound(format!("no task {task_id:?}")));
    };
    scope::may_report(&caller, &task)?;
    // The audit row is written in the status change's transaction.
    let written = AuditNote {
        written: true,
        ..AuditNote::default()
    };
    let mut response = match status::apply(&state.app, &report, court.as_deref(), &caller).await? {
        StatusOutcome::Applied { task, .. } => {
            Json(serde_json::to_value(task).map_err(|e| ApiError::Internal(e.to_string()))?)
                .into_response()
        }
        StatusOutcome::Refused { reason } => ApiError::Conflict(reason).into_response(),
    };
    response.extensions_mut().insert(written);
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct LocateRequest {
    target_id: String,
}

/// Story 1: a `person_search` task to the court whose area holds the target's domicile
/// (else its first known location).
async fn locate_request(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: LocateRequest = serde_json::from_value(parse_json(&body)?)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"target_id\": ...}}: {e}")))?;
    let target_id = request.target_id;
    let note = |task_id: Option<String>| AuditNote {
        target_id: Some(target_id.clone()),
        task_id,
        ..AuditNote::default()
    };
    if scope::court_of(&caller, "request a search")?.is_some() {
        let target = state.app.store.get_target(&target_id).await?;
        if let Err(e) = scope::may_request_search(&caller, target.as_ref(), &target_id) {
            let mut response = e.into_response();
            response.extensions_mut().insert(note(None));
            return Ok(response);
        }
    }
    let mut response = match locate::request_search(&state.app, &target_id).await {
        Ok(SearchTask::Created(task)) => {
            let id = task.task_id.clone();
            let mut r = (StatusCode::CREATED, Json(task)).into_response();
            r.extensions_mut().insert(note(Some(id)));
            return Ok(r);
        }
        Ok(SearchTask::AlreadyOpen(task)) => {
            let id = task.task_id.clone();
            let mut r = (StatusCode::OK, Json(task)).into_response();
            r.extensions_mut().insert(note(Some(id)));
            return Ok(r);
        }
        Err(e) => match e {
            LocateError::NoTarget(_) => ApiError::NotFound(e.to_string()),
            LocateError::Inactive(_) => ApiError::Conflict(e.to_string()),
            LocateError::NotAPerson | LocateError::NoKnownLocation | LocateError::Unroutable(_) => {
                ApiError::BadRequest(e.to_string())
            }
            LocateError::Store(e) => ApiError::from(e),
        }
        .into_response(),
    };
    // The error's note carries its detail; add the target.
    let detail = response
        .extensions()
        .get::<AuditNote>()
        .and_then(|n| n.detail.clone());
    response.extensions_mut().insert(AuditNote {
        detail,
        ..note(None)
    });
    Ok(response)
}
