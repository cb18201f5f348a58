//! Between Rust values and columns: times as epoch milliseconds, enums as their wire names,
//! nested values as JSON text, and the row decoders for targets, tasks and task events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::db::Row;
use super::{StoreError, TaskEvent, TaskEventKind};
use crate::contract::model::Target;
use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;
use crate::contract::task::{SightingRef, Task, TaskStatus};

/// Milliseconds since the epoch, the stored form of every time.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `t` without its sub-millisecond part, so a value built in memory equals the one read back.
pub(crate) fn to_ms_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub(crate) fn time(ms: i64, what: &'static str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(what, format!("{ms} ms")))
}

pub(crate) fn opt_time(
    ms: Option<i64>,
    what: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| time(ms, what)).transpose()
}

pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// The serde name of a unit enum variant (`vehicle_seizure`, `in_jurisdiction`, ...).
pub(crate) fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        // Only unit enums are stored this way; they always serialize to a string.
        other => format!("{other:?}"),
    }
}

pub(crate) fn parse_name<T: DeserializeOwned>(
    s: String,
    what: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s)).map_err(|e| corrupt(what, e))
}

pub(crate) fn status(s: String) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(&s).ok_or_else(|| corrupt("task status", s))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::Encode)
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn plate(s: Option<String>) -> Result<Option<Plate>, StoreError> {
    s.map(|s| Plate::parse(&s).map_err(|e| corrupt("plate", e)))
        .transpose()
}

pub(crate) fn person_id(s: Option<String>) -> Result<Option<PersonId>, StoreError> {
    // The error never repeats the number.
    s.map(|s| PersonId::parse(&s).map_err(|e| corrupt("person_id", e)))
        .transpose()
}

/// Columns [`target_from_row`] reads.
macro_rules! target_columns {
    () => {
        "target_id, kind, plate, person_id, name, status, lead_court_id, cases, known_locations, \
         valid_until, updated_at"
    };
}
pub(crate) use target_columns;

pub(crate) fn target_from_row(row: &Row) -> Result<Target, StoreError> {
    Ok(Target {
        target_id: row.get("target_id")?,
        kind: parse_name(row.get("kind")?, "target kind")?,
        plate: plate(row.get("plate")?)?,
        person_id: person_id(row.get("person_id")?)?,
        name: row.get("name")?,
        status: parse_name(row.get("status")?, "target status")?,
        lead_court_id: row.get("lead_court_id")?,
        cases: from_json(&row.get::<String>("cases")?, "target cases")?,
        known_locations: from_json(&row.get::<String>("known_locations")?, "known locations")?,
        valid_until: opt_time(row.get("valid_until")?, "valid_until")?,
    })
}

/// Columns [`task_from_row`] reads.
macro_rules! task_columns {
    () => {
        "task_id, target_id, kind, status, requesting_court_id, assisting_court_id, routing, \
         distance_km, plate, person_id, cases, sighting, read_plate, fuzzy, substitutions, \
         dispatched_at, ack_by, resolve_by"
    };
}
pub(crate) use task_columns;

pub(crate) fn task_from_row(row: &Row) -> Result<Task, StoreError> {
    let sighting: Option<String> = row.get("sighting")?;
    let substitutions: i32 = row.get("substitutions")?;
    Ok(Task {
        task_id: row.get("task_id")?,
        kind: parse_name(row.get("kind")?, "task kind")?,
        target_id: row.get("target_id")?,
        plate: plate(row.get("plate")?)?,
        person_id: person_id(row.get("person_id")?)?,
        cases: from_json(&row.get::<String>("cases")?, "task cases")?,
        requesting_court_id: row.get("requesting_court_id")?,
        assisting_court_id: row.get("assisting_court_id")?,
        routing: parse_name(row.get("routing")?, "routing")?,
        sighting: sighting
            .map(|s| from_json::<SightingRef>(&s, "task sighting"))
            .transpose()?,
        distance_km: row.get("distance_km")?,
        dispatched_at: time(row.get("dispatched_at")?, "dispatched_at")?,
        ack_by: time(row.get("ack_by")?, "ack_by")?,
        resolve_by: time(row.get("resolve_by")?, "resolve_by")?,
        status: status(row.get("status")?)?,
        read_plate: plate(row.get("read_plate")?)?,
        fuzzy: row.get("fuzzy")?,
        substitutions: u8::try_from(substitutions).map_err(|e| corrupt("substitutions", e))?,
    })
}

pub(crate) fn task_event_from_row(row: &Row) -> Result<TaskEvent, StoreError> {
    let sighting: Option<String> = row.get("sighting")?;
    Ok(TaskEvent {
        at: time(row.get("occurred_at")?, "task event time")?,
        kind: parse_name::<TaskEventKind>(row.get("kind")?, "task event kind")?,
        status: status(row.get("status")?)?,
        by: row.get("actor")?,
        note: row.get("note")?,
        sighting: sighting
            .map(|s| from_json(&s, "task event sighting"))
            .transpose()?,
        court_id: row.get("court_id")?,
    })
}
