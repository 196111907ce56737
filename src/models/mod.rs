//! The networks, each a serde config with named presets and `new(cfg, vb)`, plus the model
//! folder (`model.yaml` + `model.safetensors`) they are shipped in.

mod model_config;
mod model_error;
mod model_folder;
mod unet;
mod weights;

pub use model_config::{Architecture, ClassInfo, InputSize, ModelConfig, Task};
pub use model_error::ModelError;
pub use model_folder::{LoadedModel, ModelFolder, WeightsSource};
pub use unet::{UNet, UNetConfig};
pub use weights::load_weights_strict;
