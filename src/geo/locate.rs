//! Point location: which court's jurisdiction holds a WGS-84 point, and which participating
//! court acts on it.
//!
//! Two R-trees: one over the bounding boxes of every polygon part (to find the few candidate
//! areas), one over the command centers (for points in no participating court's area).
//!
//! Exact containment does not walk a ring's edges: each polygon part keeps its edges bucketed
//! into horizontal bands (`BandedPolygon`), so a test reads only the handful of edges in the
//! point's band. Counting crossings over *all* rings of a part handles holes for free.
//!
//! ## Points on a border
//! Crossings are counted half-open (an edge counts when `y_lo <= y < y_hi` and the edge lies
//! strictly east of the point), so a point exactly on a line shared by two areas belongs to
//! exactly one of them: the area to its east, and for an east–west line the area to its north.
//! Where areas overlap (seams in generalised data) the smallest area wins, then the lowest
//! court id. Both rules are deterministic and independent of load order.
//!
//! ## Nearest command center
//! Command centers are stored as unit vectors on the sphere: the straight-line (chord)
//! nearest neighbour is then exactly the great-circle nearest one.

use std::sync::Arc;

use geo::{Area, BoundingRect, Coord, MultiPolygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::Serialize;

use crate::geo::datum::great_circle_km;
use crate::geo::geodata::{Court, GeoData};

/// How the acting court was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The point lies in the acting court's own area.
    InArea,
    /// The point lies in no participating court's area; the nearest command center acts.
    NearestCenter,
}

/// Where a point is, as court positions in [`GeoData::courts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// The court whose area holds the point, participating or not (`None`: out at sea, or
    /// beyond the data).
    pub containing_court: Option<usize>,
    /// The participating court that should act.
    pub acting_court: usize,
    pub placement: Placement,
}

/// The index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no participating court has a jurisdiction area: nothing could ever act on a sighting")]
    NoActingCourt,
}

/// Immutable point-location index over a [`GeoData`]; cheap to share behind an `Arc`.
pub struct JurisdictionIndex {
    data: Arc<GeoData>,
    parts: Vec<BandedPolygon>,
    part_boxes: RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>,
    centers: RTree<GeomWithData<[f64; 3], u32>>,
    /// Per court position: its rank among overlapping areas (smaller area first).
    precedence: Vec<u32>,
    /// The fast path: a uniform grid that answers most points without an edge test.
    grid: CellGrid,
}

impl JurisdictionIndex {
    pub fn new(data: Arc<GeoData>) -> Result<JurisdictionIndex, IndexError> {
        let mut parts = Vec::new();
        let mut boxes = Vec::new();
        let mut areas: Vec<(f64, &str, usize)> = Vec::new();
        for j in &data.jurisdictions {
            let Some(court) = data.court_position(&j.court_id) else {
                continue;
            };
            areas.push((j.area.unsigned_area(), &j.court_id, court));
            for polygon in &j.area.0 {
                let Some(rect) = polygon.bounding_rect() else {
                    continue;
                };
                let id = parts.len() as u32;
                parts.push(BandedPolygon::new(polygon, court as u32));
                let aabb =
                    AABB::from_corners([rect.min().x, rect.min().y], [rect.max().x, rect.max().y]);
                boxes.push(GeomWithData::new(Rectangle::from_aabb(aabb), id));
            }
        }
        areas.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut precedence = vec![u32::MAX; data.courts.len()];
        for (rank, (_, _, court)) in areas.iter().enumerate() {
            precedence[*court] = rank as u32;
        }
        let centers: Vec<_> = data
            .courts
            .iter()
            .enumerate()
            .filter(|(i, c)| c.participating && precedence[*i] != u32::MAX)
            .map(|(i, c)| GeomWithData::new(unit_vector(c.command_center), i as u32))
            .collect();
        if centers.is_empty() {
            return Err(IndexError::NoActingCourt);
        }
        let grid = CellGrid::build(&parts, &precedence);
        Ok(JurisdictionIndex {
            grid,
            parts,
            part_boxes: RTree::bulk_load(boxes),
            centers: RTree::bulk_load(centers),
            precedence,
            data,
        })
    }

    pub fn data(&self) -> &GeoData {
        &self.data
    }

    pub fn court(&self, position: usize) -> &Court {
        &self.data.courts[position]
    }

    /// The court whose area holds the WGS-84 point (participating or not), if any.
    pub fn containing_court(&self, lon: f64, lat: f64) -> Option<usize> {
        self.grid.containing_court(&self.parts, lon, lat)
    }

    /// The same answer as [`Self::containing_court`] by the R-tree of part bounding boxes
    /// and a banded test of every candidate: the reference the grid is checked against.
    pub fn containing_court_by_rtree(&self, lon: f64, lat: f64) -> Option<usize> {
        let mut best: Option<u32> = None;
        for candidate in self.part_boxes.locate_all_at_point(&[lon, lat]) {
            let part = &self.parts[candidate.data as usize];
            let better = best
                .is_none_or(|b| self.precedence[part.court as usize] < self.precedence[b as usize]);
            if better && part.contains(lon, lat) {
                best = Some(part.court);
            }
        }
        best.map(|c| c as usize)
    }

    /// The participating court nearest to the point by great-circle distance, with that distance.
    pub fn nearest_center(&self, lon: f64, lat: f64) -> (usize, f64) {
        let (lon, lat) = if lon.is_finite() && lat.is_finite() {
            (lon, lat)
        } else {
            (0.0, 0.0)
        };
        let nearest = self
            .centers
            .nearest_neighbor(&unit_vector(Coord { x: lon, y: lat }))
            .map(|c| c.data as usize)
            .expect("the index holds at least one command center (checked in new)");
        (nearest, self.distance_km(nearest, lon, lat))
    }

    /// Participating courts with an area of their own, nearest command center first.
    pub fn centers_by_distance(
        &self,
        lon: f64,
        lat: f64,
    ) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (lon, lat) = if lon.is_finite() && lat.is_finite() {
            (lon, lat)
        } else {
            (0.0, 0.0)
        };
        self.centers
            .nearest_neighbor_iter(&unit_vector(Coord { x: lon, y: lat }))
            .map(move |c| (c.data as usize, self.distance_km(c.data as usize, lon, lat)))
    }

    /// Decides which court acts on a sighting at the WGS-84 point.
    ///
    /// Non-finite coordinates never reach here (decode rejects them); should one slip
    /// through it locates to no area and the nearest-center path, without panicking.
    pub fn locate(&self, lon: f64, lat: f64) -> Location {
        let containing_court = self.containing_court(lon, lat);
        match containing_court {
            Some(court) if self.data.courts[court].participating => Location {
                containing_court,
                acting_court: court,
                placement: Placement::InArea,
            },
            _ => Location {
                containing_court,
                acting_court: self.nearest_center(lon, lat).0,
                placement: Placement::NearestCenter,
            },
        }
    }

    /// Great-circle distance from a court's command center to a point.
    pub fn distance_km(&self, court: usize, lon: f64, lat: f64) -> f64 {
        let c = self.data.courts[court].command_center;
        great_circle_km(c.x, c.y, lon, lat)
    }

    /// All the court areas, for callers that need the geometry (sweeps, the HTTP API).
    pub fn area_of(&self, court_id: &str) -> Option<&MultiPolygon<f64>> {
        self.data
            .jurisdictions
            .iter()
            .find(|j| j.court_id == court_id)
            .map(|j| &j.area)
    }
}

fn unit_vector(c: Coord<f64>) -> [f64; 3] {
    let (lat, lon) = (c.y.to_radians(), c.x.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Tag of a grid cell, in its top two bits.
const CELL_EMPTY: u32 = 0;
const CELL_INSIDE: u32 = 1 << 30;
const CELL_MIXED: u32 = 2 << 30;
const CELL_TAG: u32 = 3 << 30;
/// In a mixed cell's candidate list: this part covers the whole cell, no test needed.
const COVERS_CELL: u32 = 1 << 31;

/// A uniform grid over all areas. Each cell is either in no area, wholly inside one area (the
/// answer without any edge test), or mixed: crossed by some area's edges, with the candidate
/// parts listed in precedence order so the first one that contains the point is the answer.
///
/// Cells are sized so that there are about four per edge; most real points (cameras stand
/// inside counties, not on their borders) land in "inside" cells.
struct CellGrid {
    min_x: f64,
    min_y: f64,
    cells_per_x: f64,
    cells_per_y: f64,
    nx: usize,
    ny: usize,
    cells: Vec<u32>,
    /// Mixed cells point here: a length, then that many part ids (with [`COVERS_CELL`]).
    lists: Vec<u32>,
}

impl CellGrid {
    fn build(parts: &[BandedPolygon], precedence: &[u32]) -> CellGrid {
        let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
        let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        let mut edge_count = 0usize;
        for part in parts {
            for &(x0, y0, x1, y1) in &part.outline {
                min_x = min_x.min(x0.min(x1));
                max_x = max_x.max(x0.max(x1));
                min_y = min_y.min(y0.min(y1));
                max_y = max_y.max(y0.max(y1));
            }
            edge_count += part.outline.len();
        }
        if edge_count == 0 {
            return CellGrid {
                min_x: 0.0,
                min_y: 0.0,
                cells_per_x: 0.0,
                cells_per_y: 0.0,
                nx: 0,
                ny: 0,
                cells: Vec::new(),
                lists: Vec::new(),
            };
        }
        let (width, height) = ((max_x - min_x).max(1e-9), (max_y - min_y).max(1e-9));
        let target_cells = (edge_count * 4).clamp(1024, 1 << 24) as f64;
        let side = (width * height / target_cells).sqrt();
        let nx = ((width / side).ceil() as usize).max(1);
        let ny = ((height / side).ceil() as usize).max(1);
        let mut grid = CellGrid {
            min_x,
            min_y,
            cells_per_x: nx as f64 / width,
            cells_per_y: ny as f64 / height,
            nx,
            ny,
            cells: vec![CELL_EMPTY; nx * ny],
            lists: Vec::new(),
        };
        // (cell, part, covers): edges touching a cell, then cells a part wholly covers.
        let mut touches: Vec<(u32, u32, bool)> = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let first = touches.len();
            for &(x0, y0, x1, y1) in &part.outline {
                let (cx0, cx1) = (grid.column(x0.min(x1)), grid.column(x0.max(x1)));
                let (cy0, cy1) = (grid.row(y0.min(y1)), grid.row(y0.max(y1)));
                for cy in cy0..=cy1 {
                    for cx in cx0..=cx1 {
                        touches.push(((cy * nx + cx) as u32, p as u32, false));
                    }
                }
            }
            touches[first..].sort_unstable();
            let mut crossed: Vec<u32> = touches[first..].iter().map(|t| t.0).collect();
            crossed.dedup();
            let (bx0, bx1) = (grid.column(part.min_x), grid.column(part.max_x));
            let (by0, by1) = (grid.row(part.min_y), grid.row(part.max_y));
            for cy in by0..=by1 {
                for cx in bx0..=bx1 {
                    let cell = (cy * nx + cx) as u32;
                    if crossed.binary_search(&cell).is_ok() {
                        continue;
                    }
                    // No edge of this part touches the cell: the centre speaks for all of it.
                    let x = min_x + (cx as f64 + 0.5) / grid.cells_per_x;
                    let y = min_y + (cy as f64 + 0.5) / grid.cells_per_y;
                    if grid.cell_of(x, y) == Some(cell as usize) && part.contains(x, y) {
                        touches.push((cell, p as u32, true));
                    }
                }
            }
        }
        touches.sort_unstable();
        touches.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let rank = |part: u32| precedence[parts[part as usize].court as usize];
        for same_cell in touches.chunk_by(|a, b| a.0 == b.0) {
            let cell = same_cell[0].0 as usize;
            let mut candidates: Vec<(u32, bool)> = same_cell.iter().map(|t| (t.1, t.2)).collect();
            candidates.sort_by_key(|&(part, _)| (rank(part), part));
            grid.cells[cell] = if candidates[0].1 {
                // The highest-precedence candidate covers the whole cell: it always wins.
                CELL_INSIDE | parts[candidates[0].0 as usize].court
            } else {
                let offset = grid.lists.len() as u32;
                grid.lists.push(candidates.len() as u32);
                grid.lists.extend(
                    candidates
                        .iter()
                        .map(|&(part, covers)| if covers { part | COVERS_CELL } else { part }),
                );
                CELL_MIXED | offset
            };
        }
        grid
    }

    fn column(&self, x: f64) -> usize {
        (((x - self.min_x) * self.cells_per_x) as usize).min(self.nx - 1)
    }

    fn row(&self, y: f64) -> usize {
        (((y - self.min_y) * self.cells_per_y) as usize).min(self.ny - 1)
    }

    /// The cell holding the point, `None` outside the grid (or for NaN and infinities).
    fn cell_of(&self, x: f64, y: f64) -> Option<usize> {
        let fx = (x - self.min_x) * self.cells_per_x;
        let fy = (y - self.min_y) * self.cells_per_y;
        if !((0.0..=self.nx as f64).contains(&fx) && (0.0..=self.ny as f64).contains(&fy)) {
            return None;
        }
        // Points on the max edge belong to the last cell, as `column`/`row` clamp them.
        let cx = (fx as usize).min(self.nx - 1);
        let cy = (fy as usize).min(self.ny - 1);
        Some(cy * self.nx + cx)
    }

    fn containing_court(&self, parts: &[BandedPolygon], x: f64, y: f64) -> Option<usize> {
        let cell = self.cells[self.cell_of(x, y)?];
        match cell & CELL_TAG {
            CELL_INSIDE => Some((cell & !CELL_TAG) as usize),
            CELL_MIXED => {
                let at = (cell & !CELL_TAG) as usize;
                let len = self.lists[at] as usize;
                self.lists[at + 1..=at + len].iter().find_map(|&entry| {
                    let part = &parts[(entry & !COVERS_CELL) as usize];
                    (entry & COVERS_CELL != 0 || part.contains(x, y)).then_some(part.court as usize)
                })
            }
            _ => None,
        }
    }
}

/// One non-horizontal edge, normalised so that `y_lo < y_hi`; shared edges of neighbouring
/// polygons normalise to identical values whatever their ring orientation, which is what
/// makes the border rule exact.
#[derive(Debug, Clone, Copy)]
struct Edge {
    y_lo: f64,
    y_hi: f64,
    /// x where the edge is at `y_lo`.
    x_at_lo: f64,
    /// dx/dy along the edge.
    slope: f64,
}

/// A polygon (exterior and holes) with its edges bucketed into horizontal bands.
struct BandedPolygon {
    court: u32,
    /// Every edge as `(x0, y0, x1, y1)`, horizontal ones included, for building the grid.
    outline: Vec<(f64, f64, f64, f64)>,
    min_x: f64,
    max_x: f64,
    min_y: f64,
    max_y: f64,
    /// Bands per degree of latitude.
    bands_per_degree: f64,
    /// `band_start[b]..band_start[b + 1]` indexes `edges` for band `b`.
    band_start: Vec<u32>,
    /// Edges in band order; an edge spanning several bands appears in each.
    edges: Vec<Edge>,
}

impl BandedPolygon {
    fn new(polygon: &geo::Polygon<f64>, court: u32) -> BandedPolygon {
        let outline: Vec<(f64, f64, f64, f64)> = std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .flat_map(|ring| ring.lines())
            .map(|l| (l.start.x, l.start.y, l.end.x, l.end.y))
            .collect();
        let min_x = outline
            .iter()
            .map(|e| e.0.min(e.2))
            .fold(f64::INFINITY, f64::min);
        let max_x = outline
            .iter()
            .map(|e| e.0.max(e.2))
            .fold(f64::NEG_INFINITY, f64::max);
        let edges: Vec<Edge> = std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .flat_map(|ring| ring.lines())
            .filter(|l| l.start.y != l.end.y)
            .map(|l| {
                let (lo, hi) = if l.start.y < l.end.y {
                    (l.start, l.end)
                } else {
                    (l.end, l.start)
                };
                Edge {
                    y_lo: lo.y,
                    y_hi: hi.y,
                    x_at_lo: lo.x,
                    slope: (hi.x - lo.x) / (hi.y - lo.y),
                }
            })
            .collect();
        let min_y = edges.iter().map(|e| e.y_lo).fold(f64::INFINITY, f64::min);
        let max_y = edges
            .iter()
            .map(|e| e.y_hi)
            .fold(f64::NEG_INFINITY, f64::max);
        // About one band per edge keeps a band's edge list to the few that cross it.
        let band_count = edges.len().clamp(1, 1 << 16);
        let height = (max_y - min_y).max(f64::MIN_POSITIVE);
        let bands_per_degree = band_count as f64 / height;
        let band_of = |y: f64| (((y - min_y) * bands_per_degree) as usize).min(band_count - 1);
        let mut buckets: Vec<Vec<Edge>> = vec![Vec::new(); band_count];
        for e in &edges {
            for bucket in &mut buckets[band_of(e.y_lo)..=band_of(e.y_hi)] {
                bucket.push(*e);
            }
        }
        let mut band_start = Vec::with_capacity(band_count + 1);
        let mut banded = Vec::new();
        for bucket in buckets {
            band_start.push(banded.len() as u32);
            banded.extend(bucket);
        }
        band_start.push(banded.len() as u32);
        BandedPolygon {
            court,
            outline,
            min_x,
            max_x,
            min_y,
            max_y,
            bands_per_degree,
            band_start,
            edges: banded,
        }
    }

    /// Even–odd crossing test over the point's band only.
    fn contains(&self, x: f64, y: f64) -> bool {
        let offset = (y - self.min_y) * self.bands_per_degree;
        if offset.is_nan() || offset < 0.0 {
            return false;
        }
        let band = offset as usize;
        if band + 1 >= self.band_start.len() {
            return false;
        }
        let edges = &self.edges[self.band_start[band] as usize..self.band_start[band + 1] as usize];
        let mut inside = false;
        for e in edges {
            if e.y_lo <= y && y < e.y_hi && x < e.x_at_lo + (y - e.y_lo) * e.slope {
                inside = !inside;
            }
        }
        inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::datum::{gcj02_to_wgs84, wgs84_to_gcj02};
    use geo::{Contains, InteriorPoint};

    fn index() -> JurisdictionIndex {
        JurisdictionIndex::new(Arc::new(GeoData::shipped())).unwrap()
    }

    fn court_at(ix: &JurisdictionIndex, lon: f64, lat: f64) -> Option<&str> {
        ix.containing_court(lon, lat)
            .map(|c| ix.court(c).court_id.as_str())
    }

    #[test]
    fn every_county_interior_point_locates_to_its_own_court() {
        let ix = index();
        for j in &ix.data().jurisdictions {
            let p = j.area.interior_point().unwrap();
            assert_eq!(
                court_at(&ix, p.x(), p.y()),
                Some(j.court_id.as_str()),
                "{}",
                j.name
            );
            let loc = ix.locate(p.x(), p.y());
            if ix.court(loc.acting_court).participating && loc.placement == Placement::InArea {
                assert_eq!(ix.court(loc.acting_court).court_id, j.court_id);
            }
        }
    }

    #[test]
    fn grid_and_banded_test_agree_with_geo_contains_on_a_dense_grid() {
        let ix = index();
        let mut checked = 0;
        let (mut lon, mut disagreements) = (120.80, 0);
        while lon < 122.35 {
            let mut lat = 28.80;
            while lat < 30.60 {
                let expected: Vec<&str> = ix
                    .data()
                    .jurisdictions
                    .iter()
                    .filter(|j| j.area.contains(&geo::Point::new(lon, lat)))
                    .map(|j| j.court_id.as_str())
                    .collect();
                let got = court_at(&ix, lon, lat);
                let by_rtree = ix
                    .containing_court_by_rtree(lon, lat)
                    .map(|c| ix.court(c).court_id.as_str());
                assert_eq!(got, by_rtree, "grid and R-tree disagree at {lon},{lat}");
                // Points exactly on an edge are excluded by geo's `contains`; the grid never
                // hits an edge exactly, so the answers must agree.
                if expected.first().copied() != got && !(expected.len() > 1 && got.is_some()) {
                    disagreements += 1;
                }
                checked += 1;
                lat += 0.0137;
            }
            lon += 0.0119;
        }
        assert!(checked > 15_000);
        assert_eq!(disagreements, 0);
    }

    #[test]
    fn shared_vertex_and_edge_points_belong_to_exactly_one_area() {
        let ix = index();
        let yuyao = ix.area_of("yuyao").unwrap();
        let cixi = ix.area_of("cixi").unwrap();
        // Vertices Yuyao shares with Cixi lie on both borders.
        let cixi_vertices: std::collections::HashSet<(u64, u64)> = cixi.0[0]
            .exterior()
            .coords()
            .map(|c| (c.x.to_bits(), c.y.to_bits()))
            .collect();
        let mut shared = 0;
        for c in yuyao.0[0].exterior().coords() {
            if cixi_vertices.contains(&(c.x.to_bits(), c.y.to_bits())) {
                shared += 1;
                let in_yuyao = ix
                    .parts
                    .iter()
                    .filter(|p| p.court == ix.data().court_position("yuyao").unwrap() as u32)
                    .any(|p| p.contains(c.x, c.y));
                let in_cixi = ix
                    .parts
                    .iter()
                    .filter(|p| p.court == ix.data().court_position("cixi").unwrap() as u32)
                    .any(|p| p.contains(c.x, c.y));
                assert!(
                    !(in_yuyao && in_cixi),
                    "a border point in both areas: {c:?}"
                );
                // Also the midpoint of consecutive shared vertices is on one side only.
            }
        }
        assert!(shared > 10, "Yuyao and Cixi share a border in the data");
    }

    /// Points a few hundred metres either side of the Yuyao–Cixi line, found by walking the
    /// line between the two court seats, given both as WGS-84 and as GCJ-02 input.
    #[test]
    fn yuyao_cixi_border_is_resolved_both_sides_in_both_datums() {
        let ix = index();
        let yuyao = ix
            .court(ix.data().court_position("yuyao").unwrap())
            .command_center;
        let cixi = ix
            .court(ix.data().court_position("cixi").unwrap())
            .command_center;
        // Find the crossing on the segment seat→seat by bisection.
        let at = |t: f64| {
            (
                yuyao.x + (cixi.x - yuyao.x) * t,
                yuyao.y + (cixi.y - yuyao.y) * t,
            )
        };
        let (mut lo, mut hi) = (0.0, 1.0);
        assert_eq!(court_at(&ix, at(lo).0, at(lo).1), Some("yuyao"));
        assert_eq!(court_at(&ix, at(hi).0, at(hi).1), Some("cixi"));
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if court_at(&ix, at(mid).0, at(mid).1) == Some("yuyao") {
                lo = mid
            } else {
                hi = mid
            }
        }
        let length_m = great_circle_km(yuyao.x, yuyao.y, cixi.x, cixi.y) * 1000.0;
        for metres in [150.0, 300.0, 600.0] {
            let dt = metres / length_m;
            let (wy, wc) = (at(lo - dt), at(hi + dt));
            assert_eq!(
                court_at(&ix, wy.0, wy.1),
                Some("yuyao"),
                "{metres} m on the Yuyao side"
            );
            assert_eq!(
                court_at(&ix, wc.0, wc.1),
                Some("cixi"),
                "{metres} m on the Cixi side"
            );
            // The same places as a GCJ-02 app reports them, converted at the edge.
            let (gy, gc) = (wgs84_to_gcj02(wy.0, wy.1), wgs84_to_gcj02(wc.0, wc.1));
            let (cy, cc) = (gcj02_to_wgs84(gy.0, gy.1), gcj02_to_wgs84(gc.0, gc.1));
            assert_eq!(court_at(&ix, cy.0, cy.1), Some("yuyao"));
            assert_eq!(court_at(&ix, cc.0, cc.1), Some("cixi"));
            // Misreading GCJ-02 as WGS-84 moves a point ~500 m: near the line that is the
            // wrong court, which is why the datum must be declared.
            if metres == 150.0 {
                let wrong = [court_at(&ix, gy.0, gy.1), court_at(&ix, gc.0, gc.1)];
                assert!(
                    wrong != [Some("yuyao"), Some("cixi")],
                    "misread datum should misplace one of {wrong:?}"
                );
            }
        }
    }

    #[test]
    fn every_court_seat_locates_to_its_own_court() {
        let ix = index();
        for j in &ix.data().jurisdictions {
            let seat = ix.data().court(&j.court_id).unwrap().command_center;
            assert_eq!(court_at(&ix, seat.x, seat.y), Some(j.court_id.as_str()));
        }
    }

    #[test]
    fn sea_and_shanghai_go_to_the_nearest_participating_court() {
        let ix = index();
        let name = |c: usize| ix.court(c).court_id.clone();
        // East China Sea, east of Xiangshan: no area; Xiangshan's seat is nearest.
        let sea = ix.locate(122.60, 29.40);
        assert_eq!(sea.containing_court, None);
        assert_eq!(sea.placement, Placement::NearestCenter);
        assert_eq!(name(sea.acting_court), "xiangshan");
        // People's Square, Shanghai: across Hangzhou Bay the nearest participating seat is Cixi.
        let shanghai = ix.locate(121.4737, 31.2304);
        assert_eq!(shanghai.containing_court, None);
        assert_eq!(name(shanghai.acting_court), "cixi");
        let km = ix.distance_km(shanghai.acting_court, 121.4737, 31.2304);
        assert!(km > 100.0 && km < 130.0, "{km}");
        // In Shangyu (a neighbour that does not participate): its area is known, Yuyao acts.
        let seat = ix
            .court(ix.data().court_position("shangyu").unwrap())
            .command_center;
        let shangyu = ix.locate(seat.x, seat.y);
        assert_eq!(
            shangyu.containing_court.map(name).as_deref(),
            Some("shangyu")
        );
        assert_eq!(shangyu.placement, Placement::NearestCenter);
        assert_eq!(name(shangyu.acting_court), "yuyao");
        // The intermediate court has no area and never acts.
        for lon in [121.0, 121.5, 122.0] {
            let l = ix.locate(lon, 28.5);
            assert_ne!(name(l.acting_court), "ningbo_intermediate");
        }
    }

    #[test]
    fn holes_are_outside() {
        use crate::geo::geodata::Source;
        let geojson = r#"{"type":"FeatureCollection","datum":"wgs84","features":[{"type":"Feature","properties":{"court_id":"a"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]],[[121.04,30.04],[121.06,30.04],[121.06,30.06],[121.04,30.06],[121.04,30.04]]]}}]}"#;
        let courts = "court_id,court_name,adcode,lat,lon,datum\na,A,1,30.05,121.05,wgs84\n";
        let data = GeoData::load(
            &[Source::inline("g", geojson)],
            &Source::inline("c", courts),
        )
        .unwrap();
        let ix = JurisdictionIndex::new(Arc::new(data)).unwrap();
        assert_eq!(court_at(&ix, 121.02, 30.02), Some("a"));
        assert_eq!(court_at(&ix, 121.05, 30.05), None);
        assert_eq!(ix.locate(121.05, 30.05).placement, Placement::NearestCenter);
    }

    #[test]
    fn non_finite_points_locate_to_nothing_without_panicking() {
        let ix = index();
        assert_eq!(ix.containing_court(f64::NAN, 30.0), None);
        assert_eq!(ix.containing_court(121.2, f64::INFINITY), None);
    }
}
