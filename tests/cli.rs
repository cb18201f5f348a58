//! The `locate` and `check-data` commands, run as a user runs them.

use std::process::Command;

fn leadrelay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn locate_prints_the_decision_as_json() {
    // The contract's example sighting, in Cixi.
    let (ok, out, err) = leadrelay(&["locate", "--lat", "30.1703", "--lon", "121.2661"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["assisting_court_id"], "cixi");
    assert_eq!(v["routing"], "in_jurisdiction");
    assert!(v["distance_km"].as_f64().unwrap() < 5.0);
}

#[test]
fn locate_converts_gcj02_and_knows_own_jurisdiction() {
    let (ok, out, _) = leadrelay(&[
        "locate",
        "--lat",
        "30.045404",
        "--lon",
        "121.156294",
        "--datum",
        "gcj02",
        "--requesting-court",
        "yuyao",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing"], "own_jurisdiction");
    let wgs_lon = v["wgs84"]["lon"].as_f64().unwrap();
    assert!((121.150..121.153).contains(&wgs_lon), "{wgs_lon}");
}

#[test]
fn locate_at_sea_goes_to_the_nearest_court() {
    let (ok, out, _) = leadrelay(&["locate", "--lat", "29.4", "--lon", "122.6"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing"], "nearest_court");
    assert_eq!(v["assisting_court_id"], "xiangshan");
    assert!(v["containing_court_id"].is_null());
}

#[test]
fn locate_refuses_bad_input_clearly() {
    let (ok, _, err) = leadrelay(&["locate", "--lat", "95", "--lon", "121"]);
    assert!(!ok);
    assert!(err.contains("not a valid coordinate"), "{err}");
    let (ok, _, err) = leadrelay(&["locate", "--lat", "30", "--lon", "121", "--datum", "nad27"]);
    assert!(!ok);
    assert!(err.contains("unknown datum"), "{err}");
}

#[test]
fn check_data_passes_the_shipped_data() {
    let (ok, out, err) = leadrelay(&["check-data"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("18 jurisdictions") && out.contains("0 error(s)"),
        "{out}"
    );
}

#[test]
fn check_data_names_file_feature_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"court_id":"yuyao"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1]]]}},
          {"type":"Feature","properties":{"court_id":"nowhere"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]]}}]}"#,
    )
    .unwrap();
    let (ok, out, _) = leadrelay(&["check-data", "--jurisdictions", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains(
            "bad.geojson: feature #0 (court_id \"yuyao\"): polygon 0, ring 0: unclosed ring"
        ),
        "{out}"
    );
    assert!(
        out.contains("feature #1 (court_id \"nowhere\"): unknown court_id"),
        "{out}"
    );
    // The same file refuses to load for locate: a clear error, not a panic.
    let (ok, _, err) = leadrelay(&[
        "locate",
        "--lat",
        "30",
        "--lon",
        "121",
        "--jurisdictions",
        path.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("unclosed ring"), "{err}");
}
