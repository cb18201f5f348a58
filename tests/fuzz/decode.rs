//! Sightings: `decode_sighting`, from valid payloads and damaged ones.

use chrono::{DateTime, Duration, Utc};
use leadrelay::contract::decode::{DecodeLimits, RejectReason, decode_sighting};
use leadrelay::contract::model::{Sighting, TargetKind};
use leadrelay::contract::person_id::PersonId;
use leadrelay::contract::plate::Plate;
use leadrelay::geo::datum::{self, Datum, great_circle_km};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::config;
use crate::person_id::valid_person_id;
use crate::plate::valid_plate;

const TOPIC_SOURCE: &str = "topic-cam";

fn now() -> DateTime<Utc> {
    "2024-12-03T02:20:00Z".parse().unwrap_or_default()
}

/// Decodes as the feed named in the payload would publish it: on its own topic (the topic's
/// source when the payload names none or is not an object).
fn decode(payload: &[u8]) -> Result<Sighting, leadrelay::contract::decode::Rejection> {
    /// Only the `source`: other fields are skipped as the decoder skips them.
    #[derive(serde::Deserialize)]
    struct SourceOnly {
        source: Option<String>,
    }
    let own_topic = serde_json::from_slice::<SourceOnly>(payload)
        .ok()
        .and_then(|v| v.source);
    let topic_source = own_topic.as_deref().unwrap_or(TOPIC_SOURCE);
    decode_sighting(topic_source, payload, now(), &DecodeLimits::default())
}

/// What a valid payload was built from, to compare the decoded sighting against.
#[derive(Debug, Clone)]
struct Spec {
    event_id: String,
    source: Option<String>,
    kind: TargetKind,
    /// The plate or identity number as written in the payload.
    id: String,
    /// The true position, WGS-84 `(lon, lat)`.
    wgs84: (f64, f64),
    /// `None` leaves `datum` out (WGS-84).
    datum: Option<Datum>,
    /// Seconds before `now()` (negative: within the allowed future skew).
    age_secs: i64,
    /// Offset of the written time, minutes east of UTC.
    offset_min: i32,
    confidence: Option<f64>,
}

impl Spec {
    /// The position as written in the payload: the true one in the declared datum.
    fn written(&self) -> (f64, f64) {
        let (lon, lat) = self.wgs84;
        datum::from_wgs84(self.datum.unwrap_or(Datum::Wgs84), lon, lat)
    }

    fn observed_at(&self) -> DateTime<Utc> {
        now() - Duration::seconds(self.age_secs)
    }

    fn to_json(&self) -> Value {
        let (lon, lat) = self.written();
        let offset = chrono::FixedOffset::east_opt(self.offset_min * 60)
            .unwrap_or(chrono::FixedOffset::east_opt(0).unwrap());
        let mut o = Map::new();
        o.insert("event_id".into(), self.event_id.clone().into());
        let (kind, id_field) = match self.kind {
            TargetKind::Vehicle => ("vehicle", "plate"),
            TargetKind::Person => ("person", "person_id"),
        };
        o.insert("kind".into(), kind.into());
        o.insert(id_field.into(), self.id.clone().into());
        o.insert("lat".into(), lat.into());
        o.insert("lon".into(), lon.into());
        if let Some(d) = self.datum {
            o.insert("datum".into(), d.as_str().into());
        }
        o.insert(
            "observed_at".into(),
            self.observed_at()
                .with_timezone(&offset)
                .to_rfc3339()
                .into(),
        );
        if let Some(s) = &self.source {
            o.insert("source".into(), s.clone().into());
        }
        if let Some(c) = self.confidence {
            o.insert("confidence".into(), c.into());
        }
        Value::Object(o)
    }
}

/// Ids and sources as feeds send them: printable, often non-ASCII, up to the 200-character
/// limit.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,40}",
        "[a-zA-Z0-9_.:浙甬摄像头-]{1,200}",
        "[^/+#\\p{Cc}]{1,60}",
    ]
    .prop_filter("blank", |s| !s.trim().is_empty())
}

/// A valid sighting: vehicle or person, any datum, a position in China (where the datums
/// differ) or anywhere (where they coincide), a past or slightly future time.
fn valid_spec() -> impl Strategy<Value = Spec> {
    let kind_and_id = prop_oneof![
        valid_plate().prop_map(|p| (TargetKind::Vehicle, p)),
        valid_person_id().prop_map(|p| (TargetKind::Person, p)),
    ];
    let position = prop_oneof![
        3 => (73.0..135.0f64, 18.0..53.0f64),
        1 => (-179.0..179.0f64, -89.0..89.0f64),
    ];
    let datum = prop::option::of(prop::sample::select(vec![
        Datum::Wgs84,
        Datum::Gcj02,
        Datum::Bd09,
    ]));
    (
        (id_text(), prop::option::of(id_text())),
        kind_and_id,
        position,
        datum,
        (-300..86_000i64, -720..=840i32),
        prop::option::of(0.0..=1.0f64),
    )
        .prop_map(
            |((event_id, source), (kind, id), wgs84, datum, (age_secs, offset_min), confidence)| {
                Spec {
                    event_id,
                    source,
                    kind,
                    id,
                    wgs84,
                    datum,
                    age_secs,
                    offset_min,
                    confidence,
                }
            },
        )
}

/// What a decoded sighting must be whatever the payload: the promises the rest of the
/// service relies on.
fn check_sane(s: &Sighting) -> Result<(), TestCaseError> {
    prop_assert!(s.lat.is_finite() && s.lon.is_finite(), "{s:?}");
    prop_assert!(
        (-90.0..=90.0).contains(&s.lat),
        "lat {} out of range: {s:?}",
        s.lat
    );
    prop_assert!(
        (-180.0..=180.0).contains(&s.lon),
        "lon {} out of range: {s:?}",
        s.lon
    );
    prop_assert!(!s.event_id.trim().is_empty() && s.event_id.chars().count() <= 200);
    prop_assert!(!s.event_id.chars().any(char::is_control));
    prop_assert!(!s.source.is_empty() && s.source.chars().count() <= 200);
    prop_assert!(
        !s.source
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    );
    prop_assert_eq!(s.plate.is_some(), s.kind == TargetKind::Vehicle);
    prop_assert_eq!(s.person_id.is_some(), s.kind == TargetKind::Person);
    if let Some(c) = s.confidence {
        prop_assert!((0.0..=1.0).contains(&c));
    }
    prop_assert!(s.observed_at <= now() + DecodeLimits::default().max_future_skew);
    Ok(())
}

/// A damage done to a valid payload, with the reason it must be refused for (`None`: any
/// outcome is fine as long as an accepted one is sane).
#[derive(Debug, Clone)]
enum Damage {
    Drop(&'static str),
    Set(&'static str, Value),
}

const REQUIRED: [&str; 5] = ["event_id", "kind", "lat", "lon", "observed_at"];
const STRING_FIELDS: [&str; 7] = [
    "event_id",
    "kind",
    "plate",
    "person_id",
    "datum",
    "observed_at",
    "source",
];
const NUMBER_FIELDS: [&str; 3] = ["lat", "lon", "confidence"];

/// A JSON value of any type, nested a little, with contract-looking strings among them.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-400.0..400.0f64).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "vehicle",
            "person",
            "Vehicle",
            "wgs84",
            "gcj02",
            "BD-09",
            "GCJ_02",
            "etrs89",
            "浙B12345",
            "11010519491231002X",
            "2024-12-03T10:15:00+08:00",
            "2024-12-03T10:15:00",
            "2099-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
            "NaN",
            "Infinity",
            "",
            " ",
            "a/b",
            "#",
            "\u{0}",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn value_of_wrong_type(string_field: bool) -> impl Strategy<Value = Value> {
    let non_string = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        Just(json!([])),
        Just(json!({"a": 1})),
    ];
    let non_number = prop_oneof![
        any::<bool>().prop_map(Value::from),
        "[0-9.e+-]{0,8}".prop_map(Value::from),
        Just(json!([1.0])),
        Just(json!({})),
    ];
    if string_field {
        non_string.boxed()
    } else {
        non_number.boxed()
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::sample::select(REQUIRED.to_vec()).prop_map(Damage::Drop),
        prop::sample::select(STRING_FIELDS.to_vec())
            .prop_flat_map(|f| value_of_wrong_type(true).prop_map(move |v| Damage::Set(f, v))),
        prop::sample::select(NUMBER_FIELDS.to_vec())
            .prop_flat_map(|f| value_of_wrong_type(false).prop_map(move |v| Damage::Set(f, v))),
        (
            prop::sample::select(vec!["lat", "lon"]),
            prop_oneof![
                (90.000_001..1e308f64).prop_map(Value::from),
                (-1e308..-180.000_001f64).prop_map(Value::from),
                Just(json!(180.000_000_1)),
                Just(json!(-90.000_000_1)),
            ]
        )
            .prop_map(|(f, v)| Damage::Set(f, v)),
        (
            prop::sample::select(
                STRING_FIELDS
                    .to_vec()
                    .into_iter()
                    .chain(NUMBER_FIELDS)
                    .chain(["extra"])
                    .collect::<Vec<_>>()
            ),
            any_json()
        )
            .prop_map(|(f, v)| Damage::Set(f, v)),
    ]
}

/// The reason a damage must produce, where the contract fixes one.
fn expected_reason(spec: &Spec, damage: &Damage) -> Option<RejectReason> {
    match damage {
        Damage::Drop(_) => Some(RejectReason::MissingField),
        Damage::Set(field, v) => {
            let string = STRING_FIELDS.contains(field);
            let number = NUMBER_FIELDS.contains(field);
            let relevant = match *field {
                "plate" => spec.kind == TargetKind::Vehicle,
                "person_id" => spec.kind == TargetKind::Person,
                _ => true,
            };
            if v.is_null() {
                return match *field {
                    "plate" | "person_id" if relevant => Some(RejectReason::MissingField),
                    f if REQUIRED.contains(&f) => Some(RejectReason::MissingField),
                    _ => None,
                };
            }
            if (string && !v.is_string()) || (number && !v.is_number()) {
                return Some(RejectReason::WrongType);
            }
            if (*field == "lat" || *field == "lon") && v.is_number() {
                let x = v.as_f64().unwrap_or(0.0);
                let limit = if *field == "lat" { 90.0 } else { 180.0 };
                if x.abs() > limit {
                    return Some(RejectReason::InvalidCoordinates);
                }
            }
            None
        }
    }
}

fn apply(payload: &mut Value, damage: &Damage) {
    let Some(o) = payload.as_object_mut() else {
        return;
    };
    match damage {
        Damage::Drop(f) => {
            o.remove(*f);
        }
        Damage::Set(f, v) => {
            o.insert((*f).to_owned(), v.clone());
        }
    }
}

/// Cuts, flips and splices at the byte level: what a broken transport or encoder sends.
#[derive(Debug, Clone)]
enum ByteDamage {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
}

fn byte_damage() -> impl Strategy<Value = ByteDamage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(ByteDamage::Truncate),
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| ByteDamage::Flip(i, x)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(vec![
                    b"\xff".to_vec(),
                    b"\xc3".to_vec(),
                    b"\xed\xa0\x80".to_vec(),
                    b"\\ud800".to_vec(),
                    b"NaN".to_vec(),
                    b"1e999".to_vec(),
                    b"\"".to_vec(),
                    b",".to_vec(),
                    b"}".to_vec(),
                    b"\0".to_vec(),
                ]),
            ],
        )
            .prop_map(|(i, b)| ByteDamage::Insert(i, b)),
    ]
}

/// Whether `decoded` is the other pre-image of an ambiguous GCJ-02 position: just outside
/// the GCJ-02 box a written position is both itself (GCJ-02 equals WGS-84 there) and the
/// image of a point inside the box near its edge, which the forward transform carried out.
/// The decoder takes the inside one by design (`datum::gcj02_to_wgs84`); no decoder can tell
/// which one the camera saw.
fn ambiguous_gcj02(spec: &Spec, decoded: (f64, f64)) -> bool {
    let (lon, lat) = spec.wgs84;
    let (wlon, wlat) = spec.written();
    let truth_outside = datum::wgs84_to_gcj02(lon, lat) == (lon, lat);
    let (g_lon, g_lat) = datum::wgs84_to_gcj02(decoded.0, decoded.1);
    spec.datum == Some(Datum::Gcj02)
        && truth_outside
        && great_circle_km(g_lon, g_lat, wlon, wlat) * 1000.0 < 1.0
}

proptest! {
    #![proptest_config(config(150))]

    /// Valid payloads decode, and every field comes back: text as written, the position in
    /// WGS-84 within a metre of the true one (within the datum's offset of what was written).
    #[test]
    fn valid_sightings_decode_and_round_trip(spec in valid_spec()) {
        let payload = spec.to_json().to_string();
        let s = decode(payload.as_bytes());
        prop_assert!(s.is_ok(), "{payload}: {s:?}");
        let s = s.unwrap();
        check_sane(&s)?;
        prop_assert_eq!(&s.event_id, &spec.event_id);
        prop_assert_eq!(s.source.as_str(), spec.source.as_deref().unwrap_or(TOPIC_SOURCE));
        prop_assert_eq!(s.kind, spec.kind);
        match spec.kind {
            TargetKind::Vehicle => prop_assert_eq!(s.plate, Plate::parse(&spec.id).ok()),
            TargetKind::Person => prop_assert_eq!(s.person_id, PersonId::parse(&spec.id).ok()),
        }
        prop_assert_eq!(s.datum, spec.datum.unwrap_or(Datum::Wgs84));
        prop_assert_eq!(s.observed_at, spec.observed_at());
        // serde_json's default float parser may land one ulp off the shortest spelling.
        let (got, want) = (s.confidence.unwrap_or(-1.0), spec.confidence.unwrap_or(-1.0));
        prop_assert!((got - want).abs() <= 1e-15, "confidence {got} for {want}");
        let (lon, lat) = spec.wgs84;
        let (wlon, wlat) = spec.written();
        let error_m = great_circle_km(lon, lat, s.lon, s.lat) * 1000.0;
        prop_assert!(
            error_m < 1.0 || ambiguous_gcj02(&spec, (s.lon, s.lat)),
            "{error_m} m off the true position: {payload}"
        );
        let shift_m = great_circle_km(wlon, wlat, s.lon, s.lat) * 1000.0;
        let max_shift_m = match s.datum {
            Datum::Wgs84 => 0.001,
            Datum::Gcj02 => 800.0,
            Datum::Bd09 => 2000.0,
        };
        prop_assert!(shift_m <= max_shift_m, "moved {shift_m} m by {}: {payload}", s.datum);
    }

    /// One damaged field: refused with the contract's reason where it names one; anything
    /// accepted is sane.
    #[test]
    fn damaged_fields_are_refused_with_their_reason(spec in valid_spec(), damage in damage()) {
        let mut payload = spec.to_json();
        apply(&mut payload, &damage);
        let text = payload.to_string();
        let result = decode(text.as_bytes());
        match (expected_reason(&spec, &damage), &result) {
            (Some(reason), Err(e)) => prop_assert_eq!(e.reason, reason, "{} for {}", e, text),
            (Some(reason), Ok(s)) => prop_assert!(false, "accepted, expected {reason}: {text} → {s:?}"),
            (None, Ok(s)) => check_sane(s)?,
            (None, Err(e)) => prop_assert_ne!(e.reason, RejectReason::NotJson, "{} for {}", e, text),
        }
    }

    /// Any position, in any datum: refused as invalid coordinates or decoded within range.
    #[test]
    fn any_position_in_any_datum_stays_on_earth(
        spec in valid_spec(),
        lat in prop_oneof![-90.0..=90.0f64, Just(90.0), Just(-90.0), -91.0..91.0],
        lon in prop_oneof![-180.0..=180.0f64, Just(180.0), Just(-180.0), -181.0..181.0],
        datum in prop::sample::select(vec!["wgs84", "gcj02", "bd09"]),
    ) {
        let mut payload = spec.to_json();
        payload["lat"] = lat.into();
        payload["lon"] = lon.into();
        payload["datum"] = datum.into();
        match decode(payload.to_string().as_bytes()) {
            Ok(s) => check_sane(&s)?,
            Err(e) => prop_assert_eq!(e.reason, RejectReason::InvalidCoordinates, "{}", e),
        }
    }

    /// Byte-level damage: never a panic, never an insane sighting; a strict prefix of an
    /// object is never JSON.
    #[test]
    fn byte_damage_never_panics(spec in valid_spec(), damage in byte_damage()) {
        let mut bytes = spec.to_json().to_string().into_bytes();
        let truncated = match &damage {
            ByteDamage::Truncate(i) => {
                bytes.truncate(i.index(bytes.len()));
                true
            }
            ByteDamage::Flip(i, x) => {
                let at = i.index(bytes.len());
                bytes[at] ^= x;
                false
            }
            ByteDamage::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
                false
            }
        };
        match decode(&bytes) {
            Ok(s) => {
                prop_assert!(!truncated);
                check_sane(&s)?;
            }
            Err(e) if truncated => prop_assert_eq!(e.reason, RejectReason::NotJson, "{}", e),
            Err(_) => {}
        }
    }

    /// Odd text in the plate or identity number: refused as that field, or accepted as a
    /// valid one.
    #[test]
    fn odd_identifiers_are_refused_as_identifiers(
        spec in valid_spec(),
        at in any::<prop::sample::Index>(),
        odd in prop_oneof![
            any::<char>(),
            prop::sample::select(vec!['\u{200B}', '\u{FEFF}', '\u{202E}', '\u{D7FF}', '\u{FFFD}',
                '\u{1F697}', '\u{0}', '\u{7F}', '\u{3000}', '·']),
        ],
    ) {
        let mut chars: Vec<char> = spec.id.chars().collect();
        chars.insert(at.index(chars.len() + 1), odd);
        let id: String = chars.into_iter().collect();
        let mut payload = spec.to_json();
        let (field, reason) = match spec.kind {
            TargetKind::Vehicle => ("plate", RejectReason::InvalidPlate),
            TargetKind::Person => ("person_id", RejectReason::InvalidPersonId),
        };
        payload[field] = id.clone().into();
        match decode(payload.to_string().as_bytes()) {
            Ok(s) => {
                check_sane(&s)?;
                let same = match spec.kind {
                    TargetKind::Vehicle => s.plate == Plate::parse(&id).ok(),
                    TargetKind::Person => s.person_id == PersonId::parse(&id).ok(),
                };
                prop_assert!(same);
            }
            Err(e) => prop_assert_eq!(e.reason, reason, "{} for {:?}", e, id),
        }
    }

    /// Long ids and sources: accepted up to 200 characters, refused with their own reason
    /// beyond, whatever the bytes per character.
    #[test]
    fn long_ids_are_bounded_in_characters(
        spec in valid_spec(),
        n in 150..260usize,
        unit in prop::sample::select(vec!["x", "é", "浙", "\u{1F697}"]),
        in_source in any::<bool>(),
    ) {
        let long = unit.repeat(n);
        let mut payload = spec.to_json();
        let (field, reason) = if in_source {
            ("source", RejectReason::InvalidSource)
        } else {
            ("event_id", RejectReason::InvalidEventId)
        };
        payload[field] = long.into();
        let result = decode(payload.to_string().as_bytes());
        if n <= 200 {
            prop_assert!(result.is_ok(), "{result:?}");
        } else {
            prop_assert_eq!(result.map_err(|e| e.reason).err(), Some(reason));
        }
    }

    /// A known field given twice is ambiguous and refused; an unknown one is ignored.
    #[test]
    fn duplicate_keys_of_known_fields_are_refused(
        spec in valid_spec(),
        pick in any::<prop::sample::Index>(),
        value in any_json(),
    ) {
        let json = spec.to_json();
        let present: Vec<&String> = json.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        let field = present[pick.index(present.len())].as_str();
        let payload = json.to_string();
        let extra = format!("{{{}:{},", json!(field), value);
        let twice = payload.replacen('{', &extra, 1);
        prop_assert!(decode(twice.as_bytes()).is_err(), "{twice}");
        let unknown = payload.replacen('{', &format!("{{\"x_{field}\":{value},\"x_{field}\":{value},"), 1);
        let s = decode(unknown.as_bytes());
        prop_assert!(s.is_ok(), "{unknown}: {s:?}");
    }

    /// Deep nesting in an unknown field: skipped or refused as not JSON, never a stack overflow.
    #[test]
    fn deep_nesting_is_bounded(spec in valid_spec(), depth in 1..5000usize, object in any::<bool>()) {
        let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
        let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let payload = spec.to_json().to_string().replacen('{', &format!("{{\"deep\":{nested},"), 1);
        let result = decode(payload.as_bytes());
        match result {
            Err(e) if payload.len() > DecodeLimits::default().max_payload_bytes => {
                prop_assert_eq!(e.reason, RejectReason::TooLarge);
            }
            Err(e) => prop_assert!(depth >= 100 && e.reason == RejectReason::NotJson, "{}", e),
            Ok(s) => check_sane(&s)?,
        }
    }

    /// Random JSON objects made of the sighting's fields and others: never a panic, refusals
    /// always explained (not "not JSON"), acceptances sane.
    #[test]
    fn random_objects_are_explained(
        fields in prop::collection::btree_map(
            prop_oneof![
                3 => prop::sample::select(STRING_FIELDS.iter().chain(&NUMBER_FIELDS).copied().collect::<Vec<_>>()).prop_map(String::from),
                1 => "[a-z_]{1,8}",
            ],
            any_json(),
            0..12,
        ),
    ) {
        let payload = Value::Object(fields.into_iter().collect()).to_string();
        match decode(payload.as_bytes()) {
            Ok(s) => check_sane(&s)?,
            Err(e) => prop_assert_ne!(e.reason, RejectReason::NotJson, "{} for {}", e, payload),
        }
    }

    /// Arbitrary bytes, and bytes over the size limit.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), limit in 0..600usize) {
        let limits = DecodeLimits { max_payload_bytes: limit, ..DecodeLimits::default() };
        match decode_sighting(TOPIC_SOURCE, &bytes, now(), &limits) {
            Ok(s) => check_sane(&s)?,
            Err(e) if bytes.len() > limit => prop_assert_eq!(e.reason, RejectReason::TooLarge),
            Err(_) => {}
        }
    }

    /// A valid payload on another feed's topic is refused as a mismatch, whatever the two
    /// sources are, and a valid payload older than the age limit as stale.
    #[test]
    fn foreign_topics_and_stale_times_are_refused(
        spec in valid_spec(),
        other in "[a-z0-9-]{1,20}",
        extra_age in 1..10_000_000i64,
    ) {
        let payload = spec.to_json().to_string();
        let claimed = spec.source.clone().unwrap_or_else(|| TOPIC_SOURCE.to_string());
        let on_other = format!("{other}-x");
        if on_other != claimed && spec.source.is_some() {
            let result = decode_sighting(&on_other, payload.as_bytes(), now(), &DecodeLimits::default());
            prop_assert_eq!(result.map_err(|e| e.reason).err(), Some(RejectReason::SourceMismatch));
        }
        let limits = DecodeLimits::default();
        let mut stale = spec.clone();
        stale.age_secs = limits.max_age.num_seconds() + extra_age;
        let result = decode(stale.to_json().to_string().as_bytes());
        prop_assert_eq!(result.map_err(|e| e.reason).err(), Some(RejectReason::StaleTime));
    }
}
