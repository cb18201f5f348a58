//! `leadrelay check-data`: the loader's structural checks plus the costlier cross-checks
//! that only an operator preparing data needs, chiefly overlaps between jurisdictions.
//!
//! Real county data is generalised per city, so neighbouring areas from different source
//! files overlap by slivers (the national set: 0.02 % of its area). An overlap is an error
//! only above a tolerance; smaller ones are resolved by the locator's precedence rule.

use geo::{Area, BooleanOps, BoundingRect, ChamberlainDuquetteArea, Intersects};
use serde::Serialize;

use crate::geo::geodata::{GeoData, Problem, Severity, Source};

/// Default overlap tolerance between two jurisdictions, in km²: above the seams of the
/// shipped data (at most 0.09 km², between files generalised separately), far below a
/// misplaced or duplicated county.
pub const DEFAULT_MAX_OVERLAP_KM2: f64 = 0.5;

/// What `check-data` found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub jurisdictions: usize,
    pub courts: usize,
    pub vertices: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// Loads leniently, then adds overlap findings above `max_overlap_km2`.
pub fn check(jurisdictions: &[Source], courts: &Source, max_overlap_km2: f64) -> Report {
    let (data, mut problems) = GeoData::load_lenient(jurisdictions, courts);
    problems.extend(overlaps(&data, max_overlap_km2));
    Report {
        jurisdictions: data.jurisdictions.len(),
        courts: data.courts.len(),
        vertices: data
            .jurisdictions
            .iter()
            .flat_map(|j| &j.area.0)
            .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
            .sum(),
        problems,
    }
}

/// Pairs of jurisdictions whose intersection exceeds `max_overlap_km2`.
pub fn overlaps(data: &GeoData, max_overlap_km2: f64) -> Vec<Problem> {
    let boxes: Vec<_> = data
        .jurisdictions
        .iter()
        .map(|j| j.area.bounding_rect())
        .collect();
    let mut found = Vec::new();
    for (i, a) in data.jurisdictions.iter().enumerate() {
        for (k, b) in data.jurisdictions.iter().enumerate().skip(i + 1) {
            let (Some(ba), Some(bb)) = (boxes[i], boxes[k]) else {
                continue;
            };
            if !ba.intersects(&bb) {
                continue;
            }
            let shared = a.area.intersection(&b.area);
            if shared.unsigned_area() == 0.0 {
                continue;
            }
            let km2 = shared.chamberlain_duquette_unsigned_area() / 1e6;
            if km2 > max_overlap_km2 {
                let (file, _) = a.origin.rsplit_once('#').unwrap_or((&a.origin, ""));
                found.push(Problem {
                    severity: Severity::Error,
                    file: file.to_string(),
                    item: Some(format!("court_id {:?} and {:?}", a.court_id, b.court_id)),
                    reason: format!(
                        "areas overlap by {km2:.3} km² (tolerance {max_overlap_km2} km²)"
                    ),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::geodata::{
        SHIPPED_COURTS, SHIPPED_NEIGHBOUR_JURISDICTIONS, SHIPPED_NINGBO_JURISDICTIONS,
    };

    #[test]
    fn shipped_data_has_no_findings() {
        let report = check(
            &[
                Source::inline("ningbo", SHIPPED_NINGBO_JURISDICTIONS),
                Source::inline("neighbours", SHIPPED_NEIGHBOUR_JURISDICTIONS),
            ],
            &Source::inline("courts.csv", SHIPPED_COURTS),
            DEFAULT_MAX_OVERLAP_KM2,
        );
        assert_eq!(report.problems, vec![], "{:#?}", report.problems);
        assert_eq!(report.jurisdictions, 18);
        assert!(report.vertices > 3585);
    }

    #[test]
    fn ningbo_alone_reports_neighbour_courts_without_polygons() {
        let report = check(
            &[Source::inline("ningbo", SHIPPED_NINGBO_JURISDICTIONS)],
            &Source::inline("courts.csv", SHIPPED_COURTS),
            DEFAULT_MAX_OVERLAP_KM2,
        );
        assert_eq!(report.errors(), 0);
        let warned: Vec<_> = report
            .problems
            .iter()
            .filter_map(|p| p.item.clone())
            .collect();
        assert_eq!(warned.len(), 8, "{warned:?}");
        assert!(warned.iter().any(|w| w.contains("shangyu")));
    }

    #[test]
    fn overlapping_areas_are_reported() {
        let geojson = r#"{"type":"FeatureCollection","datum":"wgs84","features":[
          {"type":"Feature","properties":{"court_id":"a"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]]}},
          {"type":"Feature","properties":{"court_id":"b"},"geometry":{"type":"Polygon","coordinates":[[[121.05,30],[121.2,30],[121.2,30.1],[121.05,30.1],[121.05,30]]]}}]}"#;
        let courts = "court_id,court_name,adcode,lat,lon,datum\na,A,1,30.05,121.02,wgs84\nb,B,2,30.05,121.15,wgs84\n";
        let report = check(
            &[Source::inline("o.geojson", geojson)],
            &Source::inline("c", courts),
            0.05,
        );
        assert_eq!(report.errors(), 1);
        let p = &report.problems[0];
        assert!(p.reason.contains("overlap"), "{p}");
        // 0.05° x 0.1° near 30°N is about 4.8 km x 11.1 km.
        assert!(p.reason.starts_with("areas overlap by 5"), "{p}");
    }
}
