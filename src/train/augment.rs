//! Data augmentation, applied to training batches only and identically to everything that
//! describes one example: the image, its class mask, its depth and its geometric labels.
//! Each example's draw comes from the batch seed and its index, so runs (and `--resume`) are
//! reproducible.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::models::Task;

/// `augmentation:` in a training config; every key off by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random shift of up to this fraction of the width/height, each way.
    pub translate: f64,
    /// Random rotation about the image centre of up to this many degrees, each way.
    pub rotate_deg: f64,
    /// Random zoom factor range `[low, high]` (1 = none).
    pub scale: Option<[f64; 2]>,
    /// Random crop keeping at least this fraction of each side, resized back (1 = none).
    pub crop: Option<f64>,
    /// Mirror left-right with probability 1/2.
    pub flip_horizontal: bool,
    /// Colour jitter: factors drawn from [1 - x, 1 + x] for brightness, contrast, saturation.
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    /// Gaussian noise (metres, standard deviation) on depth the network reads (grasp patches).
    pub depth_noise_m: f64,
}

impl AugmentConfig {
    /// Refuses what would break a task's labels: a shifted, zoomed or mirrored view has no
    /// exact camera pose, so pose takes only in-plane rotation (a camera roll) and colour;
    /// grasp patches take flips (the jaws are symmetric) and depth noise.
    pub fn check(&self, task: Task) -> Result<(), String> {
        let nonneg = [
            ("translate", self.translate),
            ("rotate_deg", self.rotate_deg),
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
            ("depth_noise_m", self.depth_noise_m),
        ];
        for (name, v) in nonneg {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("augmentation.{name} must be >= 0, got {v}"));
            }
        }
        if self.translate >= 0.5 || self.brightness >= 1.0 || self.contrast >= 1.0 {
            return Err(
                "augmentation: translate must be < 0.5, brightness and contrast < 1".into(),
            );
        }
        if let Some([lo, hi]) = self.scale {
            if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
                return Err(format!(
                    "augmentation.scale must be [low, high] with 0 < low <= high, got [{lo}, {hi}]"
                ));
            }
        }
        if let Some(c) = self.crop {
            if !(c > 0.0 && c <= 1.0) {
                return Err(format!("augmentation.crop must be within (0, 1], got {c}"));
            }
        }
        let geometric = self.translate > 0.0
            || self.scale.is_some()
            || self.crop.is_some_and(|c| c < 1.0)
            || self.flip_horizontal;
        match task {
            Task::Pose if geometric => Err(
                "augmentation for pose: only rotate_deg (a camera roll, applied to the pose label too) and colour jitter keep the labels exact; remove translate, scale, crop and flip_horizontal".into(),
            ),
            Task::GraspQuality
                if self.translate > 0.0
                    || self.scale.is_some()
                    || self.crop.is_some_and(|c| c < 1.0)
                    || self.rotate_deg > 0.0
                    || self.brightness > 0.0
                    || self.contrast > 0.0
                    || self.saturation > 0.0 =>
            {
                Err("augmentation for grasp quality: only flip_horizontal (mirrored and 180-degree-turned patches, the jaws being symmetric) and depth_noise_m apply".into())
            }
            _ => Ok(()),
        }
    }

    /// The draw for one example of a batch: the same for the same seed and index.
    pub fn draw(&self, batch_seed: u64, example: usize, width: usize, height: usize) -> Draw {
        let mut rng = StdRng::seed_from_u64(
            batch_seed ^ (example as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let sym = |rng: &mut StdRng, x: f64| if x > 0.0 { rng.gen_range(-x..=x) } else { 0.0 };
        let factor = |rng: &mut StdRng, x: f64| 1.0 + sym(rng, x);
        let angle = sym(&mut rng, self.rotate_deg).to_radians();
        let mut zoom = match self.scale {
            Some([lo, hi]) if hi > lo => rng.gen_range(lo..=hi),
            Some([lo, _]) => lo,
            None => 1.0,
        };
        let (mut tx, mut ty) = (
            sym(&mut rng, self.translate) * width as f64,
            sym(&mut rng, self.translate) * height as f64,
        );
        if let Some(c) = self.crop.filter(|&c| c < 1.0) {
            // A crop of side fraction k anywhere in the frame, blown up to the full size.
            let k = rng.gen_range(c..=1.0);
            zoom /= k;
            tx += rng.gen_range(-1.0..=1.0) * (1.0 - k) / 2.0 * width as f64 * zoom;
            ty += rng.gen_range(-1.0..=1.0) * (1.0 - k) / 2.0 * height as f64 * zoom;
        }
        let flip = self.flip_horizontal && rng.gen_bool(0.5);
        let flip_vertical = self.flip_horizontal && rng.gen_bool(0.5);
        Draw {
            warp: Warp {
                angle,
                zoom,
                shift: [tx, ty],
                flip,
                center: [width as f64 / 2.0, height as f64 / 2.0],
            },
            flip_vertical,
            brightness: factor(&mut rng, self.brightness) as f32,
            contrast: factor(&mut rng, self.contrast) as f32,
            saturation: factor(&mut rng, self.saturation) as f32,
            depth_noise_m: self.depth_noise_m,
            noise_seed: rng.gen(),
        }
    }
}

/// One example's augmentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    pub warp: Warp,
    /// Also turn upside down (grasp patches only: with `flip`, a 180-degree turn).
    pub flip_vertical: bool,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub depth_noise_m: f64,
    noise_seed: u64,
}

/// Output pixel = centre + shift + zoom * R(angle) * F * (input pixel - centre), with F the
/// optional left-right mirror; pixel centres at +0.5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warp {
    pub angle: f64,
    pub zoom: f64,
    pub shift: [f64; 2],
    pub flip: bool,
    pub center: [f64; 2],
}

impl Warp {
    pub fn is_identity(&self) -> bool {
        self.angle == 0.0 && self.zoom == 1.0 && self.shift == [0.0, 0.0] && !self.flip
    }

    /// The input position that lands on output pixel centre (x, y).
    fn source(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (
            x - self.center[0] - self.shift[0],
            y - self.center[1] - self.shift[1],
        );
        let (c, s) = (self.angle.cos(), self.angle.sin());
        // R(-angle) / zoom, then undo the mirror.
        let (u, v) = (
            (c * dx + s * dy) / self.zoom,
            (-s * dx + c * dy) / self.zoom,
        );
        let u = if self.flip { -u } else { u };
        (u + self.center[0], v + self.center[1])
    }

    /// Warps one `width` x `height` plane; outside the input reads `fill`. Bilinear for
    /// images, nearest for class ids and depth (never mixes two surfaces' depths).
    pub fn apply(
        &self,
        plane: &[f32],
        width: usize,
        height: usize,
        nearest: bool,
        fill: f32,
    ) -> Vec<f32> {
        if self.is_identity() {
            return plane.to_vec();
        }
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = self.source(x as f64 + 0.5, y as f64 + 0.5);
                out.push(if nearest {
                    if sx < 0.0 || sy < 0.0 || sx >= width as f64 || sy >= height as f64 {
                        fill
                    } else {
                        plane[sy as usize * width + sx as usize]
                    }
                } else {
                    bilinear(plane, width, height, sx - 0.5, sy - 0.5, fill)
                });
            }
        }
        out
    }
}

fn bilinear(plane: &[f32], width: usize, height: usize, x: f64, y: f64, fill: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
    let at = |xi: f64, yi: f64| {
        if xi < 0.0 || yi < 0.0 || xi >= width as f64 || yi >= height as f64 {
            fill
        } else {
            plane[yi as usize * width + xi as usize]
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

impl Draw {
    /// Colour jitter on planar channels with values in [0, 1] (1 or 3 channels), clamped.
    pub fn jitter(&self, planar: &mut [f32], channels: usize) {
        if self.brightness == 1.0 && self.contrast == 1.0 && self.saturation == 1.0 {
            return;
        }
        let n = planar.len() / channels;
        let mean = planar.iter().sum::<f32>() / planar.len().max(1) as f32;
        for i in 0..n {
            let mut px: Vec<f32> = (0..channels).map(|c| planar[c * n + i]).collect();
            let grey = px.iter().sum::<f32>() / channels as f32;
            for v in px.iter_mut() {
                *v = grey + (*v - grey) * self.saturation;
                *v = mean + (*v * self.brightness - mean) * self.contrast;
            }
            for (c, v) in px.into_iter().enumerate() {
                planar[c * n + i] = v.clamp(0.0, 1.0);
            }
        }
    }

    /// Noise on the depth values a network reads, skipping pixels without a reading (0).
    pub fn add_depth_noise(&self, values: &mut [f32]) {
        if self.depth_noise_m <= 0.0 {
            return;
        }
        let mut rng = StdRng::seed_from_u64(self.noise_seed);
        let normal = Normal::new(0.0, self.depth_noise_m).expect("noise is checked >= 0");
        for v in values.iter_mut().filter(|v| **v != 0.0) {
            *v += normal.sample(&mut rng) as f32;
        }
    }

    /// Mirrors a square patch left-right (`flip`) and upside down (`flip_vertical`).
    pub fn flip_patch(&self, patch: &mut [f32], side: usize) {
        if self.warp.flip {
            for row in patch.chunks_exact_mut(side) {
                row.reverse();
            }
        }
        if self.flip_vertical {
            for r in 0..side / 2 {
                for c in 0..side {
                    patch.swap(r * side + c, (side - 1 - r) * side + c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize) -> Vec<f32> {
        (0..w * h).map(|i| i as f32).collect()
    }

    fn warp(angle_deg: f64, zoom: f64, shift: [f64; 2], flip: bool, w: usize, h: usize) -> Warp {
        Warp {
            angle: angle_deg.to_radians(),
            zoom,
            shift,
            flip,
            center: [w as f64 / 2.0, h as f64 / 2.0],
        }
    }

    #[test]
    fn warps_move_pixels_where_they_should() {
        let (w, h) = (6, 4);
        let p = plane(w, h);
        // A shift of one pixel right: output (x, y) shows input (x - 1, y); column 0 is fill.
        let shifted = warp(0.0, 1.0, [1.0, 0.0], false, w, h).apply(&p, w, h, true, -1.0);
        assert_eq!(shifted[0], -1.0);
        assert_eq!(shifted[1 * w + 3], p[1 * w + 2]);
        // A mirror reverses each row.
        let mirrored = warp(0.0, 1.0, [0.0, 0.0], true, w, h).apply(&p, w, h, true, -1.0);
        assert_eq!(mirrored[2 * w], p[2 * w + w - 1]);
        // 180 degrees about the centre turns the image upside down and back to front.
        let turned = warp(180.0, 1.0, [0.0, 0.0], false, w, h).apply(&p, w, h, true, -1.0);
        assert_eq!(turned, p.iter().rev().copied().collect::<Vec<_>>());
        // Zoom 2 about the centre: the output's centre pixels come from the input's centre.
        let zoomed = warp(0.0, 2.0, [0.0, 0.0], false, w, h).apply(&p, w, h, true, -1.0);
        assert_eq!(zoomed[2 * w + 3], p[2 * w + 3]);
        assert_eq!(zoomed[0], p[1 * w + 1]);
        // Bilinear of a constant plane stays constant inside.
        let flat = vec![5.0f32; w * h];
        let r = warp(17.0, 1.1, [0.3, -0.2], false, w, h).apply(&flat, w, h, false, 5.0);
        assert!(r.iter().all(|&v| (v - 5.0).abs() < 1e-5));
    }

    #[test]
    fn draws_are_reproducible_and_respect_their_ranges() {
        let cfg = AugmentConfig {
            translate: 0.1,
            rotate_deg: 10.0,
            scale: Some([0.9, 1.1]),
            flip_horizontal: true,
            brightness: 0.2,
            ..Default::default()
        };
        assert_eq!(cfg.draw(5, 3, 64, 48), cfg.draw(5, 3, 64, 48));
        assert_ne!(cfg.draw(5, 3, 64, 48), cfg.draw(5, 4, 64, 48));
        let mut flips = 0;
        for i in 0..200 {
            let d = cfg.draw(1, i, 64, 48);
            assert!(d.warp.angle.abs() <= 10f64.to_radians() + 1e-12);
            assert!((0.9..=1.1).contains(&d.warp.zoom));
            assert!(d.warp.shift[0].abs() <= 6.4 + 1e-9 && d.warp.shift[1].abs() <= 4.8 + 1e-9);
            assert!((0.8..=1.2).contains(&d.brightness));
            flips += d.warp.flip as usize;
        }
        assert!((60..140).contains(&flips), "{flips}");
        let off = AugmentConfig::default().draw(1, 0, 8, 8);
        assert!(off.warp.is_identity() && off.brightness == 1.0);
    }

    #[test]
    fn tasks_refuse_what_would_break_their_labels() {
        let shift = AugmentConfig {
            translate: 0.1,
            ..Default::default()
        };
        assert!(shift.check(Task::Segmentation).is_ok());
        assert!(shift.check(Task::Pose).unwrap_err().contains("rotate_deg"));
        assert!(shift.check(Task::GraspQuality).is_err());
        let patch = AugmentConfig {
            flip_horizontal: true,
            depth_noise_m: 0.002,
            ..Default::default()
        };
        assert!(patch.check(Task::GraspQuality).is_ok());
        let roll = AugmentConfig {
            rotate_deg: 20.0,
            brightness: 0.2,
            ..Default::default()
        };
        assert!(roll.check(Task::Pose).is_ok());
        let bad = AugmentConfig {
            crop: Some(1.5),
            ..Default::default()
        };
        assert!(bad
            .check(Task::Classification)
            .unwrap_err()
            .contains("crop"));
    }

    #[test]
    fn jitter_noise_and_patch_flips() {
        let cfg = AugmentConfig {
            brightness: 0.5,
            depth_noise_m: 0.01,
            flip_horizontal: true,
            ..Default::default()
        };
        let mut d = cfg.draw(9, 0, 4, 4);
        d.brightness = 1.5;
        let mut grey = vec![0.2f32, 0.4, 0.9];
        d.jitter(&mut grey, 1);
        assert!((grey[0] - 0.3).abs() < 1e-6 && grey[2] == 1.0, "{grey:?}");
        let mut depth = vec![0.0f32, 0.5, 0.7];
        d.add_depth_noise(&mut depth);
        assert_eq!(depth[0], 0.0);
        assert!(depth[1] != 0.5 && (depth[1] - 0.5).abs() < 0.06);
        d.warp.flip = true;
        d.flip_vertical = true;
        let mut patch = vec![1.0f32, 2.0, 3.0, 4.0];
        d.flip_patch(&mut patch, 2);
        assert_eq!(patch, vec![4.0, 3.0, 2.0, 1.0]);
    }
}
