//! What recording one observation costs on the hot path: through a handle taken once (what
//! `leadrelay::metrics::stage` does once the recorder is installed) against `histogram!`,
//! which looks the series up in the recorder's registry on every call.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use leadrelay::metrics::{self as lr_metrics, STAGE, Stage};

fn record(c: &mut Criterion) {
    lr_metrics::install().expect("the Prometheus recorder installs");
    let mut group = c.benchmark_group("metrics");
    let d = Duration::from_micros(3);
    group.bench_function("stage, through the handle", |b| {
        b.iter(|| lr_metrics::stage(black_box(Stage::Match), black_box(d)))
    });
    group.bench_function("stage, registry lookup per call (baseline)", |b| {
        b.iter(|| {
            metrics::histogram!(STAGE, "stage" => black_box(Stage::Match).as_str())
                .record(black_box(d).as_secs_f64())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = record
}
criterion_main!(benches);
