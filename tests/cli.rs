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
fn check_data_refuses_jurisdictions_without_a_datum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodatum.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"court_id":"yuyao"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]]}}]}"#,
    )
    .unwrap();
    let (ok, out, _) = leadrelay(&["check-data", "--jurisdictions", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("nodatum.geojson: feature #0 (court_id \"yuyao\"): no \"datum\" declared"),
        "{out}"
    );
}

#[test]
fn check_data_names_file_feature_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","datum":"wgs84","features":[
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

#[test]
fn targets_import_then_sweep_exports_the_court_area_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("lr.db").display());
    let lines = [
        r#"{"target_id":"P-1","kind":"person","person_id":"330281198001011230","cases":[{"case_no":"K1","court_id":"cixi","filed_on":"2024-01-01","amount_cny":30000}],"known_locations":[{"label":"domicile","lat":30.0411,"lon":121.15}]}"#,
        r#"{"target_id":"V-1","kind":"vehicle","plate":"浙B·12345","cases":[{"case_no":"K2","court_id":"yuyao","filed_on":"2024-01-01"}],"known_locations":[{"label":"home","lat":30.17,"lon":121.27}]}"#,
    ];
    let file = dir.path().join("targets.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (ok, out, err) = leadrelay(&[
        "targets",
        "import",
        file.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 2"), "{out}");
    // A bad line refuses the whole file.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{{\"target_id\":\"X\"}}\n", lines[0])).unwrap();
    let (ok, _, err) = leadrelay(&[
        "targets",
        "import",
        bad.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(!ok && err.contains(":2:"), "{err}");
    let csv = dir.path().join("sweep.csv");
    let (ok, _, err) = leadrelay(&[
        "sweep",
        "--court",
        "yuyao",
        "--out",
        csv.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[1].starts_with(
            "P-1,person,,330281198001011230,,domicile,30.0411,121.15,K1,cixi,2024-01-01,30000"
        ),
        "{text}"
    );
}

/// README.md's first command, shortened: the demo re-enacts the headline case on its embedded
/// broker and database, and stops cleanly.
#[test]
fn the_demo_dispatches_the_headline_case_and_stops() {
    let (ok, out, err) = leadrelay(&["demo", "--duration", "10s"]);
    assert!(ok, "{err}");
    let task = out
        .lines()
        .find(|l| l.contains("TASK") && l.contains("浙B12345"))
        .unwrap_or_else(|| panic!("no task for the headline car:\n{out}"));
    assert!(task.contains("yuyao → cixi"), "{task}");
    assert!(
        out.lines()
            .any(|l| l.contains("ALERT") && l.contains("to yuyao")),
        "{out}"
    );
    assert!(out.contains("status acknowledged"), "{out}");
}
