//! README.md's "Metrics" table is exactly the list of families `/metrics` exposes, from the
//! first scrape of a service that has done nothing yet: nothing documented is missing until
//! its first event, and nothing exposed is undocumented.
//!
//! A test binary of its own: the metrics recorder is global to the process, so no other test
//! may have recorded anything before the first service here starts.

mod common;

use std::collections::BTreeSet;

use common::{Harness, backends};

/// Every backticked name in the first cell of the rows of README.md's "## Metrics" table.
fn readme_families() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("README.md has a \"## Metrics\" section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let first_cell = row.split('|').nth(1).unwrap_or_default();
        names.extend(
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.trim().to_owned()),
        );
    }
    names
}

/// The families of a Prometheus text exposition (its `# TYPE` lines), each checked to have at
/// least one sample.
fn exposed_families(exposition: &str) -> BTreeSet<String> {
    let families: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    for family in &families {
        let sampled = exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.starts_with(family.as_str()));
        assert!(
            sampled,
            "{family} has a TYPE line but no sample:\n{exposition}"
        );
    }
    families
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_lists_exactly_the_families_exposed_from_the_start() {
    let documented = readme_families();
    assert!(
        documented.len() > 30,
        "the README table parsed to only {documented:?}"
    );
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let exposition = h.metrics().await;
        let exposed = exposed_families(&exposition);
        let undocumented: Vec<_> = exposed.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&exposed).collect();
        assert!(
            undocumented.is_empty() && missing.is_empty(),
            "[{}] exposed but not in README.md's Metrics table: {undocumented:?}; \
             in the table but not exposed: {missing:?}\n{exposition}",
            backend.name()
        );

        // The zeros are the known label values, not a placeholder series.
        let build = format!(
            "leadrelay_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        );
        for series in [
            build.as_str(),
            "leadrelay_sightings_rejected_total{reason=\"out_of_area\"} 0",
            "leadrelay_sightings_rejected_total{reason=\"too_large\"} 0",
            "leadrelay_tasks_dispatched_total{court=\"cixi\",routing=\"nearest_court\"} 0",
            "leadrelay_open_tasks{court=\"cixi\"} 0",
            "leadrelay_sla_breaches_total{court=\"yuyao\",kind=\"resolve\"} 0",
            "leadrelay_escalations_total{court=\"ningbo_intermediate\"} 0",
            "leadrelay_status_reports_total{status=\"not_found\"} 0",
            "leadrelay_store_retries_total{what=\"status_report\"} 0",
            "leadrelay_dispatch_to_resolution_seconds_count{court=\"cixi\",outcome=\"seized\"} 0",
            "leadrelay_commit_step_seconds_count{step=\"commit\"}",
            "leadrelay_database_up 1",
            "leadrelay_mqtt_connected 1",
        ] {
            assert!(
                exposition.lines().any(|l| l.starts_with(series)),
                "[{}] no series {series:?} in\n{exposition}",
                backend.name()
            );
        }
        // Only courts that take tasks get per-court series.
        let open_task_gauges = exposition
            .lines()
            .filter(|l| l.starts_with("leadrelay_open_tasks{"))
            .count();
        assert_eq!(
            open_task_gauges, 11,
            "one open-tasks gauge per participating Ningbo court:\n{exposition}"
        );
    }
}
