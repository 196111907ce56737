//! The grasp-quality task: GQ-CNN examples (aligned depth patches, grasp depth, analytic label)
//! from a generated data set, their metrics, and the calibration of their qualities.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::augment::AugmentConfig;
use super::calibration::{calibrate_temperature, expected_calibration_error};
use super::fit::{Evaluation, Examples};
use super::TrainError;
use crate::data::BinDataset;
use crate::models::{Calibration, GraspNetConfig, Network};
use crate::nn::loss::binary_cross_entropy_with_logits;
use crate::preprocess::{grasp_depth_patch, GraspInImage, Normalization};
use crate::scene::grasps::GripperKind;

/// Parallel-jaw grasp candidates of a generated data set as GQ-CNN examples: the depth patch
/// aligned with each grasp (from the sensor's depth, holes and noise included), the grasp
/// depth, and the analytic label. Normalisation: channel 0 of the model's `normalization`
/// is the patch values', channel 1 the grasp depth's.
pub struct GraspSet {
    side: usize,
    patches: Vec<f32>,
    depths: Vec<f32>,
    labels: Vec<f32>,
    normalization: Normalization,
    augmentation: Option<AugmentConfig>,
    /// Turns logits into the qualities `evaluate` measures the calibration error of.
    calibration: Option<Calibration>,
}

impl GraspSet {
    pub fn open(root: &Path, config: &GraspNetConfig) -> Result<Self, TrainError> {
        let dataset = BinDataset::open(root).map_err(TrainError::Data)?;
        let side = config.patch_size;
        let (mut patches, mut depths, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..dataset.count {
            let frame = dataset.labels(i).map_err(TrainError::Data)?;
            let depth: Vec<f32> = dataset
                .depth_mm(i)
                .map_err(TrainError::Data)?
                .iter()
                .map(|&d| d as f32 / 1000.0)
                .collect();
            for grasp in &frame.grasps {
                if grasp.gripper != GripperKind::ParallelJaw {
                    continue;
                }
                let at = GraspInImage {
                    center_px: grasp.center_px,
                    angle_rad: grasp.angle_rad,
                    depth_m: grasp.approach_depth_m,
                };
                patches.extend(grasp_depth_patch(
                    &depth,
                    dataset.width as usize,
                    frame.intrinsics.fx,
                    &at,
                    side,
                    config.patch_width_m,
                ));
                depths.push(grasp.approach_depth_m as f32);
                labels.push(grasp.success as u8 as f32);
            }
        }
        if labels.is_empty() {
            return Err(TrainError::Data(format!(
                "{} has no parallel-jaw grasp candidates in its labels",
                root.display()
            )));
        }
        Ok(Self {
            side,
            patches,
            depths,
            labels,
            normalization: Normalization::default(),
            augmentation: None,
            calibration: None,
        })
    }

    /// Fraction of candidates labelled successful.
    pub fn positive_fraction(&self) -> f64 {
        self.labels.iter().map(|&l| l as f64).sum::<f64>() / self.labels.len() as f64
    }

    /// The network's logits and the labels of the examples `indices`, in eval mode.
    fn logits(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<(Vec<f32>, Vec<bool>, f64)> {
        let (mut logits, mut truth) = (Vec::new(), Vec::new());
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(256) {
            let (x, y) = self.batch(chunk, None, device)?;
            let out = network.forward_t(&x, false)?;
            loss_sum += self.loss(&out, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            logits.extend(out.flatten_all()?.to_vec1::<f32>()?);
            truth.extend(y.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v > 0.5));
        }
        Ok((logits, truth, loss_sum / indices.len().max(1) as f64))
    }
}

/// Grasp-success metrics at the 0.5 probability threshold (a temperature keeps it), the
/// average precision of the ranking (area under the precision-recall curve, as scikit-learn
/// computes it), and the expected calibration error of the qualities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraspMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub average_precision: f64,
    pub positives: usize,
    pub candidates: usize,
    pub loss: f64,
    /// Expected calibration error (10 bins) of the qualities, after the model's calibration.
    pub grasp_quality_ece: f64,
}

/// AP = sum over the ranked list of (R_k - R_{k-1}) P_k; tied scores form one step.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut k = 0;
    while k < order.len() {
        let mut j = k;
        while j < order.len() && scores[order[j]] == scores[order[k]] {
            if labels[order[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
        k = j;
    }
    ap
}

impl Examples for GraspSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn set_normalization(&mut self, training: &[usize]) {
        let n = self.side * self.side;
        let moments = |values: &mut dyn Iterator<Item = f64>| {
            let (mut s, mut s2, mut k) = (0.0, 0.0, 0.0);
            for v in values {
                s += v;
                s2 += v * v;
                k += 1.0;
            }
            let mean = s / k;
            (mean as f32, (s2 / k - mean * mean).max(1e-12).sqrt() as f32)
        };
        let (pm, ps) = moments(
            &mut training
                .iter()
                .flat_map(|&i| self.patches[i * n..(i + 1) * n].iter().map(|&v| v as f64)),
        );
        let (dm, ds) = moments(&mut training.iter().map(|&i| self.depths[i] as f64));
        self.normalization = Normalization {
            mean: [pm, dm, 0.0],
            std: [ps, ds, 1.0],
        };
    }

    fn set_normalization_to(&mut self, norm: &Normalization) {
        self.normalization = norm.clone();
    }

    fn normalization_used(&self) -> Normalization {
        self.normalization.clone()
    }

    fn batch(
        &self,
        indices: &[usize],
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let n = self.side * self.side;
        let norm = &self.normalization;
        let mut x = Vec::with_capacity(indices.len() * n);
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for &i in indices {
            let mut patch = self.patches[i * n..(i + 1) * n].to_vec();
            if let (Some(a), Some(seed)) = (&self.augmentation, augment) {
                let draw = a.draw(seed, i, self.side, self.side);
                draw.flip_patch(&mut patch, self.side);
                draw.add_depth_noise(&mut patch);
            }
            x.extend(patch.iter().map(|&v| (v - norm.mean[0]) / norm.std[0]));
            z.push((self.depths[i] - norm.mean[1]) / norm.std[1]);
            y.push(self.labels[i]);
        }
        let b = indices.len();
        Ok((
            vec![
                Tensor::from_vec(x, (b, 1, self.side, self.side), device)?,
                Tensor::from_vec(z, (b, 1), device)?,
            ],
            Tensor::from_vec(y, (b, 1), device)?,
        ))
    }

    fn set_augmentation(&mut self, augmentation: AugmentConfig) {
        self.augmentation = Some(augmentation);
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        binary_cross_entropy_with_logits(output, target)
    }

    fn set_calibration(&mut self, calibration: Option<&Calibration>) {
        self.calibration = calibration.cloned();
    }

    fn fit_calibration(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Option<Calibration>> {
        let (logits, truth, _) = self.logits(network, indices, device)?;
        Ok(Some(calibrate_temperature(&logits, &truth)))
    }

    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation> {
        let (scores, truth, loss) = self.logits(network, indices, device)?;
        let qualities: Vec<f32> = scores
            .iter()
            .map(|&z| match &self.calibration {
                Some(c) => c.probability(z),
                None => 1.0 / (1.0 + (-z).exp()),
            })
            .collect();
        let count = |p: bool, t: bool| {
            scores
                .iter()
                .zip(&truth)
                .filter(|&(&s, &l)| (s > 0.0) == p && l == t)
                .count() as f64
        };
        let (tp, fp, tn, fneg) = (
            count(true, true),
            count(true, false),
            count(false, false),
            count(false, true),
        );
        let metrics = GraspMetrics {
            accuracy: (tp + tn) / scores.len().max(1) as f64,
            precision: if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 },
            recall: if tp + fneg > 0.0 {
                tp / (tp + fneg)
            } else {
                0.0
            },
            average_precision: average_precision(&scores, &truth),
            positives: (tp + fneg) as usize,
            candidates: scores.len(),
            loss,
            grasp_quality_ece: expected_calibration_error(&qualities, &truth, 10),
        };
        Ok(Evaluation {
            score: metrics.average_precision,
            score_name: "AP",
            loss: metrics.loss,
            metrics: serde_json::to_value(&metrics).expect("metrics serialise"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_by_hand() {
        // Ranked: + - + -  -> precision at the positives 1/1 and 2/3, recall steps 1/2 each.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]);
        assert!((ap - (0.5 * 1.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.2, 0.1], &[true, true]), 1.0);
        // All scores tied: one step at the base rate.
        assert!((average_precision(&[0.5; 4], &[true, false, false, false]) - 0.25).abs() < 1e-12);
        assert_eq!(average_precision(&[0.5], &[false]), 0.0);
    }
}
