//! Target bodies of `PUT /api/v1/targets/{id}`: deserialisation and `Target::validate`.

use std::sync::OnceLock;

use leadrelay::contract::model::{Target, TargetKind};
use leadrelay::geo::geodata::GeoData;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config;
use crate::person_id::valid_person_id;
use crate::plate::valid_plate;

fn shipped() -> &'static GeoData {
    static DATA: OnceLock<GeoData> = OnceLock::new();
    DATA.get_or_init(GeoData::shipped)
}

/// Court ids as the shipped data has them, and well-formed ones it does not know.
fn court_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["yuyao", "cixi", "haishu", "ningbo_intermediate", "beilun"])
            .prop_map(String::from),
        1 => "[a-z0-9_-]{1,64}",
    ]
}

fn case() -> impl Strategy<Value = Value> {
    (
        "[^\\p{Cc}]{1,30}".prop_filter("blank", |s| !s.trim().is_empty()),
        court_id(),
        (1990..2030i32, 1..=12u32, 1..=28u32),
        prop::option::of(0.0..1e9f64),
    )
        .prop_map(|(case_no, court_id, (y, m, d), amount)| {
            let mut c = json!({
                "case_no": case_no,
                "court_id": court_id,
                "filed_on": format!("{y:04}-{m:02}-{d:02}"),
            });
            if let Some(a) = amount {
                c["amount_cny"] = a.into();
            }
            c
        })
}

fn known_location() -> impl Strategy<Value = Value> {
    (
        "\\PC{0,12}",
        -90.0..=90.0f64,
        -180.0..=180.0f64,
        prop::option::of(prop::sample::select(vec!["wgs84", "gcj02", "bd09"])),
    )
        .prop_map(|(label, lat, lon, datum)| {
            let mut l = json!({"label": label, "lat": lat, "lon": lon});
            if let Some(d) = datum {
                l["datum"] = d.into();
            }
            l
        })
}

/// A valid target body in the contract's shape.
fn valid_target() -> impl Strategy<Value = Value> {
    let kind_and_id = prop_oneof![
        valid_plate().prop_map(|p| ("vehicle", "plate", p)),
        valid_person_id().prop_map(|p| ("person", "person_id", p)),
    ];
    (
        "[^\\p{Cc}]{1,128}",
        kind_and_id,
        prop::option::of("\\PC{0,10}"),
        prop::sample::select(vec!["active", "seized", "withdrawn"]),
        prop::option::of(court_id()),
        prop::collection::vec(case(), 1..4),
        prop::collection::vec(known_location(), 0..3),
        prop::option::of(0..4_102_444_800i64),
    )
        .prop_map(
            |(target_id, (kind, field, id), name, status, lead, cases, locations, until)| {
                let mut t = json!({
                    "target_id": target_id,
                    "kind": kind,
                    "status": status,
                    "lead_court_id": lead,
                    "cases": cases,
                    "known_locations": locations,
                });
                t[field] = id.into();
                if let Some(name) = name {
                    t["name"] = name.into();
                }
                if let Some(secs) = until.and_then(|s| chrono::DateTime::from_timestamp(s, 0)) {
                    t["valid_until"] = secs.to_rfc3339().into();
                }
                t
            },
        )
}

/// The rules `validate` documents, checked independently: `None` when the target keeps them.
fn broken_rule(t: &Target) -> Option<&'static str> {
    let court_ok = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
    };
    if t.target_id.is_empty()
        || t.target_id.chars().count() > 128
        || t.target_id.chars().any(char::is_control)
    {
        return Some("target_id");
    }
    if t.kind == TargetKind::Vehicle && t.plate.is_none() {
        return Some("plate");
    }
    if t.kind == TargetKind::Person && t.person_id.is_none() {
        return Some("person_id");
    }
    if t.cases.is_empty() {
        return Some("no cases");
    }
    if t.cases.iter().any(|c| {
        c.case_no.trim().is_empty()
            || !court_ok(&c.court_id)
            || c.amount_cny
                .is_some_and(|a| a.is_nan() || a < 0.0 || a.is_infinite())
    }) {
        return Some("case");
    }
    if t.lead_court_id.as_deref().is_some_and(|l| !court_ok(l)) {
        return Some("lead court");
    }
    if t.known_locations.iter().any(|l| {
        !(l.lat.is_finite() && l.lon.is_finite() && l.lat.abs() <= 90.0 && l.lon.abs() <= 180.0)
    }) {
        return Some("location");
    }
    None
}

/// A place in a target body and a value to put there (`None` removes it).
fn target_damage() -> impl Strategy<Value = (String, Option<Value>)> {
    let path = prop::sample::select(vec![
        "/target_id",
        "/kind",
        "/plate",
        "/person_id",
        "/name",
        "/status",
        "/lead_court_id",
        "/cases",
        "/cases/0",
        "/cases/0/case_no",
        "/cases/0/court_id",
        "/cases/0/filed_on",
        "/cases/0/amount_cny",
        "/known_locations",
        "/known_locations/0/lat",
        "/known_locations/0/lon",
        "/known_locations/0/datum",
        "/valid_until",
    ]);
    let value = prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![Just(90.5), Just(-180.5), Just(1e300), Just(-0.0)].prop_map(Value::from),
        prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "a\nb",
            "Yuyao",
            "yu/yao",
            "ningbo intermediate",
            "vehicle",
            "person",
            "active",
            "SEIZED",
            "浙B12345",
            "浙B1234",
            "11010519491231002X",
            "110105194912310021",
            "2024-02-30",
            "2024-03-01",
            "9999-12-31T23:59:59Z",
        ])
        .prop_map(Value::from),
        "\\PC{0,140}".prop_map(Value::from),
        "[^\\p{Cc}]{120,140}".prop_map(Value::from),
    ];
    (path, prop::option::of(value)).prop_map(|(p, v)| (p.to_owned(), v))
}

/// Sets or removes the value at a JSON pointer, where the parent exists.
fn apply(target: &mut Value, path: &str, value: Option<Value>) {
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(parent) = target.pointer_mut(parent) else {
        return;
    };
    match (parent, value) {
        (Value::Object(o), Some(v)) => {
            o.insert(last.to_owned(), v);
        }
        (Value::Object(o), None) => {
            o.remove(last);
        }
        (Value::Array(a), v) => {
            if let Ok(i) = last.parse::<usize>() {
                match v {
                    Some(v) if i < a.len() => a[i] = v,
                    None if i < a.len() => {
                        a.remove(i);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(100))]

    /// Valid bodies deserialise, validate, survive serialise → deserialise, and name only
    /// courts `check_courts` judges by the data.
    #[test]
    fn valid_targets_validate_and_round_trip(body in valid_target()) {
        let target: Result<Target, _> = serde_json::from_value(body.clone());
        prop_assert!(target.is_ok(), "{body}: {target:?}");
        let target = target.unwrap();
        prop_assert_eq!(target.validate(), Ok(()), "{}", body);
        let mut again: Target = serde_json::from_str(&serde_json::to_string(&target).unwrap()).unwrap();
        // serde_json's default float parser may land one ulp off the shortest spelling.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * a.abs().max(1.0);
        for (a, b) in again.cases.iter_mut().zip(&target.cases) {
            let (x, y) = (a.amount_cny.unwrap_or(0.0), b.amount_cny.unwrap_or(0.0));
            prop_assert!(close(x, y), "amount {x} for {y}");
            a.amount_cny = b.amount_cny;
        }
        for (a, b) in again.known_locations.iter_mut().zip(&target.known_locations) {
            prop_assert!(close(a.lat, b.lat) && close(a.lon, b.lon), "{a:?} for {b:?}");
            (a.lat, a.lon) = (b.lat, b.lon);
        }
        prop_assert_eq!(&again, &target);
        let all_known = target.cases.iter().map(|c| &c.court_id).chain(&target.lead_court_id)
            .all(|c| shipped().court(c).is_some());
        prop_assert_eq!(target.check_courts(shipped()).is_ok(), all_known);
    }

    /// One damaged place: refused by serde or by `validate` exactly when a rule it documents
    /// is broken; never a panic.
    #[test]
    fn validate_refuses_what_it_claims_to((mut body, (path, value)) in (valid_target(), target_damage())) {
        apply(&mut body, &path, value);
        let text = body.to_string();
        if let Ok(target) = serde_json::from_str::<Target>(&text) {
            let broken = broken_rule(&target);
            let verdict = target.validate();
            prop_assert_eq!(verdict.is_ok(), broken.is_none(), "{:?} for {}: {:?}", broken, text, verdict);
            let _ = target.check_courts(shipped());
        }
    }

    /// Truncated bodies are refused by serde.
    #[test]
    fn truncated_targets_are_refused(body in valid_target(), cut in any::<prop::sample::Index>()) {
        let text = body.to_string();
        let prefix = &text.as_bytes()[..cut.index(text.len())];
        prop_assert!(serde_json::from_slice::<Target>(prefix).is_err());
    }
}
