//! How the generated world looks, randomised per scene so that networks learn shapes rather
//! than our one bin's colour (domain randomisation): the colour camera's imaging pipeline
//! ([`develop`]: linear radiance to 8-bit), procedural surface materials and textures
//! ([`Material::albedo_at`], evaluated by the renderer at every hit) and random colours.
//!
//! Every config here is a set of `[low, high]` ranges drawn once per scene. A range with
//! `low == high` draws nothing from the random stream, so the neutral defaults reproduce the
//! generator's earlier output and random streams exactly.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;

use nalgebra::{Point3, Vector3};
use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A rejected config value: which key, what was wrong, how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{key} = {value}: {problem}; {fix}")]
pub struct AppearanceConfigError {
    /// The key relative to its struct (`exposure`); see [`AppearanceConfigError::within`].
    pub key: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

impl AppearanceConfigError {
    /// Prefixes the key with the section the struct sits in (`camera.imaging`), since only the
    /// caller knows where in the scene config the struct lives.
    pub fn within(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

/// `[low, high]` with `min <= low <= high <= max`, all finite.
fn check_range(
    key: &str,
    range: [f64; 2],
    min: f64,
    max: f64,
) -> Result<(), AppearanceConfigError> {
    let [low, high] = range;
    if low.is_finite() && high.is_finite() && min <= low && low <= high && high <= max {
        Ok(())
    } else {
        Err(AppearanceConfigError {
            key: key.into(),
            value: format!("{range:?}"),
            problem: format!("must be [low, high] with {min} <= low <= high <= {max}"),
            fix: format!("set {key} to two numbers in that order within [{min}, {max}]; equal ends fix the value"),
        })
    }
}

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

// ---------------------------------------------------------------------------------------
// Imaging: the colour camera
// ---------------------------------------------------------------------------------------

/// The colour camera's imaging pipeline, as ranges drawn per scene. The defaults are neutral:
/// [`develop`] then reproduces plain 8-bit quantisation of the linear radiance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagingConfig {
    /// Multiplies the linear radiance (auto-exposure error, aperture, gain).
    pub exposure: [f64; 2],
    /// Display gamma: output = value^(1 / gamma). 1 keeps values linear.
    pub gamma: [f64; 2],
    /// Per-channel gain, each of R, G, B drawn independently (white-balance error).
    pub white_balance_gain: [f64; 2],
    /// Read noise sigma on 0..1 values, independent of the signal.
    pub noise_sigma: [f64; 2],
    /// Photon (shot) noise scale k: sigma = sqrt(k * value) on 0..1 values.
    pub shot_noise: [f64; 2],
    /// Optical blur, Gaussian sigma in pixels (defocus, motion, cheap lenses).
    pub blur_sigma_px: [f64; 2],
    /// Fraction of light lost in the image corners; falls off with the squared distance from
    /// the centre.
    pub vignetting: [f64; 2],
}

impl Default for ImagingConfig {
    fn default() -> Self {
        Self {
            exposure: [1.0, 1.0],
            gamma: [1.0, 1.0],
            white_balance_gain: [1.0, 1.0],
            noise_sigma: [0.0, 0.0],
            shot_noise: [0.0, 0.0],
            blur_sigma_px: [0.0, 0.0],
            vignetting: [0.0, 0.0],
        }
    }
}

impl ImagingConfig {
    /// Checks the ranges serde cannot; the error names the key and the fix.
    pub fn check(&self) -> Result<(), AppearanceConfigError> {
        check_range("exposure", self.exposure, 1e-3, 100.0)?;
        check_range("gamma", self.gamma, 0.2, 5.0)?;
        check_range("white_balance_gain", self.white_balance_gain, 1e-3, 10.0)?;
        check_range("noise_sigma", self.noise_sigma, 0.0, 1.0)?;
        check_range("shot_noise", self.shot_noise, 0.0, 1.0)?;
        check_range("blur_sigma_px", self.blur_sigma_px, 0.0, MAX_BLUR_SIGMA_PX)?;
        check_range("vignetting", self.vignetting, 0.0, 1.0)
    }

    /// One scene's camera. Draws nothing for ranges that are a single value.
    pub fn sample(&self, rng: &mut impl Rng) -> Imaging {
        Imaging {
            exposure: uniform(self.exposure, rng),
            gamma: uniform(self.gamma, rng),
            white_balance: [(); 3].map(|_| uniform(self.white_balance_gain, rng)),
            noise_sigma: uniform(self.noise_sigma, rng),
            shot_noise: uniform(self.shot_noise, rng),
            blur_sigma_px: uniform(self.blur_sigma_px, rng),
            vignetting: uniform(self.vignetting, rng),
        }
    }
}

/// Larger blurs make the kernel wider than useful and [`develop`] slow.
const MAX_BLUR_SIGMA_PX: f64 = 10.0;

/// One scene's colour camera, drawn from [`ImagingConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct Imaging {
    pub exposure: f64,
    pub gamma: f64,
    /// Gains for R, G, B.
    pub white_balance: [f64; 3],
    pub noise_sigma: f64,
    pub shot_noise: f64,
    pub blur_sigma_px: f64,
    pub vignetting: f64,
}

impl Imaging {
    /// Plain quantisation of the linear radiance: the generator's look before randomisation.
    pub fn neutral() -> Self {
        Self {
            exposure: 1.0,
            gamma: 1.0,
            white_balance: [1.0; 3],
            noise_sigma: 0.0,
            shot_noise: 0.0,
            blur_sigma_px: 0.0,
            vignetting: 0.0,
        }
    }
}

/// Linear radiance (3 f32 per pixel, row-major RGB, 0..1 nominal) to 8-bit RGB.
///
/// Stages, in the order a camera applies them: exposure and white balance, vignetting,
/// Gaussian blur (separable, edges replicated), shot and read noise, gamma, rounding to 8 bits.
/// Neutral stages are skipped; with [`Imaging::neutral`] every value becomes exactly
/// `((x as f64).clamp(0.0, 1.0) * 255.0 + 0.5) as u8` and `rng` is not touched. Noise draws
/// one `u64` from `rng` per call.
///
/// The output holds `3 * width * height` bytes; pixels `radiance` does not cover are black.
pub fn develop(
    radiance: &[f32],
    width: usize,
    height: usize,
    imaging: &Imaging,
    rng: &mut impl Rng,
) -> Vec<u8> {
    let len = 3 * width * height;
    debug_assert_eq!(
        radiance.len(),
        len,
        "radiance must hold 3 * width * height values"
    );
    let radiance = &radiance[..len.min(radiance.len())];
    let gains = imaging.white_balance.map(|g| (g * imaging.exposure) as f32);
    let is_linear = imaging.gamma == 1.0;
    let is_noisy = imaging.noise_sigma > 0.0 || imaging.shot_noise > 0.0;
    let is_blurred = imaging.blur_sigma_px > 0.0;
    if gains == [1.0; 3] && imaging.vignetting == 0.0 && !is_blurred && !is_noisy && is_linear {
        let mut out: Vec<u8> = radiance.iter().map(|&x| quantise_linear(x)).collect();
        out.resize(len, 0);
        return out;
    }

    let mut image = vec![0.0f32; len];
    expose(
        radiance,
        width,
        height,
        gains,
        imaging.vignetting,
        &mut image,
    );
    if is_blurred {
        // Capped as `check` caps it, so a hand-built Imaging cannot ask for a huge kernel.
        let sigma_px = imaging.blur_sigma_px.min(MAX_BLUR_SIGMA_PX);
        gaussian_blur(&mut image, width, height, sigma_px);
    }
    let noise = is_noisy.then(|| PixelNoise {
        read_variance: (imaging.noise_sigma * imaging.noise_sigma) as f32,
        shot: imaging.shot_noise as f32,
        bits: WyRand::new(rng.gen()),
    });
    // One monomorphised loop per rounding, so the per-value work has no branches.
    if is_linear {
        finish(&image, noise, quantise_linear)
    } else {
        let lut = GammaLut::new(imaging.gamma);
        finish(&image, noise, |x| lut.quantise(x))
    }
}

/// Shot and read noise for [`develop`].
struct PixelNoise {
    read_variance: f32,
    shot: f32,
    bits: WyRand,
}

/// The last pass of [`develop`]: noise (if any), then gamma and rounding by `quantise`.
fn finish(image: &[f32], noise: Option<PixelNoise>, quantise: impl Fn(f32) -> u8) -> Vec<u8> {
    let Some(mut noise) = noise else {
        return image.iter().map(|&x| quantise(x)).collect();
    };
    let normal = standard_normal_table();
    let mut out = vec![0u8; image.len()];
    // Blocks of values: the square roots for a whole block vectorise (one at a time they
    // were half of this pass), and 320 is a multiple of the five values one draw feeds.
    const BLOCK: usize = 320;
    let mut sigmas = [0.0f32; BLOCK];
    for (out, values) in out.chunks_mut(BLOCK).zip(image.chunks(BLOCK)) {
        let sigmas = &mut sigmas[..values.len()];
        for (sigma, &x) in sigmas.iter_mut().zip(values) {
            *sigma = (noise.shot * x.max(0.0) + noise.read_variance).sqrt();
        }
        for ((out, values), sigmas) in out
            .chunks_mut(5)
            .zip(values.chunks(5))
            .zip(sigmas.chunks(5))
        {
            // One 64-bit draw feeds five 12-bit table indices.
            let mut bits = noise.bits.next_u64();
            for ((o, &x), &sigma) in out.iter_mut().zip(values).zip(sigmas) {
                let n = normal[(bits as usize) & (NORMAL_TABLE_LEN - 1)];
                bits >>= 12;
                *o = quantise(x + sigma * n);
            }
        }
    }
    out
}

/// The generator's 8-bit rounding of a linear value: + 0.5 and truncation rounds a
/// non-negative value without libm's `round`. Shipped sample data depends on it bit for bit.
fn quantise_linear(x: f32) -> u8 {
    ((x as f64).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// Exposure, white balance and vignetting in one pass over the frame.
fn expose(
    radiance: &[f32],
    width: usize,
    height: usize,
    gains: [f32; 3],
    vignetting: f64,
    image: &mut [f32],
) {
    // Vignetting 1 - v r^2 / r_corner^2, split into a column and a row term so the pass needs
    // no per-pixel distance.
    let half_w = width as f64 / 2.0;
    let half_h = height as f64 / 2.0;
    let scale = vignetting / (half_w * half_w + half_h * half_h).max(1e-12);
    let column_loss: Vec<f32> = (0..width)
        .map(|x| ((x as f64 + 0.5 - half_w).powi(2) * scale) as f32)
        .collect();
    for (y, (out_row, in_row)) in image
        .chunks_exact_mut(3 * width.max(1))
        .zip(radiance.chunks(3 * width.max(1)))
        .enumerate()
    {
        let row_loss = ((y as f64 + 0.5 - half_h).powi(2) * scale) as f32;
        for ((out, pixel), loss) in out_row
            .chunks_exact_mut(3)
            .zip(in_row.chunks_exact(3))
            .zip(&column_loss)
        {
            let falloff = 1.0 - row_loss - loss;
            for c in 0..3 {
                out[c] = pixel[c] * gains[c] * falloff;
            }
        }
    }
}

/// Separable Gaussian blur of an interleaved RGB f32 image, borders replicated (so a constant
/// image stays constant). The inner loops are slice-wide multiply-adds the compiler
/// vectorises; only the `radius` pixels at each border take the clamped path.
fn gaussian_blur(image: &mut [f32], width: usize, height: usize, sigma_px: f64) {
    if width == 0 || height == 0 {
        return;
    }
    // 3 sigma holds 99.7 % of the weight.
    let radius = ((3.0 * sigma_px).ceil() as usize).max(1);
    let raw: Vec<f64> = (0..=2 * radius)
        .map(|j| {
            let d = j as f64 - radius as f64;
            (-0.5 * d * d / (sigma_px * sigma_px)).exp()
        })
        .collect();
    let total: f64 = raw.iter().sum();
    let kernel: Vec<f32> = raw.iter().map(|k| (k / total) as f32).collect();

    let stride = 3 * width;
    let mut scratch = vec![0.0f32; image.len()];
    // Horizontal: image -> scratch.
    for (src, dst) in image
        .chunks_exact(stride)
        .zip(scratch.chunks_exact_mut(stride))
    {
        let clamped = |x: usize, c: usize| {
            let mut sum = 0.0f32;
            for (j, k) in kernel.iter().enumerate() {
                let sx = (x + j).saturating_sub(radius).min(width - 1);
                sum += k * src[3 * sx + c];
            }
            sum
        };
        if width > 2 * radius {
            let n = 3 * (width - 2 * radius);
            symmetric_taps(&mut dst[3 * radius..3 * radius + n], &kernel, |j| {
                &src[3 * j..3 * j + n]
            });
            for x in (0..radius).chain(width - radius..width) {
                for c in 0..3 {
                    dst[3 * x + c] = clamped(x, c);
                }
            }
        } else {
            for x in 0..width {
                for c in 0..3 {
                    dst[3 * x + c] = clamped(x, c);
                }
            }
        }
    }
    // Vertical: scratch -> image, whole rows at a time.
    for (y, dst) in image.chunks_exact_mut(stride).enumerate() {
        symmetric_taps(dst, &kernel, |j| {
            let sy = (y + j).saturating_sub(radius).min(height - 1);
            &scratch[sy * stride..(sy + 1) * stride]
        });
    }
}

/// `out = sum_j kernel[j] * tap(j)` for a symmetric kernel of odd length, summing the mirrored
/// taps before multiplying (half the multiplies). Whole slices at a time, so it vectorises.
fn symmetric_taps<'a>(out: &mut [f32], kernel: &[f32], tap: impl Fn(usize) -> &'a [f32]) {
    let radius = kernel.len() / 2;
    for (o, &c) in out.iter_mut().zip(tap(radius)) {
        *o = kernel[radius] * c;
    }
    for (j, &k) in kernel[..radius].iter().enumerate() {
        for ((o, &a), &b) in out.iter_mut().zip(tap(j)).zip(tap(2 * radius - j)) {
            *o += k * (a + b);
        }
    }
}

/// Gamma and 8-bit rounding as one table lookup: `powf` per value would cost more than the
/// rest of [`develop`]. Indexed by sqrt(value), which spends the entries where x^(1/gamma) is
/// steep (near black); 4096 entries keep the error below 0.1 of an 8-bit step for gamma <= 3.
struct GammaLut {
    table: [u8; GAMMA_LUT_LEN],
}

/// A power of two, see [`GammaLut::quantise`].
const GAMMA_LUT_LEN: usize = 4096;

impl GammaLut {
    fn new(gamma: f64) -> Self {
        let last = (GAMMA_LUT_LEN - 1) as f64;
        let mut table = [0u8; GAMMA_LUT_LEN];
        for (i, entry) in table.iter_mut().enumerate() {
            let t = i as f64 / last;
            *entry = ((t * t).powf(1.0 / gamma) * 255.0 + 0.5) as u8;
        }
        Self { table }
    }

    fn quantise(&self, x: f32) -> u8 {
        // NaN survives the clamp and becomes index 0 in the cast: black, as without gamma.
        // Through i32, not straight to usize: x86 has no unsigned 64-bit conversion, and the
        // emulated one branches on the data, which made this loop seven times slower. The
        // index is at most LEN - 1 already; the mask (LEN is a power of two) lets the compiler
        // drop the bounds check, where a clamp cost another factor of three.
        let t = x.clamp(0.0, 1.0).sqrt();
        let index = (t * (GAMMA_LUT_LEN - 1) as f32 + 0.5) as i32 as usize;
        self.table[index & (GAMMA_LUT_LEN - 1)]
    }
}

/// A fast 64-bit generator for per-value noise: a ChaCha draw plus a Ziggurat sample per
/// value costs ~8 ms per VGA frame, past the generator's 25 fps budget.
struct WyRand {
    state: u64,
}

impl WyRand {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// wyrand (Wang Yi), which passes BigCrush and PractRand.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.state as u128).wrapping_mul((self.state ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }
}

/// Entries of [`standard_normal_table`]: a power of two, indexed by 12 random bits.
const NORMAL_TABLE_LEN: usize = 4096;

/// The standard normal's quantiles at the centres of 4096 equally likely intervals, scaled to
/// unit variance: indexing it with uniform random bits samples a Gaussian (tails cut at 3.5
/// sigma, which image noise does not miss) for the price of a load.
fn standard_normal_table() -> &'static [f32; NORMAL_TABLE_LEN] {
    static TABLE: OnceLock<[f32; NORMAL_TABLE_LEN]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let quantiles: Vec<f64> = (0..NORMAL_TABLE_LEN)
            .map(|i| inverse_normal_cdf((i as f64 + 0.5) / NORMAL_TABLE_LEN as f64))
            .collect();
        let variance = quantiles.iter().map(|q| q * q).sum::<f64>() / NORMAL_TABLE_LEN as f64;
        let scale = 1.0 / variance.sqrt();
        let mut table = [0.0f32; NORMAL_TABLE_LEN];
        for (t, q) in table.iter_mut().zip(&quantiles) {
            *t = (q * scale) as f32;
        }
        table
    })
}

/// The standard normal quantile for 0 < p < 1: Acklam's rational approximation (relative
/// error below 1.2e-9), which needs no special functions beyond ln and sqrt.
// The published coefficients, digit for digit, though f64 rounds the last of a few.
#[allow(clippy::excessive_precision)]
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_690e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
// ---------------------------------------------------------------------------------------
// Materials and procedural textures
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextureKind {
    /// The base albedo everywhere.
    Plain,
    /// Smooth lattice noise, three octaves: mottled plastic, cardboard, wood.
    Noise,
    /// Thin light line segments: worn bins and tools.
    Scratches,
    /// A few soft-edged darker or lighter blotches: dirt, oil, sun bleaching.
    Stains,
    /// Parallel bands: labels, tape, ribbed plastic.
    Stripes,
    Checker,
    /// Small dots: granite-like or printed speckle.
    Speckle,
    /// A photograph of a real surface (`photos`: brick, gravel, grass...), its lightness
    /// tiled across the surface, one image `scale_m` wide.
    Photo,
}

/// A surface's look as ranges drawn per scene (or per object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurfaceConfig {
    /// Texture kinds to choose from, uniformly.
    pub kinds: Vec<TextureKind>,
    /// Feature size, metres: noise cell, scratch cell (scratches are about half as long),
    /// stain size, stripe period, checker square, speckle dot spacing.
    pub scale_m: [f64; 2],
    /// How far the texture pulls the albedo towards white (lighter features) or black (darker
    /// ones): 0 none, 1 all the way.
    pub contrast: [f64; 2],
    /// Highlight strength: 0 matte .. 1 mirror-like.
    pub specular: [f64; 2],
    /// Phong/Blinn exponent: larger gives smaller, sharper highlights.
    pub shininess: [f64; 2],
    /// PNG photographs for the `photo` kind: files or folders of them (relative to the
    /// working directory).
    pub photos: Vec<PathBuf>,
}

impl Default for SurfaceConfig {
    fn default() -> Self {
        Self::matte_plain()
    }
}

/// The renderer's highlight settings before materials were randomised.
const MATTE_SPECULAR: f64 = 0.04;
const GLOSSY_SPECULAR: f64 = 0.35;
const SHININESS: f64 = 32.0;

impl SurfaceConfig {
    /// Untextured and matte: the floor's and bin's look before randomisation.
    pub fn matte_plain() -> Self {
        Self {
            kinds: vec![TextureKind::Plain],
            scale_m: [0.02, 0.02],
            contrast: [0.0, 0.0],
            specular: [MATTE_SPECULAR, MATTE_SPECULAR],
            shininess: [SHININESS, SHININESS],
            photos: Vec::new(),
        }
    }

    /// Untextured with a plastic highlight: the objects' look before randomisation.
    pub fn glossy_plain() -> Self {
        Self {
            specular: [GLOSSY_SPECULAR, GLOSSY_SPECULAR],
            ..Self::matte_plain()
        }
    }

    /// Checks the ranges serde cannot; the error names the key and the fix.
    pub fn check(&self) -> Result<(), AppearanceConfigError> {
        if self.kinds.is_empty() {
            return Err(AppearanceConfigError {
                key: "kinds".into(),
                value: "[]".into(),
                problem: "must list at least one texture kind".into(),
                fix: "use [plain] for untextured surfaces, or any of plain, noise, scratches, \
                      stains, stripes, checker, speckle"
                    .into(),
            });
        }
        if self.kinds.contains(&TextureKind::Photo) && self.photos.is_empty() {
            return Err(AppearanceConfigError {
                key: "photos".into(),
                value: "[]".into(),
                problem: "kinds names photo but photos lists no PNG file or folder".into(),
                fix: "add photos: [data/textures/] (scripts/setup.sh puts photographs there)"
                    .into(),
            });
        }
        check_range("scale_m", self.scale_m, 1e-4, 10.0)?;
        check_range("contrast", self.contrast, 0.0, 1.0)?;
        check_range("specular", self.specular, 0.0, 1.0)?;
        check_range("shininess", self.shininess, 1.0, 10_000.0)
    }

    /// One surface's material with the given base colour. Draws nothing for single-valued
    /// ranges, a single kind, or a plain texture, so [`SurfaceConfig::matte_plain`] keeps the
    /// random stream unchanged.
    pub fn sample(&self, base_albedo: [f64; 3], rng: &mut impl Rng) -> Material {
        self.sample_with(base_albedo, &[], rng)
    }

    /// As [`SurfaceConfig::sample`], the `photo` kind drawing one of `photos` (the loaded
    /// images of this surface's `photos`; without any it falls back to `noise`).
    pub fn sample_with(
        &self,
        base_albedo: [f64; 3],
        photos: &[Arc<Photo>],
        rng: &mut impl Rng,
    ) -> Material {
        let kind = match self.kinds.len() {
            0 => TextureKind::Plain,
            1 => self.kinds[0],
            n => self.kinds[rng.gen_range(0..n)],
        };
        let specular = uniform(self.specular, rng);
        let shininess = uniform(self.shininess, rng);
        let kind = if kind == TextureKind::Photo && photos.is_empty() {
            TextureKind::Noise
        } else {
            kind
        };
        let texture = if kind == TextureKind::Plain {
            Texture::plain()
        } else {
            let scale_m = uniform(self.scale_m, rng);
            let photo = (kind == TextureKind::Photo)
                .then(|| photos[rng.gen_range(0..photos.len())].clone());
            Texture {
                kind,
                photo,
                scale_m,
                contrast: uniform(self.contrast, rng),
                seed: rng.gen(),
                direction: random_unit_vector(rng),
                // Wholly light or dark stripes would be no stripes.
                duty: rng.gen_range(0.25..=0.75),
                offset_m: [(); 3].map(|_| rng.gen::<f64>() * scale_m),
                // Stains cover roughly 10..40 % of the surface (of the normalised noise's
                // range above this level).
                threshold: rng.gen_range(0.15..=0.5),
                // Stains and speckle: darker in two of three surfaces (dirt is more common
                // than bleaching).
                polarity: if rng.gen_bool(2.0 / 3.0) { -1.0 } else { 1.0 },
            }
        };
        Material {
            albedo: base_albedo,
            specular,
            shininess,
            texture,
        }
    }
}

/// What the renderer shades a surface with.
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    /// Base diffuse colour, linear, 0..1 per channel.
    pub albedo: [f64; 3],
    /// Highlight strength, 0 matte .. 1 mirror-like.
    pub specular: f64,
    /// Highlight exponent.
    pub shininess: f64,
    pub texture: Texture,
}

impl Material {
    /// Untextured material.
    pub fn plain(albedo: [f64; 3], specular: f64, shininess: f64) -> Self {
        Self {
            albedo,
            specular,
            shininess,
            texture: Texture::plain(),
        }
    }

    /// Albedo at a point given in the surface's own frame (metres), so the texture moves with
    /// the object. Plain textures return [`Material::albedo`] unchanged; others lie in [0, 1].
    pub fn albedo_at(&self, point_local_m: &Point3<f64>) -> [f64; 3] {
        let pull = self.texture.contrast * self.texture.modulation(point_local_m);
        if pull == 0.0 {
            return self.albedo;
        }
        // Towards white for lighter features and towards black for darker ones, so textures
        // show on black and white surfaces alike.
        self.albedo.map(|a| {
            let textured = if pull > 0.0 {
                a + pull * (1.0 - a)
            } else {
                a * (1.0 + pull)
            };
            textured.clamp(0.0, 1.0)
        })
    }
}

/// A photograph's lightness, centred on its mean and scaled into [-1, 1]: what the `photo`
/// texture pulls the albedo by.
#[derive(Clone, Debug, PartialEq)]
pub struct Photo {
    pub width: usize,
    pub height: usize,
    modulation: Vec<f32>,
}

impl Photo {
    /// Reads an 8-bit grey, grey-alpha, RGB or RGBA PNG.
    pub fn load(path: &Path) -> Result<Self, String> {
        let fail = |e: &dyn std::fmt::Display| format!("photo texture {}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| fail(&e))?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| fail(&"image too large"))?;
        if size > 64 << 20 {
            return Err(fail(&"larger than 64 MB decoded: use a smaller image"));
        }
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| fail(&e))?;
        let channels = info.color_type.samples();
        let (width, height) = (info.width as usize, info.height as usize);
        if width == 0 || height == 0 {
            return Err(fail(&"the image is empty"));
        }
        let luma: Vec<f32> = buf[..info.buffer_size()]
            .chunks_exact(channels)
            .map(|px| match channels {
                1 | 2 => px[0] as f32,
                _ => 0.2126 * px[0] as f32 + 0.7152 * px[1] as f32 + 0.0722 * px[2] as f32,
            })
            .collect();
        Ok(Self::from_luma(width, height, &luma))
    }

    /// From lightness values of any scale, row-major.
    pub fn from_luma(width: usize, height: usize, luma: &[f32]) -> Self {
        let mean = luma.iter().sum::<f32>() / luma.len().max(1) as f32;
        let spread = luma
            .iter()
            .map(|v| (v - mean).abs())
            .fold(1e-6_f32, f32::max);
        Self {
            width,
            height,
            modulation: luma.iter().map(|v| (v - mean) / spread).collect(),
        }
    }

    /// The modulation at image coordinates in image widths (tiled), nearest texel.
    fn at(&self, u: f64, v: f64) -> f64 {
        let x = ((u.rem_euclid(1.0)) * self.width as f64) as usize;
        let y = ((v * self.width as f64 / self.height as f64).rem_euclid(1.0) * self.height as f64)
            as usize;
        self.modulation[y.min(self.height - 1) * self.width + x.min(self.width - 1)] as f64
    }
}

/// The PNG files a `photos` entry names: the file, or the PNGs of a folder, sorted.
pub fn photo_files(entry: &Path) -> Result<Vec<PathBuf>, String> {
    if entry.is_file() {
        return Ok(vec![entry.to_owned()]);
    }
    let read = std::fs::read_dir(entry).map_err(|e| {
        format!(
            "photos entry {}: {e} (scripts/setup.sh puts photographs in data/textures/)",
            entry.display()
        )
    })?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "photos entry {} holds no PNG file",
            entry.display()
        ));
    }
    Ok(files)
}

/// A procedural texture: a kind and its drawn parameters. Every pattern is defined in 3-D, so
/// it works on any surface without texture coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    pub kind: TextureKind,
    /// Feature size, metres (see [`SurfaceConfig::scale_m`]).
    pub scale_m: f64,
    /// 0..1, see [`SurfaceConfig::contrast`].
    pub contrast: f64,
    /// Seeds the lattice hash, so every surface gets its own pattern.
    pub seed: u32,
    /// Unit vector: stripes run across it (their period is measured along it).
    pub direction: Vector3<f64>,
    /// Stripes: the lighter fraction of each period.
    pub duty: f64,
    /// Shifts the pattern so lattice and checker boundaries do not fall on the object's faces
    /// (which often lie at round coordinates), metres.
    pub offset_m: [f64; 3],
    /// Stains: normalised noise level where a stain begins.
    pub threshold: f64,
    /// The `photo` kind's image.
    pub photo: Option<Arc<Photo>>,
    /// Stains and speckle: -1 darker, +1 lighter.
    pub polarity: f64,
}

impl Texture {
    pub fn plain() -> Self {
        Self {
            kind: TextureKind::Plain,
            scale_m: 1.0,
            contrast: 0.0,
            seed: 0,
            direction: Vector3::x(),
            duty: 0.5,
            offset_m: [0.0; 3],
            threshold: 0.5,
            polarity: -1.0,
            photo: None,
        }
    }

    /// The pattern at a point in the surface's frame, in [-1, 1]: positive lightens, negative
    /// darkens.
    pub fn modulation(&self, point_local_m: &Point3<f64>) -> f64 {
        if self.kind == TextureKind::Plain {
            return 0.0;
        }
        let inv_scale = 1.0 / self.scale_m;
        // Position in feature cells.
        let q = [0, 1, 2].map(|k| (point_local_m[k] + self.offset_m[k]) * inv_scale);
        match self.kind {
            TextureKind::Plain => 0.0,
            TextureKind::Noise => (fbm(self.seed, q, 3) * NOISE_NORMALISATION).clamp(-1.0, 1.0),
            TextureKind::Scratches => scratches(self.seed, q),
            TextureKind::Stains => {
                let level = (fbm(self.seed, q, 2) * NOISE_NORMALISATION).clamp(-1.0, 1.0);
                self.polarity * smoothstep(self.threshold, self.threshold + STAIN_EDGE, level)
            }
            TextureKind::Stripes => {
                let along =
                    q[0] * self.direction.x + q[1] * self.direction.y + q[2] * self.direction.z;
                if along - along.floor() < self.duty {
                    1.0
                } else {
                    -1.0
                }
            }
            TextureKind::Photo => match &self.photo {
                Some(photo) => {
                    // Two axes across `direction` span the image plane.
                    let d = self.direction;
                    let helper = if d.x.abs() < 0.9 {
                        Vector3::x()
                    } else {
                        Vector3::y()
                    };
                    let e1 = d.cross(&helper).normalize();
                    let e2 = d.cross(&e1);
                    let p = Vector3::new(q[0], q[1], q[2]);
                    photo.at(p.dot(&e1), p.dot(&e2))
                }
                None => 0.0,
            },
            TextureKind::Checker => {
                let parity = q.iter().map(|v| v.floor() as i64).sum::<i64>();
                if parity.rem_euclid(2) == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            TextureKind::Speckle => self.polarity * speckle(self.seed, q),
        }
    }
}

/// Trilinear value noise of uniform [-1, 1] corners has a standard deviation near 0.3; this
/// stretches typical values over most of [-1, 1].
const NOISE_NORMALISATION: f64 = 1.8;
/// Width of a stain's soft edge, in normalised noise units.
const STAIN_EDGE: f64 = 0.2;

/// Scratches: light slabs (thin in one direction) clipped to balls; a slab meets any surface
/// in a line segment. Balls sit inside their lattice cell, so only the cell holding the point
/// is consulted; a second lattice shifted by half a cell covers the surfaces that run along
/// the first lattice's cell boundaries, where its balls never reach.
fn scratches(seed: u32, q: [f64; 3]) -> f64 {
    // Half-width in cells: 2 % of the cell, about a millimetre on centimetre features.
    const HALF_WIDTH: f64 = 0.02;
    let mut strength: f64 = 0.0;
    for lattice in 0..2u32 {
        let shift = 0.5 * lattice as f64;
        let (cell, h_cell) = lattice_cell(
            seed.wrapping_add(lattice.wrapping_mul(0x632b_e5ab)),
            q,
            shift,
        );
        for k in 0..3u32 {
            let h = mix(h_cell ^ k.wrapping_mul(0x9e37_79b9));
            // 70 % of the candidates exist: uneven wear, not a regular grid.
            if unit(h) >= 0.7 {
                continue;
            }
            let [h1, h2, h3, h4, h5, h6] = hash_chain(h);
            // Centre in the middle half of the cell, radius at most a quarter: the ball stays
            // in the cell.
            let centre = [unit(h1), unit(h2), unit(h3)].map(|u| 0.25 + 0.5 * u);
            let radius = 0.18 + 0.07 * unit(h4);
            let d = [0, 1, 2].map(|i| q[i] + shift - cell[i] - centre[i]);
            if d[0] * d[0] + d[1] * d[1] + d[2] * d[2] > radius * radius {
                continue;
            }
            let normal = unit_vector_from(unit(h5), unit(h6));
            let across = (d[0] * normal[0] + d[1] * normal[1] + d[2] * normal[2]).abs();
            if across < HALF_WIDTH {
                strength = strength.max(1.0 - across / HALF_WIDTH);
            }
        }
    }
    strength
}

/// Speckle: soft dots in 70 % of the cells of two lattices shifted by half a cell (as
/// for [`scratches`]), in [0, 1].
fn speckle(seed: u32, q: [f64; 3]) -> f64 {
    // Radius 0.3 around a centre in [0.3, 0.7]: the dot stays inside its cell.
    const RADIUS: f64 = 0.3;
    let mut strength: f64 = 0.0;
    for lattice in 0..2u32 {
        let shift = 0.5 * lattice as f64;
        let (cell, h) = lattice_cell(
            seed.wrapping_add(lattice.wrapping_mul(0x632b_e5ab)),
            q,
            shift,
        );
        if unit(h) >= 0.7 {
            continue;
        }
        let [h1, h2, h3, ..] = hash_chain(h);
        let centre = [unit(h1), unit(h2), unit(h3)].map(|u| 0.3 + 0.4 * u);
        let d = [0, 1, 2].map(|i| q[i] + shift - cell[i] - centre[i]);
        let distance = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        strength = strength.max(1.0 - smoothstep(0.6 * RADIUS, RADIUS, distance));
    }
    strength
}

/// The lattice cell (its lower corner) holding `q + shift` and the cell's hash.
fn lattice_cell(seed: u32, q: [f64; 3], shift: f64) -> ([f64; 3], u32) {
    let cell = q.map(|v| (v + shift).floor());
    let [x, y, z] = cell.map(|v| v as i32);
    (cell, hash3(seed, x, y, z))
}

/// Six further hashes derived from one, for a feature's independent parameters.
fn hash_chain(h: u32) -> [u32; 6] {
    let mut state = h;
    [(); 6].map(|_| {
        state = mix(state ^ 0x1b87_3593);
        state
    })
}

/// Fractal sum of value noise, octaves at 2.03x frequency (not 2, so lattices do not align)
/// and half amplitude; in [-1, 1], typically within +-0.5.
fn fbm(seed: u32, q: [f64; 3], octaves: u32) -> f64 {
    let mut sum = 0.0;
    let mut amplitude = 1.0;
    let mut total = 0.0;
    let mut frequency = 1.0;
    for octave in 0..octaves {
        let p = q.map(|v| v * frequency);
        sum += amplitude * value_noise(seed.wrapping_add(octave.wrapping_mul(0x632b_e5ab)), p);
        total += amplitude;
        amplitude *= 0.5;
        frequency *= 2.03;
    }
    sum / total
}

/// Hash-based lattice value noise in [-1, 1]: random values at integer points, blended with a
/// smoothstep so the result has no creases.
fn value_noise(seed: u32, p: [f64; 3]) -> f64 {
    let floor = p.map(|v| v.floor());
    let [x0, y0, z0] = floor.map(|v| v as i32);
    let f = [0, 1, 2].map(|k| p[k] - floor[k]);
    let s = f.map(|t| t * t * (3.0 - 2.0 * t));
    let corner = |dx: i32, dy: i32, dz: i32| {
        2.0 * unit(hash3(
            seed,
            x0.wrapping_add(dx),
            y0.wrapping_add(dy),
            z0.wrapping_add(dz),
        )) - 1.0
    };
    let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
    let x00 = lerp(corner(0, 0, 0), corner(1, 0, 0), s[0]);
    let x10 = lerp(corner(0, 1, 0), corner(1, 1, 0), s[0]);
    let x01 = lerp(corner(0, 0, 1), corner(1, 0, 1), s[0]);
    let x11 = lerp(corner(0, 1, 1), corner(1, 1, 1), s[0]);
    lerp(lerp(x00, x10, s[1]), lerp(x01, x11, s[1]), s[2])
}

/// A lattice point's 32-bit hash: per-axis odd multipliers, then MurmurHash3's finaliser.
fn hash3(seed: u32, x: i32, y: i32, z: i32) -> u32 {
    mix(seed
        ^ (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ (z as u32).wrapping_mul(0xcb1a_b31f))
}

/// MurmurHash3's 32-bit finaliser: every input bit affects every output bit.
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A hash as a value in [0, 1).
fn unit(h: u32) -> f64 {
    h as f64 * (1.0 / 4_294_967_296.0)
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A uniformly distributed unit vector from two uniforms (Archimedes: z is uniform).
fn unit_vector_from(u: f64, v: f64) -> [f64; 3] {
    let z = 2.0 * u - 1.0;
    let r = (1.0 - z * z).max(0.0).sqrt();
    let phi = TAU * v;
    [r * phi.cos(), r * phi.sin(), z]
}

fn random_unit_vector(rng: &mut impl Rng) -> Vector3<f64> {
    let [x, y, z] = unit_vector_from(rng.gen(), rng.gen());
    Vector3::new(x, y, z)
}

// ---------------------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------------------

/// A family of colours as HSV ranges. Several of them (a list in the caller's config) express
/// a union, e.g. "grey, black, white or orange" for a novel test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColourConfig {
    /// Hue range, degrees. `low > high` wraps through 0: [330, 30] is the reds.
    pub hue_deg: [f64; 2],
    /// 0 grey .. 1 fully saturated.
    pub saturation: [f64; 2],
    /// 0 black .. 1 brightest.
    pub value: [f64; 2],
}

impl Default for ColourConfig {
    /// Any hue, from greyish to saturated, neither pitch black nor white: bins of every colour.
    fn default() -> Self {
        Self {
            hue_deg: [0.0, 360.0],
            saturation: [0.1, 0.9],
            value: [0.15, 0.9],
        }
    }
}

impl ColourConfig {
    /// Greys from near black to near white.
    pub fn greys() -> Self {
        Self {
            hue_deg: [0.0, 0.0],
            saturation: [0.0, 0.0],
            value: [0.05, 0.95],
        }
    }

    /// Safety orange and its neighbours.
    pub fn orange() -> Self {
        Self {
            hue_deg: [20.0, 40.0],
            saturation: [0.7, 1.0],
            value: [0.7, 1.0],
        }
    }

    /// Checks the ranges serde cannot; the error names the key and the fix. The hue range may
    /// wrap, so only its ends are checked.
    pub fn check(&self) -> Result<(), AppearanceConfigError> {
        if !self.hue_deg.iter().all(|h| (0.0..=360.0).contains(h)) {
            return Err(AppearanceConfigError {
                key: "hue_deg".into(),
                value: format!("{:?}", self.hue_deg),
                problem: "both ends must lie in [0, 360]".into(),
                fix: "give hues in degrees; [330, 30] wraps through red, [0, 360] is every hue"
                    .into(),
            });
        }
        check_range("saturation", self.saturation, 0.0, 1.0)?;
        check_range("value", self.value, 0.0, 1.0)
    }

    /// A colour from these ranges, RGB in 0..1.
    pub fn sample(&self, rng: &mut impl Rng) -> [f64; 3] {
        random_colour(self.hue_deg, self.saturation, self.value, rng)
    }
}

/// A random colour, RGB in 0..1, with hue (degrees, may wrap: `low > high` goes through 0),
/// saturation and value drawn uniformly from their ranges. Used as albedo as is, like the
/// 8-bit colours divided by 255 that configs gave before.
pub fn random_colour(
    hue_deg: [f64; 2],
    saturation: [f64; 2],
    value: [f64; 2],
    rng: &mut impl Rng,
) -> [f64; 3] {
    let [low, high] = hue_deg;
    let span = if low <= high {
        high - low
    } else {
        high + 360.0 - low
    };
    let hue = (low + uniform([0.0, span], rng)).rem_euclid(360.0);
    hsv_to_rgb(hue, uniform(saturation, rng), uniform(value, rng))
}

/// HSV (hue in degrees) to RGB, the hexcone model.
fn hsv_to_rgb(hue_deg: f64, saturation: f64, value: f64) -> [f64; 3] {
    let chroma = value * saturation;
    let sector = hue_deg.rem_euclid(360.0) / 60.0;
    let x = chroma * (1.0 - (sector % 2.0 - 1.0).abs());
    let [r, g, b] = match sector as u32 {
        0 => [chroma, x, 0.0],
        1 => [x, chroma, 0.0],
        2 => [0.0, chroma, x],
        3 => [0.0, x, chroma],
        4 => [x, 0.0, chroma],
        _ => [chroma, 0.0, x],
    };
    let m = value - chroma;
    [r + m, g + m, b + m]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn random_radiance(n: usize, rng: &mut StdRng) -> Vec<f32> {
        // Beyond both ends of 0..1, to exercise the clamp, plus exact quantisation ties.
        (0..n)
            .map(|i| match i % 7 {
                0 => (i % 256) as f32 / 255.0,
                1 => (i % 256) as f32 / 255.0 - 0.5 / 255.0,
                _ => rng.gen_range(-0.2f32..1.3),
            })
            .collect()
    }

    #[test]
    fn neutral_develop_is_plain_quantisation_and_leaves_the_rng_alone() {
        let mut rng = StdRng::seed_from_u64(3);
        let (w, h) = (37, 23);
        let radiance = random_radiance(3 * w * h, &mut rng);
        let mut used = StdRng::seed_from_u64(9);
        let out = develop(&radiance, w, h, &Imaging::neutral(), &mut used);
        let expected: Vec<u8> = radiance
            .iter()
            .map(|&x| ((x as f64).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
            .collect();
        assert_eq!(out, expected);
        assert_eq!(used.gen::<u64>(), StdRng::seed_from_u64(9).gen::<u64>());
        // Sampling the default config draws nothing either.
        let mut sampler = StdRng::seed_from_u64(9);
        assert_eq!(
            ImagingConfig::default().sample(&mut sampler),
            Imaging::neutral()
        );
        assert_eq!(sampler.gen::<u64>(), StdRng::seed_from_u64(9).gen::<u64>());
    }

    #[test]
    fn exposure_brightens_and_gamma_lifts_the_mid_tones() {
        let mut rng = StdRng::seed_from_u64(4);
        let radiance = vec![0.2f32; 3 * 8 * 8];
        let base = develop(&radiance, 8, 8, &Imaging::neutral(), &mut rng);
        let doubled = Imaging {
            exposure: 2.0,
            ..Imaging::neutral()
        };
        let bright = develop(&radiance, 8, 8, &doubled, &mut rng);
        assert_eq!(base[0], 51);
        assert_eq!(bright[0], 102);

        for gamma in [0.5, 1.8, 2.2, 3.0] {
            let imaging = Imaging {
                gamma,
                ..Imaging::neutral()
            };
            let values: Vec<f32> = (0..=1000).flat_map(|i| [i as f32 / 1000.0; 3]).collect();
            let out = develop(&values, 1001, 1, &imaging, &mut rng);
            for (i, chunk) in out.chunks(3).enumerate() {
                let exact = (i as f64 / 1000.0).powf(1.0 / gamma) * 255.0;
                assert!(
                    (chunk[0] as f64 - exact).abs() <= 0.6,
                    "gamma {gamma} at {i}"
                );
            }
        }
    }

    #[test]
    fn white_balance_and_vignetting_act_per_channel_and_towards_the_corners() {
        let mut rng = StdRng::seed_from_u64(5);
        let radiance = vec![0.5f32; 3 * 9 * 9];
        let imaging = Imaging {
            white_balance: [1.2, 1.0, 0.8],
            vignetting: 0.5,
            ..Imaging::neutral()
        };
        let out = develop(&radiance, 9, 9, &imaging, &mut rng);
        let centre = 3 * (4 * 9 + 4);
        assert!(out[centre] > out[centre + 1] && out[centre + 1] > out[centre + 2]);
        assert!(
            out[0] < out[centre],
            "corner {} centre {}",
            out[0],
            out[centre]
        );
    }

    #[test]
    fn blur_keeps_a_constant_image_and_spreads_an_impulse() {
        let mut rng = StdRng::seed_from_u64(6);
        let (w, h) = (40, 30);
        let blur = Imaging {
            blur_sigma_px: 1.5,
            ..Imaging::neutral()
        };
        let constant = vec![0.4f32; 3 * w * h];
        let out = develop(&constant, w, h, &blur, &mut rng);
        assert!(out.iter().all(|&v| v == 102), "{:?}", &out[..9]);

        let mut impulse = vec![0.0f32; 3 * w * h];
        let centre = 15 * w + 20;
        impulse[3 * centre..3 * centre + 3].fill(1.0);
        let mut image = impulse.clone();
        gaussian_blur(&mut image, w, h, 1.5);
        let total: f32 = image.iter().step_by(3).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(image[3 * centre] < 0.2 && image[3 * (centre + 2)] > 0.01);
        assert!(image[3 * (centre + 2 * w)] > 0.01 && image[3 * (centre + 2 * w) + 1] > 0.01);
        // Symmetric around the impulse.
        assert!((image[3 * (centre - 1)] - image[3 * (centre + 1)]).abs() < 1e-6);
        assert!((image[3 * (centre - w)] - image[3 * (centre + w)]).abs() < 1e-6);

        // Images narrower than the kernel take the clamped path only.
        let mut narrow = vec![0.3f32; 3 * 3 * 50];
        gaussian_blur(&mut narrow, 3, 50, 4.0);
        assert!(narrow.iter().all(|v| (v - 0.3).abs() < 1e-5));
    }

    #[test]
    fn noise_has_the_requested_sigma() {
        let mut rng = StdRng::seed_from_u64(7);
        let (w, h) = (200, 100);
        let level = 0.5f32;
        let radiance = vec![level; 3 * w * h];
        let sigma_of = |imaging: &Imaging, rng: &mut StdRng| {
            let out = develop(&radiance, w, h, imaging, rng);
            let mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len() as f64;
            let var =
                out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / out.len() as f64;
            // Rounding to 8 bits adds a uniform error of variance 1/12 step^2.
            ((var - 1.0 / 12.0).max(0.0)).sqrt() / 255.0
        };
        let read = Imaging {
            noise_sigma: 0.03,
            ..Imaging::neutral()
        };
        let measured = sigma_of(&read, &mut rng);
        assert!((measured - 0.03).abs() < 0.003, "{measured}");
        let shot = Imaging {
            shot_noise: 0.002,
            ..Imaging::neutral()
        };
        let measured = sigma_of(&shot, &mut rng);
        let expected = (0.002 * level as f64).sqrt();
        assert!(
            (measured - expected).abs() < 0.1 * expected,
            "{measured} vs {expected}"
        );
        // Different streams give different noise.
        let a = develop(&radiance, w, h, &read, &mut StdRng::seed_from_u64(1));
        let b = develop(&radiance, w, h, &read, &mut StdRng::seed_from_u64(2));
        assert_ne!(a, b);
    }

    #[test]
    fn short_radiance_gives_black_pixels_not_a_panic() {
        let mut rng = StdRng::seed_from_u64(8);
        let imaging = Imaging {
            blur_sigma_px: 1.0,
            ..Imaging::neutral()
        };
        // debug_assert fires in tests, so only the release path is exercised by length.
        if !cfg!(debug_assertions) {
            let out = develop(&[1.0; 6], 4, 4, &imaging, &mut rng);
            assert_eq!(out.len(), 48);
        }
    }

    #[test]
    fn config_checks_name_the_key() {
        let bad = ImagingConfig {
            gamma: [2.2, 1.8],
            ..ImagingConfig::default()
        };
        let err = bad.check().unwrap_err().within("camera.imaging");
        assert_eq!(err.key, "camera.imaging.gamma");
        assert!(err.to_string().contains("low <= high"), "{err}");
        assert!(ImagingConfig::default().check().is_ok());
        let noisy = ImagingConfig {
            noise_sigma: [0.0, 2.0],
            ..ImagingConfig::default()
        };
        assert_eq!(noisy.check().unwrap_err().key, "noise_sigma");
        let blur = ImagingConfig {
            blur_sigma_px: [f64::NAN, 1.0],
            ..ImagingConfig::default()
        };
        assert_eq!(blur.check().unwrap_err().key, "blur_sigma_px");

        let empty = SurfaceConfig {
            kinds: vec![],
            ..SurfaceConfig::default()
        };
        assert_eq!(empty.check().unwrap_err().key, "kinds");
        let contrast = SurfaceConfig {
            contrast: [0.0, 1.5],
            ..SurfaceConfig::default()
        };
        assert_eq!(contrast.check().unwrap_err().key, "contrast");
        assert!(SurfaceConfig::default().check().is_ok());
        let hue = ColourConfig {
            hue_deg: [-10.0, 20.0],
            ..ColourConfig::default()
        };
        assert_eq!(hue.check().unwrap_err().key, "hue_deg");
        assert!(ColourConfig::default().check().is_ok());
    }

    #[test]
    fn configs_parse_from_yaml_and_reject_unknown_keys() {
        let imaging: ImagingConfig =
            serde_yaml::from_str("exposure: [0.7, 1.4]\ngamma: [1.8, 2.4]\n").unwrap();
        assert_eq!(imaging.exposure, [0.7, 1.4]);
        assert_eq!(imaging.blur_sigma_px, [0.0, 0.0]);
        assert!(serde_yaml::from_str::<ImagingConfig>("exposur: [1, 1]").is_err());
        let surface: SurfaceConfig =
            serde_yaml::from_str("kinds: [noise, scratches, stripes]\ncontrast: [0.1, 0.4]\n")
                .unwrap();
        assert_eq!(surface.kinds[1], TextureKind::Scratches);
        let colour: ColourConfig = serde_yaml::from_str("hue_deg: [330, 30]").unwrap();
        assert_eq!(colour.saturation, ColourConfig::default().saturation);
    }

    fn textured(kind: TextureKind, seed: u64) -> Material {
        let config = SurfaceConfig {
            kinds: vec![kind],
            scale_m: [0.03, 0.03],
            contrast: [0.6, 0.6],
            ..SurfaceConfig::default()
        };
        config.sample([0.3, 0.5, 0.7], &mut StdRng::seed_from_u64(seed))
    }

    /// Points on a 20 cm square of the plane z = 0.013, 1 mm apart (scratches are ~1 mm wide).
    fn plane_points() -> impl Iterator<Item = Point3<f64>> {
        (0..200).flat_map(|i| {
            (0..200).map(move |j| Point3::new(i as f64 * 0.001, j as f64 * 0.001, 0.013))
        })
    }

    #[test]
    fn textures_are_deterministic_bounded_and_vary_over_space() {
        let kinds = [
            TextureKind::Noise,
            TextureKind::Scratches,
            TextureKind::Stains,
            TextureKind::Stripes,
            TextureKind::Checker,
            TextureKind::Speckle,
        ];
        for kind in kinds {
            for seed in 0..4 {
                let material = textured(kind, seed);
                assert_eq!(material, textured(kind, seed));
                let mut changed = 0;
                for p in plane_points() {
                    let albedo = material.albedo_at(&p);
                    assert_eq!(albedo, material.albedo_at(&p), "{kind:?}");
                    assert!(
                        albedo.iter().all(|a| (0.0..=1.0).contains(a)),
                        "{kind:?} {albedo:?}"
                    );
                    if albedo != material.albedo {
                        changed += 1;
                    }
                }
                // Scratches are sparse by design; the rest cover a good part of the plane.
                let minimum = if kind == TextureKind::Scratches {
                    200
                } else {
                    1000
                };
                assert!(
                    changed >= minimum,
                    "{kind:?} seed {seed}: {changed} of 40000 changed"
                );
            }
        }
    }

    #[test]
    fn plain_is_the_base_albedo_and_draws_nothing() {
        let mut rng = StdRng::seed_from_u64(11);
        let material = SurfaceConfig::matte_plain().sample([0.2, 0.4, 0.9], &mut rng);
        assert_eq!(rng.gen::<u64>(), StdRng::seed_from_u64(11).gen::<u64>());
        assert_eq!(material.specular, MATTE_SPECULAR);
        assert_eq!(material.shininess, SHININESS);
        for p in plane_points().step_by(97) {
            assert_eq!(material.albedo_at(&p), [0.2, 0.4, 0.9]);
        }
        assert_eq!(
            SurfaceConfig::glossy_plain()
                .sample([0.0; 3], &mut rng)
                .specular,
            GLOSSY_SPECULAR
        );
    }

    #[test]
    fn stripes_have_the_requested_period_and_duty() {
        for seed in 0..5 {
            let material = textured(TextureKind::Stripes, seed);
            let texture = &material.texture;
            let step_m = 1e-4;
            let mut rises = Vec::new();
            let mut light = 0;
            let samples = 3000;
            let mut previous = texture.modulation(&Point3::origin());
            for i in 1..=samples {
                let p = Point3::from(texture.direction * (i as f64 * step_m));
                let m = texture.modulation(&p);
                if m > 0.0 {
                    light += 1;
                }
                if m > 0.0 && previous < 0.0 {
                    rises.push(i as f64 * step_m);
                }
                previous = m;
            }
            let periods: Vec<f64> = rises.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(periods.len() >= 5);
            for period in periods {
                assert!((period - 0.03).abs() <= 2.0 * step_m, "{period}");
            }
            let duty = light as f64 / samples as f64;
            assert!(
                (duty - texture.duty).abs() < 0.05,
                "{duty} vs {}",
                texture.duty
            );
        }
    }

    #[test]
    fn texture_follows_the_surface_and_darkens_with_polarity() {
        let mut material = textured(TextureKind::Stains, 3);
        material.texture.polarity = -1.0;
        let darker = plane_points().any(|p| material.albedo_at(&p)[0] < material.albedo[0]);
        assert!(darker);
        assert!(plane_points().all(|p| material.albedo_at(&p)[0] <= material.albedo[0]));
        // Black surfaces still show lighter features.
        let mut black = textured(TextureKind::Scratches, 1);
        black.albedo = [0.0; 3];
        assert!(plane_points().any(|p| black.albedo_at(&p)[0] > 0.0));
    }

    #[test]
    fn random_colours_stay_in_their_ranges_and_wrap_hue() {
        let mut rng = StdRng::seed_from_u64(12);
        for _ in 0..500 {
            let [r, g, b] = random_colour([330.0, 30.0], [1.0, 1.0], [1.0, 1.0], &mut rng);
            // Reds: red channel full, blue or green small.
            assert!(
                r == 1.0 && g.min(b) == 0.0 && g.max(b) <= 0.5 + 1e-9,
                "{r} {g} {b}"
            );
            let grey = ColourConfig::greys().sample(&mut rng);
            assert!(grey[0] == grey[1] && grey[1] == grey[2] && (0.05..=0.95).contains(&grey[0]));
            let any = ColourConfig::default().sample(&mut rng);
            assert!(any.iter().all(|c| (0.0..=1.0).contains(c)));
        }
        assert_eq!(hsv_to_rgb(120.0, 1.0, 0.5), [0.0, 0.5, 0.0]);
        assert_eq!(hsv_to_rgb(240.0, 0.5, 1.0), [0.5, 0.5, 1.0]);
    }

    #[test]
    fn normal_table_has_unit_variance_and_known_quantiles() {
        assert!((inverse_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((inverse_normal_cdf(0.01) + 2.326_347_874).abs() < 1e-8);
        assert!((inverse_normal_cdf(0.5)).abs() < 1e-12);
        let table = standard_normal_table();
        let mean = table.iter().map(|&v| v as f64).sum::<f64>() / NORMAL_TABLE_LEN as f64;
        let variance =
            table.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / NORMAL_TABLE_LEN as f64;
        assert!(
            mean.abs() < 1e-6 && (variance - 1.0).abs() < 1e-6,
            "{mean} {variance}"
        );
        assert!(table.windows(2).all(|w| w[0] < w[1]));
    }

    /// `cargo test --release -- --ignored speed --nocapture`
    #[test]
    #[ignore]
    fn texture_speed() {
        for kind in [
            TextureKind::Plain,
            TextureKind::Noise,
            TextureKind::Scratches,
            TextureKind::Stains,
            TextureKind::Stripes,
            TextureKind::Checker,
            TextureKind::Speckle,
        ] {
            let material = textured(kind, 1);
            let points: Vec<Point3<f64>> = plane_points().collect();
            let fastest_s = (0..10)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for p in &points {
                        std::hint::black_box(material.albedo_at(std::hint::black_box(p)));
                    }
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            println!(
                "{kind:?}: {:.0} ns per call",
                fastest_s * 1e9 / points.len() as f64
            );
        }
    }

    /// `cargo test --release -- --ignored speed --nocapture`
    #[test]
    #[ignore]
    fn develop_speed() {
        let mut rng = StdRng::seed_from_u64(13);
        let (w, h) = (640, 480);
        let radiance = random_radiance(3 * w * h, &mut rng);
        let full = Imaging {
            exposure: 1.3,
            gamma: 2.2,
            white_balance: [1.1, 1.0, 0.9],
            noise_sigma: 0.01,
            shot_noise: 0.001,
            blur_sigma_px: 1.0,
            vignetting: 0.3,
        };
        let only = |f: fn(&mut Imaging)| {
            let mut imaging = Imaging::neutral();
            f(&mut imaging);
            imaging
        };
        let cases = [
            ("neutral", Imaging::neutral()),
            ("exposure", only(|i| i.exposure = 1.3)),
            ("vignetting", only(|i| i.vignetting = 0.3)),
            ("blur 1 px", only(|i| i.blur_sigma_px = 1.0)),
            ("noise", only(|i| i.noise_sigma = 0.01)),
            ("gamma", only(|i| i.gamma = 2.2)),
            ("all stages", full),
        ];
        for (name, imaging) in cases {
            // The fastest of many runs: other processes only ever add time.
            let fastest_s = (0..40)
                .map(|_| {
                    let start = std::time::Instant::now();
                    std::hint::black_box(develop(&radiance, w, h, &imaging, &mut rng));
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            println!("{name}: {:.2} ms", fastest_s * 1e3);
        }
    }

    #[test]
    fn photo_textures_tile_the_image_and_need_their_files() {
        // A 4x2 image, dark left half, light right half.
        let photo = Arc::new(Photo::from_luma(
            4,
            2,
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        ));
        let config = SurfaceConfig {
            kinds: vec![TextureKind::Photo],
            photos: vec![PathBuf::from("unused")],
            scale_m: [0.1, 0.1],
            contrast: [1.0, 1.0],
            ..SurfaceConfig::matte_plain()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let material = config.sample_with([0.5; 3], &[photo.clone()], &mut rng);
        assert_eq!(material.texture.kind, TextureKind::Photo);
        // Along the image's first axis the albedo alternates between darker and lighter,
        // repeating every scale_m.
        let t = &material.texture;
        let d = t.direction;
        let helper = if d.x.abs() < 0.9 {
            Vector3::x()
        } else {
            Vector3::y()
        };
        let e1 = d.cross(&helper).normalize();
        let at = |s: f64| material.albedo_at(&Point3::from(e1 * s - Vector3::from(t.offset_m)))[0];
        let (dark, light) = (at(0.0125), at(0.0625));
        assert!(dark < 0.5 && light > 0.5, "{dark} {light}");
        assert!((at(0.1125) - dark).abs() < 1e-9, "tiled every scale_m");
        // Without photos the kind falls back to noise; without files the config is refused.
        let fallback = config.sample_with([0.5; 3], &[], &mut rng);
        assert_eq!(fallback.texture.kind, TextureKind::Noise);
        let refused = SurfaceConfig {
            photos: vec![],
            ..config
        };
        assert!(refused.check().unwrap_err().to_string().contains("photos"));
        assert!(photo_files(Path::new("/nonexistent/textures")).is_err());
    }
}
