use std::sync::Arc;

use nalgebra::{Isometry3, Point2, Point3, Translation3, UnitQuaternion, Vector3};
use rand::Rng;

use super::config::{ObjectClasses, SceneConfig, ShapeKind};
use super::geometry::{Hit, Placed, Ray, Shape};
use super::texture::TexturedTarget;

/// Semantic class ids of the mask: background, bin, the object classes, boundary last.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassTable {
    pub names: Vec<String>,
    pub colors: Vec<[u8; 3]>,
}

pub const CLASS_BACKGROUND: u8 = 0;
pub const CLASS_BIN: u8 = 1;

impl ClassTable {
    pub fn new(classes: ObjectClasses) -> Self {
        let mut table: Vec<(&str, [u8; 3])> =
            vec![("background", [0, 0, 0]), ("bin", [40, 90, 200])];
        match classes {
            ObjectClasses::ByShape => table.extend([
                ("box", [230, 160, 30]),
                ("cylinder", [60, 200, 80]),
                ("prism", [200, 60, 200]),
            ]),
            ObjectClasses::Single => table.push(("object", [230, 160, 30])),
        }
        table.push(("boundary", [255, 255, 255]));
        Self {
            names: table.iter().map(|(n, _)| n.to_string()).collect(),
            colors: table.iter().map(|(_, c)| *c).collect(),
        }
    }

    pub fn boundary(&self) -> u8 {
        (self.names.len() - 1) as u8
    }

    fn object_class(&self, kind: ShapeKind, classes: ObjectClasses) -> u8 {
        match (classes, kind) {
            (ObjectClasses::Single, _) | (_, ShapeKind::Box) => 2,
            (_, ShapeKind::Cylinder) => 3,
            (_, ShapeKind::Prism) => 4,
        }
    }
}

/// One object resting in the bin.
#[derive(Clone, Debug)]
pub struct SceneObject {
    /// 1-based; 0 in the instance mask means "no object".
    pub instance_id: u16,
    pub kind: ShapeKind,
    pub class_id: u8,
    pub placed: Placed,
    /// Diffuse albedo, linear, 0..1.
    pub albedo: [f64; 3],
    /// Its top is a horizontal face other objects may rest on.
    pub flat_top: bool,
    pub top_z_m: f64,
    /// Convex hull of its projection on the floor plane.
    pub footprint: Vec<Point2<f64>>,
}

impl SceneObject {
    pub fn center_of_mass(&self) -> Point3<f64> {
        self.placed.world_from_local * self.placed.shape.centroid_local()
    }
}

/// A directional light.
#[derive(Clone, Copy, Debug)]
pub struct Light {
    /// Unit vector from the surface towards the light.
    pub to_light: Vector3<f64>,
    pub intensity: f64,
}

/// What a ray hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surface {
    Floor,
    Bin,
    /// Index into `Scene::objects`.
    Object(usize),
    /// Index into `Scene::targets`, with the texel colour.
    Target(usize, [u8; 3]),
}

#[derive(Clone, Copy, Debug)]
pub struct SceneHit {
    pub hit: Hit,
    pub surface: Surface,
}

/// A work cell: floor (z = 0), an open bin centred on the origin, objects in it, lights and
/// textured targets. The cell frame has z up.
#[derive(Clone, Debug)]
pub struct Scene {
    pub bin_parts: Vec<Placed>,
    /// Height of the bin's inner floor.
    pub bin_floor_z_m: f64,
    pub bin_inner_size_m: [f64; 2],
    pub bin_albedo: [f64; 3],
    pub floor_albedo: [f64; 3],
    pub objects: Vec<SceneObject>,
    pub lights: Vec<Light>,
    pub ambient: f64,
    pub specular: bool,
    pub targets: Vec<Arc<TexturedTarget>>,
    pub classes: ClassTable,
}

impl Scene {
    /// Samples a scene from `cfg`: objects dropped one by one at random positions and
    /// orientations, each resting on the bin floor or on the flat top of what it overlaps,
    /// never interpenetrating; one that finds no stable place in `placement_attempts` tries
    /// is left out.
    pub fn generate(
        cfg: &SceneConfig,
        targets: &[Arc<TexturedTarget>],
        rng: &mut impl Rng,
    ) -> Self {
        let bin = &cfg.bin;
        let [length, width] = bin.inner_size_m;
        let (wt, ft, wh) = (
            bin.wall_thickness_m,
            bin.floor_thickness_m,
            bin.wall_height_m,
        );
        let slab = |center: [f64; 3], half: [f64; 3]| {
            Placed::new(
                Shape::Box {
                    half_extents_m: half,
                },
                Isometry3::translation(center[0], center[1], center[2]),
            )
        };
        let bin_parts = vec![
            slab(
                [0.0, 0.0, ft / 2.0],
                [length / 2.0 + wt, width / 2.0 + wt, ft / 2.0],
            ),
            slab(
                [length / 2.0 + wt / 2.0, 0.0, wh / 2.0],
                [wt / 2.0, width / 2.0 + wt, wh / 2.0],
            ),
            slab(
                [-(length / 2.0 + wt / 2.0), 0.0, wh / 2.0],
                [wt / 2.0, width / 2.0 + wt, wh / 2.0],
            ),
            slab(
                [0.0, width / 2.0 + wt / 2.0, wh / 2.0],
                [length / 2.0, wt / 2.0, wh / 2.0],
            ),
            slab(
                [0.0, -(width / 2.0 + wt / 2.0), wh / 2.0],
                [length / 2.0, wt / 2.0, wh / 2.0],
            ),
        ];
        let classes = ClassTable::new(cfg.objects.classes);
        let count = rng.gen_range(cfg.objects.count[0]..=cfg.objects.count[1]);
        let mut objects: Vec<SceneObject> = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = cfg.objects.kinds[rng.gen_range(0..cfg.objects.kinds.len())];
            let (shape, upright, flat_top) = sample_shape(kind, cfg.objects.size_m, rng);
            let albedo = random_albedo(rng);
            for _ in 0..cfg.objects.placement_attempts {
                let yaw = UnitQuaternion::from_axis_angle(
                    &Vector3::z_axis(),
                    rng.gen_range(0.0..std::f64::consts::TAU),
                );
                let rotation = yaw * upright;
                let x = rng.gen_range(-length / 2.0..length / 2.0);
                let y = rng.gen_range(-width / 2.0..width / 2.0);
                let Some(object) = rest(shape, rotation, x, y, ft, [length, width], &objects)
                else {
                    continue;
                };
                let id = objects.len() as u16 + 1;
                objects.push(SceneObject {
                    instance_id: id,
                    kind,
                    class_id: classes.object_class(kind, cfg.objects.classes),
                    flat_top,
                    albedo,
                    ..object
                });
                break;
            }
        }
        let light_count = rng.gen_range(cfg.lighting.lights[0]..=cfg.lighting.lights[1]);
        let mut lights: Vec<Light> = (0..light_count)
            .map(|_| {
                let azimuth = rng.gen_range(0.0..std::f64::consts::TAU);
                let elevation = rng.gen_range(30f64..85.0).to_radians();
                Light {
                    to_light: Vector3::new(
                        elevation.cos() * azimuth.cos(),
                        elevation.cos() * azimuth.sin(),
                        elevation.sin(),
                    ),
                    intensity: rng.gen_range(cfg.lighting.intensity[0]..=cfg.lighting.intensity[1]),
                }
            })
            .collect();
        let ambient = rng.gen_range(cfg.lighting.ambient[0]..=cfg.lighting.ambient[1]);
        // Several lights would wash the image out: scale them so that a surface facing all of
        // them receives about unit irradiance, as a camera's auto-exposure would.
        let total: f64 = lights.iter().map(|l| l.intensity).sum();
        if total > 0.0 {
            let budget = (rng.gen_range(0.95..1.25) - ambient).max(0.1);
            lights
                .iter_mut()
                .for_each(|l| l.intensity *= budget / total);
        }
        let grey = rng.gen_range(0.45..0.65);
        let tint = |rng: &mut dyn rand::RngCore| grey * rng.gen_range(0.92..1.08);
        Self {
            bin_parts,
            bin_floor_z_m: ft,
            bin_inner_size_m: bin.inner_size_m,
            bin_albedo: bin.color.map(|c| c as f64 / 255.0),
            floor_albedo: [tint(rng), tint(rng), tint(rng)],
            objects,
            lights,
            ambient,
            specular: cfg.lighting.specular,
            targets: targets.to_vec(),
            classes,
        }
    }

    /// Nearest surface along `ray` before `t_max`. `objects` and `bin_parts` restrict the
    /// candidates (indices; `None`: all), for culling.
    pub fn cast_among(
        &self,
        ray: &Ray,
        t_max: f64,
        objects: Option<&[usize]>,
        bin_parts: Option<&[usize]>,
    ) -> Option<SceneHit> {
        let mut best: Option<SceneHit> = None;
        let mut limit = t_max;
        if ray.direction.z < -1e-12 {
            let t = -ray.origin.z / ray.direction.z;
            if t > 0.0 && t < limit {
                limit = t;
                best = Some(SceneHit {
                    hit: Hit {
                        t,
                        normal: Vector3::z(),
                    },
                    surface: Surface::Floor,
                });
            }
        }
        let try_part = |i: usize, best: &mut Option<SceneHit>, limit: &mut f64| {
            if let Some(hit) = self.bin_parts[i].intersect(ray, *limit) {
                *limit = hit.t;
                *best = Some(SceneHit {
                    hit,
                    surface: Surface::Bin,
                });
            }
        };
        match bin_parts {
            Some(ids) => ids.iter().for_each(|&i| try_part(i, &mut best, &mut limit)),
            None => (0..self.bin_parts.len()).for_each(|i| try_part(i, &mut best, &mut limit)),
        }
        let try_object = |i: usize, best: &mut Option<SceneHit>, limit: &mut f64| {
            if let Some(hit) = self.objects[i].placed.intersect(ray, *limit) {
                *limit = hit.t;
                *best = Some(SceneHit {
                    hit,
                    surface: Surface::Object(i),
                });
            }
        };
        match objects {
            Some(ids) => ids
                .iter()
                .for_each(|&i| try_object(i, &mut best, &mut limit)),
            None => (0..self.objects.len()).for_each(|i| try_object(i, &mut best, &mut limit)),
        }
        for (i, target) in self.targets.iter().enumerate() {
            if let Some((hit, colour)) = target.intersect(ray, limit) {
                limit = hit.t;
                best = Some(SceneHit {
                    hit,
                    surface: Surface::Target(i, colour),
                });
            }
        }
        best
    }

    pub fn cast(&self, ray: &Ray, t_max: f64) -> Option<SceneHit> {
        self.cast_among(ray, t_max, None, None)
    }
}

/// A random shape and a rotation that sets it on a stable face; whether that face's
/// opposite is a horizontal top.
fn sample_shape(
    kind: ShapeKind,
    size_m: [f64; 2],
    rng: &mut impl Rng,
) -> (Shape, UnitQuaternion<f64>, bool) {
    let mut size = || rng.gen_range(size_m[0]..=size_m[1]);
    let quarter = std::f64::consts::FRAC_PI_2;
    match kind {
        ShapeKind::Box => {
            let shape = Shape::Box {
                half_extents_m: [size() / 2.0, size() / 2.0, size() / 2.0],
            };
            let upright = match rng.gen_range(0..3) {
                0 => UnitQuaternion::identity(),
                1 => UnitQuaternion::from_axis_angle(&Vector3::x_axis(), quarter),
                _ => UnitQuaternion::from_axis_angle(&Vector3::y_axis(), quarter),
            };
            (shape, upright, true)
        }
        ShapeKind::Cylinder => {
            let shape = Shape::Cylinder {
                radius_m: size() / 2.0,
                half_height_m: size() / 2.0,
            };
            if rng.gen_bool(0.65) {
                (shape, UnitQuaternion::identity(), true)
            } else {
                (
                    shape,
                    UnitQuaternion::from_axis_angle(&Vector3::x_axis(), quarter),
                    false,
                )
            }
        }
        ShapeKind::Prism => {
            let shape = Shape::Prism {
                base_m: size(),
                height_m: size() * 0.8,
                length_m: size(),
            };
            if rng.gen_bool(0.5) {
                // On its rectangular base, ridge up.
                (shape, UnitQuaternion::identity(), false)
            } else {
                // On a triangular end, which leaves the other end as a flat top.
                (
                    shape,
                    UnitQuaternion::from_axis_angle(&Vector3::x_axis(), quarter),
                    true,
                )
            }
        }
    }
}

/// Where `shape` with `rotation` comes to rest when lowered at (x, y): on the bin floor or on
/// the highest flat top it overlaps, with its centre of mass over that top. `None` if it would
/// stick out of the bin or rest on something that cannot carry it.
fn rest(
    shape: Shape,
    rotation: UnitQuaternion<f64>,
    x: f64,
    y: f64,
    bin_floor_z: f64,
    inner_size: [f64; 2],
    objects: &[SceneObject],
) -> Option<SceneObject> {
    let at_origin = Placed::new(
        shape,
        Isometry3::from_parts(Translation3::identity(), rotation),
    );
    let points = at_origin.hull_points_world();
    let bottom = points.iter().map(|p| p.z).fold(f64::INFINITY, f64::min);
    let height = points.iter().map(|p| p.z).fold(f64::NEG_INFINITY, f64::max) - bottom;
    let footprint = convex_hull(
        points
            .iter()
            .map(|p| Point2::new(p.x + x, p.y + y))
            .collect(),
    );
    let margin = 0.002;
    if footprint.iter().any(|p| {
        p.x.abs() > inner_size[0] / 2.0 - margin || p.y.abs() > inner_size[1] / 2.0 - margin
    }) {
        return None;
    }
    let com_local = rotation * shape.centroid_local();
    let com_xy = Point2::new(x + com_local.x, y + com_local.y);
    let overlapping: Vec<&SceneObject> = objects
        .iter()
        .filter(|o| polygons_overlap(&o.footprint, &footprint))
        .collect();
    let support_z = match overlapping
        .iter()
        .max_by(|a, b| a.top_z_m.total_cmp(&b.top_z_m))
    {
        None => bin_floor_z,
        Some(highest) => {
            if overlapping.iter().any(|o| !o.flat_top)
                || !point_in_convex(&highest.footprint, &com_xy)
            {
                return None;
            }
            highest.top_z_m
        }
    };
    let z = support_z - bottom;
    Some(SceneObject {
        instance_id: 0,
        kind: ShapeKind::Box,
        class_id: 0,
        placed: Placed::new(
            shape,
            Isometry3::from_parts(Translation3::new(x, y, z), rotation),
        ),
        albedo: [0.0; 3],
        flat_top: false,
        top_z_m: support_z + height,
        footprint,
    })
}

fn random_albedo(rng: &mut impl Rng) -> [f64; 3] {
    let hue = rng.gen_range(0.0..6.0);
    let saturation = rng.gen_range(0.45..0.9);
    let value = rng.gen_range(0.5..0.95);
    let c = value * saturation;
    let x = c * (1.0 - ((hue % 2.0) - 1.0_f64).abs());
    let (r, g, b) = match hue as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = value - c;
    [r + m, g + m, b + m]
}

/// Andrew's monotone chain; counter-clockwise, no repeated end point.
pub fn convex_hull(mut points: Vec<Point2<f64>>) -> Vec<Point2<f64>> {
    points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    points.dedup_by(|a, b| (a.x - b.x).abs() < 1e-12 && (a.y - b.y).abs() < 1e-12);
    if points.len() < 3 {
        return points;
    }
    let cross = |o: &Point2<f64>, a: &Point2<f64>, b: &Point2<f64>| {
        (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
    };
    let mut hull: Vec<Point2<f64>> = Vec::with_capacity(points.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point2<f64>>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for p in iter {
            while hull.len() >= start + 2
                && cross(&hull[hull.len() - 2], &hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(*p);
        }
        hull.pop();
    }
    hull
}

/// Separating-axis test for two convex polygons (touching counts as overlapping).
pub fn polygons_overlap(a: &[Point2<f64>], b: &[Point2<f64>]) -> bool {
    for poly in [a, b] {
        for i in 0..poly.len() {
            let edge = poly[(i + 1) % poly.len()] - poly[i];
            let axis = nalgebra::Vector2::new(-edge.y, edge.x);
            let project = |p: &[Point2<f64>]| {
                p.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), q| {
                        let d = axis.dot(&q.coords);
                        (lo.min(d), hi.max(d))
                    })
            };
            let (a_lo, a_hi) = project(a);
            let (b_lo, b_hi) = project(b);
            if a_hi < b_lo || b_hi < a_lo {
                return false;
            }
        }
    }
    true
}

/// For a counter-clockwise convex polygon.
pub fn point_in_convex(poly: &[Point2<f64>], p: &Point2<f64>) -> bool {
    (0..poly.len()).all(|i| {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x) >= 0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_objects_rest_inside_the_bin_without_interpenetrating() {
        let cfg = SceneConfig {
            objects: super::super::config::ObjectsConfig {
                count: [12, 12],
                ..Default::default()
            },
            ..Default::default()
        };
        for seed in 0..20 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let scene = Scene::generate(&cfg, &[], &mut rng);
            assert!(!scene.objects.is_empty());
            for (i, o) in scene.objects.iter().enumerate() {
                let (lo, hi) = o.placed.aabb();
                assert!(
                    lo.z >= scene.bin_floor_z_m - 1e-9,
                    "seed {seed}: object {i} below the floor"
                );
                assert!(hi.x < 0.28 && lo.x > -0.28 && hi.y < 0.19 && lo.y > -0.19);
                // Points just inside this object (hull points pulled 10 % towards its
                // centre) lie outside every other object.
                let c = o.center_of_mass();
                let inner: Vec<Point3<f64>> = o
                    .placed
                    .hull_points_world()
                    .iter()
                    .map(|p| c + (p - c) * 0.9)
                    .chain([c])
                    .collect();
                for (j, other) in scene.objects.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    for p in &inner {
                        let local = other.placed.world_from_local.inverse() * p;
                        assert!(
                            !contains(&other.placed.shape, &local),
                            "seed {seed}: {i} inside {j}"
                        );
                    }
                }
            }
        }
    }

    fn contains(shape: &Shape, p: &Point3<f64>) -> bool {
        match *shape {
            Shape::Box { half_extents_m: h } => {
                p.x.abs() < h[0] && p.y.abs() < h[1] && p.z.abs() < h[2]
            }
            Shape::Cylinder {
                radius_m,
                half_height_m,
            } => p.x.hypot(p.y) < radius_m && p.z.abs() < half_height_m,
            Shape::Prism {
                base_m,
                height_m,
                length_m,
            } => {
                let h = height_m / 2.0;
                let half_width_at_z = base_m / 2.0 * (h - p.z) / height_m;
                p.y.abs() < length_m / 2.0 && p.z > -h && p.z < h && p.x.abs() < half_width_at_z
            }
        }
    }

    #[test]
    fn hull_overlap_and_containment() {
        let square = convex_hull(vec![
            Point2::new(0.0, 0.0),
            Point2::new(1.0, 0.0),
            Point2::new(1.0, 1.0),
            Point2::new(0.0, 1.0),
            Point2::new(0.5, 0.5),
        ]);
        assert_eq!(square.len(), 4);
        assert!(point_in_convex(&square, &Point2::new(0.5, 0.2)));
        assert!(!point_in_convex(&square, &Point2::new(1.5, 0.2)));
        let shifted: Vec<_> = square
            .iter()
            .map(|p| p + nalgebra::Vector2::new(0.9, 0.9))
            .collect();
        let far: Vec<_> = square
            .iter()
            .map(|p| p + nalgebra::Vector2::new(1.1, 0.0))
            .collect();
        assert!(polygons_overlap(&square, &shifted));
        assert!(!polygons_overlap(&square, &far));
    }
}
