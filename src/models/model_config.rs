use serde::{Deserialize, Serialize};

use super::UNetConfig;
use crate::preprocess::Normalization;

/// What a model is for; decides how the node interprets its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Segmentation,
}

/// The network and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Unet(UNetConfig),
}

/// Network input resolution, pixels. Frames are resized to it and outputs resized back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSize {
    pub width: u32,
    pub height: u32,
}

/// One output class: its name and its overlay colour (RGB).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub name: String,
    pub color: [u8; 3],
}

/// `model.yaml`: everything besides the weights that is needed to run a model. It travels
/// with the weights; nothing about the model lives in node parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub task: Task,
    /// `unet: {...}` in YAML (a one-key map, not a YAML tag).
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub architecture: Architecture,
    pub input: InputSize,
    pub classes: Vec<ClassInfo>,
    #[serde(default)]
    pub normalization: Normalization,
    /// Without `model.safetensors`, initialise from this seed instead (an untrained network,
    /// logged as such). Absent: the weights file is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrained_seed: Option<u64>,
    /// Data set, seed, epochs, final metrics: free-form, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_yaml::Value>,
}

impl ModelConfig {
    /// Consistency checks serde cannot express. Returns what is wrong, for the error message.
    pub fn check(&self) -> Result<(), String> {
        match &self.architecture {
            Architecture::Unet(unet) => {
                unet.check()?;
                if unet.num_classes != self.classes.len() {
                    return Err(format!(
                        "architecture.unet.num_classes is {} but {} classes are listed",
                        unet.num_classes,
                        self.classes.len()
                    ));
                }
                if unet.in_channels != 3 {
                    return Err(format!(
                        "architecture.unet.in_channels is {}; the node feeds RGB (3)",
                        unet.in_channels
                    ));
                }
                unet.check_input_size(self.input.height as usize, self.input.width as usize)?;
            }
        }
        if self.normalization.std.iter().any(|s| !(*s > 0.0)) {
            return Err("normalization.std must be positive".into());
        }
        Ok(())
    }
}
