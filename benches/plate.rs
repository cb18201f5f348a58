//! Parsing cost of camera reads: plates in the spellings feeds send, and identity numbers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use leadrelay::contract::person_id::PersonId;
use leadrelay::contract::plate::Plate;

/// SplitMix64: a seeded PRNG, so every run parses the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALNUM: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const SPELLINGS: usize = 1024;

/// Plates spelled as feeds send them: plain, with `·`, space, lower case, full width.
fn plate_reads(rng: &mut Rng) -> Vec<String> {
    (0..SPELLINGS)
        .map(|_| {
            let province = ['浙', '沪', '苏', '京', '粤'][rng.below(5)];
            let letter = char::from(b'A' + rng.below(26) as u8);
            let len = if rng.below(10) == 0 { 6 } else { 5 };
            let tail: String = (0..len)
                .map(|_| char::from(ALNUM[rng.below(ALNUM.len())]))
                .collect();
            match rng.below(5) {
                0 => format!("{province}{letter}{tail}"),
                1 => format!("{province}{letter}·{tail}"),
                2 => format!("{province}{letter} {tail}"),
                3 => format!(
                    "{province}{}{}",
                    letter.to_ascii_lowercase(),
                    tail.to_lowercase()
                ),
                _ => std::iter::once(province)
                    .chain(
                        format!("{letter}{tail}")
                            .chars()
                            .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)),
                    )
                    .collect(),
            }
        })
        .collect()
}

/// Identity numbers with a valid birth date and check character.
fn person_ids(rng: &mut Rng) -> Vec<String> {
    const WEIGHTS: [u64; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    (0..SPELLINGS)
        .map(|_| {
            let digits = format!(
                "{}{:04}{:02}{:02}{:03}",
                330_000 + rng.below(10_000),
                1940 + rng.below(70),
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(1000)
            );
            let sum: u64 = digits
                .bytes()
                .zip(WEIGHTS)
                .map(|(b, w)| u64::from(b - b'0') * w)
                .sum();
            format!(
                "{digits}{}",
                char::from(b"10X98765432"[(sum % 11) as usize])
            )
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let mut rng = Rng(0x1ead_4e1a);
    let plates = plate_reads(&mut rng);
    let ids = person_ids(&mut rng);
    assert!(plates.iter().all(|s| Plate::parse(s).is_ok()));
    assert!(ids.iter().all(|s| PersonId::parse(s).is_ok()));

    let mut group = c.benchmark_group("parse");
    let mut i = 0;
    group.bench_function("plate_mixed_spellings", |b| {
        b.iter(|| {
            i = (i + 1) % SPELLINGS;
            Plate::parse(black_box(&plates[i]))
        })
    });
    group.bench_function("person_id", |b| {
        b.iter(|| {
            i = (i + 1) % SPELLINGS;
            PersonId::parse(black_box(&ids[i]))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = parse
}
criterion_main!(benches);
