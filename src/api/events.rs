//! `GET /api/v1/events`: the live event stream of a command-center console, as Server-Sent
//! Events. It reads the event log (every task, update, alert and escalation the outbox
//! publishes, written in the same transaction), so it tells what the broker is told, and a
//! console that reconnects with `Last-Event-ID` gets exactly what it missed.
//!
//! A court's token sees the events addressed to its court, an admin's all of them; ops is
//! refused. Browsers' `EventSource` cannot set headers, so the token may come as
//! `?access_token=` here (and only here; see `api::auth`), and the last id as
//! `?last_event_id=`.
//!
//! Live events are found by polling the log every [`POLL_EVERY`] from the last id sent:
//! it needs nothing from the writer, so it works the same for every replica sharing the
//! database.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::auth::court_of;
use crate::api::shared::{ApiError, ApiResult, AppState};
use crate::app::auth::Principal;
use crate::store::{AuditResult, LoggedEvent, Store};

/// How often a stream looks for new events: what bounds the delay from publication to the
/// console (measured by `tests/events.rs`).
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long a stream waits before reading again after the database failed it.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);
/// The comment sent on an idle stream, so proxies do not close it and clients see it alive.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// Events read per statement.
const READ_BATCH: i64 = 500;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Resume after this event id (as the `Last-Event-ID` header, which wins).
    last_event_id: Option<String>,
    /// Read by the token middleware; named here so it is not an unknown parameter.
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Where a stream starts: after the id the client last saw, or, with none, after the newest
/// event (only new events).
fn resume_after(headers: &HeaderMap, query: &EventsQuery) -> ApiResult<Option<i64>> {
    let given = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::BadRequest("Last-Event-ID must be an event id (an integer)".into())
        })?),
        None => query.last_event_id.as_deref(),
    };
    let Some(text) = given.map(str::trim) else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        _ => Err(ApiError::BadRequest(format!(
            "Last-Event-ID {text:?} is not an event id (an integer from 0)"
        ))),
    }
}

pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Response> {
    let court = court_of(&caller, "read the event stream")?;
    let store = state.app.store.clone();
    let after = match resume_after(&headers, &query)? {
        Some(id) => id,
        None => store.latest_event_id().await?,
    };
    let mut entry = caller.audit("events.stream", AuditResult::Ok);
    entry.detail = Some(format!("after event {after}"));
    store.append_audit(&entry, state.app.now()).await?;
    let cursor = Cursor {
        store,
        court,
        after,
        ready: VecDeque::new(),
        stop: state.stop.clone(),
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok::<_, Infallible>(event), cursor))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE_EVERY))
        .into_response())
}

/// One stream's place in the event log.
struct Cursor {
    store: Store,
    court: Option<String>,
    /// The id of the last event read.
    after: i64,
    ready: VecDeque<LoggedEvent>,
    /// Ends the stream when the service stops, so that open consoles do not hold the
    /// shutdown up; they reconnect to another replica or to the restarted service.
    stop: CancellationToken,
}

impl Cursor {
    /// The next event to send; `None` once the service stops.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(as_sse(e));
            }
            let pause = match self
                .store
                .events_after(self.after, self.court.as_deref(), READ_BATCH)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.after = events.last().map_or(self.after, |e| e.id);
                    self.ready.extend(events);
                    continue;
                }
                Ok(_) => POLL_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "the event stream could not read the event log");
                    RETRY_AFTER_ERROR
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// `id: <event id>`, `event: <kind>`, `data: <the MQTT payload>` (JSON on one line).
fn as_sse(e: LoggedEvent) -> Event {
    Event::default()
        .id(e.id.to_string())
        .event(e.kind)
        .data(String::from_utf8_lossy(&e.payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(last: Option<&str>) -> EventsQuery {
        EventsQuery {
            last_event_id: last.map(str::to_string),
            access_token: None,
        }
    }

    #[test]
    fn the_header_wins_over_the_query_and_bad_ids_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, &query(None)).unwrap(), None);
        assert_eq!(resume_after(&headers, &query(Some("7"))).unwrap(), Some(7));
        headers.insert("last-event-id", "42".parse().unwrap());
        assert_eq!(resume_after(&headers, &query(Some("7"))).unwrap(), Some(42));
        for bad in ["-1", "x", ""] {
            headers.insert("last-event-id", bad.parse().unwrap());
            assert!(resume_after(&headers, &query(None)).is_err(), "{bad:?}");
        }
    }
}
