//! The renderer: one ray per pixel through the scene, shaded with materials, textures,
//! coloured lights and cast shadows into linear radiance, then developed by the camera.

use nalgebra::{Point3, Vector3};
use rayon::prelude::*;

use super::appearance::{develop, Imaging, Material};
use super::camera::PinholeCamera;
use super::geometry::{Placed, Ray};
use super::world::{Scene, Surface, CLASS_BACKGROUND, CLASS_BIN};

/// Everything the renderer produces for one camera image, row-major.
#[derive(Clone, Debug)]
pub struct RenderedFrame {
    pub width: u32,
    pub height: u32,
    /// 8-bit RGB as the camera delivers it (see `develop`).
    pub rgb: Vec<u8>,
    /// Linear radiance before the camera, 3 per pixel, nominally 0..1.
    pub radiance: Vec<f32>,
    /// Ideal depth (camera z), metres; NaN where the ray meets nothing.
    pub depth_m: Vec<f32>,
    /// Semantic class per pixel (see `ClassTable`), boundary class included.
    pub class_mask: Vec<u8>,
    /// `instance_id` of the visible object, 0 elsewhere.
    pub instance_mask: Vec<u16>,
    /// Unit surface normal in the camera frame; zero where nothing is hit.
    pub normals_camera: Vec<[f32; 3]>,
    /// Cosine between the surface normal and the direction back to the camera.
    pub cos_incidence: Vec<f32>,
    /// Luminance of the surface's albedo, 0..1 (dark surfaces return little infrared).
    pub albedo_luma: Vec<f32>,
    /// Strength of the specular highlight seen at the pixel (saturates depth sensors).
    pub specular: Vec<f32>,
}

/// Exact per-pixel ray casting of `scene` seen by `camera`, one ray through each pixel centre,
/// Lambert diffuse + ambient (+ Blinn-Phong highlights), shadows where the scene asks for
/// them; rows in parallel. The boundary class marks object pixels within `boundary_px` of a
/// pixel of another object. `rgb` is developed by a neutral camera (clamp and quantise).
pub fn render(scene: &Scene, camera: &PinholeCamera, boundary_px: u32) -> RenderedFrame {
    let (w, h) = (camera.width as usize, camera.height as usize);
    let n = w * h;
    let object_bounds: Vec<PixelBounds> = scene
        .objects
        .iter()
        .map(|o| PixelBounds::of(&o.placed, camera))
        .collect();
    let bin_bounds: Vec<PixelBounds> = scene
        .bin_parts
        .iter()
        .map(|p| PixelBounds::of(p, camera))
        .collect();
    let shadow_grids: Vec<ShadowGrid> = if scene.shadows {
        scene
            .lights
            .iter()
            .map(|l| ShadowGrid::new(scene, l.to_light))
            .collect()
    } else {
        Vec::new()
    };
    let camera_from_cell = camera.camera_from_cell();
    let mut frame = RenderedFrame {
        width: camera.width,
        height: camera.height,
        rgb: Vec::new(),
        radiance: vec![0.0; 3 * n],
        depth_m: vec![f32::NAN; n],
        class_mask: vec![CLASS_BACKGROUND; n],
        instance_mask: vec![0; n],
        normals_camera: vec![[0.0; 3]; n],
        cos_incidence: vec![0.0; n],
        albedo_luma: vec![0.0; n],
        specular: vec![0.0; n],
    };
    // Rows in parallel, each written straight into its slices of the frame's buffers.
    frame
        .radiance
        .par_chunks_mut(3 * w)
        .zip(frame.depth_m.par_chunks_mut(w))
        .zip(frame.class_mask.par_chunks_mut(w))
        .zip(frame.instance_mask.par_chunks_mut(w))
        .zip(frame.normals_camera.par_chunks_mut(w))
        .zip(frame.cos_incidence.par_chunks_mut(w))
        .zip(frame.albedo_luma.par_chunks_mut(w))
        .zip(frame.specular.par_chunks_mut(w))
        .enumerate()
        .for_each(
            |(v, (((((((radiance, depth), class), instance), normals), cos), luma), specular))| {
                let row_objects: Vec<usize> = (0..object_bounds.len())
                    .filter(|&i| object_bounds[i].has_row(v))
                    .collect();
                let row_parts: Vec<usize> = (0..bin_bounds.len())
                    .filter(|&i| bin_bounds[i].has_row(v))
                    .collect();
                let mut objects = Vec::with_capacity(row_objects.len());
                let mut parts = Vec::with_capacity(row_parts.len());
                for u in 0..w {
                    objects.clear();
                    objects.extend(
                        row_objects
                            .iter()
                            .copied()
                            .filter(|&i| object_bounds[i].has_column(u)),
                    );
                    parts.clear();
                    parts.extend(
                        row_parts
                            .iter()
                            .copied()
                            .filter(|&i| bin_bounds[i].has_column(u)),
                    );
                    let Some(s) =
                        sample_pixel(scene, &shadow_grids, camera, u, v, &objects, &parts)
                    else {
                        continue;
                    };
                    radiance[3 * u..3 * u + 3].copy_from_slice(&s.radiance);
                    depth[u] = s.depth_m;
                    class[u] = s.class;
                    instance[u] = s.instance;
                    let n_cam = camera_from_cell.rotation * s.normal_cell;
                    normals[u] = [n_cam.x as f32, n_cam.y as f32, n_cam.z as f32];
                    cos[u] = s.cos_incidence;
                    luma[u] = s.albedo_luma;
                    specular[u] = s.specular;
                }
            },
        );
    frame.rgb = develop(
        &frame.radiance,
        w,
        h,
        &Imaging::neutral(),
        &mut rand::rngs::mock::StepRng::new(0, 0),
    );
    mark_boundaries(&mut frame, scene.classes.boundary(), boundary_px);
    frame
}

struct Sample {
    radiance: [f32; 3],
    depth_m: f32,
    class: u8,
    instance: u16,
    normal_cell: Vector3<f64>,
    cos_incidence: f32,
    albedo_luma: f32,
    specular: f32,
}

fn sample_pixel(
    scene: &Scene,
    shadow_grids: &[ShadowGrid],
    camera: &PinholeCamera,
    u: usize,
    v: usize,
    objects: &[usize],
    parts: &[usize],
) -> Option<Sample> {
    let (ray, depth_per_t) = camera.pixel_ray(u as u32, v as u32);
    let hit = scene.cast_among(&ray, f64::INFINITY, Some(objects), Some(parts))?;
    let normal = hit.hit.normal;
    let to_eye = -ray.direction;
    let point = ray.at(hit.hit.t);
    let (class, instance) = match hit.surface {
        Surface::Floor | Surface::Target(..) => (CLASS_BACKGROUND, 0),
        Surface::Bin => (CLASS_BIN, 0),
        Surface::Object(k) => (scene.objects[k].class_id, scene.objects[k].instance_id),
    };
    let texel_material;
    let material: &Material = match hit.surface {
        Surface::Floor => &scene.floor_material,
        Surface::Bin => &scene.bin_material,
        Surface::Object(k) => &scene.objects[k].material,
        Surface::Target(_, texel) => {
            texel_material = Material::plain(
                texel.map(|c| c as f64 / 255.0),
                scene.floor_material.specular,
                scene.floor_material.shininess,
            );
            &texel_material
        }
    };
    // Textures stick to the surface: objects in their own frame, bin and floor in the cell's.
    let albedo = match hit.surface {
        Surface::Object(k) => {
            let local = scene.objects[k].placed.to_local(&point);
            material.albedo_at(&local)
        }
        _ => material.albedo_at(&point),
    };
    let (radiance, highlight) = shade(
        scene,
        shadow_grids,
        &point,
        albedo,
        material,
        &normal,
        &to_eye,
    );
    Some(Sample {
        radiance,
        depth_m: (hit.hit.t * depth_per_t) as f32,
        class,
        instance,
        normal_cell: normal,
        cos_incidence: normal.dot(&to_eye).max(0.0) as f32,
        albedo_luma: (0.2126 * albedo[0] + 0.7152 * albedo[1] + 0.0722 * albedo[2]) as f32,
        specular: highlight as f32,
    })
}

/// Linear radiance at `point` and the strength of its highlight.
fn shade(
    scene: &Scene,
    shadow_grids: &[ShadowGrid],
    point: &Point3<f64>,
    albedo: [f64; 3],
    material: &Material,
    normal: &Vector3<f64>,
    to_eye: &Vector3<f64>,
) -> ([f32; 3], f64) {
    let mut diffuse = [scene.ambient; 3];
    let mut highlight = [0.0; 3];
    let mut strongest = 0.0_f64;
    for (l, light) in scene.lights.iter().enumerate() {
        let lambert = normal.dot(&light.to_light);
        if lambert <= 0.0 {
            continue;
        }
        if let Some(grid) = shadow_grids.get(l) {
            // Start a little off the surface so the ray does not meet its own origin.
            let shadow = Ray::new(point + normal * 1e-5, light.to_light);
            if grid.occluded(scene, &shadow) {
                continue;
            }
        }
        let specular = if scene.specular {
            let half = (light.to_light + to_eye).normalize();
            light.intensity
                * material.specular
                * normal
                    .dot(&half)
                    .max(0.0)
                    .powi(material.shininess.round() as i32)
        } else {
            0.0
        };
        strongest = strongest.max(specular);
        for c in 0..3 {
            diffuse[c] += light.intensity * lambert * light.colour[c];
            highlight[c] += specular * light.colour[c];
        }
    }
    (
        [0, 1, 2].map(|c| (albedo[c] * diffuse[c] + highlight[c]) as f32),
        strongest,
    )
}

/// The occluders a shadow ray towards one directional light can meet, binned by where the
/// ray lies in the plane across the light: a ray only tests the bin parts and objects whose
/// projection covers its cell, not all of them.
struct ShadowGrid {
    across: [Vector3<f64>; 2],
    origin: [f64; 2],
    cell_m: f64,
    size: [usize; 2],
    /// Per cell: occluders, bin parts first (`k < bin_parts.len()`), then objects.
    cells: Vec<Vec<u16>>,
}

impl ShadowGrid {
    const CELLS: usize = 48;

    fn new(scene: &Scene, to_light: Vector3<f64>) -> Self {
        let helper = if to_light.x.abs() < 0.9 {
            Vector3::x()
        } else {
            Vector3::y()
        };
        let a = to_light.cross(&helper).normalize();
        let b = to_light.cross(&a);
        let occluders = scene
            .bin_parts
            .iter()
            .chain(scene.objects.iter().map(|o| &o.placed));
        let boxes: Vec<[f64; 4]> = occluders
            .map(|p| {
                p.hull_points_world().iter().fold(
                    [
                        f64::INFINITY,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        f64::NEG_INFINITY,
                    ],
                    |[x0, y0, x1, y1], q| {
                        let (x, y) = (q.coords.dot(&a), q.coords.dot(&b));
                        [x0.min(x), y0.min(y), x1.max(x), y1.max(y)]
                    },
                )
            })
            .collect();
        let bounds = boxes.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |[x0, y0, x1, y1], r| [x0.min(r[0]), y0.min(r[1]), x1.max(r[2]), y1.max(r[3])],
        );
        let span = (bounds[2] - bounds[0]).max(bounds[3] - bounds[1]).max(1e-6);
        let cell_m = span / Self::CELLS as f64 * 1.0001;
        let size = [
            (((bounds[2] - bounds[0]) / cell_m) as usize + 1).min(Self::CELLS + 1),
            (((bounds[3] - bounds[1]) / cell_m) as usize + 1).min(Self::CELLS + 1),
        ];
        let mut cells = vec![Vec::new(); size[0] * size[1]];
        for (k, r) in boxes.iter().enumerate() {
            let cell = |v: f64, o: f64, n: usize| (((v - o) / cell_m).max(0.0) as usize).min(n - 1);
            for j in cell(r[1], bounds[1], size[1])..=cell(r[3], bounds[1], size[1]) {
                for i in cell(r[0], bounds[0], size[0])..=cell(r[2], bounds[0], size[0]) {
                    cells[j * size[0] + i].push(k as u16);
                }
            }
        }
        Self {
            across: [a, b],
            origin: [bounds[0], bounds[1]],
            cell_m,
            size,
            cells,
        }
    }

    /// Whether a bin part or an object lies on `ray` (a ray towards this grid's light).
    fn occluded(&self, scene: &Scene, ray: &Ray) -> bool {
        let p = ray.origin.coords;
        let x = (p.dot(&self.across[0]) - self.origin[0]) / self.cell_m;
        let y = (p.dot(&self.across[1]) - self.origin[1]) / self.cell_m;
        if x < 0.0 || y < 0.0 || x >= self.size[0] as f64 || y >= self.size[1] as f64 {
            return false;
        }
        let parts = scene.bin_parts.len();
        self.cells[y as usize * self.size[0] + x as usize]
            .iter()
            .any(|&k| {
                let k = k as usize;
                let placed = if k < parts {
                    &scene.bin_parts[k]
                } else {
                    &scene.objects[k - parts].placed
                };
                placed.may_intersect(ray, 10.0) && placed.intersect(ray, 10.0).is_some()
            })
    }
}

/// Object pixels next to (within `radius` pixels of) another object's pixels become the
/// boundary class: the U-Net paper's way to separate touching instances.
fn mark_boundaries(frame: &mut RenderedFrame, boundary_class: u8, radius: u32) {
    if radius == 0 {
        return;
    }
    let (w, h, r) = (frame.width as isize, frame.height as isize, radius as isize);
    let ids = &frame.instance_mask;
    let mut boundary = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let id = ids[(y * w + x) as usize];
            if id == 0 {
                continue;
            }
            'window: for dy in -r..=r {
                for dx in -r..=r {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && nx < w && ny < h {
                        let other = ids[(ny * w + nx) as usize];
                        if other != 0 && other != id {
                            boundary.push((y * w + x) as usize);
                            break 'window;
                        }
                    }
                }
            }
        }
    }
    for i in boundary {
        frame.class_mask[i] = boundary_class;
    }
}

/// The pixel rectangle a placed shape can cover (inclusive), or everything when part of it is
/// behind the camera.
#[derive(Clone, Copy, Debug)]
struct PixelBounds {
    u: (isize, isize),
    v: (isize, isize),
}

impl PixelBounds {
    fn of(placed: &Placed, camera: &PinholeCamera) -> Self {
        let everything = Self {
            u: (isize::MIN, isize::MAX),
            v: (isize::MIN, isize::MAX),
        };
        let (lo, hi) = placed.aabb();
        let mut bounds = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for i in 0..8 {
            let corner = Point3::new(
                if i & 1 == 0 { lo.x } else { hi.x },
                if i & 2 == 0 { lo.y } else { hi.y },
                if i & 4 == 0 { lo.z } else { hi.z },
            );
            let Some((x, y, _)) = camera.project(&corner) else {
                return everything;
            };
            bounds = (
                bounds.0.min(x),
                bounds.1.max(x),
                bounds.2.min(y),
                bounds.3.max(y),
            );
        }
        // One pixel of margin: pixel u is sampled at u + 0.5.
        Self {
            u: (bounds.0.floor() as isize - 1, bounds.1.ceil() as isize + 1),
            v: (bounds.2.floor() as isize - 1, bounds.3.ceil() as isize + 1),
        }
    }

    fn has_row(&self, v: usize) -> bool {
        (self.v.0..=self.v.1).contains(&(v as isize))
    }

    fn has_column(&self, u: usize) -> bool {
        (self.u.0..=self.u.1).contains(&(u as isize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::config::SceneConfig;
    use crate::scene::world::SceneAssets;
    use rand::{Rng, SeedableRng};

    #[test]
    fn shadow_grids_find_exactly_the_occluders_every_shadow_ray_meets() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/scene/bin_picking_varied.yaml");
        let config: SceneConfig =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (mut shadowed, mut lit) = (0, 0);
        for _ in 0..4 {
            let scene = Scene::generate(&config, &SceneAssets::default(), &mut rng);
            for light in &scene.lights {
                let grid = ShadowGrid::new(&scene, light.to_light);
                for _ in 0..3000 {
                    let origin = Point3::new(
                        rng.gen_range(-0.5..0.5),
                        rng.gen_range(-0.4..0.4),
                        rng.gen_range(0.0..0.2),
                    );
                    let ray = Ray::new(origin, light.to_light);
                    let expected = scene.occluded(&ray, 10.0);
                    assert_eq!(grid.occluded(&scene, &ray), expected, "ray from {origin}");
                    if expected {
                        shadowed += 1
                    } else {
                        lit += 1
                    }
                }
            }
        }
        assert!(
            shadowed > 100 && lit > 100,
            "{shadowed} shadowed, {lit} lit"
        );
    }
}
