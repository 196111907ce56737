//! The grasp-quality network's input, shared by training and the node so both see the same
//! thing: a square depth patch centred on the grasp, its x axis along the jaws' closing
//! direction, covering a fixed metric width at the grasp's depth, values relative to the
//! grasp depth; and the grasp depth itself.

/// Where and how a grasp candidate sits in the depth image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraspInImage {
    /// Grasp centre, pixels (x right, y down; pixel centres at +0.5).
    pub center_px: [f64; 2],
    /// Closing direction in the image, radians from +x towards +y.
    pub angle_rad: f64,
    /// Camera z of the grasp centre, metres.
    pub depth_m: f64,
}

/// Samples the `side` x `side` patch (row-major) from `depth_m` (`width` wide, 0 or NaN = no
/// reading) at nearest pixels. Each value is the depth minus the grasp depth, metres; pixels
/// with no reading or outside the image read 0 (as deep as the grasp). `fx` is the focal
/// length in pixels, so the patch spans `patch_width_m` at the grasp depth.
pub fn grasp_depth_patch(
    depth_m: &[f32],
    width: usize,
    fx: f64,
    grasp: &GraspInImage,
    side: usize,
    patch_width_m: f64,
) -> Vec<f32> {
    let height = depth_m.len() / width.max(1);
    let step = fx * patch_width_m / (grasp.depth_m.max(1e-3) * side as f64);
    let (c, s) = (grasp.angle_rad.cos(), grasp.angle_rad.sin());
    let half = side as f64 / 2.0;
    let mut patch = Vec::with_capacity(side * side);
    for row in 0..side {
        let b = (row as f64 + 0.5 - half) * step;
        for col in 0..side {
            let a = (col as f64 + 0.5 - half) * step;
            // Patch x along the closing direction, patch y 90 degrees clockwise from it.
            let x = grasp.center_px[0] + a * c - b * s;
            let y = grasp.center_px[1] + a * s + b * c;
            let value = if x >= 0.0 && y >= 0.0 && (x as usize) < width && (y as usize) < height {
                let d = depth_m[y as usize * width + x as usize];
                if d > 0.0 && d.is_finite() {
                    d - grasp.depth_m as f32
                } else {
                    0.0
                }
            } else {
                0.0
            };
            patch.push(value);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_follows_the_closing_direction_and_the_metric_width() {
        // A 40x40 depth image at 1 m with a raised bar along image x (rows 18..22) at 0.9 m.
        let (w, h) = (40usize, 40usize);
        let mut depth = vec![1.0f32; w * h];
        for y in 18..22 {
            for x in 0..w {
                depth[y * w + x] = 0.9;
            }
        }
        depth[0] = 0.0;
        let grasp = |angle: f64| GraspInImage {
            center_px: [20.0, 20.0],
            angle_rad: angle,
            depth_m: 0.9,
        };
        // fx 100 px, 0.08 m at 1 m... at 0.9 m: 8 px patch side 8 -> 1.11 px per sample.
        let along = grasp_depth_patch(&depth, w, 100.0, &grasp(0.0), 8, 0.08);
        // Closing along the bar: the bar fills the middle rows of the patch.
        assert!(
            along[3 * 8..5 * 8].iter().all(|&v| v.abs() < 1e-6),
            "{along:?}"
        );
        assert!(along[..8].iter().all(|&v| (v - 0.1).abs() < 1e-6));
        // Closing across the bar: the bar becomes the middle columns.
        let across = grasp_depth_patch(
            &depth,
            w,
            100.0,
            &grasp(std::f64::consts::FRAC_PI_2),
            8,
            0.08,
        );
        for row in 0..8 {
            assert!(across[row * 8 + 3].abs() < 1e-6 && across[row * 8 + 4].abs() < 1e-6);
            assert!((across[row * 8] - 0.1).abs() < 1e-6, "{across:?}");
        }
        // A wider metric patch samples farther out; outside the image reads 0.
        let corner = GraspInImage {
            center_px: [0.5, 0.5],
            angle_rad: 0.0,
            depth_m: 1.0,
        };
        let p = grasp_depth_patch(&depth, w, 100.0, &corner, 4, 0.04);
        assert_eq!(p[0], 0.0);
        assert_eq!(p.len(), 16);
    }
}
