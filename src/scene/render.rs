use nalgebra::{Point3, Vector3};

use super::camera::PinholeCamera;
use super::geometry::Placed;
use super::world::{Scene, Surface, CLASS_BACKGROUND, CLASS_BIN};

/// Everything the renderer produces for one camera image, row-major.
#[derive(Clone, Debug)]
pub struct RenderedFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
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
}

/// Shading constants: a little plastic sheen on objects, matte bin and floor.
const OBJECT_SPECULAR: f64 = 0.35;
const MATTE_SPECULAR: f64 = 0.04;
const SHININESS: i32 = 32;

/// Exact per-pixel ray casting of `scene` seen by `camera`, one ray through each pixel centre,
/// Lambert diffuse + ambient (+ Blinn-Phong highlights), no shadows. The boundary class marks
/// object pixels within `boundary_px` of a pixel of another object.
pub fn render(scene: &Scene, camera: &PinholeCamera, boundary_px: u32) -> RenderedFrame {
    let (w, h) = (camera.width as usize, camera.height as usize);
    let n = w * h;
    let mut frame = RenderedFrame {
        width: camera.width,
        height: camera.height,
        rgb: vec![0; 3 * n],
        depth_m: vec![f32::NAN; n],
        class_mask: vec![CLASS_BACKGROUND; n],
        instance_mask: vec![0; n],
        normals_camera: vec![[0.0; 3]; n],
        cos_incidence: vec![0.0; n],
    };
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
    let mut objects = Vec::with_capacity(scene.objects.len());
    let mut parts = Vec::with_capacity(scene.bin_parts.len());
    for v in 0..h {
        let row_objects: Vec<usize> = (0..object_bounds.len())
            .filter(|&i| object_bounds[i].has_row(v))
            .collect();
        let row_parts: Vec<usize> = (0..bin_bounds.len())
            .filter(|&i| bin_bounds[i].has_row(v))
            .collect();
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
            let (ray, depth_per_t) = camera.pixel_ray(u as u32, v as u32);
            let Some(hit) = scene.cast_among(&ray, f64::INFINITY, Some(&objects), Some(&parts))
            else {
                continue;
            };
            let i = v * w + u;
            let normal = hit.hit.normal;
            let to_eye = -ray.direction;
            let (albedo, specular) = match hit.surface {
                Surface::Floor => (scene.floor_albedo, MATTE_SPECULAR),
                Surface::Bin => {
                    frame.class_mask[i] = CLASS_BIN;
                    (scene.bin_albedo, MATTE_SPECULAR)
                }
                Surface::Object(k) => {
                    let object = &scene.objects[k];
                    frame.class_mask[i] = object.class_id;
                    frame.instance_mask[i] = object.instance_id;
                    (object.albedo, OBJECT_SPECULAR)
                }
                Surface::Target(_, texel) => (texel.map(|c| c as f64 / 255.0), MATTE_SPECULAR),
            };
            let colour = shade(scene, albedo, specular, &normal, &to_eye);
            frame.rgb[3 * i..3 * i + 3].copy_from_slice(&colour);
            frame.depth_m[i] = (hit.hit.t * depth_per_t) as f32;
            let n_cam = camera_from_cell.rotation * normal;
            frame.normals_camera[i] = [n_cam.x as f32, n_cam.y as f32, n_cam.z as f32];
            frame.cos_incidence[i] = normal.dot(&to_eye).max(0.0) as f32;
        }
    }
    mark_boundaries(&mut frame, scene.classes.boundary(), boundary_px);
    frame
}

fn shade(
    scene: &Scene,
    albedo: [f64; 3],
    specular: f64,
    normal: &Vector3<f64>,
    to_eye: &Vector3<f64>,
) -> [u8; 3] {
    let mut diffuse = scene.ambient;
    let mut highlight = 0.0;
    for light in &scene.lights {
        let lambert = normal.dot(&light.to_light);
        if lambert > 0.0 {
            diffuse += light.intensity * lambert;
            if scene.specular {
                let half = (light.to_light + to_eye).normalize();
                highlight +=
                    light.intensity * specular * normal.dot(&half).max(0.0).powi(SHININESS);
            }
        }
    }
    // + 0.5 and truncation: rounding of a non-negative value, without libm's `round`.
    albedo.map(|a| ((a * diffuse + highlight).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
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
