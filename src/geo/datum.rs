//! Geodetic datums used by Chinese map data, and the conversions between them.
//!
//! Chinese map apps and DataV/Amap polygons use GCJ-02, an obfuscated datum that lies
//! 300–700 m off WGS-84. A sighting in the wrong datum near a county line lands in the wrong
//! court, so every position entering the service declares its datum and is converted to
//! WGS-84 here, once, at the edge.
//!
//! WGS-84 → GCJ-02 is the published forward transform (Krasovsky ellipsoid constants); its
//! inverse has no closed form, so GCJ-02 → WGS-84 iterates the forward transform until the
//! residual is below 1e-9° (about 0.1 mm). BD-09 (Baidu) is a closed-form offset of GCJ-02.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A datum a position can be declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datum {
    /// GPS; what everything inside the service uses.
    #[default]
    Wgs84,
    /// The Chinese "Mars" datum of Amap, Tencent and DataV.
    Gcj02,
    /// Baidu's datum, GCJ-02 with a further offset.
    Bd09,
}

impl Datum {
    pub fn as_str(self) -> &'static str {
        match self {
            Datum::Wgs84 => "wgs84",
            Datum::Gcj02 => "gcj02",
            Datum::Bd09 => "bd09",
        }
    }
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The datum name was none of `wgs84`, `gcj02`, `bd09`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown datum {0:?}: expected wgs84, gcj02 or bd09")]
pub struct UnknownDatum(pub String);

impl FromStr for Datum {
    type Err = UnknownDatum;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "wgs84" => Ok(Datum::Wgs84),
            "gcj02" => Ok(Datum::Gcj02),
            "bd09" => Ok(Datum::Bd09),
            _ => Err(UnknownDatum(s.to_string())),
        }
    }
}

/// Converts `(lon, lat)` declared in `datum` to WGS-84.
pub fn to_wgs84(datum: Datum, lon: f64, lat: f64) -> (f64, f64) {
    match datum {
        Datum::Wgs84 => (lon, lat),
        Datum::Gcj02 => gcj02_to_wgs84(lon, lat),
        Datum::Bd09 => {
            let (glon, glat) = bd09_to_gcj02(lon, lat);
            gcj02_to_wgs84(glon, glat)
        }
    }
}

/// Converts WGS-84 `(lon, lat)` to `datum`.
pub fn from_wgs84(datum: Datum, lon: f64, lat: f64) -> (f64, f64) {
    match datum {
        Datum::Wgs84 => (lon, lat),
        Datum::Gcj02 => wgs84_to_gcj02(lon, lat),
        Datum::Bd09 => {
            let (glon, glat) = wgs84_to_gcj02(lon, lat);
            gcj02_to_bd09(glon, glat)
        }
    }
}

/// Semi-major axis of the Krasovsky 1940 ellipsoid, as the GCJ-02 algorithm uses it.
const KRASOVSKY_A: f64 = 6_378_245.0;
/// First eccentricity squared of the same ellipsoid.
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;
/// Baidu's angular constant (π·3000/180).
const BD_X_PI: f64 = std::f64::consts::PI * 3000.0 / 180.0;

/// GCJ-02 applies only inside this rough box around China; elsewhere it equals WGS-84.
fn outside_china(lon: f64, lat: f64) -> bool {
    !(72.004..=137.8347).contains(&lon) || !(0.8293..=55.8271).contains(&lat)
}

fn offset_lat(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn offset_lon(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// The published forward transform WGS-84 → GCJ-02.
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    use std::f64::consts::PI;
    if outside_china(lon, lat) {
        return (lon, lat);
    }
    let d_lat = offset_lat(lon - 105.0, lat - 35.0);
    let d_lon = offset_lon(lon - 105.0, lat - 35.0);
    let rad_lat = lat / 180.0 * PI;
    let magic = 1.0 - KRASOVSKY_EE * rad_lat.sin() * rad_lat.sin();
    let sqrt_magic = magic.sqrt();
    let d_lat =
        (d_lat * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * PI);
    let d_lon = (d_lon * 180.0) / (KRASOVSKY_A / sqrt_magic * rad_lat.cos() * PI);
    (lon + d_lon, lat + d_lat)
}

/// GCJ-02 → WGS-84 by fixed-point iteration of the forward transform.
///
/// The offset field is smooth (its gradient is ~1e-5 per degree), so each step gains about
/// five decimal digits; three to four steps reach the 1e-9° stop.
///
/// Near the box's edge the forward transform carries points from inside the box to just
/// outside it, so a GCJ-02 position there has two pre-images: itself and a point inside.
/// The inside one is taken (the producer declared China's datum), found by iterating from
/// the nearest point of the box.
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if !outside_china(lon, lat) {
        return iterate_to_wgs84(lon, lat, (lon, lat));
    }
    // Beyond any offset of the forward transform (under 0.01°): WGS-84 already.
    const REACH: f64 = 0.02;
    let near = (72.004 - REACH..=137.8347 + REACH).contains(&lon)
        && (0.8293 - REACH..=55.8271 + REACH).contains(&lat);
    if !near {
        return (lon, lat);
    }
    let start = (lon.clamp(72.004, 137.8347), lat.clamp(0.8293, 55.8271));
    let (w_lon, w_lat) = iterate_to_wgs84(lon, lat, start);
    let (g_lon, g_lat) = wgs84_to_gcj02(w_lon, w_lat);
    if !outside_china(w_lon, w_lat) && (g_lon - lon).abs() < 1e-8 && (g_lat - lat).abs() < 1e-8 {
        (w_lon, w_lat)
    } else {
        (lon, lat)
    }
}

/// Fixed-point iteration of the forward transform towards `(lon, lat)` from `start`.
fn iterate_to_wgs84(lon: f64, lat: f64, start: (f64, f64)) -> (f64, f64) {
    let (mut w_lon, mut w_lat) = start;
    for _ in 0..10 {
        let (g_lon, g_lat) = wgs84_to_gcj02(w_lon, w_lat);
        let (e_lon, e_lat) = (g_lon - lon, g_lat - lat);
        w_lon -= e_lon;
        w_lat -= e_lat;
        if e_lon.abs() < 1e-9 && e_lat.abs() < 1e-9 {
            break;
        }
    }
    (w_lon, w_lat)
}

/// GCJ-02 → BD-09 (closed form).
pub fn gcj02_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let z = (lon * lon + lat * lat).sqrt() + 0.00002 * (lat * BD_X_PI).sin();
    let theta = lat.atan2(lon) + 0.000003 * (lon * BD_X_PI).cos();
    (z * theta.cos() + 0.0065, z * theta.sin() + 0.006)
}

/// BD-09 → GCJ-02 (the closed-form approximate inverse Baidu publishes; error < 1 m).
pub fn bd09_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    let x = lon - 0.0065;
    let y = lat - 0.006;
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * BD_X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * BD_X_PI).cos();
    (z * theta.cos(), z * theta.sin())
}

/// Great-circle distance in kilometres on a sphere of the mean Earth radius (haversine).
pub fn great_circle_km(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    const MEAN_EARTH_RADIUS_KM: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * MEAN_EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metres between two nearby points.
    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        great_circle_km(a.0, a.1, b.0, b.1) * 1000.0
    }

    // Reference pairs published with the widely used `coordtransform` library
    // (wandergis/coordtransform, test/app.js) for the input (116.404, 39.915), Beijing.
    #[test]
    fn forward_transform_matches_published_reference() {
        let g = wgs84_to_gcj02(116.404, 39.915);
        assert!((g.0 - 116.410_244_499_169_38).abs() < 1e-9, "{g:?}");
        assert!((g.1 - 39.916_404_281_501_64).abs() < 1e-9, "{g:?}");
    }

    #[test]
    fn baidu_transforms_match_published_reference() {
        let b = gcj02_to_bd09(116.404, 39.915);
        assert!((b.0 - 116.410_369_493_710_29).abs() < 1e-9, "{b:?}");
        assert!((b.1 - 39.921_336_993_510_21).abs() < 1e-9, "{b:?}");
        let g = bd09_to_gcj02(116.404, 39.915);
        assert!((g.0 - 116.397_627_291_193_15).abs() < 1e-9, "{g:?}");
        assert!((g.1 - 39.908_656_739_576_31).abs() < 1e-9, "{g:?}");
    }

    #[test]
    fn inverse_is_far_better_than_a_metre() {
        // The published one-step inverse of (116.404, 39.915) is (116.397755.., 39.913595..);
        // it is accurate to about a metre; the iteration must agree with it to that order
        // and round-trip to well under a millimetre.
        let w = gcj02_to_wgs84(116.404, 39.915);
        assert!(metres(w, (116.397_755_500_830_61, 39.913_595_718_498_36)) < 3.0);
        let back = wgs84_to_gcj02(w.0, w.1);
        assert!(metres(back, (116.404, 39.915)) < 0.001, "{back:?}");
    }

    #[test]
    fn ningbo_offsets_match_provenance_notes() {
        // PROVENANCE.md: near Ningbo GCJ-02 = WGS-84 + (+0.0040..+0.0045 lon, -0.0023..-0.0027 lat).
        for (lon, lat) in [
            (121.43, 29.29),
            (121.87, 29.47),
            (121.16, 30.05),
            (121.25, 30.18),
        ] {
            let (glon, glat) = wgs84_to_gcj02(lon, lat);
            let (dlon, dlat) = (glon - lon, glat - lat);
            assert!((0.0039..0.0046).contains(&dlon), "{lon},{lat}: dlon {dlon}");
            assert!(
                (-0.0028..-0.0022).contains(&dlat),
                "{lon},{lat}: dlat {dlat}"
            );
        }
    }

    #[test]
    fn round_trips_over_china_to_millimetres() {
        let mut worst: f64 = 0.0;
        let mut lon = 73.7;
        while lon < 135.0 {
            let mut lat = 18.2;
            while lat < 53.5 {
                let g = wgs84_to_gcj02(lon, lat);
                let w = gcj02_to_wgs84(g.0, g.1);
                worst = worst.max(metres(w, (lon, lat)));
                lat += 0.73;
            }
            lon += 0.91;
        }
        assert!(worst < 0.001, "worst round trip error {worst} m");
    }

    #[test]
    fn outside_china_is_unchanged() {
        assert_eq!(wgs84_to_gcj02(2.35, 48.85), (2.35, 48.85));
        assert_eq!(gcj02_to_wgs84(-74.0, 40.7), (-74.0, 40.7));
    }

    #[test]
    fn datum_names_parse() {
        assert_eq!("GCJ-02".parse::<Datum>(), Ok(Datum::Gcj02));
        assert_eq!("wgs84".parse::<Datum>(), Ok(Datum::Wgs84));
        assert_eq!("bd09".parse::<Datum>(), Ok(Datum::Bd09));
        assert!("nad27".parse::<Datum>().is_err());
    }

    #[test]
    fn great_circle_distance_is_sane() {
        // Yuyao to Cixi seats: about 15 km apart.
        let d = great_circle_km(121.156, 30.045, 121.248, 30.177);
        assert!((15.0..18.0).contains(&d), "{d}");
    }
}
