//! `model.yaml`: a model's task, architecture, class table, input size and normalisation, the
//! config that travels with its weights.

use serde::{Deserialize, Serialize};

use super::{
    DepthNetConfig, GraspNetConfig, InceptionNetConfig, LeNet5Config, MlpConfig, PoseNetConfig,
    ResNetConfig, UNetConfig, VggConfig,
};
use crate::preprocess::Normalization;

/// What a model is for; decides how the node interprets its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Segmentation,
    Depth,
    Pose,
    GraspQuality,
}

/// The network and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Mlp(MlpConfig),
    Lenet5(LeNet5Config),
    Vgg(VggConfig),
    InceptionNet(InceptionNetConfig),
    Resnet(ResNetConfig),
    Unet(UNetConfig),
    Depth(DepthNetConfig),
    Posenet(PoseNetConfig),
    GraspQuality(GraspNetConfig),
}

impl Architecture {
    /// The task this network's output answers.
    pub fn task(&self) -> Task {
        match self {
            Self::Mlp(_)
            | Self::Lenet5(_)
            | Self::Vgg(_)
            | Self::InceptionNet(_)
            | Self::Resnet(_) => Task::Classification,
            Self::Unet(_) => Task::Segmentation,
            Self::Depth(_) => Task::Depth,
            Self::Posenet(_) => Task::Pose,
            Self::GraspQuality(_) => Task::GraspQuality,
        }
    }

    /// Channels of the image input (an MLP reads one flattened grey image: 1).
    pub fn input_channels(&self) -> usize {
        match self {
            Self::Mlp(_) | Self::GraspQuality(_) => 1,
            Self::Lenet5(c) => c.in_channels,
            Self::Vgg(c) => c.in_channels,
            Self::InceptionNet(c) => c.in_channels,
            Self::Resnet(c) => c.in_channels,
            Self::Unet(c) => c.in_channels,
            Self::Depth(c) => c.in_channels,
            Self::Posenet(c) => c.backbone.in_channels,
        }
    }

    /// Number of classes the output scores, for classifiers and segmenters.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::Mlp(c) => Some(c.outputs),
            Self::Lenet5(c) => Some(c.num_classes),
            Self::Vgg(c) => Some(c.num_classes),
            Self::InceptionNet(c) => Some(c.num_classes),
            Self::Resnet(c) => Some(c.num_classes),
            Self::Unet(c) => Some(c.num_classes),
            Self::Depth(_) | Self::Posenet(_) | Self::GraspQuality(_) => None,
        }
    }

    /// Consistency checks serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Mlp(c) if c.inputs == 0 || c.outputs == 0 => {
                Err("mlp needs inputs and outputs of at least 1".into())
            }
            Self::Mlp(_) => Ok(()),
            Self::Lenet5(c) => c.feature_side().map(|_| ()),
            Self::Vgg(c) => c.check(),
            Self::InceptionNet(c) => c.check(),
            Self::Resnet(c) => c.check(),
            Self::Unet(c) => c.check(),
            Self::Depth(c) => c.check(),
            Self::Posenet(c) => c.backbone.check(),
            Self::GraspQuality(c) => c.check(),
        }
    }
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

impl ClassInfo {
    /// The classes of the table that are not objects: the scene's background, the bin, and
    /// the boundary band a U-Net with `boundary_class` predicts between touching objects.
    pub const NOT_OBJECTS: [&'static str; 3] = ["background", "bin", "boundary"];

    /// Whether this class's pixels belong to objects (instances, detections and grasps come
    /// from them; `miou_objects` averages over them).
    pub fn is_object(&self) -> bool {
        !Self::NOT_OBJECTS.contains(&self.name.as_str())
    }
}

/// `model.yaml`: everything besides the weights that is needed to run a model. It travels
/// with the weights; nothing about the model lives in node parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub task: Task,
    /// `unet: {...}` in YAML (one-key maps for every enum inside too, not YAML tags).
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
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
        self.architecture.check()?;
        if self.architecture.task() != self.task {
            return Err(format!(
                "task is {:?} but the architecture is a {:?} network",
                self.task,
                self.architecture.task()
            ));
        }
        if let Some(k) = self.architecture.num_classes() {
            if k != self.classes.len() {
                return Err(format!(
                    "the architecture outputs {k} classes but {} classes are listed",
                    self.classes.len()
                ));
            }
        }
        if let Architecture::Unet(unet) = &self.architecture {
            if unet.in_channels != 3 {
                return Err(format!(
                    "architecture.unet.in_channels is {}; the node feeds RGB (3)",
                    unet.in_channels
                ));
            }
            unet.check_input_size(self.input.height as usize, self.input.width as usize)?;
        }
        if self.normalization.std.iter().any(|s| !(*s > 0.0)) {
            return Err("normalization.std must be positive".into());
        }
        Ok(())
    }
}
