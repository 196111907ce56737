//! Ray casting against the generator's solids: the analytic primitives (box, cylinder,
//! prism) exactly, triangle meshes through parry's bounding-volume hierarchy.

use std::sync::Arc;

use nalgebra::{Isometry3, Matrix3, Point3, Vector3};
use parry3d_f64::query::{PointQuery, RayCast};
use serde::{Deserialize, Serialize};

use super::families::ShapeFamily;
use super::mesh::TriangleMesh;

/// A ray `origin + t * direction`, `direction` of unit length, `t` in metres.
#[derive(Clone, Copy, Debug)]
pub struct Ray {
    pub origin: Point3<f64>,
    pub direction: Vector3<f64>,
}

impl Ray {
    pub fn new(origin: Point3<f64>, direction: Vector3<f64>) -> Self {
        Self {
            origin,
            direction: direction.normalize(),
        }
    }

    pub fn at(&self, t: f64) -> Point3<f64> {
        self.origin + self.direction * t
    }
}

/// Where a ray meets a surface: distance along the ray and the outward unit normal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub t: f64,
    pub normal: Vector3<f64>,
}

/// The object shapes of the bin-picking world, in their own frame (origin at the centre).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Cuboid with half extents along x, y, z.
    Box { half_extents_m: [f64; 3] },
    /// Axis along z.
    Cylinder { radius_m: f64, half_height_m: f64 },
    /// Isosceles triangle in the x-z plane (base `base_m` at z = -height/2, apex at
    /// z = +height/2), extruded along y by `length_m`.
    Prism {
        base_m: f64,
        height_m: f64,
        length_m: f64,
    },
}

/// Intersections closer than this are ignored (self-hits of rays leaving a surface).
pub const EPSILON_M: f64 = 1e-9;

impl Shape {
    /// Nearest intersection with `ray` given in the shape's frame, `t` in (EPSILON_M, t_max).
    pub fn intersect_local(&self, ray: &Ray, t_max: f64) -> Option<Hit> {
        match *self {
            Shape::Box { half_extents_m: h } => intersect_box(h, ray, t_max),
            Shape::Prism {
                base_m,
                height_m,
                length_m,
            } => intersect_convex(&prism_planes(base_m, height_m, length_m), ray, t_max),
            Shape::Cylinder {
                radius_m,
                half_height_m,
            } => intersect_cylinder(radius_m, half_height_m, ray, t_max),
        }
    }

    /// Points whose convex hull contains the shape (exact corners for the polyhedra, a
    /// circumscribed 24-gon for the cylinder), for bounding boxes and footprints.
    pub fn hull_points(&self) -> Vec<Point3<f64>> {
        match *self {
            Shape::Box { half_extents_m: h } => {
                let mut points = Vec::with_capacity(8);
                for sx in [-1.0, 1.0] {
                    for sy in [-1.0, 1.0] {
                        for sz in [-1.0, 1.0] {
                            points.push(Point3::new(sx * h[0], sy * h[1], sz * h[2]));
                        }
                    }
                }
                points
            }
            Shape::Prism {
                base_m,
                height_m,
                length_m,
            } => {
                let (b, h, l) = (base_m / 2.0, height_m / 2.0, length_m / 2.0);
                [-l, l]
                    .iter()
                    .flat_map(|&y| {
                        [
                            Point3::new(-b, y, -h),
                            Point3::new(b, y, -h),
                            Point3::new(0.0, y, h),
                        ]
                    })
                    .collect()
            }
            Shape::Cylinder {
                radius_m,
                half_height_m,
            } => {
                let n = 24;
                // Circumscribed polygon: vertices at r / cos(pi / n).
                let r = radius_m / (std::f64::consts::PI / n as f64).cos();
                (0..n)
                    .flat_map(|i| {
                        let a = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
                        [-half_height_m, half_height_m]
                            .map(|z| Point3::new(r * a.cos(), r * a.sin(), z))
                    })
                    .collect()
            }
        }
    }

    /// Centre of mass for uniform density: the origin for all shapes but the prism, whose
    /// centroid is a third of the height above its base.
    pub fn centroid_local(&self) -> Point3<f64> {
        match *self {
            Shape::Prism { height_m, .. } => {
                Point3::new(0.0, 0.0, -height_m / 2.0 + height_m / 3.0)
            }
            _ => Point3::origin(),
        }
    }

    /// Zero on the surface, negative inside, positive outside (exact on the surface; a lower
    /// bound of the distance elsewhere, which is all the label checks need).
    pub fn signed_distance_local(&self, p: &Point3<f64>) -> f64 {
        let max_plane = |planes: &[(Vector3<f64>, f64)]| {
            planes
                .iter()
                .map(|(n, d)| n.dot(&p.coords) - d)
                .fold(f64::NEG_INFINITY, f64::max)
        };
        match *self {
            Shape::Box { half_extents_m: h } => (p.x.abs() - h[0])
                .max(p.y.abs() - h[1])
                .max(p.z.abs() - h[2]),
            Shape::Cylinder {
                radius_m,
                half_height_m,
            } => (p.x.hypot(p.y) - radius_m).max(p.z.abs() - half_height_m),
            Shape::Prism {
                base_m,
                height_m,
                length_m,
            } => max_plane(&prism_planes(base_m, height_m, length_m)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Shape::Box { .. } => "box",
            Shape::Cylinder { .. } => "cylinder",
            Shape::Prism { .. } => "prism",
        }
    }
}

/// The five planes `n . p <= d` of the prism.
fn prism_planes(base_m: f64, height_m: f64, length_m: f64) -> [(Vector3<f64>, f64); 5] {
    let (b, h) = (base_m / 2.0, height_m / 2.0);
    // Slanted faces through (+-b, -h) and (0, h): normal (+-2h, 0, b) / |.|, offset from the
    // apex.
    let right = Vector3::new(2.0 * h, 0.0, b).normalize();
    let left = Vector3::new(-2.0 * h, 0.0, b).normalize();
    [
        (-Vector3::z(), h),
        (Vector3::y(), length_m / 2.0),
        (-Vector3::y(), length_m / 2.0),
        (right, right.z * h),
        (left, left.z * h),
    ]
}

/// Ray against the intersection of half-spaces `n . p <= d` (Cyrus-Beck clipping).
pub fn intersect_convex(planes: &[(Vector3<f64>, f64)], ray: &Ray, t_max: f64) -> Option<Hit> {
    let (mut t_enter, mut t_exit) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut enter_normal = Vector3::zeros();
    for (n, d) in planes {
        let denom = n.dot(&ray.direction);
        let dist = d - n.dot(&ray.origin.coords);
        if denom.abs() < 1e-15 {
            if dist < 0.0 {
                return None;
            }
            continue;
        }
        let t = dist / denom;
        if denom < 0.0 {
            if t > t_enter {
                t_enter = t;
                enter_normal = *n;
            }
        } else if t < t_exit {
            t_exit = t;
        }
        if t_enter > t_exit {
            return None;
        }
    }
    (t_enter > EPSILON_M && t_enter < t_max).then_some(Hit {
        t: t_enter,
        normal: enter_normal,
    })
}

/// Ray against the box |x| <= h[0], |y| <= h[1], |z| <= h[2] by slabs: the same planes and
/// arithmetic as `intersect_convex` on its six faces, without the loop over plane normals
/// (the bin's walls meet every primary and shadow ray).
fn intersect_box(h: [f64; 3], ray: &Ray, t_max: f64) -> Option<Hit> {
    let (mut t_enter, mut t_exit) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut enter_normal = Vector3::zeros();
    for axis in 0..3 {
        let (o, d) = (ray.origin[axis], ray.direction[axis]);
        if d.abs() < 1e-15 {
            if o.abs() > h[axis] {
                return None;
            }
            continue;
        }
        let (t_low, t_high) = ((-h[axis] - o) / d, (h[axis] - o) / d);
        let (near, far, sign) = if d > 0.0 {
            (t_low, t_high, -1.0)
        } else {
            (t_high, t_low, 1.0)
        };
        if near > t_enter {
            t_enter = near;
            enter_normal = Vector3::zeros();
            enter_normal[axis] = sign;
        }
        t_exit = t_exit.min(far);
        if t_enter > t_exit {
            return None;
        }
    }
    (t_enter > EPSILON_M && t_enter < t_max).then_some(Hit {
        t: t_enter,
        normal: enter_normal,
    })
}

fn intersect_cylinder(radius: f64, half_height: f64, ray: &Ray, t_max: f64) -> Option<Hit> {
    let (o, d) = (ray.origin, ray.direction);
    let mut best: Option<Hit> = None;
    let mut consider = |t: f64, normal: Vector3<f64>| {
        if t > EPSILON_M && t < t_max && best.is_none_or(|b| t < b.t) {
            best = Some(Hit { t, normal });
        }
    };
    // Side: (ox + t dx)^2 + (oy + t dy)^2 = r^2.
    let a = d.x * d.x + d.y * d.y;
    if a > 1e-15 {
        let b = 2.0 * (o.x * d.x + o.y * d.y);
        let c = o.x * o.x + o.y * o.y - radius * radius;
        let disc = b * b - 4.0 * a * c;
        if disc >= 0.0 {
            let root = disc.sqrt();
            for t in [(-b - root) / (2.0 * a), (-b + root) / (2.0 * a)] {
                let p = o + d * t;
                if p.z.abs() <= half_height {
                    consider(t, Vector3::new(p.x, p.y, 0.0) / radius);
                }
            }
        }
    }
    // Caps.
    if d.z.abs() > 1e-15 {
        for (z, n) in [(half_height, Vector3::z()), (-half_height, -Vector3::z())] {
            let t = (z - o.z) / d.z;
            let p = o + d * t;
            if p.x * p.x + p.y * p.y <= radius * radius {
                consider(t, n);
            }
        }
    }
    // Only a hit from outside counts (the normal faces the ray).
    best.filter(|h| h.normal.dot(&d) < 0.0)
}

/// A triangle mesh ready for queries: the mesh, its bounding-volume hierarchy (parry) and
/// the points whose convex hull contains it. Its frame has the centre of mass at the origin.
pub struct MeshSolid {
    pub family: ShapeFamily,
    /// The file it was read from (the `mesh` family).
    pub source: Option<String>,
    pub mesh: TriangleMesh,
    /// Every edge shared by exactly two triangles: inside and outside are defined.
    pub closed: bool,
    trimesh: parry3d_f64::shape::TriMesh,
    hull_points: Vec<Point3<f64>>,
}

impl std::fmt::Debug for MeshSolid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshSolid")
            .field("family", &self.family)
            .field("source", &self.source)
            .field("triangles", &self.mesh.triangles.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl MeshSolid {
    /// Builds the hierarchy; `None` when parry refuses the mesh (no triangles).
    pub fn new(
        family: ShapeFamily,
        source: Option<String>,
        mesh: TriangleMesh,
        closed: bool,
    ) -> Option<Self> {
        let trimesh =
            parry3d_f64::shape::TriMesh::new(mesh.vertices_m.clone(), mesh.triangles.clone())
                .ok()?;
        let (hull_points, _) = parry3d_f64::transformation::convex_hull(&mesh.vertices_m);
        let hull_points = if hull_points.len() >= 4 {
            hull_points
        } else {
            mesh.vertices_m.clone()
        };
        Some(Self {
            family,
            source,
            mesh,
            closed,
            trimesh,
            hull_points,
        })
    }

    /// The vertices of the mesh's convex hull (the shape physics collides with).
    pub fn hull_points(&self) -> &[Point3<f64>] {
        &self.hull_points
    }

    fn intersect_local(&self, ray: &Ray, t_max: f64) -> Option<Hit> {
        let parry_ray = parry3d_f64::query::Ray::new(ray.origin, ray.direction);
        let hit = self
            .trimesh
            .cast_local_ray_and_get_normal(&parry_ray, t_max, false)?;
        if hit.time_of_impact <= EPSILON_M {
            return None;
        }
        // Open meshes show both sides: the normal faces the viewer.
        let normal = if hit.normal.dot(&ray.direction) > 0.0 {
            -hit.normal
        } else {
            hit.normal
        };
        Some(Hit {
            t: hit.time_of_impact,
            normal,
        })
    }

    /// Distance to the surface, negative inside when the mesh is closed (unsigned otherwise).
    fn signed_distance_local(&self, p: &Point3<f64>) -> f64 {
        let projection = self.trimesh.project_local_point(p, false);
        let distance = (projection.point - p).norm();
        if self.closed && self.contains_local(p) {
            -distance
        } else {
            distance
        }
    }

    /// Inside a closed mesh: an odd number of crossings along a ray (parry's pseudo-normals
    /// need a consistently oriented mesh; parity does not).
    fn contains_local(&self, p: &Point3<f64>) -> bool {
        // An irrational-ish direction avoids grazing edges and vertices of axis-aligned meshes.
        let direction = Vector3::new(0.5773, 0.5774, 0.5775).normalize();
        let mut origin = *p;
        let mut crossings = 0;
        for _ in 0..256 {
            let ray = parry3d_f64::query::Ray::new(origin, direction);
            match self.trimesh.cast_local_ray(&ray, f64::MAX, false) {
                Some(t) => {
                    crossings += 1;
                    origin = ray.point_at(t + 1e-9);
                }
                None => break,
            }
        }
        crossings % 2 == 1
    }
}

/// What an object or a bin part is made of: an analytic primitive or a triangle mesh.
#[derive(Clone, Debug)]
pub enum Solid {
    Analytic(Shape),
    Mesh(Arc<MeshSolid>),
}

impl Solid {
    pub fn intersect_local(&self, ray: &Ray, t_max: f64) -> Option<Hit> {
        match self {
            Solid::Analytic(shape) => shape.intersect_local(ray, t_max),
            Solid::Mesh(mesh) => mesh.intersect_local(ray, t_max),
        }
    }

    /// Points whose convex hull contains the solid.
    pub fn hull_points(&self) -> Vec<Point3<f64>> {
        match self {
            Solid::Analytic(shape) => shape.hull_points(),
            Solid::Mesh(mesh) => mesh.hull_points.clone(),
        }
    }

    pub fn centroid_local(&self) -> Point3<f64> {
        match self {
            Solid::Analytic(shape) => shape.centroid_local(),
            Solid::Mesh(_) => Point3::origin(),
        }
    }

    /// Zero on the surface, negative inside (closed solids), positive outside.
    pub fn signed_distance_local(&self, p: &Point3<f64>) -> f64 {
        match self {
            Solid::Analytic(shape) => shape.signed_distance_local(p),
            Solid::Mesh(mesh) => mesh.signed_distance_local(p),
        }
    }

    /// The analytic shape, for labels; `None` for meshes.
    pub fn analytic(&self) -> Option<Shape> {
        match self {
            Solid::Analytic(shape) => Some(*shape),
            Solid::Mesh(_) => None,
        }
    }
}

/// A solid placed in the world.
#[derive(Clone, Debug)]
pub struct Placed {
    pub solid: Solid,
    pub world_from_local: Isometry3<f64>,
    /// The inverse as a matrix and offset: cheaper per ray than the quaternion.
    local_from_world_rotation: Matrix3<f64>,
    local_from_world_translation: Vector3<f64>,
    world_from_local_rotation: Matrix3<f64>,
    /// Centre and radius of a sphere around the solid (world), to cull rays cheaply.
    bounding_center: Point3<f64>,
    bounding_radius_m: f64,
}

impl Placed {
    pub fn new(solid: impl Into<Solid>, world_from_local: Isometry3<f64>) -> Self {
        let solid = solid.into();
        let inverse = world_from_local.inverse();
        let hull = solid.hull_points();
        let (lo, hi) = hull.iter().fold(
            (
                Point3::new(f64::INFINITY, f64::INFINITY, f64::INFINITY),
                Point3::new(f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY),
            ),
            |(lo, hi), p| (lo.inf(p), hi.sup(p)),
        );
        let center_local = nalgebra::center(&lo, &hi);
        let radius = hull
            .iter()
            .map(|p| (p - center_local).norm())
            .fold(0.0, f64::max);
        Self {
            solid,
            world_from_local,
            local_from_world_rotation: inverse.rotation.to_rotation_matrix().into_inner(),
            local_from_world_translation: inverse.translation.vector,
            world_from_local_rotation: world_from_local.rotation.to_rotation_matrix().into_inner(),
            bounding_center: world_from_local * center_local,
            bounding_radius_m: radius,
        }
    }

    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<Hit> {
        let r = &self.local_from_world_rotation;
        let local = Ray {
            origin: Point3::from(r * ray.origin.coords + self.local_from_world_translation),
            direction: r * ray.direction,
        };
        self.solid.intersect_local(&local, t_max).map(|h| Hit {
            t: h.t,
            normal: self.world_from_local_rotation * h.normal,
        })
    }

    /// Whether `ray` may meet the solid before `t_max` (its bounding sphere does).
    pub fn may_intersect(&self, ray: &Ray, t_max: f64) -> bool {
        let to_center = self.bounding_center - ray.origin;
        let along = to_center.dot(&ray.direction);
        let r2 = self.bounding_radius_m * self.bounding_radius_m;
        let d2 = to_center.norm_squared() - along * along;
        d2 <= r2 && along + self.bounding_radius_m > 0.0 && along - self.bounding_radius_m < t_max
    }

    /// A point given in the world, in the solid's own frame.
    pub fn to_local(&self, p: &Point3<f64>) -> Point3<f64> {
        Point3::from(self.local_from_world_rotation * p.coords + self.local_from_world_translation)
    }

    pub fn hull_points_world(&self) -> Vec<Point3<f64>> {
        self.solid
            .hull_points()
            .into_iter()
            .map(|p| self.world_from_local * p)
            .collect()
    }

    /// World axis-aligned bounds (min, max).
    pub fn aabb(&self) -> (Point3<f64>, Point3<f64>) {
        let points = self.hull_points_world();
        let mut lo = points[0];
        let mut hi = points[0];
        for p in &points[1..] {
            lo = lo.inf(p);
            hi = hi.sup(p);
        }
        (lo, hi)
    }
}

impl From<Shape> for Solid {
    fn from(shape: Shape) -> Self {
        Solid::Analytic(shape)
    }
}

impl From<Arc<MeshSolid>> for Solid {
    fn from(mesh: Arc<MeshSolid>) -> Self {
        Solid::Mesh(mesh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};

    #[test]
    fn ray_hits_a_box_face_where_analysis_says() {
        // A 0.2 x 0.1 x 0.06 box at (1, 0, 0.5), turned 90 degrees about z: seen from the
        // origin along +x the near face is its local -y face, 0.05 m before the centre.
        let placed = Placed::new(
            Shape::Box {
                half_extents_m: [0.1, 0.05, 0.03],
            },
            Isometry3::from_parts(
                Translation3::new(1.0, 0.0, 0.5),
                UnitQuaternion::from_axis_angle(&Vector3::z_axis(), std::f64::consts::FRAC_PI_2),
            ),
        );
        let ray = Ray::new(Point3::new(0.0, 0.0, 0.5), Vector3::x());
        let hit = placed.intersect(&ray, f64::INFINITY).unwrap();
        assert!((hit.t - 0.95).abs() < 1e-12, "{}", hit.t);
        assert!((hit.normal - (-Vector3::x())).norm() < 1e-12);
        // Above the box (z = 0.54 > 0.53) it misses.
        let above = Ray::new(Point3::new(0.0, 0.0, 0.54), Vector3::x());
        assert!(placed.intersect(&above, f64::INFINITY).is_none());
        // t_max cuts it off.
        assert!(placed.intersect(&ray, 0.9).is_none());
    }

    #[test]
    fn cylinder_side_and_cap() {
        let shape = Shape::Cylinder {
            radius_m: 0.05,
            half_height_m: 0.1,
        };
        let side = shape
            .intersect_local(&Ray::new(Point3::new(-1.0, 0.0, 0.0), Vector3::x()), 10.0)
            .unwrap();
        assert!((side.t - 0.95).abs() < 1e-12 && (side.normal + Vector3::x()).norm() < 1e-12);
        let cap = shape
            .intersect_local(&Ray::new(Point3::new(0.01, 0.0, 1.0), -Vector3::z()), 10.0)
            .unwrap();
        assert!((cap.t - 0.9).abs() < 1e-12 && (cap.normal - Vector3::z()).norm() < 1e-12);
        // Inside the cylinder nothing is hit from outside.
        assert!(shape
            .intersect_local(&Ray::new(Point3::origin(), Vector3::x()), 10.0)
            .is_none());
    }

    #[test]
    fn prism_slanted_face_normal_and_distance() {
        // Base 0.2, height 0.1: the right face rises from (0.1, -0.05) to (0, 0.05), slope 45
        // degrees, so its normal is (1, 0, 1) / sqrt 2.
        let shape = Shape::Prism {
            base_m: 0.2,
            height_m: 0.1,
            length_m: 0.3,
        };
        let hit = shape
            .intersect_local(&Ray::new(Point3::new(1.0, 0.0, 0.0), -Vector3::x()), 10.0)
            .unwrap();
        // At z = 0 the face is at x = 0.05.
        assert!((hit.t - 0.95).abs() < 1e-12, "{}", hit.t);
        let expected = Vector3::new(1.0, 0.0, 1.0).normalize();
        assert!((hit.normal - expected).norm() < 1e-12);
        assert_eq!(shape.hull_points().len(), 6);
    }

    #[test]
    fn box_slabs_agree_with_the_general_convex_clipper() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let h = [0.1, 0.05, 0.03];
        let planes = [
            (Vector3::x(), h[0]),
            (-Vector3::x(), h[0]),
            (Vector3::y(), h[1]),
            (-Vector3::y(), h[1]),
            (Vector3::z(), h[2]),
            (-Vector3::z(), h[2]),
        ];
        let mut hits = 0;
        for i in 0..20_000 {
            let origin = Point3::new(
                rng.gen_range(-0.3..0.3),
                rng.gen_range(-0.3..0.3),
                rng.gen_range(-0.3..0.3),
            );
            // Every tenth ray runs along an axis, to take the parallel branch.
            let direction = if i % 10 == 0 {
                let mut d = Vector3::zeros();
                d[i % 3] = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                d
            } else {
                Vector3::new(
                    rng.gen_range(-1.0..1.0),
                    rng.gen_range(-1.0..1.0),
                    rng.gen_range(-1.0..1.0),
                )
            };
            let ray = Ray::new(origin, direction);
            let (a, b) = (
                intersect_box(h, &ray, 0.4),
                intersect_convex(&planes, &ray, 0.4),
            );
            assert_eq!(a.is_some(), b.is_some(), "ray {i}");
            if let (Some(a), Some(b)) = (a, b) {
                assert!((a.t - b.t).abs() < 1e-12 && (a.normal - b.normal).norm() < 1e-12);
                hits += 1;
            }
        }
        assert!(hits > 300, "{hits} hits");
    }
}
