//! Parallel-jaw grasp candidates from instances and depth, and their poses in the camera
//! optical frame (REP 103: z forward, x right, y down). The grasp network scores them.
use crate::image::{CameraIntrinsics, DepthImage};
use crate::postprocess::{Instance, InstanceImage};

/// How candidates are sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraspSampling {
    /// Grasp centres tried per instance (spread over its pixels).
    pub centres_per_instance: usize,
    /// Closing directions tried per centre, evenly over 180 degrees.
    pub angles: usize,
    /// Jaw opening range of the gripper, metres.
    pub min_width_m: f64,
    pub max_width_m: f64,
    /// How far below the grasped surface the jaw centre goes, metres (the finger depth).
    pub finger_depth_m: f64,
    /// Candidates scored per frame at most (evenly thinned beyond): bounds the grasp head's
    /// time, about 1 ms per candidate on 2 CPU cores.
    pub max_candidates: usize,
}

impl Default for GraspSampling {
    fn default() -> Self {
        Self {
            centres_per_instance: 10,
            angles: 8,
            min_width_m: 0.005,
            max_width_m: 0.085,
            finger_depth_m: 0.03,
            max_candidates: 160,
        }
    }
}

/// One candidate: where the jaws close, in the image and in depth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraspCandidate {
    pub instance_id: u16,
    /// Midpoint of the two contacts, pixels (centres at +0.5).
    pub center_px: [f64; 2],
    /// Closing direction, radians from +x towards +y, in [0, pi).
    pub angle_rad: f64,
    /// Jaw opening at the contacts, metres.
    pub width_m: f64,
    /// Camera z of the jaw centre, metres.
    pub approach_depth_m: f64,
}

impl GraspCandidate {
    /// Position (metres) and orientation (x, y, z, w) in the camera optical frame: z along the
    /// optical axis (the approach, into the scene), x along the closing direction.
    pub fn pose(&self, camera: &CameraIntrinsics, width: u32, height: u32) -> ([f64; 3], [f64; 4]) {
        let (fx, fy, cx, cy) = scaled(camera, width, height);
        let z = self.approach_depth_m;
        let position = [
            (self.center_px[0] - cx) / fx * z,
            (self.center_px[1] - cy) / fy * z,
            z,
        ];
        let half = self.angle_rad / 2.0;
        (position, [0.0, 0.0, half.sin(), half.cos()])
    }
}

/// Intrinsics at the image's resolution.
pub(super) fn scaled(camera: &CameraIntrinsics, width: u32, height: u32) -> (f64, f64, f64, f64) {
    let sx = width as f64 / camera.width.max(1) as f64;
    let sy = height as f64 / camera.height.max(1) as f64;
    (
        camera.fx_px * sx,
        camera.fy_px * sy,
        camera.cx_px * sx,
        camera.cy_px * sy,
    )
}

/// Each instance's pixel indices (instance id k at index k - 1), in scan order.
pub(super) fn instance_pixels(image: &InstanceImage, count: usize) -> Vec<Vec<usize>> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, &id) in image.ids.iter().enumerate() {
        if id > 0 && (id as usize) <= count {
            members[id as usize - 1].push(i);
        }
    }
    members
}

/// Antipodal-style candidates: for centres spread over each instance and each closing
/// direction, the jaws close from outside the instance's silhouette onto its two edges along
/// that direction; the candidate is centred between those contacts, and kept when the
/// opening fits the gripper and the centre has a depth reading.
pub fn sample_parallel_jaw(
    image: &InstanceImage,
    instances: &[Instance],
    depth: &DepthImage,
    camera: &CameraIntrinsics,
    sampling: &GraspSampling,
) -> Vec<GraspCandidate> {
    let (w, h) = (image.width as usize, image.height as usize);
    if (depth.width, depth.height) != (image.width, image.height) {
        return Vec::new();
    }
    let (fx, _, _, _) = scaled(camera, image.width, image.height);
    let id_at = |x: f64, y: f64| -> u16 {
        if x < 0.0 || y < 0.0 || x >= w as f64 || y >= h as f64 {
            0
        } else {
            image.ids[y as usize * w + x as usize]
        }
    };
    let surface = |x: f64, y: f64| -> Option<f64> {
        let (xi, yi) = (x as i64, y as i64);
        let mut nearest: Option<f64> = None;
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (u, v) = (xi + dx, yi + dy);
                if u < 0 || v < 0 || u >= w as i64 || v >= h as i64 {
                    continue;
                }
                let d = depth.depth_m[v as usize * w + u as usize] as f64;
                if d > 0.0 && d.is_finite() {
                    nearest = Some(nearest.map_or(d, |n: f64| n.min(d)));
                }
            }
        }
        nearest
    };
    // Each instance's pixels, in scan order.
    let members = instance_pixels(image, instances.len());
    let mut out = Vec::new();
    // Centres on one chord converge on the same midpoint: one candidate per 2-px cell and
    // direction (the network's cost grows with the candidates).
    let mut taken = std::collections::HashSet::new();
    for (instance, pixels) in instances.iter().zip(&members) {
        if pixels.is_empty() {
            continue;
        }
        let stride = (pixels.len() / sampling.centres_per_instance.max(1)).max(1);
        for &p in pixels.iter().skip(stride / 2).step_by(stride) {
            let (px, py) = ((p % w) as f64 + 0.5, (p / w) as f64 + 0.5);
            for a in 0..sampling.angles {
                let angle = std::f64::consts::PI * a as f64 / sampling.angles as f64;
                let (c, s) = (angle.cos(), angle.sin());
                // Walk out both ways until the silhouette ends.
                let reach = |sign: f64| -> f64 {
                    let mut t = 0.0;
                    while id_at(px + sign * (t + 1.0) * c, py + sign * (t + 1.0) * s) == instance.id
                    {
                        t += 1.0;
                        if t > (w + h) as f64 {
                            break;
                        }
                    }
                    t + 0.5
                };
                let (ahead, behind) = (reach(1.0), reach(-1.0));
                let mid = (ahead - behind) / 2.0;
                let center = [px + mid * c, py + mid * s];
                let cell = (a, (center[0] / 2.0) as i64, (center[1] / 2.0) as i64);
                if !taken.insert((instance.id, cell)) {
                    continue;
                }
                let Some(top) = surface(center[0], center[1]) else {
                    continue;
                };
                let width_m = (ahead + behind) * top / fx;
                if !(sampling.min_width_m..=sampling.max_width_m).contains(&width_m) {
                    continue;
                }
                out.push(GraspCandidate {
                    instance_id: instance.id,
                    center_px: center,
                    angle_rad: angle,
                    width_m,
                    approach_depth_m: top + sampling.finger_depth_m,
                });
            }
        }
    }
    if out.len() > sampling.max_candidates {
        let step = out.len() as f64 / sampling.max_candidates as f64;
        out = (0..sampling.max_candidates)
            .map(|k| out[(k as f64 * step) as usize])
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MonoImage;
    use crate::postprocess::label_instances;

    #[test]
    fn jaws_close_across_a_bar_and_poses_follow_the_camera_model() {
        // A 40x20 image, a horizontal bar 6 px tall at 0.5 m: fx 100 -> 6 px = 3 cm.
        let (w, h) = (40u32, 20u32);
        let mut classes = vec![0u8; (w * h) as usize];
        for y in 7..13 {
            for x in 5..35 {
                classes[(y * w + x) as usize] = 2;
            }
        }
        let mask = MonoImage {
            width: w,
            height: h,
            data: classes,
        };
        let (image, instances) = label_instances(&mask, &[false, false, true], 1);
        let depth = DepthImage {
            width: w,
            height: h,
            depth_m: vec![0.5; (w * h) as usize],
        };
        let camera = CameraIntrinsics {
            width: w,
            height: h,
            fx_px: 100.0,
            fy_px: 100.0,
            cx_px: 20.0,
            cy_px: 10.0,
        };
        let sampling = GraspSampling {
            centres_per_instance: 5,
            angles: 4,
            ..Default::default()
        };
        let capped = sample_parallel_jaw(
            &image,
            &instances,
            &depth,
            &camera,
            &GraspSampling {
                max_candidates: 2,
                ..sampling
            },
        );
        assert_eq!(capped.len(), 2);
        let grasps = sample_parallel_jaw(&image, &instances, &depth, &camera, &sampling);
        // Across the bar (90 degrees): 6 px = 0.03 m; along it, 30 px = 0.15 m is too wide.
        assert!(!grasps.is_empty());
        for g in &grasps {
            assert!(g.width_m <= 0.085 + 1e-9, "{g:?}");
            assert!((g.approach_depth_m - 0.53).abs() < 1e-9);
        }
        let across = grasps
            .iter()
            .find(|g| (g.angle_rad - std::f64::consts::FRAC_PI_2).abs() < 1e-9)
            .unwrap();
        assert!((across.width_m - 0.03).abs() < 1e-9, "{across:?}");
        assert!(
            (across.center_px[1] - 10.0).abs() < 1e-9,
            "centred between the edges"
        );
        let (p, q) = across.pose(&camera, w, h);
        assert!((p[2] - 0.53).abs() < 1e-12 && p[1].abs() < 1e-9);
        // A quarter turn about the optical axis.
        let s = std::f64::consts::FRAC_PI_4.sin();
        assert!((q[2] - s).abs() < 1e-12 && (q[3] - s).abs() < 1e-12);
    }
}
