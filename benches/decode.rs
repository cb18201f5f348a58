//! Decode throughput: the unmatched path's fixed cost (docs/architecture.md).
//!
//! Deterministic payloads in the shape of the contract's example: a vehicle (WGS-84 and GCJ-02),
//! a person, and two refusals — one caught by validation after the typed parse, one that falls
//! to the slower `serde_json::Value` diagnosis.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use leadrelay::contract::decode::{DecodeLimits, decode_sighting};

const VEHICLE: &str = r#"{"event_id":"cixi-cam-0042-20241203-000123","kind":"vehicle","plate":"浙B·12345","person_id":null,"lat":30.1703,"lon":121.2661,"datum":"wgs84","observed_at":"2024-12-03T10:15:00+08:00","source":"cixi-cam-0042","confidence":0.93}"#;
const VEHICLE_GCJ02: &str = r#"{"event_id":"cixi-cam-0042-20241203-000124","kind":"vehicle","plate":"浙B12345","lat":30.1680,"lon":121.2708,"datum":"gcj02","observed_at":"2024-12-03T10:15:00+08:00","source":"cixi-cam-0042","confidence":0.93}"#;
const PERSON: &str = r#"{"event_id":"yuyao-face-0007-20241203-000456","kind":"person","plate":null,"person_id":"11010519491231002X","lat":30.0450,"lon":121.1550,"datum":"wgs84","observed_at":"2024-12-03T10:15:00+08:00","source":"yuyao-face-0007","confidence":0.81}"#;
/// Valid JSON, refused after the typed parse: the fast path all the way.
const BAD_PLATE: &str = r#"{"event_id":"cixi-cam-0042-20241203-000125","kind":"vehicle","plate":"B12345","lat":30.1703,"lon":121.2661,"observed_at":"2024-12-03T10:15:00+08:00","source":"cixi-cam-0042"}"#;
/// The typed parse fails (a string where a number belongs): the diagnosis runs.
const WRONG_TYPE: &str = r#"{"event_id":"cixi-cam-0042-20241203-000126","kind":"vehicle","plate":"浙B12345","lat":"30.1703","lon":121.2661,"observed_at":"2024-12-03T10:15:00+08:00","source":"cixi-cam-0042"}"#;

fn decode(c: &mut Criterion) {
    let now: DateTime<Utc> = "2024-12-03T02:16:00Z".parse().expect("valid time");
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("decode");
    for (name, payload, ok) in [
        ("vehicle", VEHICLE, true),
        ("vehicle_gcj02", VEHICLE_GCJ02, true),
        ("person", PERSON, true),
        ("rejected_invalid_plate", BAD_PLATE, false),
        ("rejected_wrong_type", WRONG_TYPE, false),
    ] {
        assert_eq!(
            decode_sighting("cixi-cam-0042", payload.as_bytes(), now, &limits).is_ok(),
            ok,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                decode_sighting(
                    black_box("cixi-cam-0042"),
                    black_box(payload.as_bytes()),
                    now,
                    &limits,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
