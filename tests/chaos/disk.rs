//! Scenario 4: SQLite on a disk that fills up mid-stream, then gets space back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{metric, unique};
use crate::db::sqlite_integrity;
use crate::feed::{Rng, Workload};
use crate::postgres::not_ready_within;
use crate::report::Row;
use crate::service::{Service, load_targets, metrics, tasks};
use crate::stage::Stage;

/// A small tmpfs mounted for the scenario, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the killed service's files may still be open for a moment.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros to `path` until the disk refuses (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    written
}

/// The error of the first failed group commit in the service's log (colours removed).
fn first_commit_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI colour sequence: ESC [ ... m.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .find(|l| l.contains("group commit failed"))
        .and_then(|l| l.split("error=").nth(1))
        .map(|e| e.split(" batch=").next().unwrap_or(e).to_string())
        .unwrap_or_else(|| "no failed group commit logged".into())
}

pub async fn disk_full(workload: Workload, rng: &mut Rng) -> Option<Row> {
    let stage = Stage::new(workload, rng).await;
    let mount_point = stage.path("disk");
    let tmpfs = match Tmpfs::mount(&mount_point, "16m") {
        Ok(tmpfs) => tmpfs,
        Err(e) => {
            eprintln!("SKIPPED disk-full scenario: mounting a tmpfs failed: {e}");
            return None;
        }
    };
    let db_path = mount_point.join("leadrelay.db");
    let mut service = Service::start(
        &stage.broker.url(),
        &format!("sqlite://{}", db_path.display()),
        &unique("lr-chaos-"),
        &stage.prefix,
        stage.path("service"),
        // Readiness follows a stuck pipeline after this long rather than the default 30 s.
        &["--max-unacked-age", "3s"],
    )
    .await;
    load_targets(service.http(), &stage.plan.targets).await;
    let mut problems = Vec::new();

    // A third of the stream on a healthy disk, the rest on a full one.
    let third = stage.plan.sightings.len() / 3;
    let spacing = workload.spacing;
    let feed = stage.feed().await;
    let feed = feed
        .stream(stage.plan.sightings[..third].to_vec(), spacing)
        .await;
    let filler = mount_point.join("filler");
    let filled = fill(&filler);
    let feed = feed
        .stream(stage.plan.sightings[third..].to_vec(), spacing)
        .await;
    let readyz = not_ready_within(service.http(), Duration::from_secs(20)).await;
    let retries = metric(
        &metrics(service.http()).await,
        "leadrelay_store_retries_total{what=\"group_commit\"}",
    );
    let tasks_while_full = tasks(service.http()).await.map_or(0, |t| t.len());
    let integrity_full = sqlite_integrity(&db_path).await;
    if retries == 0.0 {
        problems.push("no group commit failed: the disk never filled up for the service".into());
    } else if readyz.starts_with("still ready") {
        problems.push(format!("/readyz stayed ready with the disk full: {readyz}"));
    }
    if !service.is_running() {
        problems.push(format!(
            "the service exited with the disk full; see {}",
            service.log().display()
        ));
    }
    if integrity_full != "ok" {
        problems.push(format!(
            "integrity_check with the disk full: {integrity_full}"
        ));
    }
    let error = first_commit_error(&service.log());

    std::fs::remove_file(&filler).unwrap();
    let note = format!(
        "tmpfs 16 MiB filled ({} KiB) after a third; {retries} failed commits retried, \
         {tasks_while_full} tasks while full; log: `{error}`; /readyz while full: `{readyz}`; \
         space freed",
        filled / 1024
    );
    let mut row = stage
        .finish(feed, service.http(), "disk full", "sqlite", note)
        .await;
    if !service.is_running() {
        problems.push("the service exited after space was freed".into());
    }
    service.kill();
    let integrity_end = sqlite_integrity(&db_path).await;
    if integrity_end != "ok" {
        problems.push(format!("integrity_check at the end: {integrity_end}"));
    }
    row.note.push_str(&format!(
        "; integrity_check: {integrity_full} / {integrity_end}"
    ));
    row.problems.extend(problems);
    drop(tmpfs);
    Some(row)
}
