use std::time::Instant;

use candle_core::Device;
use thiserror::Error;

use super::{Frame, InferOptions, Outputs, StageTimings};
use crate::models::{LoadedModel, ModelError, ModelFolder, Task, WeightsSource};
use crate::postprocess::{blend_overlay, logits_to_class_mask, resize_mask_nearest};
use crate::preprocess::{resize_rgb, rgb_to_input_tensor, InputError};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("network failed: {0}")]
    Network(#[from] candle_core::Error),
    #[error("OpenCV failed: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// The enabled heads and the device they run on.
pub struct Pipeline {
    segmentation: LoadedModel,
    palette: Vec<[u8; 3]>,
    device: Device,
}

impl Pipeline {
    pub fn new(segmentation_model: &ModelFolder, device: Device) -> Result<Self, ModelError> {
        let segmentation = segmentation_model.load(&device)?;
        if segmentation.config.task != Task::Segmentation {
            return Err(ModelError::ConfigInvalid {
                path: segmentation_model.config_path(),
                message: format!(
                    "task is {:?}; segmentation_model needs a segmentation model (a U-Net)",
                    segmentation.config.task
                ),
            });
        }
        let palette = segmentation
            .config
            .classes
            .iter()
            .map(|c| c.color)
            .collect();
        Ok(Self {
            segmentation,
            palette,
            device,
        })
    }

    pub fn segmentation_weights(&self) -> &WeightsSource {
        &self.segmentation.weights
    }

    pub fn segmentation_name(&self) -> &str {
        &self.segmentation.config.name
    }

    /// Runs the heads on one frame.
    pub fn infer(&self, frame: &Frame, options: &InferOptions) -> Result<Outputs, PipelineError> {
        let config = &self.segmentation.config;
        let started = Instant::now();
        let small = resize_rgb(&frame.rgb, config.input.width, config.input.height)?;
        let input = rgb_to_input_tensor(&small, &config.normalization, &self.device)?;
        let preprocessed = Instant::now();
        let logits = self.segmentation.network.forward_t(&[input], false)?;
        let class_ids = logits_to_class_mask(&logits)?;
        let inferred = Instant::now();
        let mask = resize_mask_nearest(&class_ids, frame.rgb.width, frame.rgb.height)?;
        let overlay = options
            .overlay
            .then(|| blend_overlay(&frame.rgb, &mask, &self.palette, options.overlay_alpha));
        let done = Instant::now();
        Ok(Outputs {
            mask,
            overlay,
            timings: StageTimings {
                preprocess: preprocessed - started,
                inference: inferred - preprocessed,
                postprocess: done - inferred,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RgbImage;

    #[test]
    fn untrained_pipeline_answers_at_input_resolution() {
        let folder = ModelFolder::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/unet_seg_untrained"
        ));
        let pipeline = Pipeline::new(&folder, Device::Cpu).unwrap();
        let rgb = RgbImage {
            width: 97,
            height: 41,
            data: (0..97 * 41 * 3).map(|i| (i % 251) as u8).collect(),
        };
        let frame = Frame {
            rgb,
            depth: None,
            camera: None,
        };
        let out = pipeline
            .infer(
                &frame,
                &InferOptions {
                    overlay: true,
                    overlay_alpha: 0.5,
                },
            )
            .unwrap();
        assert_eq!((out.mask.width, out.mask.height), (97, 41));
        assert!(out.mask.data.iter().all(|c| *c < 4));
        let overlay = out.overlay.unwrap();
        assert_eq!(overlay.data.len(), 97 * 41 * 3);
        let again = pipeline
            .infer(
                &frame,
                &InferOptions {
                    overlay: false,
                    overlay_alpha: 0.5,
                },
            )
            .unwrap();
        assert_eq!(again.mask, out.mask, "inference is deterministic");
        assert!(again.overlay.is_none());
    }
}
