use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::fit::{Evaluation, Examples};
use super::rgb_images::RgbImages;
use super::TrainError;
use crate::data::BinDataset;
use crate::models::{Network, PoseNet};
use crate::nn::loss::posenet_loss_antipodal;
use crate::preprocess::Normalization;

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

    fn set_normalization(&mut self, training: &[usize]) {
        self.images.estimate_normalization(training);
    }

    fn set_normalization_to(&mut self, norm: &Normalization) {
        self.images.normalization = norm.clone();
    }

    fn normalization_used(&self) -> Normalization {
        self.images.normalization.clone()
    }

    fn batch(
        &self,
        indices: &[usize],
        _train: bool,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let (mut x, mut y) = (Vec::new(), Vec::with_capacity(indices.len() * 7));
        for &i in indices {
            self.images.extend_planar(i, &mut x);
            y.extend_from_slice(&self.poses[i]);
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
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(16) {
            let (x, y) = self.batch(chunk, false, device)?;
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
            }
        }
        let n = translation.len().max(1) as f64;
        let metrics = PoseMetrics {
            mean_translation_m: translation.iter().sum::<f64>() / n,
            mean_rotation_deg: rotation.iter().sum::<f64>() / n,
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
