//! The segmentation task: RGB images and class masks of a generated data set, the
//! (class-weighted) loss and IoU metrics.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::fit::{Evaluation, Examples};
use super::rgb_images::{delegate_to_rgb_images, RgbImages};
use super::TrainError;
use crate::data::BinDataset;
use crate::models::{ClassInfo, Network};
use crate::nn::loss::weighted_cross_entropy;

/// A generated (or hand-made, same layout) data set in memory: RGB images and class masks.
pub struct SegmentationSet {
    pub width: usize,
    pub height: usize,
    pub classes: Vec<ClassInfo>,
    images: RgbImages,
    masks: Vec<u8>,
    count: usize,
    class_weights: Option<Vec<f32>>,
}

impl SegmentationSet {
    /// Reads every frame of the data set folder `root`; its class table must have
    /// `num_classes` entries.
    pub fn open(root: &Path, num_classes: usize) -> Result<Self, TrainError> {
        let dataset = BinDataset::open(root).map_err(TrainError::Data)?;
        if dataset.class_names.len() != num_classes {
            return Err(TrainError::Data(format!(
                "{} has {} classes ({}) but the network outputs {num_classes}; generate with objects.classes: single for background/bin/object/boundary",
                root.display(),
                dataset.class_names.len(),
                dataset.class_names.join(", ")
            )));
        }
        let mut images = RgbImages::new(dataset.width as usize, dataset.height as usize);
        let mut masks = Vec::new();
        for i in 0..dataset.count {
            images.push(&dataset.rgb(i).map_err(TrainError::Data)?);
            let mask = dataset.mask(i).map_err(TrainError::Data)?;
            if let Some(bad) = mask.iter().find(|&&c| c as usize >= num_classes) {
                return Err(TrainError::Data(format!(
                    "{} frame {i}: class {bad} outside the table",
                    root.display()
                )));
            }
            masks.extend(mask);
        }
        Ok(Self {
            width: dataset.width as usize,
            height: dataset.height as usize,
            classes: dataset
                .class_names
                .iter()
                .zip(&dataset.class_colors)
                .map(|(name, color)| ClassInfo {
                    name: name.clone(),
                    color: *color,
                })
                .collect(),
            images,
            masks,
            count: dataset.count,
            class_weights: None,
        })
    }

    /// Weighs each class's pixels in the loss (one weight per class, checked by the config).
    pub fn with_class_weights(mut self, weights: Option<&[f64]>) -> Self {
        self.class_weights = weights.map(|w| w.iter().map(|&x| x as f32).collect());
        self
    }
}

/// Per-class intersection over union from a confusion matrix, their mean over all classes and
/// over the object classes (all but background, bin and boundary).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentationMetrics {
    pub miou: f64,
    pub miou_objects: f64,
    pub per_class_iou: Vec<f64>,
    pub pixel_accuracy: f64,
    pub loss: f64,
}

impl Examples for SegmentationSet {
    fn len(&self) -> usize {
        self.count
    }

    delegate_to_rgb_images!();

    fn batch(
        &self,
        indices: &[usize],
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let (w, h) = (self.width, self.height);
        let n = w * h;
        let mut x = Vec::with_capacity(indices.len() * 3 * n);
        let mut y = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            let mask = &self.masks[i * n..(i + 1) * n];
            let draw = self.images.draw(augment, i);
            self.images.extend_planar(i, draw.as_ref(), &mut x);
            match draw {
                // Class ids move with the pixels; what comes from outside is background.
                Some(d) => {
                    let plane: Vec<f32> = mask.iter().map(|&c| c as f32).collect();
                    y.extend(
                        d.warp
                            .apply(&plane, w, h, true, 0.0)
                            .iter()
                            .map(|&c| c as u32),
                    );
                }
                None => y.extend(mask.iter().map(|&c| c as u32)),
            }
        }
        Ok((
            vec![Tensor::from_vec(x, (indices.len(), 3, h, w), device)?],
            Tensor::from_vec(y, (indices.len(), h, w), device)?,
        ))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        let weights = match &self.class_weights {
            Some(w) => Some(Tensor::new(w.as_slice(), output.device())?),
            None => None,
        };
        weighted_cross_entropy(output, target, weights.as_ref())
    }

    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation> {
        let k = self.classes.len();
        let mut confusion = vec![vec![0u64; k]; k];
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(8) {
            let (x, y) = self.batch(chunk, None, device)?;
            let logits = network.forward_t(&x, false)?;
            loss_sum += self.loss(&logits, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let predicted = logits.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
            for (p, t) in predicted.iter().zip(y.flatten_all()?.to_vec1::<u32>()?) {
                confusion[t as usize][*p as usize] += 1;
            }
        }
        let iou: Vec<f64> = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let union = (0..k)
                    .map(|j| confusion[c][j] + confusion[j][c])
                    .sum::<u64>() as f64
                    - tp;
                if union > 0.0 {
                    tp / union
                } else {
                    1.0
                }
            })
            .collect();
        let objects: Vec<f64> = (0..k)
            .filter(|&c| self.classes[c].is_object())
            .map(|c| iou[c])
            .collect();
        let total: u64 = confusion.iter().flatten().sum();
        let metrics = SegmentationMetrics {
            miou: iou.iter().sum::<f64>() / k as f64,
            miou_objects: objects.iter().sum::<f64>() / objects.len().max(1) as f64,
            per_class_iou: iou,
            pixel_accuracy: (0..k).map(|c| confusion[c][c]).sum::<u64>() as f64
                / total.max(1) as f64,
            loss: loss_sum / indices.len().max(1) as f64,
        };
        Ok(Evaluation {
            score: metrics.miou,
            score_name: "mIoU",
            loss: metrics.loss,
            metrics: serde_json::to_value(&metrics).expect("metrics serialise"),
        })
    }
}
