//! Object instances from the class mask: connected components of each object class (the
//! boundary class, never part of an object, splits objects that touch), their boxes, scores
//! and 3-D centroids.
use crate::image::{CameraIntrinsics, DepthImage, MonoImage};

/// Instance id per pixel (0 = none), the mono16 `segmentation/instances` image.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceImage {
    pub width: u32,
    pub height: u32,
    pub ids: Vec<u16>,
}

/// One object instance, in the frame's pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: u16,
    pub class_id: u8,
    pub pixels: u32,
    /// Inclusive pixel bounds: x0, y0, x1, y1.
    pub bounds: [u32; 4],
    /// Mean predicted probability of `class_id` over the instance's pixels, in [0, 1].
    pub score: f32,
    /// Mean of the instance's back-projected valid depth points, camera optical frame, metres.
    pub centroid_m: Option<[f64; 3]>,
}

/// Connected components (4-neighbourhood) of the pixels whose class is an object class;
/// components smaller than `min_pixels` get id 0. Ids count from 1 in scan order. At most
/// 65 535 instances; later ones get 0.
pub fn label_instances(
    mask: &MonoImage,
    is_object: &[bool],
    min_pixels: u32,
) -> (InstanceImage, Vec<Instance>) {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let object = |c: u8| is_object.get(c as usize).copied().unwrap_or(false);
    let mut ids = vec![0u16; w * h];
    let mut seen = vec![false; w * h];
    let mut instances = Vec::new();
    let mut stack = Vec::new();
    let mut members = Vec::new();
    for start in 0..w * h {
        let class = mask.data[start];
        if seen[start] || !object(class) {
            continue;
        }
        members.clear();
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if !seen[j] && mask.data[j] == class {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        if (members.len() as u32) < min_pixels || instances.len() >= u16::MAX as usize {
            continue;
        }
        let id = instances.len() as u16 + 1;
        let mut bounds = [u32::MAX, u32::MAX, 0, 0];
        for &i in &members {
            ids[i] = id;
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            bounds = [
                bounds[0].min(x),
                bounds[1].min(y),
                bounds[2].max(x),
                bounds[3].max(y),
            ];
        }
        instances.push(Instance {
            id,
            class_id: class,
            pixels: members.len() as u32,
            bounds,
            score: 0.0,
            centroid_m: None,
        });
    }
    (
        InstanceImage {
            width: mask.width,
            height: mask.height,
            ids,
        },
        instances,
    )
}

/// Sets each instance's score from the class probabilities of the network, (K, ph, pw)
/// row-major at the network's resolution, each frame pixel reading its nearest network pixel.
pub fn score_instances(
    instances: &mut [Instance],
    image: &InstanceImage,
    probabilities: &[f32],
    (k, ph, pw): (usize, usize, usize),
) {
    let (w, h) = (image.width as usize, image.height as usize);
    let mut sums = vec![0.0f64; instances.len()];
    for (i, &id) in image.ids.iter().enumerate() {
        if id == 0 {
            continue;
        }
        let instance = &instances[id as usize - 1];
        let (x, y) = (i % w, i / w);
        let (px, py) = ((x * pw / w).min(pw - 1), (y * ph / h).min(ph - 1));
        let class = (instance.class_id as usize).min(k - 1);
        sums[id as usize - 1] += probabilities[(class * ph + py) * pw + px] as f64;
    }
    for (instance, sum) in instances.iter_mut().zip(sums) {
        instance.score = (sum / instance.pixels.max(1) as f64) as f32;
    }
}

/// Sets each instance's 3-D centroid from `depth` (metres, NaN or <= 0 invalid) and the
/// intrinsics (scaled when calibrated at another resolution than the image's).
pub fn locate_instances(
    instances: &mut [Instance],
    image: &InstanceImage,
    depth: &DepthImage,
    camera: &CameraIntrinsics,
) {
    if (depth.width, depth.height) != (image.width, image.height) || camera.width == 0 {
        return;
    }
    let sx = image.width as f64 / camera.width as f64;
    let sy = image.height as f64 / camera.height as f64;
    let (fx, fy, cx, cy) = (
        camera.fx_px * sx,
        camera.fy_px * sy,
        camera.cx_px * sx,
        camera.cy_px * sy,
    );
    let w = image.width as usize;
    let mut sums = vec![([0.0f64; 3], 0u32); instances.len()];
    for (i, &id) in image.ids.iter().enumerate() {
        let z = depth.depth_m[i] as f64;
        if id == 0 || !(z > 0.0 && z.is_finite()) {
            continue;
        }
        let (u, v) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
        let s = &mut sums[id as usize - 1];
        s.0[0] += (u - cx) / fx * z;
        s.0[1] += (v - cy) / fy * z;
        s.0[2] += z;
        s.1 += 1;
    }
    for (instance, (sum, n)) in instances.iter_mut().zip(sums) {
        instance.centroid_m = (n > 0).then(|| sum.map(|v| v / n as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> MonoImage {
        MonoImage {
            width: rows[0].len() as u32,
            height: rows.len() as u32,
            data: rows
                .iter()
                .flat_map(|r| r.bytes().map(|b| b - b'0'))
                .collect(),
        }
    }

    // Classes: 0 background, 1 bin, 2 object, 3 boundary.
    const OBJECTS: [bool; 4] = [false, false, true, false];

    #[test]
    fn the_boundary_splits_touching_objects_and_specks_are_dropped() {
        let m = mask(&[
            "1111111", //
            "1223221", //
            "1223221", //
            "1111112", //
        ]);
        let (image, instances) = label_instances(&m, &OBJECTS, 2);
        assert_eq!(instances.len(), 2, "{instances:?}");
        assert_eq!(instances[0].bounds, [1, 1, 2, 2]);
        assert_eq!(instances[1].bounds, [4, 1, 5, 2]);
        assert_eq!(instances[0].pixels, 4);
        // The lone object pixel in the corner is below min_pixels.
        assert_eq!(image.ids[3 * 7 + 6], 0);
        assert_eq!(image.ids[7 + 1], 1);
        assert_eq!(image.ids[7 + 4], 2);
        let (_, all) = label_instances(&m, &OBJECTS, 1);
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn scores_and_centroids() {
        let m = mask(&["22", "22"]);
        let (image, mut instances) = label_instances(&m, &OBJECTS, 1);
        // Network at 1x1: class 2 probability 0.8.
        score_instances(&mut instances, &image, &[0.1, 0.05, 0.8, 0.05], (4, 1, 1));
        assert!((instances[0].score - 0.8).abs() < 1e-6);
        let depth = DepthImage {
            width: 2,
            height: 2,
            depth_m: vec![1.0, 1.0, f32::NAN, 3.0],
        };
        // Calibrated at 4x4 (twice the size): fx 2 -> 1 at 2x2, centre (2, 2) -> (1, 1).
        let camera = CameraIntrinsics {
            width: 4,
            height: 4,
            fx_px: 2.0,
            fy_px: 2.0,
            cx_px: 2.0,
            cy_px: 2.0,
        };
        locate_instances(&mut instances, &image, &depth, &camera);
        let c = instances[0].centroid_m.unwrap();
        // Points (-0.5, -0.5, 1), (0.5, -0.5, 1), (1.5, 1.5, 3) -> mean.
        assert!(
            (c[0] - 0.5).abs() < 1e-9
                && (c[1] - 1.0 / 6.0).abs() < 1e-9
                && (c[2] - 5.0 / 3.0).abs() < 1e-9,
            "{c:?}"
        );
    }
}
