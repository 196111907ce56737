//! Loading and saving safetensors weights with an exact key and shape match (PyTorch names), and
//! replacing files atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::ModelError;

/// Loads a safetensors file into `varmap`, requiring an exact match: every variable present
/// with its shape, and no tensor left unused (a sign of the wrong architecture in model.yaml).
/// PyTorch's `num_batches_tracked` counters are the one kind of extra tensor accepted.
pub fn load_weights_strict(
    varmap: &VarMap,
    path: &Path,
    device: &Device,
) -> Result<(), ModelError> {
    let tensors = candle_core::safetensors::load(path, device)?;
    assign_weights_strict(varmap, &tensors).map_err(|problems| ModelError::WeightsMismatch {
        path: path.to_owned(),
        problems,
    })
}

/// Sets every variable of `varmap` from `tensors` under the rules of [`load_weights_strict`];
/// on a mismatch nothing is guaranteed about the variables and the error lists every problem.
pub fn assign_weights_strict(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), String> {
    let vars = varmap.data().lock().expect("VarMap lock poisoned");
    let mut problems = Vec::new();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        match tensors.get(name) {
            None => problems.push(format!(
                "missing tensor '{name}' (expected shape {:?})",
                vars[name].dims()
            )),
            Some(t) if t.dims() != vars[name].dims() => problems.push(format!(
                "tensor '{name}' has shape {:?}, expected {:?}",
                t.dims(),
                vars[name].dims()
            )),
            Some(t) => {
                let value = t
                    .to_device(vars[name].device())
                    .and_then(|t| t.to_dtype(vars[name].dtype()))
                    .and_then(|t| vars[name].set(&t));
                if let Err(e) = value {
                    problems.push(format!("tensor '{name}': {e}"));
                }
            }
        }
    }
    let mut unused: Vec<&String> = tensors
        .keys()
        .filter(|k| !vars.contains_key(*k) && !k.ends_with("num_batches_tracked"))
        .collect();
    unused.sort();
    problems.extend(unused.iter().map(|k| format!("unused tensor '{k}'")));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Saves every variable of `varmap` as safetensors at `path`, atomically: the data goes to a
/// temporary file in the same folder, is flushed to disk, then renamed over `path`, so a
/// process killed at any moment leaves either the old file or the new one, never half of one.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ModelError::Io { path, source }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    varmap.save(&tmp)?;
    // safetensors creates the file owner-only; a model is for every user of the robot.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io(&tmp))?;
    replace_file(&tmp, path)
}

/// Moves the finished temporary file `tmp` over `path`: flushes it to disk, renames it (atomic
/// within a folder) and flushes the folder so the rename itself survives a power cut.
pub fn replace_file(tmp: &Path, path: &Path) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ModelError::Io { path, source }
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(tmp))?;
    std::fs::rename(tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}
