//! Property-based fuzzing of everything that parses outside input: sightings, status reports,
//! plates, identity numbers, geographic data and target bodies. Generators build valid input
//! and then damage it, so the cases reach the checks behind the first parse, not only the
//! JSON parser.
//!
//! Default case counts keep `cargo test` short; `PROPTEST_CASES=N` sets every target to N for
//! the long run (benches/README.md, "Fuzzing").

mod decode;
mod geodata;
mod person_id;
mod plate;
mod regressions;
mod status;
mod target;

use proptest::test_runner::Config;

/// `default_cases` per property unless `PROPTEST_CASES` says otherwise. Explicit configs do
/// not read the variable themselves (`with_cases` overrides it), so this does.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // Shrinking a long-run failure must not take longer than finding it.
        max_shrink_iters: 4096,
        // Filters in the generators reject a steady fraction; the defaults are sized for
        // 256 cases, not for a million.
        max_local_rejects: u32::MAX,
        max_global_rejects: u32::MAX,
        ..Config::default()
    }
}
