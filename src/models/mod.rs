//! The networks, each a serde config with named presets and `new(cfg, vb)`, plus the model
//! folder (`model.yaml` + `model.safetensors`) they are shipped in.

mod depth_net;
mod grasp_net;
mod inception_net;
mod lenet;
mod mlp;
mod model_config;
mod model_error;
mod model_folder;
mod network;
mod posenet;
mod resnet;
mod summary;
mod unet;
mod vgg;
mod weights;

pub use depth_net::{DepthNet, DepthNetConfig};
pub use grasp_net::{GraspNet, GraspNetConfig};
pub use inception_net::{InceptionNet, InceptionNetConfig};
pub use lenet::{LeNet5, LeNet5Config, PoolKind};
pub use mlp::{Mlp, MlpConfig};
pub use model_config::{
    Architecture, Calibration, CalibrationMethod, ClassInfo, InputSize, ModelConfig, Task,
};
pub use model_error::ModelError;
pub use model_folder::{LoadedModel, ModelFolder, WeightsSource};
pub use network::Network;
pub use posenet::{PoseNet, PoseNetConfig};
pub use resnet::{ResNet, ResNetConfig, Stem};
pub use summary::{preset, summarize, PresetOptions, Summary, SummaryRow, PRESET_NAMES};
pub use unet::{UNet, UNetConfig};
pub use vgg::{Vgg, VggConfig};
pub use weights::{assign_weights_strict, load_weights_strict, replace_file, save_weights};
