//! Geographic data: `GeoData::load` and `load_lenient` on damaged copies of the shipped files.

use std::sync::OnceLock;

use leadrelay::geo::geodata::{
    GeoData, SHIPPED_COURTS, SHIPPED_NEIGHBOUR_JURISDICTIONS, SHIPPED_NINGBO_JURISDICTIONS,
    Severity, Source,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config;

/// The shipped collections, parsed once: (file name, collection).
fn shipped_collections() -> &'static [(&'static str, Value); 2] {
    static FILES: OnceLock<[(&'static str, Value); 2]> = OnceLock::new();
    FILES.get_or_init(|| {
        let parse = |t: &str| serde_json::from_str(t).unwrap_or(Value::Null);
        [
            (
                "ningbo_jurisdictions.geojson",
                parse(SHIPPED_NINGBO_JURISDICTIONS),
            ),
            ("neighbours.geojson", parse(SHIPPED_NEIGHBOUR_JURISDICTIONS)),
        ]
    })
}

/// A change to a GeoJSON collection.
#[derive(Debug, Clone)]
enum GeoDamage {
    /// Remove the feature.
    DropFeature(prop::sample::Index),
    /// Set the value at a JSON pointer below the feature (`None` removes it).
    Set(prop::sample::Index, &'static str, Option<Value>),
    /// Replace one position of the first ring of the first polygon.
    Position(prop::sample::Index, prop::sample::Index, Value),
    /// Remove one position of that ring (unclosing it or shortening it).
    DropPosition(prop::sample::Index, prop::sample::Index),
    /// Give the feature another's `court_id` (a duplicate).
    CopyCourt(prop::sample::Index, prop::sample::Index),
    /// Set the collection's `datum` or `type`.
    Root(&'static str, Value),
}

fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!([[]])),
        Just(json!([[[]]])),
        Just(json!({})),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "Polygon",
            "MultiPolygon",
            "Point",
            "gcj02",
            "bd09",
            "etrs89",
            "Yuyao",
            "yuyao",
            "cixi",
            "a/b",
            "\u{0}",
        ])
        .prop_map(Value::from),
        (-1e3..1e3f64, -1e3..1e3f64).prop_map(|(x, y)| json!([x, y])),
    ]
}

fn odd_position() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-200.0..200.0f64, -100.0..100.0f64).prop_map(|(x, y)| json!([x, y])),
        (120.0..123.0f64, 28.0..31.0f64, any::<f64>()).prop_map(|(x, y, z)| json!([x, y, z])),
        Just(json!([121.0])),
        Just(json!(["121", "30"])),
        Just(json!([1e308, -1e308])),
        Just(json!(null)),
        Just(json!([[121.0, 30.0]])),
    ]
}

fn geo_damage() -> impl Strategy<Value = GeoDamage> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        index().prop_map(GeoDamage::DropFeature),
        (
            index(),
            prop::sample::select(vec![
                "/properties",
                "/properties/court_id",
                "/properties/name",
                "/properties/datum",
                "/datum",
                "/geometry",
                "/geometry/type",
                "/geometry/coordinates",
                "/geometry/coordinates/0",
                "/geometry/coordinates/0/0",
            ]),
            prop::option::of(odd_value()),
        )
            .prop_map(|(i, p, v)| GeoDamage::Set(i, p, v)),
        (index(), index(), odd_position()).prop_map(|(i, k, v)| GeoDamage::Position(i, k, v)),
        (index(), index()).prop_map(|(i, k)| GeoDamage::DropPosition(i, k)),
        (index(), index()).prop_map(|(i, j)| GeoDamage::CopyCourt(i, j)),
        (
            prop::sample::select(vec!["datum", "type", "features"]),
            odd_value()
        )
            .prop_map(|(k, v)| GeoDamage::Root(k, v)),
    ]
}

/// The first ring of the first polygon of a feature, whichever geometry type it has.
fn first_ring(feature: &mut Value) -> Option<&mut Vec<Value>> {
    let geometry = feature.get_mut("geometry")?;
    let multi = geometry.get("type").and_then(Value::as_str) == Some("MultiPolygon");
    let mut rings = geometry.get_mut("coordinates")?;
    if multi {
        rings = rings.get_mut(0)?;
    }
    rings.get_mut(0)?.as_array_mut()
}

fn apply(collection: &mut Value, damage: &GeoDamage) {
    if let GeoDamage::Root(key, v) = damage {
        if let Some(o) = collection.as_object_mut() {
            o.insert((*key).to_owned(), v.clone());
        }
        return;
    }
    let Some(features) = collection.get_mut("features").and_then(Value::as_array_mut) else {
        return;
    };
    if features.is_empty() {
        return;
    }
    let n = features.len();
    match damage {
        GeoDamage::DropFeature(i) => {
            features.remove(i.index(n));
        }
        GeoDamage::Set(i, path, v) => {
            let feature = &mut features[i.index(n)];
            let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
            match (feature.pointer_mut(parent), v) {
                (Some(Value::Object(o)), Some(v)) => {
                    o.insert(last.to_owned(), v.clone());
                }
                (Some(Value::Object(o)), None) => {
                    o.remove(last);
                }
                (Some(Value::Array(a)), v) => {
                    if let Ok(k) = last.parse::<usize>() {
                        if k < a.len() {
                            match v {
                                Some(v) => a[k] = v.clone(),
                                None => {
                                    a.remove(k);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        GeoDamage::Position(i, k, v) => {
            if let Some(ring) = first_ring(&mut features[i.index(n)]) {
                if !ring.is_empty() {
                    let k = k.index(ring.len());
                    ring[k] = v.clone();
                }
            }
        }
        GeoDamage::DropPosition(i, k) => {
            if let Some(ring) = first_ring(&mut features[i.index(n)]) {
                if !ring.is_empty() {
                    let k = k.index(ring.len());
                    ring.remove(k);
                }
            }
        }
        GeoDamage::CopyCourt(i, j) => {
            let id = features[j.index(n)]
                .pointer("/properties/court_id")
                .cloned();
            if let (Some(id), Some(props)) = (id, features[i.index(n)].get_mut("properties")) {
                props["court_id"] = id;
            }
        }
        GeoDamage::Root(..) => {}
    }
}

/// A change to the courts CSV, line by line.
#[derive(Debug, Clone)]
enum CsvDamage {
    DropRow(prop::sample::Index),
    DuplicateRow(prop::sample::Index),
    /// Swap two fields of a row.
    SwapFields(
        prop::sample::Index,
        prop::sample::Index,
        prop::sample::Index,
    ),
    /// Replace one field of a row.
    SetField(prop::sample::Index, prop::sample::Index, String),
    /// Add a line of arbitrary text.
    AddLine(prop::sample::Index, String),
}

fn csv_damage() -> impl Strategy<Value = CsvDamage> {
    let index = any::<prop::sample::Index>;
    let field = prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "yes",
            "no",
            "maybe",
            "gcj02",
            "bd09",
            "wgs84",
            "etrs89",
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "91",
            "-181",
            "30.0",
            "121.5",
            "Yuyao",
            "yuyao",
            "ningbo_intermediate",
            "\"",
            "\"a,b\"",
            "a\nb",
            "\u{FEFF}",
        ])
        .prop_map(String::from),
        "[0-9.eE+-]{0,10}",
        "\\PC{0,20}",
    ];
    prop_oneof![
        index().prop_map(CsvDamage::DropRow),
        index().prop_map(CsvDamage::DuplicateRow),
        (index(), index(), index()).prop_map(|(r, a, b)| CsvDamage::SwapFields(r, a, b)),
        (index(), index(), field).prop_map(|(r, f, v)| CsvDamage::SetField(r, f, v)),
        (index(), "[^\n]{0,80}").prop_map(|(r, l)| CsvDamage::AddLine(r, l)),
    ]
}

/// Splits a CSV line on commas outside quotes (the shipped file quotes only the last column).
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        if c == ',' && !quoted {
            fields.push(String::new());
            continue;
        }
        quoted ^= c == '"';
        if let Some(f) = fields.last_mut() {
            f.push(c);
        }
    }
    fields
}

fn apply_csv(text: &str, damage: &CsvDamage) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Row 0 is the header; damage the data rows, and the header only by `AddLine`.
    let rows = lines.len() - 1;
    let row = |i: &prop::sample::Index| 1 + i.index(rows);
    match damage {
        CsvDamage::DropRow(i) => {
            lines.remove(row(i));
        }
        CsvDamage::DuplicateRow(i) => {
            let r = row(i);
            lines.insert(r, lines[r].clone());
        }
        CsvDamage::SwapFields(i, a, b) => {
            let r = row(i);
            let mut fields = split_fields(&lines[r]);
            let (a, b) = (a.index(fields.len()), b.index(fields.len()));
            fields.swap(a, b);
            lines[r] = fields.join(",");
        }
        CsvDamage::SetField(i, f, v) => {
            let r = row(i);
            let mut fields = split_fields(&lines[r]);
            let f = f.index(fields.len());
            fields[f] = v.clone();
            lines[r] = fields.join(",");
        }
        CsvDamage::AddLine(i, l) => {
            lines.insert(i.index(lines.len() + 1), l.clone());
        }
    }
    lines.join("\n") + "\n"
}

/// Whole files, or a few features of each to keep a case cheap.
fn collections() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    (
        any::<bool>(),
        prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    )
        .prop_map(|(whole, picks)| {
            shipped_collections()
                .iter()
                .map(|(name, c)| {
                    let mut c = c.clone();
                    if !whole {
                        let all = c["features"].as_array().cloned().unwrap_or_default();
                        let chosen: std::collections::BTreeSet<usize> =
                            picks.iter().map(|p| p.index(all.len())).collect();
                        let some: Vec<Value> = chosen.into_iter().map(|i| all[i].clone()).collect();
                        c["features"] = Value::Array(some);
                    }
                    (*name, c)
                })
                .collect()
        })
}

/// What loaded data must be whatever the input: WGS-84 in range, every area's court known.
fn check_loaded(data: &GeoData) -> Result<(), TestCaseError> {
    for court in &data.courts {
        let c = court.command_center;
        prop_assert!(
            c.x.is_finite() && c.y.is_finite() && c.x.abs() <= 180.0 && c.y.abs() <= 90.0,
            "{court:?}"
        );
    }
    for j in &data.jurisdictions {
        prop_assert!(data.court(&j.court_id).is_some(), "{}", j.court_id);
        for polygon in &j.area.0 {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                prop_assert!(
                    ring.0.len() >= 4 && ring.0.first() == ring.0.last(),
                    "{}",
                    j.origin
                );
                for c in &ring.0 {
                    prop_assert!(
                        c.x.is_finite()
                            && c.y.is_finite()
                            && c.x.abs() <= 180.0
                            && c.y.abs() <= 90.0,
                        "{} has {c:?}",
                        j.origin
                    );
                }
            }
        }
    }
    Ok(())
}

/// Loads strictly and leniently and checks they agree: strict fails exactly when the
/// lenient load found an error-level problem.
fn load_both(sources: &[Source], courts: &Source) -> Result<bool, TestCaseError> {
    let (lenient, problems) = GeoData::load_lenient(sources, courts);
    check_loaded(&lenient)?;
    let errors = problems.iter().any(|p| p.severity == Severity::Error);
    match GeoData::load(sources, courts) {
        Ok(data) => {
            prop_assert!(!errors, "strict load accepted {problems:?}");
            check_loaded(&data)?;
        }
        Err(e) => {
            prop_assert!(errors, "strict load refused without an error: {e}");
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(!errors)
}

proptest! {
    #![proptest_config(config(8))]

    /// Damaged GeoJSON: problems, never a panic, never out-of-range data.
    #[test]
    fn damaged_geojson_is_reported(
        files in collections(),
        damages in prop::collection::vec((any::<bool>(), geo_damage()), 1..4),
    ) {
        let mut files = files;
        let clean: Vec<Source> = files.iter().map(|(n, c)| Source::inline(n, &c.to_string())).collect();
        let courts = Source::inline("courts.csv", SHIPPED_COURTS);
        // Undamaged subsets load clean: the damage below is what the problems are about.
        prop_assert!(load_both(&clean, &courts)?);
        for (second, damage) in &damages {
            apply(&mut files[usize::from(*second)].1, damage);
        }
        let sources: Vec<Source> = files.iter().map(|(n, c)| Source::inline(n, &c.to_string())).collect();
        load_both(&sources, &courts)?;
    }

    /// Damaged courts CSV: problems, never a panic.
    #[test]
    fn damaged_courts_are_reported(damages in prop::collection::vec(csv_damage(), 1..4), picks in collections()) {
        let mut text = SHIPPED_COURTS.to_owned();
        for damage in &damages {
            text = apply_csv(&text, damage);
        }
        let sources: Vec<Source> = picks.iter().map(|(n, c)| Source::inline(n, &c.to_string())).collect();
        load_both(&sources, &Source::inline("courts.csv", &text))?;
    }

    /// Truncated or spliced text of either kind of file.
    #[test]
    fn truncated_and_spliced_files_never_panic(
        which in 0..3usize,
        cut in any::<prop::sample::Index>(),
        splice in prop::option::of("\\PC{0,8}"),
    ) {
        let texts = [SHIPPED_NINGBO_JURISDICTIONS, SHIPPED_NEIGHBOUR_JURISDICTIONS, SHIPPED_COURTS];
        let original = texts[which];
        let mut at = cut.index(original.len());
        while !original.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = match &splice {
            Some(s) => format!("{}{s}{}", &original[..at], &original[at..]),
            None => original[..at].to_owned(),
        };
        let mut sources = vec![
            Source::inline("ningbo_jurisdictions.geojson", SHIPPED_NINGBO_JURISDICTIONS),
            Source::inline("neighbours.geojson", SHIPPED_NEIGHBOUR_JURISDICTIONS),
        ];
        let mut courts = Source::inline("courts.csv", SHIPPED_COURTS);
        if which < 2 {
            sources[which] = Source::inline(&sources[which].name.clone(), &damaged);
        } else {
            courts = Source::inline("courts.csv", &damaged);
        }
        let ok = load_both(&sources, &courts)?;
        if which < 2 && splice.is_none() {
            // A strict prefix of a JSON document is never JSON.
            prop_assert!(!ok);
        }
    }

    /// Random text as either file.
    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}", as_courts in any::<bool>()) {
        let sources = [Source::inline("random.geojson", &text)];
        let courts = if as_courts {
            Source::inline("courts.csv", &text)
        } else {
            Source::inline("courts.csv", SHIPPED_COURTS)
        };
        prop_assert!(!load_both(&sources, &courts)?);
    }
}
