//! Point location on the real Ningbo polygons (and, when the national file is present, on all
//! ~2,850 county-level divisions of China), against a per-edge scan baseline run in the same
//! process: `geo`'s `Contains` over the same candidate polygons.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use geo::{BoundingRect, Contains, Point};
use leadrelay::geo::geodata::{GeoData, Source};
use leadrelay::geo::locate::JurisdictionIndex;

/// Deterministic points spread over a bounding box (a simple LCG; no rand dependency).
fn points_in(min: (f64, f64), max: (f64, f64), n: usize) -> Vec<(f64, f64)> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            (
                min.0 + (max.0 - min.0) * next(),
                min.1 + (max.1 - min.1) * next(),
            )
        })
        .collect()
}

fn bench_data(c: &mut Criterion, label: &str, data: GeoData) {
    let data = Arc::new(data);
    let index = JurisdictionIndex::new(data.clone()).expect("index builds");
    let bounds = data
        .jurisdictions
        .iter()
        .filter_map(|j| j.area.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
            )
        })
        .expect("data has areas");
    let points = points_in(
        (bounds.min().x, bounds.min().y),
        (bounds.max().x, bounds.max().y),
        4096,
    );
    // Cameras stand on land: most real sightings fall inside some area.
    let inside: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(lon, lat)| index.containing_court(lon, lat).is_some())
        .cycle()
        .take(4096)
        .collect();
    let mut group = c.benchmark_group(format!("locate/{label}"));
    let mut i = 0usize;
    group.bench_function("grid_points_on_land", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let (lon, lat) = inside[i];
            black_box(index.locate(black_box(lon), black_box(lat)))
        })
    });
    group.bench_function("grid_points_anywhere", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let (lon, lat) = points[i];
            black_box(index.locate(black_box(lon), black_box(lat)))
        })
    });
    // Baseline: the same R-tree candidates are not available from outside, so the baseline
    // is bbox filter + geo's edge-scanning `Contains` over every area (what a plain
    // implementation does).
    let boxes: Vec<_> = data
        .jurisdictions
        .iter()
        .map(|j| (j.area.bounding_rect().expect("non-empty"), &j.area))
        .collect();
    group.bench_function("baseline_bbox_then_geo_contains", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let p = Point::new(points[i].0, points[i].1);
            black_box(
                boxes
                    .iter()
                    .position(|(r, area)| r.contains(&p) && area.contains(&p)),
            )
        })
    });
    group.finish();
}

fn ningbo(c: &mut Criterion) {
    bench_data(c, "ningbo", GeoData::shipped());
}

/// The optional national county set, from `LEADRELAY_CHINA_COUNTIES` (default `../shared/data`).
fn national(c: &mut Criterion) {
    let counties = std::env::var("LEADRELAY_CHINA_COUNTIES")
        .unwrap_or_else(|_| "../shared/data/china_counties.geojson.gz".into());
    let courts = std::env::var("LEADRELAY_CHINA_COURTS")
        .unwrap_or_else(|_| "../shared/data/china_courts.csv".into());
    if !Path::new(&counties).exists() || !Path::new(&courts).exists() {
        eprintln!("locate/china skipped: {counties} or {courts} not found");
        return;
    }
    let started = std::time::Instant::now();
    let sources = [Source::read(Path::new(&counties)).expect("readable")];
    let data = GeoData::load_lenient(
        &sources,
        &Source::read(Path::new(&courts)).expect("readable"),
    )
    .0;
    eprintln!(
        "locate/china: loaded {} areas in {:.2?}",
        data.jurisdictions.len(),
        started.elapsed()
    );
    bench_data(c, "china", data);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = ningbo, national
}
criterion_main!(benches);
