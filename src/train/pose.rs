//! The camera-pose task: RGB frames and `cell_from_camera` poses of a generated data set, PoseNet's
//! loss and the translation and rotation errors.

use std::path::Path;

use candle_core::{Device, Tensor};
use nalgebra::{Quaternion, UnitQuaternion};
use serde::Serialize;

use super::fit::{Evaluation, Examples};
use super::rgb_images::{delegate_to_rgb_images, RgbImages};
use super::TrainError;
use crate::data::BinDataset;
use crate::models::{Network, PoseNet};
use crate::nn::loss::posenet_loss_antipodal;

/// RGB frames and the camera's pose in the cell (`cell_from_camera`) of a generated data set
/// (generate with `fixed_scene_seed` and the `hemisphere` viewpoint: one cell, many views):
/// camera relocalisation with PoseNet. Targets are (x, y, z, w, qx, qy, qz).
pub struct PoseSet {
    pub width: usize,
    pub height: usize,
    images: RgbImages,
    poses: Vec<[f32; 7]>,
    beta: f64,
}

impl PoseSet {
    /// `beta` weighs the orientation error in the loss (the model's `beta`).
    pub fn open(root: &Path, beta: f64) -> Result<Self, TrainError> {
        let dataset = BinDataset::open(root).map_err(TrainError::Data)?;
        let mut images = RgbImages::new(dataset.width as usize, dataset.height as usize);
        let mut poses = Vec::with_capacity(dataset.count);
        for i in 0..dataset.count {
            images.push(&dataset.rgb(i).map_err(TrainError::Data)?);
            let pose = dataset
                .labels(i)
                .map_err(TrainError::Data)?
                .cell_from_camera;
            let [x, y, z] = pose.translation_m;
            let [qx, qy, qz, w] = pose.rotation_xyzw;
            poses.push([x, y, z, w, qx, qy, qz].map(|v| v as f32));
        }
        Ok(Self {
            width: dataset.width as usize,
            height: dataset.height as usize,
            images,
            poses,
            beta,
        })
    }
}

/// Camera relocalisation errors, as PoseNet reports them: medians over the frames.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoseMetrics {
    pub median_translation_m: f64,
    pub median_rotation_deg: f64,
    pub mean_translation_m: f64,
    pub mean_rotation_deg: f64,
    /// Mean squared residual per cell axis (x, y, z), m^2: the node's position covariance.
    pub position_residual_m2: [f64; 3],
    /// Mean squared rotation residual (rotation vector of predicted * true^-1, cell axes),
    /// rad^2: the node's orientation covariance.
    pub rotation_residual_rad2: [f64; 3],
    pub frames: usize,
    pub loss: f64,
}

/// Angle of the rotation between two quaternions (any order of components, same in both),
/// degrees: `2 acos(|<q1, q2>|)` after normalising.
pub fn rotation_error_deg(a: &[f32], b: &[f32]) -> f64 {
    let norm = |q: &[f32]| q.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let cos = (dot.abs() / (norm(a) * norm(b)).max(1e-12)).min(1.0);
    2.0 * cos.acos().to_degrees()
}

/// The camera pose (x, y, z, w, qx, qy, qz; cell from camera) after the image is rotated by
/// `angle` about its centre (x right, y down, towards +y): the camera rolled about its optical
/// axis, `cell_from_camera * Rz(-angle)`. Exact for a centred principal point and fx = fy.
pub fn roll_camera(pose: &[f32; 7], angle: f64) -> [f32; 7] {
    let [x, y, z, w, a, b, c] = pose.map(|v| v as f64);
    let (cw, cz) = ((-angle / 2.0).cos(), (-angle / 2.0).sin());
    // (w, a, b, c) * (cw, 0, 0, cz)
    let q = [
        w * cw - c * cz,
        a * cw + b * cz,
        b * cw - a * cz,
        w * cz + c * cw,
    ];
    [x, y, z, q[0], q[1], q[2], q[3]].map(|v| v as f32)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

impl Examples for PoseSet {
    fn len(&self) -> usize {
        self.poses.len()
    }

    delegate_to_rgb_images!();

    fn batch(
        &self,
        indices: &[usize],
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let (mut x, mut y) = (Vec::new(), Vec::with_capacity(indices.len() * 7));
        for &i in indices {
            let draw = self.images.draw(augment, i);
            self.images.extend_planar(i, draw.as_ref(), &mut x);
            // The check allows only rotation about the image centre: a camera roll.
            let pose = match draw {
                Some(d) => roll_camera(&self.poses[i], d.warp.angle),
                None => self.poses[i],
            };
            y.extend_from_slice(&pose);
        }
        let b = indices.len();
        Ok((
            vec![Tensor::from_vec(
                x,
                (b, 3, self.height, self.width),
                device,
            )?],
            Tensor::from_vec(y, (b, 7), device)?,
        ))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        posenet_loss_antipodal(
            &output.narrow(1, 0, 3)?,
            &output.narrow(1, 3, 4)?,
            &target.narrow(1, 0, 3)?,
            &target.narrow(1, 3, 4)?,
            self.beta,
        )
    }

    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation> {
        let (mut translation, mut rotation) = (Vec::new(), Vec::new());
        let (mut position_sq, mut rotation_sq) = ([0.0f64; 3], [0.0f64; 3]);
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(16) {
            let (x, y) = self.batch(chunk, None, device)?;
            let output = network.forward_t(&x, false)?;
            loss_sum += self.loss(&output, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let (xyz, q) = PoseNet::split(&output)?;
            let predicted = Tensor::cat(&[xyz, q], 1)?.to_vec2::<f32>()?;
            for (p, t) in predicted.iter().zip(y.to_vec2::<f32>()?) {
                translation.push(
                    (0..3)
                        .map(|k| ((p[k] - t[k]) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                );
                rotation.push(rotation_error_deg(&p[3..], &t[3..]));
                let quat = |q: &[f32]| {
                    UnitQuaternion::from_quaternion(Quaternion::new(
                        q[0] as f64,
                        q[1] as f64,
                        q[2] as f64,
                        q[3] as f64,
                    ))
                };
                let residual = (quat(&p[3..]) * quat(&t[3..]).inverse()).scaled_axis();
                for k in 0..3 {
                    position_sq[k] += ((p[k] - t[k]) as f64).powi(2);
                    rotation_sq[k] += residual[k].powi(2);
                }
            }
        }
        let n = translation.len().max(1) as f64;
        let metrics = PoseMetrics {
            mean_translation_m: translation.iter().sum::<f64>() / n,
            mean_rotation_deg: rotation.iter().sum::<f64>() / n,
            position_residual_m2: position_sq.map(|v| v / n),
            rotation_residual_rad2: rotation_sq.map(|v| v / n),
            median_translation_m: median(&mut translation),
            median_rotation_deg: median(&mut rotation),
            frames: indices.len(),
            loss: loss_sum / n,
        };
        Ok(Evaluation {
            // One metre of position error counts as much as 100 degrees.
            score: -(metrics.median_translation_m + metrics.median_rotation_deg / 100.0),
            score_name: "-(median m + median deg / 100)",
            loss: metrics.loss,
            metrics: serde_json::to_value(&metrics).expect("metrics serialise"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolled_pose_projects_points_where_the_rotated_image_shows_them() {
        use nalgebra::{Isometry3, Point3, Quaternion, Translation3, UnitQuaternion, Vector3};
        let (f, cx, cy) = (100.0, 80.0, 60.0);
        let iso = |p: &[f32; 7]| {
            let [x, y, z, w, a, b, c] = p.map(|v| v as f64);
            Isometry3::from_parts(
                Translation3::from(Vector3::new(x, y, z)),
                UnitQuaternion::from_quaternion(Quaternion::new(w, a, b, c)),
            )
        };
        let project = |cell_from_camera: &Isometry3<f64>, p: &Point3<f64>| {
            let q = cell_from_camera.inverse() * p;
            (cx + f * q.x / q.z, cy + f * q.y / q.z)
        };
        let q = UnitQuaternion::from_euler_angles(2.6, 0.3, -0.7);
        let pose = [0.2, -0.4, 0.9, q.w, q.i, q.j, q.k].map(|v| v as f32);
        let angle = 0.35f64;
        let rolled = roll_camera(&pose, angle);
        // A point 0.8 m in front of the camera, a little right of and above the centre.
        let point = iso(&pose) * Point3::new(0.1, -0.05, 0.8);
        let (u, v) = project(&iso(&pose), &point);
        let (c, s) = (angle.cos(), angle.sin());
        let expected = (
            cx + c * (u - cx) - s * (v - cy),
            cy + s * (u - cx) + c * (v - cy),
        );
        let got = project(&iso(&rolled), &point);
        assert!(
            (got.0 - expected.0).abs() < 1e-3 && (got.1 - expected.1).abs() < 1e-3,
            "{got:?} vs {expected:?}"
        );
        // The warp of the augmentation moves pixels the same way.
        let warp = crate::train::Warp {
            angle,
            zoom: 1.0,
            shift: [0.0, 0.0],
            flip: false,
            center: [cx, cy],
        };
        let mut plane = vec![0.0f32; 160 * 120];
        plane[(v as usize) * 160 + u as usize] = 1.0;
        let moved = warp.apply(&plane, 160, 120, true, 0.0);
        let hit = moved.iter().position(|&p| p == 1.0).unwrap();
        assert!(
            ((hit % 160) as f64 - expected.0).abs() < 2.0
                && ((hit / 160) as f64 - expected.1).abs() < 2.0
        );
    }

    #[test]
    fn rotation_error_of_known_rotations() {
        let identity = [1.0f32, 0.0, 0.0, 0.0];
        // 10 degrees about z, (w, x, y, z).
        let h = 5.0f32.to_radians();
        let ten = [h.cos(), 0.0, 0.0, h.sin()];
        assert!((rotation_error_deg(&identity, &ten) - 10.0).abs() < 1e-4);
        // q and -q: no error; an unnormalised prediction is normalised first.
        let minus: Vec<f32> = ten.iter().map(|v| -2.0 * v).collect();
        assert!(rotation_error_deg(&ten, &minus) < 1e-3);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
