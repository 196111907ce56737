//! Transfer learning: start from another model's weights (renamed by a prefix map), freeze
//! layers, and give pretrained layers their own (smaller) learning rate.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::{Param, TrainError};
use crate::models::ModelFolder;

/// `init_from:` in a training config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitFrom {
    /// A model folder (`models/<name>` or a run's `model`).
    pub model: PathBuf,
    /// Source tensor-name prefix -> prefix in this network. Empty: every tensor keeps its
    /// name. Otherwise only tensors under one of the source prefixes are taken (the longest
    /// matching prefix wins), e.g. `{"": "backbone."}` puts a ResNet under PoseNet's backbone.
    #[serde(default)]
    pub prefix_map: BTreeMap<String, String>,
    /// Source tensors that this network does not have, or has in another shape (a new
    /// classifier head), are skipped instead of failing the run.
    #[serde(default)]
    pub skip_mismatched: bool,
}

/// `lr_groups:` entry: parameters under `prefix` learn at `scale` times the learning rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrGroup {
    pub prefix: String,
    pub scale: f64,
}

/// What [`init_from`] did, for the log and the model's provenance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InitReport {
    pub model: String,
    pub initialised: usize,
    pub of: usize,
    pub skipped: Vec<String>,
}

/// The name a source tensor takes in this network, if the map takes it at all.
fn mapped_name(name: &str, prefix_map: &BTreeMap<String, String>) -> Option<String> {
    if prefix_map.is_empty() {
        return Some(name.to_string());
    }
    prefix_map
        .iter()
        .filter(|(from, _)| name.starts_with(from.as_str()))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{to}{}", &name[from.len()..]))
}

/// Copies the tensors of `init.model` into `varmap` as the prefix map says. Every mapped
/// tensor must exist in this network with its shape unless `skip_mismatched`; at least one
/// must be copied.
pub fn init_from(
    varmap: &VarMap,
    init: &InitFrom,
    device: &Device,
) -> Result<InitReport, TrainError> {
    let folder = ModelFolder::new(&init.model);
    folder.read_config()?;
    let path = folder.weights_path();
    let source: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, device).map_err(|e| {
            TrainError::Config(format!("init_from: cannot read {}: {e}", path.display()))
        })?;
    let vars = varmap.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = source.keys().collect();
    names.sort();
    let (mut initialised, mut skipped, mut problems) = (0, Vec::new(), Vec::new());
    for name in names {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let Some(target) = mapped_name(name, &init.prefix_map) else {
            continue;
        };
        let tensor = &source[name];
        let problem = match vars.get(&target) {
            None => format!("'{name}' -> '{target}': no such tensor in this network"),
            Some(var) if var.dims() != tensor.dims() => format!(
                "'{name}' -> '{target}': shape {:?} here, {:?} in the source",
                var.dims(),
                tensor.dims()
            ),
            Some(var) => {
                var.set(&tensor.to_dtype(var.dtype())?)?;
                initialised += 1;
                continue;
            }
        };
        if init.skip_mismatched {
            skipped.push(problem);
        } else {
            problems.push(problem);
        }
    }
    if !problems.is_empty() {
        return Err(TrainError::Config(format!(
            "init_from {}: {}; fix prefix_map or set skip_mismatched: true",
            init.model.display(),
            problems.join("; ")
        )));
    }
    if initialised == 0 {
        return Err(TrainError::Config(format!(
            "init_from {}: no tensor matched; check prefix_map against the source's names",
            init.model.display()
        )));
    }
    Ok(InitReport {
        model: init.model.display().to_string(),
        initialised,
        of: vars.len(),
        skipped,
    })
}

/// Drops the frozen parameters and sets each remaining one's learning-rate scale from the
/// first group whose prefix it has. A prefix that matches no parameter is an error (a typo
/// would otherwise silently train everything).
pub fn apply_freeze_and_groups(
    params: Vec<Param>,
    freeze: &[String],
    groups: &[LrGroup],
) -> Result<Vec<Param>, TrainError> {
    for prefix in freeze {
        if !params.iter().any(|p| p.name.starts_with(prefix.as_str())) {
            return Err(TrainError::Config(format!(
                "freeze: no parameter name starts with '{prefix}' (`perception_train summary --model` lists them)"
            )));
        }
    }
    for g in groups {
        if !params.iter().any(|p| p.name.starts_with(g.prefix.as_str())) {
            return Err(TrainError::Config(format!(
                "lr_groups: no parameter name starts with '{}'",
                g.prefix
            )));
        }
        if !(g.scale >= 0.0 && g.scale.is_finite()) {
            return Err(TrainError::Config(format!(
                "lr_groups '{}': scale must be >= 0, got {}",
                g.prefix, g.scale
            )));
        }
    }
    let kept: Vec<Param> = params
        .into_iter()
        .filter(|p| !freeze.iter().any(|f| p.name.starts_with(f.as_str())))
        .map(|mut p| {
            if let Some(g) = groups
                .iter()
                .find(|g| p.name.starts_with(g.prefix.as_str()))
            {
                p.lr_scale = g.scale;
            }
            p
        })
        .collect();
    if kept.is_empty() {
        return Err(TrainError::Config(
            "freeze leaves no parameter to train".into(),
        ));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_map_takes_the_longest_matching_prefix() {
        let mut map = BTreeMap::new();
        assert_eq!(mapped_name("fc.weight", &map).as_deref(), Some("fc.weight"));
        map.insert("".to_string(), "backbone.".to_string());
        map.insert("fc.".to_string(), "head.".to_string());
        assert_eq!(
            mapped_name("layer1.0.conv1.weight", &map).as_deref(),
            Some("backbone.layer1.0.conv1.weight")
        );
        assert_eq!(mapped_name("fc.bias", &map).as_deref(), Some("head.bias"));
        let only: BTreeMap<String, String> = [("conv1.".to_string(), "conv1.".to_string())].into();
        assert_eq!(mapped_name("fc.bias", &only), None);
    }
}
