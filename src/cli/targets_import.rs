//! `leadrelay targets import`: flagged targets from a JSON-lines file into the database.

use crate::clock::Clock;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::service::config::{DataArgs, StoreArgs, redact};

/// Import targets from a JSON-lines file (one Target per line); a running service picks
/// them up within a second.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file; `-` reads standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Validates every line first; imports only if all are valid, so a bad file changes nothing.
pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let ImportArgs { file, store, data } = args;
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let geo = data.load()?;
    let mut targets = Vec::new();
    let mut errors = 0usize;
    let today = chrono::Utc::now().date_naive();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<crate::contract::model::Target>(&line)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.validate_at(today)
                    .and_then(|_| t.check_courts(&geo))
                    .map(|_| t)
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok(t) => targets.push(t),
            Err(e) => {
                errors += 1;
                eprintln!("{}:{}: {e}", file.display(), n + 1);
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} invalid line(s); nothing imported");
        return Ok(ExitCode::FAILURE);
    }
    let url = store.database_url()?;
    let store = crate::store::Store::connect(&url).await?;
    let imported = crate::app::targets::import(&store, &Clock::System, &targets).await?;
    crate::outln!("imported {imported} target(s) into {}", redact(&url));
    Ok(ExitCode::SUCCESS)
}
