//! Stamps the binary with the commit it was built from, for `leadrelay_build_info`.
//!
//! `LEADRELAY_BUILD_COMMIT` wins (a build from a source archive, where git knows nothing);
//! else `git rev-parse`; else `unknown`. Never fails: a build outside git is a normal build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LEADRELAY_BUILD_COMMIT");
    // Rebuilt when HEAD moves: its file (a branch switch or a detached HEAD), its reflog (every
    // commit, in a worktree too) and the branch's ref. Only files that exist: cargo would
    // otherwise rebuild every time.
    let watched = ["HEAD", "logs/HEAD"]
        .into_iter()
        .map(str::to_owned)
        .chain(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]).map(PathBuf::from) {
            if file.is_file() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
    }
    let commit = std::env::var("LEADRELAY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LEADRELAY_COMMIT={commit}");
}
