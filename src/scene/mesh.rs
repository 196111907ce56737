//! Triangle meshes: the common form of every object the generator draws that is not one of
//! the three analytic primitives (procedural families and users' mesh files alike).
//!
//! A [`TriangleMesh`] is plain data. [`TriangleMesh::check`] refuses what no later stage can
//! use (no triangles, non-finite vertices, indices out of range, no surface) and describes
//! what it accepts ([`MeshTopology`]): open and non-manifold meshes are drawn and labelled
//! like any other, only their volume and inside/outside are undefined. Every other method
//! tolerates an unchecked mesh without panicking (a bad triangle is skipped), so a caller
//! may inspect a mesh before deciding to refuse it.

use std::collections::HashMap;

use nalgebra::{Isometry3, Point3, Vector3};
use parry3d_f64::shape::{TriMesh, TriMeshFlags};
use parry3d_f64::transformation::try_convex_hull;
use thiserror::Error;

/// A triangle whose area is below this fraction of the squared bounding-box diagonal counts
/// as degenerate. Scale-free, and far below any face a depth sensor could see (a 0.1 m part
/// gives 1e-14 m², a square of 0.1 µm), so it only catches round-off slivers.
const DEGENERATE_AREA_FRACTION: f64 = 1e-12;

/// A bounding-box side below this fraction of the largest side counts as zero.
const FLAT_EXTENT_FRACTION: f64 = 1e-9;

/// A triangle mesh in its own frame, metres. Triangles index `vertices_m` and wind
/// counter-clockwise seen from outside where the mesh is closed.
#[derive(Clone, Debug, PartialEq)]
pub struct TriangleMesh {
    pub vertices_m: Vec<Point3<f64>>,
    pub triangles: Vec<[u32; 3]>,
}

/// What [`TriangleMesh::check`] found about a mesh it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshTopology {
    /// Every edge is shared by exactly two triangles: the mesh bounds a volume.
    pub closed: bool,
    /// No edge is shared by more than two triangles and neighbours agree on orientation
    /// (each shared edge is walked once in each direction).
    pub manifold: bool,
    /// Triangles with a repeated vertex index or (near) zero area.
    pub degenerate_triangles: usize,
}

impl MeshTopology {
    /// Closed and consistently oriented: signed volume and inside/outside are meaningful.
    pub fn watertight(&self) -> bool {
        self.closed && self.manifold
    }
}

/// Why [`TriangleMesh::check`] refused a mesh.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum MeshProblem {
    #[error("the mesh has no triangles")]
    Empty,
    #[error("vertex {index} is not finite ({x}, {y}, {z})")]
    NonFiniteVertex {
        index: usize,
        x: f64,
        y: f64,
        z: f64,
    },
    #[error(
        "triangle {triangle} refers to vertex {vertex} but the mesh has only {vertex_count} \
         vertices"
    )]
    IndexOutOfRange {
        triangle: usize,
        vertex: u32,
        vertex_count: usize,
    },
    #[error(
        "the mesh is degenerate: its bounding box is {x_m:.4} × {y_m:.4} × {z_m:.4} m, \
         zero along two axes (a point or a line, no surface)"
    )]
    ZeroExtent { x_m: f64, y_m: f64, z_m: f64 },
    #[error("the mesh is degenerate: all {triangles} triangles have (near) zero area")]
    NoArea { triangles: usize },
}

impl TriangleMesh {
    /// Refuses a mesh no later stage can use and describes the topology of one it accepts.
    pub fn check(&self) -> Result<MeshTopology, MeshProblem> {
        if self.triangles.is_empty() {
            return Err(MeshProblem::Empty);
        }
        if let Some((index, p)) = self
            .vertices_m
            .iter()
            .enumerate()
            .find(|(_, p)| !p.coords.iter().all(|c| c.is_finite()))
        {
            return Err(MeshProblem::NonFiniteVertex {
                index,
                x: p.x,
                y: p.y,
                z: p.z,
            });
        }
        let vertex_count = self.vertices_m.len();
        for (triangle, indices) in self.triangles.iter().enumerate() {
            if let Some(&vertex) = indices.iter().find(|&&i| i as usize >= vertex_count) {
                return Err(MeshProblem::IndexOutOfRange {
                    triangle,
                    vertex,
                    vertex_count,
                });
            }
        }
        let (min_m, max_m) = self.aabb();
        let size_m = max_m - min_m;
        let largest_m = size_m.max();
        let zero_axes = size_m
            .iter()
            .filter(|&&s| s <= largest_m * FLAT_EXTENT_FRACTION)
            .count();
        if zero_axes >= 2 {
            return Err(MeshProblem::ZeroExtent {
                x_m: size_m.x,
                y_m: size_m.y,
                z_m: size_m.z,
            });
        }
        let min_area_m2 = self.degenerate_area_m2();
        let degenerate_triangles = self
            .triangles
            .iter()
            .filter(|t| self.is_degenerate(t, min_area_m2))
            .count();
        if degenerate_triangles == self.triangles.len() {
            return Err(MeshProblem::NoArea {
                triangles: degenerate_triangles,
            });
        }
        let (closed, manifold) = self.edge_topology();
        Ok(MeshTopology {
            closed,
            manifold,
            degenerate_triangles,
        })
    }

    /// Merges vertices closer than `tolerance_m` and drops the triangles that collapse.
    ///
    /// STL stores every triangle's corners separately, so its topology (closed, manifold,
    /// neighbours) only exists after welding. Vertices are bucketed in a hash grid of cell
    /// `tolerance_m`, so each looks only at its 27 neighbouring cells. A triangle is dropped
    /// only when two of its corners became one vertex: a sliver with three distinct corners
    /// stays, since removing it would open a hole in an otherwise closed surface. Vertices no
    /// triangle uses are dropped; non-finite ones are kept apart so `check` still sees them.
    /// A `tolerance_m` that is not positive merges only identical vertices.
    pub fn welded(&self, tolerance_m: f64) -> Self {
        let mut welder = Welder::new(tolerance_m);
        let mut new_index_of_old: Vec<Option<u32>> = vec![None; self.vertices_m.len()];
        let mut vertices_m: Vec<Point3<f64>> = Vec::new();
        let mut triangles = Vec::with_capacity(self.triangles.len());
        for t in &self.triangles {
            let mut welded_triangle = [0u32; 3];
            let mut in_range = true;
            for (corner, &old) in welded_triangle.iter_mut().zip(t) {
                let Some(slot) = new_index_of_old.get_mut(old as usize) else {
                    in_range = false;
                    break;
                };
                *corner = match *slot {
                    Some(new) => new,
                    None => {
                        let new = welder.index_of(self.vertices_m[old as usize], &mut vertices_m);
                        *slot = Some(new);
                        new
                    }
                };
            }
            let [a, b, c] = welded_triangle;
            // An out-of-range triangle cannot be welded; keeping it as it was would point
            // into the new vertex list, so it is left out (`check` on the input reports it).
            if in_range && a != b && b != c && a != c {
                triangles.push(welded_triangle);
            }
        }
        Self {
            vertices_m,
            triangles,
        }
    }

    /// Axis-aligned bounding box (min, max) in the mesh frame; the origin twice when empty.
    pub fn aabb(&self) -> (Point3<f64>, Point3<f64>) {
        let mut finite = self
            .vertices_m
            .iter()
            .filter(|p| p.coords.iter().all(|c| c.is_finite()));
        let Some(first) = finite.next() else {
            return (Point3::origin(), Point3::origin());
        };
        finite.fold((*first, *first), |(min_m, max_m), p| {
            (min_m.inf(p), max_m.sup(p))
        })
    }

    /// Largest side of the bounding box.
    pub fn max_extent_m(&self) -> f64 {
        let (min_m, max_m) = self.aabb();
        (max_m - min_m).max()
    }

    /// Total surface area.
    pub fn area_m2(&self) -> f64 {
        self.triangles
            .iter()
            .filter_map(|t| self.corners(t))
            .map(|[a, b, c]| 0.5 * (b - a).cross(&(c - a)).norm())
            .sum()
    }

    /// Enclosed volume of a closed, consistently oriented mesh; `None` for any other mesh,
    /// whose signed volume would depend on where the holes are.
    pub fn volume_m3(&self) -> Option<f64> {
        let (closed, manifold) = self.edge_topology();
        (closed && manifold).then(|| self.signed_volume_m3().abs())
    }

    /// Centre of mass of a solid of uniform density when the mesh is watertight with a
    /// volume, else the area-weighted centroid of its surface (a shell), else the mean of
    /// its vertices (the origin when it has none).
    pub fn center_of_mass(&self) -> Point3<f64> {
        let reference = self.reference_point();
        if let Some(volume_m3) = self.volume_m3() {
            if volume_m3 > 0.0 {
                // Sum of tetrahedra (reference, a, b, c), each weighted by its signed volume.
                let mut moment = Vector3::zeros();
                let mut signed_m3 = 0.0;
                for [a, b, c] in self.triangles.iter().filter_map(|t| self.corners(t)) {
                    let (a, b, c) = (a - reference, b - reference, c - reference);
                    let v = a.dot(&b.cross(&c)) / 6.0;
                    moment += (a + b + c) * (v / 4.0);
                    signed_m3 += v;
                }
                if signed_m3 != 0.0 {
                    return reference + moment / signed_m3;
                }
            }
        }
        let mut moment = Vector3::zeros();
        let mut area_m2 = 0.0;
        for [a, b, c] in self.triangles.iter().filter_map(|t| self.corners(t)) {
            let area = 0.5 * (b - a).cross(&(c - a)).norm();
            moment += ((a - reference) + (b - reference) + (c - reference)) * (area / 3.0);
            area_m2 += area;
        }
        if area_m2 > 0.0 {
            return reference + moment / area_m2;
        }
        reference
    }

    /// Every vertex moved by `isometry` (new frame from mesh frame).
    pub fn transformed(&self, isometry: &Isometry3<f64>) -> Self {
        Self {
            vertices_m: self.vertices_m.iter().map(|p| isometry * p).collect(),
            triangles: self.triangles.clone(),
        }
    }

    /// Uniformly scaled about the origin. A negative factor mirrors the mesh, so the winding
    /// is flipped to keep triangles counter-clockwise from outside.
    pub fn scaled(&self, factor: f64) -> Self {
        let scaled = Self {
            vertices_m: self.vertices_m.iter().map(|p| p * factor).collect(),
            triangles: self.triangles.clone(),
        };
        if factor < 0.0 {
            scaled.flipped()
        } else {
            scaled
        }
    }

    /// Translated so that [`Self::center_of_mass`] is at the origin.
    pub fn recentered(&self) -> Self {
        let offset = -self.center_of_mass().coords;
        Self {
            vertices_m: self.vertices_m.iter().map(|p| p + offset).collect(),
            triangles: self.triangles.clone(),
        }
    }

    /// A watertight mesh wound inside-out (negative signed volume) gets every triangle
    /// flipped; any other mesh is returned as it is, having no inside to point away from.
    pub fn oriented_outward(self) -> Self {
        let (closed, manifold) = self.edge_topology();
        if closed && manifold && self.signed_volume_m3() < 0.0 {
            self.flipped()
        } else {
            self
        }
    }

    /// Vertices of the convex hull, for physics shapes and footprints. When no hull exists
    /// (fewer than three distinct points, all collinear) the distinct finite vertices are
    /// returned, which is still the smallest set spanning the same convex set's support.
    pub fn convex_hull_points(&self) -> Vec<Point3<f64>> {
        let referenced = self.referenced_finite_vertices();
        match try_convex_hull(&referenced) {
            Ok((hull_vertices, hull_triangles)) => {
                let mut used = vec![false; hull_vertices.len()];
                for &i in hull_triangles.iter().flatten() {
                    if let Some(u) = used.get_mut(i as usize) {
                        *u = true;
                    }
                }
                hull_vertices
                    .into_iter()
                    .zip(used)
                    .filter_map(|(p, u)| u.then_some(p))
                    .collect()
            }
            Err(_) => referenced,
        }
    }

    /// The mesh as a parry `TriMesh` (with its BVH) for ray casts and point queries.
    ///
    /// A watertight mesh is flagged `ORIENTED`, which makes parry compute vertex and edge
    /// pseudo-normals, so `contains_local_point` and `project_local_point_and_get_location`
    /// tell inside from outside (plain `project_local_point` ignores them). Pseudo-normals are
    /// found from shared indices, so weld first ([`Self::welded`]) a mesh read from STL.
    pub fn to_parry(&self) -> Result<TriMesh, MeshProblem> {
        let topology = self.check()?;
        let flags = if topology.watertight() {
            TriMeshFlags::ORIENTED
        } else {
            TriMeshFlags::empty()
        };
        TriMesh::with_flags(self.vertices_m.clone(), self.triangles.clone(), flags)
            .map_err(|_| MeshProblem::Empty)
    }

    /// Unit normal per vertex: the area-weighted mean of the normals of the triangles that
    /// use it. A vertex in no triangle with area gets the zero vector.
    pub fn vertex_normals(&self) -> Vec<Vector3<f64>> {
        let mut normals = vec![Vector3::zeros(); self.vertices_m.len()];
        for t in &self.triangles {
            let Some([a, b, c]) = self.corners(t) else {
                continue;
            };
            // The cross product's length is twice the area: the weight comes for free.
            let weighted = (b - a).cross(&(c - a));
            for &i in t {
                normals[i as usize] += weighted;
            }
        }
        for n in &mut normals {
            *n = n.try_normalize(0.0).unwrap_or_else(Vector3::zeros);
        }
        normals
    }

    /// The three corners of a triangle, or `None` when an index is out of range.
    fn corners(&self, t: &[u32; 3]) -> Option<[Point3<f64>; 3]> {
        Some([
            *self.vertices_m.get(t[0] as usize)?,
            *self.vertices_m.get(t[1] as usize)?,
            *self.vertices_m.get(t[2] as usize)?,
        ])
    }

    fn degenerate_area_m2(&self) -> f64 {
        let (min_m, max_m) = self.aabb();
        DEGENERATE_AREA_FRACTION * (max_m - min_m).norm_squared()
    }

    fn is_degenerate(&self, t: &[u32; 3], min_area_m2: f64) -> bool {
        if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
            return true;
        }
        self.corners(t)
            .is_none_or(|[a, b, c]| 0.5 * (b - a).cross(&(c - a)).norm() <= min_area_m2)
    }

    /// (closed, manifold) from counting how often each edge is walked in each direction.
    /// Triangles with a repeated index have no proper edges and are left out.
    fn edge_topology(&self) -> (bool, bool) {
        // Undirected edge (low, high) -> (walks low→high, walks high→low).
        let mut walks: HashMap<(u32, u32), (u32, u32)> =
            HashMap::with_capacity(self.triangles.len() * 3 / 2);
        for &[a, b, c] in &self.triangles {
            if a == b || b == c || a == c {
                continue;
            }
            for (from, to) in [(a, b), (b, c), (c, a)] {
                let entry = walks.entry((from.min(to), from.max(to))).or_insert((0, 0));
                if from < to {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        if walks.is_empty() {
            return (false, false);
        }
        let closed = walks.values().all(|&(up, down)| up + down == 2);
        let manifold = walks.values().all(|&(up, down)| up <= 1 && down <= 1);
        (closed, manifold)
    }

    /// Signed volume, positive when triangles wind counter-clockwise seen from outside.
    fn signed_volume_m3(&self) -> f64 {
        let reference = self.reference_point();
        self.triangles
            .iter()
            .filter_map(|t| self.corners(t))
            .map(|[a, b, c]| {
                let (a, b, c) = (a - reference, b - reference, c - reference);
                a.dot(&b.cross(&c)) / 6.0
            })
            .sum()
    }

    /// Centre of the bounding box: summing tetrahedra about a point near the mesh rather than
    /// the origin keeps round-off small for a mesh far from its frame's origin.
    fn reference_point(&self) -> Point3<f64> {
        let (min_m, max_m) = self.aabb();
        nalgebra::center(&min_m, &max_m)
    }

    fn flipped(self) -> Self {
        Self {
            vertices_m: self.vertices_m,
            triangles: self
                .triangles
                .into_iter()
                .map(|[a, b, c]| [a, c, b])
                .collect(),
        }
    }

    fn referenced_finite_vertices(&self) -> Vec<Point3<f64>> {
        let mut referenced = vec![false; self.vertices_m.len()];
        for &i in self.triangles.iter().flatten() {
            if let Some(r) = referenced.get_mut(i as usize) {
                *r = true;
            }
        }
        self.vertices_m
            .iter()
            .zip(referenced)
            .filter(|(p, r)| *r && p.coords.iter().all(|c| c.is_finite()))
            .map(|(p, _)| *p)
            .collect()
    }
}

/// Hash-grid vertex merging for [`TriangleMesh::welded`].
struct Welder {
    tolerance_m: f64,
    /// Grid cell -> indices of the welded vertices in it.
    cells: HashMap<[i64; 3], Vec<u32>>,
    /// Used instead of the grid when the tolerance is not positive: exact bit patterns.
    exact: HashMap<[u64; 3], u32>,
}

impl Welder {
    fn new(tolerance_m: f64) -> Self {
        Self {
            tolerance_m: if tolerance_m > 0.0 && tolerance_m.is_finite() {
                tolerance_m
            } else {
                0.0
            },
            cells: HashMap::new(),
            exact: HashMap::new(),
        }
    }

    /// The welded index for `p`, appending it to `vertices_m` when no vertex is near.
    fn index_of(&mut self, p: Point3<f64>, vertices_m: &mut Vec<Point3<f64>>) -> u32 {
        let next = vertices_m.len() as u32;
        let finite = p.coords.iter().all(|c| c.is_finite());
        if !finite {
            vertices_m.push(p);
            return next;
        }
        if self.tolerance_m == 0.0 {
            // +0.0 and -0.0 are the same point.
            let key = [p.x + 0.0, p.y + 0.0, p.z + 0.0].map(f64::to_bits);
            let index = *self.exact.entry(key).or_insert(next);
            if index == next {
                vertices_m.push(p);
            }
            return index;
        }
        // `as` saturates, so a huge coordinate lands in an edge cell instead of overflowing.
        let cell = [p.x, p.y, p.z].map(|c| (c / self.tolerance_m).floor() as i64);
        let tolerance_squared_m2 = self.tolerance_m * self.tolerance_m;
        for dx in -1..=1i64 {
            for dy in -1..=1i64 {
                for dz in -1..=1i64 {
                    let neighbour = [
                        cell[0].saturating_add(dx),
                        cell[1].saturating_add(dy),
                        cell[2].saturating_add(dz),
                    ];
                    let Some(candidates) = self.cells.get(&neighbour) else {
                        continue;
                    };
                    for &i in candidates {
                        if (vertices_m[i as usize] - p).norm_squared() <= tolerance_squared_m2 {
                            return i;
                        }
                    }
                }
            }
        }
        self.cells.entry(cell).or_default().push(next);
        vertices_m.push(p);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parry3d_f64::query::{PointQuery, PointQueryWithLocation, Ray, RayCast};

    /// Axis-aligned cube from `min` to `min + side`, eight shared vertices, outward winding.
    fn cube(min: [f64; 3], side_m: f64) -> TriangleMesh {
        let mut vertices_m = Vec::new();
        for i in 0..8u32 {
            vertices_m.push(Point3::new(
                min[0] + side_m * f64::from(i & 1),
                min[1] + side_m * f64::from((i >> 1) & 1),
                min[2] + side_m * f64::from((i >> 2) & 1),
            ));
        }
        let triangles = vec![
            [0, 2, 1],
            [1, 2, 3], // z = min
            [4, 5, 6],
            [5, 7, 6], // z = max
            [0, 1, 4],
            [1, 5, 4], // y = min
            [2, 6, 3],
            [3, 6, 7], // y = max
            [0, 4, 2],
            [2, 4, 6], // x = min
            [1, 3, 5],
            [3, 7, 5], // x = max
        ];
        TriangleMesh {
            vertices_m,
            triangles,
        }
    }

    /// The cube with every triangle's corners stored separately, as STL does.
    fn unshared(mesh: &TriangleMesh) -> TriangleMesh {
        let mut vertices_m = Vec::new();
        let mut triangles = Vec::new();
        for t in &mesh.triangles {
            let base = vertices_m.len() as u32;
            vertices_m.extend(t.iter().map(|&i| mesh.vertices_m[i as usize]));
            triangles.push([base, base + 1, base + 2]);
        }
        TriangleMesh {
            vertices_m,
            triangles,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn closed_cube_volume_area_and_centre_of_mass() {
        let mesh = cube([1.0, 2.0, 3.0], 0.5);
        let topology = mesh.check().unwrap();
        assert!(topology.closed && topology.manifold);
        assert_eq!(topology.degenerate_triangles, 0);
        assert!(close(mesh.volume_m3().unwrap(), 0.125));
        assert!(close(mesh.area_m2(), 1.5));
        assert!(close(mesh.max_extent_m(), 0.5));
        let com = mesh.center_of_mass();
        assert!((com - Point3::new(1.25, 2.25, 3.25)).norm() < 1e-9);
        assert!(mesh.recentered().center_of_mass().coords.norm() < 1e-9);
    }

    #[test]
    fn centre_of_mass_is_the_volume_centroid_not_the_vertex_mean() {
        // A tetrahedron with many extra vertices on one face would drag a vertex mean; the
        // volume centroid of a tetrahedron is the mean of its four corners.
        let mesh = TriangleMesh {
            vertices_m: vec![
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 0.0, 0.0),
                Point3::new(0.0, 1.0, 0.0),
                Point3::new(0.0, 0.0, 1.0),
            ],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        };
        assert!(mesh.check().unwrap().watertight());
        assert!(close(mesh.volume_m3().unwrap(), 1.0 / 6.0));
        assert!((mesh.center_of_mass() - Point3::new(0.25, 0.25, 0.25)).norm() < 1e-9);
    }

    #[test]
    fn open_cube_is_accepted_as_open_with_its_surface_centroid() {
        let mut mesh = cube([0.0; 3], 1.0);
        mesh.triangles.retain(|t| !t.iter().all(|&i| i >= 4)); // remove the z = max face
        let topology = mesh.check().unwrap();
        assert!(!topology.closed);
        assert!(topology.manifold);
        assert_eq!(mesh.volume_m3(), None);
        // Five unit faces: the top is missing, so the centroid sinks to z = 2/5.
        assert!((mesh.center_of_mass() - Point3::new(0.5, 0.5, 0.4)).norm() < 1e-9);
    }

    #[test]
    fn refuses_empty_non_finite_out_of_range_and_degenerate() {
        let empty = TriangleMesh {
            vertices_m: vec![Point3::origin()],
            triangles: vec![],
        };
        assert_eq!(empty.check(), Err(MeshProblem::Empty));

        let mut nan = cube([0.0; 3], 1.0);
        nan.vertices_m[5].y = f64::NAN;
        let problem = nan.check().unwrap_err();
        assert!(matches!(
            problem,
            MeshProblem::NonFiniteVertex { index: 5, .. }
        ));
        assert!(problem.to_string().contains("vertex 5"));

        let mut out_of_range = cube([0.0; 3], 1.0);
        out_of_range.triangles[3][1] = 8;
        assert_eq!(
            out_of_range.check(),
            Err(MeshProblem::IndexOutOfRange {
                triangle: 3,
                vertex: 8,
                vertex_count: 8
            })
        );

        let line = TriangleMesh {
            vertices_m: vec![
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 0.0, 0.0),
                Point3::new(2.0, 0.0, 0.0),
            ],
            triangles: vec![[0, 1, 2]],
        };
        assert!(matches!(line.check(), Err(MeshProblem::ZeroExtent { .. })));

        let slivers = TriangleMesh {
            vertices_m: vec![
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 0.0, 0.0),
                Point3::new(0.0, 1.0, 0.0),
                Point3::new(0.0, 0.0, 1.0),
            ],
            triangles: vec![[0, 0, 1], [2, 3, 3]],
        };
        assert_eq!(slivers.check(), Err(MeshProblem::NoArea { triangles: 2 }));
    }

    #[test]
    fn welding_an_stl_cube_gives_eight_vertices_and_a_closed_manifold() {
        let soup = unshared(&cube([0.0; 3], 0.05));
        assert_eq!(soup.vertices_m.len(), 36);
        assert!(!soup.check().unwrap().closed);
        let welded = soup.welded(1e-9);
        assert_eq!(welded.vertices_m.len(), 8);
        assert_eq!(welded.triangles.len(), 12);
        let topology = welded.check().unwrap();
        assert!(topology.closed && topology.manifold);
    }

    #[test]
    fn welding_merges_within_tolerance_and_drops_collapsed_triangles() {
        let mesh = TriangleMesh {
            vertices_m: vec![
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 0.0, 0.0),
                Point3::new(0.0, 1.0, 0.0),
                Point3::new(1.0 + 1e-7, 0.0, 0.0),
                Point3::new(1.0, 1.0, 0.0),
            ],
            // The second triangle collapses once vertices 1 and 3 merge.
            triangles: vec![[0, 1, 2], [1, 3, 4], [3, 4, 2]],
        };
        let welded = mesh.welded(1e-6);
        assert_eq!(welded.vertices_m.len(), 4);
        assert_eq!(welded.triangles, vec![[0, 1, 2], [1, 3, 2]]);
        // Exact welding keeps them apart.
        assert_eq!(mesh.welded(0.0).vertices_m.len(), 5);
    }

    #[test]
    fn inside_out_cube_is_turned_outward() {
        let mesh = cube([0.0; 3], 1.0);
        let inside_out = mesh.clone().scaled(1.0).flipped();
        assert!(inside_out.signed_volume_m3() < 0.0);
        let fixed = inside_out.oriented_outward();
        assert!(close(fixed.signed_volume_m3(), 1.0));
        assert_eq!(fixed, mesh);
        // Mirroring keeps the winding outward.
        assert!(close(mesh.scaled(-2.0).signed_volume_m3(), 8.0));
    }

    #[test]
    fn transform_scale_and_normals() {
        let mesh = cube([0.0; 3], 1.0).recentered();
        let moved = mesh.transformed(&Isometry3::translation(0.0, 0.0, 3.0));
        assert!((moved.center_of_mass() - Point3::new(0.0, 0.0, 3.0)).norm() < 1e-9);
        assert!(close(mesh.scaled(0.1).max_extent_m(), 0.1));
        for (normal, vertex) in mesh.vertex_normals().iter().zip(&mesh.vertices_m) {
            // Each corner's normal points away from the centre.
            assert!(close(normal.norm(), 1.0));
            // Each face is split into two triangles, so a corner's weights differ per face:
            // the normal leans towards the diagonal without lying on it.
            assert!(normal.dot(&vertex.coords.normalize()) > 0.9);
        }
    }

    #[test]
    fn convex_hull_of_a_cube_is_its_corners() {
        let mut mesh = cube([0.0; 3], 1.0);
        // An extra vertex inside the cube, used by a triangle, is not on the hull.
        mesh.vertices_m.push(Point3::new(0.5, 0.5, 0.5));
        mesh.triangles.push([0, 1, 8]);
        let hull = mesh.convex_hull_points();
        assert_eq!(hull.len(), 8);
        assert!(hull
            .iter()
            .all(|p| p.coords.iter().all(|&c| c == 0.0 || c == 1.0)));
    }

    #[test]
    fn parry_ray_cast_hits_the_cube_face_and_knows_inside() {
        let mesh = cube([-0.025; 3], 0.05);
        let trimesh = mesh.to_parry().unwrap();
        let ray = Ray::new(Point3::new(0.0, 0.0, 1.0), Vector3::new(0.0, 0.0, -1.0));
        let distance_m = trimesh.cast_local_ray(&ray, 10.0, true).unwrap();
        assert!(close(distance_m, 1.0 - 0.025));
        let off = Ray::new(Point3::new(0.1, 0.0, 1.0), Vector3::new(0.0, 0.0, -1.0));
        assert_eq!(trimesh.cast_local_ray(&off, 10.0, true), None);
        // A point 5 mm inside, nearest to the x = max face, and one outside.
        assert!(trimesh.contains_local_point(&Point3::new(0.02, 0.0, 0.0)));
        assert!(!trimesh.contains_local_point(&Point3::new(0.03, 0.0, 0.0)));
        let (inside, _) = trimesh.project_local_point_and_get_location(&Point3::origin(), false);
        assert!(inside.is_inside);
    }

    #[test]
    fn unchecked_meshes_do_not_panic() {
        let bad = TriangleMesh {
            vertices_m: vec![
                Point3::new(f64::NAN, 0.0, 0.0),
                Point3::new(1e300, 0.0, 0.0),
            ],
            triangles: vec![[0, 1, 7]],
        };
        let _ = bad.area_m2();
        let _ = bad.volume_m3();
        let _ = bad.center_of_mass();
        let _ = bad.vertex_normals();
        let _ = bad.convex_hull_points();
        let _ = bad.welded(1e-9);
        let _ = bad.welded(1e-300);
        let _ = bad.clone().oriented_outward();
        assert!(bad.to_parry().is_err());
    }
}
