//! The contract's value types (`docs/contract.md`, v1): targets and their cases, and the names
//! of task kinds and routings. Serde shapes here are the wire format; change them only with
//! a contract version bump.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;
use crate::geo::datum::Datum;
use crate::geo::geodata::is_valid_court_id;

/// What a target (and a sighting) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Vehicle,
    Person,
}

/// Whether a target still produces tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    #[default]
    Active,
    /// The vehicle was taken: no more tasks.
    Seized,
    /// The case was closed or the flag lifted: no more tasks.
    Withdrawn,
}

/// One enforcement case against a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The court's case number, e.g. `(2024)浙0281执1234号`.
    pub case_no: String,
    /// The court that owns (enforces) the case.
    pub court_id: String,
    /// Filing date; breaks ties when choosing the requesting court.
    pub filed_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cny: Option<f64>,
}

/// A place where the target may be found (domicile, workplace, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownLocation {
    pub label: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub datum: Datum,
}

/// A flagged vehicle or person with its cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub target_id: String,
    pub kind: TargetKind,
    /// Required for vehicles; stored normalised.
    #[serde(default)]
    pub plate: Option<Plate>,
    /// Required for persons.
    #[serde(default)]
    pub person_id: Option<PersonId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub status: TargetStatus,
    /// Set when related cases were consolidated under one lead court.
    #[serde(default)]
    pub lead_court_id: Option<String>,
    pub cases: Vec<Case>,
    #[serde(default)]
    pub known_locations: Vec<KnownLocation>,
    /// After this instant the target no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// A target that breaks the contract's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target_id must be 1 to 128 printable characters")]
    BadTargetId,
    #[error("a vehicle target needs a plate")]
    VehicleWithoutPlate,
    #[error("a person target needs a person_id")]
    PersonWithoutId,
    #[error("a target needs at least one case")]
    NoCases,
    #[error("court id {0:?} must be lower-case ASCII letters, digits, '_' or '-'")]
    BadCourtId(String),
    #[error("case {0:?} has an empty case_no")]
    EmptyCaseNo(usize),
    #[error("known location {0:?} is not a valid coordinate")]
    BadLocation(String),
    #[error("unknown court_id {0:?}")]
    UnknownCourt(String),
    #[error("case {0:?} has an amount_cny that is negative or not a number")]
    BadAmount(usize),
    #[error("case {0:?} is filed_on {1}, after today")]
    FiledInFuture(usize, NaiveDate),
}

impl Target {
    /// Checks what serde cannot: the fields each kind needs, court ids, coordinates.
    pub fn validate(&self) -> Result<(), TargetError> {
        let id_ok = !self.target_id.is_empty()
            && self.target_id.chars().count() <= 128
            && !self.target_id.chars().any(char::is_control);
        if !id_ok {
            return Err(TargetError::BadTargetId);
        }
        match self.kind {
            TargetKind::Vehicle if self.plate.is_none() => {
                return Err(TargetError::VehicleWithoutPlate);
            }
            TargetKind::Person if self.person_id.is_none() => {
                return Err(TargetError::PersonWithoutId);
            }
            _ => {}
        }
        if self.cases.is_empty() {
            return Err(TargetError::NoCases);
        }
        for (i, case) in self.cases.iter().enumerate() {
            if case.case_no.trim().is_empty() {
                return Err(TargetError::EmptyCaseNo(i));
            }
            if !is_valid_court_id(&case.court_id) {
                return Err(TargetError::BadCourtId(case.court_id.clone()));
            }
            if case
                .amount_cny
                .is_some_and(|a| !(a.is_finite() && a >= 0.0))
            {
                return Err(TargetError::BadAmount(i));
            }
        }
        if let Some(lead) = &self.lead_court_id {
            if !is_valid_court_id(lead) {
                return Err(TargetError::BadCourtId(lead.clone()));
            }
        }
        for loc in &self.known_locations {
            let ok = loc.lat.is_finite()
                && loc.lon.is_finite()
                && (-90.0..=90.0).contains(&loc.lat)
                && (-180.0..=180.0).contains(&loc.lon);
            if !ok {
                return Err(TargetError::BadLocation(loc.label.clone()));
            }
        }
        Ok(())
    }

    /// [`Target::validate`], and that no case is filed after `today`. A day of grace: `today`
    /// is the UTC date, and courts date their filings in China (UTC+8).
    pub fn validate_at(&self, today: NaiveDate) -> Result<(), TargetError> {
        self.validate()?;
        let latest = today.succ_opt().unwrap_or(today);
        match self.cases.iter().position(|c| c.filed_on > latest) {
            Some(i) => Err(TargetError::FiledInFuture(i, self.cases[i].filed_on)),
            None => Ok(()),
        }
    }

    /// Checks that every court the target names (its cases' and its lead court) is in the
    /// courts data: a task for an unknown court would go to a topic nobody reads.
    pub fn check_courts(&self, data: &crate::geo::geodata::GeoData) -> Result<(), TargetError> {
        match self
            .cases
            .iter()
            .map(|c| &c.court_id)
            .chain(self.lead_court_id.as_ref())
            .find(|c| data.court(c).is_none())
        {
            Some(unknown) => Err(TargetError::UnknownCourt(unknown.clone())),
            None => Ok(()),
        }
    }

    /// Whether sightings of this target should produce tasks at `now`.
    pub fn is_matchable(&self, now: DateTime<Utc>) -> bool {
        self.status == TargetStatus::Active && self.valid_until.is_none_or(|until| now < until)
    }
}

/// What a task asks the assisting court to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A flagged vehicle was sighted: seize it.
    VehicleSeizure,
    /// A flagged person was sighted: find them.
    PersonLocate,
    /// No sighting: search for a person at a known location (a locate request).
    PersonSearch,
}

/// Why the assisting court was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The place is inside the requesting court's own area.
    OwnJurisdiction,
    /// The place is inside another participating court's area.
    InJurisdiction,
    /// The place is inside no participating court's area; the nearest command center acts.
    NearestCourt,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADLINE: &str = r#"{
      "target_id": "T-2024-0001", "kind": "vehicle", "plate": "浙B·12345", "name": "王某",
      "status": "active", "lead_court_id": null,
      "cases": [{"case_no": "(2024)浙0281执1234号", "court_id": "yuyao", "filed_on": "2024-03-01", "amount_cny": 50000}],
      "known_locations": [{"label": "domicile", "lat": 30.04, "lon": 121.15, "datum": "wgs84"}],
      "unknown_field": "ignored"
    }"#;

    #[test]
    fn contract_example_parses_and_normalises() {
        let t: Target = serde_json::from_str(HEADLINE).unwrap();
        t.validate().unwrap();
        assert_eq!(t.plate.unwrap().as_str(), "浙B12345");
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["plate"], "浙B12345");
        assert_eq!(back["status"], "active");
    }

    #[test]
    fn invalid_targets_are_refused_with_a_reason() {
        let mut t: Target = serde_json::from_str(HEADLINE).unwrap();
        t.plate = None;
        assert_eq!(t.validate(), Err(TargetError::VehicleWithoutPlate));
        let mut t: Target = serde_json::from_str(HEADLINE).unwrap();
        t.cases.clear();
        assert_eq!(t.validate(), Err(TargetError::NoCases));
        let mut t: Target = serde_json::from_str(HEADLINE).unwrap();
        t.cases[0].court_id = "Yu Yao".into();
        assert!(matches!(t.validate(), Err(TargetError::BadCourtId(_))));
        let bad_plate = HEADLINE.replace("浙B·12345", "B12345");
        assert!(serde_json::from_str::<Target>(&bad_plate).is_err());
        for amount in [-0.01, f64::NAN, f64::INFINITY] {
            let mut t: Target = serde_json::from_str(HEADLINE).unwrap();
            t.cases[0].amount_cny = Some(amount);
            assert_eq!(t.validate(), Err(TargetError::BadAmount(0)), "{amount}");
        }
        let t: Target = serde_json::from_str(HEADLINE).unwrap();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        // Filed 2024-03-01: fine from the day before (a day of grace for UTC+8) onwards.
        assert_eq!(t.validate_at(day("2024-02-29")), Ok(()));
        assert_eq!(
            t.validate_at(day("2024-02-28")),
            Err(TargetError::FiledInFuture(0, day("2024-03-01")))
        );
    }

    #[test]
    fn expiry_and_status_stop_matching() {
        let mut t: Target = serde_json::from_str(HEADLINE).unwrap();
        let now = Utc::now();
        assert!(t.is_matchable(now));
        t.valid_until = Some(now - chrono::Duration::seconds(1));
        assert!(!t.is_matchable(now));
        t.valid_until = None;
        t.status = TargetStatus::Seized;
        assert!(!t.is_matchable(now));
    }
}

/// A validated sighting, in WGS-84 (see `decode` for how raw payloads become one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    /// Unique per `source`: the same `(source, event_id)` twice has one effect.
    pub event_id: String,
    pub kind: TargetKind,
    #[serde(default)]
    pub plate: Option<Plate>,
    #[serde(default)]
    pub person_id: Option<PersonId>,
    /// WGS-84 latitude (converted from the declared datum at decode).
    pub lat: f64,
    /// WGS-84 longitude.
    pub lon: f64,
    /// The datum the feed declared; kept for the record, the position is already WGS-84.
    pub datum: Datum,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub observed_at: DateTime<Utc>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}
