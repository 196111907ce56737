//! The depth sensor: what a structured-light or stereo camera reports for the ideal depth,
//! with the artefacts real sensors have (noise, holes at edges and grazing angles, dropouts on
//! dark, shiny and thin surfaces, flying pixels, stereo occlusion shadows and quantised
//! disparity), so that networks trained on generated depth survive real depth.
//!
//! The artefact settings are `[low, high]` ranges drawn once per frame ([`SensorConfig::sample`]);
//! their defaults are off, and a range with `low == high` draws nothing from the random
//! stream, so configs without them reproduce the earlier output exactly.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthModel {
    /// Exact depth, only quantised to millimetres.
    Ideal,
    /// Structured-light/stereo sensor: noise growing with distance, holes at depth
    /// discontinuities and grazing angles, millimetre quantisation.
    Realistic,
    /// Active stereo (RealSense D400-like): depth from a quantised, noisy disparity
    /// d = fx B / z (so the error grows as z^2), occlusion shadows where the second camera
    /// cannot see, and small isolated islands removed as a speckle filter does.
    Stereo,
}

/// A rejected sensor setting: which key, what was wrong, how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{key} = {value}: {problem}; {fix}")]
pub struct SensorConfigError {
    /// The full key in the scene config, e.g. `sensor.stereo.baseline_m`.
    pub key: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    pub depth_model: DepthModel,
    /// Axial noise sigma(z) = a + b (z - c)^2 metres (Nguyen et al. 2012, Kinect):
    /// [a, b, c]. Realistic model only.
    pub noise_coefficients: [f64; 3],
    /// A pixel next to a depth jump larger than this is a hole with `edge_hole_probability`.
    pub edge_jump_m: f64,
    pub edge_hole_probability: f64,
    /// Surfaces seen more obliquely than this (angle between normal and view ray) give no
    /// reading.
    pub grazing_angle_deg: f64,
    /// Readings beyond this are missing.
    pub max_range_m: f64,
    /// Dark surfaces return too little projected light: below this albedo luminance (0..1)
    /// the chance of a missing reading rises linearly, to `dark_dropout_probability` at black.
    pub dark_luma_threshold: [f64; 2],
    pub dark_dropout_probability: [f64; 2],
    /// Specular highlights saturate the IR camera: where the renderer's specular term exceeds
    /// this level, the reading is missing with `specular_dropout_probability`.
    pub specular_saturation: [f64; 2],
    pub specular_dropout_probability: [f64; 2],
    /// Structures narrower than this many pixels (not covered by any square of this side
    /// inside their own instance) are missing with `thin_dropout_probability`: matching
    /// windows and projector dots are wider than they are. 0 or 1: off.
    pub thin_width_px: [u32; 2],
    pub thin_dropout_probability: [f64; 2],
    /// Fraction of the pixels at depth edges (see `edge_jump_m`) that keep a reading but
    /// report a depth between the two sides (mixed returns, matching windows straddling the
    /// edge).
    pub flying_pixel_fraction: [f64; 2],
    /// The stereo model's settings.
    pub stereo: StereoConfig,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            depth_model: DepthModel::Realistic,
            noise_coefficients: [0.0012, 0.0019, 0.4],
            edge_jump_m: 0.02,
            edge_hole_probability: 0.6,
            grazing_angle_deg: 78.0,
            max_range_m: 4.0,
            dark_luma_threshold: [0.0, 0.0],
            dark_dropout_probability: [0.0, 0.0],
            specular_saturation: [1.0, 1.0],
            specular_dropout_probability: [0.0, 0.0],
            thin_width_px: [0, 0],
            thin_dropout_probability: [1.0, 1.0],
            flying_pixel_fraction: [0.0, 0.0],
            stereo: StereoConfig::default(),
        }
    }
}

/// Settings of [`DepthModel::Stereo`]. The second camera sits `baseline_m` to the right
/// (+x in the image) of the reference camera whose depth is reported, as on the RealSense
/// D400 (left imager is the reference): occlusion shadows fall to the left of nearer objects,
/// and the leftmost columns (where the match would leave the second image) have no reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StereoConfig {
    pub baseline_m: [f64; 2],
    /// Sub-pixel matching noise, sigma in pixels of disparity.
    pub disparity_noise_px: [f64; 2],
    /// Disparity quantisation step, pixels (1/32 on the D400's sub-pixel interpolation).
    pub disparity_step_px: [f64; 2],
    /// Connected regions of readings (neighbours within `speckle_max_diff_px` of disparity)
    /// smaller than this many pixels are removed. 0: off.
    pub speckle_max_area_px: [u32; 2],
    pub speckle_max_diff_px: [f64; 2],
}

impl Default for StereoConfig {
    /// A RealSense D435 at 640 px: 50 mm baseline, about 0.08 px sub-pixel RMS, 1/32 px steps.
    fn default() -> Self {
        Self {
            baseline_m: [0.05, 0.05],
            disparity_noise_px: [0.08, 0.08],
            disparity_step_px: [1.0 / 32.0, 1.0 / 32.0],
            speckle_max_area_px: [25, 25],
            speckle_max_diff_px: [1.0, 1.0],
        }
    }
}

fn reject(key: &str, value: impl std::fmt::Debug, problem: &str, fix: &str) -> SensorConfigError {
    SensorConfigError {
        key: format!("sensor.{key}"),
        value: format!("{value:?}"),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn check_value(key: &str, value: f64, min: f64, max: f64) -> Result<(), SensorConfigError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(reject(
            key,
            value,
            &format!("must lie in [{min}, {max}]"),
            &format!("set sensor.{key} within [{min}, {max}] in the scene config"),
        ))
    }
}

fn check_range(key: &str, range: [f64; 2], min: f64, max: f64) -> Result<(), SensorConfigError> {
    let [low, high] = range;
    if low.is_finite() && high.is_finite() && min <= low && low <= high && high <= max {
        Ok(())
    } else {
        Err(reject(
            key,
            range,
            &format!("must be [low, high] with {min} <= low <= high <= {max}"),
            &format!("set sensor.{key} to two numbers in that order; equal ends fix the value"),
        ))
    }
}

impl SensorConfig {
    /// Checks the values serde cannot; the error names the key and the fix.
    pub fn check(&self) -> Result<(), SensorConfigError> {
        let [a, b, c] = self.noise_coefficients;
        if ![a, b, c].iter().all(|v| v.is_finite()) || a < 0.0 || b < 0.0 {
            return Err(reject(
                "noise_coefficients",
                self.noise_coefficients,
                "sigma(z) = a + b (z - c)^2 needs finite a >= 0 and b >= 0",
                "e.g. [0.0012, 0.0019, 0.4] (Kinect-like) or [0, 0, 0] for no noise",
            ));
        }
        check_value("edge_jump_m", self.edge_jump_m, 1e-4, 10.0)?;
        check_value(
            "edge_hole_probability",
            self.edge_hole_probability,
            0.0,
            1.0,
        )?;
        check_value("grazing_angle_deg", self.grazing_angle_deg, 1.0, 90.0)?;
        check_value("max_range_m", self.max_range_m, 0.01, 1000.0)?;
        check_range("dark_luma_threshold", self.dark_luma_threshold, 0.0, 1.0)?;
        check_range(
            "dark_dropout_probability",
            self.dark_dropout_probability,
            0.0,
            1.0,
        )?;
        check_range("specular_saturation", self.specular_saturation, 0.0, 1e6)?;
        check_range(
            "specular_dropout_probability",
            self.specular_dropout_probability,
            0.0,
            1.0,
        )?;
        let [thin_low, thin_high] = self.thin_width_px;
        if thin_low > thin_high || thin_high > MAX_THIN_WIDTH_PX {
            return Err(reject(
                "thin_width_px",
                self.thin_width_px,
                &format!("must be [low, high] with low <= high <= {MAX_THIN_WIDTH_PX}"),
                "give pixel widths in that order; [0, 0] turns thin-structure dropout off",
            ));
        }
        check_range(
            "thin_dropout_probability",
            self.thin_dropout_probability,
            0.0,
            1.0,
        )?;
        check_range(
            "flying_pixel_fraction",
            self.flying_pixel_fraction,
            0.0,
            1.0,
        )?;
        let stereo = &self.stereo;
        check_range("stereo.baseline_m", stereo.baseline_m, 1e-3, 2.0)?;
        check_range(
            "stereo.disparity_noise_px",
            stereo.disparity_noise_px,
            0.0,
            10.0,
        )?;
        check_range(
            "stereo.disparity_step_px",
            stereo.disparity_step_px,
            1e-3,
            4.0,
        )?;
        let [area_low, area_high] = stereo.speckle_max_area_px;
        if area_low > area_high || area_high > MAX_SPECKLE_AREA_PX {
            return Err(reject(
                "stereo.speckle_max_area_px",
                stereo.speckle_max_area_px,
                &format!("must be [low, high] with low <= high <= {MAX_SPECKLE_AREA_PX}"),
                "give pixel counts in that order; [0, 0] turns the speckle filter off",
            ));
        }
        check_range(
            "stereo.speckle_max_diff_px",
            stereo.speckle_max_diff_px,
            1e-3,
            100.0,
        )
    }

    /// One frame's sensor. Draws nothing for ranges that are a single value.
    pub fn sample(&self, rng: &mut impl Rng) -> Sensor {
        Sensor {
            depth_model: self.depth_model,
            noise_coefficients: self.noise_coefficients,
            edge_jump_m: self.edge_jump_m,
            edge_hole_probability: self.edge_hole_probability,
            grazing_angle_deg: self.grazing_angle_deg,
            max_range_m: self.max_range_m,
            dark_luma_threshold: uniform(self.dark_luma_threshold, rng),
            dark_dropout_probability: uniform(self.dark_dropout_probability, rng),
            specular_saturation: uniform(self.specular_saturation, rng),
            specular_dropout_probability: uniform(self.specular_dropout_probability, rng),
            thin_width_px: uniform_count(self.thin_width_px, rng),
            thin_dropout_probability: uniform(self.thin_dropout_probability, rng),
            flying_pixel_fraction: uniform(self.flying_pixel_fraction, rng),
            baseline_m: uniform(self.stereo.baseline_m, rng),
            disparity_noise_px: uniform(self.stereo.disparity_noise_px, rng),
            disparity_step_px: uniform(self.stereo.disparity_step_px, rng),
            speckle_max_area_px: uniform_count(self.stereo.speckle_max_area_px, rng),
            speckle_max_diff_px: uniform(self.stereo.speckle_max_diff_px, rng),
        }
    }
}

/// Wider makes the square test meaningless for VGA objects.
const MAX_THIN_WIDTH_PX: u32 = 64;
const MAX_SPECKLE_AREA_PX: u32 = 100_000;

/// Uniform in `[low, high]`; draws nothing when the range is a single value, so fixed
/// settings keep the caller's random stream unchanged. A range `check` would reject (reversed,
/// infinite, NaN) gives `low` rather than a panic.
fn uniform(range: [f64; 2], rng: &mut impl Rng) -> f64 {
    let [low, high] = range;
    if low < high && (high - low).is_finite() {
        rng.gen_range(low..=high)
    } else {
        low
    }
}

fn uniform_count(range: [u32; 2], rng: &mut impl Rng) -> u32 {
    if range[0] >= range[1] {
        range[0]
    } else {
        rng.gen_range(range[0]..=range[1])
    }
}

/// One frame's sensor, drawn from [`SensorConfig`]; the fields mean what the config's keys
/// of the same names say.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    pub depth_model: DepthModel,
    pub noise_coefficients: [f64; 3],
    pub edge_jump_m: f64,
    pub edge_hole_probability: f64,
    pub grazing_angle_deg: f64,
    pub max_range_m: f64,
    pub dark_luma_threshold: f64,
    pub dark_dropout_probability: f64,
    pub specular_saturation: f64,
    pub specular_dropout_probability: f64,
    pub thin_width_px: u32,
    pub thin_dropout_probability: f64,
    pub flying_pixel_fraction: f64,
    pub baseline_m: f64,
    pub disparity_noise_px: f64,
    pub disparity_step_px: f64,
    pub speckle_max_area_px: u32,
    pub speckle_max_diff_px: f64,
}

/// What the renderer knows at each pixel, row-major, all of `depth_m`'s length. An empty
/// buffer means "not available" and turns off the artefacts that need it (see
/// [`SensorInputs::depth_only`]).
#[derive(Clone, Copy, Debug)]
pub struct SensorInputs<'a> {
    /// Ideal depth along the optical axis, metres; 0 or NaN where nothing is hit.
    pub depth_m: &'a [f32],
    /// Cosine of the angle between the surface normal and the ray to the camera.
    pub cos_incidence: &'a [f32],
    /// Luminance of the surface's albedo, 0..1 (dark-surface dropout).
    pub albedo_luma: &'a [f32],
    /// The renderer's specular (highlight) term, linear radiance (highlight dropout).
    pub specular: &'a [f32],
    /// Instance (or any surface) id; thin structures are found per id.
    pub instance: &'a [u16],
    pub width: usize,
    /// Focal length, pixels (the stereo model's disparity).
    pub fx_px: f64,
}

impl<'a> SensorInputs<'a> {
    /// Only the depth and the incidence: what [`DepthModel::Realistic`] needed before the
    /// surface-dependent artefacts.
    pub fn depth_only(
        depth_m: &'a [f32],
        cos_incidence: &'a [f32],
        width: usize,
        fx_px: f64,
    ) -> Self {
        Self {
            depth_m,
            cos_incidence,
            albedo_luma: &[],
            specular: &[],
            instance: &[],
            width,
            fx_px,
        }
    }
}

/// `buffer` when it covers every pixel; `None` when empty (not provided).
fn available<T>(buffer: &[T], pixels: usize) -> Option<&[T]> {
    debug_assert!(
        buffer.is_empty() || buffer.len() == pixels,
        "sensor input of {} values for {pixels} pixels",
        buffer.len()
    );
    (buffer.len() == pixels).then_some(buffer)
}

/// The depth image a sensor would report for the ideal depth (NaN = no reading): draws this
/// frame's sensor from `config`, then [`Sensor::sense`]. Ideal sensors draw nothing.
pub fn sense_depth(inputs: &SensorInputs, config: &SensorConfig, rng: &mut impl Rng) -> Vec<f32> {
    if config.depth_model == DepthModel::Ideal {
        return ideal(inputs.depth_m, config.max_range_m);
    }
    config.sample(rng).sense(inputs, rng)
}

/// `rng.gen_bool(p)` (the same draws for p in [0, 1]) that cannot panic on a hand-built
/// [`Sensor`] with p outside [0, 1] or NaN: those clamp, NaN counts as 0.
fn chance(rng: &mut impl Rng, p: f64) -> bool {
    rng.gen_bool(if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) })
}

/// Whether an ideal depth value is a surface: false for 0 (nothing hit) and NaN.
fn has_surface(z_m: f32) -> bool {
    z_m > 0.0
}

fn ideal(depth_m: &[f32], max_range_m: f64) -> Vec<f32> {
    depth_m
        .iter()
        .map(|&z| {
            if z > 0.0 && (z as f64) <= max_range_m {
                z
            } else {
                f32::NAN
            }
        })
        .collect()
}

impl Sensor {
    /// The depth image this sensor reports for the ideal depth (NaN = no reading).
    /// Millimetre quantisation happens in [`depth_to_millimetres`].
    ///
    /// Realistic model: Gaussian axial noise with sigma(z) = a + b (z - c)^2 (Nguyen, Izadi and
    /// Lovell 2012, for structured light), holes where the surface is seen at a grazing angle
    /// or next to a depth jump (where stereo matching and projector shadows fail), nothing
    /// beyond the maximum range. Stereo model: the same holes, then disparity
    /// d = fx B / z with Gaussian sub-pixel noise, rounded to the disparity step, turned back
    /// into depth; occlusion shadows; a speckle filter. Both: dark, specular and thin
    /// dropouts and flying pixels when their settings are on.
    pub fn sense(&self, inputs: &SensorInputs, rng: &mut impl Rng) -> Vec<f32> {
        let depth_m = inputs.depth_m;
        if self.depth_model == DepthModel::Ideal {
            return ideal(depth_m, self.max_range_m);
        }
        let pixels = depth_m.len();
        let width = inputs.width;
        let height = pixels / width.max(1);
        let cos_incidence = available(inputs.cos_incidence, pixels);
        let albedo_luma = available(inputs.albedo_luma, pixels)
            .filter(|_| self.dark_dropout_probability > 0.0 && self.dark_luma_threshold > 0.0);
        let specular =
            available(inputs.specular, pixels).filter(|_| self.specular_dropout_probability > 0.0);
        let thin = available(inputs.instance, pixels)
            .filter(|_| self.thin_width_px > 1 && self.thin_dropout_probability > 0.0)
            .map(|ids| {
                let side = self.thin_width_px.min(MAX_THIN_WIDTH_PX) as usize;
                thin_structures(ids, width, side)
            });
        let stereo = self.depth_model == DepthModel::Stereo;
        // fx B: disparity (pixels) times depth (metres).
        let focal_baseline = inputs.fx_px * self.baseline_m;
        let occluded = stereo.then(|| stereo_occlusions(depth_m, width, focal_baseline));

        let [a, b, c] = self.noise_coefficients;
        let cos_grazing = self.grazing_angle_deg.to_radians().cos() as f32;
        let jump = self.edge_jump_m as f32;
        let mut out = vec![f32::NAN; pixels];
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let z = depth_m[i];
                if !has_surface(z)
                    || z as f64 > self.max_range_m
                    || cos_incidence.is_some_and(|cos| cos[i] < cos_grazing)
                {
                    continue;
                }
                // Each artefact draws from `rng` only when it is on, so the Realistic model
                // keeps its earlier random stream when they are all off.
                if let Some(luma) = albedo_luma {
                    let darkness = 1.0 - luma[i] as f64 / self.dark_luma_threshold;
                    if darkness > 0.0 && chance(rng, self.dark_dropout_probability * darkness) {
                        continue;
                    }
                }
                if let Some(specular) = specular {
                    if specular[i] as f64 > self.specular_saturation
                        && chance(rng, self.specular_dropout_probability)
                    {
                        continue;
                    }
                }
                if let Some(thin) = &thin {
                    if thin[i] && chance(rng, self.thin_dropout_probability) {
                        continue;
                    }
                }
                if occluded.as_ref().is_some_and(|occluded| occluded[i]) {
                    continue;
                }
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < width).then(|| i + 1),
                    (y > 0).then(|| i - width),
                    (y + 1 < height).then(|| i + width),
                ];
                let is_jump = |j: usize| !has_surface(depth_m[j]) || (depth_m[j] - z).abs() > jump;
                let at_edge = neighbours.iter().flatten().any(|&j| is_jump(j));
                if at_edge && chance(rng, self.edge_hole_probability) {
                    continue;
                }
                let mut z_seen = z;
                if at_edge
                    && self.flying_pixel_fraction > 0.0
                    && chance(rng, self.flying_pixel_fraction)
                {
                    // Towards the farthest-off neighbour with a surface (background with no
                    // hit gives no depth to mix with).
                    let other = neighbours
                        .iter()
                        .flatten()
                        .map(|&j| depth_m[j])
                        .filter(|&zj| has_surface(zj) && (zj - z).abs() > jump)
                        .max_by(|p, q| (p - z).abs().total_cmp(&(q - z).abs()));
                    if let Some(other) = other {
                        // Strictly inside, so a flying pixel never coincides with either side.
                        let t: f32 = rng.gen_range(0.05..0.95);
                        z_seen = z + t * (other - z);
                    }
                }
                out[i] = if stereo {
                    self.stereo_reading(z_seen, focal_baseline, rng)
                } else {
                    let sigma = a + b * (z_seen as f64 - c).powi(2);
                    let noise: f64 = StandardNormal.sample(rng);
                    (z_seen as f64 + sigma * noise) as f32
                };
            }
        }
        if stereo && self.speckle_max_area_px > 1 {
            remove_speckles(
                &mut out,
                width,
                focal_baseline,
                self.speckle_max_area_px as usize,
                self.speckle_max_diff_px,
            );
        }
        out
    }

    /// Depth from a noisy disparity rounded to the sensor's step: the error grows as
    /// z^2 / (fx B) per pixel of disparity error.
    fn stereo_reading(&self, z_m: f32, focal_baseline: f64, rng: &mut impl Rng) -> f32 {
        let noise: f64 = StandardNormal.sample(rng);
        let disparity_px = focal_baseline / z_m as f64 + self.disparity_noise_px * noise;
        let step = self.disparity_step_px;
        let quantised_px = (disparity_px / step).round() * step;
        if quantised_px > 0.0 {
            (focal_baseline / quantised_px) as f32
        } else {
            f32::NAN
        }
    }
}

/// Pixels of `ids` not covered by any `side` x `side` square lying wholly inside their own id
/// region: a morphological opening per id, computed with run lengths and sliding windows in
/// O(pixels) whatever the side. A bar narrower than `side` pixels is all thin; a wider one is
/// not thin anywhere.
fn thin_structures(ids: &[u16], width: usize, side: usize) -> Vec<bool> {
    let pixels = ids.len();
    let height = pixels / width.max(1);
    if width == 0 || height == 0 {
        return vec![false; pixels];
    }
    // Same-id run to the right, capped at `side`.
    let mut run = vec![0u16; pixels];
    for y in 0..height {
        let row = y * width;
        for x in (0..width).rev() {
            let i = row + x;
            run[i] = if x + 1 < width && ids[i + 1] == ids[i] {
                (run[i + 1] + 1).min(side as u16)
            } else {
                1
            };
        }
    }
    // Rows below (same id at this column) whose run is full: a square fits with its top-left
    // corner here when `side` consecutive rows have one.
    let mut fits = vec![false; pixels];
    let mut rows_below = vec![0u16; width];
    for y in (0..height).rev() {
        for (x, below) in rows_below.iter_mut().enumerate() {
            let i = y * width + x;
            let continues = y + 1 < height && ids[i + width] == ids[i];
            *below = if run[i] as usize >= side {
                if continues {
                    (*below + 1).min(side as u16)
                } else {
                    1
                }
            } else {
                0
            };
            fits[i] = *below as usize >= side;
        }
    }
    // Dilate the corners by the square: first along rows (any corner within `side` to the
    // left), then along columns (any within `side` above).
    let mut along_rows = vec![false; pixels];
    for y in 0..height {
        let mut count = 0usize;
        for x in 0..width {
            let i = y * width + x;
            count += fits[i] as usize;
            if x >= side {
                count -= fits[i - side] as usize;
            }
            along_rows[i] = count > 0;
        }
    }
    let mut thin = vec![true; pixels];
    let mut counts = vec![0usize; width];
    for y in 0..height {
        for (x, count) in counts.iter_mut().enumerate() {
            let i = y * width + x;
            *count += along_rows[i] as usize;
            if y >= side {
                *count -= along_rows[i - side * width] as usize;
            }
            thin[i] = *count == 0;
        }
    }
    thin
}

/// Pixels the second camera (to the right, see [`StereoConfig`]) cannot see: a point at
/// column x with disparity d appears at x - d there; it is hidden when some pixel to its
/// right lands at or left of that (which makes that pixel nearer), or outside the second
/// image (x - d < 0).
fn stereo_occlusions(depth_m: &[f32], width: usize, focal_baseline: f64) -> Vec<bool> {
    let mut occluded = vec![false; depth_m.len()];
    if width == 0 {
        return occluded;
    }
    for (row, hidden) in depth_m
        .chunks_exact(width)
        .zip(occluded.chunks_exact_mut(width))
    {
        // The leftmost landing column of the pixels right of x.
        let mut leftmost = f64::INFINITY;
        for x in (0..width).rev() {
            let z = row[x];
            if !has_surface(z) {
                continue;
            }
            let landing = x as f64 - focal_baseline / z as f64;
            hidden[x] = landing < 0.0 || landing >= leftmost;
            leftmost = leftmost.min(landing);
        }
    }
    occluded
}

/// Removes connected regions of readings smaller than `max_area_px`, where 4-neighbours
/// connect when their disparities differ by at most `max_diff_px`: OpenCV's
/// `filterSpeckles`, which stereo pipelines run to drop isolated false matches.
fn remove_speckles(
    depth_m: &mut [f32],
    width: usize,
    focal_baseline: f64,
    max_area_px: usize,
    max_diff_px: f64,
) {
    let pixels = depth_m.len();
    let height = pixels / width.max(1);
    let disparity: Vec<f64> = depth_m
        .iter()
        .map(|&z| {
            if has_surface(z) {
                focal_baseline / z as f64
            } else {
                f64::NAN
            }
        })
        .collect();
    let mut visited = vec![false; pixels];
    let mut stack = Vec::new();
    let mut region = Vec::new();
    for start in 0..pixels {
        if visited[start] || disparity[start].is_nan() {
            continue;
        }
        visited[start] = true;
        stack.push(start);
        region.clear();
        while let Some(i) = stack.pop() {
            region.push(i);
            let (x, y) = (i % width, i / width);
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then(|| i + 1),
                (y > 0).then(|| i - width),
                (y + 1 < height).then(|| i + width),
            ];
            for j in neighbours.into_iter().flatten() {
                if !visited[j] && (disparity[j] - disparity[i]).abs() <= max_diff_px {
                    visited[j] = true;
                    stack.push(j);
                }
            }
        }
        if region.len() < max_area_px {
            for &i in &region {
                depth_m[i] = f32::NAN;
            }
        }
    }
}

/// 16UC1 depth in millimetres (REP 118's integer form): 0 where there is no reading or the
/// value does not fit.
pub fn depth_to_millimetres(depth_m: &[f32]) -> Vec<u16> {
    depth_m
        .iter()
        .map(|&z| {
            // + 0.5 and truncation rounds the non-negative values that can be stored.
            let mm = z as f64 * 1000.0 + 0.5;
            if mm >= 1.0 && mm < u16::MAX as f64 + 1.0 {
                mm as u16
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::Normal;

    /// `sense_depth` as it was before the surface-dependent artefacts and the stereo model
    /// (commit of 2026-12-02), kept verbatim to prove the defaults still reproduce it.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn sense_depth_before_artefacts(
        depth_m: &[f32],
        cos_incidence: &[f32],
        width: usize,
        config: &SensorConfig,
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        if config.depth_model == DepthModel::Ideal {
            return depth_m
                .iter()
                .map(|&z| {
                    if z > 0.0 && (z as f64) <= config.max_range_m {
                        z
                    } else {
                        f32::NAN
                    }
                })
                .collect();
        }
        let height = depth_m.len() / width.max(1);
        let [a, b, c] = config.noise_coefficients;
        let cos_grazing = config.grazing_angle_deg.to_radians().cos() as f32;
        let jump = config.edge_jump_m as f32;
        let unit = Normal::new(0.0, 1.0).expect("unit normal");
        let mut out = vec![f32::NAN; depth_m.len()];
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let z = depth_m[i];
                if !(z > 0.0) || z as f64 > config.max_range_m || cos_incidence[i] < cos_grazing {
                    continue;
                }
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < width).then(|| i + 1),
                    (y > 0).then(|| i - width),
                    (y + 1 < height).then(|| i + width),
                ];
                let at_edge = neighbours
                    .iter()
                    .flatten()
                    .any(|&j| !(depth_m[j] > 0.0) || (depth_m[j] - z).abs() > jump);
                if at_edge && rng.gen_bool(config.edge_hole_probability) {
                    continue;
                }
                let sigma = a + b * (z as f64 - c).powi(2);
                out[i] = (z as f64 + sigma * unit.sample(rng)) as f32;
            }
        }
        out
    }

    /// Blocks of random depth (some empty, some beyond range) with random incidence.
    fn random_scene(width: usize, height: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
        let mut depth = vec![0.0f32; width * height];
        for block_y in (0..height).step_by(6) {
            for block_x in (0..width).step_by(5) {
                let z = match rng.gen_range(0..10) {
                    0 => 0.0,
                    1 => 4.5,
                    _ => rng.gen_range(0.3f32..3.0),
                };
                for y in block_y..(block_y + 6).min(height) {
                    for x in block_x..(block_x + 5).min(width) {
                        depth[y * width + x] = z + 0.001 * x as f32;
                    }
                }
            }
        }
        let cos = (0..width * height)
            .map(|_| rng.gen_range(0.0f32..1.0))
            .collect();
        (depth, cos)
    }

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())
    }

    #[test]
    fn defaults_reproduce_the_earlier_sensor_and_random_stream() {
        let mut scene_rng = StdRng::seed_from_u64(21);
        let (width, height) = (53, 31);
        let (depth, cos) = random_scene(width, height, &mut scene_rng);
        let luma: Vec<f32> = (0..depth.len())
            .map(|_| scene_rng.gen_range(0.0f32..1.0))
            .collect();
        let specular: Vec<f32> = (0..depth.len())
            .map(|_| scene_rng.gen_range(0.0f32..3.0))
            .collect();
        let instance: Vec<u16> = (0..depth.len()).map(|i| (i % 7) as u16).collect();
        let full = SensorInputs {
            depth_m: &depth,
            cos_incidence: &cos,
            albedo_luma: &luma,
            specular: &specular,
            instance: &instance,
            width,
            fx_px: 500.0,
        };
        for (model, edge_hole_probability) in [
            (DepthModel::Realistic, 0.6),
            (DepthModel::Realistic, 0.0),
            (DepthModel::Realistic, 1.0),
            (DepthModel::Ideal, 0.6),
        ] {
            let config = SensorConfig {
                depth_model: model,
                edge_hole_probability,
                ..SensorConfig::default()
            };
            for seed in 0..3 {
                let mut old_rng = StdRng::seed_from_u64(seed);
                let mut new_rng = StdRng::seed_from_u64(seed);
                let old = sense_depth_before_artefacts(&depth, &cos, width, &config, &mut old_rng);
                let new = sense_depth(&full, &config, &mut new_rng);
                assert!(
                    same(&old, &new),
                    "{model:?} p={edge_hole_probability} seed {seed}"
                );
                assert_eq!(old_rng.gen::<u64>(), new_rng.gen::<u64>());
                let depth_only = SensorInputs::depth_only(&depth, &cos, width, 500.0);
                let mut rng = StdRng::seed_from_u64(seed);
                assert!(same(&old, &sense_depth(&depth_only, &config, &mut rng)));
            }
        }
    }

    #[test]
    fn noise_grows_with_distance_and_holes_follow_edges_and_grazing() {
        let cfg = SensorConfig::default();
        let mut rng = StdRng::seed_from_u64(1);
        let spread = |z: f32, rng: &mut StdRng| {
            let depth = vec![z; 64 * 64];
            let cos = vec![1.0; depth.len()];
            let out = sense_depth(
                &SensorInputs::depth_only(&depth, &cos, 64, 500.0),
                &cfg,
                rng,
            );
            let inner: Vec<f64> = out
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| v as f64 - z as f64)
                .collect();
            (inner.iter().map(|d| d * d).sum::<f64>() / inner.len() as f64).sqrt()
        };
        let near = spread(0.5, &mut rng);
        let far = spread(2.5, &mut rng);
        // sigma(0.5) = 1.2 mm, sigma(2.5) = 9.6 mm.
        assert!((near - 0.00122).abs() < 0.0002, "{near}");
        assert!((far - 0.0096).abs() < 0.001, "{far}");

        // A step of 0.3 m between columns 3 and 4, and a grazing column 7.
        let width = 8;
        let mut depth = vec![1.0f32; width * 4];
        let mut cos = vec![1.0f32; width * 4];
        for y in 0..4 {
            for x in 4..8 {
                depth[y * width + x] = 1.3;
            }
            cos[y * width + 7] = 0.1;
        }
        let always = SensorConfig {
            edge_hole_probability: 1.0,
            ..cfg.clone()
        };
        let inputs = SensorInputs::depth_only(&depth, &cos, width, 500.0);
        let out = sense_depth(&inputs, &always, &mut rng);
        for y in 0..4 {
            assert!(out[y * width + 3].is_nan() && out[y * width + 4].is_nan());
            assert!(out[y * width + 7].is_nan());
            assert!(out[y * width + 1].is_finite());
        }
    }

    /// A quiet sensor: no noise, no edge holes, so each test sees only its own artefact.
    fn quiet(model: DepthModel) -> SensorConfig {
        SensorConfig {
            depth_model: model,
            noise_coefficients: [0.0, 0.0, 0.0],
            edge_hole_probability: 0.0,
            stereo: StereoConfig {
                disparity_noise_px: [0.0, 0.0],
                disparity_step_px: [1e-3, 1e-3],
                ..StereoConfig::default()
            },
            ..SensorConfig::default()
        }
    }

    fn missing_fraction(out: &[f32]) -> f64 {
        out.iter().filter(|v| v.is_nan()).count() as f64 / out.len() as f64
    }

    #[test]
    fn dark_surfaces_lose_more_readings_the_darker_they_are() {
        let config = SensorConfig {
            dark_luma_threshold: [0.25, 0.25],
            dark_dropout_probability: [0.9, 0.9],
            ..quiet(DepthModel::Realistic)
        };
        let (width, pixels) = (100, 100 * 100);
        let depth = vec![1.0f32; pixels];
        let cos = vec![1.0f32; pixels];
        let mut rng = StdRng::seed_from_u64(2);
        let fractions: Vec<f64> = [0.02f32, 0.1, 0.2, 0.3, 0.8]
            .iter()
            .map(|&l| {
                let luma = vec![l; pixels];
                let inputs = SensorInputs {
                    albedo_luma: &luma,
                    ..SensorInputs::depth_only(&depth, &cos, width, 500.0)
                };
                missing_fraction(&sense_depth(&inputs, &config, &mut rng))
            })
            .collect();
        assert!(
            fractions.windows(2).all(|w| w[0] > w[1] || w[1] == 0.0),
            "{fractions:?}"
        );
        // p = 0.9 (1 - luma / 0.25).
        assert!((fractions[0] - 0.9 * 0.92).abs() < 0.03, "{fractions:?}");
        assert!((fractions[1] - 0.9 * 0.6).abs() < 0.03, "{fractions:?}");
        assert_eq!(fractions[3], 0.0);
    }

    #[test]
    fn specular_highlights_drop_out() {
        let config = SensorConfig {
            specular_saturation: [0.5, 0.5],
            specular_dropout_probability: [1.0, 1.0],
            ..quiet(DepthModel::Realistic)
        };
        let depth = vec![1.0f32; 20];
        let cos = vec![1.0f32; 20];
        let specular: Vec<f32> = (0..20).map(|i| if i < 10 { 0.2 } else { 0.8 }).collect();
        let inputs = SensorInputs {
            specular: &specular,
            ..SensorInputs::depth_only(&depth, &cos, 20, 500.0)
        };
        let out = sense_depth(&inputs, &config, &mut StdRng::seed_from_u64(3));
        assert!(out[..10].iter().all(|v| *v == 1.0));
        assert!(out[10..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn thin_structures_vanish_and_wide_ones_stay() {
        let (width, height) = (60, 40);
        let mut instance = vec![0u16; width * height];
        for y in 5..35 {
            instance[y * width + 10] = 1; // 1 px wide bar
            for x in 30..50 {
                instance[y * width + x] = 2; // 20 px wide bar
            }
        }
        // Same depth everywhere: only the thin rule can remove anything.
        let depth = vec![1.0f32; width * height];
        let cos = vec![1.0f32; width * height];
        let config = SensorConfig {
            thin_width_px: [3, 3],
            ..quiet(DepthModel::Realistic)
        };
        let inputs = SensorInputs {
            instance: &instance,
            ..SensorInputs::depth_only(&depth, &cos, width, 500.0)
        };
        let out = sense_depth(&inputs, &config, &mut StdRng::seed_from_u64(4));
        for (i, id) in instance.iter().enumerate() {
            match id {
                1 => assert!(out[i].is_nan(), "thin bar kept at {i}"),
                2 => assert!(out[i].is_finite(), "wide bar lost at {i}"),
                _ => {}
            }
        }
        // A 2 px bar is thin for a 3 px sensor, a 3 px one is not.
        let mut bars = vec![0u16; 20 * 10];
        for y in 0..10 {
            for x in 4..6 {
                bars[y * 20 + x] = 1;
            }
            for x in 10..13 {
                bars[y * 20 + x] = 2;
            }
        }
        let thin = thin_structures(&bars, 20, 3);
        for (i, id) in bars.iter().enumerate() {
            assert_eq!(thin[i], *id == 1, "pixel {i} id {id}");
        }
    }

    #[test]
    fn flying_pixels_lie_between_the_two_sides() {
        let width = 20;
        let height = 10;
        let depth: Vec<f32> = (0..width * height)
            .map(|i| if i % width < 10 { 1.0 } else { 1.5 })
            .collect();
        let cos = vec![1.0f32; depth.len()];
        let config = SensorConfig {
            flying_pixel_fraction: [1.0, 1.0],
            ..quiet(DepthModel::Realistic)
        };
        let inputs = SensorInputs::depth_only(&depth, &cos, width, 500.0);
        let out = sense_depth(&inputs, &config, &mut StdRng::seed_from_u64(5));
        for y in 0..height {
            for x in 0..width {
                let v = out[y * width + x];
                if x == 9 || x == 10 {
                    assert!(v > 1.0 && v < 1.5, "edge pixel ({x}, {y}) = {v}");
                } else {
                    assert_eq!(v, depth[y * width + x]);
                }
            }
        }
    }

    #[test]
    fn stereo_error_grows_with_the_square_of_depth() {
        let config = SensorConfig {
            stereo: StereoConfig {
                disparity_noise_px: [0.1, 0.1],
                disparity_step_px: [1.0 / 32.0, 1.0 / 32.0],
                speckle_max_area_px: [0, 0],
                ..StereoConfig::default()
            },
            ..quiet(DepthModel::Stereo)
        };
        let (width, height) = (300, 100);
        let mut rng = StdRng::seed_from_u64(6);
        let rms = |z: f32, rng: &mut StdRng| {
            let depth = vec![z; width * height];
            let cos = vec![1.0f32; depth.len()];
            let out = sense_depth(
                &SensorInputs::depth_only(&depth, &cos, width, 600.0),
                &config,
                rng,
            );
            let errors: Vec<f64> = out
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| (v - z) as f64)
                .collect();
            assert!(errors.len() > width * height / 2);
            (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt()
        };
        let at_1 = rms(1.0, &mut rng);
        let at_2 = rms(2.0, &mut rng);
        let at_3 = rms(3.0, &mut rng);
        // sigma_z = z^2 / (f B) sigma_d: 1 m, 600 px, 50 mm, 0.1 px -> 3.3 mm.
        let expected_1 = 0.1 / (600.0 * 0.05);
        assert!(
            (at_1 - expected_1).abs() < 0.1 * expected_1,
            "{at_1} vs {expected_1}"
        );
        assert!((at_2 / at_1 - 4.0).abs() < 0.4, "{}", at_2 / at_1);
        assert!((at_3 / at_1 - 9.0).abs() < 0.9, "{}", at_3 / at_1);
    }

    #[test]
    fn stereo_occlusion_shadows_fall_left_of_nearer_objects() {
        // Background at 1 m with a nearer block at 0.6 m in columns 100..140.
        let (width, height) = (200, 8);
        let depth: Vec<f32> = (0..width * height)
            .map(|i| {
                if (100..140).contains(&(i % width)) {
                    0.6
                } else {
                    1.0
                }
            })
            .collect();
        let cos = vec![1.0f32; depth.len()];
        let out = sense_depth(
            &SensorInputs::depth_only(&depth, &cos, width, 500.0),
            &quiet(DepthModel::Stereo),
            &mut StdRng::seed_from_u64(7),
        );
        // Disparities 25 px and 41.7 px: the second camera misses the 16.7 px of background
        // left of the block, and every column left of 25 (outside its image).
        for y in 0..height {
            let row = &out[y * width..(y + 1) * width];
            for (x, v) in row.iter().enumerate() {
                let hidden = x < 25 || (84..100).contains(&x);
                assert_eq!(v.is_nan(), hidden, "({x}, {y}) = {v}");
                if !hidden {
                    assert!((v - depth[y * width + x]).abs() < 2e-3, "({x}, {y}) = {v}");
                }
            }
        }
    }

    #[test]
    fn stereo_speckle_filter_removes_small_islands() {
        let (width, height) = (120, 40);
        let mut depth = vec![1.0f32; width * height];
        // A 3 x 3 island in front of the plane and a 10 x 10 one: the second is kept. (In front:
        // the second camera would not see a small hole behind the plane at all.)
        for y in 10..13 {
            for x in 60..63 {
                depth[y * width + x] = 0.7;
            }
        }
        for y in 20..30 {
            for x in 90..100 {
                depth[y * width + x] = 0.7;
            }
        }
        let cos = vec![1.0f32; depth.len()];
        let inputs = SensorInputs::depth_only(&depth, &cos, width, 500.0);
        let out = sense_depth(
            &inputs,
            &quiet(DepthModel::Stereo),
            &mut StdRng::seed_from_u64(8),
        );
        assert!(out[11 * width + 61].is_nan());
        assert!((out[25 * width + 95] - 0.7).abs() < 1e-2);
        assert!((out[35 * width + 60] - 1.0).abs() < 1e-2);
    }

    #[test]
    fn drawn_ranges_stay_inside_and_fixed_ones_draw_nothing() {
        let mut rng = StdRng::seed_from_u64(9);
        let fixed = SensorConfig::default().sample(&mut rng);
        assert_eq!(rng.gen::<u64>(), StdRng::seed_from_u64(9).gen::<u64>());
        assert_eq!(fixed.thin_width_px, 0);
        let config = SensorConfig {
            thin_width_px: [2, 5],
            flying_pixel_fraction: [0.1, 0.3],
            stereo: StereoConfig {
                baseline_m: [0.05, 0.12],
                ..StereoConfig::default()
            },
            ..SensorConfig::default()
        };
        for _ in 0..100 {
            let sensor = config.sample(&mut rng);
            assert!((2..=5).contains(&sensor.thin_width_px));
            assert!((0.1..=0.3).contains(&sensor.flying_pixel_fraction));
            assert!((0.05..=0.12).contains(&sensor.baseline_m));
        }
    }

    #[test]
    fn existing_configs_parse_and_new_keys_are_checked() {
        let plain: SensorConfig = serde_yaml::from_str("depth_model: realistic\n").unwrap();
        assert_eq!(plain, SensorConfig::default());
        let stereo: SensorConfig = serde_yaml::from_str(
            "depth_model: stereo\nflying_pixel_fraction: [0.0, 0.2]\nstereo:\n  baseline_m: [0.05, 0.095]\n",
        )
        .unwrap();
        assert_eq!(stereo.stereo.baseline_m, [0.05, 0.095]);
        assert!(stereo.check().is_ok());
        assert!(serde_yaml::from_str::<SensorConfig>("flying_pixels: [0, 1]").is_err());
        assert!(SensorConfig::default().check().is_ok());

        let key_of = |config: SensorConfig| config.check().unwrap_err().key;
        let base = SensorConfig::default;
        assert_eq!(
            key_of(SensorConfig {
                edge_hole_probability: 1.5,
                ..base()
            }),
            "sensor.edge_hole_probability"
        );
        assert_eq!(
            key_of(SensorConfig {
                noise_coefficients: [-1.0, 0.0, 0.0],
                ..base()
            }),
            "sensor.noise_coefficients"
        );
        assert_eq!(
            key_of(SensorConfig {
                dark_luma_threshold: [0.3, 0.1],
                ..base()
            }),
            "sensor.dark_luma_threshold"
        );
        assert_eq!(
            key_of(SensorConfig {
                thin_width_px: [4, 2],
                ..base()
            }),
            "sensor.thin_width_px"
        );
        assert_eq!(
            key_of(SensorConfig {
                flying_pixel_fraction: [0.0, f64::NAN],
                ..base()
            }),
            "sensor.flying_pixel_fraction"
        );
        let bad_stereo = StereoConfig {
            baseline_m: [0.0, 0.05],
            ..StereoConfig::default()
        };
        let err = SensorConfig {
            stereo: bad_stereo,
            ..base()
        }
        .check()
        .unwrap_err();
        assert_eq!(err.key, "sensor.stereo.baseline_m");
        assert!(err.to_string().contains("low <= high"), "{err}");
    }

    #[test]
    fn millimetres_round_and_mark_missing_as_zero() {
        assert_eq!(
            depth_to_millimetres(&[0.5004, 1.2346, f32::NAN, 70.0, -1.0]),
            [500, 1235, 0, 0, 0]
        );
    }
}
