//! Raw MQTT sighting payloads → validated [`Sighting`]s (docs/contract.md). Pure: no I/O.
//!
//! Nearly every sighting matches nothing, so decoding sets the service's throughput
//! (docs/architecture.md). The happy path is one typed serde parse into a struct that borrows
//! its strings from the payload; only when that parse fails is the payload parsed again as a
//! [`serde_json::Value`] to say precisely what is wrong. Rejections carry a reason (a metric
//! label and the dead letter's `reason`) and a sentence naming the field. Details never repeat
//! an identity number: it is personal data and details end up in logs and dead letters.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::model::{Sighting, TargetKind};
use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;
use crate::geo::datum::{self, Datum};

/// Longest `event_id` and `source`, in characters.
const MAX_ID_CHARS: usize = 200;
/// Values quoted in a rejection's detail are cut to this many characters.
const QUOTE_CHARS: usize = 40;

/// Bounds on what a sighting may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Larger payloads are refused before parsing, so one bad feed cannot make us parse megabytes.
    pub max_payload_bytes: usize,
    /// How far `observed_at` may lie after our clock: cameras' clocks drift, but a sighting
    /// from the future would outrank real ones as "the newest".
    pub max_future_skew: chrono::Duration,
    /// How old `observed_at` may be. A feed that buffered through an outage delivers within
    /// hours; an older position (or a clock reset to 1970) would open a live task for a car
    /// long gone.
    pub max_age: chrono::Duration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_payload_bytes: 64 * 1024,
            max_future_skew: chrono::Duration::minutes(5),
            max_age: chrono::Duration::days(1),
        }
    }
}

/// Why a payload is not a sighting. The names are metric labels: add, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    TooLarge,
    NotJson,
    WrongType,
    MissingField,
    UnknownKind,
    InvalidPlate,
    InvalidPersonId,
    InvalidCoordinates,
    UnknownDatum,
    InvalidTime,
    FutureTime,
    InvalidEventId,
    InvalidSource,
    InvalidConfidence,
    /// The payload's `source` is not the topic's: a camera publishes only as itself.
    SourceMismatch,
    /// `observed_at` is older than the limit: no lead for a live task.
    StaleTime,
    /// Outside every participating court's area and too far from the nearest command center
    /// to be a lead for it (decided when a matched sighting is routed, not by the decoder).
    OutOfArea,
}

impl RejectReason {
    /// Every reason, e.g. to pre-register metric series at zero.
    pub const ALL: [RejectReason; 17] = [
        RejectReason::TooLarge,
        RejectReason::NotJson,
        RejectReason::WrongType,
        RejectReason::MissingField,
        RejectReason::UnknownKind,
        RejectReason::InvalidPlate,
        RejectReason::InvalidPersonId,
        RejectReason::InvalidCoordinates,
        RejectReason::UnknownDatum,
        RejectReason::InvalidTime,
        RejectReason::FutureTime,
        RejectReason::InvalidEventId,
        RejectReason::InvalidSource,
        RejectReason::InvalidConfidence,
        RejectReason::SourceMismatch,
        RejectReason::StaleTime,
        RejectReason::OutOfArea,
    ];

    /// The snake_case name used as metric label and as the dead letter's `reason`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::NotJson => "not_json",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::InvalidPlate => "invalid_plate",
            RejectReason::InvalidPersonId => "invalid_person_id",
            RejectReason::InvalidCoordinates => "invalid_coordinates",
            RejectReason::UnknownDatum => "unknown_datum",
            RejectReason::InvalidTime => "invalid_time",
            RejectReason::FutureTime => "future_time",
            RejectReason::InvalidEventId => "invalid_event_id",
            RejectReason::InvalidSource => "invalid_source",
            RejectReason::InvalidConfidence => "invalid_confidence",
            RejectReason::SourceMismatch => "source_mismatch",
            RejectReason::StaleTime => "stale_time",
            RejectReason::OutOfArea => "out_of_area",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused payload: the reason for machines, the detail for the people fixing the feed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    /// One sentence naming the offending field; never contains an identity number.
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// A string that borrows from the payload unless it contains escapes. A newtype because serde
/// only borrows a `Cow` that is a field itself, not one inside an `Option`.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn as_str<'t>(text: &'t Option<Text<'_>>) -> Option<&'t str> {
    text.as_ref().map(|t| &*t.0)
}

/// The payload as sent; `Option` fields are absent or `null`. Unknown fields are skipped.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    kind: TargetKind,
    #[serde(borrow)]
    plate: Option<Text<'a>>,
    #[serde(borrow)]
    person_id: Option<Text<'a>>,
    lat: f64,
    lon: f64,
    #[serde(borrow)]
    datum: Option<Text<'a>>,
    #[serde(borrow)]
    observed_at: Cow<'a, str>,
    #[serde(borrow)]
    source: Option<Text<'a>>,
    confidence: Option<f64>,
}

/// Decodes and validates one payload from `sightings/{topic_source}`.
///
/// `now` bounds `observed_at` from above; the position is converted to WGS-84.
pub fn decode_sighting(
    topic_source: &str,
    payload: &[u8],
    now: DateTime<Utc>,
    limits: &DecodeLimits,
) -> Result<Sighting, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(reject(
            RejectReason::TooLarge,
            format!(
                "payload is {} bytes, more than the limit of {} bytes",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let raw: Raw<'_> = serde_json::from_slice(payload).map_err(|e| diagnose(payload, &e))?;

    let event_id = check_event_id(&raw.event_id)?;
    let source = check_source(as_str(&raw.source), topic_source)?;
    let (plate, person_id) = match raw.kind {
        TargetKind::Vehicle => (Some(parse_plate(as_str(&raw.plate))?), None),
        TargetKind::Person => (None, Some(parse_person_id(as_str(&raw.person_id))?)),
    };
    let datum = parse_datum(as_str(&raw.datum))?;
    check_coordinates(raw.lat, raw.lon)?;
    let (lon, lat) = datum::to_wgs84(datum, raw.lon, raw.lat);
    // BD-09's offset can carry a point at a pole or the antimeridian off the globe.
    check_coordinates(lat, lon).map_err(|_| {
        reject(
            RejectReason::InvalidCoordinates,
            format!(
                "fields `lat`/`lon` ({}, {}) in {datum} lie outside ±90 and ±180 in WGS-84",
                raw.lat, raw.lon
            ),
        )
    })?;
    let observed_at = parse_observed_at(&raw.observed_at, now, limits)?;
    if let Some(c) = raw.confidence {
        if !(0.0..=1.0).contains(&c) {
            return Err(reject(
                RejectReason::InvalidConfidence,
                format!("field `confidence` must be between 0 and 1, found {c}"),
            ));
        }
    }
    Ok(Sighting {
        event_id,
        kind: raw.kind,
        plate,
        person_id,
        lat,
        lon,
        datum,
        observed_at,
        source,
        confidence: raw.confidence,
    })
}

fn check_event_id(id: &str) -> Result<String, Rejection> {
    let problem = if id.trim().is_empty() {
        "is empty"
    } else if too_long(id) {
        "is longer than 200 characters"
    } else if id.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(id.to_owned());
    };
    Err(reject(
        RejectReason::InvalidEventId,
        format!("field `event_id` {problem}"),
    ))
}

/// Counting characters only when the bytes could exceed the limit keeps the common case cheap.
fn too_long(s: &str) -> bool {
    s.len() > MAX_ID_CHARS && s.chars().count() > MAX_ID_CHARS
}

/// The payload's `source`, if given, must be the topic's (the broker's ACL ties a camera to its
/// topic, so this ties it to its dedupe key too); the topic's is the fallback. It is half of the dedupe key
/// `(source, event_id)` and may be used in topics, so MQTT wildcards and `/` are refused.
fn check_source(from_payload: Option<&str>, topic_source: &str) -> Result<String, Rejection> {
    let (source, origin) = match from_payload {
        Some(s) => (s, "field `source`"),
        None => (
            topic_source,
            "the source taken from the topic (no `source` field)",
        ),
    };
    let problem = if source.is_empty() {
        "is empty".to_owned()
    } else if too_long(source) {
        "is longer than 200 characters".to_owned()
    } else if let Some(c) = source
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        format!("{} contains {c:?}, which a source must not", quote(source))
    } else if source != topic_source {
        return Err(reject(
            RejectReason::SourceMismatch,
            format!(
                "field `source` {} differs from the topic's source {}: a feed publishes only \
                 on its own topic",
                quote(source),
                quote(topic_source)
            ),
        ));
    } else {
        return Ok(source.to_owned());
    };
    Err(reject(
        RejectReason::InvalidSource,
        format!("{origin} {problem}"),
    ))
}

fn parse_plate(plate: Option<&str>) -> Result<Plate, Rejection> {
    let text = plate.ok_or_else(|| {
        reject(
            RejectReason::MissingField,
            "field `plate` is required for a vehicle sighting",
        )
    })?;
    Plate::parse(text)
        .map_err(|e| reject(RejectReason::InvalidPlate, format!("field `plate`: {e}")))
}

fn parse_person_id(id: Option<&str>) -> Result<PersonId, Rejection> {
    let text = id.ok_or_else(|| {
        reject(
            RejectReason::MissingField,
            "field `person_id` is required for a person sighting",
        )
    })?;
    // `PersonIdError` messages never repeat the number, so they are safe to pass on.
    PersonId::parse(text).map_err(|e| {
        reject(
            RejectReason::InvalidPersonId,
            format!("field `person_id`: {e}"),
        )
    })
}

fn parse_datum(datum: Option<&str>) -> Result<Datum, Rejection> {
    // The exact contract spellings skip `FromStr`, which allocates to be lenient.
    match datum {
        None | Some("wgs84") => Ok(Datum::Wgs84),
        Some("gcj02") => Ok(Datum::Gcj02),
        Some("bd09") => Ok(Datum::Bd09),
        Some(other) => other.parse().map_err(|_| {
            reject(
                RejectReason::UnknownDatum,
                format!(
                    "field `datum` is {}, expected wgs84, gcj02 or bd09",
                    quote(other)
                ),
            )
        }),
    }
}

fn check_coordinates(lat: f64, lon: f64) -> Result<(), Rejection> {
    let ok = lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon);
    if ok {
        Ok(())
    } else {
        Err(reject(
            RejectReason::InvalidCoordinates,
            format!(
                "fields `lat`/`lon` ({lat}, {lon}) must be decimal degrees within ±90 and ±180"
            ),
        ))
    }
}

fn parse_observed_at(
    text: &str,
    now: DateTime<Utc>,
    limits: &DecodeLimits,
) -> Result<DateTime<Utc>, Rejection> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| {
            reject(
                RejectReason::InvalidTime,
                format!(
                    "field `observed_at` {} is not an RFC 3339 time with an offset \
                     (like 2024-12-03T10:15:00+08:00): {e}",
                    quote(text)
                ),
            )
        })?
        .with_timezone(&Utc);
    // No bound if `now + skew` is beyond chrono's range: nothing can be later than that.
    match now.checked_add_signed(limits.max_future_skew) {
        Some(latest) if at > latest => Err(reject(
            RejectReason::FutureTime,
            format!(
                "field `observed_at` {text} is {}s ahead of our clock; at most {}s is allowed",
                (at - now).num_seconds(),
                limits.max_future_skew.num_seconds()
            ),
        )),
        _ => match now.checked_sub_signed(limits.max_age) {
            Some(earliest) if at < earliest => Err(reject(
                RejectReason::StaleTime,
                format!(
                    "field `observed_at` {} is {}s before our clock; at most {}s is allowed",
                    quote(text),
                    (now - at).num_seconds(),
                    limits.max_age.num_seconds()
                ),
            )),
            _ => Ok(at),
        },
    }
}

/// A value for a detail: debug-quoted and cut short, so a detail stays one readable line.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The JSON types the contract gives each field.
#[derive(Clone, Copy)]
enum JsonType {
    String,
    Number,
}

/// Every field `Raw` reads, in the order the diagnosis reports problems: `(name, type,
/// required)`. Kind-dependent requirements (`plate`, `person_id`) are checked after the parse.
const FIELDS: [(&str, JsonType, bool); 10] = [
    ("event_id", JsonType::String, true),
    ("kind", JsonType::String, true),
    ("plate", JsonType::String, false),
    ("person_id", JsonType::String, false),
    ("lat", JsonType::Number, true),
    ("lon", JsonType::Number, true),
    ("datum", JsonType::String, false),
    ("observed_at", JsonType::String, true),
    ("source", JsonType::String, false),
    ("confidence", JsonType::Number, false),
];

/// The slow path: says why the typed parse failed, from a generic parse of the payload.
fn diagnose(payload: &[u8], typed_error: &serde_json::Error) -> Rejection {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(e) => return reject(RejectReason::NotJson, format!("payload is not JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return reject(
            RejectReason::NotJson,
            format!(
                "payload is a JSON {}, a sighting must be an object",
                type_name(&value)
            ),
        );
    };
    for (name, expected, required) in FIELDS {
        let found = match object.get(name) {
            None | Some(Value::Null) if required => {
                return reject(
                    RejectReason::MissingField,
                    format!("field `{name}` is required"),
                );
            }
            None | Some(Value::Null) => continue,
            Some(found) => found,
        };
        let ok = match expected {
            JsonType::String => found.is_string(),
            JsonType::Number => found.is_number(),
        };
        if !ok {
            let expected = match expected {
                JsonType::String => "a string",
                JsonType::Number => "a number",
            };
            return reject(
                RejectReason::WrongType,
                format!(
                    "field `{name}` must be {expected}, found {}",
                    type_name(found)
                ),
            );
        }
    }
    if let Some(kind) = object.get("kind").and_then(Value::as_str) {
        if kind != "vehicle" && kind != "person" {
            return reject(
                RejectReason::UnknownKind,
                format!(
                    "field `kind` is {}, expected \"vehicle\" or \"person\"",
                    quote(kind)
                ),
            );
        }
    }
    // Serde refused what the checks above accept, e.g. a field given twice: ambiguous input.
    reject(
        RejectReason::NotJson,
        format!("payload is not a well-formed sighting object: {typed_error}"),
    )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The contract's dead letter, with the original payload kept losslessly when it fits.
#[derive(Serialize)]
struct DeadLetter<'a> {
    reason: &'a str,
    detail: &'a str,
    /// The payload as a string when it is UTF-8, else `null` ...
    payload: Option<&'a str>,
    /// ... and then its bytes in standard base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    topic: &'a str,
    /// Extension: the payload did not fit the largest packet sent; `payload_base64` holds its
    /// first bytes only, and the two fields below identify the whole.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// The whole payload's length in bytes (only when truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<usize>,
    /// The whole payload's SHA-256, lower-case hex (only when truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<String>,
}

/// A dead letter's JSON, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub bytes: Vec<u8>,
    /// Set when the payload was cut to fit: the whole payload's length in bytes.
    pub truncated_from: Option<usize>,
}

/// A truncated letter's `detail` is cut to this many characters: a parser's message can quote
/// much of the payload.
const TRUNCATED_DETAIL_CHARS: usize = 500;

/// The JSON published on `deadletter/sightings` (or `deadletter/status`) for a refused payload,
/// at most `max_bytes` long (see [`dead_letter_for`]).
pub fn dead_letter(topic: &str, payload: &[u8], rejection: &Rejection, max_bytes: usize) -> Letter {
    dead_letter_for(
        rejection.reason.as_str(),
        &rejection.detail,
        topic,
        payload,
        max_bytes,
    )
}

/// A dead letter in the contract's shape for any refused message (sightings here, status
/// reports in the pipeline).
///
/// The payload is kept byte for byte so a feed's operator can replay or inspect it: as a
/// string when it is UTF-8, otherwise as `"payload": null` and `"payload_base64"`. A letter
/// that would be longer than `max_bytes` (the MQTT client cannot send it) carries instead
/// `truncated: true`, the payload's first bytes in base64, its length and its SHA-256.
pub fn dead_letter_for(
    reason: &str,
    detail: &str,
    topic: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Letter {
    // The whole letter is at least as long as the payload: a larger one is never built.
    if payload.len() <= max_bytes {
        let text = std::str::from_utf8(payload).ok();
        let letter = DeadLetter {
            reason,
            detail,
            payload: text,
            payload_base64: match text {
                Some(_) => None,
                None => Some(base64::engine::general_purpose::STANDARD.encode(payload)),
            },
            topic,
            truncated: false,
            payload_bytes: None,
            payload_sha256: None,
        };
        // Serialising strings into a Vec cannot fail; an empty letter would be the fallback.
        let bytes = serde_json::to_vec(&letter).unwrap_or_default();
        if bytes.len() <= max_bytes {
            return Letter {
                bytes,
                truncated_from: None,
            };
        }
    }
    let detail = match detail.char_indices().nth(TRUNCATED_DETAIL_CHARS) {
        Some((cut, _)) => &detail[..cut],
        None => detail,
    };
    let mut letter = DeadLetter {
        reason,
        detail,
        payload: None,
        payload_base64: Some(String::new()),
        topic,
        truncated: true,
        payload_bytes: Some(payload.len()),
        payload_sha256: Some(sha256_hex(payload)),
    };
    let overhead = serde_json::to_vec(&letter).map_or(0, |v| v.len());
    // Whole groups of three bytes: their base64 is exactly four characters each.
    let keep = (max_bytes.saturating_sub(overhead) / 4 * 3).min(payload.len());
    letter.payload_base64 =
        Some(base64::engine::general_purpose::STANDARD.encode(&payload[..keep]));
    Letter {
        bytes: serde_json::to_vec(&letter).unwrap_or_default(),
        truncated_from: Some(payload.len()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VEHICLE: &str = r#"{
      "event_id": "cixi-cam-0042-20241203-000123", "kind": "vehicle", "plate": "浙B·12345",
      "person_id": null, "lat": 30.1703, "lon": 121.2661, "datum": "wgs84",
      "observed_at": "2024-12-03T10:15:00+08:00", "source": "cixi-cam-0042", "confidence": 0.93
    }"#;

    const PERSON: &str = r#"{"event_id": "e-1", "kind": "person", "person_id": "11010519491231002X",
      "lat": 30.17, "lon": 121.27, "observed_at": "2024-12-03T02:15:00Z"}"#;

    fn now() -> DateTime<Utc> {
        "2024-12-03T02:20:00Z".parse().unwrap()
    }

    fn decode(payload: &str) -> Result<Sighting, Rejection> {
        decode_sighting(
            "cixi-cam-0042",
            payload.as_bytes(),
            now(),
            &DecodeLimits::default(),
        )
    }

    /// The vehicle example with `field` set to the JSON `value` (`None` removes it).
    fn vehicle_with(field: &str, value: Option<Value>) -> String {
        let mut v: Value = serde_json::from_str(VEHICLE).unwrap();
        let object = v.as_object_mut().unwrap();
        match value {
            Some(value) => object.insert(field.to_owned(), value),
            None => object.remove(field),
        };
        v.to_string()
    }

    fn reason_with(field: &str, value: Option<Value>) -> RejectReason {
        decode(&vehicle_with(field, value)).unwrap_err().reason
    }

    #[test]
    fn contract_example_decodes() {
        let s = decode(VEHICLE).unwrap();
        assert_eq!(s.event_id, "cixi-cam-0042-20241203-000123");
        assert_eq!(s.kind, TargetKind::Vehicle);
        assert_eq!(s.plate.unwrap().as_str(), "浙B12345");
        assert_eq!(s.person_id, None);
        assert_eq!((s.lat, s.lon), (30.1703, 121.2661));
        assert_eq!(s.datum, Datum::Wgs84);
        assert_eq!(
            s.observed_at,
            "2024-12-03T02:15:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.source, "cixi-cam-0042");
        assert_eq!(s.confidence, Some(0.93));
    }

    #[test]
    fn person_defaults_and_topic_source() {
        let s = decode(PERSON).unwrap();
        assert_eq!(s.person_id.unwrap().as_str(), "11010519491231002X");
        assert_eq!(s.plate, None);
        assert_eq!(s.source, "cixi-cam-0042");
        assert_eq!(s.datum, Datum::Wgs84);
        assert_eq!(s.confidence, None);
    }

    #[test]
    fn escaped_strings_and_unknown_fields_are_fine() {
        let payload = vehicle_with("extra", Some(serde_json::json!({"nested": [1, 2]})))
            .replace("浙B·12345", "\\u6d59B\\u00b712345");
        assert_eq!(
            decode(&payload).unwrap().plate.unwrap().as_str(),
            "浙B12345"
        );
    }

    #[test]
    fn position_is_converted_to_wgs84_and_datum_kept() {
        let (glon, glat) = datum::from_wgs84(Datum::Gcj02, 121.2661, 30.1703);
        let mut v: Value = serde_json::from_str(VEHICLE).unwrap();
        v["datum"] = "gcj02".into();
        v["lat"] = glat.into();
        v["lon"] = glon.into();
        let s = decode(&v.to_string()).unwrap();
        assert_eq!(s.datum, Datum::Gcj02);
        assert!((s.lat - 30.1703).abs() < 1e-7 && (s.lon - 121.2661).abs() < 1e-7);
        // Lenient spellings go through `Datum::from_str`; null means the default.
        let s = decode(&vehicle_with("datum", Some("GCJ-02".into()))).unwrap();
        assert_eq!(s.datum, Datum::Gcj02);
        let s = decode(&vehicle_with("datum", Some(Value::Null))).unwrap();
        assert_eq!(s.datum, Datum::Wgs84);
    }

    #[test]
    fn fast_path_borrows_unescaped_strings() {
        let raw: Raw<'_> = serde_json::from_str(VEHICLE).unwrap();
        assert!(matches!(raw.event_id, Cow::Borrowed(_)));
        assert!(matches!(raw.plate, Some(Text(Cow::Borrowed(_)))));
        assert!(matches!(raw.observed_at, Cow::Borrowed(_)));
    }

    #[test]
    fn each_rule_has_its_reason() {
        use RejectReason::*;
        use serde_json::json;
        let cases: Vec<(&str, Option<Value>, RejectReason)> = vec![
            ("event_id", None, MissingField),
            ("kind", Some(Value::Null), MissingField),
            ("lat", None, MissingField),
            ("lon", None, MissingField),
            ("observed_at", None, MissingField),
            ("plate", None, MissingField),
            ("plate", Some(Value::Null), MissingField),
            ("event_id", Some(json!(42)), WrongType),
            ("lat", Some(json!("30.17")), WrongType),
            ("plate", Some(json!(12345)), WrongType),
            ("person_id", Some(json!(["x"])), WrongType),
            ("confidence", Some(json!("high")), WrongType),
            ("kind", Some(json!("truck")), UnknownKind),
            ("kind", Some(json!("Vehicle")), UnknownKind),
            ("plate", Some(json!("B12345")), InvalidPlate),
            ("lat", Some(json!(90.5)), InvalidCoordinates),
            ("lon", Some(json!(-181)), InvalidCoordinates),
            ("lat", Some(json!(1e300)), InvalidCoordinates),
            ("datum", Some(json!("etrs89")), UnknownDatum),
            (
                "observed_at",
                Some(json!("2024-12-03T10:15:00")),
                InvalidTime,
            ),
            ("observed_at", Some(json!("yesterday")), InvalidTime),
            (
                "observed_at",
                Some(json!("2024-12-03T02:26:00Z")),
                FutureTime,
            ),
            ("event_id", Some(json!("")), InvalidEventId),
            ("event_id", Some(json!("a\u{7}b")), InvalidEventId),
            ("event_id", Some(json!("x".repeat(201))), InvalidEventId),
            ("source", Some(json!("浙".repeat(201))), InvalidSource),
            ("source", Some(json!("cam/1")), InvalidSource),
            ("source", Some(json!("cam+")), InvalidSource),
            ("source", Some(json!("")), InvalidSource),
            ("confidence", Some(json!(1.5)), InvalidConfidence),
            ("confidence", Some(json!(-0.1)), InvalidConfidence),
        ];
        for (field, value, expected) in cases {
            assert_eq!(
                reason_with(field, value.clone()),
                expected,
                "{field} = {value:?}"
            );
        }
        // Limits are inclusive.
        assert!(decode(&vehicle_with("event_id", Some(json!("x".repeat(200))))).is_ok());
        let long_source = "浙".repeat(200);
        let payload = vehicle_with("source", Some(json!(long_source)));
        let limits = DecodeLimits::default();
        assert!(decode_sighting(&long_source, payload.as_bytes(), now(), &limits).is_ok());
        assert!(decode(&vehicle_with("confidence", Some(json!(1)))).is_ok());
        assert!(
            decode(&vehicle_with(
                "observed_at",
                Some(json!("2024-12-03T02:25:00Z"))
            ))
            .is_ok()
        );
        assert!(decode(&vehicle_with("lat", Some(json!(-90)))).is_ok());
    }

    #[test]
    fn payload_level_reasons() {
        let limits = DecodeLimits {
            max_payload_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = decode_sighting("cam", VEHICLE.as_bytes(), now(), &limits).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooLarge);
        for not_json in [
            "",
            "{",
            "[1, 2]",
            "\"vehicle\"",
            "null",
            "{} {}",
            "{\"a\": 1e999}",
        ] {
            assert_eq!(
                decode(not_json).unwrap_err().reason,
                RejectReason::NotJson,
                "{not_json}"
            );
        }
        let bytes = [b'{', 0xff, b'}'];
        let err = decode_sighting("cam", &bytes, now(), &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.reason, RejectReason::NotJson);
        // A field given twice is ambiguous: which position is right?
        let twice = VEHICLE.replace("\"lat\": 30.1703,", "\"lat\": 30.1703, \"lat\": 31.0,");
        assert_eq!(decode(&twice).unwrap_err().reason, RejectReason::NotJson);
        // The topic's source is checked when the payload has none.
        let err = decode_sighting("", PERSON.as_bytes(), now(), &DecodeLimits::default());
        assert_eq!(err.unwrap_err().reason, RejectReason::InvalidSource);
    }

    #[test]
    fn details_name_the_field_and_never_the_identity_number() {
        let detail = |field: &str, value: Value| {
            decode(&vehicle_with(field, Some(value)))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            detail("lat", "30".into()),
            "wrong_type: field `lat` must be a number, found string"
        );
        assert!(
            detail("plate", "B12345".into()).starts_with("invalid_plate: field `plate`: plate")
        );
        assert!(detail("observed_at", "2024-12-03T10:15:00".into()).contains("`observed_at`"));
        assert!(detail("kind", "x".repeat(100).into()).contains('…'));
        let wrong_check = PERSON.replace("11010519491231002X", "110105194912310021");
        let err = decode(&wrong_check).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidPersonId);
        assert!(err.detail.contains("`person_id`"), "{err}");
        assert!(!err.detail.contains("110105"), "{err}");
        let no_id = PERSON.replace("\"person_id\"", "\"other\"");
        assert_eq!(
            decode(&no_id).unwrap_err().reason,
            RejectReason::MissingField
        );
    }

    #[test]
    fn reason_names_are_distinct_snake_case() {
        let names: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(RejectReason::as_str).collect();
        assert_eq!(names.len(), RejectReason::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }

    #[test]
    fn dead_letter_keeps_the_payload() {
        let rejection = decode("{").unwrap_err();
        let letter: Value =
            serde_json::from_slice(&dead_letter("sightings/cam", b"{", &rejection, 1 << 20).bytes)
                .unwrap();
        assert_eq!(letter["reason"], "not_json");
        assert_eq!(letter["detail"], rejection.detail.as_str());
        assert_eq!(letter["payload"], "{");
        assert_eq!(letter["topic"], "sightings/cam");
        assert!(letter.get("payload_base64").is_none());
        let keys: Vec<_> = letter.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["reason", "detail", "payload", "topic"]);

        let bytes = [0xff, 0x00, b'a', 0xc3];
        let letter: Value = serde_json::from_slice(
            &dead_letter("sightings/cam", &bytes, &rejection, 1 << 20).bytes,
        )
        .unwrap();
        assert_eq!(letter["payload"], Value::Null);
        let encoded = letter["payload_base64"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, bytes);
    }

    #[test]
    fn a_dead_letter_never_exceeds_its_limit() {
        let rejection = decode("{").unwrap_err();
        // UTF-8 that JSON escapes six-fold, and bytes that are not UTF-8.
        let control = vec![1u8; 300_000];
        let binary: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
        for payload in [&control[..], &binary[..], &[b'x'; 10][..]] {
            for max in [2_000, 64 * 1024, 1 << 20] {
                let letter = dead_letter("sightings/cam", payload, &rejection, max);
                assert!(letter.bytes.len() <= max, "{} > {max}", letter.bytes.len());
                let value: Value = serde_json::from_slice(&letter.bytes).unwrap();
                if payload.len() == 10 {
                    assert_eq!(letter.truncated_from, None);
                    assert!(value.get("truncated").is_none());
                    continue;
                }
                assert_eq!(letter.truncated_from, Some(payload.len()));
                assert_eq!(value["truncated"], true);
                assert_eq!(value["payload"], Value::Null);
                assert_eq!(value["payload_bytes"], payload.len());
                assert_eq!(value["payload_sha256"], sha256_hex(payload).as_str());
                let kept = base64::engine::general_purpose::STANDARD
                    .decode(value["payload_base64"].as_str().unwrap())
                    .unwrap();
                assert!(!kept.is_empty() && payload.starts_with(&kept));
            }
        }
        // The SHA-256 of "abc" (FIPS 180-2).
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Any JSON value, nested a little.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-200.0..200.0f64).prop_map(Value::from),
            "\\PC{0,24}".prop_map(Value::from),
            prop::sample::select(vec![
                "vehicle",
                "person",
                "wgs84",
                "gcj02",
                "bd09",
                "浙B12345",
                "11010519491231002X",
                "2024-12-03T10:15:00+08:00",
                "2099-01-01T00:00:00Z",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Objects made mostly of the sighting's own fields, with values of any type.
    fn json_object() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            3 => prop::sample::select(FIELDS.map(|(name, _, _)| name).to_vec()).prop_map(String::from),
            1 => "[a-z_]{1,10}",
        ];
        prop::collection::btree_map(key, json_value(), 0..12)
            .prop_map(|m| Value::Object(m.into_iter().collect()).to_string())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_sighting("cam", &bytes, now(), &DecodeLimits::default());
        }

        /// Also checks that the diagnosis explains every refusal of the typed parse: a JSON
        /// object without duplicate keys is never reported as "not JSON".
        #[test]
        fn random_objects_never_panic_and_are_diagnosed(payload in json_object()) {
            match decode(&payload) {
                Ok(s) => {
                    prop_assert!((-90.0..=90.0).contains(&s.lat) && (-180.0..=180.0).contains(&s.lon));
                    prop_assert_eq!(s.plate.is_some(), s.kind == TargetKind::Vehicle);
                }
                Err(e) => prop_assert_ne!(e.reason, RejectReason::NotJson, "{}", e),
            }
        }

        #[test]
        fn extreme_clocks_never_panic(secs in any::<i64>(), skew in any::<i32>()) {
            let limits = DecodeLimits {
                max_future_skew: chrono::Duration::seconds(i64::from(skew)),
                ..DecodeLimits::default()
            };
            let now = DateTime::from_timestamp(secs % 8_000_000_000_000, 0).unwrap_or_default();
            let _ = decode_sighting("cam", VEHICLE.as_bytes(), now, &limits);
        }
    }
}
