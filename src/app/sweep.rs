//! Sweep planning: the active targets that may be found in a court's area or near a point.

use std::sync::Arc;

use crate::app::context::App;
use crate::clock::Clock;
use crate::contract::model::{Target, TargetStatus};
use crate::geo::locate::JurisdictionIndex;
use crate::matching::sweep::SweepIndex;
use crate::store::{Store, StoreError};

/// Why a sweep could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("unknown court_id {0:?}")]
    UnknownCourt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a sweep covers: a court's area and/or a circle `(lat, lon, radius_km)`, WGS-84.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Area {
    pub court_id: Option<String>,
    pub near: Option<(f64, f64, f64)>,
}

/// The live hotlist's active, unexpired targets with a known location in `area`, ordered
/// by target id.
pub fn live(app: &App, area: &Area) -> Result<Vec<Arc<Target>>, SweepError> {
    let court = court_position(&app.index, area.court_id.as_deref())?;
    Ok(app
        .targets
        .sweep_index()
        .in_area(&app.index, court, area.near, app.now()))
}

/// The same from the store, for a command run without a service: every active target read
/// once.
pub async fn stored(
    store: &Store,
    index: &JurisdictionIndex,
    clock: &Clock,
    area: &Area,
) -> Result<Vec<Arc<Target>>, SweepError> {
    let court = court_position(index, area.court_id.as_deref())?;
    let targets = store
        .all_targets()
        .await?
        .into_iter()
        .filter(|t| t.status == TargetStatus::Active)
        .map(Arc::new)
        .collect();
    Ok(SweepIndex::build(targets).in_area(index, court, area.near, clock.now()))
}

fn court_position(
    index: &JurisdictionIndex,
    court_id: Option<&str>,
) -> Result<Option<usize>, SweepError> {
    court_id
        .map(|id| {
            index
                .data()
                .court_position(id)
                .ok_or_else(|| SweepError::UnknownCourt(id.to_string()))
        })
        .transpose()
}
