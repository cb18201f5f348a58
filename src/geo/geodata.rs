//! Loading the geographic data: court jurisdictions (GeoJSON) and courts (CSV).
//!
//! Loading is strict. Every structural problem (an unclosed ring, a coordinate out of range,
//! a court id the courts file does not know, ...) becomes a [`Problem`] naming the file, the
//! feature and the reason; [`GeoData::load`] refuses data with any error-level problem, so
//! the service never starts on bad data and never panics on it. `leadrelay check-data` prints
//! the same problems plus the costlier cross-checks of the `check` module, which builds on
//! this one.
//!
//! Everything leaves this module in WGS-84: each file declares its datum (top-level `datum`
//! member, or per feature) and is converted here.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde::Serialize;
use serde_json::Value;

use crate::geo::datum::{self, Datum};

/// The Ningbo jurisdictions shipped with the binary (GCJ-02, DataV/Amap; see PROVENANCE.md).
pub const SHIPPED_NINGBO_JURISDICTIONS: &str =
    include_str!("../../deploy/data/ningbo/ningbo_jurisdictions.geojson");
/// Neighbouring counties (non-participating courts), so a sighting just over the city line
/// is known to be in, say, Shangyu rather than nowhere.
pub const SHIPPED_NEIGHBOUR_JURISDICTIONS: &str =
    include_str!("../../deploy/data/ningbo/neighbours.geojson");
/// Courts of Ningbo and its neighbours: command-center location, supervisor, participation.
pub const SHIPPED_COURTS: &str = include_str!("../../deploy/data/ningbo/courts.csv");

/// A court and its command center.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Court {
    /// Lower-case ASCII id, used verbatim in MQTT topics.
    pub court_id: String,
    pub court_name: String,
    pub adcode: String,
    /// Command-center location, WGS-84 (x = lon, y = lat).
    #[serde(serialize_with = "serialize_coord")]
    pub command_center: Coord<f64>,
    /// The court that receives this court's escalations (Ningbo Intermediate for the basic courts).
    pub supervisor_court_id: Option<String>,
    /// Whether the court takes part in the protocol (receives tasks).
    pub participating: bool,
}

fn serialize_coord<S: serde::Serializer>(c: &Coord<f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Point", 2)?;
    st.serialize_field("lat", &c.y)?;
    st.serialize_field("lon", &c.x)?;
    st.end()
}

/// The area a court's jurisdiction covers, WGS-84.
#[derive(Debug, Clone)]
pub struct Jurisdiction {
    pub court_id: String,
    /// Name of the division (e.g. 余姚市).
    pub name: String,
    pub area: MultiPolygon<f64>,
    /// Where the feature came from, for messages: `file#index`.
    pub origin: String,
}

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported; the data is still usable.
    Warning,
    /// The data must not be used.
    Error,
}

/// One thing wrong with the data, located precisely enough to fix it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    /// Feature or row, e.g. `feature #3 (court_id "yuyao")` or `row 5`; `None` for the file.
    pub item: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.item {
            Some(item) => write!(f, "{sev}: {}: {item}: {}", self.file, self.reason),
            None => write!(f, "{sev}: {}: {}", self.file, self.reason),
        }
    }
}

/// Loading failed: the files could not be read, or they hold error-level problems.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The cause is in the message (the data's problems travel as text), not a `source()`.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} problem(s) in the geographic data:\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source of data: a name for messages and the text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    /// Reads a file; `.gz` files are decompressed.
    pub fn read(path: &Path) -> Result<Source, DataError> {
        let io = |error| DataError::Io {
            path: path.to_path_buf(),
            error,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let text = if path.extension().is_some_and(|e| e == "gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .map_err(io)?;
            text
        } else {
            String::from_utf8(bytes)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?
        };
        Ok(Source {
            name: path.display().to_string(),
            text,
        })
    }

    pub fn inline(name: &str, text: &str) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
        }
    }
}

/// Courts and jurisdictions, validated and in WGS-84.
#[derive(Debug, Clone)]
pub struct GeoData {
    pub courts: Vec<Court>,
    pub jurisdictions: Vec<Jurisdiction>,
    court_index: HashMap<String, usize>,
}

impl GeoData {
    /// The shipped Ningbo data (ten basic courts, the intermediate court, and neighbours).
    pub fn shipped() -> GeoData {
        let sources = [
            Source::inline("ningbo_jurisdictions.geojson", SHIPPED_NINGBO_JURISDICTIONS),
            Source::inline("neighbours.geojson", SHIPPED_NEIGHBOUR_JURISDICTIONS),
        ];
        let courts = Source::inline("courts.csv", SHIPPED_COURTS);
        // The shipped data is validated by the test suite; failing here is a build defect.
        Self::load(&sources, &courts).expect("the shipped Ningbo data is valid")
    }

    /// Loads and validates; any error-level problem refuses the whole data set.
    pub fn load(jurisdictions: &[Source], courts: &Source) -> Result<GeoData, DataError> {
        let (data, problems) = Self::load_lenient(jurisdictions, courts);
        let errors: Vec<Problem> = problems
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        if errors.is_empty() {
            Ok(data)
        } else {
            Err(DataError::Invalid(errors))
        }
    }

    /// Loads what is usable and reports every problem found on the way (for `check-data`).
    pub fn load_lenient(jurisdictions: &[Source], courts: &Source) -> (GeoData, Vec<Problem>) {
        let mut problems = Vec::new();
        let courts = parse_courts(courts, &mut problems);
        let mut areas = Vec::new();
        for source in jurisdictions {
            areas.extend(parse_jurisdictions(source, &mut problems));
        }
        let court_index: HashMap<String, usize> = courts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.court_id.clone(), i))
            .collect();
        cross_check(&courts, &areas, &court_index, &mut problems);
        areas.retain(|j| court_index.contains_key(&j.court_id));
        let data = GeoData {
            courts,
            jurisdictions: areas,
            court_index,
        };
        (data, problems)
    }

    /// The court with this id.
    pub fn court(&self, court_id: &str) -> Option<&Court> {
        self.court_index.get(court_id).map(|&i| &self.courts[i])
    }

    /// Position of the court in [`GeoData::courts`].
    pub fn court_position(&self, court_id: &str) -> Option<usize> {
        self.court_index.get(court_id).copied()
    }
}

/// Court ids go verbatim into MQTT topics: keep them to a safe alphabet.
pub fn is_valid_court_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(serde::Deserialize)]
struct CourtRow {
    court_id: String,
    court_name: String,
    #[serde(default)]
    adcode: String,
    lat: String,
    lon: String,
    #[serde(default)]
    datum: String,
    #[serde(default)]
    supervisor_court_id: String,
    #[serde(default)]
    participating: String,
}

fn parse_courts(source: &Source, problems: &mut Vec<Problem>) -> Vec<Court> {
    let mut courts: Vec<Court> = Vec::new();
    let mut reader = csv::Reader::from_reader(source.text.as_bytes());
    for (i, row) in reader.deserialize::<CourtRow>().enumerate() {
        // Row numbers as a spreadsheet shows them: the header is row 1.
        let item = format!("row {}", i + 2);
        let mut problem = |reason: String| {
            problems.push(Problem {
                severity: Severity::Error,
                file: source.name.clone(),
                item: Some(item.clone()),
                reason,
            })
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                problem(format!("unreadable row: {e}"));
                continue;
            }
        };
        if !is_valid_court_id(&row.court_id) {
            problem(format!(
                "court_id {:?} must be lower-case ASCII letters, digits, '_' or '-'",
                row.court_id
            ));
            continue;
        }
        if courts.iter().any(|c| c.court_id == row.court_id) {
            problem(format!("duplicate court_id {:?}", row.court_id));
            continue;
        }
        // As for the jurisdictions, no default datum: a seat off by ~500 m misroutes sightings
        // outside every area to the wrong nearest center.
        let datum = if row.datum.trim().is_empty() {
            problem("no datum: say which (wgs84, gcj02 or bd09)".into());
            continue;
        } else {
            match row.datum.parse::<Datum>() {
                Ok(d) => d,
                Err(e) => {
                    problem(e.to_string());
                    continue;
                }
            }
        };
        let (lat, lon) = match (row.lat.trim().parse::<f64>(), row.lon.trim().parse::<f64>()) {
            (Ok(lat), Ok(lon)) if valid_lon_lat(lon, lat) => (lat, lon),
            _ => {
                problem(format!(
                    "command-center position lat {:?}, lon {:?} is not a valid coordinate",
                    row.lat, row.lon
                ));
                continue;
            }
        };
        let participating = match row.participating.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "" => true,
            "no" | "false" | "0" => false,
            other => {
                problem(format!("participating {other:?}: expected yes or no"));
                continue;
            }
        };
        let (x, y) = datum::to_wgs84(datum, lon, lat);
        let supervisor = row.supervisor_court_id.trim();
        courts.push(Court {
            court_id: row.court_id,
            court_name: row.court_name,
            adcode: row.adcode,
            command_center: Coord { x, y },
            supervisor_court_id: (!supervisor.is_empty()).then(|| supervisor.to_string()),
            participating,
        });
    }
    if courts.is_empty() {
        problems.push(Problem {
            severity: Severity::Error,
            file: source.name.clone(),
            item: None,
            reason: "no courts".into(),
        });
    }
    courts
}

fn valid_lon_lat(lon: f64, lat: f64) -> bool {
    lon.is_finite()
        && lat.is_finite()
        && (-180.0..=180.0).contains(&lon)
        && (-90.0..=90.0).contains(&lat)
}

fn parse_jurisdictions(source: &Source, problems: &mut Vec<Problem>) -> Vec<Jurisdiction> {
    let file_problem = |reason: String| Problem {
        severity: Severity::Error,
        file: source.name.clone(),
        item: None,
        reason,
    };
    let root: Value = match serde_json::from_str(&source.text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(file_problem(format!("not JSON: {e}")));
            return Vec::new();
        }
    };
    if root.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        problems.push(file_problem("not a GeoJSON FeatureCollection".into()));
        return Vec::new();
    }
    let file_datum = match declared_datum(&root) {
        Ok(d) => d,
        Err(reason) => {
            problems.push(file_problem(reason));
            return Vec::new();
        }
    };
    let Some(features) = root.get("features").and_then(Value::as_array) else {
        problems.push(file_problem("no \"features\" array".into()));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, feature) in features.iter().enumerate() {
        let props = feature.get("properties");
        let court_id = props
            .and_then(|p| p.get("court_id"))
            .and_then(Value::as_str);
        let item = match court_id {
            Some(id) => format!("feature #{i} (court_id {id:?})"),
            None => format!("feature #{i}"),
        };
        let mut feature_problems = Vec::new();
        let parsed = parse_feature(feature, file_datum, &mut feature_problems);
        let failed = !feature_problems.is_empty();
        problems.extend(feature_problems.into_iter().map(|reason| Problem {
            severity: Severity::Error,
            file: source.name.clone(),
            item: Some(item.clone()),
            reason,
        }));
        if let (Some(j), false) = (parsed, failed) {
            out.push(Jurisdiction {
                origin: format!("{}#{i}", source.name),
                ..j
            });
        }
    }
    out
}

/// The datum a GeoJSON object declares (`"datum"` member), if it declares one.
///
/// There is no default: RFC 7946 says WGS-84, but Chinese map sources (Amap, DataV, Baidu)
/// publish GCJ-02 or BD-09, ~500 m off, enough to put a border street in the wrong court.
fn declared_datum(object: &Value) -> Result<Option<Datum>, String> {
    match object.get("datum") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse::<Datum>().map(Some).map_err(|e| e.to_string()),
        Some(other) => Err(format!("\"datum\" must be a string, found {other}")),
    }
}

/// What a file or feature without a datum is told.
const NO_DATUM: &str = "no \"datum\" declared for the file or the feature: say which \
    (\"wgs84\", \"gcj02\" or \"bd09\"); there is no default, as Chinese map sources are \
    rarely WGS-84";

fn parse_feature(
    feature: &Value,
    file_datum: Option<Datum>,
    problems: &mut Vec<String>,
) -> Option<Jurisdiction> {
    let props = feature.get("properties").unwrap_or(&Value::Null);
    let court_id = match props.get("court_id").and_then(Value::as_str) {
        Some(id) if is_valid_court_id(id) => id.to_string(),
        Some(id) => {
            problems.push(format!(
                "court_id {id:?} must be lower-case ASCII letters, digits, '_' or '-'"
            ));
            return None;
        }
        None => {
            problems.push("no \"court_id\" property".into());
            return None;
        }
    };
    let name = props
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&court_id)
        .to_string();
    // A feature may override the file's datum, as a member or as a property.
    let datum = match (feature.get("datum"), props.get("datum")) {
        (Some(_), _) => declared_datum(feature),
        (None, Some(_)) => declared_datum(props),
        (None, None) => Ok(file_datum),
    };
    let datum = match datum {
        Ok(Some(d)) => d,
        Ok(None) => {
            problems.push(NO_DATUM.into());
            return None;
        }
        Err(reason) => {
            problems.push(reason);
            return None;
        }
    };
    let Some(geometry) = feature.get("geometry").filter(|g| !g.is_null()) else {
        problems.push("no geometry".into());
        return None;
    };
    let coords = geometry.get("coordinates").unwrap_or(&Value::Null);
    let polygons: Vec<&Value> = match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => vec![coords],
        Some("MultiPolygon") => match coords.as_array() {
            Some(parts) => parts.iter().collect(),
            None => {
                problems.push("MultiPolygon coordinates are not an array".into());
                return None;
            }
        },
        Some(other) => {
            problems.push(format!(
                "geometry type {other:?}: expected Polygon or MultiPolygon"
            ));
            return None;
        }
        None => {
            problems.push("geometry has no \"type\"".into());
            return None;
        }
    };
    if polygons.is_empty() {
        problems.push("empty MultiPolygon".into());
        return None;
    }
    let mut parts = Vec::with_capacity(polygons.len());
    for (p, polygon) in polygons.iter().enumerate() {
        if let Some(poly) = parse_polygon(polygon, p, datum, problems) {
            parts.push(poly);
        }
    }
    Some(Jurisdiction {
        court_id,
        name,
        area: MultiPolygon(parts),
        origin: String::new(),
    })
}

fn parse_polygon(
    value: &Value,
    p: usize,
    datum: Datum,
    problems: &mut Vec<String>,
) -> Option<Polygon<f64>> {
    let Some(rings) = value.as_array().filter(|r| !r.is_empty()) else {
        problems.push(format!("polygon {p}: expected a non-empty array of rings"));
        return None;
    };
    let mut parsed = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let at = format!("polygon {p}, ring {r}");
        parsed.push(parse_ring(ring, &at, datum, problems)?);
    }
    let exterior = parsed.remove(0);
    Some(Polygon::new(exterior, parsed))
}

fn parse_ring(
    value: &Value,
    at: &str,
    datum: Datum,
    problems: &mut Vec<String>,
) -> Option<LineString<f64>> {
    let Some(positions) = value.as_array() else {
        problems.push(format!("{at}: not an array of positions"));
        return None;
    };
    let mut coords = Vec::with_capacity(positions.len());
    for (k, pos) in positions.iter().enumerate() {
        let xy = pos
            .as_array()
            .filter(|a| a.len() >= 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        match xy {
            Some((lon, lat)) if valid_lon_lat(lon, lat) => coords.push(Coord { x: lon, y: lat }),
            _ => {
                problems.push(format!(
                    "{at}, position {k}: {pos} is not a valid [lon, lat]"
                ));
                return None;
            }
        }
    }
    if coords.len() < 4 {
        problems.push(format!(
            "{at}: {} positions; a ring needs at least 4 (a triangle plus the closing point)",
            coords.len()
        ));
        return None;
    }
    if coords.first() != coords.last() {
        problems.push(format!(
            "{at}: unclosed ring (first position differs from the last)"
        ));
        return None;
    }
    if shoelace_area(&coords).abs() < 1e-14 {
        problems.push(format!("{at}: degenerate ring (zero area)"));
        return None;
    }
    // Convert after validation so that the closing point stays bit-identical.
    let coords = coords
        .into_iter()
        .map(|c| {
            let (x, y) = datum::to_wgs84(datum, c.x, c.y);
            Coord { x, y }
        })
        .collect();
    Some(LineString(coords))
}

/// Signed planar area in square degrees; only its magnitude matters here.
fn shoelace_area(coords: &[Coord<f64>]) -> f64 {
    coords
        .windows(2)
        .map(|w| w[0].x * w[1].y - w[1].x * w[0].y)
        .sum::<f64>()
        / 2.0
}

fn cross_check(
    courts: &[Court],
    areas: &[Jurisdiction],
    court_index: &HashMap<String, usize>,
    problems: &mut Vec<Problem>,
) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for j in areas {
        let (file, item) = j.origin.rsplit_once('#').unwrap_or((&j.origin, ""));
        let located = |reason: String| Problem {
            severity: Severity::Error,
            file: file.to_string(),
            item: Some(format!("feature #{item} (court_id {:?})", j.court_id)),
            reason,
        };
        if !court_index.contains_key(&j.court_id) {
            problems.push(located(format!(
                "unknown court_id {:?}: not in the courts file",
                j.court_id
            )));
        }
        if let Some(first) = seen.insert(&j.court_id, &j.origin) {
            problems.push(located(format!(
                "duplicate court_id {:?}: {first} has it too (merge the areas into one MultiPolygon)",
                j.court_id
            )));
        }
    }
    let supervisors: std::collections::HashSet<&str> = courts
        .iter()
        .filter_map(|c| c.supervisor_court_id.as_deref())
        .collect();
    for court in courts {
        let row = |severity, reason| Problem {
            severity,
            file: "courts".to_string(),
            item: Some(format!("court {:?}", court.court_id)),
            reason,
        };
        if let Some(sup) = &court.supervisor_court_id {
            if !court_index.contains_key(sup) {
                problems.push(row(
                    Severity::Error,
                    format!("unknown supervisor_court_id {sup:?}"),
                ));
            }
        }
        // A supervising court without an area of its own is normal (the Intermediate Court);
        // any other court without one can never be the acting court.
        if !seen.contains_key(court.court_id.as_str())
            && !supervisors.contains(court.court_id.as_str())
        {
            problems.push(row(
                Severity::Warning,
                "has no jurisdiction polygon: it can request but never act on a sighting".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_data_loads_clean() {
        let sources = [
            Source::inline("ningbo", SHIPPED_NINGBO_JURISDICTIONS),
            Source::inline("neighbours", SHIPPED_NEIGHBOUR_JURISDICTIONS),
        ];
        let (data, problems) =
            GeoData::load_lenient(&sources, &Source::inline("courts.csv", SHIPPED_COURTS));
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(data.jurisdictions.len(), 18);
        assert_eq!(data.courts.len(), 19);
        let yuyao = data.court("yuyao").unwrap();
        assert_eq!(
            yuyao.supervisor_court_id.as_deref(),
            Some("ningbo_intermediate")
        );
        assert!(yuyao.participating);
        assert!(!data.court("shangyu").unwrap().participating);
        // Converted to WGS-84: the GCJ-02 seat 121.156294,30.045404 moves ~0.0045° west.
        assert!(
            (yuyao.command_center.x - 121.1518).abs() < 0.001,
            "{:?}",
            yuyao.command_center
        );
    }

    fn collection(features: &str) -> Source {
        Source::inline(
            "bad.geojson",
            &format!(r#"{{"type":"FeatureCollection","datum":"wgs84","features":[{features}]}}"#),
        )
    }

    fn courts() -> Source {
        Source::inline(
            "courts.csv",
            "court_id,court_name,adcode,lat,lon,datum,supervisor_court_id,participating\n\
             a,A court,1,30.0,121.0,wgs84,,yes\nb,B court,2,30.0,121.5,wgs84,,yes\n",
        )
    }

    fn feature(court: &str, ring: &str) -> String {
        format!(
            r#"{{"type":"Feature","properties":{{"court_id":"{court}"}},"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}}"#
        )
    }

    const SQUARE: &str = "[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]";

    fn reasons(features: &str, courts_src: &Source) -> Vec<String> {
        match GeoData::load(&[collection(features)], courts_src) {
            Ok(_) => vec![],
            Err(DataError::Invalid(p)) => p.into_iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn bad_rings_are_named() {
        let unclosed = "[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30.05]]";
        let r = reasons(&feature("a", unclosed), &courts());
        assert!(
            r[0].contains("feature #0 (court_id \"a\")") && r[0].contains("unclosed"),
            "{r:?}"
        );
        let short = "[[121,30],[121.1,30],[121,30]]";
        assert!(reasons(&feature("a", short), &courts())[0].contains("at least 4"));
        let flat = "[[121,30],[121.1,30],[121.2,30],[121,30]]";
        assert!(reasons(&feature("a", flat), &courts())[0].contains("degenerate"));
        let nan = "[[121,30],[121.1,30],[121.1,95],[121,30.1],[121,30]]";
        assert!(reasons(&feature("a", nan), &courts())[0].contains("position 2"));
    }

    #[test]
    fn court_id_problems_are_named() {
        let two = format!("{},{}", feature("a", SQUARE), feature("a", SQUARE));
        assert!(
            reasons(&two, &courts())
                .iter()
                .any(|r| r.contains("duplicate court_id"))
        );
        assert!(reasons(&feature("zz", SQUARE), &courts())[0].contains("unknown court_id"));
        let dup_rows = Source::inline(
            "courts.csv",
            "court_id,court_name,adcode,lat,lon,datum\na,A,1,30,121,wgs84\na,A,1,30,121,wgs84\n",
        );
        assert!(reasons(&feature("a", SQUARE), &dup_rows)[0].contains("duplicate court_id"));
    }

    #[test]
    fn not_geojson_is_an_error_not_a_panic() {
        for text in [
            "",
            "[]",
            "{\"type\":\"Feature\"}",
            "{\"type\":\"FeatureCollection\",\"datum\":\"nad27\",\"features\":[]}",
        ] {
            let r = GeoData::load(&[Source::inline("x", text)], &courts());
            assert!(matches!(r, Err(DataError::Invalid(_))), "{text}");
        }
    }

    #[test]
    fn holes_and_multipolygons_load() {
        let with_hole = "[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]],[[121.04,30.04],[121.06,30.04],[121.06,30.06],[121.04,30.06],[121.04,30.04]]";
        let data = GeoData::load(&[collection(&feature("a", with_hole))], &courts()).unwrap();
        assert_eq!(data.jurisdictions[0].area.0[0].interiors().len(), 1);
    }
}
