use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::config::{DepthModel, SensorConfig};

/// The depth image a sensor would report for the ideal `depth_m` (NaN = no reading).
///
/// Realistic model: Gaussian axial noise with sigma(z) = a + b (z - c)^2 (Nguyen, Izadi and
/// Lovell 2012, for structured light), holes where the surface is seen at a grazing angle or
/// next to a depth jump (where stereo matching and projector shadows fail), nothing beyond the
/// maximum range. Millimetre quantisation happens in [`depth_to_millimetres`].
pub fn sense_depth(
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
    use rand::SeedableRng;

    #[test]
    fn noise_grows_with_distance_and_holes_follow_edges_and_grazing() {
        let cfg = SensorConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let spread = |z: f32, rng: &mut rand::rngs::StdRng| {
            let depth = vec![z; 64 * 64];
            let out = sense_depth(&depth, &vec![1.0; depth.len()], 64, &cfg, rng);
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
        let out = sense_depth(&depth, &cos, width, &always, &mut rng);
        for y in 0..4 {
            assert!(out[y * width + 3].is_nan() && out[y * width + 4].is_nan());
            assert!(out[y * width + 7].is_nan());
            assert!(out[y * width + 1].is_finite());
        }
    }

    #[test]
    fn millimetres_round_and_mark_missing_as_zero() {
        assert_eq!(
            depth_to_millimetres(&[0.5004, 1.2346, f32::NAN, 70.0, -1.0]),
            [500, 1235, 0, 0, 0]
        );
    }
}
