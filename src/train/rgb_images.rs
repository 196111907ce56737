//! RGB frames of one size in memory and their conversion into normalised (optionally augmented)
//! input batches, shared by the image tasks.

use super::augment::{AugmentConfig, Draw};
use super::channel_moments::ChannelMoments;
use crate::preprocess::Normalization;

/// Interleaved 8-bit RGB frames of one size, held in memory, and the normalisation that turns
/// them into network input: what every image task of a generated data set shares.
pub struct RgbImages {
    pub width: usize,
    pub height: usize,
    pixels: Vec<u8>,
    pub normalization: Normalization,
    /// Applied to training batches (`augment` seed given) when set.
    pub augmentation: Option<AugmentConfig>,
}

impl RgbImages {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: Vec::new(),
            normalization: Normalization::default(),
            augmentation: None,
        }
    }

    /// Appends one frame (`width * height * 3` bytes, checked by the reader).
    pub fn push(&mut self, rgb: &[u8]) {
        debug_assert_eq!(rgb.len(), self.width * self.height * 3);
        self.pixels.extend_from_slice(rgb);
    }

    pub fn frame(&self, index: usize) -> &[u8] {
        let n = self.width * self.height * 3;
        &self.pixels[index * n..(index + 1) * n]
    }

    /// Estimates per-channel mean and standard deviation on the frames `training` only.
    pub fn estimate_normalization(&mut self, training: &[usize]) {
        let mut moments = ChannelMoments::default();
        for &i in training {
            for px in self.frame(i).chunks_exact(3) {
                for (c, &v) in px.iter().enumerate() {
                    moments.add(c, v as f64 / 255.0);
                }
            }
        }
        self.normalization = moments.normalization();
    }

    /// The augmentation draw of frame `index` in a training batch seeded `augment`.
    pub fn draw(&self, augment: Option<u64>, index: usize) -> Option<Draw> {
        match (&self.augmentation, augment) {
            (Some(a), Some(seed)) => Some(a.draw(seed, index, self.width, self.height)),
            _ => None,
        }
    }

    /// Appends frame `index` as planar (3, H, W) normalised floats; with a draw, colour
    /// jitter and the warp first (bilinear, black outside).
    pub fn extend_planar(&self, index: usize, draw: Option<&Draw>, out: &mut Vec<f32>) {
        let (rgb, norm) = (self.frame(index), &self.normalization);
        let n = self.width * self.height;
        let mut planar: Vec<f32> = (0..3)
            .flat_map(|c| rgb.iter().skip(c).step_by(3).map(|&v| v as f32 / 255.0))
            .collect();
        if let Some(d) = draw {
            d.jitter(&mut planar, 3);
            planar = planar
                .chunks_exact(n)
                .flat_map(|p| d.warp.apply(p, self.width, self.height, false, 0.0))
                .collect();
        }
        for (c, plane) in planar.chunks_exact(n).enumerate() {
            out.extend(plane.iter().map(|&v| (v - norm.mean[c]) / norm.std[c]));
        }
    }
}

/// The [`Examples`](super::Examples) methods of a set whose inputs are an `images:
/// RgbImages` field: normalisation and augmentation live there.
macro_rules! delegate_to_rgb_images {
    () => {
        fn set_normalization(&mut self, training: &[usize]) {
            self.images.estimate_normalization(training);
        }

        fn set_normalization_to(&mut self, norm: &crate::preprocess::Normalization) {
            self.images.normalization = norm.clone();
        }

        fn normalization_used(&self) -> crate::preprocess::Normalization {
            self.images.normalization.clone()
        }

        fn set_augmentation(&mut self, augmentation: super::AugmentConfig) {
            self.images.augmentation = Some(augmentation);
        }
    };
}
pub(crate) use delegate_to_rgb_images;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_comes_from_the_training_frames_only() {
        let mut images = RgbImages::new(1, 2);
        images.push(&[0, 0, 0, 255, 255, 255]);
        images.push(&[10, 20, 30, 10, 20, 30]);
        images.estimate_normalization(&[0]);
        assert!((images.normalization.mean[0] - 0.5).abs() < 1e-6);
        assert!((images.normalization.std[2] - 0.5).abs() < 1e-6);
        let mut planar = Vec::new();
        images.extend_planar(0, None, &mut planar);
        assert_eq!(planar, vec![-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
    }
}
