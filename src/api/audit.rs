//! The audit of the HTTP API: a middleware that writes one audit row per request that reads
//! or changes a target or a task (who, what, when, result), and `GET /api/v1/audit`.
//!
//! The row is written before the answer leaves: a read whose row cannot be written is
//! answered 503 instead of with the data. A status report's row is written by the store in
//! the report's own transaction ((`AuditNote::written`)).

use axum::extract::{MatchedPath, Query, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::auth::require_admin;
use crate::api::shared::{ApiError, ApiResult, AppState, AuditNote};
use crate::app::auth::Principal;
use crate::store::{AuditFilter, AuditResult};

#[derive(Debug, Deserialize)]
struct Purpose {
    purpose: Option<String>,
}

/// The audit name of a route: `target.get`, `task.status`, ...
fn action(method: &Method, route: &str) -> String {
    let name = match (method.as_str(), route) {
        ("GET", "/api/v1/targets") => "target.sweep",
        ("POST", "/api/v1/targets:batch") => "target.put_batch",
        ("GET", "/api/v1/targets/{target_id}") => "target.get",
        ("PUT", "/api/v1/targets/{target_id}") => "target.put",
        ("DELETE", "/api/v1/targets/{target_id}") => "target.withdraw",
        ("GET", "/api/v1/tasks") => "task.list",
        ("GET", "/api/v1/tasks/{task_id}") => "task.get",
        ("POST", "/api/v1/tasks/{task_id}/status") => "task.status",
        ("POST", "/api/v1/locate-requests") => "task.locate_request",
        _ => return format!("{method} {route}"),
    };
    name.to_string()
}

/// Writes the audit row of a request, once its handler has answered.
/// Longest id or purpose kept in an audit row, in characters.
const MAX_RECORDED_CHARS: usize = 500;

/// What a caller sent, as the audit row can hold it: control characters escaped (a NUL in a
/// refused path id is still worth recording, and PostgreSQL text cannot hold it) and cut to
/// [`MAX_RECORDED_CHARS`].
fn recordable(text: String) -> String {
    if !text.chars().any(char::is_control) && text.chars().count() <= MAX_RECORDED_CHARS {
        return text;
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .take(MAX_RECORDED_CHARS)
        .collect()
}

pub async fn record(
    State(state): State<AppState>,
    route: MatchedPath,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let Some(caller) = req.extensions().get::<Principal>().cloned() else {
        return ApiError::Internal("audit without a caller".into()).into_response();
    };
    let action = action(req.method(), route.as_str());
    let purpose = Query::<Purpose>::try_from_uri(req.uri())
        .ok()
        .and_then(|q| q.0.purpose);
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    };
    let (target_id, task_id) = (param("target_id"), param("task_id"));
    let response = next.run(req).await;
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    if note.written {
        return response;
    }
    let status = response.status();
    let result = if status.is_success() {
        AuditResult::Ok
    } else if status.is_server_error() {
        AuditResult::Error
    } else {
        AuditResult::Refused
    };
    let mut entry = caller.audit(&action, result);
    entry.target_id = note.target_id.or(target_id).map(recordable);
    entry.task_id = note.task_id.or(task_id).map(recordable);
    entry.purpose = purpose.map(recordable);
    entry.detail = note.detail;
    match state.app.store.append_audit(&entry, state.app.now()).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, action, "could not write an audit row; answer withheld");
            ApiError::from(e).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    target_id: Option<String>,
    task_id: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<String>,
    /// RFC 3339, exclusive.
    to: Option<String>,
    /// The `next` of the previous page.
    before: Option<i64>,
    limit: Option<i64>,
}

fn parse_time(
    name: &str,
    text: Option<String>,
) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| ApiError::BadRequest(format!("{name}={t:?}: not an RFC 3339 time: {e}")))
    })
    .transpose()
}

/// `GET /api/v1/audit`: admin only; newest first, `limit` (default 100, at most 1,000) rows
/// a page, `next` the `before=` of the following page (absent on the last).
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    require_admin(&caller, "read the audit log")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 1000".into()));
    }
    let filter = AuditFilter {
        actor: q.actor,
        target_id: q.target_id,
        task_id: q.task_id,
        from: parse_time("from", q.from)?,
        to: parse_time("to", q.to)?,
        before_id: q.before,
        limit,
    };
    let entries = state.app.store.audit_log(&filter).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let mut body = json!({"entries": entries, "count": entries.len()});
    if let Some(next) = next {
        body["next"] = Value::from(next);
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}
