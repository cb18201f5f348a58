//! Status reports from command centers: `decode_status`.

use chrono::{DateTime, Utc};
use leadrelay::contract::task::TaskStatus;
use leadrelay::flow::pipeline::decode_status;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::config;

/// The statuses a command center may report, by their contract names.
const REPORTABLE: [(&str, TaskStatus); 6] = [
    ("acknowledged", TaskStatus::Acknowledged),
    ("en_route", TaskStatus::EnRoute),
    ("seized", TaskStatus::Seized),
    ("located", TaskStatus::Located),
    ("not_found", TaskStatus::NotFound),
    ("rejected", TaskStatus::Rejected),
];

/// A valid report: task id, status, and the optional `at`, `by`, `note`.
fn valid_report() -> impl Strategy<Value = (Value, TaskStatus, Option<DateTime<Utc>>)> {
    (
        "[0-9a-f-]{1,40}",
        prop::sample::select(REPORTABLE.to_vec()),
        prop::option::of(0..4_102_444_800i64),
        prop::option::of("\\PC{0,30}"),
        prop::option::of("\\PC{0,80}"),
    )
        .prop_map(|(task_id, (name, status), at, by, note)| {
            let at = at.and_then(|secs| DateTime::from_timestamp(secs, 0));
            let mut o = Map::new();
            o.insert("task_id".into(), task_id.into());
            o.insert("status".into(), name.into());
            if let Some(at) = at {
                o.insert("at".into(), at.to_rfc3339().into());
            }
            if let Some(by) = by {
                o.insert("by".into(), by.into());
            }
            if let Some(note) = note {
                o.insert("note".into(), note.into());
            }
            (Value::Object(o), status, at)
        })
}

fn any_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        prop::sample::select(vec![
            "acknowledged",
            "EN_ROUTE",
            "enRoute",
            "dispatched",
            "cancelled",
            "",
            "2024-12-03T10:15:00+08:00",
            "2024-12-03",
            "+275760-09-13T00:00:00Z",
        ])
        .prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Valid reports parse with their fields.
    #[test]
    fn valid_reports_parse((report, status, at) in valid_report()) {
        let text = report.to_string();
        let parsed = decode_status(text.as_bytes());
        prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.task_id.as_str(), report["task_id"].as_str().unwrap_or_default());
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(parsed.at, at);
        prop_assert_eq!(parsed.by.as_str(), report.get("by").and_then(Value::as_str).unwrap_or(""));
        prop_assert_eq!(parsed.note.as_str(), report.get("note").and_then(Value::as_str).unwrap_or(""));
    }

    /// One field dropped or replaced by any value: a result or an error, never a panic; an
    /// unknown status or a missing task id is an error.
    #[test]
    fn damaged_reports_never_panic(
        (mut report, _, _) in valid_report(),
        field in prop::sample::select(vec!["task_id", "status", "at", "by", "note", "extra"]),
        value in prop::option::of(any_leaf()),
    ) {
        let o = report.as_object_mut().unwrap();
        match &value {
            Some(v) => { o.insert(field.into(), v.clone()); }
            None => { o.remove(field); }
        }
        let result = decode_status(report.to_string().as_bytes());
        let status_known = report.get("status").and_then(Value::as_str)
            .is_some_and(|s| TaskStatus::parse(s).is_some());
        if !status_known || !report.get("task_id").is_some_and(Value::is_string) {
            prop_assert!(result.is_err(), "{report} → {result:?}");
        }
    }

    /// Truncated and random bytes.
    #[test]
    fn truncated_and_random_bytes_never_panic(
        (report, _, _) in valid_report(),
        cut in any::<prop::sample::Index>(),
        bytes in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let text = report.to_string();
        let prefix = &text.as_bytes()[..cut.index(text.len())];
        prop_assert!(decode_status(prefix).is_err());
        let _ = decode_status(&bytes);
    }
}
