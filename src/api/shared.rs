//! What the HTTP handlers and the middlewares share: the state, the error answer, and the
//! note a handler leaves for the audit of its request.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::app::App;
use crate::flow::pipeline::Pending;
use crate::mqtt::IngestClient;
use crate::store::StoreError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The application context the handlers act through, shared with the pipeline and the
    /// timers.
    pub app: App,
    /// For readiness: is the broker connected.
    pub ingest: IngestClient,
    /// For readiness: how long the oldest message taken in has waited for its ack.
    pub pending: std::sync::Arc<Pending>,
    /// Past this age the pipeline counts as stuck.
    pub max_unacked_age: std::time::Duration,
    pub metrics: PrometheusHandle,
    /// Whether requests need a bearer token (`--auth`, on by default).
    pub auth: bool,
    /// Who may read `/metrics` while the database cannot check tokens.
    pub scrapers: std::sync::Arc<crate::api::scrapers::RecentScrapers>,
    /// Cancelled when the service stops: ends the open event streams.
    pub stop: tokio_util::sync::CancellationToken,
}

/// What a handler adds to the audit row of its request (a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub target_id: Option<String>,
    pub task_id: Option<String>,
    pub detail: Option<String>,
    /// The row is already written (in the transaction of the change).
    pub written: bool,
}

/// An answer other than success.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    /// The caller's scope does not allow this (another court's task, an admin-only route).
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            // The database is unreachable, busy or changed underneath: the client may retry.
            tracing::warn!(error = %e, "database unavailable to an HTTP request");
            ApiError::Unavailable("the database is unavailable or busy; retry later".into())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, detail) = match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d),
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, "refused", d),
            ApiError::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", d),
            ApiError::Internal(d) => {
                tracing::error!(detail = %d, "internal error answering an HTTP request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the service log".into(),
                )
            }
        };
        let note = AuditNote {
            detail: Some(format!("{error}: {detail}")),
            ..AuditNote::default()
        };
        let mut response =
            (status, Json(json!({"error": error, "detail": detail}))).into_response();
        response.extensions_mut().insert(note);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
