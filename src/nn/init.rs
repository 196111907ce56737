use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Deterministic initialisation of every variable in `varmap` from `seed`.
///
/// Candle's own CPU generator cannot be seeded, so reproducible weights come from a seeded
/// `StdRng`: He-normal for convolution weights (std = sqrt(2 / fan_in), ReLU networks), zeros
/// for biases and running means, ones for batch-norm scales and running variances.
/// Variables are visited in name order, so the result depends only on the seed and the names.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let dims = shape.dims();
        let device = var.device();
        let value =
            if name.ends_with("running_var") || (dims.len() == 1 && name.ends_with("weight")) {
                Tensor::ones(dims, var.dtype(), device)?
            } else if dims.len() == 1 {
                Tensor::zeros(dims, var.dtype(), device)?
            } else {
                let fan_in: usize = dims[1..].iter().product();
                let std = (2.0 / fan_in as f64).sqrt();
                let normal = Normal::new(0.0, std).expect("std is finite and positive");
                let values: Vec<f32> = (0..shape.elem_count())
                    .map(|_| normal.sample(&mut rng) as f32)
                    .collect();
                Tensor::from_vec(values, dims, device)?.to_dtype(var.dtype())?
            };
        var.set(&value)?;
    }
    Ok(())
}
