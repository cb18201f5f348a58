//! `leadrelay sweep`: the active targets whose known locations lie in a court's area.

use crate::clock::Clock;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::geo::datum;
use crate::geo::locate::JurisdictionIndex;
use crate::service::config::{DataArgs, StoreArgs};

/// A court's sweep list.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The court whose area the sweep covers.
    #[arg(long)]
    pub court: String,
    /// CSV file to write (one row per target and case); default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Writes the sweep list: every active target with a known location in the court's area.
pub async fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let data = Arc::new(args.data.load()?);
    let Some(court) = data.court_position(&args.court) else {
        bail!("--court {:?} is not in the courts data", args.court);
    };
    let index = JurisdictionIndex::new(data).context("building the jurisdiction index")?;
    let url = args.store.database_url()?;
    let store = crate::store::Store::connect(&url).await?;
    let area = crate::app::sweep::Area {
        court_id: Some(args.court.clone()),
        near: None,
    };
    let selected = crate::app::sweep::stored(&store, &index, &Clock::System, &area).await?;
    let out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(crate::tools::stdout::Stdout),
    };
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record([
        "target_id",
        "kind",
        "plate",
        "person_id",
        "name",
        "location",
        "lat",
        "lon",
        "case_no",
        "court_id",
        "filed_on",
        "amount_cny",
    ])?;
    for t in &selected {
        let here: Vec<&crate::contract::model::KnownLocation> = t
            .known_locations
            .iter()
            .filter(|l| {
                let (lon, lat) = datum::to_wgs84(l.datum, l.lon, l.lat);
                index.containing_court(lon, lat) == Some(court)
            })
            .collect();
        for loc in here {
            for case in &t.cases {
                csv.write_record([
                    t.target_id.as_str(),
                    match t.kind {
                        crate::contract::model::TargetKind::Vehicle => "vehicle",
                        crate::contract::model::TargetKind::Person => "person",
                    },
                    t.plate.as_ref().map(|p| p.as_str()).unwrap_or(""),
                    t.person_id.as_ref().map(|p| p.as_str()).unwrap_or(""),
                    t.name.as_deref().unwrap_or(""),
                    loc.label.as_str(),
                    &loc.lat.to_string(),
                    &loc.lon.to_string(),
                    case.case_no.as_str(),
                    case.court_id.as_str(),
                    &case.filed_on.to_string(),
                    &case.amount_cny.map(|a| a.to_string()).unwrap_or_default(),
                ])?;
            }
        }
    }
    csv.flush()?;
    eprintln!("{} target(s) in {}'s area", selected.len(), args.court);
    Ok(ExitCode::SUCCESS)
}
