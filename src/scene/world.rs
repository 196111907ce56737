//! The work cell of one scene: floor, bin, objects, lights and targets, sampled from the
//! scene config, and the ray caster that finds what a ray meets first.

use std::sync::Arc;

use nalgebra::{Isometry3, Point2, Point3, Translation3, UnitQuaternion, Vector3};
use rand::Rng;

use super::appearance::{Material, Photo};
use super::config::{ObjectClasses, Placement, SceneConfig, ShapeFamily, SurfaceConfig};
use super::families::procedural_mesh;
use super::geometry::{Hit, MeshSolid, Placed, Ray, Shape, Solid};
use super::physics::{settle_pile, BodyShape, PileError, PileSettings, StaticSlab};
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
    /// `ByShape`: box, cylinder and prism (always, so the first generator's tables stay),
    /// then every other family of `families` in `ShapeFamily::ALL` order.
    pub fn new(classes: ObjectClasses, families: &[ShapeFamily]) -> Self {
        let mut table: Vec<(String, [u8; 3])> = vec![
            ("background".into(), [0, 0, 0]),
            ("bin".into(), [40, 90, 200]),
        ];
        match classes {
            ObjectClasses::ByShape => {
                table.extend([
                    ("box".into(), [230, 160, 30]),
                    ("cylinder".into(), [60, 200, 80]),
                    ("prism".into(), [200, 60, 200]),
                ]);
                let palette = [
                    [230, 80, 60],
                    [80, 200, 220],
                    [240, 220, 60],
                    [150, 100, 230],
                    [120, 230, 140],
                    [230, 120, 180],
                    [170, 140, 90],
                    [90, 130, 250],
                    [250, 150, 110],
                ];
                for family in ShapeFamily::ALL.iter().filter(|f| {
                    families.contains(f)
                        && !matches!(
                            f,
                            ShapeFamily::Box | ShapeFamily::Cylinder | ShapeFamily::Prism
                        )
                }) {
                    let color = palette[(table.len() - 5) % palette.len()];
                    table.push((family.name().into(), color));
                }
            }
            ObjectClasses::Single => table.push(("object".into(), [230, 160, 30])),
        }
        table.push(("boundary".into(), [255, 255, 255]));
        Self {
            names: table.iter().map(|(n, _)| n.clone()).collect(),
            colors: table.iter().map(|(_, c)| *c).collect(),
        }
    }

    pub fn boundary(&self) -> u8 {
        (self.names.len() - 1) as u8
    }

    /// The class of an object of `family`.
    pub fn object_class(&self, family: ShapeFamily) -> u8 {
        self.names
            .iter()
            .position(|n| n == family.name())
            .or_else(|| self.names.iter().position(|n| n == "object"))
            .unwrap_or(2) as u8
    }
}

/// One object in the scene.
#[derive(Clone, Debug)]
pub struct SceneObject {
    /// 1-based; 0 in the instance mask means "no object".
    pub instance_id: u16,
    pub family: ShapeFamily,
    pub class_id: u8,
    pub placed: Placed,
    pub material: Material,
    /// Its top is a horizontal face other objects may rest on (lowered placement).
    pub flat_top: bool,
    pub top_z_m: f64,
    /// Convex hull of its projection on the floor plane.
    pub footprint: Vec<Point2<f64>>,
}

impl SceneObject {
    pub fn center_of_mass(&self) -> Point3<f64> {
        self.placed.world_from_local * self.placed.solid.centroid_local()
    }

    /// The mesh file an object of the `mesh` family was read from.
    pub fn source(&self) -> Option<&str> {
        match &self.placed.solid {
            Solid::Mesh(mesh) => mesh.source.as_deref(),
            Solid::Analytic(_) => None,
        }
    }
}

/// A directional light.
#[derive(Clone, Copy, Debug)]
pub struct Light {
    /// Unit vector from the surface towards the light.
    pub to_light: Vector3<f64>,
    pub intensity: f64,
    /// Linear RGB colour, each channel 0..1 (white: all 1).
    pub colour: [f64; 3],
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

/// What scenes are made of besides the config: loaded once, shared by every frame.
#[derive(Clone, Debug, Default)]
pub struct SceneAssets {
    pub targets: Vec<Arc<TexturedTarget>>,
    /// The mesh files of `objects.meshes`, in metres, centred at their centre of mass.
    pub meshes: Vec<Arc<MeshSolid>>,
    /// The photographs of every surface's `photos` entry, by entry.
    pub photos: std::collections::BTreeMap<std::path::PathBuf, Vec<Arc<Photo>>>,
}

impl SceneAssets {
    /// The photographs a surface config names.
    fn photos_of(&self, surface: &SurfaceConfig) -> Vec<Arc<Photo>> {
        surface
            .photos
            .iter()
            .filter_map(|entry| self.photos.get(entry))
            .flatten()
            .cloned()
            .collect()
    }
}

/// A work cell: floor (z = 0), an open bin around the origin, objects in it, lights and
/// textured targets. The cell frame has z up.
#[derive(Clone, Debug)]
pub struct Scene {
    pub bin_parts: Vec<Placed>,
    /// Height of the bin's inner floor at its centre.
    pub bin_floor_z_m: f64,
    pub bin_inner_size_m: [f64; 2],
    pub bin_wall_height_m: f64,
    /// The bin's frame: origin at the centre of its inner floor, z along its walls.
    pub cell_from_bin: Isometry3<f64>,
    pub bin_material: Material,
    pub floor_material: Material,
    pub objects: Vec<SceneObject>,
    pub lights: Vec<Light>,
    pub ambient: f64,
    pub specular: bool,
    pub shadows: bool,
    pub targets: Vec<Arc<TexturedTarget>>,
    pub classes: ClassTable,
}

/// Plain plastic: the first generator's objects.
const OBJECT_SPECULAR: f64 = 0.35;
/// Matte: the first generator's bin and floor.
const MATTE_SPECULAR: f64 = 0.04;
const SHININESS: f64 = 32.0;

impl Scene {
    /// Samples a scene from `cfg`. Lowered placement: objects dropped one by one at random
    /// positions and upright orientations, each resting on the bin floor or on the flat top of
    /// what it overlaps, never interpenetrating; one that finds no stable place in
    /// `placement_attempts` tries is left out. Physics placement: all objects dropped at
    /// random orientations and settled by a rigid-body engine.
    pub fn generate(cfg: &SceneConfig, assets: &SceneAssets, rng: &mut impl Rng) -> Self {
        let bin = &cfg.bin;
        let [length, width] = bin.inner_size_m.map(|s| s.sample(rng));
        let (wt, ft, wh) = (
            bin.wall_thickness_m.sample(rng),
            bin.floor_thickness_m.sample(rng),
            bin.wall_height_m.sample(rng),
        );
        let yaw = bin.yaw_deg.sample(rng).to_radians();
        let tilt = bin.tilt_deg.sample(rng).to_radians();
        let cell_from_bin = if tilt != 0.0 || yaw != 0.0 {
            let tilt_axis = rng.gen_range(0.0..std::f64::consts::TAU);
            let axis =
                nalgebra::Unit::new_normalize(Vector3::new(tilt_axis.cos(), tilt_axis.sin(), 0.0));
            let rotation = UnitQuaternion::from_axis_angle(&axis, tilt)
                * UnitQuaternion::from_axis_angle(&Vector3::z_axis(), yaw);
            // Lift it so its lowest corner touches the floor.
            let half = [length / 2.0 + wt, width / 2.0 + wt];
            let lowest = [-1.0, 1.0]
                .iter()
                .flat_map(|sx| {
                    [-1.0, 1.0]
                        .map(|sy| (rotation * Vector3::new(sx * half[0], sy * half[1], -ft)).z)
                })
                .fold(f64::INFINITY, f64::min);
            Isometry3::from_parts(Translation3::new(0.0, 0.0, -lowest), rotation)
        } else {
            Isometry3::translation(0.0, 0.0, ft)
        };
        let slab = |center: [f64; 3], half: [f64; 3]| {
            Placed::new(
                Shape::Box {
                    half_extents_m: half,
                },
                cell_from_bin * Isometry3::translation(center[0], center[1], center[2] - ft),
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
        let bin_floor_z_m = cell_from_bin.translation.vector.z;
        let classes = ClassTable::new(cfg.objects.classes, &cfg.objects.families);
        let count = rng.gen_range(cfg.objects.count[0]..=cfg.objects.count[1]);
        let objects = match cfg.objects.placement {
            Placement::Lowered => {
                lowered_objects(cfg, assets, count, ft, [length, width], &classes, rng)
            }
            Placement::Physics => physics_objects(
                cfg,
                assets,
                count,
                &bin_parts,
                &cell_from_bin,
                [length, width],
                wh,
                &classes,
                rng,
            ),
        };
        let light_count = rng.gen_range(cfg.lighting.lights[0]..=cfg.lighting.lights[1]);
        let [e0, e1] = cfg.lighting.elevation_deg;
        let mut lights: Vec<Light> = (0..light_count)
            .map(|_| {
                let azimuth = rng.gen_range(0.0..std::f64::consts::TAU);
                let elevation = rng.gen_range(e0..e1.max(e0 + 1e-9)).to_radians();
                Light {
                    to_light: Vector3::new(
                        elevation.cos() * azimuth.cos(),
                        elevation.cos() * azimuth.sin(),
                        elevation.sin(),
                    ),
                    intensity: rng.gen_range(cfg.lighting.intensity[0]..=cfg.lighting.intensity[1]),
                    colour: [1.0; 3],
                }
            })
            .collect();
        if let Some(colours) = &cfg.lighting.colours {
            for light in &mut lights {
                // Hue and saturation tint the light; its brightness is the intensity's.
                let c = colours.sample(rng);
                let peak = c.iter().copied().fold(1e-6, f64::max);
                light.colour = c.map(|v| v / peak);
            }
        }
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
        let floor_albedo = match &cfg.floor.colours {
            Some(colours) => colours.sample(rng),
            None => {
                let grey = rng.gen_range(0.45..0.65);
                let mut tint = || grey * rng.gen_range(0.92..1.08);
                [tint(), tint(), tint()]
            }
        };
        let floor_material = surface_material(
            &cfg.floor.surface,
            assets,
            floor_albedo,
            MATTE_SPECULAR,
            rng,
        );
        let bin_albedo = match &bin.colours {
            Some(colours) => colours.sample(rng),
            None => bin.color.map(|c| c as f64 / 255.0),
        };
        let bin_material = surface_material(&bin.surface, assets, bin_albedo, MATTE_SPECULAR, rng);
        Self {
            bin_parts,
            bin_floor_z_m,
            bin_inner_size_m: [length, width],
            bin_wall_height_m: wh,
            cell_from_bin,
            bin_material,
            floor_material,
            objects,
            lights,
            ambient,
            specular: cfg.lighting.specular,
            shadows: cfg.lighting.shadows,
            targets: assets.targets.clone(),
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
            let placed = &self.objects[i].placed;
            if !placed.may_intersect(ray, *limit) {
                return;
            }
            if let Some(hit) = placed.intersect(ray, *limit) {
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

    /// Whether anything (bin or object) lies on `ray` before `t_max`, testing them all (the
    /// renderer bins them per light; this is its reference).
    pub fn occluded(&self, ray: &Ray, t_max: f64) -> bool {
        self.bin_parts
            .iter()
            .chain(self.objects.iter().map(|o| &o.placed))
            .any(|p| p.may_intersect(ray, t_max) && p.intersect(ray, t_max).is_some())
    }

    /// Whether a cell point lies over the bin's inner floor (inside its walls, seen along
    /// the bin's own vertical), and below the top of its walls.
    pub fn inside_bin(&self, point_cell: &Point3<f64>) -> bool {
        let p = self.cell_from_bin.inverse_transform_point(point_cell);
        p.x.abs() <= self.bin_inner_size_m[0] / 2.0
            && p.y.abs() <= self.bin_inner_size_m[1] / 2.0
            && p.z >= -1e-6
            && p.z <= self.bin_wall_height_m
    }
}

fn surface_material(
    surface: &Option<SurfaceConfig>,
    assets: &SceneAssets,
    albedo: [f64; 3],
    specular: f64,
    rng: &mut impl Rng,
) -> Material {
    match surface {
        Some(surface) => surface.sample_with(albedo, &assets.photos_of(surface), rng),
        None => Material::plain(albedo, specular, SHININESS),
    }
}

fn object_material(cfg: &SceneConfig, assets: &SceneAssets, rng: &mut impl Rng) -> Material {
    let albedo = match &cfg.objects.colours {
        Some(colours) => colours.sample(rng),
        None => random_albedo(rng),
    };
    surface_material(&cfg.objects.surface, assets, albedo, OBJECT_SPECULAR, rng)
}

/// The first generator's placement: upright primitives lowered onto the floor or flat tops.
fn lowered_objects(
    cfg: &SceneConfig,
    assets: &SceneAssets,
    count: usize,
    bin_floor_z: f64,
    inner_size: [f64; 2],
    classes: &ClassTable,
    rng: &mut impl Rng,
) -> Vec<SceneObject> {
    let [length, width] = inner_size;
    let mut objects: Vec<SceneObject> = Vec::with_capacity(count);
    for _ in 0..count {
        let family = cfg.objects.families[rng.gen_range(0..cfg.objects.families.len())];
        let (shape, upright, flat_top) = sample_shape(family, cfg.objects.size_m, rng);
        let material = object_material(cfg, assets, rng);
        for _ in 0..cfg.objects.placement_attempts {
            let yaw = UnitQuaternion::from_axis_angle(
                &Vector3::z_axis(),
                rng.gen_range(0.0..std::f64::consts::TAU),
            );
            let rotation = yaw * upright;
            let x = rng.gen_range(-length / 2.0..length / 2.0);
            let y = rng.gen_range(-width / 2.0..width / 2.0);
            let Some(rested) = rest(shape, rotation, x, y, bin_floor_z, inner_size, &objects)
            else {
                continue;
            };
            let id = objects.len() as u16 + 1;
            objects.push(SceneObject {
                instance_id: id,
                family,
                class_id: classes.object_class(family),
                placed: rested.placed,
                material: material.clone(),
                flat_top,
                top_z_m: rested.top_z_m,
                footprint: rested.footprint,
            });
            break;
        }
    }
    objects
}

/// Every object dropped into the bin and settled by rigid-body physics.
#[allow(clippy::too_many_arguments)]
fn physics_objects(
    cfg: &SceneConfig,
    assets: &SceneAssets,
    count: usize,
    bin_parts: &[Placed],
    cell_from_bin: &Isometry3<f64>,
    inner_size: [f64; 2],
    wall_height: f64,
    classes: &ClassTable,
    rng: &mut impl Rng,
) -> Vec<SceneObject> {
    let mut solids: Vec<(ShapeFamily, Solid, Material)> = Vec::with_capacity(count);
    for _ in 0..count {
        let family = cfg.objects.families[rng.gen_range(0..cfg.objects.families.len())];
        let solid = match family {
            ShapeFamily::Box | ShapeFamily::Cylinder | ShapeFamily::Prism => {
                Solid::Analytic(sample_shape(family, cfg.objects.size_m, rng).0)
            }
            ShapeFamily::Mesh => {
                if assets.meshes.is_empty() {
                    continue;
                }
                Solid::Mesh(assets.meshes[rng.gen_range(0..assets.meshes.len())].clone())
            }
            _ => {
                let Ok(mesh) = procedural_mesh(family, cfg.objects.size_m, rng) else {
                    continue;
                };
                match MeshSolid::new(family, None, mesh, true) {
                    Some(solid) => Solid::Mesh(Arc::new(solid)),
                    None => continue,
                }
            }
        };
        solids.push((family, solid, object_material(cfg, assets, rng)));
    }
    let mut bodies: Vec<BodyShape> = solids
        .iter()
        .map(|(_, solid, _)| match solid {
            Solid::Analytic(Shape::Box { half_extents_m }) => BodyShape::Cuboid {
                half_extents_m: *half_extents_m,
            },
            Solid::Analytic(Shape::Cylinder {
                radius_m,
                half_height_m,
            }) => BodyShape::Cylinder {
                radius_m: *radius_m,
                half_height_m: *half_height_m,
            },
            other => BodyShape::ConvexHull {
                points_m: other.hull_points(),
            },
        })
        .collect();
    let slabs: Vec<StaticSlab> = bin_parts
        .iter()
        .filter_map(|p| match p.solid {
            Solid::Analytic(Shape::Box { half_extents_m }) => Some(StaticSlab {
                half_extents_m,
                cell_from_slab: p.world_from_local,
            }),
            _ => None,
        })
        .collect();
    let [length, width] = inner_size;
    // Bodies start over an axis-aligned square that fits inside the (possibly turned) bin.
    let yaw = cell_from_bin.rotation.euler_angles().2;
    let margin = 0.01;
    let half = ((length.min(width) / 2.0 - margin) / (yaw.cos().abs() + yaw.sin().abs())).max(0.0);
    let centre = cell_from_bin.translation.vector;
    let settings = PileSettings {
        drop_region_m: (
            [centre.x - half, centre.x + half],
            [centre.y - half, centre.y + half],
        ),
        bin_floor_z_m: cell_from_bin.translation.vector.z,
        bin_inner_size_m: inner_size,
        friction: cfg.objects.friction.sample(rng),
        restitution: 0.1,
        density_kg_m3: 800.0,
        max_steps: 900,
        // Inside or outside is decided below, in the bin's own frame (it may be turned).
        keep_outside: true,
    };
    // A body physics refuses (a hull without volume) is left out and the pile dropped again.
    let mut settled = settle_pile(&slabs, &bodies, &settings, rng);
    while let Err(PileError::InvalidBody { index, .. }) = settled {
        bodies.remove(index);
        solids.remove(index);
        settled = settle_pile(&slabs, &bodies, &settings, rng);
    }
    let Ok(settled) = settled else {
        return Vec::new();
    };
    let bin_from_cell = cell_from_bin.inverse();
    let mut objects = Vec::with_capacity(solids.len());
    for ((family, solid, material), pose) in solids.into_iter().zip(settled.cell_from_body) {
        let Some(pose) = pose else { continue };
        let placed = Placed::new(solid, pose);
        let com_in_bin = bin_from_cell * (pose * placed.solid.centroid_local());
        let inside = com_in_bin.x.abs() <= length / 2.0
            && com_in_bin.y.abs() <= width / 2.0
            && com_in_bin.z >= -0.005
            && com_in_bin.z <= wall_height + 0.05;
        if !inside && !cfg.objects.keep_outside {
            continue;
        }
        let hull = placed.hull_points_world();
        let top_z_m = hull.iter().map(|p| p.z).fold(f64::NEG_INFINITY, f64::max);
        let footprint = convex_hull(hull.iter().map(|p| Point2::new(p.x, p.y)).collect());
        objects.push(SceneObject {
            instance_id: objects.len() as u16 + 1,
            family,
            class_id: classes.object_class(family),
            placed,
            material,
            flat_top: false,
            top_z_m,
            footprint,
        });
    }
    objects
}

/// A random shape and a rotation that sets it on a stable face; whether that face's
/// opposite is a horizontal top.
fn sample_shape(
    family: ShapeFamily,
    size_m: [f64; 2],
    rng: &mut impl Rng,
) -> (Shape, UnitQuaternion<f64>, bool) {
    let mut size = || rng.gen_range(size_m[0]..=size_m[1]);
    let quarter = std::f64::consts::FRAC_PI_2;
    match family {
        ShapeFamily::Cylinder => {
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
        ShapeFamily::Prism => {
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
        // Box, and the analytic stand-in for any other family.
        _ => {
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
    }
}

/// Where a lowered object came to rest.
struct Rested {
    placed: Placed,
    top_z_m: f64,
    footprint: Vec<Point2<f64>>,
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
) -> Option<Rested> {
    let points: Vec<Point3<f64>> = shape.hull_points().iter().map(|p| rotation * p).collect();
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
    Some(Rested {
        placed: Placed::new(
            shape,
            Isometry3::from_parts(Translation3::new(x, y, z), rotation),
        ),
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
            let scene = Scene::generate(&cfg, &SceneAssets::default(), &mut rng);
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
                            !contains(&other.placed.solid.analytic().unwrap(), &local),
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
