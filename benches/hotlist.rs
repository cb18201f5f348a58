//! Hotlist build and lookup cost at 10³, 10⁵ and 10⁷ flagged vehicles.
//!
//! Each size is built once (outside criterion's timing); build time and process memory are
//! printed to stderr for the README. Lookups are measured for an unflagged read (the common
//! path), an exact hit and a fuzzy hit, cycling through 1024 prepared reads so the 10⁷ figures
//! include cache misses: one read at a time (`hotlist_lookup`, time per read) and all 1024 in
//! one `match_plates` call (`hotlist_lookup_batch`: criterion reports time per call of 1024
//! reads and throughput in reads per second; ns per read = 10⁹ / throughput).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use leadrelay::contract::plate::Plate;
use leadrelay::matching::hotlist::{Hotlist, MatchConfig};

const SIZES: [usize; 3] = [1_000, 100_000, 10_000_000];
const READS: usize = 1024;
/// Letters and digits on issued plates (no I, O).
const ALNUM: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// 34⁵: number of distinct 5-character tails.
const TAILS: u64 = 45_435_424;
/// Coprime with `TAILS` (odd, not a multiple of 17), so `n * STRIDE % TAILS` is a bijection.
const STRIDE: u64 = 19_260_817;

/// The per-target payload the bench stores: a 16-byte summary.
#[derive(Clone, Copy)]
#[allow(dead_code)] // fields only give the payload its realistic size
struct Summary {
    since: u64,
    target: u32,
    court: u16,
    flags: u16,
}

/// SplitMix64: a seeded PRNG, so every run uses the same reads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The `n`-th flagged plate: `浙B` + 5 scrambled characters, every tenth a new-energy plate
/// (`浙BD` + 5). Distinct for distinct `n < TAILS`.
fn plate_text(n: u64) -> String {
    let mut x = n.wrapping_mul(STRIDE).wrapping_add(12_345) % TAILS;
    let mut tail = [0u8; 5];
    for c in tail.iter_mut().rev() {
        *c = ALNUM[(x % 34) as usize];
        x /= 34;
    }
    let tail = std::str::from_utf8(&tail).unwrap_or_default();
    if n % 10 == 0 {
        format!("浙BD{tail}")
    } else {
        format!("浙B{tail}")
    }
}

fn plate(n: u64) -> Plate {
    Plate::parse(&plate_text(n)).expect("generated plates are valid")
}

fn summary(n: u64) -> Summary {
    Summary {
        since: n,
        target: n as u32,
        court: (n % 11) as u16,
        flags: 0,
    }
}

/// A one-character OCR slip in the tail (`0`→`O`, `8`→`B`, ...) at the first confusable
/// position, as the load generator makes them.
fn misread(plate: &Plate) -> Option<Plate> {
    leadrelay::tools::simulate::misread_at(plate, |_| 0)
}

/// VmRSS and VmHWM of this process, in MiB.
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The three kinds of read for a hotlist of `size` plates.
struct Reads {
    unflagged: Vec<Plate>,
    exact: Vec<Plate>,
    fuzzy: Vec<Plate>,
}

fn reads(list: &Hotlist<Summary>, size: u64, rng: &mut Rng) -> Reads {
    let mut unflagged = Vec::with_capacity(READS);
    let mut fuzzy_misses = 0usize;
    while unflagged.len() < READS {
        // Plates past `size` are never flagged; some still fuzzily match a flagged plate.
        let read = plate(size + rng.next() % (TAILS - size));
        match list.match_plate(&read) {
            None => unflagged.push(read),
            Some(_) => fuzzy_misses += 1,
        }
    }
    let exact: Vec<Plate> = (0..READS).map(|_| plate(rng.next() % size)).collect();
    let mut fuzzy = Vec::with_capacity(READS);
    while fuzzy.len() < READS {
        let read = misread(&plate(rng.next() % size));
        if let Some(read) = read.filter(|r| list.match_plate(r).is_some_and(|m| m.fuzzy)) {
            fuzzy.push(read);
        }
    }
    eprintln!(
        "hotlist {size}: {:.2}% of unflagged random 浙B reads fuzzily match a flagged plate",
        100.0 * fuzzy_misses as f64 / (fuzzy_misses + READS) as f64
    );
    Reads {
        unflagged,
        exact,
        fuzzy,
    }
}

fn build(size: u64) -> Hotlist<Summary> {
    Hotlist::build(
        MatchConfig::default(),
        (0..size).map(|n| (plate(n), summary(n))),
        [],
    )
}

fn hotlist(c: &mut Criterion) {
    let mut rng = Rng(0x1ead_4e1a);
    let mut group = c.benchmark_group("hotlist_build");
    group.sample_size(10);
    for size in [1_000u64, 100_000] {
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter(|| build(size))
        });
    }
    group.finish();

    for size in SIZES.map(|s| s as u64) {
        let started = Instant::now();
        (0..size).for_each(|n| {
            black_box(plate(n));
        });
        let generate = started.elapsed();
        let started = Instant::now();
        let list = build(size);
        let built = started.elapsed();
        let (rss, hwm) = memory_mib();
        eprintln!(
            "hotlist {size}: build {:.1} ms ({:.1} ms of it generating and parsing plate strings), \
             VmRSS {rss} MiB, VmHWM {hwm} MiB",
            built.as_secs_f64() * 1e3,
            generate.as_secs_f64() * 1e3,
        );
        assert_eq!(list.len() as u64, size);
        let reads = reads(&list, size, &mut rng);

        let mut group = c.benchmark_group("hotlist_lookup");
        for (name, reads) in [
            ("unflagged", &reads.unflagged),
            ("exact_hit", &reads.exact),
            ("fuzzy_hit", &reads.fuzzy),
        ] {
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, size), reads, |b, reads| {
                b.iter(|| {
                    i = (i + 1) % READS;
                    list.match_plate(black_box(&reads[i]))
                        .map(|m| m.value.target)
                })
            });
        }
        group.finish();

        // The same reads, all 1024 in one batched call.
        let mut group = c.benchmark_group("hotlist_lookup_batch");
        group.throughput(Throughput::Elements(READS as u64));
        for (name, reads) in [
            ("unflagged", &reads.unflagged),
            ("exact_hit", &reads.exact),
            ("fuzzy_hit", &reads.fuzzy),
        ] {
            let mut out = Vec::with_capacity(READS);
            group.bench_with_input(BenchmarkId::new(name, size), reads, |b, reads| {
                b.iter(|| {
                    list.match_plates(black_box(reads), &mut out);
                    out.iter()
                        .flatten()
                        .map(|m| m.value.target)
                        .fold(0u32, u32::wrapping_add)
                })
            });
        }
        group.finish();

        // The service's edit path: clone (shares all shards), then one insert copies one shard.
        let mut group = c.benchmark_group("hotlist_edit");
        let extra = plate(size);
        group.bench_with_input(
            BenchmarkId::new("clone_and_insert", size),
            &list,
            |b, list| {
                b.iter(|| {
                    let mut edited = list.clone();
                    edited.insert_vehicle(extra, summary(size));
                    edited
                })
            },
        );
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = hotlist
}
criterion_main!(benches);
