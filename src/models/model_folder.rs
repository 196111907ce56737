//! A model folder (`model.yaml` + `model.safetensors`) and loading it into a ready network
//! (`LoadedModel`), with where its weights came from.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::{load_weights_strict, ModelConfig, ModelError, Network};
use crate::nn::{initialize, Init};

pub const CONFIG_FILE: &str = "model.yaml";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A model folder `models/<name>/`: `model.yaml` and `model.safetensors`.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub dir: PathBuf,
}

/// Where a loaded model's weights came from, for the log and diagnostics.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightsSource {
    File(PathBuf),
    /// No weights file: initialised from this seed; the outputs carry no meaning.
    UntrainedSeed(u64),
}

/// A network ready to run, with its config and its variables (kept for training and saving).
pub struct LoadedModel {
    pub config: ModelConfig,
    pub network: Network,
    pub varmap: VarMap,
    pub weights: WeightsSource,
}

impl ModelFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    pub fn read_config(&self) -> Result<ModelConfig, ModelError> {
        let path = self.config_path();
        let text = read_to_string(&path)?;
        let config: ModelConfig =
            serde_yaml::from_str(&text).map_err(|e| ModelError::ConfigInvalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        config
            .check()
            .map_err(|message| ModelError::ConfigInvalid { path, message })?;
        Ok(config)
    }

    /// Reads the config, builds the network on `device` and fills its weights.
    pub fn load(&self, device: &Device) -> Result<LoadedModel, ModelError> {
        let config = self.read_config()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let network = Network::new(&config.architecture, vb)?;
        let weights_path = self.weights_path();
        let weights = if weights_path.is_file() {
            load_weights_strict(&varmap, &weights_path, device)?;
            WeightsSource::File(weights_path)
        } else if let Some(seed) = config.untrained_seed {
            initialize(&varmap, Init::He, seed)?;
            WeightsSource::UntrainedSeed(seed)
        } else {
            return Err(ModelError::WeightsMissing { path: weights_path });
        };
        Ok(LoadedModel {
            config,
            network,
            varmap,
            weights,
        })
    }
}

fn read_to_string(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::ConfigMissing {
                path: path.to_owned(),
            }
        } else {
            ModelError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{save_weights, Architecture};

    fn shipped() -> ModelFolder {
        ModelFolder::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/unet_seg_untrained"
        ))
    }

    #[test]
    fn shipped_untrained_model_loads_deterministically() {
        let a = shipped().load(&Device::Cpu).unwrap();
        let b = shipped().load(&Device::Cpu).unwrap();
        assert!(matches!(a.weights, WeightsSource::UntrainedSeed(_)));
        let name = "downs.0.conv1.weight";
        let wa = a.varmap.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let wb = b.varmap.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(wa, wb);
        assert!(wa.iter().any(|w| *w != 0.0));
    }

    #[test]
    fn save_and_strict_load_round_trip_and_mismatch_is_named() {
        let dir = std::env::temp_dir().join(format!("perception-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = shipped().load(&Device::Cpu).unwrap();
        let mut config = model.config.clone();
        config.untrained_seed = None;
        std::fs::write(
            dir.join(CONFIG_FILE),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
        let folder = ModelFolder::new(&dir);
        assert!(matches!(
            folder.load(&Device::Cpu),
            Err(ModelError::WeightsMissing { .. })
        ));
        save_weights(&model.varmap, &folder.weights_path()).unwrap();
        let loaded = folder.load(&Device::Cpu).unwrap();
        assert_eq!(loaded.weights, WeightsSource::File(folder.weights_path()));

        // A wider network does not fit the saved weights: the error names tensor and shapes.
        let Architecture::Unet(unet) = &mut config.architecture else {
            panic!("the shipped model is a U-Net")
        };
        unet.base_channels *= 2;
        std::fs::write(
            dir.join(CONFIG_FILE),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
        let err = folder.load(&Device::Cpu).err().unwrap().to_string();
        assert!(
            err.contains("downs.0.conv1.weight") && err.contains("[16, 3, 3, 3]"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_folder_says_what_to_give() {
        let err = ModelFolder::new("/nonexistent/model")
            .load(&Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/nonexistent/model/model.yaml") && err.contains("models/<name>"),
            "{err}"
        );
    }
}
