//! Per-channel mean and standard deviation over the training split, for the normalisation stored
//! in `model.yaml`.

use crate::preprocess::Normalization;

/// Per-channel sums of values and squares, accumulated over the training split to estimate
/// the input normalisation stored in `model.yaml`.
#[derive(Clone, Debug, Default)]
pub struct ChannelMoments {
    sum: [f64; 3],
    sum_sq: [f64; 3],
    count: [f64; 3],
}

impl ChannelMoments {
    pub fn add(&mut self, channel: usize, value: f64) {
        self.sum[channel] += value;
        self.sum_sq[channel] += value * value;
        self.count[channel] += 1.0;
    }

    /// Mean and standard deviation per channel; a channel never seen (grey images) takes
    /// channel 0's, so one grey channel stands for all three.
    pub fn normalization(&self) -> Normalization {
        let mut norm = Normalization::default();
        for c in 0..3 {
            let k = if self.count[c] > 0.0 { c } else { 0 };
            let mean = self.sum[k] / self.count[k];
            norm.mean[c] = mean as f32;
            norm.std[c] = (self.sum_sq[k] / self.count[k] - mean * mean)
                .max(1e-12)
                .sqrt() as f32;
        }
        norm
    }
}
