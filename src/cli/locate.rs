//! `leadrelay locate`: which court's area holds a point and which court would act on it.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::contract::model::Routing;
use crate::geo::datum::{self, Datum};
use crate::geo::locate::{JurisdictionIndex, Placement};
use crate::service::config::DataArgs;

/// A point to place.
#[derive(Debug, Args)]
pub struct LocateArgs {
    #[arg(long, allow_hyphen_values = true)]
    pub lat: f64,
    #[arg(long, allow_hyphen_values = true)]
    pub lon: f64,
    /// Datum of --lat/--lon.
    #[arg(long, default_value = "wgs84")]
    pub datum: Datum,
    /// The court asking (the target's requesting court), to tell own_jurisdiction apart
    /// (default: none, never own_jurisdiction).
    #[arg(long)]
    pub requesting_court: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub fn run(args: LocateArgs) -> anyhow::Result<ExitCode> {
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
    crate::outln!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(ExitCode::SUCCESS)
}
