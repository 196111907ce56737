//! Printed targets: a PNG image on a rectangle placed in the cell (calibration boards,
//! posters).

use std::path::PathBuf;

use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

use super::config::TargetConfig;
use super::geometry::{Hit, Ray, EPSILON_M};
use crate::data::read_png_rgb;

/// An RGB image printed on a rectangle: a calibration board or a poster in the cell.
#[derive(Clone, Debug)]
pub struct TexturedTarget {
    pub image_path: PathBuf,
    pub width_px: u32,
    pub height_px: u32,
    pub rgb: Vec<u8>,
    pub size_m: [f64; 2],
    /// The target's frame: centre at the origin, image x along local x, image y along local
    /// -y (so the picture reads correctly seen from +z), facing +z.
    pub cell_from_target: Isometry3<f64>,
}

impl TexturedTarget {
    pub fn load(config: &TargetConfig) -> Result<Self, String> {
        let (width_px, height_px, rgb) = read_png_rgb(&config.image)?;
        let [r, p, y] = config.rpy_deg.map(f64::to_radians);
        Ok(Self {
            image_path: config.image.clone(),
            width_px,
            height_px,
            rgb,
            size_m: config.size_m,
            cell_from_target: Isometry3::from_parts(
                Translation3::from(Vector3::from(config.position_m)),
                UnitQuaternion::from_euler_angles(r, p, y),
            ),
        })
    }

    /// Hit on the front face and the texel colour there.
    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<(Hit, [u8; 3])> {
        let inv = self.cell_from_target.inverse();
        let o = inv * ray.origin;
        let d = inv * ray.direction;
        if d.z >= -1e-12 {
            return None; // parallel or seen from behind
        }
        let t = -o.z / d.z;
        if t <= EPSILON_M || t >= t_max {
            return None;
        }
        let p: Point3<f64> = o + d * t;
        let (u, v) = (p.x / self.size_m[0] + 0.5, 0.5 - p.y / self.size_m[1]);
        if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
            return None;
        }
        let (px, py) = (
            (u * self.width_px as f64) as usize,
            (v * self.height_px as f64) as usize,
        );
        let i = 3 * (py * self.width_px as usize + px);
        let colour = [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]];
        let normal = self.cell_from_target * Vector3::z();
        Some((Hit { t, normal }, colour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::camera::{look_at, PinholeCamera};
    use crate::scene::config::{ObjectsConfig, SceneConfig};
    use crate::scene::render::render;
    use crate::scene::world::Scene;
    use rand::SeedableRng;

    #[test]
    fn a_printed_board_shows_its_texels_where_the_camera_sees_them() {
        // A 2x2 board of red, green / blue, white texels, 0.4 m square, lying on the floor
        // beside the bin at x = 0.6 m, seen from straight above.
        let dir = std::env::temp_dir().join(format!("perception-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("board.png");
        let texels: [u8; 12] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut encoder = png::Encoder::new(std::fs::File::create(&path).unwrap(), 2, 2);
        encoder.set_color(png::ColorType::Rgb);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&texels)
            .unwrap();
        let target = TexturedTarget::load(&TargetConfig {
            image: path.clone(),
            size_m: [0.4, 0.4],
            position_m: [0.6, 0.0, 0.001],
            rpy_deg: [0.0, 0.0, 0.0],
        })
        .unwrap();
        let config = SceneConfig {
            objects: ObjectsConfig {
                count: [0, 0],
                ..Default::default()
            },
            ..Default::default()
        };
        let scene = Scene::generate(
            &config,
            &crate::scene::world::SceneAssets {
                targets: vec![std::sync::Arc::new(target)],
                ..Default::default()
            },
            &mut rand::rngs::StdRng::seed_from_u64(0),
        );
        let camera = PinholeCamera::from_fov(
            80,
            80,
            40.0,
            look_at(Point3::new(0.6, 0.0, 1.0), Point3::new(0.6, 0.0, 0.0), 0.0),
        );
        let frame = render(&scene, &camera, 1);
        // Project each quadrant's centre into the image and check which channels are lit there.
        let quadrants = [
            ([-0.1, 0.1], 0),
            ([0.1, 0.1], 1),
            ([-0.1, -0.1], 2),
            ([0.1, -0.1], 3),
        ];
        for ([dx, dy], texel) in quadrants {
            let (u, v, _) = camera.project(&Point3::new(0.6 + dx, dy, 0.001)).unwrap();
            let i = 3 * (v as usize * 80 + u as usize);
            let got = &frame.rgb[i..i + 3];
            let want = &texels[3 * texel..3 * texel + 3];
            // Shading scales the colour but keeps which channels are lit.
            for c in 0..3 {
                assert_eq!(
                    got[c] > 20,
                    want[c] > 0,
                    "texel {texel}: {got:?} vs {want:?}"
                );
            }
            assert_eq!(
                frame.class_mask[i / 3],
                crate::scene::world::CLASS_BACKGROUND
            );
        }
        let missing = TexturedTarget::load(&TargetConfig {
            image: dir.join("none.png"),
            size_m: [1.0, 1.0],
            position_m: [0.0; 3],
            rpy_deg: [0.0; 3],
        });
        assert!(missing.unwrap_err().contains("none.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
