//! The training config file: where the data comes from, the model, optimiser, schedule and run
//! settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::transfer::{InitFrom, LrGroup};
use super::{OptimizerConfig, Schedule};
use crate::models::Architecture;
use crate::nn::Init;

/// Where the training examples come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataConfig {
    /// Classification from IDX files (MNIST layout): images (N, H, W) and labels (N).
    Idx {
        train_images: PathBuf,
        train_labels: PathBuf,
        test_images: PathBuf,
        test_labels: PathBuf,
        class_names: Vec<String>,
    },
    /// Classification from folders of PNG images, one per class (`root/<class>/*.png`),
    /// resized to `width` x `height` and read as `channels` (1 grey, 3 RGB); the test folder
    /// must have the same class folders.
    ImageFolder {
        train: PathBuf,
        test: PathBuf,
        width: usize,
        height: usize,
        #[serde(default = "three")]
        channels: usize,
    },
    /// Segmentation from `perception_train generate` folders: a training folder (split into
    /// training and validation) and a held-out test folder generated with another seed.
    Generated { train: PathBuf, test: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without a better validation metric before stopping.
    pub patience: usize,
}

/// `config/train/<run>.yaml`: one training run. Every technique of the course is a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Name of the trained model folder written into the run folder (`<out>/model`).
    pub name: String,
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub data: DataConfig,
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub architecture: Architecture,
    /// Run folder: checkpoint, CSV log, metrics, the best model.
    pub out: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    #[serde(
        default = "constant",
        with = "serde_yaml::with::singleton_map_recursive"
    )]
    pub schedule: Schedule,
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub optimizer: OptimizerConfig,
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub init: Init,
    /// Penalties on the weights added to the loss.
    #[serde(default)]
    pub l1: f64,
    #[serde(default)]
    pub l2: f64,
    /// Per-channel mean/std from the training split, stored in model.yaml.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Fraction of the training set held out for validation (early stopping, best model).
    #[serde(default = "tenth")]
    pub validation_fraction: f64,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Per-class loss weights for classification and segmentation (PyTorch's `weight=`):
    /// rare classes such as the 1-px boundary weigh more. One positive number per class.
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
    /// Random translation, rotation, crop, scale, mirror, colour jitter, depth noise on the
    /// training batches, applied alike to the image and its labels.
    #[serde(default)]
    pub augmentation: Option<AugmentConfig>,
    /// Transfer learning: start from another model's weights instead of `init` where they
    /// match (the rest keep `init`).
    #[serde(default)]
    pub init_from: Option<InitFrom>,
    /// Parameter-name prefixes that do not train (`conv1.`, `backbone.`).
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Per-prefix learning-rate scales, e.g. 0.1 for pretrained layers; first match wins.
    #[serde(default)]
    pub lr_groups: Vec<LrGroup>,
    pub seed: u64,
}

fn three() -> usize {
    3
}

fn constant() -> Schedule {
    Schedule::Constant
}
fn yes() -> bool {
    true
}
fn tenth() -> f64 {
    0.1
}

impl TrainConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err("epochs and batch_size must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..0.9).contains(&self.validation_fraction) {
            return Err(format!(
                "validation_fraction must be within [0, 0.9), got {}",
                self.validation_fraction
            ));
        }
        if self.l1 < 0.0 || self.l2 < 0.0 {
            return Err("l1 and l2 must not be negative".into());
        }
        if let Some(w) = &self.class_weights {
            let Some(k) = self.architecture.num_classes() else {
                return Err(
                    "class_weights applies to classification and segmentation only: remove it"
                        .into(),
                );
            };
            if w.len() != k {
                return Err(format!(
                    "class_weights has {} entries for a {k}-class network: give one per class",
                    w.len()
                ));
            }
            if w.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
                return Err(format!("class_weights must all be positive, got {w:?}"));
            }
        }
        if let Some(a) = &self.augmentation {
            a.check(self.architecture.task())?;
        }
        self.schedule.check()?;
        self.architecture.check()
    }
}
