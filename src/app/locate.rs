//! Locate requests: a `person_search` task to the court whose area holds a person target's
//! domicile (else its first known location).

use crate::app::context::App;
use crate::contract::model::{TargetKind, TaskKind};
use crate::contract::task::Task;
use crate::dispatch::route;
use crate::geo::datum;
use crate::store::{SearchOutcome, StoreError};

/// Why no search task was opened.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("no target {0:?}")]
    NoTarget(String),
    #[error("locate requests are for person targets")]
    NotAPerson,
    #[error("target {0:?} is not active")]
    Inactive(String),
    #[error("the target has no known location to search")]
    NoKnownLocation,
    #[error("{0}")]
    Unroutable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The search task for a locate request.
#[derive(Debug, Clone)]
pub enum SearchTask {
    /// Opened now, and sent to the assisting court.
    Created(Task),
    /// The target already had an open task (of any kind).
    AlreadyOpen(Task),
}

/// Opens (or finds) the search task for the person target `target_id`.
pub async fn request_search(app: &App, target_id: &str) -> Result<SearchTask, LocateError> {
    let stored = app
        .store
        .get_target(target_id)
        .await?
        .ok_or_else(|| LocateError::NoTarget(target_id.to_string()))?;
    if stored.kind != TargetKind::Person {
        return Err(LocateError::NotAPerson);
    }
    if !stored.is_matchable(app.now()) {
        return Err(LocateError::Inactive(stored.target_id));
    }
    // The merged view (linked targets' cases too), when the target is in the hotlist.
    let target = stored
        .person_id
        .as_ref()
        .and_then(|id| app.targets.snapshot().match_person(id).cloned())
        .map(|t| (*t).clone())
        .unwrap_or(stored);
    let place = target
        .known_locations
        .iter()
        .find(|l| l.label == "domicile")
        .or_else(|| target.known_locations.first())
        .ok_or(LocateError::NoKnownLocation)?;
    let (lon, lat) = datum::to_wgs84(place.datum, place.lon, place.lat);
    let location = app.index.locate(lon, lat);
    let decision = route::decide(
        &target,
        TaskKind::PersonSearch,
        &app.index,
        &location,
        lon,
        lat,
    )
    .map_err(|e| LocateError::Unroutable(e.to_string()))?;
    let outcome = app
        .store
        .create_search_task(
            &target.target_id,
            &target.cases,
            &decision,
            &app.deadlines,
            &app.topics,
            app.now(),
        )
        .await?;
    match outcome {
        SearchOutcome::Created(task, messages) => {
            app.publisher
                .send_dispatch(messages, &task.assisting_court_id, task.routing)
                .await;
            Ok(SearchTask::Created(task))
        }
        SearchOutcome::AlreadyOpen(task) => Ok(SearchTask::AlreadyOpen(task)),
        SearchOutcome::TargetInactive => Err(LocateError::Inactive(target.target_id)),
    }
}
