//! The geographic data: jurisdictions and courts.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::geo::geodata::{
    GeoData, SHIPPED_COURTS, SHIPPED_NEIGHBOUR_JURISDICTIONS, SHIPPED_NINGBO_JURISDICTIONS, Source,
};
use crate::service::config::layer::Layered;

/// Where the geographic data comes from; what is not given is the shipped Ningbo data.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Geographic data")]
pub struct DataArgs {
    /// Jurisdiction GeoJSON files (FeatureCollections, `.gz` allowed), comma-separated or
    /// repeated (default: the shipped Ningbo jurisdictions and their neighbours).
    #[arg(long, env = "LEADRELAY_JURISDICTIONS", value_delimiter = ',')]
    pub jurisdictions: Option<Vec<PathBuf>>,
    /// Courts CSV (court_id, court_name, adcode, lat, lon, datum, supervisor_court_id,
    /// participating) (default: the shipped Ningbo courts).
    #[arg(long, env = "LEADRELAY_COURTS")]
    pub courts: Option<PathBuf>,
}

impl Layered for DataArgs {
    /// None: the shipped data stands in for what is not given.
    fn defaults() -> Self {
        DataArgs::default()
    }
}

impl DataArgs {
    /// The sources to load: the given files, or the shipped ones for what is not given.
    pub fn sources(&self) -> anyhow::Result<(Vec<Source>, Source)> {
        let jurisdictions = match self.jurisdictions.as_deref() {
            None | Some([]) => vec![
                Source::inline(
                    "shipped ningbo_jurisdictions.geojson",
                    SHIPPED_NINGBO_JURISDICTIONS,
                ),
                Source::inline(
                    "shipped neighbours.geojson",
                    SHIPPED_NEIGHBOUR_JURISDICTIONS,
                ),
            ],
            Some(paths) => paths
                .iter()
                .map(|p| Source::read(p))
                .collect::<Result<_, _>>()?,
        };
        let courts = match &self.courts {
            Some(path) => Source::read(path)?,
            None => Source::inline("shipped courts.csv", SHIPPED_COURTS),
        };
        Ok((jurisdictions, courts))
    }

    /// Loads and validates, failing with every problem listed.
    pub fn load(&self) -> anyhow::Result<GeoData> {
        let (jurisdictions, courts) = self.sources()?;
        Ok(GeoData::load(&jurisdictions, &courts)?)
    }
}
