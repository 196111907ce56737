//! The depth task: RGB frames and sensor depth of a generated data set, the masked L1 loss
//! and its metrics (abs_rel, rmse, delta1).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::fit::{Evaluation, Examples};
use super::rgb_images::{delegate_to_rgb_images, RgbImages};
use super::TrainError;
use crate::data::BinDataset;
use crate::models::Network;

/// RGB frames and the depth sensor's reading (metres, 0 = no reading) of a generated data
/// set: monocular depth regression.
pub struct DepthSet {
    pub width: usize,
    pub height: usize,
    images: RgbImages,
    depth_m: Vec<f32>,
    count: usize,
}

impl DepthSet {
    pub fn open(root: &Path) -> Result<Self, TrainError> {
        let dataset = BinDataset::open(root).map_err(TrainError::Data)?;
        let (width, height) = (dataset.width as usize, dataset.height as usize);
        let mut images = RgbImages::new(width, height);
        let mut depth_m = Vec::with_capacity(dataset.count * width * height);
        for i in 0..dataset.count {
            images.push(&dataset.rgb(i).map_err(TrainError::Data)?);
            let mm = dataset.depth_mm(i).map_err(TrainError::Data)?;
            if mm.iter().all(|&d| d == 0) {
                return Err(TrainError::Data(format!(
                    "{} frame {i}: the depth image has no reading at all",
                    root.display()
                )));
            }
            depth_m.extend(mm.iter().map(|&d| d as f32 / 1000.0));
        }
        Ok(Self {
            width,
            height,
            images,
            depth_m,
            count: dataset.count,
        })
    }
}

/// Masked L1 over the pixels with a reading: `sum(|d - d*| [d* > 0]) / sum([d* > 0])`.
pub fn masked_l1(prediction: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let valid = target.gt(0.0)?.to_dtype(prediction.dtype())?;
    let count = valid.sum_all()?.maximum(1.0)?;
    ((prediction - target)?.abs()? * valid)?
        .sum_all()?
        .broadcast_div(&count)
}

/// The standard monocular-depth metrics over pixels with a reading (Eigen et al. 2014).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DepthMetrics {
    /// mean |d - d*| / d*
    pub abs_rel: f64,
    /// sqrt(mean (d - d*)^2), metres
    pub rmse: f64,
    /// fraction with max(d / d*, d* / d) < 1.25
    pub delta1: f64,
    pub mae_m: f64,
    pub pixels: u64,
    pub loss: f64,
}

/// Accumulates [`DepthMetrics`] over predictions and targets (0 = no reading, skipped).
#[derive(Default)]
pub struct DepthAccumulator {
    abs_rel: f64,
    sq: f64,
    abs: f64,
    within: u64,
    pixels: u64,
}

impl DepthAccumulator {
    pub fn add(&mut self, prediction: &[f32], target: &[f32]) {
        for (&p, &t) in prediction.iter().zip(target) {
            if t <= 0.0 || !p.is_finite() {
                continue;
            }
            let (p, t) = (p.max(1e-6) as f64, t as f64);
            self.abs_rel += (p - t).abs() / t;
            self.sq += (p - t) * (p - t);
            self.abs += (p - t).abs();
            self.within += ((p / t).max(t / p) < 1.25) as u64;
            self.pixels += 1;
        }
    }

    pub fn metrics(&self, loss: f64) -> DepthMetrics {
        let n = self.pixels.max(1) as f64;
        DepthMetrics {
            abs_rel: self.abs_rel / n,
            rmse: (self.sq / n).sqrt(),
            delta1: self.within as f64 / n,
            mae_m: self.abs / n,
            pixels: self.pixels,
            loss,
        }
    }
}

impl Examples for DepthSet {
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
        let (mut x, mut y) = (Vec::new(), Vec::with_capacity(indices.len() * n));
        for &i in indices {
            let depth = &self.depth_m[i * n..(i + 1) * n];
            let draw = self.images.draw(augment, i);
            self.images.extend_planar(i, draw.as_ref(), &mut x);
            match draw {
                // Depth moves with the pixels (nearest: never a blend of two surfaces); a view
                // zoomed by s is the scene s times closer; outside reads "no reading".
                Some(d) => {
                    let zoom = d.warp.zoom as f32;
                    y.extend(
                        d.warp
                            .apply(depth, w, h, true, 0.0)
                            .iter()
                            .map(|&v| v / zoom),
                    );
                }
                None => y.extend_from_slice(depth),
            }
        }
        let b = indices.len();
        Ok((
            vec![Tensor::from_vec(x, (b, 3, h, w), device)?],
            Tensor::from_vec(y, (b, 1, h, w), device)?,
        ))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        masked_l1(output, target)
    }

    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation> {
        let mut acc = DepthAccumulator::default();
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(8) {
            let (x, y) = self.batch(chunk, None, device)?;
            let predicted = network.forward_t(&x, false)?;
            loss_sum += self.loss(&predicted, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            acc.add(
                &predicted.flatten_all()?.to_vec1::<f32>()?,
                &y.flatten_all()?.to_vec1::<f32>()?,
            );
        }
        let metrics = acc.metrics(loss_sum / indices.len().max(1) as f64);
        Ok(Evaluation {
            // Best model and early stopping maximise the score: the negated AbsRel.
            score: -metrics.abs_rel,
            score_name: "-AbsRel",
            loss: metrics.loss,
            metrics: serde_json::to_value(&metrics).expect("metrics serialise"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand_skip_pixels_without_reading() {
        let mut acc = DepthAccumulator::default();
        // Targets 1 and 2 m, predictions 1.5 and 2; the third pixel has no reading.
        acc.add(&[1.5, 2.0, 9.0], &[1.0, 2.0, 0.0]);
        let m = acc.metrics(0.0);
        assert_eq!(m.pixels, 2);
        assert!((m.abs_rel - 0.25).abs() < 1e-9);
        assert!((m.rmse - (0.125f64).sqrt()).abs() < 1e-9);
        // 1.5 / 1 = 1.5 is outside 1.25, 2 / 2 inside.
        assert!((m.delta1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn masked_l1_ignores_holes() {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[1.0f32, 5.0, 2.5]], &dev).unwrap();
        let t = Tensor::new(&[[1.5f32, 0.0, 2.0]], &dev).unwrap();
        let l = masked_l1(&p, &t).unwrap().to_scalar::<f32>().unwrap();
        assert!((l - 0.5).abs() < 1e-6, "{l}");
        let none = Tensor::zeros((1, 3), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(
            masked_l1(&p, &none).unwrap().to_scalar::<f32>().unwrap(),
            0.0
        );
    }
}
