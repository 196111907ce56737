use candle_core::{Result, Tensor};

/// 2x2 max pooling with stride 2 (odd trailing rows/columns dropped, as PyTorch floors).
///
/// Written as reshape + max because candle 0.11's `max_pool2d` backward passes a quarter of
/// the gradient to the maximum (notes/candle-facts.md); this form has exact gradients.
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H/2, W/2)
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, h2 * 2)?.narrow(3, 0, w2 * 2)?
    } else {
        x.clone()
    };
    x.reshape((b, c, h2, 2, w2, 2))?.max(5)?.max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_matches_builtin_and_gradient_reaches_the_maximum_whole() {
        let values: Vec<f32> = (0..2 * 5 * 7).map(|i| ((i * 37) % 23) as f32).collect();
        let x = Var::from_vec(values, (1, 2, 5, 7), &Device::Cpu).unwrap();
        let ours = max_pool2x2(x.as_tensor()).unwrap();
        let builtin = x.as_tensor().max_pool2d(2).unwrap();
        assert_eq!(ours.dims(), &[1, 2, 2, 3]);
        let diff = (&ours - &builtin)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        // d(sum)/dx is 1 at each window's maximum and 0 elsewhere: one 1 per output.
        let grads = ours.sum_all().unwrap().backward().unwrap();
        let g = grads.get(&x).unwrap();
        assert_eq!(g.sum_all().unwrap().to_scalar::<f32>().unwrap(), 12.0);
        assert_eq!(g.max_all().unwrap().to_scalar::<f32>().unwrap(), 1.0);
    }
}
