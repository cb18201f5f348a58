//! The command line: clap definitions and the commands that do not run the service.
//!
//! This is the binary's edge, so errors here are `anyhow` with context for the operator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::clock::Clock;
use crate::contract::model::Routing;
use crate::geo::check;
use crate::geo::datum::{self, Datum};
use crate::geo::locate::{JurisdictionIndex, Placement};
use crate::service::config::{DataArgs, ServeArgs};
use crate::tools::demo::DemoArgs;

/// leadrelay: sightings of flagged debtors' vehicles and persons in, assistance tasks for
/// the right court's command center out.
#[derive(Debug, Parser)]
#[command(name = "leadrelay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "LEADRELAY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: sightings in over MQTT, tasks out, HTTP API and metrics.
    Serve(ServeArgs),
    /// Everything embedded (broker, SQLite, Ningbo data) with a simulated camera feed.
    Demo(DemoArgs),
    /// Manage flagged targets.
    #[command(subcommand)]
    Targets(TargetsCommand),
    /// Print which court's area holds a point and which court would act on it, as JSON.
    Locate(LocateArgs),
    /// Validate jurisdiction and court files and report every problem found.
    CheckData(CheckDataArgs),
    /// Export the active targets whose known locations lie in a court's area (sweep planning).
    Sweep(SweepArgs),
    /// Load generator: publish realistic sightings, check and time what comes back.
    Simulate(crate::tools::simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Import targets from a JSON-lines file (one Target per line); a running service picks
    /// them up within a second.
    Import {
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// `sqlite://PATH` or `postgres://...` (default: the service's default database).
        #[arg(long, env = "LEADRELAY_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Args)]
pub struct LocateArgs {
    #[arg(long, allow_hyphen_values = true)]
    pub lat: f64,
    #[arg(long, allow_hyphen_values = true)]
    pub lon: f64,
    /// Datum of --lat/--lon.
    #[arg(long, default_value = "wgs84")]
    pub datum: Datum,
    /// The court asking (the target's requesting court), to tell own_jurisdiction apart.
    #[arg(long)]
    pub requesting_court: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The court whose area the sweep covers.
    #[arg(long)]
    pub court: String,
    /// CSV file to write (one row per target and case); default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://...` (default: the service's default database).
    #[arg(long, env = "LEADRELAY_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

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

/// Runs the command; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Locate(args) => locate(args),
        Command::CheckData(args) => check_data(args),
        Command::Sweep(args) => runtime()?.block_on(sweep(args)),
        Command::Serve(args) => {
            let config = args.resolve()?;
            tracing::info!(?config, "configuration");
            runtime()?.block_on(crate::service::run(
                config,
                crate::service::shutdown_signal(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            runtime()?.block_on(crate::tools::demo::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets(TargetsCommand::Import {
            file,
            database_url,
            data,
        }) => runtime()?.block_on(import_targets(file, database_url, data)),
        Command::Simulate(args) => Ok(
            if runtime_with_threads(args.threads)?.block_on(crate::tools::simulate::run(args))? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
        ),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with_threads(0)
}

/// A runtime of `threads` workers: 0 = one per core, 1 = the current thread only (what
/// `simulate --threads` chooses).
fn runtime_with_threads(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        0 => tokio::runtime::Builder::new_multi_thread(),
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    Ok(builder.enable_all().build()?)
}

/// Validates every line first; imports only if all are valid, so a bad file changes nothing.
async fn import_targets(
    file: PathBuf,
    database_url: Option<String>,
    data: DataArgs,
) -> anyhow::Result<ExitCode> {
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
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<crate::contract::model::Target>(&line)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.validate()
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
    let url = database_url.unwrap_or_else(|| "sqlite://leadrelay.db".to_string());
    let store = crate::store::Store::connect(&url).await?;
    let imported = crate::app::targets::import(&store, &Clock::System, &targets).await?;
    println!(
        "imported {imported} target(s) into {}",
        crate::service::config::redact(&url)
    );
    Ok(ExitCode::SUCCESS)
}

fn locate(args: LocateArgs) -> anyhow::Result<ExitCode> {
    let valid = args.lat.is_finite()
        && args.lon.is_finite()
        && (-90.0..=90.0).contains(&args.lat)
        && (-180.0..=180.0).contains(&args.lon);
    if !valid {
        bail!(
            "--lat {} --lon {} is not a valid coordinate",
            args.lat,
            args.lon
        );
    }
    let data = Arc::new(args.data.load()?);
    if let Some(court) = &args.requesting_court {
        if data.court(court).is_none() {
            bail!("--requesting-court {court:?} is not in the courts data");
        }
    }
    let index = JurisdictionIndex::new(data).context("building the jurisdiction index")?;
    let (lon, lat) = datum::to_wgs84(args.datum, args.lon, args.lat);
    let location = index.locate(lon, lat);
    let acting = index.court(location.acting_court);
    let routing = match location.placement {
        Placement::InArea if args.requesting_court.as_deref() == Some(acting.court_id.as_str()) => {
            Routing::OwnJurisdiction
        }
        Placement::InArea => Routing::InJurisdiction,
        Placement::NearestCenter => Routing::NearestCourt,
    };
    let containing = location.containing_court.map(|c| index.court(c));
    let area_name = containing.and_then(|c| {
        index
            .data()
            .jurisdictions
            .iter()
            .find(|j| j.court_id == c.court_id)
            .map(|j| j.name.clone())
    });
    let decision = json!({
        "input": {"lat": args.lat, "lon": args.lon, "datum": args.datum},
        "wgs84": {"lat": lat, "lon": lon},
        "containing_court_id": containing.map(|c| &c.court_id),
        "containing_area": area_name,
        "requesting_court_id": args.requesting_court,
        "assisting_court_id": acting.court_id,
        "assisting_court_name": acting.court_name,
        "routing": routing,
        "distance_km": (index.distance_km(location.acting_court, lon, lat) * 1000.0).round() / 1000.0,
    });
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(ExitCode::SUCCESS)
}

/// Writes the sweep list: every active target with a known location in the court's area.
async fn sweep(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let data = Arc::new(args.data.load()?);
    let Some(court) = data.court_position(&args.court) else {
        bail!("--court {:?} is not in the courts data", args.court);
    };
    let index = JurisdictionIndex::new(data).context("building the jurisdiction index")?;
    let url = args
        .database_url
        .unwrap_or_else(|| "sqlite://leadrelay.db".to_string());
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
        None => Box::new(std::io::stdout()),
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

fn check_data(args: CheckDataArgs) -> anyhow::Result<ExitCode> {
    let (jurisdictions, courts) = args.data.sources()?;
    let report = check::check(&jurisdictions, &courts, args.max_overlap_km2);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        println!(
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
