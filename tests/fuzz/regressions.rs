//! Cases the fuzzer found, kept as plain tests.

use leadrelay::contract::decode::{DecodeLimits, RejectReason, decode_sighting};
use leadrelay::contract::plate::Confusables;

/// BD-09 → WGS-84 moves a point by about 0.006°, which at lat -90 (or lon ±180) leaves the
/// globe; such a position must be refused, not passed on out of range.
#[test]
fn bd09_position_off_the_globe_is_refused() {
    let now = "2024-12-03T02:20:00Z".parse().unwrap();
    for (lat, lon) in [(-90.0, 0.0), (0.0, -180.0), (-90.0, -180.0)] {
        let payload = format!(
            r#"{{"event_id":"e","kind":"vehicle","plate":"浙B12345","lat":{lat},"lon":{lon},
                "datum":"bd09","observed_at":"2024-12-03T02:15:00Z"}}"#
        );
        let result = decode_sighting("cam", payload.as_bytes(), now, &DecodeLimits::default());
        match result {
            Ok(s) => assert!(s.lat.abs() <= 90.0 && s.lon.abs() <= 180.0, "{s:?}"),
            Err(e) => assert_eq!(e.reason, RejectReason::InvalidCoordinates, "{e}"),
        }
    }
}

/// `classes()` promises each class led by its representative, so that `from_classes` of it
/// is the same value; it listed members in code order, making `ga` come back as `AG`.
#[test]
fn confusable_classes_keep_their_representative() {
    for classes in [&["ga"][..], &["O0", "zt"], &["Q0D"]] {
        let c = Confusables::from_classes(classes).unwrap();
        assert_eq!(
            Confusables::from_classes(&c.classes()),
            Ok(c),
            "{classes:?}"
        );
        let first = classes[0].chars().next().unwrap().to_ascii_uppercase();
        assert_eq!(
            c.classes().iter().filter(|s| s.starts_with(first)).count(),
            1
        );
    }
}
