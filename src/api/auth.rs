//! Authentication and scopes of the HTTP API: one middleware turns the bearer token into the
//! caller ([`Principal`], a request extension every handler behind it can take), and small
//! checks say what each scope may do (docs/contract.md, "Authentication").

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::shared::{ApiError, ApiResult, AppState};
use crate::app::auth::{self, Principal, Scope};
use crate::contract::model::Target;
use crate::contract::task::Task;

/// Answers 401 without a valid `Authorization: Bearer` token (or, on the event stream only,
/// `?access_token=`); otherwise hands the request on with its caller. With `--auth false`
/// every caller is [`Principal::unauthenticated`].
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = if !state.auth {
        Principal::unauthenticated()
    } else {
        let from_query = query_token(&req);
        let Some(token) = bearer(req.headers()).or(from_query.as_deref()) else {
            return unauthorized("an Authorization: Bearer token is required");
        };
        let verified = if req.uri().path() == "/metrics" {
            state.scrapers.verify(&state.app.store, token).await
        } else {
            auth::verify(&state.app.store, token).await
        };
        match verified {
            Ok(Some(caller)) => caller,
            Ok(None) => return unauthorized("the token is unknown or revoked"),
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, token) = value.split_once(' ')?;
    kind.eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The one path that takes its token from the query too: the event stream (`api::events`).
const QUERY_TOKEN_PATH: &str = "/api/v1/events";

/// The `access_token` query parameter of the event stream: browsers' `EventSource` cannot
/// send headers. Only there, so that a token does not spread into URLs (and the logs of
/// proxies) where a header works; the service itself never logs a query string.
fn query_token(req: &Request) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: Option<String>,
    }
    if req.uri().path() != QUERY_TOKEN_PATH {
        return None;
    }
    let query = axum::extract::Query::<Token>::try_from_uri(req.uri()).ok()?;
    query
        .0
        .access_token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn unauthorized(detail: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized", "detail": detail})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn forbidden(caller: &Principal, what: &str) -> ApiError {
    ApiError::Forbidden(format!("scope {} may not {what}", caller.scope))
}

/// Targets, the audit log: admin only.
pub fn require_admin(caller: &Principal, what: &str) -> ApiResult<()> {
    match caller.scope {
        Scope::Admin => Ok(()),
        _ => Err(forbidden(caller, what)),
    }
}

/// Metrics: ops or admin.
pub fn require_ops(caller: &Principal) -> ApiResult<()> {
    match caller.scope {
        Scope::Admin | Scope::Ops => Ok(()),
        Scope::Court(_) => Err(forbidden(caller, "read metrics")),
    }
}

/// The court a court-scoped caller acts for; admin gets `None` (any court), ops is refused.
pub fn court_of(caller: &Principal, what: &str) -> ApiResult<Option<String>> {
    match &caller.scope {
        Scope::Admin => Ok(None),
        Scope::Court(c) => Ok(Some(c.clone())),
        Scope::Ops => Err(forbidden(caller, what)),
    }
}

/// A court may name only itself where a request names a court (`court_id=`, `X-Court-Id`).
/// Returns the court the request is about.
pub fn own_court(
    caller: &Principal,
    asked: Option<String>,
    what: &str,
) -> ApiResult<Option<String>> {
    match (court_of(caller, what)?, asked) {
        (None, asked) => Ok(asked),
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(asked)) if asked == own => Ok(Some(own)),
        (Some(own), Some(asked)) => Err(ApiError::Forbidden(format!(
            "a token of court {own} may not {what} for court {asked}"
        ))),
    }
}

/// A court sees the tasks it holds or requested.
pub fn may_see_task(caller: &Principal, task: &Task) -> ApiResult<()> {
    match court_of(caller, "read tasks")? {
        None => Ok(()),
        Some(c) if c == task.assisting_court_id || c == task.requesting_court_id => Ok(()),
        Some(c) => Err(ApiError::Forbidden(format!(
            "task {} is neither held nor requested by court {c}",
            task.task_id
        ))),
    }
}

/// A court reports the status only of tasks it holds.
pub fn may_report(caller: &Principal, task: &Task) -> ApiResult<()> {
    match court_of(caller, "report a task's status")? {
        None => Ok(()),
        Some(c) if c == task.assisting_court_id => Ok(()),
        Some(c) => Err(ApiError::Forbidden(format!(
            "task {} is held by another court than {c}",
            task.task_id
        ))),
    }
}

/// A court asks for a search only for a target with a case of its own (or that it leads).
pub fn may_request_search(caller: &Principal, target: Option<&Target>, id: &str) -> ApiResult<()> {
    let Some(own) = court_of(caller, "request a search")? else {
        return Ok(());
    };
    let ours = target.is_some_and(|t| {
        t.lead_court_id.as_deref() == Some(own.as_str())
            || t.cases.iter().any(|c| c.court_id == own)
    });
    if ours {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "court {own} has no case of target {id:?}"
        )))
    }
}
