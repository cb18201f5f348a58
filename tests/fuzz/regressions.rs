//! Cases the fuzzer found, kept as plain tests.

use leadrelay::contract::decode::{DecodeLimits, RejectReason, decode_sighting};
use leadrelay::contract::plate::Confusables;
use leadrelay::geo::datum::{gcj02_to_wgs84, wgs84_to_gcj02};

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

/// Just inside the GCJ-02 box's east edge (lon 137.8347) the forward transform moves a point
/// about 500 m east, out of the box; decoding then took the written position for WGS-84 and
/// placed the sighting 577 m off.
#[test]
fn gcj02_position_carried_out_of_the_box_decodes_to_its_source() {
    let (lon, lat) = (137.82894685961807, 42.958571061285014);
    let (g_lon, g_lat) = wgs84_to_gcj02(lon, lat);
    assert!(
        g_lon > 137.8347,
        "the case no longer crosses the edge: {g_lon}"
    );
    let (w_lon, w_lat) = gcj02_to_wgs84(g_lon, g_lat);
    assert!(
        (w_lon - lon).abs() < 1e-8 && (w_lat - lat).abs() < 1e-8,
        "{w_lon}, {w_lat}"
    );
    // Far outside the box nothing moves.
    assert_eq!(gcj02_to_wgs84(140.0, 42.9), (140.0, 42.9));
    assert_eq!(gcj02_to_wgs84(137.9, 42.9), (137.9, 42.9));
}

/// The other side of the same edge (found at 971,805 cases): a WGS-84 position just outside
/// the box is written unchanged as GCJ-02, and that position is also the image of a point
/// about 490 m west, inside the box. Both are pre-images; the decoder takes the inside one,
/// and the property accepts either.
#[test]
fn gcj02_position_just_outside_the_box_has_two_pre_images() {
    let (lon, lat) = (137.8353162454679, 21.99105856153511);
    assert_eq!(wgs84_to_gcj02(lon, lat), (lon, lat), "outside the box");
    let (w_lon, w_lat) = gcj02_to_wgs84(lon, lat);
    assert!(w_lon < 137.8347, "the inside pre-image: {w_lon}");
    let (g_lon, g_lat) = wgs84_to_gcj02(w_lon, w_lat);
    assert!(
        (g_lon - lon).abs() < 1e-8 && (g_lat - lat).abs() < 1e-8,
        "{g_lon}, {g_lat}"
    );
}
