//! L1 / L2 weight penalties added to the training loss.

use candle_core::{Result, Tensor};

use super::Param;

/// `l2 * sum(w^2) + l1 * sum(|w|)` over the weights (tensors of rank >= 2: convolution
/// kernels and linear matrices; biases and batch-norm parameters are not penalised, as is
/// customary), to add to the loss.
pub fn weight_penalty(params: &[Param], l1: f64, l2: f64) -> Result<Option<Tensor>> {
    if l1 == 0.0 && l2 == 0.0 {
        return Ok(None);
    }
    let mut total: Option<Tensor> = None;
    for p in params.iter().filter(|p| p.var.rank() >= 2) {
        let w = p.var.as_tensor();
        let mut term = Tensor::zeros((), w.dtype(), w.device())?;
        if l2 > 0.0 {
            term = (term + (w.sqr()?.sum_all()? * l2)?)?;
        }
        if l1 > 0.0 {
            term = (term + (w.abs()?.sum_all()? * l1)?)?;
        }
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn penalties_sum_weights_only_and_their_gradients_shrink_them() {
        let w = Var::new(&[[1.0f32, -2.0], [0.5, 0.0]], &Device::Cpu).unwrap();
        let b = Var::new(&[10.0f32], &Device::Cpu).unwrap();
        let params = vec![
            Param {
                name: "w".into(),
                var: w.clone(),
                lr_scale: 1.0,
            },
            Param {
                name: "b".into(),
                var: b.clone(),
                lr_scale: 1.0,
            },
        ];
        let penalty = weight_penalty(&params, 0.1, 0.01).unwrap().unwrap();
        // l2: 0.01 * 5.25; l1: 0.1 * 3.5.
        assert!((penalty.to_scalar::<f32>().unwrap() - (0.0525 + 0.35)).abs() < 1e-6);
        let grads = penalty.backward().unwrap();
        let g = grads.get(&w).unwrap().to_vec2::<f32>().unwrap();
        // d/dw: 2 * 0.01 * w + 0.1 * sign(w): pulls every weight towards zero.
        assert!((g[0][0] - 0.12).abs() < 1e-6 && (g[0][1] + 0.14).abs() < 1e-6);
        assert!(grads.get(&b).is_none());
        assert!(weight_penalty(&params, 0.0, 0.0).unwrap().is_none());
    }
}
