//! Weight initialisations (normal, He, Xavier) for convolution kernels and linear layers.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Weight initialisations of the course, for convolution kernels and linear matrices; biases
/// and batch-norm shifts start at 0, batch-norm scales at 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// N(0, std^2), the course's "small random numbers".
    Normal { std: f64 },
    /// He et al. 2015: N(0, 2 / fan_in), for ReLU networks.
    He,
    /// Glorot & Bengio 2010: N(0, 2 / (fan_in + fan_out)), for tanh/sigmoid networks.
    Xavier,
}

impl Default for Init {
    fn default() -> Self {
        Self::He
    }
}

/// Sets every variable of `varmap` from a `StdRng` seeded with `seed`, in name order, so the
/// result depends only on the seed, the names and the shapes.
pub fn initialize(varmap: &VarMap, init: Init, seed: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let device = var.device();
        let value =
            if name.ends_with("running_var") || (dims.len() == 1 && name.ends_with("weight")) {
                Tensor::ones(dims.as_slice(), var.dtype(), device)?
            } else if dims.len() < 2 {
                Tensor::zeros(dims.as_slice(), var.dtype(), device)?
            } else {
                let receptive: usize = dims[2..].iter().product();
                let (fan_out, fan_in) = (dims[0] * receptive, dims[1] * receptive);
                let std = match init {
                    Init::Normal { std } => std,
                    Init::He => (2.0 / fan_in as f64).sqrt(),
                    Init::Xavier => (2.0 / (fan_in + fan_out) as f64).sqrt(),
                };
                let normal = Normal::new(0.0, std)
                    .map_err(|e| candle_core::Error::msg(format!("init std {std}: {e}")))?;
                let values: Vec<f32> = (0..var.elem_count())
                    .map(|_| normal.sample(&mut rng) as f32)
                    .collect();
                Tensor::from_vec(values, dims.as_slice(), device)?.to_dtype(var.dtype())?
            };
        var.set(&value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn std_of(init: Init) -> f64 {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let _ = candle_nn::linear(400, 100, vb.pp("fc")).unwrap();
        initialize(&varmap, init, 1).unwrap();
        let w: Vec<f32> = varmap.data().lock().unwrap()["fc.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt()
    }

    #[test]
    fn each_scheme_gives_its_standard_deviation() {
        assert!((std_of(Init::He) - (2.0f64 / 400.0).sqrt()).abs() < 0.003);
        assert!((std_of(Init::Xavier) - (2.0f64 / 500.0).sqrt()).abs() < 0.003);
        assert!((std_of(Init::Normal { std: 0.01 }) - 0.01).abs() < 0.0005);
    }
}
