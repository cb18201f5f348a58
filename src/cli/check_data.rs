//! `leadrelay check-data`: every problem in the jurisdiction and court files.

use std::process::ExitCode;

use clap::Args;

use crate::geo::check;
use crate::service::config::DataArgs;

/// The files to check, and how to report.
#[derive(Debug, Args)]
pub struct CheckDataArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Largest overlap between two jurisdictions that is not an error, in km².
    #[arg(long, default_value_t = check::DEFAULT_MAX_OVERLAP_KM2)]
    pub max_overlap_km2: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CheckDataArgs) -> anyhow::Result<ExitCode> {
    let (jurisdictions, courts) = args.data.sources()?;
    let report = check::check(&jurisdictions, &courts, args.max_overlap_km2);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            crate::outln!("{p}");
        }
        crate::outln!(
            "{} jurisdictions, {} vertices, {} courts: {} error(s), {} warning(s)",
            report.jurisdictions,
            report.vertices,
            report.courts,
            report.errors(),
            report.problems.len() - report.errors()
        );
    }
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
