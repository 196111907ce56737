use std::path::Path;

use candle_core::Device;
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
            Some(t) => vars[name].set(&t.to_dtype(vars[name].dtype())?)?,
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
        Err(ModelError::WeightsMismatch {
            path: path.to_owned(),
            problems: problems.join("; "),
        })
    }
}
