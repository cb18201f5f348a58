//! Scale figures for `benches/e2e.sh`, one process per measurement so that peak memory
//! (VmHWM) belongs to that measurement alone. Prints `key=value` lines.
//!
//! ```text
//! cargo bench --bench scale -- hotlist 10000000   # build time, VmHWM, lookup ns (single, batched)
//! cargo bench --bench scale -- hotlist-curve      # 10³/10⁵/10⁷ timed in turns in one process
//! cargo bench --bench scale -- national           # China counties + 10⁷ hotlist vs Ningbo
//! cargo bench --bench scale -- tlb                # what a load costs when its page is not in the TLB
//! cargo bench --bench scale -- postgis-sql DIR    # the same polygons and points, as SQL
//! ```
//!
//! Lookups are timed over prepared reads in a loop (not criterion: the point is the cost
//! curve across sizes, measured the same way at each size), one read at a time
//! (`match_plate`, `*_ns`) and in batches of [`BATCH_READS`] (`match_plates`, `batch_*_ns`,
//! per read). Two read sets: 4096 distinct reads cycled (their index lines end up in cache;
//! what is left at 10⁷ is mostly TLB misses), and `cold_*`: 2²⁰ distinct reads, so at 10⁷
//! nearly every hit goes to DRAM. Each figure is the fastest of [`REPS`] timings.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use geo::BoundingRect;
use leadrelay::contract::plate::Plate;
use leadrelay::geo::geodata::{GeoData, Source};
use leadrelay::geo::locate::JurisdictionIndex;
use leadrelay::matching::hotlist::{Hotlist, MatchConfig};

/// Issued plate characters: no I, no O.
const ALNUM: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// 34⁵ distinct ordinary tails.
const TAILS: u64 = 45_435_424;
/// Odd and not a multiple of 17, hence coprime with 34⁵: `n ↦ n·MULT mod TAILS` is a bijection.
const MULT: u64 = 2_654_435_761;

/// The `n`-th plate of a scrambled enumeration; distinct for distinct `n < TAILS`.
fn plate(n: u64) -> Plate {
    let mut x = (n % TAILS) * MULT % TAILS;
    let mut text = String::from("浙B");
    let mut tail = [0u8; 5];
    for c in tail.iter_mut().rev() {
        *c = ALNUM[(x % 34) as usize];
        x /= 34;
    }
    text.push_str(std::str::from_utf8(&tail).unwrap_or("00000"));
    Plate::parse(&text).expect("generated plates are valid")
}

/// The service's allocator (see `src/main.rs`), so the figures are those of the shipped
/// binary: mimalloc maps its arenas with `MADV_HUGEPAGE`, so a 10⁷ index sits on 2 MiB pages
/// (`anon_huge_mib`), which decides how many TLB misses a lookup pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An 8-byte per-target payload: the size of what the service keeps per target (an
/// `Arc<Target>`), without the pointer chase, so the figures are the index's own. Like a
/// pointer it is never zero, so an empty slot (`Option::None`) takes no extra bytes and a
/// slot is 16 bytes, as in the service.
#[derive(Clone, Copy)]
struct Summary(NonZeroU32, #[allow(dead_code)] u32);

/// A `Field:  N kB` line of a `/proc/self` file, in MiB (0 if absent).
fn proc_mib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Peak resident memory of this process, MiB.
fn vm_hwm_mib() -> u64 {
    proc_mib("status", "VmHWM")
}

/// Anonymous memory of this process backed by transparent huge pages, MiB.
fn anon_huge_mib() -> u64 {
    proc_mib("smaps_rollup", "AnonHugePages")
}

fn build(n: u64) -> Hotlist<Summary> {
    Hotlist::build(
        MatchConfig::default(),
        (0..n).map(|i| {
            (
                plate(i),
                Summary(NonZeroU32::MIN.saturating_add(i as u32), 0),
            )
        }),
        [],
    )
}

/// Reads per `match_plates` call in the batched figures: the order of a pipeline batch.
const BATCH_READS: usize = 256;
/// Lookups per timing of a cycled read set.
const LOOKUPS: usize = 250_000;
/// Each figure is the fastest of this many timings, taken in turns: this 2-vCPU VM's speed
/// varies by ±50% over seconds, which the minimum filters out.
const REPS: usize = 5;

/// Mean ns per lookup over `reads`, cycled to [`LOOKUPS`] lookups (at least each read once).
fn time_lookups(list: &Hotlist<Summary>, reads: &[Plate]) -> f64 {
    let n = reads.len().max(LOOKUPS);
    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        if let Some(m) = list.match_plate(black_box(&reads[i % reads.len()])) {
            found += u64::from(m.value.0.get() & 1);
        }
    }
    black_box(found);
    started.elapsed().as_nanos() as f64 / n as f64
}

/// The same through `match_plates`, [`BATCH_READS`] reads a call: mean ns per read.
fn time_batched(list: &Hotlist<Summary>, reads: &[Plate]) -> f64 {
    let rounds = LOOKUPS.div_ceil(reads.len());
    let mut out = Vec::with_capacity(BATCH_READS);
    let started = Instant::now();
    let mut found = 0u64;
    for _ in 0..rounds {
        for batch in reads.chunks(BATCH_READS) {
            list.match_plates(black_box(batch), &mut out);
            found += out
                .iter()
                .flatten()
                .map(|m| u64::from(m.value.0.get() & 1))
                .sum::<u64>();
        }
    }
    black_box(found);
    started.elapsed().as_nanos() as f64 / (rounds * reads.len()) as f64
}

/// A one-character OCR slip in the tail (`0`→`O`, `8`→`B`, ...) at the first confusable
/// position, as the load generator makes them.
fn misread(plate: &Plate) -> Option<Plate> {
    leadrelay::tools::simulate::misread_at(plate, |_| 0)
}

/// `count` flagged plates spread over the whole list (scrambled order, cache misses included).
fn exact_reads(n: u64, count: u64) -> Vec<Plate> {
    (0..count).map(|i| plate(i * 7_919 % n)).collect()
}

/// `count` reads of plates never flagged that match nothing, not even fuzzily.
fn unflagged_reads(list: &Hotlist<Summary>, n: u64, count: usize) -> Vec<Plate> {
    (0..)
        .map(|i: u64| plate(n + i * 1_009))
        .filter(|p| list.match_plate(p).is_none())
        .take(count)
        .collect()
}

/// `count` misreads of flagged plates that match them fuzzily.
fn fuzzy_reads(list: &Hotlist<Summary>, n: u64, count: usize) -> Vec<Plate> {
    (0..)
        .filter_map(|i: u64| misread(&plate(i * 7_919 % n)))
        .filter(|r| list.match_plate(r).is_some_and(|m| m.fuzzy))
        .take(count)
        .collect()
}

/// A built hotlist and its read sets: 4096 distinct reads per kind, spread over the whole
/// list, cycled; and `cold_*`, 2²⁰ distinct reads per kind, each read once per timing.
struct Sized {
    n: u64,
    list: Hotlist<Summary>,
    sets: [(&'static str, Vec<Plate>); 5],
}

impl Sized {
    /// Builds the hotlist and the reads; also returns the build's seconds and the VmHWM right
    /// after it (the index's own peak, before the read sets exist).
    fn new(n: u64) -> (Sized, f64, u64) {
        let started = Instant::now();
        let list = build(n);
        let build_s = started.elapsed().as_secs_f64();
        let hwm = vm_hwm_mib();
        let sets = [
            ("exact_hit", exact_reads(n, 4096)),
            ("unflagged", unflagged_reads(&list, n, 4096)),
            ("fuzzy_hit", fuzzy_reads(&list, n, 4096)),
            ("cold_exact_hit", exact_reads(n, 1 << 20)),
            ("cold_unflagged", unflagged_reads(&list, n, 1 << 20)),
        ];
        (Sized { n, list, sets }, build_s, hwm)
    }

    /// Times every set once, single and batched, keeping the fastest so far.
    fn time(&self, best: &mut Figures) {
        for (k, (_, reads)) in self.sets.iter().enumerate() {
            best.single[k] = best.single[k].min(time_lookups(&self.list, reads));
            best.batched[k] = best.batched[k].min(time_batched(&self.list, reads));
        }
    }

    /// `exact_hit_ns=… batch_exact_hit_ns=…` for every set.
    fn figures(&self, best: &Figures) -> String {
        let single = self.sets.iter().zip(best.single);
        let batched = self.sets.iter().zip(best.batched);
        single
            .map(|((name, _), ns)| format!(" {name}_ns={ns:.1}"))
            .chain(batched.map(|((name, _), ns)| format!(" batch_{name}_ns={ns:.1}")))
            .collect()
    }
}

/// Fastest ns per read seen for each set of a [`Sized`].
struct Figures {
    single: [f64; 5],
    batched: [f64; 5],
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            single: [f64::INFINITY; 5],
            batched: [f64::INFINITY; 5],
        }
    }
}

fn hotlist(n: u64) {
    let (sized, build_s, hwm) = Sized::new(n);
    let mut best = Figures::default();
    for _ in 0..REPS {
        sized.time(&mut best);
    }
    println!(
        "hotlist n={n} build_s={build_s:.3} vm_hwm_mib={hwm}{} vm_hwm_end_mib={} anon_huge_mib={}",
        sized.figures(&best),
        vm_hwm_mib(),
        anon_huge_mib()
    );
}

/// 10³, 10⁵ and 10⁷ in one process, timed in turns, so that the ratios between sizes do not
/// depend on how fast the machine happened to be during each size's own run (no VmHWM: the
/// three share the process). Prints one line per size, then `hotlist-curve ratio_1e7_1e3`
/// with each figure at 10⁷ divided by the same at 10³ (`exact_hit=…`, `batch_exact_hit=…`).
fn hotlist_curve() {
    let sizes = [1_000, 100_000, 10_000_000].map(|n| Sized::new(n).0);
    let mut best: [Figures; 3] = Default::default();
    for _ in 0..REPS {
        for (sized, best) in sizes.iter().zip(&mut best) {
            sized.time(best);
        }
    }
    for (sized, best) in sizes.iter().zip(&best) {
        println!("hotlist-curve n={}{}", sized.n, sized.figures(best));
    }
    let ratio = |prefix: &str, f: fn(&Figures) -> &[f64; 5]| -> String {
        let (small, large) = (f(&best[0]), f(&best[2]));
        sizes[0]
            .sets
            .iter()
            .enumerate()
            .map(|(k, (name, _))| format!(" {prefix}{name}={:.2}", large[k] / small[k]))
            .collect()
    };
    println!(
        "hotlist-curve ratio_1e7_1e3{}{} anon_huge_mib={}",
        ratio("", |f| &f.single),
        ratio("batch_", |f| &f.batched),
        anon_huge_mib()
    );
}

/// The next number of a deterministic xorshift64 sequence (`state` must not be zero).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 4096 points on land (inside some area), deterministic.
fn points_on_land(index: &JurisdictionIndex) -> Vec<(f64, f64)> {
    let b = index
        .data()
        .jurisdictions
        .iter()
        .filter_map(|j| j.area.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
            )
        })
        .expect("areas");
    let mut state = 0x853C_49E6_748F_EA9Bu64;
    let mut unit = || (xorshift(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(4096);
    while out.len() < 4096 {
        let lon = b.min().x + (b.max().x - b.min().x) * unit();
        let lat = b.min().y + (b.max().y - b.min().y) * unit();
        if index.containing_court(lon, lat).is_some() {
            out.push((lon, lat));
        }
    }
    out
}

/// Mean ns per locate over `points`, cycled; the fastest of [`REPS`] timings (one timing
/// alone read anywhere from 70 to 102 ns for Ningbo on the same machine within the hour).
fn locate_ns(index: &JurisdictionIndex, points: &[(f64, f64)]) -> f64 {
    const N: usize = 1_000_000;
    (0..REPS)
        .map(|_| {
            let started = Instant::now();
            for i in 0..N {
                let (lon, lat) = points[i % points.len()];
                black_box(index.locate(black_box(lon), black_box(lat)));
            }
            started.elapsed().as_nanos() as f64 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn national() {
    let counties = std::env::var("LEADRELAY_CHINA_COUNTIES")
        .unwrap_or_else(|_| "../shared/data/china_counties.geojson.gz".into());
    let courts = std::env::var("LEADRELAY_CHINA_COURTS")
        .unwrap_or_else(|_| "../shared/data/china_courts.csv".into());
    if !Path::new(&counties).exists() || !Path::new(&courts).exists() {
        println!("national skipped=\"{counties} or {courts} not found\"");
        return;
    }
    let ningbo = JurisdictionIndex::new(Arc::new(GeoData::shipped())).expect("index");
    let ningbo_ns = locate_ns(&ningbo, &points_on_land(&ningbo));
    let started = Instant::now();
    let list = build(10_000_000);
    let hotlist_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let sources = [Source::read(Path::new(&counties)).expect("readable counties")];
    let courts = Source::read(Path::new(&courts)).expect("readable courts");
    let data = GeoData::load_lenient(&sources, &courts).0;
    let areas = data.jurisdictions.len();
    let china = JurisdictionIndex::new(Arc::new(data)).expect("index");
    let load_s = started.elapsed().as_secs_f64();
    let china_ns = locate_ns(&china, &points_on_land(&china));
    black_box(list.len());
    println!(
        "national areas={areas} load_s={load_s:.2} hotlist_1e7_build_s={hotlist_s:.2} vm_hwm_mib={} \
         locate_china_ns={china_ns:.1} locate_ningbo_ns={ningbo_ns:.1} ratio={:.2}",
        vm_hwm_mib(),
        china_ns / ningbo_ns
    );
}

/// The Ningbo polygons exactly as leadrelay holds them (WGS-84 after its GCJ-02
/// conversion), and the same on-land points, as SQL for PostGIS.
fn postgis_sql(dir: &Path) {
    let index = JurisdictionIndex::new(Arc::new(GeoData::shipped())).expect("index");
    let mut sql = String::from(
        "DROP TABLE IF EXISTS lr_bench_areas, lr_bench_points;\n\
         CREATE TABLE lr_bench_areas (court_id text, geom geometry(MultiPolygon, 4326));\n\
         CREATE TABLE lr_bench_points (id int PRIMARY KEY, geom geometry(Point, 4326));\n",
    );
    for j in &index.data().jurisdictions {
        let polygons: Vec<String> = j
            .area
            .0
            .iter()
            .map(|p| {
                let ring = |r: &geo::LineString<f64>| {
                    let coords: Vec<String> =
                        r.0.iter().map(|c| format!("{} {}", c.x, c.y)).collect();
                    format!("({})", coords.join(","))
                };
                let rings: Vec<String> = std::iter::once(p.exterior())
                    .chain(p.interiors())
                    .map(ring)
                    .collect();
                format!("({})", rings.join(","))
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO lr_bench_areas VALUES ('{}', ST_GeomFromText('MULTIPOLYGON({})', 4326));\n",
            j.court_id,
            polygons.join(",")
        ));
    }
    for (i, (lon, lat)) in points_on_land(&index).iter().enumerate() {
        sql.push_str(&format!(
            "INSERT INTO lr_bench_points VALUES ({i}, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326));\n"
        ));
    }
    sql.push_str("CREATE INDEX ON lr_bench_areas USING gist (geom);\nANALYZE lr_bench_areas;\nANALYZE lr_bench_points;\n");
    std::fs::create_dir_all(dir).expect("output dir");
    std::fs::write(dir.join("load.sql"), sql).expect("write load.sql");
    let vertices: usize = index
        .data()
        .jurisdictions
        .iter()
        .map(|j| geo::CoordsIter::coords_count(&j.area))
        .sum();
    println!(
        "postgis-sql areas={} vertices={vertices} points=4096 dir={}",
        index.data().jurisdictions.len(),
        dir.display()
    );
}

/// Lines per chain of [`tlb`]: as many as the distinct reads of the cycled hotlist sets.
const TLB_LINES: usize = 4096;

/// Why a lone hit at 10⁷ costs more than at 10³ on this machine, in numbers: a chain of
/// dependent loads over [`TLB_LINES`] cache lines (256 KiB, which stay in L2), laid out three
/// ways in one 256 MiB buffer of the service's allocator (on 2 MiB pages where the kernel
/// grants them, see `anon_huge_mib`): `few_pages`, 16 lines to each 4 KiB page; `own_page`,
/// each line on a 4 KiB page of its own, all inside 16 MiB; `spread`, one line to each 64 KiB
/// of the 256 MiB, as a 10⁷ index's slots are read. Only the number of pages differs between
/// the first two, so `own_page − few_pages` is what a load pays when its translation is not in
/// the TLB; on a VM whose host maps guest memory with 4 KiB pages, the guest's 2 MiB pages do
/// not save it.
fn tlb() {
    const LINE: usize = 64;
    const WORDS: usize = (256 << 20) / size_of::<usize>();
    let mut buffer = vec![1usize; WORDS];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || xorshift(&mut state) as usize;
    // Byte offsets of the chain's lines by index, each line distinct.
    let layouts: [&dyn Fn(usize, usize) -> usize; 3] = [
        &|i, r| i * 4 * LINE + (r % 4) * LINE,
        &|i, r| i * 4096 + (r % 64) * LINE,
        &|i, r| i * (64 << 10) + (r % 1024) * LINE,
    ];
    let [few_pages, own_page, spread] = layouts.map(|offset| {
        let mut lines: Vec<usize> = (0..TLB_LINES)
            .map(|i| offset(i, next()) / size_of::<usize>())
            .collect();
        for i in (1..lines.len()).rev() {
            lines.swap(i, next() % (i + 1));
        }
        for (k, &at) in lines.iter().enumerate() {
            buffer[at] = lines[(k + 1) % lines.len()];
        }
        let steps = 4_000_000u32;
        let mut fastest = f64::INFINITY;
        for _ in 0..REPS {
            let (mut at, started) = (lines[0], Instant::now());
            for _ in 0..steps {
                at = black_box(buffer[at]);
            }
            fastest = fastest.min(started.elapsed().as_nanos() as f64 / f64::from(steps));
        }
        fastest
    });
    println!(
        "tlb lines={TLB_LINES} few_pages_ns={few_pages:.2} own_page_ns={own_page:.2} spread_ns={spread:.2} page_walk_ns={:.2} anon_huge_mib={}",
        own_page - few_pages,
        anon_huge_mib()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["hotlist", n] => hotlist(n.parse().expect("a size")),
        ["hotlist-curve"] => hotlist_curve(),
        ["national"] => national(),
        ["tlb"] => tlb(),
        ["postgis-sql", dir] => postgis_sql(Path::new(dir)),
        _ => {
            eprintln!(
                "usage: scale hotlist N | hotlist-curve | national | tlb | postgis-sql DIR (run by benches/e2e.sh)"
            );
        }
    }
}
