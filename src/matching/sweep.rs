//! Sweep planning: which active targets may be found in a court's area or within a radius,
//! from an R-tree over their known locations.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use geo::BoundingRect;
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::contract::model::Target;
use crate::geo::datum;
use crate::geo::locate::JurisdictionIndex;

/// An R-tree over the known locations (WGS-84) of active targets, for sweep planning:
/// which targets may be found in a court's area, or within a radius.
pub struct SweepIndex {
    tree: RTree<GeomWithData<[f64; 2], usize>>,
    targets: Vec<Arc<Target>>,
}

impl SweepIndex {
    pub fn build(mut targets: Vec<Arc<Target>>) -> SweepIndex {
        targets.sort_by(|a, b| a.target_id.cmp(&b.target_id));
        let points = targets
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                t.known_locations.iter().map(move |loc| {
                    let (lon, lat) = datum::to_wgs84(loc.datum, loc.lon, loc.lat);
                    GeomWithData::new([lon, lat], i)
                })
            })
            .collect();
        SweepIndex {
            tree: RTree::bulk_load(points),
            targets,
        }
    }

    /// Active targets with a known location in `court`'s area (when given) and within
    /// `(lat, lon, radius_km)` (when given): what a sweep plans for. Ordered by target id.
    pub fn in_area(
        &self,
        index: &JurisdictionIndex,
        court: Option<usize>,
        near: Option<(f64, f64, f64)>,
        now: DateTime<Utc>,
    ) -> Vec<Arc<Target>> {
        let bbox = match court {
            None => None,
            Some(c) => match index
                .area_of(&index.court(c).court_id)
                .and_then(BoundingRect::bounding_rect)
            {
                Some(r) => Some(([r.min().x, r.min().y], [r.max().x, r.max().y])),
                None => return Vec::new(), // a court without an area holds no locations
            },
        };
        let inside =
            |lon: f64, lat: f64| court.is_none_or(|c| index.containing_court(lon, lat) == Some(c));
        self.query(bbox, inside, near, now)
    }

    /// Targets with a known location inside `bbox` that `inside` accepts, and (if given)
    /// within `radius_km` of `(lat, lon)`. Ordered by target id; expired targets are left out.
    pub fn query(
        &self,
        bbox: Option<([f64; 2], [f64; 2])>,
        inside: impl Fn(f64, f64) -> bool,
        near: Option<(f64, f64, f64)>,
        now: DateTime<Utc>,
    ) -> Vec<Arc<Target>> {
        // The search box: the bbox, the radius's box, or where they overlap.
        let around = near.map(|(lat, lon, r)| {
            let dlat = r / 111.0 + 1e-6;
            let dlon = r / (111.0 * lat.to_radians().cos().max(0.01)) + 1e-6;
            ([lon - dlon, lat - dlat], [lon + dlon, lat + dlat])
        });
        let envelope = match (bbox, around) {
            (Some((lo, hi)), Some((alo, ahi))) => {
                let lo = [lo[0].max(alo[0]), lo[1].max(alo[1])];
                let hi = [hi[0].min(ahi[0]), hi[1].min(ahi[1])];
                if lo[0] > hi[0] || lo[1] > hi[1] {
                    return Vec::new();
                }
                Some((lo, hi))
            }
            (one, other) => one.or(other),
        }
        .map(|(lo, hi)| rstar::AABB::from_corners(lo, hi));
        let accept = |p: &[f64; 2]| {
            inside(p[0], p[1])
                && near
                    .is_none_or(|(lat, lon, r)| datum::great_circle_km(lon, lat, p[0], p[1]) <= r)
        };
        let hits: BTreeSet<usize> = match envelope {
            Some(envelope) => self
                .tree
                .locate_in_envelope(&envelope)
                .filter(|p| accept(p.geom()))
                .map(|p| p.data)
                .collect(),
            None => self
                .tree
                .iter()
                .filter(|p| accept(p.geom()))
                .map(|p| p.data)
                .collect(),
        };
        hits.into_iter()
            .map(|i| self.targets[i].clone())
            .filter(|t| t.is_matchable(now))
            .collect()
    }
}
