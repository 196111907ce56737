//! Saving and resuming a training run: weights, optimiser state and progress, written each epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::TrainError;
use crate::models::{replace_file, save_weights, ModelConfig};

/// Where a run is, besides weights and optimiser: saved with them every epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser updates so far (the schedule's `t`).
    pub iteration: u64,
    pub best_metric: f64,
    pub best_epoch: usize,
    pub epochs_without_improvement: usize,
}

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Writes weights (`model.*`), optimiser state (`optim.*`) and progress (`meta.*`) to
/// `<run>/checkpoint.safetensors` atomically (temporary file, flush, rename).
pub fn save_checkpoint(
    run: &Path,
    varmap: &VarMap,
    optimizer: HashMap<String, Tensor>,
    progress: &Progress,
) -> Result<(), TrainError> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in varmap.data().lock().expect("VarMap lock poisoned").iter() {
        tensors.insert(format!("model.{name}"), var.as_tensor().clone());
    }
    for (name, t) in optimizer {
        tensors.insert(format!("optim.{name}"), t);
    }
    let meta = [
        ("epoch", progress.epoch as f64),
        ("iteration", progress.iteration as f64),
        ("best_metric", progress.best_metric),
        ("best_epoch", progress.best_epoch as f64),
        (
            "epochs_without_improvement",
            progress.epochs_without_improvement as f64,
        ),
    ];
    for (name, value) in meta {
        tensors.insert(format!("meta.{name}"), Tensor::new(&[value], &Device::Cpu)?);
    }
    let path = run.join(CHECKPOINT_FILE);
    let tmp = run.join(format!(".{CHECKPOINT_FILE}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&tensors, &tmp)?;
    Ok(replace_file(&tmp, &path)?)
}

/// Reads a checkpoint: (weights by variable name, optimiser state, progress).
#[allow(clippy::type_complexity)]
pub fn load_checkpoint(
    run: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, Tensor>, Progress), TrainError> {
    let path = run.join(CHECKPOINT_FILE);
    if !path.is_file() {
        return Err(TrainError::Checkpoint(format!(
            "{} not found: --resume continues a run that saved at least one epoch; drop --resume to start one",
            path.display()
        )));
    }
    let tensors = candle_core::safetensors::load(&path, device)?;
    let (mut model, mut optim, mut meta) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (key, t) in tensors {
        match key.split_once('.') {
            Some(("model", name)) => {
                model.insert(name.to_string(), t);
            }
            Some(("optim", name)) => {
                optim.insert(name.to_string(), t);
            }
            Some(("meta", name)) => {
                meta.insert(name.to_string(), t.to_vec1::<f64>()?[0]);
            }
            _ => {
                return Err(TrainError::Checkpoint(format!(
                    "{}: unknown entry {key}",
                    path.display()
                )))
            }
        }
    }
    let get = |name: &str| {
        meta.get(name)
            .copied()
            .ok_or_else(|| TrainError::Checkpoint(format!("{}: no meta.{name}", path.display())))
    };
    let progress = Progress {
        epoch: get("epoch")? as usize,
        iteration: get("iteration")? as u64,
        best_metric: get("best_metric")?,
        best_epoch: get("best_epoch")? as usize,
        epochs_without_improvement: get("epochs_without_improvement")? as usize,
    };
    Ok((model, optim, progress))
}

/// Publishes a model folder at `<run>/model` so that it is always either the previous
/// complete folder or the new complete one: the files go to `<run>/models/epoch-NNNN/`, then
/// the `model` symlink is replaced by an atomic rename.
pub fn publish_model(
    run: &Path,
    epoch: usize,
    config: &ModelConfig,
    varmap: &VarMap,
) -> Result<PathBuf, TrainError> {
    let dir = run.join("models").join(format!("epoch-{epoch:04}"));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    save_weights(varmap, &dir.join("model.safetensors"))?;
    let yaml_tmp = dir.join(".model.yaml.tmp");
    let yaml = serde_yaml::to_string(config).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    std::fs::write(&yaml_tmp, yaml).map_err(io(&yaml_tmp))?;
    replace_file(&yaml_tmp, &dir.join("model.yaml"))?;
    let link = run.join("model");
    let link_tmp = run.join(".model.link.tmp");
    let _ = std::fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(
        Path::new("models").join(format!("epoch-{epoch:04}")),
        &link_tmp,
    )
    .map_err(io(&link_tmp))?;
    let previous = std::fs::read_link(&link).ok();
    std::fs::rename(&link_tmp, &link).map_err(io(&link))?;
    if let Some(previous) = previous {
        let previous = run.join(previous);
        if previous != dir {
            let _ = std::fs::remove_dir_all(previous);
        }
    }
    Ok(link)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_owned();
    move |source| TrainError::Io { path, source }
}
