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
                    let Some(s) = sample_pixel(scene, camera, u, v, &objects, &parts) else {
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
    let (radiance, highlight) = shade(scene, &point, albedo, material, &normal, &to_eye);
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
    point: &Point3<f64>,
    albedo: [f64; 3],
    material: &Material,
    normal: &Vector3<f64>,
    to_eye: &Vector3<f64>,
) -> ([f32; 3], f64) {
    let mut diffuse = [scene.ambient; 3];
    let mut highlight = [0.0; 3];
    let mut strongest = 0.0_f64;
    for light in &scene.lights {
        let lambert = normal.dot(&light.to_light);
        if lambert <= 0.0 {
            continue;
        }
        if scene.shadows {
            // Start a little off the surface so the ray does not meet its own origin.
            let shadow = Ray::new(point + normal * 1e-5, light.to_light);
            if scene.occluded(&shadow, 10.0) {
                continue;
            }
        }
        let specular = if scene.specular {
            let half = (light.to_light + to_eye).normalize();
            light.intensity
                * material.specular
                * normal.dot(&half).max(0.0).powi(material.shininess.round() as i32)
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
