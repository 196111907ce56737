//! Suction grasps from instances and depth, scored by a seal model (Dex-Net 3.0's
//! quasi-static view, simplified): a cup of radius r pressed along the surface normal seals
//! when the surface under its rim stays within a tolerance of the contact plane; it holds
//! better the less the surface is tilted from the approach and the nearer the contact is to
//! the object's centre of mass. The score is the generator's labelling rule
//! (`scene::grasps`), computed from the depth image instead of the scene's geometry:
//!
//! quality = sealed x (1 - tilt / max tilt) x (1 - centroid distance / max distance),
//!
//! each factor clamped to [0, 1]. Tilt is measured against the optical axis (a camera looking
//! down into the bin approaches along it), the centroid is the instance's visible one.

use nalgebra::{Matrix3, SymmetricEigen, UnitQuaternion, Vector3};

use super::grasps::{instance_pixels, scaled};
use crate::image::{CameraIntrinsics, DepthImage};
use crate::postprocess::{Instance, InstanceImage};

/// Share of the cup's disc that must have readings on the instance.
const DISC_COVERAGE: f64 = 0.95;
/// The rim is checked this much outside the cup's radius: the lip spreads as it presses, and
/// the segmentation's edges are a pixel or two off.
const RIM_MARGIN: f64 = 1.2;

/// The suction cup and how candidates are sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuctionCup {
    pub radius_m: f64,
    /// Largest distance of the rim's surface from the contact plane that still seals, metres
    /// (the cup's compliance plus the depth sensor's noise).
    pub seal_tolerance_m: f64,
    /// Tilt of the surface from the approach at which quality reaches 0, degrees.
    pub max_tilt_deg: f64,
    /// Distance from the instance's centroid at which quality reaches 0, metres.
    pub max_centroid_distance_m: f64,
    /// Contact points tried per instance (spread over its pixels).
    pub centres_per_instance: usize,
}

impl Default for SuctionCup {
    /// The generator's cup (`SuctionConfig::default`), with 1 mm more tolerance for the
    /// sensor's depth quantisation and noise.
    fn default() -> Self {
        Self {
            radius_m: 0.012,
            seal_tolerance_m: 0.003,
            max_tilt_deg: 25.0,
            max_centroid_distance_m: 0.06,
            centres_per_instance: 12,
        }
    }
}

/// A scored suction grasp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuctionGrasp {
    pub instance_id: u16,
    /// Contact pixel (centre at +0.5).
    pub center_px: [f64; 2],
    /// Contact point, camera optical frame, metres.
    pub position_m: [f64; 3],
    /// Unit surface normal at the contact, towards the camera.
    pub normal: [f64; 3],
    pub quality: f32,
}

impl SuctionGrasp {
    /// Orientation (x, y, z, w) in the camera optical frame: z along the approach (into the
    /// surface, minus the normal), x as close to the camera's x as that allows.
    pub fn orientation_xyzw(&self) -> [f64; 4] {
        let z = -Vector3::from(self.normal);
        let x = (Vector3::x() - z * z.x)
            .try_normalize(1e-9)
            .unwrap_or_else(Vector3::y);
        let y = z.cross(&x);
        let rotation = nalgebra::Rotation3::from_basis_unchecked(&[x, y, z]);
        let q = UnitQuaternion::from_rotation_matrix(&rotation);
        [q.i, q.j, q.k, q.w]
    }
}

/// Suction candidates over each instance, scored; the contact needs a depth reading and a
/// cup's disc of readings on the same instance around it.
pub fn sample_suction(
    image: &InstanceImage,
    instances: &[Instance],
    depth: &DepthImage,
    camera: &CameraIntrinsics,
    cup: &SuctionCup,
) -> Vec<SuctionGrasp> {
    let (w, h) = (image.width as usize, image.height as usize);
    if (depth.width, depth.height) != (image.width, image.height) {
        return Vec::new();
    }
    let (fx, fy, cx, cy) = scaled(camera, image.width, image.height);
    // The back-projected point of pixel (u, v) of `instance`, if it has a reading.
    let point = |u: i64, v: i64, instance: u16| -> Option<Vector3<f64>> {
        if u < 0 || v < 0 || u >= w as i64 || v >= h as i64 {
            return None;
        }
        let i = v as usize * w + u as usize;
        let z = depth.depth_m[i] as f64;
        (image.ids[i] == instance && z > 0.0 && z.is_finite()).then(|| {
            Vector3::new(
                (u as f64 + 0.5 - cx) / fx * z,
                (v as f64 + 0.5 - cy) / fy * z,
                z,
            )
        })
    };
    let members = instance_pixels(image, instances.len());
    let max_tilt = cup.max_tilt_deg.to_radians();
    let mut out = Vec::new();
    for (instance, pixels) in instances.iter().zip(&members) {
        let Some(centroid) = instance.centroid_m.map(Vector3::from) else {
            continue;
        };
        if pixels.is_empty() {
            continue;
        }
        let stride = (pixels.len() / cup.centres_per_instance.max(1)).max(1);
        for &p in pixels.iter().skip(stride / 2).step_by(stride) {
            let (u, v) = ((p % w) as i64, (p / w) as i64);
            let Some(contact) = point(u, v, instance.id) else {
                continue;
            };
            let radius_px = cup.radius_m * fx / contact.z;
            let Some((normal, plane_point, disc_points)) =
                fit_plane(&point, (u, v), radius_px, instance.id)
            else {
                continue;
            };
            // The whole disc under the cup must be seen on this object: a disc cut by the
            // silhouette hangs over an edge.
            let expected = std::f64::consts::PI * radius_px * radius_px;
            if (disc_points as f64) < DISC_COVERAGE * expected {
                continue;
            }
            let sealed = (0..12).all(|k| {
                let a = std::f64::consts::TAU * k as f64 / 12.0;
                let ru = (u as f64 + RIM_MARGIN * radius_px * a.cos()).round() as i64;
                let rv = (v as f64 + RIM_MARGIN * radius_px * a.sin()).round() as i64;
                // The rim's surface: the mean of its 3x3 readings, against the sensor's noise.
                let readings: Vec<Vector3<f64>> = (-1..=1)
                    .flat_map(|dv| (-1..=1).map(move |du| (du, dv)))
                    .filter_map(|(du, dv)| point(ru + du, rv + dv, instance.id))
                    .collect();
                if readings.len() < 5 {
                    return false;
                }
                let rim = readings.iter().sum::<Vector3<f64>>() / readings.len() as f64;
                (rim - plane_point).dot(&normal).abs() <= cup.seal_tolerance_m
            });
            let tilt = normal.dot(&-Vector3::z()).clamp(-1.0, 1.0).acos();
            let offset = centroid - contact;
            let off_axis = (offset - normal * offset.dot(&normal)).norm();
            let tilt_term = (1.0 - tilt / max_tilt).clamp(0.0, 1.0);
            let centre_term = (1.0 - off_axis / cup.max_centroid_distance_m).clamp(0.0, 1.0);
            let quality = if sealed { tilt_term * centre_term } else { 0.0 };
            out.push(SuctionGrasp {
                instance_id: instance.id,
                center_px: [u as f64 + 0.5, v as f64 + 0.5],
                position_m: contact.into(),
                normal: normal.into(),
                quality: quality as f32,
            });
        }
    }
    out
}

/// Least-squares plane through the instance's points within `radius_px` of `(u, v)`: its unit
/// normal towards the camera, a point on it (the points' mean) and the number of points;
/// `None` with fewer than 6 points.
fn fit_plane(
    point: &impl Fn(i64, i64, u16) -> Option<Vector3<f64>>,
    (u, v): (i64, i64),
    radius_px: f64,
    instance: u16,
) -> Option<(Vector3<f64>, Vector3<f64>, usize)> {
    let r = radius_px.ceil() as i64;
    let mut points = Vec::new();
    for dv in -r..=r {
        for du in -r..=r {
            if ((du * du + dv * dv) as f64) <= radius_px * radius_px {
                if let Some(p) = point(u + du, v + dv, instance) {
                    points.push(p);
                }
            }
        }
    }
    if points.len() < 6 {
        return None;
    }
    let mean = points.iter().sum::<Vector3<f64>>() / points.len() as f64;
    let scatter = points
        .iter()
        .map(|p| (p - mean) * (p - mean).transpose())
        .sum::<Matrix3<f64>>();
    let eigen = SymmetricEigen::new(scatter);
    let smallest = eigen.eigenvalues.imin();
    let mut normal: Vector3<f64> = eigen.eigenvectors.column(smallest).into();
    // Towards the camera: the camera looks along +z.
    if normal.z > 0.0 {
        normal = -normal;
    }
    Some((normal.normalize(), mean, points.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MonoImage;
    use crate::postprocess::{label_instances, locate_instances};

    /// A `size` x `size` image of one square object at 0.5 m (fx 500: 1 px = 1 mm), its
    /// depth from `surface(x_m, y_m)`.
    fn scene(
        size: u32,
        surface: impl Fn(f64, f64) -> f64,
    ) -> (InstanceImage, Vec<Instance>, DepthImage, CameraIntrinsics) {
        let camera = CameraIntrinsics {
            width: size,
            height: size,
            fx_px: 500.0,
            fy_px: 500.0,
            cx_px: size as f64 / 2.0,
            cy_px: size as f64 / 2.0,
        };
        let n = size as usize;
        let mut classes = vec![0u8; n * n];
        for y in 10..n - 10 {
            for x in 10..n - 10 {
                classes[y * n + x] = 2;
            }
        }
        let mask = MonoImage {
            width: size,
            height: size,
            data: classes,
        };
        let (image, mut instances) = label_instances(&mask, &[false, false, true], 10);
        let depth_m = (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) as f64 + 0.5, (i / n) as f64 + 0.5);
                let in_object = mask.data[i] == 2;
                let z = if in_object {
                    surface((x - camera.cx_px) / 1000.0, (y - camera.cy_px) / 1000.0)
                } else {
                    0.6
                };
                z as f32
            })
            .collect();
        let depth = DepthImage {
            width: size,
            height: size,
            depth_m,
        };
        locate_instances(&mut instances, &image, &depth, &camera);
        (image, instances, depth, camera)
    }

    #[test]
    fn a_flat_face_seals_and_scores_best_at_its_centre() {
        let (image, instances, depth, camera) = scene(100, |_, _| 0.5);
        let grasps = sample_suction(&image, &instances, &depth, &camera, &SuctionCup::default());
        assert!(grasps.len() >= 4, "{}", grasps.len());
        for g in &grasps {
            assert!(g.quality > 0.0, "{g:?}");
            assert!(
                (g.normal[2] + 1.0).abs() < 1e-6,
                "normal towards the camera: {g:?}"
            );
            let q = g.orientation_xyzw();
            // Approach (z) along the optical axis: identity rotation.
            assert!((q[3].abs() - 1.0).abs() < 1e-6, "{q:?}");
        }
        let best = grasps
            .iter()
            .max_by(|a, b| a.quality.total_cmp(&b.quality))
            .expect("some");
        let centre = (best.center_px[0] - 50.0).hypot(best.center_px[1] - 50.0);
        assert!(centre < 15.0, "{best:?}");
    }

    #[test]
    fn a_step_under_the_rim_breaks_the_seal_and_a_tilt_lowers_quality() {
        // A 10 mm step along x = 0: contacts near it see the step under the rim.
        let (image, instances, depth, camera) = scene(100, |x, _| if x < 0.0 { 0.5 } else { 0.49 });
        let grasps = sample_suction(&image, &instances, &depth, &camera, &SuctionCup::default());
        for g in &grasps {
            let near_step = (g.center_px[0] - 50.0).abs() < 10.0;
            if near_step {
                assert_eq!(g.quality, 0.0, "{g:?}");
            }
        }
        // A face tilted by 15 degrees: sealed, normal recovered, quality below the flat one's.
        let tan = 15f64.to_radians().tan();
        let (image, instances, depth, camera) = scene(100, |x, _| 0.5 + x * tan);
        let tilted = sample_suction(&image, &instances, &depth, &camera, &SuctionCup::default());
        assert!(!tilted.is_empty());
        for g in &tilted {
            let angle = (-g.normal[2]).acos().to_degrees();
            assert!((angle - 15.0).abs() < 2.0, "{angle}");
            assert!(g.quality > 0.0 && g.quality < 0.5, "{g:?}");
        }
    }
}
