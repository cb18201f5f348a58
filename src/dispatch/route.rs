//! The route decision: for a matched sighting, which court asks, which court acts, and why.
//!
//! Pure: a target and a located point in, a [`RouteDecision`] out. The case decides who asks
//! (the lead court, else the court with the most cases, ties by the earliest filing, then by
//! court id); the place decides who acts ([`crate::geo::locate`]).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::contract::model::{Case, Routing, Target, TaskKind};
use crate::geo::locate::{JurisdictionIndex, Location, Placement};

/// Everything a task needs to know about where it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    pub kind: TaskKind,
    pub requesting_court_id: String,
    pub assisting_court_id: String,
    pub routing: Routing,
    /// Great-circle distance from the assisting court's command center to the place.
    pub distance_km: f64,
    /// The court whose area holds the place, participating or not (`None` at sea).
    pub containing_court_id: Option<String>,
}

/// A target without a lead court and without cases has nobody to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {0:?} has neither a lead court nor a case: no court can request a task")]
pub struct NoRequestingCourt(pub String);

/// The court that asks for a target: the lead court when set; otherwise the court with the
/// most cases, ties broken by the earliest filing date, then by court id.
pub fn requesting_court(lead_court_id: Option<&str>, cases: &[Case]) -> Option<String> {
    if let Some(lead) = lead_court_id {
        return Some(lead.to_string());
    }
    // court -> (case count, earliest filing)
    let mut per_court: BTreeMap<&str, (usize, NaiveDate)> = BTreeMap::new();
    for case in cases {
        let entry = per_court
            .entry(case.court_id.as_str())
            .or_insert((0, case.filed_on));
        entry.0 += 1;
        entry.1 = entry.1.min(case.filed_on);
    }
    per_court
        .into_iter()
        .min_by(|(a_id, (a_n, a_first)), (b_id, (b_n, b_first))| {
            b_n.cmp(a_n).then(a_first.cmp(b_first)).then(a_id.cmp(b_id))
        })
        .map(|(court, _)| court.to_string())
}

/// Decides the route of a task of `kind` for `target` at the WGS-84 place `(lon, lat)`,
/// already located as `location`.
pub fn decide(
    target: &Target,
    kind: TaskKind,
    index: &JurisdictionIndex,
    location: &Location,
    lon: f64,
    lat: f64,
) -> Result<RouteDecision, NoRequestingCourt> {
    let requesting = requesting_court(target.lead_court_id.as_deref(), &target.cases)
        .ok_or_else(|| NoRequestingCourt(target.target_id.clone()))?;
    let assisting = &index.court(location.acting_court).court_id;
    let routing = match location.placement {
        Placement::InArea if *assisting == requesting => Routing::OwnJurisdiction,
        Placement::InArea => Routing::InJurisdiction,
        Placement::NearestCenter => Routing::NearestCourt,
    };
    Ok(RouteDecision {
        kind,
        requesting_court_id: requesting,
        assisting_court_id: assisting.clone(),
        routing,
        distance_km: index.distance_km(location.acting_court, lon, lat),
        containing_court_id: location
            .containing_court
            .map(|c| index.court(c).court_id.clone()),
    })
}

/// Where a rejected task goes next: the participating court nearest to the place whose
/// command center has not yet rejected it (`None`: every court has; escalate instead).
pub fn next_court_after_rejection(
    index: &JurisdictionIndex,
    lon: f64,
    lat: f64,
    rejected_by: &[String],
) -> Option<(String, f64)> {
    index
        .centers_by_distance(lon, lat)
        .map(|(court, km)| (index.court(court).court_id.clone(), km))
        .find(|(court, _)| !rejected_by.contains(court))
}

/// The task kind a sighting of this kind of target produces.
pub fn sighting_task_kind(kind: crate::contract::model::TargetKind) -> TaskKind {
    match kind {
        crate::contract::model::TargetKind::Vehicle => TaskKind::VehicleSeizure,
        crate::contract::model::TargetKind::Person => TaskKind::PersonLocate,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::contract::model::{TargetKind, TargetStatus};
    use crate::geo::geodata::GeoData;

    fn case(court: &str, filed: &str) -> Case {
        Case {
            case_no: format!("({filed}) {court}"),
            court_id: court.into(),
            filed_on: filed.parse().unwrap(),
            amount_cny: None,
        }
    }

    fn target(lead: Option<&str>, cases: Vec<Case>) -> Target {
        Target {
            target_id: "T-1".into(),
            kind: TargetKind::Vehicle,
            plate: Some("浙B12345".parse().unwrap()),
            person_id: None,
            name: None,
            status: TargetStatus::Active,
            lead_court_id: lead.map(Into::into),
            cases,
            known_locations: vec![],
            valid_until: None,
        }
    }

    fn index() -> JurisdictionIndex {
        JurisdictionIndex::new(Arc::new(GeoData::shipped())).unwrap()
    }

    /// The seat of a court, which lies inside its own area in the shipped data.
    fn seat(ix: &JurisdictionIndex, court: &str) -> (f64, f64) {
        let c = ix.data().court(court).unwrap().command_center;
        (c.x, c.y)
    }

    fn route(ix: &JurisdictionIndex, t: &Target, (lon, lat): (f64, f64)) -> RouteDecision {
        decide(
            t,
            TaskKind::VehicleSeizure,
            ix,
            &ix.locate(lon, lat),
            lon,
            lat,
        )
        .unwrap()
    }

    #[test]
    fn lead_court_wins_over_case_counts() {
        let cases = vec![
            case("cixi", "2024-01-01"),
            case("cixi", "2024-02-01"),
            case("yuyao", "2023-01-01"),
        ];
        assert_eq!(
            requesting_court(Some("yuyao"), &cases).as_deref(),
            Some("yuyao")
        );
    }

    #[test]
    fn most_cases_wins_without_a_lead() {
        // Story 2: three cases at Yuyao, one at Cixi (filed earlier): Yuyao asks.
        let cases = vec![
            case("cixi", "2023-06-01"),
            case("yuyao", "2024-01-01"),
            case("yuyao", "2024-02-01"),
            case("yuyao", "2024-03-01"),
        ];
        assert_eq!(requesting_court(None, &cases).as_deref(), Some("yuyao"));
    }

    #[test]
    fn ties_go_to_the_earliest_filing_then_court_id() {
        let cases = vec![case("yuyao", "2024-05-01"), case("cixi", "2024-04-01")];
        assert_eq!(requesting_court(None, &cases).as_deref(), Some("cixi"));
        let same_day = vec![case("yuyao", "2024-05-01"), case("cixi", "2024-05-01")];
        assert_eq!(requesting_court(None, &same_day).as_deref(), Some("cixi"));
        assert_eq!(requesting_court(None, &[]), None);
    }

    #[test]
    fn headline_car_seen_in_cixi_is_in_jurisdiction() {
        let ix = index();
        let t = target(None, vec![case("yuyao", "2024-03-01")]);
        let r = route(&ix, &t, seat(&ix, "cixi"));
        assert_eq!(r.requesting_court_id, "yuyao");
        assert_eq!(r.assisting_court_id, "cixi");
        assert_eq!(r.routing, Routing::InJurisdiction);
        assert_eq!(r.kind, TaskKind::VehicleSeizure);
        assert!(
            r.distance_km < 0.01,
            "at the seat itself: {}",
            r.distance_km
        );
    }

    #[test]
    fn seen_at_home_is_own_jurisdiction() {
        let ix = index();
        let t = target(None, vec![case("yuyao", "2024-03-01")]);
        let (lon, lat) = seat(&ix, "yuyao");
        let r = route(&ix, &t, (lon + 0.02, lat));
        assert_eq!(r.routing, Routing::OwnJurisdiction);
        assert_eq!(r.assisting_court_id, "yuyao");
        assert!((1.5..2.5).contains(&r.distance_km), "{}", r.distance_km);
    }

    #[test]
    fn outside_every_participating_area_is_nearest_court() {
        let ix = index();
        let t = target(None, vec![case("ninghai", "2024-03-01")]);
        // In Shangyu (known area, not participating): Yuyao is nearest.
        let r = route(&ix, &t, seat(&ix, "shangyu"));
        assert_eq!(r.routing, Routing::NearestCourt);
        assert_eq!(r.assisting_court_id, "yuyao");
        assert_eq!(r.containing_court_id.as_deref(), Some("shangyu"));
        // At sea: no containing court at all.
        let r = route(&ix, &t, (122.6, 29.4));
        assert_eq!(r.routing, Routing::NearestCourt);
        assert_eq!(r.containing_court_id, None);
        // Nearest court even when the nearest is the requesting court itself.
        let t = target(None, vec![case("xiangshan", "2024-03-01")]);
        let r = route(&ix, &t, (122.6, 29.4));
        assert_eq!(
            (r.routing, r.assisting_court_id.as_str()),
            (Routing::NearestCourt, "xiangshan")
        );
    }

    #[test]
    fn a_supervising_court_can_request_but_the_place_decides_who_acts() {
        let ix = index();
        let t = target(
            Some("ningbo_intermediate"),
            vec![case("yuyao", "2024-03-01")],
        );
        let r = route(&ix, &t, seat(&ix, "beilun"));
        assert_eq!(r.requesting_court_id, "ningbo_intermediate");
        assert_eq!(
            (r.assisting_court_id.as_str(), r.routing),
            ("beilun", Routing::InJurisdiction)
        );
    }

    #[test]
    fn a_rejected_task_goes_to_the_next_nearest_court_then_nowhere() {
        let ix = index();
        let (lon, lat) = seat(&ix, "cixi");
        let first = next_court_after_rejection(&ix, lon, lat, &["cixi".to_string()]).unwrap();
        assert_ne!(first.0, "cixi");
        assert!(first.1 > 5.0 && first.1 < 40.0, "{first:?}");
        let all: Vec<String> = ix
            .data()
            .courts
            .iter()
            .map(|c| c.court_id.clone())
            .collect();
        assert_eq!(next_court_after_rejection(&ix, lon, lat, &all), None);
    }

    #[test]
    fn task_kinds_follow_the_target() {
        assert_eq!(
            sighting_task_kind(TargetKind::Vehicle),
            TaskKind::VehicleSeizure
        );
        assert_eq!(
            sighting_task_kind(TargetKind::Person),
            TaskKind::PersonLocate
        );
    }

    #[test]
    fn no_court_to_ask_is_an_error() {
        let ix = index();
        let t = target(None, vec![]);
        let (lon, lat) = seat(&ix, "cixi");
        assert!(
            decide(
                &t,
                TaskKind::VehicleSeizure,
                &ix,
                &ix.locate(lon, lat),
                lon,
                lat
            )
            .is_err()
        );
    }
}
