//! The losses of the course. Each returns the mean over the batch (and pixels) as a scalar.
use candle_core::{DType, Result, Tensor, D};

/// Softmax + cross-entropy (natural log), for classification (B, K) with targets (B) or for
/// segmentation (B, K, H, W) with per-pixel targets (B, H, W); targets are class ids (u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    weighted_cross_entropy(logits, targets, None)
}

/// [`cross_entropy`] with optional per-class weights (K), normalised by the weights of the
/// targets as PyTorch's `weight=` does: rare classes (a 1-px boundary) weigh more.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    class_weights: Option<&Tensor>,
) -> Result<Tensor> {
    let k = logits.dim(1)?;
    let logits = match logits.rank() {
        2 => logits.clone(),
        // Pixels become rows: (B, K, H, W) -> (B * H * W, K).
        4 => logits.permute((0, 2, 3, 1))?.reshape(((), k))?,
        r => candle_core::bail!("cross_entropy takes (B, K) or (B, K, H, W) logits, got rank {r}"),
    };
    let targets = targets.flatten_all()?.to_dtype(DType::U32)?;
    if targets.dim(0)? != logits.dim(0)? {
        candle_core::bail!(
            "cross_entropy: {} targets for {} predictions",
            targets.dim(0)?,
            logits.dim(0)?
        );
    }
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let nll = log_p.gather(&targets.unsqueeze(1)?, 1)?.neg()?.squeeze(1)?;
    match class_weights {
        None => nll.mean_all(),
        // PyTorch's `weight=`: sum_i w[t_i] nll_i / sum_i w[t_i].
        Some(w) => {
            if w.dims1()? != k {
                candle_core::bail!(
                    "cross_entropy: {} class weights for {k} classes",
                    w.dims1()?
                );
            }
            let w_t = w.to_dtype(nll.dtype())?.index_select(&targets, 0)?;
            (nll * &w_t)?.sum_all()?.broadcast_div(&w_t.sum_all()?)
        }
    }
}

/// Mean squared error.
pub fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    (prediction - target)?.sqr()?.mean_all()
}

/// Binary cross-entropy on logits in the stable form
/// `max(z, 0) - z y + log(1 + exp(-|z|))`, finite for any logit (candle's
/// `binary_cross_entropy_with_logit` returns inf for large ones).
pub fn binary_cross_entropy_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let targets = targets.to_dtype(logits.dtype())?;
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * targets)?)? + softplus_neg_abs)?.mean_all()
}

/// PoseNet's loss (Kendall et al. 2015):
/// `mean( |x_pred - x|_2 + beta * |q_pred - q / |q||_2 )`.
///
/// # Shapes
/// position (B, 3) metres, quaternion (B, 4) in (w, x, y, z) order; the ground-truth
/// quaternion is normalised here, the prediction is not (as in the paper).
pub fn posenet_loss(
    position_pred: &Tensor,
    quaternion_pred: &Tensor,
    position: &Tensor,
    quaternion: &Tensor,
    beta: f64,
) -> Result<Tensor> {
    let q_unit = quaternion.broadcast_div(&quaternion.sqr()?.sum_keepdim(1)?.sqrt()?)?;
    let position_err = euclidean(&(position_pred - position)?)?;
    let rotation_err = euclidean(&(quaternion_pred - q_unit)?)?;
    (position_err + (rotation_err * beta)?)?.mean_all()
}

/// [`posenet_loss`] with the orientation error taken to the nearer of `q` and `-q`, which are
/// the same rotation: `min(|q_pred - q|, |q_pred + q|)`. Without it, views all around the cell
/// need a sign flip somewhere, and the regression is asked to jump across it.
pub fn posenet_loss_antipodal(
    position_pred: &Tensor,
    quaternion_pred: &Tensor,
    position: &Tensor,
    quaternion: &Tensor,
    beta: f64,
) -> Result<Tensor> {
    let q_unit = quaternion.broadcast_div(&quaternion.sqr()?.sum_keepdim(1)?.sqrt()?)?;
    let position_err = euclidean(&(position_pred - position)?)?;
    let rotation_err = euclidean(&(quaternion_pred - &q_unit)?)?
        .minimum(&euclidean(&(quaternion_pred + &q_unit)?)?)?;
    (position_err + (rotation_err * beta)?)?.mean_all()
}

/// Row-wise Euclidean norm with a tiny floor inside the root, so the gradient at zero error is
/// finite.
fn euclidean(x: &Tensor) -> Result<Tensor> {
    (x.sqr()?.sum(1)? + 1e-20)?.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn scalar(t: Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn antipodal_posenet_loss_treats_q_and_minus_q_alike() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.1f32, 0.2, 0.3]], &dev).unwrap();
        let q = Tensor::new(&[[0.0f32, 1.0, 0.0, 0.0]], &dev).unwrap();
        let minus_q = q.neg().unwrap();
        let same = scalar(posenet_loss_antipodal(&x, &minus_q, &x, &q, 10.0).unwrap());
        assert!(same < 1e-6, "{same}");
        // The plain loss charges the full |2q| = 2 for the sign.
        let plain = scalar(posenet_loss(&x, &minus_q, &x, &q, 10.0).unwrap());
        assert!((plain - 20.0).abs() < 1e-4, "{plain}");
        // Away from the flip both agree.
        let near = Tensor::new(&[[0.1f32, 0.99, 0.0, 0.0]], &dev).unwrap();
        let a = scalar(posenet_loss_antipodal(&x, &near, &x, &q, 2.0).unwrap());
        let b = scalar(posenet_loss(&x, &near, &x, &q, 2.0).unwrap());
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn class_weights_follow_pytorch_weighted_mean() {
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 1, 1], &Device::Cpu).unwrap();
        let nll: Vec<f32> = [(2.0f32, 0.0f32, 0usize), (0.0, 1.0, 1), (1.0, 1.0, 1)]
            .iter()
            .map(|&(a, b, t)| {
                let z = [a, b];
                (a.exp() + b.exp()).ln() - z[t]
            })
            .collect();
        // Class 1 weighs 4: (1 * nll0 + 4 * nll1 + 4 * nll2) / 9.
        let by_hand = (nll[0] + 4.0 * nll[1] + 4.0 * nll[2]) / 9.0;
        let w = Tensor::new(&[1.0f32, 4.0], &Device::Cpu).unwrap();
        let got = scalar(weighted_cross_entropy(&logits, &targets, Some(&w)).unwrap());
        assert!((got - by_hand).abs() < 1e-6, "{got} vs {by_hand}");
        // Equal weights are the plain mean.
        let ones = Tensor::new(&[2.0f32, 2.0], &Device::Cpu).unwrap();
        let plain = scalar(cross_entropy(&logits, &targets).unwrap());
        let same = scalar(weighted_cross_entropy(&logits, &targets, Some(&ones)).unwrap());
        assert!((plain - same).abs() < 1e-6);
        let wrong = Tensor::new(&[1.0f32, 1.0, 1.0], &Device::Cpu).unwrap();
        assert!(weighted_cross_entropy(&logits, &targets, Some(&wrong)).is_err());
    }

    #[test]
    fn course_exercise_softmax_and_cross_entropy_base_10() {
        // Three examples, three classes; the course takes the logarithm base 10.
        let scores = Tensor::new(
            &[[2.0f32, 1.0, 0.1], [0.5, 2.5, 0.3], [1.2, 0.2, 3.1]],
            &Device::Cpu,
        )
        .unwrap();
        let targets = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
        let p = candle_nn::ops::softmax(&scores, 1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // Softmax of (2, 1, 0.1): e^2 / (e^2 + e^1 + e^0.1) = 0.6590.
        assert!((p[0][0] - 0.659_001).abs() < 1e-5, "{}", p[0][0]);
        let by_hand: f32 = [p[0][0], p[1][1], p[2][2]]
            .iter()
            .map(|p| -p.log10())
            .sum::<f32>()
            / 3.0;
        let ce_10 = scalar(cross_entropy(&scores, &targets).unwrap()) / std::f32::consts::LN_10;
        assert!((ce_10 - by_hand).abs() < 1e-6, "{ce_10} vs {by_hand}");
        // -log10 of 0.6590, 0.8025 and 0.8302, averaged.
        assert!((ce_10 - 0.1192).abs() < 1e-3, "{ce_10}");
    }

    #[test]
    fn per_pixel_cross_entropy_equals_the_flattened_one() {
        let logits = Tensor::new(
            &[[[[1.0f32, -1.0]], [[0.0, 2.0]], [[0.5, 0.5]]]],
            &Device::Cpu,
        )
        .unwrap(); // (1, 3, 1, 2)
        let targets = Tensor::new(&[[[2u32, 1]]], &Device::Cpu).unwrap();
        let flat = Tensor::new(&[[1.0f32, 0.0, 0.5], [-1.0, 2.0, 0.5]], &Device::Cpu).unwrap();
        let a = scalar(cross_entropy(&logits, &targets).unwrap());
        let b =
            scalar(cross_entropy(&flat, &Tensor::new(&[2u32, 1], &Device::Cpu).unwrap()).unwrap());
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn stable_bce_is_finite_for_huge_logits_and_right_for_small() {
        let logits = Tensor::new(&[1000.0f32, -1000.0, 0.3], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0.0f32, 1.0, 1.0], &Device::Cpu).unwrap();
        let loss = scalar(binary_cross_entropy_with_logits(&logits, &targets).unwrap());
        let small = -(1.0f32 / (1.0 + (-0.3f32).exp())).ln();
        assert!(
            ((loss - (2000.0 + small) / 3.0) / loss).abs() < 1e-6,
            "{loss}"
        );
    }

    #[test]
    fn posenet_loss_normalises_the_target_quaternion() {
        let dev = Device::Cpu;
        let x_pred = Tensor::new(&[[1.0f32, 2.0, 2.0]], &dev).unwrap();
        let x = Tensor::new(&[[0.0f32, 0.0, 0.0]], &dev).unwrap();
        let q_pred = Tensor::new(&[[1.0f32, 0.0, 0.0, 0.0]], &dev).unwrap();
        let q = Tensor::new(&[[2.0f32, 0.0, 0.0, 0.0]], &dev).unwrap();
        let loss = scalar(posenet_loss(&x_pred, &q_pred, &x, &q, 500.0).unwrap());
        assert!((loss - 3.0).abs() < 1e-4, "{loss}");
        assert!((scalar(mse(&x_pred, &x).unwrap()) - 3.0).abs() < 1e-6);
    }
}
